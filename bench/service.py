"""Governed actions over HTTP: `answerable serve` called by 1, 4 and 16 agent processes, beside
the same actions through the gateway in one process, in one run.

Run: ``python bench/service.py`` (``--quick`` for a smoke run, ``--json`` for one JSON document).

What is measured: the system `answerable init` writes (the ``refund`` operation, Cedar rules that
see its arguments), each action a small refund that the rules allow, so every one is recorded
(Intent, Decision, Claim, Execution), decided, run and answered. Over HTTP each request is
signed (RFC 9421, Ed25519), its nonce stored durably, and the answer waits for the Execution.
Each client process submits its share one request at a time and times each; the figure is the
total over the wall time from the first request sent to the last answer received (the clients'
start-up is left out). Not pinned to one core: the
service and its clients are separate processes, as in use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

CLIENT = """
import json, sys, time
from answerable.client import Client
from answerable.keys import KeyPair
url, key_file, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
client = Client(url, KeyPair.load(key_file))
samples = []
first = time.time()
for n in range(start, start + count):
    t0 = time.perf_counter_ns()
    outcome = client.submit("refund", {"order": f"O-{n}", "amount_cents": 100}, idempotency_key=f"bench-{n}")
    samples.append(time.perf_counter_ns() - t0)
    if outcome["status"] != "succeeded":
        raise SystemExit(f"intent {n}: {outcome}")
print(json.dumps({"samples": samples, "first": first, "last": time.time()}))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _over_http(folder: Path, clients: int, actions: int) -> dict[str, Any]:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "answerable.cli",
            "serve",
            str(folder / "answerable.toml"),
            "--port",
            str(port),
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=folder,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if server.stderr is None or not any(line.startswith("answerable ready") for line in server.stderr):
            raise RuntimeError("serve did not start")
        share = actions // clients
        base = int(time.time() * 1000) * 1000  # unique orders per run of this folder
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CLIENT,
                    url,
                    str(folder / "agent.key"),
                    str(base + i * share),
                    str(share),
                ],
                stdout=subprocess.PIPE,
                cwd=folder,
                text=True,
            )
            for i in range(clients)
        ]
        samples: list[int] = []
        spans: list[tuple[float, float]] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"a client failed: {out[-400:]}")
            doc = json.loads(out)
            samples += doc["samples"]
            spans.append((doc["first"], doc["last"]))
        # From the first request sent to the last answer: client start-up (imports) left out.
        wall = max(last for _, last in spans) - min(first for first, _ in spans)
    finally:
        server.terminate()
        server.wait(timeout=60)
        if server.stderr is not None:
            server.stderr.close()
    return {
        "clients": clients,
        "actions": len(samples),
        "actions_per_s": len(samples) / wall,
        "latency": common.summarize_ns(samples),
    }


async def _in_process(folder: Path, actions: int) -> dict[str, Any]:
    """The same system's gateway, called in this process one action at a time."""
    from answerable.config import load_config
    from answerable.service import Service, SubmitBody

    service = Service(load_config(folder / "answerable.toml"))
    await service.start()
    try:
        samples = []
        started = time.perf_counter()
        for n in range(actions):
            body = SubmitBody(operation="refund", arguments={"order": f"P-{n}", "amount_cents": 100})
            t0 = time.perf_counter_ns()
            _, doc = await service.submit("refunds-agent", body)
            samples.append(time.perf_counter_ns() - t0)
            if doc["status"] != "succeeded":
                raise RuntimeError(f"in-process intent {n}: {doc}")
        wall = time.perf_counter() - started
    finally:
        await service.stop()
    return {"actions": actions, "actions_per_s": actions / wall, "latency": common.summarize_ns(samples)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from answerable.scaffold import init

    with tempfile.TemporaryDirectory(prefix="answerable-bench-service-") as tmp:
        folder = Path(tmp) / "shop"
        init(folder)
        in_process = asyncio.run(_in_process(folder, args.actions))
        http = [_over_http(folder, n, args.actions) for n in args.clients]
    return {
        "benchmark": "service",
        "quick": args.quick,
        "machine": common.describe_machine(),
        "cpus": os.cpu_count(),
        "in_process": in_process,
        "http": http,
    }


def render(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    m = doc["machine"]
    console.print(
        f"[bold]governed refunds over HTTP[/bold]  {m['cpu']}, Python {m['python']}, {doc['cpus']} CPUs"
    )
    table = Table(title="one allowed refund: recorded, decided, run, answered")
    for col in ("how", "actions", "actions/s", "p50", "p99"):
        table.add_column(col, justify="left" if col == "how" else "right")
    row = doc["in_process"]
    table.add_row(
        "in process, one at a time",
        str(row["actions"]),
        common.fmt_rate(row["actions_per_s"]),
        common.fmt_us(row["latency"]["p50_us"]),
        common.fmt_us(row["latency"]["p99_us"]),
    )
    for row in doc["http"]:
        table.add_row(
            f"HTTP, {row['clients']} client process(es)",
            str(row["actions"]),
            common.fmt_rate(row["actions_per_s"]),
            common.fmt_us(row["latency"]["p50_us"]),
            common.fmt_us(row["latency"]["p99_us"]),
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--actions", type=int, default=800, help="actions per configuration")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="client process counts")
    args = parser.parse_args(argv)
    if args.quick:
        args.actions, args.clients = 32, [1, 4]
    doc = run(args)
    if not common.emit(doc, args.json):
        render(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
