"""Signed messages through NATS JetStream between two processes: answerable's bus against a bare
nats-py publish/subscribe loop, measured in one run.

Run: ``python bench/bus.py`` (5,000 messages each; ``--quick`` for 500; ``--json``; ``--nats URL``,
default the machine's server at 127.0.0.1:4222).

Both phases have a consumer in a child process and the producer in this one, one JetStream stream
each (deleted after), a durable pull consumer, the producer awaiting each publish's
acknowledgement. The rate is messages over the time from the first publish to the consumer's
last acknowledgement (both on this machine's clock).

- bare: the same bytes, published, pulled in batches and acknowledged (one flush per batch, as
  answerable's consumer does), nothing else;
- answerable: each message is built and signed by its sender's key (Ed25519) and recorded in the
  ledger (SQLite, one group commit per 100) before it is published, the way the service does; the
  consumer admits each delivery against the ledger (the entry must be there, byte for byte) and
  the charter (the signature must verify), hands it to a handler, records the group's handled
  marks (one commit per fetched batch), and acknowledges them. Everything answerable adds is in
  its figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _common as common

DEFAULT_NATS = "nats://127.0.0.1:4222"

CONSUMER = r"""
import asyncio, json, sys, time
args = json.loads(sys.argv[1])

async def bare():
    import nats
    nc = await nats.connect(args["nats"])
    js = nc.jetstream()
    sub = await js.pull_subscribe(args["subject"], durable="bench", stream=args["stream"])
    print("ready", flush=True)
    n = 0
    while n < args["n"]:
        try:
            msgs = await sub.fetch(batch=256, timeout=1.0)
        except TimeoutError:
            continue
        for m in msgs:
            await m.ack()
            n += 1
        await nc.flush()
    print(json.dumps({"end": time.time()}), flush=True)
    await nc.close()

async def governed():
    from answerable.bus.nats import NatsBus
    from answerable.delivery import Admission, LedgerMarks
    from answerable.ledger import open_ledger
    ledger = open_ledger(args["ledger"])
    admission = Admission(ledger)
    bus = await NatsBus.connect(args["nats"], args["system"], admit=admission,
                                on_refused=admission.refuse, marks=LedgerMarks(ledger))
    done = asyncio.Event()
    count = 0
    async def handle(record):
        nonlocal count
        count += 1
        if count == args["n"]:
            done.set()
    bus.subscribe("plans", handle, group="executor")
    await bus.start()
    print("ready", flush=True)
    await done.wait()
    end = time.time()
    print(json.dumps({"end": end, "refused": admission.refused, "dropped": bus.dropped}), flush=True)
    await bus.close()
    ledger.close()

asyncio.run(bare() if args["mode"] == "bare" else governed())
"""


def _consumer(args: dict[str, Any]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, json.dumps(args)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"the consumer did not start: {line}")
    return proc


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    doc: dict[str, Any] = json.loads(proc.stdout.readline())
    proc.wait(timeout=60)
    proc.stdout.close()
    return doc


async def bare(url: str, n: int, size: int) -> dict[str, Any]:
    import nats

    stream, subject = f"bench_bare_{uuid.uuid4().hex[:8]}", f"bench.bare.{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[subject])
    try:
        proc = _consumer({"mode": "bare", "nats": url, "stream": stream, "subject": subject, "n": n})
        payload = b"x" * size
        t0 = time.time()
        for k in range(n):
            await js.publish(subject, payload, headers={"Nats-Msg-Id": f"m{k}"})
        published = time.time()
        end = await asyncio.to_thread(_finish, proc)
    finally:
        await js.delete_stream(stream)
        await nc.close()
    wall = end["end"] - t0
    return {"messages": n, "bytes": size, "publish_s": published - t0, "wall_s": wall, "per_s": n / wall}


async def governed(url: str, n: int, folder: Path) -> dict[str, Any]:
    from answerable.bus.nats import NatsBus
    from answerable.charter import new_charter
    from answerable.clock import IdSource, rfc3339
    from answerable.keys import KeyPair
    from answerable.ledger import open_ledger
    from answerable.records import Message, entry_bytes
    from answerable.signing import sign

    system = f"bench-{uuid.uuid4().hex[:8]}"
    ri, router = KeyPair.generate("ri@bench.example"), KeyPair.generate("router")
    path = folder / "bus.db"
    ledger = open_ledger(path, create=True, origin="bench.example/bus")
    ledger.append_sync(
        [new_charter(system, ri, agents=["router", "executor"], agent_keys={"router": router.public_b64})]
    )
    bus = await NatsBus.connect(url, system)
    try:
        proc = _consumer({"mode": "governed", "nats": url, "system": system, "ledger": str(path), "n": n})
        ids = IdSource()
        t0 = time.time()
        signing = recording = publishing = 0.0
        size = 0
        for start in range(0, n, 100):
            a = time.perf_counter()
            batch = [
                sign(
                    Message(
                        id=ids.new(),
                        at=rfc3339(ids.clock.now_ns()),
                        sender="router",
                        topic="plans",
                        type="route",
                        payload={"shipment": f"S-{k:08d}", "carrier": "nordfreight", "stops": [1, 2, 3]},
                        trace_id=f"t-{k}",
                    ),
                    router,
                )
                for k in range(start, min(n, start + 100))
            ]
            b = time.perf_counter()
            await ledger.append(batch)
            c = time.perf_counter()
            for m in batch:
                await bus.publish("plans", m)
            publishing += time.perf_counter() - c
            signing += b - a
            recording += c - b
            size = len(entry_bytes(batch[0]))
        end = await asyncio.to_thread(_finish, proc)
    finally:
        await bus.delete_stream()
        await bus.close()
        ledger.close()
    wall = end["end"] - t0
    return {
        "messages": n,
        "bytes": size,
        "sign_s": signing,
        "record_s": recording,
        "publish_s": publishing,
        "wall_s": wall,
        "per_s": n / wall,
        "refused": end["refused"],
        "dropped": end["dropped"],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="answerable-bench-") as tmp:
        os.environ["ANSWERABLE_KEY_DIR"] = str(Path(tmp) / "keys")
        ours = asyncio.run(governed(args.nats, args.messages, Path(tmp)))
        plain = asyncio.run(bare(args.nats, args.messages, ours["bytes"]))
    return {
        "benchmark": "bus",
        "quick": args.quick,
        "machine": common.describe_machine(),
        "nats": args.nats,
        "bare": plain,
        "answerable": ours,
        "ratio": ours["per_s"] / plain["per_s"],
    }


def render(doc: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console()
    a, b = doc["answerable"], doc["bare"]
    console.print(
        f"bare nats-py JetStream, publish + pull + ack: {b['per_s']:,.0f} msgs/s "
        f"({b['messages']:,} of {b['bytes']} bytes in {b['wall_s']:.2f} s)"
    )
    console.print(
        f"answerable signed + recorded + admitted + marked: {a['per_s']:,.0f} msgs/s "
        f"({a['messages']:,} in {a['wall_s']:.2f} s; producer: sign {a['sign_s']:.2f} s, "
        f"record {a['record_s']:.2f} s, publish {a['publish_s']:.2f} s); refused {a['refused']}"
    )
    console.print(f"answerable / bare: {doc['ratio']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="500 messages")
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--nats", default=DEFAULT_NATS)
    args = parser.parse_args(argv)
    if args.quick:
        args.messages = 500
    doc = run(args)
    if not common.emit(doc, args.json):
        render(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
