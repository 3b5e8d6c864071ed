"""Control edges: what each scope blocks, scope parsing, the fold's verdict, and the clock and ids used."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from pathlib import Path

import pytest
from support import People, order_events

from answerable import (
    ConfigError,
    Controller,
    FakeClock,
    Gateway,
    IdSource,
    LedgerTampered,
    RecordInvalid,
    Scope,
    SQLiteLedger,
)
from answerable.charter import CharterHistory
from answerable.clock import rfc3339
from answerable.control import ControlFold, ControlState, scope_from_text
from answerable.keys import KeyPair
from answerable.records import Control, decode_entry
from answerable.signing import sign


def stop(scope: str, action: str = "pause", control_id: str = "c-1") -> Control:
    return Control(
        id=control_id,
        at="2026-01-01T00:00:00.000000Z",
        action=action,
        scope=scope_from_text(scope),
        by="driver-42",
        reason="roads closed",
    )


def blocked(state: ControlState, *, agent: str = "executor", operation: str = "noop") -> Control | None:
    return state.blocking(agent=agent, operation=operation, resource_class="bench")


def test_an_operation_pause_blocks_that_operation_and_nothing_else() -> None:
    """``operation:NAME`` stops that operation for every agent, and no other operation."""
    pause = stop("operation:carrier.book")
    state = ControlState((pause,))
    assert blocked(state, operation="carrier.book") == pause
    assert blocked(state, agent="router", operation="carrier.book") == pause
    assert blocked(state, operation="noop") is None


def test_a_scope_value_matches_only_under_its_own_kind() -> None:
    """An agent named like an operation (or a class) stops that agent, not the operation or the class."""
    state = ControlState((stop("agent:noop"),))
    assert blocked(state, agent="executor", operation="noop") is None
    assert blocked(state, agent="noop", operation="carrier.book") is not None
    by_operation = ControlState((stop("operation:executor"),))
    assert blocked(by_operation, agent="executor", operation="noop") is None
    by_class = ControlState((stop("resource_class:noop"),))
    assert blocked(by_class, operation="noop") is None
    assert by_class.blocking(agent="a", operation="x", resource_class="y", resource_classes=("noop",))


@pytest.mark.parametrize("text", ["planet:mars", "agent", "system:all", ""])
def test_a_scope_that_is_none_of_the_four_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        scope_from_text(text)


def test_scope_from_text_parses_each_kind() -> None:
    assert scope_from_text("system") == Scope(kind="system")
    assert scope_from_text("resource_class:medical") == Scope(kind="resource_class", value="medical")


async def test_the_fold_says_whether_a_control_took_effect(gateway: Gateway, people: People) -> None:
    """``add`` is True for a stop and an authorized resume, False (not merely falsy) for one it ignores."""
    fold = ControlFold(CharterHistory().advance(gateway.ledger))
    halt = stop("system", action="halt", control_id="h-1")
    assert fold.add(None, halt) is True
    resume = Control(
        id="r-1",
        at="2026-01-01T00:00:01.000000Z",
        action="resume",
        scope=Scope(kind="system"),
        by=people.operator.identity,
        reason="looks fine",
        causes=("h-1",),
    )
    assert fold.add(None, sign(resume, people.operator)) is False  # an operator cannot lift a halt
    assert fold.state.stops == (halt,)
    by_ri = resume.model_copy(update={"id": "r-2", "by": people.ri.identity})
    assert fold.add(None, sign(by_ri, people.ri)) is True
    assert fold.state.stops == ()  # type: ignore[comparison-overlap]


async def test_a_controller_writes_with_the_clock_and_ids_it_is_given(ledger: SQLiteLedger) -> None:
    clock = FakeClock()
    clock.advance(42)
    controller = Controller(ledger, clock=clock, ids=IdSource(clock, random.Random(7)))
    pause = await controller.pause(by="driver-42", reason="roads closed")
    assert pause.at == rfc3339(clock.ns)
    assert pause.id == IdSource(FakeClock(clock.ns), random.Random(7)).new()


async def test_a_controller_without_a_clock_or_ids_uses_the_system_clock(ledger: SQLiteLedger) -> None:
    import time

    before = rfc3339(time.time_ns())
    pause = await Controller(ledger).pause(by="driver-42", reason="roads closed")
    assert before <= pause.at <= rfc3339(time.time_ns())
    assert Controller(ledger).state().stops == (pause,)


async def test_a_resume_by_someone_outside_the_charter_is_not_folded(
    gateway: Gateway, ledger: SQLiteLedger
) -> None:
    """Written straight to the ledger, a resume signed by a key the charter does not know changes nothing."""
    pause = await gateway.control.pause(by="x", reason="y")
    stranger = KeyPair.generate("nobody@elsewhere.example")
    forged = sign(gateway.control.make("resume", Scope(kind="system"), stranger.identity, "me"), stranger)
    ledger.append_sync([forged])
    assert Controller(ledger).state().stops == (pause,)


@pytest.mark.parametrize(("by", "reason"), [("", "roads closed"), ("two words", "roads closed"), ("x", "")])
async def test_a_stop_without_who_or_why_is_refused_and_nothing_is_written(
    ledger: SQLiteLedger, by: str, reason: str
) -> None:
    controller = Controller(ledger, clock=FakeClock())
    for act in (controller.halt, controller.pause):
        with pytest.raises(RecordInvalid) as caught:
            await act(by=by, reason=reason)
        assert caught.value.record == "Control"
    assert ledger.size() == 0


async def test_a_stop_given_the_wrong_kind_of_value_is_refused_and_nothing_is_written(
    gateway: Gateway, ledger: SQLiteLedger, people: People
) -> None:
    """A scope typed as text ("agent:executor"), a reason of None, a resume with no key: each was
    an AttributeError from inside the controller. Now RecordInvalid (ConfigError for text that is
    not a scope at all), and nothing is written."""
    controller = Controller(ledger)
    before = ledger.size()
    for act in (controller.halt, controller.pause):
        with pytest.raises(RecordInvalid, match="scope_from_text"):
            await act(by="ops", reason="storm", scope="agent:executor")  # type: ignore[arg-type]
        with pytest.raises(RecordInvalid, match="give a reason"):
            await act(by="ops", reason=None)  # type: ignore[arg-type]
    with pytest.raises(RecordInvalid, match="signed with a KeyPair"):
        await controller.resume(key=None, reason="clear")  # type: ignore[arg-type]
    with pytest.raises(RecordInvalid, match="is a Control"):
        await controller.record_resume(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="a scope is text"):
        scope_from_text(None)  # type: ignore[arg-type]
    assert ledger.size() == before


async def test_nobody_may_resume_a_ledger_without_a_charter(ledger: SQLiteLedger, people: People) -> None:
    controller = Controller(ledger, clock=FakeClock())
    pause = await controller.pause(by="x", reason="y")
    with pytest.raises(ConfigError):
        await controller.resume(key=people.ri, reason="all clear")
    assert ledger.size() == 1
    assert controller.state().stops == (pause,)


async def test_resume_returns_the_signed_entry_it_wrote(
    gateway: Gateway, ledger: SQLiteLedger, people: People
) -> None:
    pause = await gateway.control.pause(by="x", reason="y")
    resume = await gateway.control.resume(key=people.operator, reason="all clear")
    assert isinstance(resume, Control)
    assert (resume.action, resume.by, resume.causes) == ("resume", people.operator.identity, (pause.id,))
    assert resume.signature
    assert decode_entry(ledger.find(resume.id).data) == resume


@pytest.mark.parametrize("garbage", [b'{"id": "ID", "kind": "Control"}', b"not json"])
async def test_a_control_entry_that_does_not_decode_stops_the_fold_naming_it(
    ledger: SQLiteLedger, ledger_path: Path, garbage: bytes
) -> None:
    """No stop may be dropped silently: an undecodable Control is LedgerTampered, naming index and id."""
    controller = Controller(ledger, clock=FakeClock())
    await controller.pause(by="x", reason="y")
    pause = await controller.pause(by="x", reason="z", scope=Scope(kind="operation", value="noop"))
    index = ledger.find(pause.id).index
    conn = sqlite3.connect(ledger_path, isolation_level=None)
    conn.execute(
        "UPDATE entries SET data = ? WHERE idx = ?", (garbage.replace(b"ID", pause.id.encode()), index)
    )
    conn.close()
    with pytest.raises(LedgerTampered) as caught:
        Controller(ledger).state()
    assert (caught.value.index, caught.value.entry_id) == (index, pause.id)


async def test_an_entry_filed_as_a_control_that_holds_another_record_stops_the_fold(
    ledger: SQLiteLedger, ledger_path: Path
) -> None:
    controller = Controller(ledger, clock=FakeClock())
    await controller.pause(by="x", reason="y")
    [event] = order_events(1)
    [index] = ledger.append_sync([event])
    conn = sqlite3.connect(ledger_path, isolation_level=None)
    conn.execute("UPDATE entries SET kind = 'Control' WHERE idx = ?", (index,))
    conn.close()
    with pytest.raises(LedgerTampered) as caught:
        Controller(ledger).state()
    assert (caught.value.index, caught.value.entry_id) == (index, event.id)


def test_a_control_state_cannot_be_changed_in_place() -> None:
    """Readers share the state a Controller returns: it is a value, never edited under them."""
    state = ControlState((stop("system"),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.stops = ()  # type: ignore[misc]
    assert hash(state) == hash(ControlState((stop("system"),)))


@pytest.mark.parametrize("reason", [" ", "\t\n  ", "\u200b", "\x00", " \u202e\u2066 "])
async def test_a_blank_reason_is_refused_and_nothing_is_recorded(ledger: SQLiteLedger, reason: str) -> None:
    controller = Controller(ledger)
    with pytest.raises(RecordInvalid, match="give a reason; a blank one says nothing"):
        await controller.halt(by="ri@example.com", reason=reason)
    assert ledger.size() == 0


@pytest.mark.parametrize(
    "scope",
    [
        "agent: ",
        "agent:a b",
        "agent:\u200b",
        "agent:a\x00b",
        "agent:\x1b[2J",
        "channel:\n",
        "operation:\u202e",
    ],
)
async def test_a_stop_on_a_name_nothing_can_have_is_refused_and_nothing_is_recorded(
    ledger: SQLiteLedger, scope: str
) -> None:
    """Found by a sweep of the console: a pause on ``agent:a b`` or ``agent:\u200b`` was recorded
    (with a warning at most), a stop that can never match anything, read in the ledger as one
    that holds. A well-formed unknown name is still recorded; a stop already recorded on such a
    scope (by an earlier version) can still be lifted."""
    controller = Controller(ledger)
    parsed = scope_from_text(scope)
    for act in (controller.halt, controller.pause):
        with pytest.raises(RecordInvalid, match=r"the name holds a control|names have no spaces"):
            await act(by="ri@example.com", reason="storm", scope=parsed)
    assert ledger.size() == 0
    assert (
        await controller.pause(by="ri@example.com", reason="storm", scope=scope_from_text("agent:later"))
    ).id
    # Written as an earlier version wrote it, around the check: it lifts like any other stop.
    old = controller.make("pause", Scope(kind="system"), "ri@example.com", "storm")
    await ledger.append([old.model_copy(update={"scope": parsed})])
    assert any(s.scope == parsed for s in controller.state().stops)
    assert controller.make("resume", parsed, "ri@example.com", "clear").causes == (old.id,)


def test_the_control_state_is_frozen_and_slotted() -> None:
    from answerable.control import ControlState

    assert "__slots__" in vars(ControlState)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ControlState().stops = ()  # type: ignore[misc]
