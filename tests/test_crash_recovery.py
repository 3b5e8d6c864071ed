"""A crash between "recorded" and "executed" is recovered without ever calling anything twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from crash_world import CRASH_EXIT, CarrierWorld, build_gateway

from answerable import Execution, SQLiteLedger
from answerable.records import Control, decode_entry

pytestmark = pytest.mark.crash
CHILD = Path(__file__).with_name("crash_world.py")


def crash(tmp_path: Path, mode: str, point: str) -> tuple[Path, Path]:
    ledger_path, world_path = tmp_path / "ledger.db", tmp_path / "world.db"
    child = subprocess.run(
        [sys.executable, str(CHILD), str(ledger_path), str(world_path), mode, point],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == CRASH_EXIT, child.stderr
    return ledger_path, world_path


async def restart(ledger_path: Path, world: CarrierWorld, mode: str):  # type: ignore[no-untyped-def]
    ledger = SQLiteLedger.open(ledger_path)
    gateway = build_gateway(ledger, world, mode)
    await gateway.resume_from_ledger()
    return ledger, gateway, await gateway.reconcile()


def executions(ledger: SQLiteLedger) -> list[Execution]:
    out = [decode_entry(e.data) for e in ledger.of_kind("Execution")]
    return [x for x in out if isinstance(x, Execution)]


@pytest.mark.parametrize("point", ["recorded", "executed"])
async def test_idempotent_operation_is_replayed_with_the_same_key(tmp_path: Path, point: str):
    """The world sees one booking whether the crash came before or after the call."""
    ledger_path, world_path = crash(tmp_path, "idempotent", point)
    world = CarrierWorld(world_path)
    assert world.count() == (1 if point == "executed" else 0)
    ledger, _gateway, outcomes = await restart(ledger_path, world, "idempotent")
    try:
        assert [o.status for o in outcomes] == ["succeeded"]
        assert world.count("book-S-1") == 1
        [execution] = executions(ledger)
        assert execution.recovered
        assert execution.authority is not None
        assert execution.authority.responsible == "ri@logistics.example"
        ledger.verify()
    finally:
        ledger.close()


async def test_an_effect_found_by_key_is_recorded_without_calling_again(tmp_path: Path):
    """With a lookup, an effect that happened is recorded as recovered; nothing is called."""
    ledger_path, world_path = crash(tmp_path, "lookup", "executed")
    world = CarrierWorld(world_path)
    assert world.count() == 1
    ledger, _gateway, outcomes = await restart(ledger_path, world, "lookup")
    try:
        assert [o.status for o in outcomes] == ["succeeded"]
        assert world.count("book-S-1") == 1
        assert [x.recovered for x in executions(ledger)] == [True]
    finally:
        ledger.close()


async def test_a_negative_lookup_is_not_proof_and_leaves_the_intent_ambiguous(tmp_path: Path):
    """Nothing found by key: the old holder might still call, so no new call; a person decides."""
    ledger_path, world_path = crash(tmp_path, "lookup", "recorded")
    world = CarrierWorld(world_path)
    assert world.count() == 0
    ledger, _gateway, outcomes = await restart(ledger_path, world, "lookup")
    try:
        assert [o.status for o in outcomes] == ["ambiguous"]
        assert world.count() == 0
        [pause] = [decode_entry(e.data) for e in ledger.of_kind("Control")]
        assert isinstance(pause, Control)
        assert pause.scope.label() == "operation:carrier.book"
    finally:
        ledger.close()


async def test_unknowable_outcome_is_marked_ambiguous_and_pauses_the_operation(tmp_path: Path):
    """No key and no lookup: never a blind retry; the intent is ambiguous and its operation paused."""
    ledger_path, world_path = crash(tmp_path, "plain", "executed")
    world = CarrierWorld(world_path)
    ledger, gateway, outcomes = await restart(ledger_path, world, "plain")
    try:
        assert [o.status for o in outcomes] == ["ambiguous"]
        assert world.count() == 1
        [execution] = executions(ledger)
        assert execution.status == "ambiguous"
        [pause] = [decode_entry(e.data) for e in ledger.of_kind("Control")]
        assert isinstance(pause, Control)
        assert pause.scope.label() == "operation:carrier.book"
        again = await gateway.submit(gateway.intent("executor", "carrier.book", {"shipment": "S-2"}))
        assert again.status == "denied"
        assert world.count() == 1
        assert await gateway.reconcile() == []
        ledger.verify()
    finally:
        ledger.close()
