"""Ledger on PostgreSQL against SQLite, measured in one run: appends, verify, proofs.

Run: ``python bench/postgres.py`` (100,000 batched entries and 10,000 single-record appends per
mode on each backend; ``--quick`` for a tenth; ``--json`` for one JSON document; ``--postgres URL``
for another server, default the machine's own at 127.0.0.1:5432, database ``test``).

Both backends get the same records (``bench/ledger.py``'s realistic Intents) in the same phases:

1. batched appends: lists of ``--batch`` records, one group commit per list;
2. single-record appends from ``--tasks`` asyncio tasks, then from ``--threads`` threads, each
   waiting for its own commit, so that group commit batches them;
3. ``verify()`` of the whole ledger;
4. inclusion proofs at random indexes.

Durability is each store's own: SQLite ``synchronous=FULL`` (fsync per group commit) on a local
file; PostgreSQL's default ``synchronous_commit=on`` (WAL flushed per commit) on the server, over
a TCP connection to 127.0.0.1. The process is not pinned to one core: the server runs in its
own processes, and pinning the client would not make the two comparable. A schema is created for
the run and dropped after it.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _common as common
from ledger import Records, append_batched, append_tasks, append_threads

from answerable.ledger import open_ledger
from answerable.ledger._sql import SQLLedger
from answerable.ledger.postgres import drop_schema

GOAL_PG_APPENDS_PER_S = 10_000
"""Issue 9: at least 10,000 ledger appends per second on PostgreSQL with batching."""
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def measure(ledger: SQLLedger, args: argparse.Namespace) -> dict[str, Any]:
    records = Records(args.seed)
    batched = append_batched(ledger, records, args.entries, args.batch)  # type: ignore[arg-type]
    tasks = append_tasks(ledger, records, args.single, args.tasks)  # type: ignore[arg-type]
    threads = append_threads(ledger, records, args.single, args.threads)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    report = ledger.verify()
    verify_s = time.perf_counter() - t0
    rng = random.Random(args.seed)
    samples = []
    for _ in range(args.proofs):
        index = rng.randrange(report.size)
        t = time.perf_counter_ns()
        ledger.inclusion_proof(index)
        samples.append(time.perf_counter_ns() - t)
    return {
        "append": {"batched": batched, "tasks": tasks, "threads": threads},
        "verify": {"size": report.size, "verify_s": verify_s, "entries_per_s": report.size / verify_s},
        "inclusion_proof": common.summarize_ns(samples),
        "root": report.root.hex(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "postgres",
        "quick": args.quick,
        "machine": common.describe_machine(),
        "goal": {"postgres_batched_appends_per_s": GOAL_PG_APPENDS_PER_S},
        "config": {k: getattr(args, k) for k in ("entries", "batch", "single", "tasks", "threads", "proofs")},
    }
    base = Path(args.dir) if args.dir else None
    with tempfile.TemporaryDirectory(prefix="answerable-bench-", dir=base) as tmp:
        os.environ["ANSWERABLE_KEY_DIR"] = str(Path(tmp) / "keys")
        with open_ledger(Path(tmp) / "bench.db", create=True, origin="bench.example/sqlite") as lite:
            out["sqlite"] = {
                "durability": "SQLite WAL, synchronous=FULL (fsync per group commit)",
                "filesystem": common.filesystem_of(Path(tmp)),
                **measure(lite, args),
            }
        url = f"{args.postgres}?options=-csearch_path%3Dbench_{uuid.uuid4().hex[:12]}"
        try:
            with open_ledger(url, create=True, origin="bench.example/postgres") as pg:
                server = pg._read(lambda c: c.execute("SHOW server_version").fetchone()[0])
                sync = pg._read(lambda c: c.execute("SHOW synchronous_commit").fetchone()[0])
                out["postgres"] = {
                    "durability": f"PostgreSQL {server}, synchronous_commit={sync} (WAL flush per commit)",
                    **measure(pg, args),
                }
        finally:
            drop_schema(url)
    rate = out["postgres"]["append"]["batched"]["entries_per_s"]
    out["meets_goal"] = rate >= GOAL_PG_APPENDS_PER_S
    out["ratio_to_sqlite"] = {
        phase: out["postgres"]["append"][phase]["entries_per_s"]
        / out["sqlite"]["append"][phase]["entries_per_s"]
        for phase in ("batched", "tasks", "threads")
    }
    return out


def render(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="ledger appends, durable (entries/s)")
    table.add_column("phase")
    table.add_column("SQLite", justify="right")
    table.add_column("PostgreSQL", justify="right")
    table.add_column("PostgreSQL / SQLite", justify="right")
    for phase, what in (
        ("batched", f"lists of {doc['config']['batch']:,}"),
        ("tasks", f"{doc['config']['tasks']} asyncio tasks, one record each"),
        ("threads", f"{doc['config']['threads']} threads, one record each"),
    ):
        table.add_row(
            what,
            common.fmt_rate(doc["sqlite"]["append"][phase]["entries_per_s"]),
            common.fmt_rate(doc["postgres"]["append"][phase]["entries_per_s"]),
            f"{doc['ratio_to_sqlite'][phase]:.2f}x",
        )
    table.add_row(
        "verify (entries/s)",
        common.fmt_rate(doc["sqlite"]["verify"]["entries_per_s"]),
        common.fmt_rate(doc["postgres"]["verify"]["entries_per_s"]),
        "",
    )
    table.add_row(
        "inclusion proof p50",
        common.fmt_us(doc["sqlite"]["inclusion_proof"]["p50_us"]),
        common.fmt_us(doc["postgres"]["inclusion_proof"]["p50_us"]),
        "",
    )
    console.print(table)
    rate = doc["postgres"]["append"]["batched"]["entries_per_s"]
    verdict = "meets" if doc["meets_goal"] else "does NOT meet"
    console.print(
        f"goal: {GOAL_PG_APPENDS_PER_S:,}/s batched on PostgreSQL; measured {rate:,.0f}/s: {verdict}"
    )
    for name in ("sqlite", "postgres"):
        console.print(f"{name}: {doc[name]['durability']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--quick", action="store_true", help="a tenth of every size")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="server and database (no password, no schema)")
    parser.add_argument("--entries", type=int, default=100_000, help="batched entries per backend")
    parser.add_argument("--batch", type=int, default=1_000, help="records per batched append")
    parser.add_argument("--single", type=int, default=10_000, help="single-record appends per mode")
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--proofs", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="where to put the SQLite file (default: the system temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.entries, args.single, args.proofs = args.entries // 10, args.single // 10, args.proofs // 10
    doc = run(args)
    if not common.emit(doc, args.json):
        render(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
