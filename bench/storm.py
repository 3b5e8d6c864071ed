"""The storm in one process against the storm with its agents in processes of their own, in one
run: the same seed, mode and days, wall time each, and whether the outcome tables are equal.

Run: ``python bench/storm.py [--seed 11] [--mode governed] [--days 7] [--json]``.

The distributed run uses the machine's NATS (127.0.0.1:4222) and PostgreSQL (127.0.0.1:5432, the
``test`` database): a schema and a stream of its own, the stream deleted after, the schema
dropped after. Not pinned: six processes (driver, gateway and four agents) and the servers share
the machine's cores, as in use. What the difference buys: the agents' isolation (one process, one
key, one NATS login each), a gateway that can be killed and started again, and a ledger any
process can read; what it costs is here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from answerable.ledger.postgres import drop_schema
from answerable.logistics.distributed import DistributedStormRun
from answerable.logistics.scenario import run
from answerable.logistics.world import ScenarioConfig

PG = os.environ.get("ANSWERABLE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
NATS = os.environ.get("ANSWERABLE_TEST_NATS", "nats://127.0.0.1:4222")


async def measure(seed: int, mode: Any, days: int) -> dict[str, Any]:
    config = ScenarioConfig.model_validate({**ScenarioConfig().model_dump(), "days": days})
    with tempfile.TemporaryDirectory(prefix="answerable-bench-storm-") as folder:
        os.environ.setdefault("ANSWERABLE_KEY_DIR", str(Path(folder) / "keys"))
        started = time.perf_counter()
        here = await run(mode, seed, config, Path(folder) / "one")
        one = time.perf_counter() - started
        many_dir = Path(folder) / "many"
        spread = DistributedStormRun(mode, seed, config, many_dir, nats_url=NATS, postgres_url=PG)
        started = time.perf_counter()
        there = await run(mode, seed, config, many_dir, storm_run=spread)
        many = time.perf_counter() - started
        drop_schema(spread.ledger_url)
    differ = sorted(
        k
        for k in here.metrics
        if k not in ("wall_seconds", "ledger") and here.metrics[k] != there.metrics.get(k)
    )
    return {
        "seed": seed,
        "mode": mode,
        "days": days,
        "in_process_seconds": round(one, 2),
        "distributed_seconds": round(many, 2),
        "ratio": round(many / one, 2),
        "ledger_entries": here.metrics["ledger_entries"],
        "outcome_tables_equal": not differ,
        "differ": differ,
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--mode", default="governed", choices=("ungoverned", "rules", "governed", "monitored")
    )
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    doc = asyncio.run(measure(args.seed, args.mode, args.days))
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(
            f"storm seed {doc['seed']}, {doc['mode']}, {doc['days']} days ({doc['ledger_entries']} entries): "
            f"in one process {doc['in_process_seconds']} s, agents as processes "
            f"{doc['distributed_seconds']} s ({doc['ratio']}x); outcome tables equal: "
            f"{doc['outcome_tables_equal']}"
        )
    return 0 if doc["outcome_tables_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
