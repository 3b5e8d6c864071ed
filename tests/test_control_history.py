"""Control is folded against the charter in force where each Control entry stands in the ledger."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import People

from answerable import (
    ConfigError,
    Controller,
    ExternalEvent,
    FakeClock,
    IdSource,
    Scope,
    SQLiteLedger,
    SystemCharter,
)
from answerable.charter import CharterHistory, charter_at, charter_of, new_charter
from answerable.clock import rfc3339
from answerable.control import ControlState
from answerable.monitors import Monitors, load_monitors
from answerable.records import Control
from answerable.signing import sign


def _charter(people: People, clock: FakeClock, ids: IdSource) -> SystemCharter:
    return new_charter(
        "logistics", people.ri, agents=["executor"], operators=[people.operator], clock=clock, ids=ids
    )


def _resume_by(key_owner: str, clock: FakeClock, ids: IdSource, lifts: tuple[str, ...] = ()) -> Control:
    """A system resume as a person would write it straight to the ledger (no checks on the way),
    naming the stops it lifts (the ones its signer saw)."""
    return Control(
        id=ids.new(),
        at=rfc3339(clock.now_ns()),
        causes=lifts,
        action="resume",
        scope=Scope(kind="system"),
        by=key_owner,
        reason="looks fine to me",
    )


def _handover(first: SystemCharter, people: People, clock: FakeClock, ids: IdSource) -> SystemCharter:
    """The RI hands the system over to the operator: charter version 2, signed by the outgoing RI."""
    return new_charter(
        "logistics",
        people.operator,
        agents=["executor"],
        version=2,
        supersedes=first.id,
        handed_over_by=people.ri,
        clock=clock,
        ids=ids,
    )


def _fresh_states(path: Path) -> tuple[ControlState, ControlState]:
    """What a gateway started now would fold: in this process, and through another connection."""
    with SQLiteLedger.open(path) as other:
        return Controller(other).state(), Controller(other).state()


async def test_a_resume_ignored_when_written_stays_ignored_after_a_handover(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock
):
    """A halt only the RI may lift stays halted for every reader, even after the operator who
    tried to lift it becomes RI: the resume is judged by the charter in force when it was written."""
    ids = IdSource(clock)
    first = _charter(people, clock, ids)
    running = Controller(ledger, clock=clock, ids=ids)
    states: list[ControlState] = []

    async def step(*records: object) -> None:
        """Append, then check the running controller agrees with fresh ones at this position."""
        await ledger.append(list(records))  # type: ignore[arg-type]
        now = running.state()
        assert (now, now) == _fresh_states(ledger_path)
        assert Controller(ledger).state() == now
        states.append(now)

    await step(first)
    halt = await running.halt(by="driver-42", reason="roads closed")
    assert running.state().stops == (halt,)
    assert _fresh_states(ledger_path) == (running.state(), running.state())

    # The operator may not lift a halt, so the running gateway ignores their signed resume.
    await step(sign(_resume_by(people.operator.identity, clock, ids, (halt.id,)), people.operator))
    assert running.state().stops == (halt,)

    # The RI hands the system over to the operator.
    second = _handover(first, people, clock, ids)
    await step(second)
    assert charter_of(ledger).id == second.id
    assert running.state().stops == (halt,), "an old resume must not start honouring itself"

    # A resume the new RI signs now does lift the halt, for everyone.
    await step(sign(_resume_by(people.operator.identity, clock, ids, (halt.id,)), people.operator))
    assert running.state().stops == ()
    assert [len(s.stops) for s in states] == [0, 1, 1, 0]


async def test_a_resume_by_the_old_ri_after_a_handover_is_ignored_by_every_reader(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock
):
    """Once the RI has handed over, their signature no longer lifts anything, whoever folds it."""
    ids = IdSource(clock)
    first = _charter(people, clock, ids)
    await ledger.append([first])
    running = Controller(ledger, clock=clock, ids=ids)
    halt = await running.halt(by="driver-42", reason="roads closed")
    second = _handover(first, people, clock, ids)
    await ledger.append([second])
    await ledger.append([sign(_resume_by(people.ri.identity, clock, ids, (halt.id,)), people.ri)])
    assert running.state().stops == (halt,)
    assert _fresh_states(ledger_path) == (running.state(), running.state())


async def test_a_charter_that_does_not_chain_changes_nobody_s_role(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock
):
    """A charter appended by a stranger naming themselves RI is ignored, so their resume is too."""
    ids = IdSource(clock)
    first = _charter(people, clock, ids)
    await ledger.append([first])
    running = Controller(ledger, clock=clock, ids=ids)
    halt = await running.halt(by="driver-42", reason="roads closed")
    usurper = new_charter("logistics", people.stranger, agents=["executor"], clock=clock, ids=ids)
    await ledger.append([usurper])
    await ledger.append([sign(_resume_by(people.stranger.identity, clock, ids, (halt.id,)), people.stranger)])
    assert charter_of(ledger).id == first.id
    assert running.state().stops == (halt,)
    assert _fresh_states(ledger_path) == (running.state(), running.state())


async def test_charter_history_names_the_charter_in_force_at_each_position(
    ledger: SQLiteLedger, people: People, clock: FakeClock
):
    """at(index) is the last charter that took effect at or before that entry."""
    ids = IdSource(clock)
    first = _charter(people, clock, ids)
    [at_first] = await ledger.append([first])
    [at_halt] = await ledger.append(
        [Controller(ledger, clock=clock, ids=ids).make("halt", Scope(kind="system"), "x", "y")]
    )
    second = _handover(first, people, clock, ids)
    [at_second] = await ledger.append([second])
    history = CharterHistory().advance(ledger)
    assert history.at(at_first).id == first.id
    assert history.at(at_halt).id == first.id
    assert history.at(at_second).id == second.id
    assert history.at(at_second + 100).id == second.id
    assert charter_at(ledger, at_halt).id == first.id
    assert history.latest() == second


async def test_charter_history_advances_incrementally(ledger: SQLiteLedger, people: People, clock: FakeClock):
    """A history that has read the ledger once picks up a later handover on the next advance."""
    ids = IdSource(clock)
    first = _charter(people, clock, ids)
    await ledger.append([first])
    history = CharterHistory().advance(ledger)
    second = _handover(first, people, clock, ids)
    [at_second] = await ledger.append([second])
    assert history.in_force_at(at_second) == first, "not read yet"
    assert history.advance(ledger).at(at_second) == second


async def test_no_charter_in_force_is_a_config_error_and_resumes_before_it_are_ignored(
    ledger: SQLiteLedger, people: People, clock: FakeClock
):
    """Before any charter nobody may resume; at() says so with a ConfigError."""
    ids = IdSource(clock)
    running = Controller(ledger, clock=clock, ids=ids)
    halt = await running.halt(by="x", reason="before set-up")
    [at_resume] = await ledger.append(
        [sign(_resume_by(people.ri.identity, clock, ids, (halt.id,)), people.ri)]
    )
    await ledger.append([_charter(people, clock, ids)])
    assert running.state().stops == (halt,)
    with pytest.raises(ConfigError, match="no valid SystemCharter was in force at ledger entry"):
        CharterHistory().advance(ledger).at(at_resume)


STORMS = {
    "monitors": [
        {
            "name": "storms",
            "shape": "count",
            "invariant": "at most one storm a day",
            "source": {"kind": "ExternalEvent", "types": ["storm"]},
            "max": 1,
            "respond": {"pause": "operation:noop"},
        }
    ]
}


async def test_monitors_re_arm_only_when_the_resume_lifts_the_stop(
    ledger: SQLiteLedger, people: People, clock: FakeClock
):
    """A monitor stays quiet until a resume the controller honours: an operator's resume of a
    halted scope re-arms nothing, the RI's does."""
    ids = IdSource(clock)
    await ledger.append([_charter(people, clock, ids)])
    controller = Controller(ledger, clock=clock, ids=ids)
    watch = Monitors(load_monitors(STORMS, known_scopes={"operation:noop"}), ledger, clock=clock, ids=ids)
    noop = Scope(kind="operation", value="noop")

    async def storms(n: int) -> list[object]:
        await ledger.append(
            [
                ExternalEvent(
                    id=ids.new(), at=rfc3339(clock.now_ns()), source="met", type="storm", payload={}
                )
                for _ in range(n)
            ]
        )
        return list(await watch.poll())

    assert len(await storms(2)) == 1  # breach: alert and pause
    await controller.halt(by="driver-42", reason="bridge out", scope=noop)
    seen = tuple(stop.id for stop in controller.state().stops)
    operator_resume = _resume_by(people.operator.identity, clock, ids, seen).model_copy(
        update={"scope": noop}
    )
    await ledger.append([sign(operator_resume, people.operator)])
    assert len(controller.state().stops) == 2
    assert await storms(2) == [], "the operator's resume lifted nothing, so nothing re-armed"

    await controller.resume(key=people.ri, reason="bridge repaired", scope=noop)
    assert controller.state().stops == ()
    assert len(await storms(2)) == 1


async def test_a_resume_lifts_only_the_stops_its_signer_saw(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock
):
    """A pause that lands between a resume's signing and its append stays in force, for every reader."""
    ids = IdSource(clock)
    await ledger.append([_charter(people, clock, ids)])
    running = Controller(ledger, clock=clock, ids=ids)
    seen = await running.pause(by="ops", reason="checking")
    resume = sign(_resume_by(people.operator.identity, clock, ids, (seen.id,)), people.operator)
    unseen = await running.pause(by="answerable.gateway", reason="outcome unknown after a crash")
    await ledger.append([resume])
    assert running.state().stops == (unseen,)
    assert _fresh_states(ledger_path) == (running.state(), running.state())
