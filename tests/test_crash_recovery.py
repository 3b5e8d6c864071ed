"""A process that dies by ``os._exit`` mid-action is recovered without ever calling anything twice.

Each test kills a real child at one point of one booking, then restarts a gateway on the same
ledger in the test process and checks what reconcile did against the carrier's own books.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from crash_world import CRASH_EXIT, RI, Carrier, ShiftedClock, booking, build_gateway, install
from procs import Children, audit

from answerable import Execution, Gateway, Outcome, SQLiteLedger
from answerable.records import Control, decode_entry

pytestmark = pytest.mark.crash
KEY = "book-S-1"


async def crash(tmp_path: Path, mode: str, point: str) -> tuple[Path, Path]:
    """A child books KEY and dies by ``os._exit`` at ``point``."""
    ledger_path, world_path = tmp_path / "ledger.db", tmp_path / "world.db"
    await install(ledger_path)
    async with Children(tmp_path) as kids:
        child = await kids.spawn(
            "holder", ledger=str(ledger_path), world=str(world_path), mode=mode, flow="allowed", key=KEY,
            point=point, exit=True,
        )  # fmt: skip
        assert await child.wait() == CRASH_EXIT, child
    return ledger_path, world_path


async def restart(ledger_path: Path, carrier: Carrier) -> tuple[SQLiteLedger, Gateway, list[Outcome]]:
    ledger = SQLiteLedger.open(ledger_path)
    gateway = build_gateway(ledger, carrier, clock=ShiftedClock())
    return ledger, gateway, await gateway.start()


def executions(ledger: SQLiteLedger) -> list[Execution]:
    out = [decode_entry(e.data) for e in ledger.of_kind("Execution")]
    return [x for x in out if isinstance(x, Execution)]


@pytest.mark.parametrize("point", ["recorded", "executed"])
async def test_idempotent_operation_is_replayed_with_the_same_key(tmp_path: Path, point: str) -> None:
    """The world sees one booking whether the crash came before or after the call."""
    ledger_path, world_path = await crash(tmp_path, "idempotent", point)
    carrier = Carrier(world_path, ledger_path=ledger_path, mode="idempotent")
    assert carrier.count() == (1 if point == "executed" else 0)
    ledger, gateway, outcomes = await restart(ledger_path, carrier)
    try:
        assert [o.status for o in outcomes] == ["succeeded"]
        assert carrier.count(KEY) == 1
        [execution] = executions(ledger)
        assert execution.recovered
        assert execution.authority is not None
        assert execution.authority.responsible == RI.identity
    finally:
        gateway.close()
        ledger.close()
        carrier.close()
    assert not audit(ledger_path, world_path).problems


async def test_an_effect_found_by_key_is_recorded_without_calling_again(tmp_path: Path) -> None:
    """With a lookup, an effect that happened is recorded as recovered; nothing is called."""
    ledger_path, world_path = await crash(tmp_path, "lookup", "executed")
    carrier = Carrier(world_path, ledger_path=ledger_path, mode="lookup")
    assert carrier.count() == 1
    ledger, gateway, outcomes = await restart(ledger_path, carrier)
    try:
        assert [o.status for o in outcomes] == ["succeeded"]
        assert carrier.count(KEY) == 1
        assert [x.recovered for x in executions(ledger)] == [True]
    finally:
        gateway.close()
        ledger.close()
        carrier.close()
    assert not audit(ledger_path, world_path).problems


async def test_a_negative_lookup_is_not_proof_and_leaves_the_intent_ambiguous(tmp_path: Path) -> None:
    """Nothing found by key: the old holder might still call, so no new call; a person decides."""
    ledger_path, world_path = await crash(tmp_path, "lookup", "recorded")
    carrier = Carrier(world_path, ledger_path=ledger_path, mode="lookup")
    assert carrier.count() == 0
    ledger, gateway, outcomes = await restart(ledger_path, carrier)
    try:
        assert [o.status for o in outcomes] == ["ambiguous"]
        assert carrier.count() == 0
        [pause] = [decode_entry(e.data) for e in ledger.of_kind("Control")]
        assert isinstance(pause, Control)
        assert pause.scope.label() == "operation:carrier.book"
    finally:
        gateway.close()
        ledger.close()
        carrier.close()
    assert not audit(ledger_path, world_path).problems


async def test_unknowable_outcome_is_marked_ambiguous_and_pauses_the_operation(tmp_path: Path) -> None:
    """No key and no lookup: never a blind retry; the intent is ambiguous and its operation paused."""
    ledger_path, world_path = await crash(tmp_path, "plain", "executed")
    carrier = Carrier(world_path, ledger_path=ledger_path, mode="plain")
    ledger, gateway, outcomes = await restart(ledger_path, carrier)
    try:
        assert [o.status for o in outcomes] == ["ambiguous"]
        assert carrier.count() == 1
        [execution] = executions(ledger)
        assert execution.status == "ambiguous"
        [pause] = [decode_entry(e.data) for e in ledger.of_kind("Control")]
        assert isinstance(pause, Control)
        assert pause.scope.label() == "operation:carrier.book"
        again = await gateway.submit(booking(gateway, "book-S-2"))
        assert again.status == "denied"
        assert carrier.count() == 1
        assert await gateway.reconcile() == []
    finally:
        gateway.close()
        ledger.close()
        carrier.close()
    assert not audit(ledger_path, world_path).problems
