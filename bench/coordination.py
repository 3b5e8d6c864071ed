"""What checking a message against the coordination contract costs, beside recording it.

Every message an agent sends under a contract is checked (channel, sender, type, recipients,
and its payload against the type's JSON Schema) before it is recorded and published. This
measures, in one run on one pinned core, per message of the storm's largest kind (a route plan):
the contract check alone (``ContractCheck.judge``, schema validation included); the whole send
through ``System.send`` with the storm's contract (check, record durably in SQLite with fsync,
publish); and the same send with no contract. Run: ``python bench/coordination.py [--messages N]
[--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import describe_machine, emit, filesystem_of, pin_to_one_core

from answerable import FakeClock, Gateway, IdSource, SQLiteLedger, System, new_ruleset
from answerable.contract import ContractCheck
from answerable.logistics.agents import AGENTS
from answerable.logistics.desk import DEFAULT_DESK
from answerable.logistics.governance import COORDINATION, POLICIES, SCHEMA, charter, ri_key
from answerable.records import Coordination


def route_plan(n: int) -> dict[str, Any]:
    """A route plan the size of a storm day's: five trucks of twelve stops, their lines, drops."""
    stops = [f"S-east-{k:03d}" for k in range(60)]
    return {
        "region": "east",
        "day": n % 7,
        "version": 1 + n % 3,
        "routes": [[f"east-T{t}", stops[t * 12 : (t + 1) * 12], 180 + t] for t in range(5)],
        "lines": {s: [[f"O00-{n:05d}", "tv", 2], [f"O00-{n + 1:05d}", "toys", 3]] for s in stops},
        "dropped": [["S-east-099", ["O00-99999"]]],
        "distance": 950,
        "feasible": True,
    }


async def sends(path: Path, count: int, with_contract: bool) -> float:
    """Seconds per message through System.send, each awaited (recorded, then published)."""
    clock = FakeClock()
    ids = IdSource(clock)
    with SQLiteLedger.open(path, create=True) as ledger:
        gateway = Gateway(ledger, clock=clock, ids=ids)
        chartered = charter(AGENTS, clock, ids, DEFAULT_DESK)
        if not with_contract:  # the same charter, re-signed without its contract
            from answerable import new_charter

            chartered = new_charter("national-logistics", ri_key(), agents=AGENTS, clock=clock, ids=ids)
        await gateway.install(chartered, new_ruleset(POLICIES, SCHEMA, ri_key(), clock=clock, ids=ids))
        system = System(ledger, gateway, agents=AGENTS, clock=clock, ids=ids)
        payloads = [route_plan(n) for n in range(count)]
        started = time.perf_counter()
        for payload in payloads:
            await system.send("router", "routes", "route.plan", payload, (), (), "t")
        elapsed = time.perf_counter() - started
        gateway.close()
    return elapsed / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    pinned = pin_to_one_core()
    count = 200 if args.quick else args.messages
    check = ContractCheck(Coordination.model_validate(COORDINATION))
    payloads = [route_plan(n) for n in range(count)]
    started = time.perf_counter()
    for payload in payloads:
        if check.judge("router", "routes", "route.plan", payload) is not None:
            raise SystemExit("the bench's route plan does not meet the storm's contract")
    check_s = (time.perf_counter() - started) / count
    rounds: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        for n in range(3):  # alternated, medians kept: fsync time drifts on a shared disk
            for contract in (True, False):
                rounds[contract].append(asyncio.run(sends(folder / f"{contract}-{n}.db", count, contract)))
        fs = filesystem_of(folder)
    with_s, without_s = (sorted(rounds[c])[1] for c in (True, False))
    doc: dict[str, Any] = {
        "machine": describe_machine(),
        "pinned": pinned,
        "filesystem": fs,
        "messages": count,
        "check_us_per_message": check_s * 1e6,
        "send_with_contract_us": with_s * 1e6,
        "send_without_contract_us": without_s * 1e6,
        "check_share_of_send": check_s / with_s,
    }
    if emit(doc, args.json):
        return
    m = doc["machine"]
    print(f"coordination  {m['cpu']}, Python {m['python']}; {pinned['note']}; ledger on {fs}")
    print(f"{count:,} route plans (60 stops, 120 lines each), each sent and awaited:")
    print(f"  contract check, schema included : {doc['check_us_per_message']:8.1f} µs/message")
    print(f"  send: check, record, publish    : {doc['send_with_contract_us']:8.1f} µs/message (median of 3)")
    print(
        f"  send without a contract         : {doc['send_without_contract_us']:8.1f} µs/message (median of 3)"
    )
    print(f"  the check is {100 * doc['check_share_of_send']:.1f}% of a governed send")


if __name__ == "__main__":
    main()
