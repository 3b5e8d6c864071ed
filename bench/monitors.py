"""Monitor evaluation overhead per ledger entry, on a stream shaped like the storm's.

Measures ``Monitors.observe`` (the incremental update every entry goes through) for the
reference configuration, against the cost of just decoding the entry's canonical JSON, which
every reader of the ledger pays anyway. Run: ``python bench/monitors.py [--entries N] [--json]``.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

import orjson
from _common import describe_machine, emit, pin_to_one_core

from answerable.clock import FakeClock, IdSource, rfc3339
from answerable.logistics.scenario import MONITORS
from answerable.monitors import Monitors, load_monitors
from answerable.records import Decision, ExternalEvent, Message, entry_bytes


def stream(n: int, seed: int = 1) -> list[bytes]:
    """Entries in the storm's proportions: deliveries, plan messages and decisions."""
    rng = random.Random(seed)
    clock = FakeClock()
    ids = IdSource(clock, rng=random.Random(seed))
    out = []
    for k in range(n):
        at = rfc3339(clock.ns + k * 1_000_000)
        roll = rng.random()
        if roll < 0.6:
            cls = "medical" if rng.random() < 0.1 else "retail"
            record: ExternalEvent | Message | Decision = ExternalEvent(
                id=ids.new(),
                at=at,
                source="carrier",
                type="delivery",
                payload={
                    "customer": "S-1",
                    "class": cls,
                    "orders": ["O1", "O2"],
                    "on_time": [True, rng.random() > 0.01],
                },
            )
        elif roll < 0.8:
            record = Message(
                id=ids.new(),
                at=at,
                sender="router",
                topic="routes",
                type="route.plan",
                payload={"n": k},
                trace_id="t",
            )
        else:
            record = Decision(
                id=ids.new(),
                at=at,
                intent_id="i",
                effect="allow",
                policy_ids=("p",),
                ruleset_id=None,
                ruleset_hash="h",
                schema_hash="s",
                request={
                    "action": {"type": "Action", "id": "carrier.book"},
                    "context": {"disruption": False},
                },
                entities=({"uid": {"type": "Agent", "id": "executor"}, "attrs": {}, "parents": []},),
            )
        out.append(entry_bytes(record))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pinned = pin_to_one_core()
    data = stream(args.entries)
    known = {"resource_class:medical", "operation:inventory.reallocate"}
    config = load_monitors(Path(MONITORS), known_scopes=known)
    monitors = Monitors(config, ledger=None, clock=FakeClock(), ids=IdSource())  # type: ignore[arg-type]

    started = time.perf_counter_ns()
    decoded = [orjson.loads(d) for d in data]
    decode_ns = time.perf_counter_ns() - started
    started = time.perf_counter_ns()
    breaches = 0
    for entry in decoded:
        breaches += len(monitors.observe(entry))
    observe_ns = time.perf_counter_ns() - started
    n = len(data)
    result: dict[str, Any] = {
        "machine": describe_machine(),
        "pinned": pinned,
        "entries": n,
        "monitors": [m.name for m in config.monitors],
        "decode_us_per_entry": decode_ns / n / 1000,
        "observe_us_per_entry": observe_ns / n / 1000,
        "entries_per_second": n / (observe_ns / 1e9),
        "breaches": breaches,
    }
    if emit(result, args.json):
        return
    machine = result["machine"]
    rate = result["entries_per_second"]
    print(f"monitors  {machine['cpu']}, Python {machine['python']}; {pinned['note']}")
    print(f"{n:,} entries, {len(config.monitors)} monitors from {Path(MONITORS).name}:")
    print(f"  {', '.join(result['monitors'])}")
    print(f"  decode canonical JSON : {result['decode_us_per_entry']:.2f} us/entry (any reader pays it)")
    print(f"  monitor evaluation    : {result['observe_us_per_entry']:.2f} us/entry ({rate:,.0f} entries/s)")
    print(f"  breaches found        : {breaches} (latched: one per monitor until a person resumes)")


if __name__ == "__main__":
    main()
