"""Reconcile settles only what a dead epoch left, never blindly, and one bad intent stops nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, field_validator
from support import People, World, booking, make_gateway, register_world

from answerable import ArgumentsInvalid, FakeClock, Gateway, IdSource, RecordInvalid, SQLiteLedger
from answerable.control import Controller
from answerable.records import Claim, Control, Execution, Intent, Scope, decode_entry
from answerable.signing import sign


class Crash(BaseException):
    """Stands in for the process dying at a point of the call path."""


async def leave_claims_behind(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> list[str]:
    """Two claimed intents whose calls never ran, as a crash after the claim leaves them."""

    def crash(point: str, _intent: object) -> None:
        if point == "claimed":
            raise Crash

    gw = await make_gateway(ledger, people, clock, world, fault=crash)
    gw.register("carrier.fail", lambda shipment: {"booked": shipment}, resource_class="shipment")
    gw.register("carrier.http", lambda shipment: {"booked": shipment}, resource_class="shipment")
    ids = []
    for operation in ("carrier.fail", "carrier.http"):
        intent = gw.intent("executor", operation, {"shipment": operation})
        with pytest.raises(Crash):
            await gw.submit(intent)
        ids.append(intent.id)
    gw.lease.release()  # the process is gone; its epoch is dead
    return ids


async def finds(key: str) -> Any:
    """A lookup that finds the effect of any key: the call happened before the crash."""
    return {"booked": "earlier", "key": key}


def recovering(
    store: SQLiteLedger,
    clock: FakeClock,
    fault: Any = None,
    *,
    fail: dict[str, Any],
    http: dict[str, Any],
) -> Gateway:
    """A later process's gateway over what ``leave_claims_behind`` left: the world's other
    operations, and the two claimed ones registered with ``fail``'s and ``http``'s options."""
    gw = Gateway(store, clock=clock, ids=IdSource(clock), fault=fault)
    gw.register("carrier.book", lambda **_: None, resource_class="shipment")
    gw.register("noop", lambda: None, resource_class="bench")
    gw.register("carrier.fail", lambda shipment: None, resource_class="shipment", **fail)
    gw.register("carrier.http", lambda shipment: None, resource_class="shipment", **http)
    return gw


async def test_a_failing_lookup_makes_that_intent_ambiguous_and_reconcile_goes_on(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock, world: World
):
    """The lookup of one intent raises; it is ambiguous and paused; the other is still settled."""
    failing, found = await leave_claims_behind(ledger, people, clock, world)

    async def broken(_key: str) -> Any:
        raise ConnectionError("partner unreachable")

    with SQLiteLedger.open(ledger_path) as store:
        gw = recovering(store, clock, fail={"lookup": broken}, http={"lookup": finds})
        outcomes = {o.intent.id: o for o in await gw.start()}
        assert outcomes[failing].status == "ambiguous"
        assert outcomes[failing].execution is not None
        assert "partner unreachable" in (outcomes[failing].execution.error or "")
        assert outcomes[found].status == "succeeded"
        assert await gw.reconcile() == []
        gw.close()
    pauses = [
        c for c in map(decode_entry, (e.data for e in ledger.of_kind("Control"))) if isinstance(c, Control)
    ]
    assert [p.scope.label() for p in pauses] == ["operation:carrier.fail"]


class Shipments(BaseModel):
    """An argument schema whose validator looks the shipment up in a table that no longer holds
    the ones claimed before the crash (the schema changed since): pydantic passes on what the
    validator raises unless it is a ValueError or an AssertionError."""

    shipment: str
    raised: ClassVar[BaseException] = KeyError("carrier.fail")

    @field_validator("shipment")
    @classmethod
    def known(cls, value: str) -> str:
        raise cls.raised


@pytest.mark.parametrize("raised", [KeyError("carrier.fail"), RuntimeError("table not loaded")])
async def test_an_argument_schema_raising_any_error_makes_that_intent_ambiguous_and_reconcile_goes_on(
    raised: Exception,
    ledger: SQLiteLedger,
    ledger_path: Path,
    people: People,
    clock: FakeClock,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
):
    """Arguments recorded under an earlier schema are validated again to run the call; a
    validator raising something other than an answerable error escaped reconcile and start raw
    (found in review: the later claim stayed open, and every start failed the same way). Now
    that intent is ambiguous, citing the error, and the other is still settled."""
    failing, found = await leave_claims_behind(ledger, people, clock, world)
    monkeypatch.setattr(Shipments, "raised", raised)

    with SQLiteLedger.open(ledger_path) as store:
        gw = recovering(store, clock, fail={"args": Shipments}, http={"lookup": finds})
        outcomes = {o.intent.id: o for o in await gw.start()}
        assert outcomes[failing].status == "ambiguous"
        assert outcomes[failing].execution is not None
        error = outcomes[failing].execution.error or ""
        assert error == f"could not reconcile: {type(raised).__name__}: {raised}"
        assert outcomes[found].status == "succeeded"
        assert await gw.reconcile() == []  # the claim is closed: no later start tries it again
        gw.close()
    pauses = [
        c for c in map(decode_entry, (e.data for e in ledger.of_kind("Control"))) if isinstance(c, Control)
    ]
    assert [p.scope.label() for p in pauses] == ["operation:carrier.fail"]


async def test_any_error_recovering_one_claim_makes_that_intent_ambiguous_and_reconcile_goes_on(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock, world: World
):
    """Not only answerable's errors: whatever else goes wrong recovering one claim (here raised
    right after its recovery claim is committed) makes that intent ambiguous, closing the
    recovery claim, and the other claims are still settled. Raised on, it stopped the start and
    every later one the same way, with the rest of the claims left open."""
    failing, found = await leave_claims_behind(ledger, people, clock, world)

    def broken(point: str, intent: Intent) -> None:
        if point == "claimed" and intent.id == failing:
            raise RuntimeError("unforeseen")

    with SQLiteLedger.open(ledger_path) as store:
        gw = recovering(store, clock, fault=broken, fail={"lookup": finds}, http={"lookup": finds})
        outcomes = {o.intent.id: o for o in await gw.start()}
        assert outcomes[failing].status == "ambiguous"
        execution = outcomes[failing].execution
        assert execution is not None
        assert execution.error == "could not reconcile: RuntimeError: unforeseen"
        assert outcomes[found].status == "succeeded"
        assert await gw.reconcile() == []  # the recovery claim is closed: no later start tries again
        gw.close()
    claims = [c for c in map(decode_entry, (e.data for e in ledger.of_kind("Claim"))) if isinstance(c, Claim)]
    recovery = [c for c in claims if c.intent_id == failing and c.takes_over is not None]
    assert len(recovery) == 1
    assert recovery[0].id in execution.causes


async def test_an_error_after_the_recovered_call_is_recorded_writes_no_second_execution(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock, world: World
):
    """The call is replayed and its Execution recorded, then something fails (here right after,
    at "finished"): writing "ambiguous" as well would contradict what is recorded (found in
    review). The error is raised; the claim is closed, so the next start goes on past it."""
    failing, found = await leave_claims_behind(ledger, people, clock, world)
    calls: list[str] = []

    def broken(point: str, intent: Intent) -> None:
        if point == "finished" and intent.id == failing:
            raise RuntimeError("after the record")

    def book(shipment: str) -> dict[str, str]:
        calls.append(shipment)
        return {"booked": shipment}

    def register(gw: Gateway) -> None:
        gw.register("carrier.book", lambda **_: None, resource_class="shipment")
        gw.register("noop", lambda: None, resource_class="bench")
        gw.register("carrier.fail", book, resource_class="shipment", idempotent=True)
        gw.register("carrier.http", book, resource_class="shipment", idempotent=True)

    with SQLiteLedger.open(ledger_path) as store:
        gw = Gateway(store, clock=clock, ids=IdSource(clock), fault=broken)
        register(gw)
        with pytest.raises(RuntimeError, match="after the record"):
            await gw.start()
        gw.close()
    with SQLiteLedger.open(ledger_path) as store:
        gw = Gateway(store, clock=clock, ids=IdSource(clock))
        register(gw)
        outcomes = {o.intent.id: o for o in await gw.start()}
        gw.close()
    assert failing not in outcomes
    assert outcomes[found].status == "succeeded"
    executions = [
        x
        for x in map(decode_entry, (e.data for e in ledger.of_kind("Execution")))
        if isinstance(x, Execution)
    ]
    assert [x.status for x in executions if x.intent_id == failing] == ["succeeded"]
    assert calls.count("carrier.fail") == 1
    assert not list(ledger.of_kind("Control"))


async def test_an_interrupt_while_reconciling_is_not_taken_for_an_ambiguous_call(
    ledger: SQLiteLedger,
    ledger_path: Path,
    people: People,
    clock: FakeClock,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
):
    """What is not an Exception (an interrupt, a cancellation, the process dying) ends the
    reconcile, recording nothing for the claim: it stays open for the next start."""
    await leave_claims_behind(ledger, people, clock, world)
    monkeypatch.setattr(Shipments, "raised", Crash())
    with SQLiteLedger.open(ledger_path) as store:
        gw = recovering(store, clock, fail={"args": Shipments}, http={})
        with pytest.raises(Crash):
            await gw.start()
        gw.close()
    assert not list(ledger.of_kind("Execution"))
    assert not list(ledger.of_kind("Control"))


async def test_an_operation_no_longer_registered_is_ambiguous_not_fatal(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock, world: World
):
    """Reconcile cannot call what it does not know: a person decides, and the rest goes on."""
    await leave_claims_behind(ledger, people, clock, world)
    with SQLiteLedger.open(ledger_path) as store:
        gw = Gateway(store, clock=clock, ids=IdSource(clock))
        gw.register("carrier.book", lambda **_: None, resource_class="shipment")
        outcomes = await gw.start()
        assert sorted(o.status for o in outcomes) == ["ambiguous", "ambiguous"]
        gw.close()
    executions = [
        x
        for x in map(decode_entry, (e.data for e in ledger.of_kind("Execution")))
        if isinstance(x, Execution)
    ]
    assert all(x.recovered for x in executions)
    assert len(executions) == 2


async def test_reconcile_leaves_the_claims_of_its_own_epoch_alone(
    gateway: Gateway, ledger: SQLiteLedger, world: World
):
    """A claim of the live epoch is a call in flight here, not a leftover: reconcile does not touch it."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(shipment: str) -> dict[str, str]:
        started.set()
        await release.wait()
        return {"booked": shipment}

    gateway.register("carrier.fail", slow, resource_class="shipment", idempotent=True)
    task = asyncio.create_task(gateway.submit(gateway.intent("executor", "carrier.fail", {"shipment": "S"})))
    await started.wait()
    assert await gateway.reconcile() == []
    release.set()
    outcome = await task
    assert outcome.status == "succeeded"
    claims = [c for c in map(decode_entry, (e.data for e in ledger.of_kind("Claim"))) if isinstance(c, Claim)]
    assert [c.via for c in claims] == ["policy"]


async def test_bad_input_to_the_public_api_is_a_typed_error(gateway: Gateway):
    """An intent that does not validate is refused as RecordInvalid, not a raw pydantic error."""
    with pytest.raises(RecordInvalid) as refused:
        gateway.intent("two words", "noop", {})
    assert "agent" in str(refused.value)


async def test_a_resume_that_lands_while_reconcile_runs_still_settles_the_claim_the_stop_held(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock, world: World
):
    """Reconcile leaves a claim open while a stop applies to it, and ``reconcile_held`` runs it
    again once the stops change. Before, the stops were read after the loop: a resume landing
    while a later claim was recovered counted as already seen, and the held claim stayed open
    (its key answering ``idempotency_in_flight``) until the next start."""

    def crash(point: str, _intent: object) -> None:
        if point == "claimed":
            raise Crash

    first = await make_gateway(ledger, people, clock, world, fault=crash)
    held = first.intent("router", "carrier.book", booking("S-HELD"))
    other = first.intent("executor", "carrier.book", booking("S-OTHER"))
    for intent in (held, other):
        with pytest.raises(Crash):
            await first.submit(intent)
    first.lease.release()  # the process is gone; its epoch is dead
    router = Scope(kind="agent", value="router")
    await first.control.pause(by=people.operator.identity, reason="look at the router", scope=router)
    elsewhere = SQLiteLedger.open(ledger_path)
    desk = Controller(elsewhere, clock=clock, ids=IdSource(clock))

    def resume_meanwhile(point: str, intent: Intent) -> None:
        if point == "claimed" and intent.id == other.id:  # the held one was judged already
            made = desk.make("resume", router, people.operator.identity, "router checked")
            elsewhere.append_sync([sign(made, people.operator)])

    try:
        second = Gateway(ledger, clock=clock, ids=IdSource(clock), fault=resume_meanwhile)
        register_world(second, world)
        outcomes = await second.start()
        assert sorted((o.intent.id, o.status) for o in outcomes) == sorted(
            [(held.id, "not_executed"), (other.id, "succeeded")]
        )
        assert not second.control.state().stops  # the resume is in force
        [settled] = await second.reconcile_held()
        assert (settled.intent.id, settled.status) == (held.id, "succeeded")
        assert world.calls == 2
        assert await second.reconcile_held() == []
    finally:
        elsewhere.close()


async def test_an_intent_recorded_with_a_float_the_gateway_now_refuses_is_still_recovered_as_decided(
    ledger: SQLiteLedger,
    ledger_path: Path,
    people: People,
    clock: FakeClock,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
):
    """A float that canonical JSON writes as an integer past the I-JSON range (1e20) was
    recordable before the gateway refused it as an argument. An intent claimed with one by an
    earlier version, whose process died before the call, is run on recovery as it was decided:
    the recorded arguments are not judged again by the newer rule (found in review: they were,
    and the intent became ambiguous, with a pause)."""
    from answerable import gateway as gateway_module
    from answerable.operations import canonical_arguments

    ran: list[float] = []

    def weigh(shipment: str, weight: float) -> None:
        ran.append(weight)

    def crash(point: str, _intent: object) -> None:
        if point == "claimed":
            raise Crash

    # The earlier version, which recorded such a float.
    def as_before(op: Any, arguments: Any, *, read_back: bool = True) -> Any:
        return canonical_arguments(op, arguments, read_back=False)

    monkeypatch.setattr(gateway_module, "canonical_arguments", as_before)
    earlier = await make_gateway(ledger, people, clock, world, fault=crash)
    earlier.register("carrier.fail", weigh, resource_class="shipment", idempotent=True)
    intent = earlier.intent("executor", "carrier.fail", {"shipment": "S-1", "weight": 1e20})
    with pytest.raises(Crash):
        await earlier.submit(intent)
    earlier.lease.release()
    monkeypatch.undo()
    assert ran == []

    with SQLiteLedger.open(ledger_path) as store:
        gw = Gateway(store, clock=clock, ids=IdSource(clock))
        gw.register("carrier.book", lambda **_: None, resource_class="shipment")
        gw.register("noop", lambda: None, resource_class="bench")
        gw.register("carrier.http", lambda shipment: None, resource_class="shipment")
        gw.register("carrier.fail", weigh, resource_class="shipment", idempotent=True)
        [outcome] = await gw.start()
        assert (outcome.intent.id, outcome.status) == (intent.id, "succeeded")
        assert ran == [1e20]
        # A new intent with the same float is refused before anything is decided.
        size = store.size()
        with pytest.raises(ArgumentsInvalid, match="weight: 1e\\+20 is written in canonical JSON"):
            await gw.submit(gw.intent("executor", "carrier.fail", {"shipment": "S-2", "weight": 1e20}))
        assert store.size() == size
        gw.close()
    assert not [e for e in ledger.of_kind("Control") if "carrier.fail" in e.data.decode()]
