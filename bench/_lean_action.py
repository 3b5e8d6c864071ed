"""A lean reference for the governed call: what this design costs in Python without the gateway.

The concurrent loop of ``governed_call.py`` again, on a ledger of its own set up the same way,
with each action's four entries (Intent, Decision, Claim, Execution) built as plain dicts and
written as orjson's sorted bytes (canonical for these values), instead of through the gateway's
records and checks. Everything else is what the gateway does: the same ledger writer and group
commit (the lease's fence, the claim's guard, the latest time), one Cedar batch per loop turn
through the same public call with the same parsed policies and schema, the control state's data
version read once per turn and once before each call. The ledger verifies afterwards.

With ``records``, the same loop makes its entries as the gateway's records instead (pydantic
models assembled from their parts as the gateway assembles its own, their bytes encoded by the
ledger): the difference between the two is what the records cost; the rest of the gateway's
excess is its checks (of those parts too) and glue.

Not a floor: a leaner program may exist, and this one checks nothing an agent sends (the bench's
no-op takes no arguments and no stop is in force, so the gateway's checks decide nothing here).
It says how much of an action's CPU is the gateway's own Python: the event loop's CPU per action
here beside the gateway's, in the same run. It reaches into the ledger's writer queue
(``SQLLedger._in_turn``), which no user code may: a bench of this package reading its own internals.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import _common as common
import cedarpy
import orjson

from answerable._turns import PerTurn
from answerable.clock import rfc3339
from answerable.gateway import Gateway, claim_key
from answerable.ledger import SQLiteLedger, merkle
from answerable.ledger.base import Guard, StoredEntry
from answerable.policy import CedarRequest
from answerable.records import (
    Authority,
    Claim,
    Decision,
    Execution,
    Intent,
    assembled,
    decode_entry,
    digest,
    entry_bytes,
    vouched_simple,
)

Row = tuple[str, str, bytes, bytes, tuple[str, ...]]


def _row(record: dict[str, Any]) -> Row:
    data = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    return record["id"], record["kind"], data, merkle.leaf_hash(data), tuple(record["causes"])


async def measure(
    setup: Callable[[Path], Awaitable[tuple[SQLiteLedger, Gateway]]],
    directory: Path,
    agent: str,
    operation: str,
    actions: int,
    tasks: int,
    warmup: int,
    *,
    records: bool = False,
    on_timed: Callable[[bool], None] | None = None,
) -> dict[str, Any]:
    """Actions per second and CPU per action by thread of the lean loop (see the module);
    ``directory`` exists and holds no ledger yet. ``records``: the same loop, its entries made
    the gateway's way, as assembled records (Intent, Decision, Claim, Execution) whose bytes the
    ledger encodes itself: what the records cost, apart from the gateway's checks and glue.
    ``on_timed`` is called with True right before the timed run and False right after it (the
    instruction counter of ``instructions.py`` starts and stops there)."""
    ledger, gateway = await setup(directory)
    try:
        for _ in range(2):  # the gateway's own actions first: the lease, the caches, the tables
            await gateway.submit(gateway.intent(agent, operation, {}))
        ruleset, version = gateway._rules()
        ri = gateway.charter.ri
        epoch, holder = gateway.lease.epoch, gateway.lease.holder
        ids, clock = gateway.ids, gateway.clock
        nothing = digest(b"null")

        def decide_turn(asked: Sequence[tuple[dict[str, Any], str]]) -> list[tuple[bool, tuple[str, ...]]]:
            answers: list[tuple[bool, tuple[str, ...]]] = [(False, ())] * len(asked)
            groups: dict[str, list[int]] = {}
            for i, (_, given) in enumerate(asked):  # one call per set of entities, as the gateway makes
                groups.setdefault(given, []).append(i)
            for given, members in groups.items():
                requests = [asked[i][0] for i in members]
                found = cedarpy.is_authorized_batch(requests, ruleset.policy_set, given, ruleset.schema)
                for i, answer in zip(members, found, strict=True):
                    reasons = tuple(sorted(ruleset.names.get(r, r) for r in answer.diagnostics.reasons))
                    answers[i] = (answer.decision.name == "Allow", reasons)
            ledger.data_version()  # the control state, read once per turn after Cedar
            return answers

        decide = PerTurn(decide_turn)

        async def append(rows: list[Row], guards: tuple[Guard, ...], dated: str) -> list[int]:
            return await ledger._in_turn(rows, dated, epoch, guards)  # the ledger's own turn batching

        async def action() -> None:
            intent_id = ids.new()
            intent: dict[str, Any] = {  # each entry's fields in its record's order, tuples for arrays
                "id": intent_id,
                "at": rfc3339(clock.now_ns()),
                "causes": (),
                "kind": "Intent",
                "agent": agent,
                "operation": operation,
                "arguments": {},
                "idempotency_key": intent_id,
                "trace_id": None,
                "on_behalf_of": None,
            }
            # The Cedar request and its entities, as the gateway builds them for each action.
            entities = (
                {"uid": {"type": "Agent", "id": agent}, "attrs": {}, "parents": []},
                {"uid": {"type": "Resource", "id": operation}, "attrs": {"class": "bench"}, "parents": []},
            )
            request = CedarRequest(("Agent", agent), operation, ("Resource", operation), {}, entities)
            asked = {
                "principal": {"type": "Agent", "id": agent},
                "action": {"type": "Action", "id": operation},
                "resource": {"type": "Resource", "id": operation},
                "context": orjson.dumps(request.context).decode(),
            }
            allowed, policies = await decide((asked, orjson.dumps(entities).decode()))
            if not allowed:
                raise RuntimeError(f"Cedar did not allow the lean reference's {operation}")
            decision_id, at = ids.new(), rfc3339(clock.now_ns())
            decision: dict[str, Any] = {
                "id": decision_id,
                "at": at,
                "causes": (intent_id,),
                "kind": "Decision",
                "intent_id": intent_id,
                "effect": "allow",
                "policy_ids": policies,
                "ruleset_id": version.id,
                "ruleset_hash": ruleset.ruleset_hash,
                "schema_hash": ruleset.schema_hash,
                "request": request.to_json(),
                "entities": entities,
                "errors": (),
                "control_id": None,
            }
            claim: dict[str, Any] = {
                "id": ids.new(),
                "at": at,
                "causes": (intent_id, decision_id),
                "kind": "Claim",
                "intent_id": intent_id,
                "epoch": epoch,
                "holder": holder,
                "via": "policy",
                "takes_over": None,
            }
            if records:
                # Assembled from their parts, as the gateway makes its records (its checks of
                # those parts are not made here: they are its glue); the Decision vouched for as
                # the gateway vouches for one whose Cedar inputs are simple JSON (these are).
                made = [
                    assembled(Intent, intent),
                    vouched_simple(assembled(Decision, decision)),
                    assembled(Claim, claim),
                ]
                rows = [ledger._row(record) for record in made]  # dated as the dicts are: by ``at``
                built[0] += len(made)
            else:
                rows = [_row(intent), _row(decision), _row(claim)]
            await append(rows, (Guard(claim_key(intent_id), None),), at)
            ledger.data_version()  # the control check before the call
            started = clock.now_ns()
            gateway.operations[operation].call()
            done = rfc3339(clock.now_ns())
            execution: dict[str, Any] = {
                "id": ids.new(),
                "at": done,
                "causes": (intent_id, decision_id, claim["id"]),
                "kind": "Execution",
                "intent_id": intent_id,
                "decision_id": decision_id,
                "operation": operation,
                "status": "succeeded",
                "authority": {
                    "responsible": ri,
                    "via": "policy",
                    "ids": policies,
                    "ruleset_hash": ruleset.ruleset_hash,
                },
                "response_digest": nothing,  # the gateway's digest of a None answer
                "latency_us": (clock.now_ns() - started) // 1000,
                "error": None,
                "recovered": False,
                "attempts": 1,
            }
            if records:
                execution["authority"] = assembled(Authority, execution["authority"])
                made_execution = assembled(Execution, execution)
                await append([ledger._row(made_execution)], (), done)  # as the gateway makes it
                built[0] += 1
            else:
                await append([_row(execution)], (), done)

        samples: list[int] = []
        built = [0]  # records made the gateway's way, in the timed run

        async def run(count: int) -> float:
            remaining = count
            samples.clear()

            async def submitter() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    began = time.perf_counter_ns()
                    await action()
                    samples.append(time.perf_counter_ns() - began)

            started = time.perf_counter()
            async with asyncio.TaskGroup() as group:
                for _ in range(tasks):
                    group.create_task(submitter())
            return time.perf_counter() - started

        await run(warmup)
        built[0] = 0
        start = ledger.size()
        if on_timed is not None:
            on_timed(True)
        before = common.thread_cpu()
        wall = await run(actions)
        after = common.thread_cpu()
        if on_timed is not None:
            on_timed(False)
        report = ledger.verify()
        written = ledger.size() - start
        # Each entry read back as the record it says it is, its bytes that record's own; and one
        # action's four alike, field for field, to the gateway's own first action's.
        made_here = ledger.entries(start)
        decoded = sum(entry_bytes(decode_entry(e.data)) == e.data for e in made_here)
        first = made_here[:3]  # one append's Intent, Decision and Claim lie together
        done_first = [e for e in made_here if e.kind == "Execution" and first[0].id.encode() in e.data]
        differs = _differences(ledger.entries(0, 6)[2:], [*first, *done_first[:1]])
    finally:
        gateway.close()
        ledger.close()
    cpu = common.cpu_per_action(before, after, actions)
    return {
        "available": True,
        "actions": actions,
        "submitters": tasks,
        "actions_per_s": actions / wall,
        "latency": common.summarize_ns(samples),
        "cpu_us_per_action": cpu,
        "entries_written": written,
        "entries_expected": 4 * actions,
        "verified_size": report.size,
        "decoded_as_records": decoded,
        "records_built": built[0],
        "differs_from_gateway": differs,
    }


_OWN = frozenset({"id", "at", "causes", "intent_id", "decision_id", "idempotency_key", "latency_us"})
"""Fields each action has its own values of: compared by presence, not value."""


def _differences(theirs: list[StoredEntry], ours: list[StoredEntry]) -> list[str]:
    """Where the lean entries differ from the gateway's of one action (kind by kind, in order),
    ids, times and causes aside: empty when they are the same entries but for those."""
    found = []
    for gateway, lean in zip(theirs, ours, strict=True):
        a, b = orjson.loads(gateway.data), orjson.loads(lean.data)
        for key in sorted(a.keys() | b.keys()):
            if key not in a or key not in b or (key not in _OWN and a[key] != b[key]):
                found.append(f"{a.get('kind')}.{key}: {a.get(key)!r} / {b.get(key)!r}")
    return found
