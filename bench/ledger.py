"""Ledger: durable append throughput, full verification, and proof latency of SQLiteLedger.

Run: ``python bench/ledger.py`` (1,000,000 entries; ``--entries N`` to change it, ``--quick`` for
20,000, ``--json`` for one JSON document). The process pins itself to one CPU, as
``governed_call.py`` does, so the writer thread and the appenders share one core.
``--ledger PATH --repeat N`` skips building: it verifies an existing ledger file N times, each
next to a fresh hashlib rate (phase 3 alone), to compare versions of verify on one file.

Phases, in order, all against one ledger file in a temp directory:

1. batched appends: lists of ``--batch`` realistic Intent records (about 400 canonical bytes
   each), one group commit per list, until the ledger holds ``--entries`` less the next phase;
2. concurrent single-record appends: ``--tasks`` asyncio tasks and ``--threads`` threads, each
   appending one record at a time, so that group commit batches them;
3. ``verify()`` over the whole ledger, next to the raw SHA-256 rate of this machine and the
   lower bound it implies (N leaf hashes + N-1 node hashes), and the floor of any verify that
   checks the tree (raw ``sqlite3`` and ``hashlib``: rows read, leaf hashes, tree, stored nodes),
   alone and with one ``orjson`` parse per entry (see :func:`verify_floor`);
4. inclusion and consistency proofs at random indexes and sizes, a sample checked with
   ``answerable.ledger.verify_inclusion`` / ``verify_consistency``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common as common

from answerable.clock import FakeClock, IdSource, rfc3339
from answerable.ledger import SQLiteLedger, leaf_hash, verify_consistency, verify_inclusion
from answerable.records import Intent, entry_bytes

GOAL_APPENDS_PER_S = 20_000
GOAL_VERIFY_1M_S = 10.0
GOAL_PROOF_P99_US = 1_000.0
GOAL_VERIFY_X_LOWER_BOUND = 3.0
"""Issue 13: full verify within 3x the hashlib lower bound measured in the same run."""
REGIONS = ("north-1", "north-3", "south-2", "east-4", "west-1")
CLASSES = ("medical", "retail", "industrial")
CARRIERS = ("nordfreight", "baltic-express", "alpine-cargo", "rhine-logistics")


class Records:
    """Realistic Intent records, built the way the gateway builds them (validated pydantic models)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = FakeClock()
        self.ids = IdSource(self.clock, random.Random(seed + 1))
        self.n = 0

    def one(self) -> Intent:
        rng = self.rng
        self.n += 1
        self.clock.ns += rng.randrange(50_000, 2_000_000)
        intent_id = self.ids.new()
        return Intent(
            id=intent_id,
            at=rfc3339(self.clock.now_ns()),
            causes=(self.ids.new(),),
            agent=f"dispatcher-{rng.choice(REGIONS)}",
            operation="carrier.book",
            arguments={
                "shipment": f"S-{self.n:08d}",
                "carrier": rng.choice(CARRIERS),
                "cls": rng.choice(CLASSES),
                "region": rng.choice(REGIONS),
                "weight_kg": rng.randrange(10, 24_000),
                "value_cents": rng.randrange(1_000, 10_000_000),
            },
            idempotency_key=intent_id,
        )

    def many(self, n: int) -> list[Intent]:
        return [self.one() for _ in range(n)]


# --- appends --------------------------------------------------------------------------------------


def append_batched(ledger: SQLiteLedger, records: Records, total: int, batch: int) -> dict[str, Any]:
    """Append ``total`` records in lists of ``batch``; only the append calls are timed."""
    appending = 0.0
    building = 0.0
    done = 0
    started = time.perf_counter()
    while done < total:
        t0 = time.perf_counter()
        chunk = records.many(min(batch, total - done))
        t1 = time.perf_counter()
        ledger.append_sync(chunk)
        appending += time.perf_counter() - t1
        building += t1 - t0
        done += len(chunk)
    return {
        "entries": done,
        "batch": batch,
        "append_s": appending,
        "build_records_s": building,
        "wall_s": time.perf_counter() - started,
        "entries_per_s": done / appending if appending else 0.0,
    }


async def _append_tasks(ledger: SQLiteLedger, chunk: list[Intent], tasks: int) -> list[int]:
    samples: list[int] = []
    it = iter(chunk)
    clock = time.perf_counter_ns

    async def appender() -> None:
        for record in it:
            t0 = clock()
            await ledger.append([record])
            samples.append(clock() - t0)

    async with asyncio.TaskGroup() as group:
        for _ in range(tasks):
            group.create_task(appender())
    return samples


def append_tasks(ledger: SQLiteLedger, records: Records, n: int, tasks: int) -> dict[str, Any]:
    chunk = records.many(n)
    t0 = time.perf_counter()
    samples = asyncio.run(_append_tasks(ledger, chunk, tasks))
    wall = time.perf_counter() - t0
    return {
        "entries": n,
        "tasks": tasks,
        "wall_s": wall,
        "entries_per_s": n / wall,
        "latency": common.summarize_ns(samples),
    }


def append_threads(ledger: SQLiteLedger, records: Records, n: int, threads: int) -> dict[str, Any]:
    chunk = records.many(n)
    lock = threading.Lock()
    it = iter(chunk)
    samples: list[int] = []
    clock = time.perf_counter_ns

    def appender() -> None:
        mine = []
        while True:
            with lock:
                record = next(it, None)
            if record is None:
                break
            t0 = clock()
            ledger.append_sync([record])
            mine.append(clock() - t0)
        with lock:
            samples.extend(mine)

    workers = [threading.Thread(target=appender, name=f"appender-{k}") for k in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    return {
        "entries": n,
        "threads": threads,
        "wall_s": wall,
        "entries_per_s": n / wall,
        "latency": common.summarize_ns(samples),
    }


# --- verification ---------------------------------------------------------------------------------


def hash_rates(sample_leaf: bytes, seconds: float) -> dict[str, Any]:
    """SHA-256 rate of this machine on leaf-sized and node-sized inputs, as verify() hashes them."""
    sha256 = hashlib.sha256
    leaf_input = b"\x00" + sample_leaf
    node_input = b"\x01" + bytes(64)

    def rate(data: bytes) -> float:
        n = 0
        deadline = time.perf_counter() + seconds
        t0 = time.perf_counter()
        while time.perf_counter() < deadline:
            for _ in range(10_000):
                sha256(data).digest()
            n += 10_000
        return n / (time.perf_counter() - t0)

    return {
        "leaf_input_bytes": len(leaf_input),
        "node_input_bytes": len(node_input),
        "leaf_hashes_per_s": rate(leaf_input),
        "node_hashes_per_s": rate(node_input),
    }


_FLOOR_BATCH = 256
"""Rows per fetch in the floor, as ``verify()`` reads them (see ``SQLView.leaves``)."""


def verify_floor(path: Path, lower_bound_s: float) -> dict[str, Any]:
    """What any verify that checks the tree must do, by raw ``sqlite3`` and ``hashlib``, no
    answerable code: read every entry's index, bytes and leaf hash in index order, check the
    indexes run without a gap and each leaf hash is the hash of the bytes, recompute every tree
    level, and compare each stored node with it. Beside it, the cheapest parse that can check an
    entry's id, kind and causes against the index: ``orjson.loads`` of every entry's bytes (the
    parse ``verify()`` makes).

    ``verify()`` does all of this and checks the parsed id, kind and causes against the index
    rows and the causes table, and blobs; ``floor_s`` is a lower bound of any verify that keeps
    the tree check, ``floor_s + parse_s`` of one that also parses each entry as it does. The parse
    runs in the same pass over the rows, timed batch by batch, and is not counted in the floor.
    """
    import sqlite3

    import orjson

    digest = type(hashlib.sha256()).digest
    node_prefix = hashlib.sha256(b"\x01")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute("BEGIN")  # one snapshot, as verify() reads
        t0 = time.perf_counter()
        cur = conn.execute("SELECT idx, data, leaf_hash FROM entries ORDER BY idx")
        leaves: list[bytes] = []
        parse_s = 0.0
        clock = time.perf_counter
        bodies: list[Any] = []
        while rows := cur.fetchmany(_FLOOR_BATCH):
            indexes, datas, stored = zip(*rows, strict=True)
            parsing = clock()
            del bodies  # freeing the parsed entries is the parse's cost, not the floor's
            bodies = list(map(orjson.loads, datas))
            parse_s += clock() - parsing
            start = len(leaves)
            if indexes != tuple(range(start, start + len(rows))) or stored != tuple(
                map(digest, map(hashlib.sha256, map(b"\x00".__add__, datas)))
            ):
                raise RuntimeError(f"the floor found a fault in entries {start}..: verify() should have too")
            leaves.extend(stored)
        t1 = time.perf_counter()
        levels = [leaves]
        while len(levels[-1]) >= 2:
            level, parents = iter(levels[-1]), []
            for left, right in zip(level, level, strict=False):
                state = node_prefix.copy()
                state.update(left)
                state.update(right)
                parents.append(state.digest())
            levels.append(parents)
        t2 = time.perf_counter()
        for height in range(1, len(levels)):
            cur = conn.execute("SELECT i, hash FROM nodes WHERE level = ? ORDER BY i", (height,))
            start = 0
            while rows := cur.fetchmany(1024):
                stop = start + len(rows)
                if rows != list(zip(range(start, stop), levels[height][start:stop], strict=True)):
                    raise RuntimeError(f"the floor found a stored node that differs at level {height}")
                start = stop
        t3 = time.perf_counter()
        conn.execute("COMMIT")
    finally:
        conn.close()
    from answerable.ledger import merkle  # after the timed part: only to check it is verify()'s tree

    read_s = t1 - t0 - parse_s
    floor = read_s + (t2 - t1) + (t3 - t2)
    return {
        "size": len(leaves),
        "root": merkle.root_hash(len(leaves), lambda height, k: levels[height][k]).hex(),
        "read_and_leaf_hashes_s": read_s,
        "tree_s": t2 - t1,
        "stored_nodes_s": t3 - t2,
        "floor_s": floor,
        "floor_x_lower_bound": floor / lower_bound_s if lower_bound_s else 0.0,
        "parse_s": parse_s,
        "floor_and_parse_s": floor + parse_s,
        "floor_and_parse_x_lower_bound": (floor + parse_s) / lower_bound_s if lower_bound_s else 0.0,
    }


def verify_ledger(ledger: SQLiteLedger, hashes: dict[str, Any]) -> dict[str, Any]:
    t0, cpu = time.perf_counter(), time.process_time()
    report = ledger.verify()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    n = report.size
    lower = n / hashes["leaf_hashes_per_s"] + max(n - 1, 0) / hashes["node_hashes_per_s"]
    floor = verify_floor(ledger.path, lower)
    if (floor["size"], floor["root"]) != (n, report.root.hex()):
        raise RuntimeError(f"the floor's tree ({floor['size']:,} entries) is not the one verify() computed")
    return {
        "floor": floor,
        "size": n,
        "verify_s": seconds,
        "verify_cpu_s": cpu,
        "entries_per_s": n / seconds,
        "hash_lower_bound_s": lower,
        "x_lower_bound": seconds / lower if lower else 0.0,
        "extrapolated_1m_s": seconds * 1_000_000 / n if n else 0.0,
        "root": report.root.hex(),
    }


def verify_existing(args: argparse.Namespace) -> dict[str, Any]:
    """Phase 3 alone, ``--repeat`` times, on a ledger built earlier (``--ledger``).

    Each run measures the hashlib rate again just before it: on a shared machine the rate moves
    with the load, and the ratio is only honest against the rate of its own moment.
    """
    pinning = common.pin_to_one_core(0) if args.pin else {"pinned": False, "cpus": None, "note": "--no-pin"}
    ledger = SQLiteLedger.open(Path(args.ledger))
    try:
        sample = ledger.entry(0).data
        runs = []
        for _ in range(args.repeat):
            hashes = hash_rates(sample, args.hash_seconds)
            runs.append(verify_ledger(ledger, hashes))
    finally:
        ledger.close()
    best = min(runs, key=lambda r: r["x_lower_bound"])
    return {
        "benchmark": "ledger-verify",
        "machine": {**common.describe_machine(), **pinning},
        "runs": runs,
        "best": best,
    }


def _floor_rows(v: dict[str, Any]) -> list[tuple[str, str]]:
    """The verify floor's rows: what any verify that checks the tree costs, and with one parse."""
    f = v["floor"]
    return [
        (
            "floor, raw sqlite3 + hashlib: rows read and leaf hashes checked, tree, stored nodes",
            f"{f['read_and_leaf_hashes_s']:.2f} + {f['tree_s']:.2f} + {f['stored_nodes_s']:.2f} s",
        ),
        ("  floor / lower bound", f"{f['floor_s']:.2f} s = {f['floor_x_lower_bound']:.1f}x"),
        (
            "  floor + one orjson parse per entry",
            f"{f['floor_and_parse_s']:.2f} s = {f['floor_and_parse_x_lower_bound']:.1f}x",
        ),
        (
            "  verify() beyond these: index, causes and blob checks",
            f"{v['verify_s'] - f['floor_and_parse_s']:.2f} s",
        ),
        (
            f"  goal within {GOAL_VERIFY_X_LOWER_BOUND:g}x for a verify that parses each entry",
            "within reach"
            if f["floor_and_parse_x_lower_bound"] <= GOAL_VERIFY_X_LOWER_BOUND
            else "out of reach",
        ),
    ]


def render_existing(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(title=f"full verify of {doc['best']['size']:,} entries, {len(doc['runs'])} runs")
    for col in (
        "run",
        "verify",
        "of it CPU",
        "hash lower bound",
        "verify / lower bound",
        "floor / lower bound",
        "floor + parse / lower bound",
        "extrapolated to 1M",
    ):
        table.add_column(col, justify="right")
    for k, r in enumerate(doc["runs"], 1):
        table.add_row(
            str(k),
            f"{r['verify_s']:.2f} s",
            f"{r['verify_cpu_s']:.2f} s",
            f"{r['hash_lower_bound_s']:.2f} s",
            f"{r['x_lower_bound']:.1f}x",
            f"{r['floor']['floor_x_lower_bound']:.1f}x",
            f"{r['floor']['floor_and_parse_x_lower_bound']:.1f}x",
            f"{r['extrapolated_1m_s']:.1f} s",
        )
    console.print(table)


# --- proofs ---------------------------------------------------------------------------------------


def proofs(ledger: SQLiteLedger, count: int, check: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    n = ledger.size()
    clock = time.perf_counter_ns

    indexes = [rng.randrange(n) for _ in range(count)]
    inclusion_samples = []
    inclusion = []
    for i in indexes:
        t0 = clock()
        proof = ledger.inclusion_proof(i, n)
        inclusion_samples.append(clock() - t0)
        inclusion.append(proof)

    pairs = []
    for _ in range(count):
        a, b = sorted(rng.sample(range(1, n + 1), 2)) if n > 1 else (1, 1)
        pairs.append((a, b))
    consistency_samples = []
    consistency = []
    for a, b in pairs:
        t0 = clock()
        proof = ledger.consistency_proof(a, b)
        consistency_samples.append(clock() - t0)
        consistency.append(proof)

    root = ledger.root(n)
    checked_inclusion = 0
    for k in rng.sample(range(count), min(check, count)):
        i = indexes[k]
        verify_inclusion(i, n, leaf_hash(ledger.entry(i).data), inclusion[k], root)
        checked_inclusion += 1
    checked_consistency = 0
    for k in rng.sample(range(count), min(check, count)):
        a, b = pairs[k]
        verify_consistency(a, b, consistency[k], ledger.root(a), ledger.root(b))
        checked_consistency += 1
    return {
        "size": n,
        "inclusion": {
            "count": count,
            "latency": common.summarize_ns(inclusion_samples),
            "mean_proof_hashes": sum(map(len, inclusion)) / count,
            "verified_sample": checked_inclusion,
        },
        "consistency": {
            "count": count,
            "latency": common.summarize_ns(consistency_samples),
            "mean_proof_hashes": sum(map(len, consistency)) / count,
            "verified_sample": checked_consistency,
        },
    }


# --- the run --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    pinning = common.pin_to_one_core(0) if args.pin else {"pinned": False, "cpus": None, "note": "--no-pin"}
    records = Records(args.seed)
    sample = entry_bytes(Records(args.seed).one())
    concurrent_each = min(args.concurrent, args.entries // 4)
    batched_total = args.entries - 2 * concurrent_each
    base = Path(args.dir) if args.dir else None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="answerable-bench-", dir=base) as tmp:
        path = Path(tmp) / "bench.db"
        ledger = SQLiteLedger.open(path, create=True, origin="bench.example/ledger")
        try:
            batched = append_batched(ledger, records, batched_total, args.batch)
            tasks = append_tasks(ledger, records, concurrent_each, args.tasks)
            threads = append_threads(ledger, records, concurrent_each, args.threads)
            build_s = time.perf_counter() - started
            sizes = [len(e.data) for e in ledger.entries(0, min(ledger.size(), 2_000))]
            file_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir() if p.name.startswith("bench.db"))
            hashes = hash_rates(sample, args.hash_seconds)
            verified = verify_ledger(ledger, hashes)
            proved = proofs(ledger, args.proofs, args.check, args.seed)
        finally:
            ledger.close()
        filesystem = common.filesystem_of(Path(tmp))
    return {
        "benchmark": "ledger",
        "quick": args.quick,
        "machine": {**common.describe_machine(), **pinning},
        "ledger": {
            "entries": verified["size"],
            "mean_entry_bytes": sum(sizes) / len(sizes),
            "file_bytes": file_bytes,
            "filesystem": filesystem,
            "durability": "SQLite WAL, synchronous=FULL, one fsync per group commit",
            "build_s": build_s,
        },
        "goals": {
            "appends_per_s": GOAL_APPENDS_PER_S,
            "verify_1m_s": GOAL_VERIFY_1M_S,
            "proof_p99_us": GOAL_PROOF_P99_US,
            "verify_x_lower_bound": GOAL_VERIFY_X_LOWER_BOUND,
        },
        "append": {"batched": batched, "tasks": tasks, "threads": threads},
        "hashlib": hashes,
        "verify": verified,
        "proofs": proved,
    }


def render(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    m, led, goals = doc["machine"], doc["ledger"], doc["goals"]
    console.print(
        f"[bold]ledger[/bold]  {m['cpu']}, Python {m['python']}, SQLite {m['sqlite']}; "
        f"{'pinned to ONE core: CPU ' + str(m['cpus']) if m['pinned'] else 'not pinned (' + m['note'] + ')'}"
    )
    console.print(
        f"{led['entries']:,} entries, mean {led['mean_entry_bytes']:.0f} B canonical, file "
        f"{led['file_bytes'] / 1e6:,.0f} MB on {led['filesystem']} ({led['durability']}); "
        f"built in {led['build_s']:.1f} s"
    )

    def ok(good: bool) -> str:
        return "[green]meets[/green]" if good else "[red]misses[/red]"

    us = common.fmt_us
    a = doc["append"]
    table = Table(title="append throughput (durable)")
    for col in ("how", "entries", "entries/s", "p50", "p99", "max", f"goal >= {goals['appends_per_s']:,}/s"):
        table.add_column(col, justify="left" if col == "how" else "right")
    b = a["batched"]
    table.add_row(
        f"lists of {b['batch']:,}, one commit each",
        f"{b['entries']:,}",
        common.fmt_rate(b["entries_per_s"]),
        "-",
        "-",
        "-",
        ok(b["entries_per_s"] >= goals["appends_per_s"]),
    )
    for key, label in (("tasks", "asyncio tasks"), ("threads", "threads")):
        r = a[key]
        table.add_row(
            f"{r[key]} {label}, 1 record each call",
            f"{r['entries']:,}",
            common.fmt_rate(r["entries_per_s"]),
            us(r["latency"]["p50_us"]),
            us(r["latency"]["p99_us"]),
            us(r["latency"]["max_us"]),
            ok(r["entries_per_s"] >= goals["appends_per_s"]),
        )
    console.print(table)
    console.print(
        f"  (batched: {b['append_s']:.1f} s in append calls, {b['build_records_s']:.1f} s building "
        "the pydantic records, not counted)"
    )

    v, h = doc["verify"], doc["hashlib"]
    table = Table(title="full verify")
    for col in ("what", "figure"):
        table.add_column(col, justify="left" if col == "what" else "right")
    table.add_row(f"verify() of {v['size']:,} entries", f"{v['verify_s']:.2f} s")
    table.add_row("  entries/s", common.fmt_rate(v["entries_per_s"]))
    table.add_row("  extrapolated to 1,000,000 entries", f"{v['extrapolated_1m_s']:.2f} s")
    table.add_row(
        f"  goal: 1M < {goals['verify_1m_s']:.0f} s", ok(v["extrapolated_1m_s"] < goals["verify_1m_s"])
    )
    table.add_row(
        f"hashlib SHA-256, {h['leaf_input_bytes']} B leaf inputs", f"{h['leaf_hashes_per_s']:,.0f}/s"
    )
    table.add_row(
        f"hashlib SHA-256, {h['node_input_bytes']} B node inputs", f"{h['node_hashes_per_s']:,.0f}/s"
    )
    table.add_row(
        f"lower bound: {v['size']:,} leaf + {max(v['size'] - 1, 0):,} node hashes",
        f"{v['hash_lower_bound_s']:.2f} s",
    )
    table.add_row("verify() / lower bound", f"{v['x_lower_bound']:.1f}x")
    table.add_row(
        f"  goal: within {goals['verify_x_lower_bound']:g}x",
        ok(v["x_lower_bound"] <= goals["verify_x_lower_bound"]),
    )
    for label, figure in _floor_rows(v):
        table.add_row(label, figure)
    console.print(table)

    p = doc["proofs"]
    table = Table(title=f"proofs at size {p['size']:,}")
    for col in ("proof", "count", "p50", "p99", "max", "mean hashes", "verified sample", "goal p99 < 1 ms"):
        table.add_column(col, justify="left" if col == "proof" else "right")
    for key in ("inclusion", "consistency"):
        r = p[key]
        table.add_row(
            key,
            f"{r['count']:,}",
            us(r["latency"]["p50_us"]),
            us(r["latency"]["p99_us"]),
            us(r["latency"]["max_us"]),
            f"{r['mean_proof_hashes']:.1f}",
            f"{r['verified_sample']:,} ok",
            ok(r["latency"]["p99_us"] < goals["proof_p99_us"]),
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--quick", action="store_true", help="20,000 entries, fewer proofs")
    parser.add_argument("--entries", type=int, default=1_000_000, help="ledger size to build")
    parser.add_argument("--batch", type=int, default=1_000, help="records per batched append")
    parser.add_argument("--concurrent", type=int, default=20_000, help="single-record appends per mode")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent asyncio appenders")
    parser.add_argument("--threads", type=int, default=16, help="concurrent appender threads")
    parser.add_argument("--proofs", type=int, default=2_000, help="proofs of each kind")
    parser.add_argument("--check", type=int, default=200, help="proofs of each kind to verify")
    parser.add_argument("--hash-seconds", type=float, default=0.5, help="time per hashlib rate probe")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin to one CPU")
    parser.add_argument("--dir", help="where to put the ledger (default: the system temp dir)")
    parser.add_argument("--ledger", help="verify this existing ledger file instead of building one")
    parser.add_argument("--repeat", type=int, default=3, help="verify runs with --ledger")
    args = parser.parse_args(argv)
    if args.ledger:
        doc = verify_existing(args)
        if not common.emit(doc, args.json):
            render_existing(doc)
        return 0
    if args.quick:
        args.entries, args.concurrent, args.proofs, args.check = 20_000, 2_000, 500, 50
        args.hash_seconds = 0.1
    if args.entries < 8:
        parser.error("--entries must be at least 8")
    doc = run(args)
    if not common.emit(doc, args.json):
        render(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
