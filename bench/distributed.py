"""End-to-end governed actions with agents as separate processes: 1, 2 and 4 refunder processes,
beside the same refunds submitted straight to the service, in one run.

Run: ``python bench/distributed.py`` (``--quick`` for 60 orders, else 300; ``--json``).

The system is ``answerable init``'s, with the ledger on PostgreSQL (a schema per phase) and NATS
JetStream (a stream per phase, deleted after), both the machine's own servers. Per order: an event
is recorded and published; ``intake`` (its own process) hears it and sends a signed message
through the service, which records and publishes it; a ``refunder`` process (1, 2 or 4 replicas
of one group) hears that and proposes the ``refund`` intent through the service, which decides,
records and executes it. The figure is orders over the time from the first event sent to the last
refund's effect seen. The baseline sends the same refunds as intents from one client process to
the same kind of service (no bus, no agents): what the distributed path adds is the difference.
Not pinned: the service, the agents and the servers are separate processes, as in use.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _common as common
import orjson

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_NATS = "nats://127.0.0.1:4222"
CLI = [sys.executable, "-m", "answerable.cli"]

AGENTS = """
from answerable.runtime import Agent


class Intake(Agent):
    name = "intake"
    subscriptions = ("orders",)

    async def handle(self, record, ctx):
        p = record.payload
        await ctx.send("refunds", "refund.request", {"order": p["order"], "amount_cents": p["amount_cents"]},
                       causes=[record.id])


class Refunder(Agent):
    name = "refunder"
    subscriptions = ("refunds",)

    async def handle(self, record, ctx):
        await ctx.propose("refund", dict(record.payload), causes=[record.id],
                          idempotency_key=f"refund-{record.id}")
"""

TABLES = """
[nats]
url = "{nats}"

[agents.intake]
class = "agents:Intake"
key = "keys/intake.key"

[agents.refunder]
class = "agents:Refunder"
key = "keys/refunder.key"
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _system(root: Path, pg: str, nats: str) -> tuple[Path, str, str, int]:
    """A fresh system folder wired to a new schema; (folder, ledger URL, system name, port)."""
    from answerable.charter import new_charter
    from answerable.keys import KeyPair
    from answerable.scaffold import init

    folder = root / uuid.uuid4().hex[:8]
    init(folder)
    ri, reviewer = KeyPair.load(folder / "ri.key"), KeyPair.load(folder / "reviewer.key")
    keys = {name: KeyPair.generate(name) for name in ("intake", "refunder")}
    (folder / "keys").mkdir()
    for name, key in keys.items():
        key.save(folder / "keys" / f"{name}.key")
    system = f"bench-{uuid.uuid4().hex[:8]}"
    charter = new_charter(
        system,
        ri,
        agents=list(keys),
        reviewers=[reviewer],
        agent_keys={n: k.public_b64 for n, k in keys.items()},
    )
    (folder / "charter.json").write_text(orjson.dumps(charter.model_dump(mode="json")).decode())
    (folder / "agents.py").write_text(AGENTS)
    url = f"{pg}?options=-csearch_path%3Dbench_{uuid.uuid4().hex[:12]}"
    port = _free_port()
    config = (folder / "answerable.toml").read_text()
    config = config.replace('path = "ledger.db"', f'url = "{url}"').replace("port = 8470", f"port = {port}")
    (folder / "answerable.toml").write_text(config + TABLES.format(nats=nats))
    return folder, url, system, port


def _start(args: list[str], folder: Path, ready: str, stream: str = "stderr") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*CLI, *args], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pipe = proc.stderr if stream == "stderr" else proc.stdout
    assert pipe is not None
    for line in pipe:
        if ready in line:
            return proc
    raise RuntimeError(f"{args[0]} did not start: {proc.stderr.read() if proc.stderr else ''}")


def _effects(folder: Path) -> int:
    path = folder / "effects.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _wait_effects(folder: Path, n: int, seconds: float = 600.0) -> float:
    deadline = time.monotonic() + seconds
    while _effects(folder) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {_effects(folder)} of {n} refunds after {seconds:g} s")
        time.sleep(0.005)
    return time.time()


async def _send(url: str, key_file: Path, events: list[dict[str, Any]], intents: bool) -> float:
    from answerable.client import AsyncClient
    from answerable.keys import KeyPair

    async with AsyncClient(url, KeyPair.load(key_file)) as client:
        first = time.time()
        if intents:
            sem = asyncio.Semaphore(16)

            async def one(e: dict[str, Any]) -> None:
                async with sem:
                    await client.submit(
                        "refund", e["payload"], idempotency_key=f"direct-{e['payload']['order']}"
                    )

            await asyncio.gather(*(one(e) for e in events))
        else:
            for start in range(0, len(events), 50):
                await client.ingest(events[start : start + 50])
    return first


def phase(root: Path, pg: str, nats: str, n: int, replicas: int | None) -> dict[str, Any]:
    """One measured phase; ``replicas`` None is the baseline (intents straight to the service)."""
    from answerable.bus.nats import NatsBus
    from answerable.ledger.postgres import drop_schema

    folder, url, system, port = _system(root, pg, nats)
    procs: list[subprocess.Popen[str]] = []
    events = [
        {
            "topic": "orders",
            "source": "shop",
            "type": "order.returned",
            "payload": {"order": f"O-{k}", "amount_cents": 1000},
        }
        for k in range(n)
    ]
    try:
        procs.append(_start(["serve", "answerable.toml"], folder, "answerable ready on"))
        service = f"http://127.0.0.1:{port}"
        if replicas is None:
            first = asyncio.run(_send(service, folder / "keys" / "refunder.key", events, intents=True))
        else:
            procs.append(_start(["agent", "answerable.toml", "intake"], folder, "listening", "stdout"))
            for _ in range(replicas):
                procs.append(_start(["agent", "answerable.toml", "refunder"], folder, "listening", "stdout"))
            first = asyncio.run(_send(service, folder / "keys" / "intake.key", events, intents=False))
        last = _wait_effects(folder, n)
    finally:
        _stop(procs)

        async def drop() -> None:
            bus = await NatsBus.connect(nats, system)
            await bus.delete_stream()
            await bus.close()

        asyncio.run(drop())
        drop_schema(url)
    wall = last - first
    return {
        "orders": n,
        "agent_processes": None if replicas is None else 1 + replicas,
        "wall_s": wall,
        "per_s": n / wall,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "distributed",
        "quick": args.quick,
        "machine": common.describe_machine(),
    }
    with tempfile.TemporaryDirectory(prefix="answerable-bench-") as tmp:
        os.environ["ANSWERABLE_KEY_DIR"] = str(Path(tmp) / "ledger-keys")
        root = Path(tmp)
        out["baseline"] = phase(root, args.postgres, args.nats, args.orders, None)
        out["agents"] = {str(k): phase(root, args.postgres, args.nats, args.orders, k) for k in (1, 2, 4)}
    return out


def render(doc: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console()
    b = doc["baseline"]
    console.print(
        f"baseline, {b['orders']} refund intents from one client (16 in flight) to the service: "
        f"{b['per_s']:,.1f}/s"
    )
    for k, r in doc["agents"].items():
        ratio = r["per_s"] / b["per_s"]
        console.print(
            f"intake + {k} refunder process(es), event -> signed message -> intent -> refund: "
            f"{r['per_s']:,.1f} orders/s ({r['orders']} in {r['wall_s']:.1f} s; {ratio:.2f}x the baseline)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="60 orders")
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--nats", default=DEFAULT_NATS)
    args = parser.parse_args(argv)
    if args.quick:
        args.orders = 60
    doc = run(args)
    if not common.emit(doc, args.json):
        render(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
