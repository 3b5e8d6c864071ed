"""The gateway: nothing runs unwritten, every execution names the RI, bad input changes nothing."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI, Header
from pydantic import BaseModel
from support import People, World, booking, make_gateway, store_away_once

from answerable import (
    ArgumentsInvalid,
    CallStopped,
    ConfigError,
    Controller,
    Execution,
    ExecutionError,
    Gateway,
    Intent,
    LedgerClosed,
    Scope,
    SQLiteLedger,
    UnknownAgent,
    UnknownOperation,
    http_operation,
    new_ruleset,
)
from answerable.clock import FakeClock
from answerable.operations import Resource
from answerable.records import Decision, decode_entry


def kinds(ledger: SQLiteLedger) -> list[str]:
    return [e.kind for e in ledger.entries()]


async def test_allowed_intent_executes_after_it_is_recorded(
    gateway: Gateway, ledger: SQLiteLedger, world: World
):
    """Intent, Decision and Claim are in the ledger before the call; the Execution follows it."""
    seen_at_call: list[list[str]] = []
    original = world.book

    def spying_book(**kwargs):  # type: ignore[no-untyped-def]
        seen_at_call.append(kinds(ledger))
        return original(**kwargs)

    object.__setattr__(gateway.operations["carrier.book"], "call", spying_book)
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))

    assert outcome.status == "succeeded"
    assert seen_at_call == [["SystemCharter", "RulesetVersion", "Intent", "Decision", "Claim"]]
    assert kinds(ledger)[-4:] == ["Intent", "Decision", "Claim", "Execution"]


async def test_the_intent_records_the_value_cedar_judged_and_the_call_received(
    gateway: Gateway, ledger: SQLiteLedger, world: World
):
    """A value the schema reads as another type (1 for a bool, true for an int) is recorded as
    read, not as sent: Python's ``1 == True`` must not leave the sent value in the Intent."""
    received: list[object] = []
    original = world.book

    def spying_book(**kwargs):  # type: ignore[no-untyped-def]
        received.append(kwargs["disruption"])
        return original(**kwargs)

    object.__setattr__(gateway.operations["carrier.book"], "call", spying_book)
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book", {**booking(), "disruption": 1}))
    assert outcome.ok
    intent = decode_entry(ledger.find(outcome.intent.id).data)
    assert isinstance(intent, Intent)
    assert intent.arguments["disruption"] is True
    assert outcome.decision is not None
    assert outcome.decision.request["context"]["disruption"] is True
    assert received == [True]
    assert b'"disruption":true' in ledger.find(outcome.intent.id).data

    def weigh(kg: int) -> None:
        """An operation with an integer field (Cedar knows no action for it: denied, still recorded)."""

    gateway.register("weigh", weigh, resource_class="shipment")
    weighed = await gateway.submit(gateway.intent("executor", "weigh", {"kg": True}))
    stored = ledger.find(weighed.intent.id).data
    assert b'"arguments":{"kg":1}' in stored
    assert type(decode_entry(stored).arguments["kg"]) is int  # type: ignore[attr-defined]


async def test_execution_names_the_ri_and_the_policy_that_allowed_it(gateway: Gateway, ledger: SQLiteLedger):
    """Every Execution is attributed: responsible RI, the permitting policy, the ruleset hash."""
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    execution = decode_entry(ledger.entries()[-1].data)
    assert isinstance(execution, Execution)
    assert execution.authority is not None
    assert execution.authority.responsible == "ri@logistics.example"
    assert execution.authority.via == "policy"
    assert execution.authority.ids == ("routine-bookings",)
    assert execution.authority.ruleset_hash == outcome.decision.ruleset_hash
    assert execution.causes[:2] == (outcome.intent.id, outcome.decision.id)
    assert execution.response_digest is not None


async def test_decision_records_the_full_cedar_request(gateway: Gateway, ledger: SQLiteLedger):
    """A Decision holds principal, action, resource, context and entities, to evaluate it again later."""
    await gateway.submit(gateway.intent("executor", "carrier.book", booking(cls="medical", disruption=True)))
    decision = next(decode_entry(e.data) for e in ledger.of_kind("Decision"))
    assert isinstance(decision, Decision)
    assert decision.request == {
        "principal": {"type": "Agent", "id": "executor"},
        "action": {"type": "Action", "id": "carrier.book"},
        "resource": {"type": "Shipment", "id": "S-1"},
        "context": {"disruption": True},
    }
    assert {
        "uid": {"type": "Shipment", "id": "S-1"},
        "attrs": {"class": "medical", "region": "north"},
        "parents": [],
    } in (decision.entities)
    assert decision.effect == "review"
    assert len(decision.ruleset_hash) == 64
    assert len(decision.schema_hash) == 64


async def test_review_and_deny_do_not_execute(gateway: Gateway, ledger: SQLiteLedger, world: World):
    """A review waits and a deny refuses; neither reaches the world, both are recorded."""
    review = await gateway.submit(
        gateway.intent("executor", "carrier.book", booking(cls="medical", disruption=True))
    )
    deny = await gateway.submit(gateway.intent("executor", "carrier.book", booking(region="closed")))
    assert (review.status, deny.status) == ("review", "denied")
    assert review.decision.policy_ids == ("medical-under-disruption-needs-review", "routine-bookings")
    assert deny.decision.errors == ("no policy permits this request",)
    assert world.calls == 0
    assert "Execution" not in kinds(ledger)


@pytest.mark.parametrize(
    ("agent", "operation", "arguments", "error"),
    [
        ("intruder", "carrier.book", booking(), UnknownAgent),
        ("executor", "carrier.teleport", booking(), UnknownOperation),
        ("executor", "carrier.book", {"shipment": "S-1"}, ArgumentsInvalid),
        ("executor", "carrier.book", {**booking(), "disruption": "maybe"}, ArgumentsInvalid),
        ("executor", "carrier.book", {**booking(), "surprise": 1}, ArgumentsInvalid),
    ],
)
async def test_bad_intent_is_refused_with_a_precise_error_and_changes_nothing(
    gateway: Gateway, ledger: SQLiteLedger, world: World, agent, operation, arguments, error
):
    """Unknown agents, unknown operations and bad arguments raise before anything is recorded."""
    before = ledger.size()
    with pytest.raises(error) as caught:
        await gateway.submit(gateway.intent(agent, operation, arguments))
    assert ledger.size() == before
    assert world.calls == 0
    assert agent in str(caught.value) or operation in str(caught.value)
    ledger.verify()


async def test_arguments_error_names_the_field(gateway: Gateway):
    """The error says which argument is wrong and how."""
    with pytest.raises(ArgumentsInvalid) as caught:
        await gateway.submit(gateway.intent("executor", "carrier.book", {**booking(), "disruption": "maybe"}))
    assert caught.value.operation == "carrier.book"
    assert any(p.startswith("disruption:") for p in caught.value.problems)


async def test_halt_stops_every_later_intent(gateway: Gateway, ledger: SQLiteLedger, world: World):
    """After a halt entry, intents are recorded as denied by that control and never reach the world."""
    halt = await gateway.control.halt(by="anyone@logistics.example", reason="storm coordination looks wrong")
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    assert outcome.status == "denied"
    assert outcome.decision.control_id == halt.id
    assert halt.id in outcome.decision.causes
    assert world.calls == 0


async def test_halt_from_another_process_is_seen_before_execution(
    gateway: Gateway, ledger_path, world: World
):
    """A halt written through a second connection (as the CLI does) stops the running gateway."""
    other = SQLiteLedger.open(ledger_path)
    try:
        await Controller(other).halt(by="cli-user", reason="stop now")
    finally:
        other.close()
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    assert outcome.status == "denied"
    assert world.calls == 0


async def test_halt_committed_between_record_and_call_stops_the_call(
    ledger: SQLiteLedger, people, clock, world: World
):
    """The gateway checks control again after its own commit, immediately before calling out."""
    halter = Controller(ledger)

    def halt_now(point: str, intent: Intent) -> None:
        # The halt lands after the intent's commit: it was dispatched before the halt, so only
        # the second check stands between it and the world.
        ledger.append_sync([halter.make("halt", Scope(kind="system"), "pager", "stop now")])

    gw = await make_gateway(ledger, people, clock, world, fault=halt_now)
    outcome = await gw.submit(gw.intent("executor", "carrier.book", booking()))
    assert outcome.status == "not_executed"
    assert outcome.execution is not None
    assert outcome.execution.status == "not_executed"
    assert world.calls == 0


async def test_a_call_that_found_a_stop_itself_is_not_executed_and_cites_the_stop(
    ledger: SQLiteLedger, ledger_path, people, clock, world: World
):
    """A tool that checks control itself and finds a stop that came after the gateway's check
    raises CallStopped: the call did nothing, so it is recorded not executed, citing the stop
    the gateway reads again (not failed, as any other error would be)."""
    gw = await make_gateway(ledger, people, clock, world)
    stops: list[str] = []

    def book_unless_stopped(**kwargs):  # type: ignore[no-untyped-def]
        with SQLiteLedger.open(ledger_path) as other:  # the pause comes from another connection
            scope = Scope(kind="operation", value="carrier.book")
            pause = Controller(other).make("pause", scope, "ops", "wait")
            other.append_sync([pause])
        stops.append(pause.id)
        raise CallStopped(f"pause {pause.id} in force; nothing booked")

    object.__setattr__(gw.operations["carrier.book"], "call", book_unless_stopped)
    outcome = await gw.submit(gw.intent("executor", "carrier.book", booking()))
    assert outcome.status == "not_executed"
    assert outcome.execution is not None
    assert outcome.execution.status == "not_executed"
    assert stops[0] in outcome.execution.causes
    assert world.calls == 0


async def test_a_call_that_says_it_was_stopped_when_no_stop_is_in_force_failed(
    gateway: Gateway, world: World
):
    """CallStopped with no stop the gateway can find (none applies to the call) is a failure:
    a not-executed call cites the stop that kept it, and there is none to cite."""

    def claims_a_stop(**kwargs):  # type: ignore[no-untyped-def]
        raise CallStopped("a halt, it says")

    object.__setattr__(gateway.operations["carrier.book"], "call", claims_a_stop)
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    assert outcome.status == "failed"
    assert outcome.execution is not None
    assert "CallStopped: a halt, it says" in (outcome.execution.error or "")


@pytest.mark.parametrize("point", ["before_record", "claimed"])
async def test_halt_from_another_process_before_the_call_stops_it(
    ledger: SQLiteLedger, ledger_path, people, clock, world: World, point: str
):
    """A halt `answerable halt` commits from another shell after an intent was decided, before
    its claim's commit or after it, is read before the call and stops it; the gateway has run
    an intent before, so a state it read earlier would be stale."""
    armed: list[bool] = []

    def halt_elsewhere(at: str, intent: Intent) -> None:
        if at != point or not armed:
            return
        other = SQLiteLedger.open(ledger_path)
        try:
            other.append_sync([Controller(other).make("halt", Scope(kind="system"), "pager", "stop now")])
        finally:
            other.close()

    gw = await make_gateway(ledger, people, clock, world, fault=halt_elsewhere)
    assert (await gw.submit(gw.intent("executor", "carrier.book", booking()))).ok
    armed.append(True)
    outcome = await gw.submit(gw.intent("executor", "carrier.book", booking()))
    assert outcome.decision is not None
    assert outcome.decision.effect == "allow"
    assert outcome.status == "not_executed"
    assert world.calls == 1


async def test_a_halt_committed_by_another_process_during_a_blocking_call_stops_its_neighbour(
    ledger: SQLiteLedger, ledger_path, people, clock, world: World
):
    """Two intents claimed in one group commit: the first to run calls a tool that blocks the
    event loop while `answerable halt` (a real OS process) commits a halt. The second's check
    comes after that halt and must see it; a control reading shared since the common commit
    would let it through."""
    import subprocess
    import sys

    gw = await make_gateway(ledger, people, clock, world)
    original = world.book
    calls: list[int] = []
    halted: list[subprocess.CompletedProcess[str]] = []

    def book_and_halt_elsewhere(**kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            halt = ["halt", str(ledger_path), "--by", "pager", "--reason", "stop"]
            halted.append(
                subprocess.run(
                    [sys.executable, "-m", "answerable.cli", *halt],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
            )
        return original(**kwargs)

    object.__setattr__(gw.operations["carrier.book"], "call", book_and_halt_elsewhere)
    outcomes = await asyncio.gather(
        *(gw.submit(gw.intent("executor", "carrier.book", booking(shipment=f"S-{n}"))) for n in range(2))
    )
    assert [h.returncode for h in halted] == [0], halted[0].stderr if halted else "no halt"
    assert sorted(o.status for o in outcomes) == ["not_executed", "succeeded"]
    assert len(calls) == 1
    assert world.calls == 1


async def test_no_intent_recorded_after_a_halt_executes_under_concurrency(
    gateway: Gateway, ledger: SQLiteLedger, world: World
):
    """With hundreds of intents in flight, every executed one was recorded before the halt entry."""

    done = 0
    halfway = asyncio.Event()

    async def worker(w: int) -> None:
        nonlocal done
        for n in range(15):
            await gateway.submit(gateway.intent("executor", "carrier.book", booking(shipment=f"S-{w}-{n}")))
            done += 1
            if done == 60:
                halfway.set()

    async def halter() -> None:
        await halfway.wait()
        await gateway.control.halt(by="pager", reason="stop")

    await asyncio.gather(*(worker(w) for w in range(20)), halter())
    halt_index = ledger.of_kind("Control")[0].index
    index_of = {e.id: e.index for e in ledger.of_kind("Intent")}
    executed = [decode_entry(e.data) for e in ledger.of_kind("Execution")]
    succeeded = [x for x in executed if isinstance(x, Execution) and x.status == "succeeded"]
    assert all(index_of[x.intent_id] < halt_index for x in succeeded)
    assert len(world.bookings) == len(succeeded)
    after = [i for i, idx in index_of.items() if idx > halt_index]
    assert after, "the halt should land while intents are still arriving"


async def test_pause_scoped_to_an_operation_leaves_others_running(gateway: Gateway, world: World):
    """A pause on one operation blocks only that operation."""
    await gateway.control.pause(
        by="ops", reason="carrier API flaky", scope=Scope(kind="operation", value="carrier.book")
    )
    blocked = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    other = await gateway.submit(gateway.intent("executor", "noop", {}))
    assert (blocked.status, other.status) == ("denied", "succeeded")


async def test_failing_operation_is_recorded_as_failed(gateway: Gateway, ledger: SQLiteLedger):
    """An operation that raises is an outcome to record, not a crash of the gateway."""

    def refuse() -> None:
        raise RuntimeError("carrier capacity exhausted")

    gateway.register("carrier.fail", refuse, resource_class="shipment")
    outcome = await gateway.submit(gateway.intent("executor", "carrier.fail", {}))
    assert outcome.status == "failed"
    assert outcome.execution is not None
    assert outcome.execution.error == "RuntimeError: carrier capacity exhausted"
    assert kinds(ledger)[-1] == "Execution"


class _HidingList(list):  # type: ignore[type-arg]
    """Iterates as integers over what it stores (a float orjson writes as it is)."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([1] * len(self))


class _HidingDict(dict):  # type: ignore[type-arg]
    """Shows a copy an integer where it stores a float."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(["x"])

    def keys(self):  # type: ignore[no-untyped-def]
        return ["x"]

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        return 1

    def items(self):  # type: ignore[no-untyped-def]
        return [("x", 1)]


@pytest.mark.parametrize(
    ("attrs", "context"),
    [
        ({"region": "n\u00f6rd", "tags": ["a", 1]}, {"disruption": True}),  # simple: written unwalked
        ({"weight": 2.5e-6}, {"delay": 1.5}),  # floats: orjson writes 2.5e-6, RFC 8785 0.0000025
        ({"\U0001f600": 1, "\ufb01": 2}, {}),  # keys RFC 8785 sorts by UTF-16, orjson by code point
        ({"region": "north"}, {"nested": {"\U0001f600": 1, "\ufb01": 2}}),
        # Found in review: a subclass shows the walk other values than orjson writes.
        ({"region": "north"}, {"w": _HidingList([2.5e-6])}),
        ({"region": "north"}, {"w": _HidingDict({"x": 2.5e-6})}),
    ],
)
async def test_a_decisions_bytes_are_rfc8785s_whatever_its_cedar_inputs_hold(
    gateway: Gateway, ledger: SQLiteLedger, attrs: dict[str, object], context: dict[str, object]
):
    """A Decision whose Cedar inputs took the fast path is written without walking them again;
    one holding a float or a key that is not ASCII is walked and written by the exact path.
    Either way its stored bytes are RFC 8785's of what it holds."""
    import rfc8785

    gateway.register(
        "carrier.quote",
        lambda shipment: None,
        resource_class="shipment",
        resource=lambda a: Resource("Shipment", a.shipment, attrs),  # type: ignore[attr-defined]
        context=lambda _a: context,
    )
    outcome = await gateway.submit(gateway.intent("executor", "carrier.quote", {"shipment": "S"}))
    assert outcome.decision is not None
    assert outcome.decision.entities[1]["attrs"] == attrs
    stored = ledger.find(outcome.decision.id).data
    assert b"0.0000025" in stored or b"2.5e" not in stored
    assert stored == rfc8785.dumps(decode_entry(stored).model_dump(mode="json"))


async def test_entity_builder_crash_is_a_recorded_deny(gateway: Gateway, ledger: SQLiteLedger):
    """A broken entity builder denies the intent with the error recorded; the gateway keeps going."""

    def broken(_args):  # type: ignore[no-untyped-def]
        raise KeyError("region")

    gateway.register("carrier.book2", lambda shipment: None, resource_class="shipment", resource=broken)
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book2", {"shipment": "S"}))
    assert outcome.status == "denied"
    assert "building the Cedar request for carrier.book2 failed" in outcome.decision.errors[0]


async def test_a_calls_execution_that_met_a_store_error_is_recorded_when_the_store_answers(
    gateway: Gateway, ledger: SQLiteLedger, monkeypatch: pytest.MonkeyPatch
):
    """The call ran; its Execution's append met the store away (past its patience). It was given
    up: the claim stayed open for the process's life (its reconcile leaves its own epoch alone),
    the key answered idempotency_in_flight, and the next epoch called the call ambiguous and
    paused its operation. Now the append is made again until it lands."""

    calls: list[int] = []
    gateway.register("carrier.fail", lambda: calls.append(1) or {"paid": len(calls)}, resource_class="bench")
    away = store_away_once(monkeypatch, ledger, "Execution")
    outcome = await gateway.submit(gateway.intent("executor", "carrier.fail", {}, idempotency_key="pay-1"))
    assert away == [1]
    assert outcome.status == "succeeded"
    assert calls == [1]
    [execution] = [decode_entry(e.data) for e in ledger.of_kind("Execution")]
    assert execution.status == "succeeded"
    again = await gateway.submit(gateway.intent("executor", "carrier.fail", {}, idempotency_key="pay-1"))
    assert again.status == "succeeded"
    assert calls == [1]


async def test_an_error_too_long_to_record_is_recorded_cut_and_the_outcome_stands(
    gateway: Gateway, ledger: SQLiteLedger
):
    """A partner's whole error page, or a builder's exception carrying a payload, made an entry
    too big to record: the call's Execution went unrecorded (its claim left open) and a builder's
    deny was a RecordInvalid. The ledger now keeps the first 4,096 characters and says how many
    more there were."""
    page = "<html>" + "x" * 70_000

    def refuse() -> None:
        raise RuntimeError(page)

    gateway.register("carrier.fail", refuse, resource_class="shipment")
    failed = await gateway.submit(gateway.intent("executor", "carrier.fail", {}))
    assert failed.status == "failed"
    assert failed.execution is not None
    assert failed.execution.error is not None
    assert failed.execution.error.startswith("RuntimeError: <html>xxx")
    assert failed.execution.error.endswith("(65,924 more characters not recorded)")
    assert kinds(ledger)[-1] == "Execution"

    def broken(_args):  # type: ignore[no-untyped-def]
        raise ValueError(page)

    gateway.register("carrier.book2", lambda shipment: None, resource_class="shipment", resource=broken)
    denied = await gateway.submit(gateway.intent("executor", "carrier.book2", {"shipment": "S"}))
    assert denied.status == "denied"
    assert denied.decision is not None
    assert denied.decision.errors[0].endswith("more characters not recorded)")
    assert kinds(ledger)[-2:] == ["Intent", "Decision"]


async def test_http_operation_is_called_with_the_idempotency_key(gateway: Gateway):
    """An HTTP endpoint is an operation too; the key travels as a header, the credential stays inside."""
    app = FastAPI()
    seen: list[tuple[str, str, dict[str, object]]] = []

    @app.post("/book")
    async def book(
        body: dict[str, object], idempotency_key: str = Header(), authorization: str = Header()
    ) -> dict[str, str]:
        seen.append((idempotency_key, authorization, body))
        return {"booking": "HTTP-1"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        call = http_operation(
            "http://carrier/book", client=client, headers={"Authorization": "Bearer secret"}
        )

        class Args(BaseModel):
            shipment: str

        gateway.register("carrier.http", call, resource_class="shipment", args=Args)
        intent = gateway.intent("executor", "carrier.http", {"shipment": "S-9"}, idempotency_key="key-9")
        outcome = await gateway.submit(intent)
    assert outcome.status == "succeeded"
    assert outcome.result == {"booking": "HTTP-1"}
    assert seen == [("key-9", "Bearer secret", {"shipment": "S-9"})]


async def test_a_ruleset_takes_effect_only_when_signed_by_the_ri(
    gateway: Gateway, ledger: SQLiteLedger, people
):
    """A new version signed by the RI replaces the rules; one signed by another or edited after, does not."""
    from support import POLICIES, SCHEMA

    from answerable import NotAuthorized, SignatureInvalid, new_ruleset
    from answerable.signing import sign

    charter = gateway.charter
    stricter = POLICIES.replace(
        'resource.region != "closed"', 'resource.region != "closed" && resource.region != "north"'
    )
    by_reviewer = sign(
        new_ruleset(stricter, SCHEMA, people.ri, version=2).model_copy(
            update={"approved_by": people.reviewer.identity}
        ),
        people.reviewer,
    )
    with pytest.raises(NotAuthorized):
        await gateway.install(charter, by_reviewer)
    edited = new_ruleset(POLICIES, SCHEMA, people.ri, version=2).model_copy(update={"policies": stricter})
    with pytest.raises(SignatureInvalid):
        await gateway.install(charter, edited)
    assert len(ledger.of_kind("RulesetVersion")) == 1
    still = await gateway.submit(gateway.intent("executor", "carrier.book", booking(region="north")))
    assert still.status == "succeeded"

    v2 = new_ruleset(stricter, SCHEMA, people.ri, version=2)
    await gateway.install(charter, v2)
    refused = await gateway.submit(gateway.intent("executor", "carrier.book", booking(region="north")))
    assert refused.status == "denied"
    assert refused.decision is not None
    assert refused.decision.ruleset_id == v2.id


async def test_a_halt_committed_during_a_failed_attempt_stops_the_retry(
    gateway: Gateway, ledger: SQLiteLedger
):
    """A retry is a new call: after a halt it is not made; the unknown first attempt is recorded so."""
    from answerable import TransientError

    calls: list[int] = []

    async def flaky(idempotency_key: str) -> None:
        calls.append(1)
        await gateway.control.halt(by="ops", reason="stop now")
        raise TransientError("timed out")

    gateway.register("carrier.fail", flaky, resource_class="bench", idempotent=True)
    outcome = await gateway.submit(gateway.intent("executor", "carrier.fail", {}))
    assert outcome.status == "ambiguous"
    assert calls == [1]
    assert outcome.execution is not None
    assert outcome.execution.attempts == 1
    assert "not retried" in (outcome.execution.error or "")


async def test_an_http_operation_records_no_credential_of_its_url_and_a_cut_call_as_ambiguous(
    gateway: Gateway, ledger: SQLiteLedger
):
    """A token in the endpoint's query or a password in its user information is a credential: what
    a failed call records names the endpoint without them. A connection cut after the request was
    sent may have booked: ambiguous, not failed. One that was never made failed."""
    import socket

    secret_url = "http://agent:pw-7731@carrier/book?token=tok-7731"
    answers = iter(["refused", "cut"])

    def carrier(request: httpx.Request) -> httpx.Response:
        if next(answers) == "refused":
            return httpx.Response(400, text="no such lane")
        raise httpx.ReadError("connection reset by peer", request=request)

    class Args(BaseModel):
        shipment: str

    async with httpx.AsyncClient(transport=httpx.MockTransport(carrier)) as client:
        gateway.register(
            "carrier.http", http_operation(secret_url, client=client), resource_class="shipment", args=Args
        )
        refused = await gateway.submit(gateway.intent("executor", "carrier.http", {"shipment": "S-1"}))
        cut = await gateway.submit(gateway.intent("executor", "carrier.http", {"shipment": "S-2"}))
    with socket.socket() as probe:  # a port nothing listens on: the connection is never made
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/book?token=tok-7731"
    async with httpx.AsyncClient() as client:
        with pytest.raises(ExecutionError) as unreached:
            await http_operation(closed, client=client)(idempotency_key="k-3", shipment="S-3")
    assert (refused.status, cut.status) == ("failed", "ambiguous")
    assert refused.execution is not None
    assert "http://(credentials hidden)@carrier/book?(query hidden) answered 400: no such lane" in str(
        refused.execution.error
    )
    assert "/book?(query hidden) could not be reached" in str(unreached.value)
    assert "7731" not in str(unreached.value)
    stored = b"".join(e.data for e in ledger.of_kind("Execution"))
    assert b"7731" not in stored
    assert b"carrier/book" in stored


@pytest.mark.parametrize(
    "value",
    [
        "Bearer sk-live-SECRET-4242\n",
        "Bearer sk-live-SECRET-4242\r\nX: y",
        " Bearer sk-live-SECRET-4242",
        "Bearer sk-SECRET-4242\x00",
        "Bearer sk-SECRET-4242é",
    ],
)
async def test_an_http_operation_refuses_a_header_value_http_cannot_carry_without_showing_it(value: str):
    """A credential read from a file keeps its line end: every call failed, and the client's error
    quoted the whole header value into each Execution, and to the agent (found by an audit). It is
    refused when the operation is made, the value never shown."""
    from answerable import ConfigError

    async with httpx.AsyncClient() as client:
        with pytest.raises(ConfigError, match="header Authorization: its value \\(not shown\\)") as refused:
            http_operation("http://carrier/book", client=client, headers={"Authorization": value})
        with pytest.raises(ConfigError, match="header name must be an HTTP token"):
            http_operation("http://carrier/book", client=client, headers={"Bad Name": "x"})
        for fine in ("Bearer\tabc", "a b", "", "x"):  # HTTP carries a tab or a space inside a value
            http_operation("http://carrier/book", client=client, headers={"Authorization": fine})
    assert "SECRET" not in str(refused.value)


async def test_an_http_operation_records_no_header_value_when_the_request_cannot_be_sent(
    gateway: Gateway, ledger: SQLiteLedger
):
    """Should the client refuse to send a request (its own protocol error), the error's text may
    quote a header's value: the Execution records the kind of error only."""

    def carrier(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError("Illegal header value b'Bearer sk-live-SECRET-4242'")

    class Args(BaseModel):
        shipment: str

    async with httpx.AsyncClient(transport=httpx.MockTransport(carrier)) as client:
        operation = http_operation("http://carrier/book", client=client)
        gateway.register("carrier.http", operation, resource_class="shipment", args=Args)
        outcome = await gateway.submit(gateway.intent("executor", "carrier.http", {"shipment": "S-1"}))
    assert outcome.status == "failed"
    assert outcome.execution is not None
    assert (
        outcome.execution.error
        == "ExecutionError: POST http://carrier/book could not be sent: LocalProtocolError"
    )
    assert b"SECRET" not in b"".join(e.data for e in ledger.entries())


async def test_an_http_operation_with_no_url_to_reach_is_refused_and_redirects_are_not_results(
    gateway: Gateway, ledger: SQLiteLedger
):
    """A mistyped endpoint failed every call later, each recorded as ambiguous (the request "may
    have been sent") so each waited for a person: refused when the operation is made. A redirect
    was recorded as succeeded without being followed; a 2xx answer in words, as failed."""
    from answerable import ConfigError

    async with httpx.AsyncClient() as client:
        for url, said in (
            ("htp:/carrier", "want an http:// or https:// URL"),
            ("http://carrier:99999/book", "not a URL"),
            ("carrier/book", "want an http"),
        ):
            with pytest.raises(ConfigError, match=said):
                http_operation(url, client=client)
    # A path on a client with a base_url is the endpoint httpx calls (it was refused as no URL);
    # a body that will not decode came after the partner acted: ambiguous, not failed.
    answers = iter(
        [
            httpx.Response(302, headers={"Location": "/v2/book"}),
            httpx.Response(200, text="booked"),
            httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")),
        ]
    )

    def carrier(request: httpx.Request) -> httpx.Response:
        return next(answers)

    class Args(BaseModel):
        shipment: str

    async with httpx.AsyncClient(base_url="http://carrier", transport=httpx.MockTransport(carrier)) as client:
        gateway.register(
            "carrier.http", http_operation("/book", client=client), resource_class="shipment", args=Args
        )
        moved, worded, undecoded = [
            await gateway.submit(gateway.intent("executor", "carrier.http", {"shipment": s}))
            for s in ("S-1", "S-2", "S-3")
        ]
    assert moved.status == "ambiguous"
    assert moved.execution is not None
    assert "http://carrier/book answered 302, a redirect (not followed)" in str(moved.execution.error)
    assert (worded.status, worded.result) == ("succeeded", "booked")
    assert undecoded.status == "ambiguous", undecoded
    assert undecoded.execution is not None
    assert "http://carrier/book was cut off: DecodingError" in str(undecoded.execution.error)


async def test_an_intent_built_by_hand_with_no_real_time_or_an_unknown_cause_is_refused(
    gateway: Gateway, ledger: SQLiteLedger, world: World, tmp_path
) -> None:
    """Found by a sweep of the library: an Intent built by hand (not by ``Gateway.intent``) dated
    the 99th month, or citing an entry the ledger does not hold, was recorded and run (the service
    refused both); a report of that ledger then ended in a traceback on the date."""
    from answerable import Intent, RecordInvalid
    from answerable.report import write

    made = gateway.intent("executor", "carrier.book", booking())
    before = ledger.size()
    for change, words in [
        ({"at": "2026-99-99T99:99:99Z"}, "is no time"),
        ({"at": "2026-02-30T10:00:00.000000Z"}, "is no time"),
        ({"causes": ("no-such-entry",)}, "is no entry of the ledger"),
    ]:
        with pytest.raises(RecordInvalid, match=words):
            await gateway.submit(made.model_copy(update=change))
    assert (ledger.size(), world.calls) == (before, 0)
    assert (await gateway.submit(made)).ok
    # One written around the gateway, as an earlier version let a library caller: the report reads on.
    odd = Intent.model_validate({**made.model_dump(mode="json"), "id": "odd-1", "at": "2026-99-99T99:99:99Z"})
    await ledger.append([odd])
    write(ledger.path, tmp_path / "report.html")
    assert (tmp_path / "report.html").stat().st_size > 0


async def test_a_ruleset_the_ri_replaced_is_not_put_back_by_installing_its_old_file(
    gateway: Gateway, ledger: SQLiteLedger, people: People, world: World
):
    """v2 removes the permit of noop; a replica or a restart still holding v1's file installed it
    again, and v1 decided, with nothing new in the ledger to say the RI's revocation was undone.
    Now that install is refused, and v2 goes on deciding; signed again, the old rules come back."""
    from support import POLICIES, SCHEMA

    charter = gateway.charter
    v1 = gateway._rules()[1]
    without_noop = POLICIES.replace(
        '@id("noop-allowed")\npermit(principal, action in [Action::"noop", Action::"carrier.fail", '
        'Action::"carrier.http"], resource);',
        "",
    )
    assert without_noop != POLICIES
    v2 = new_ruleset(without_noop, SCHEMA, people.ri, version=2, clock=gateway.clock, ids=gateway.ids)
    await gateway.install(charter, v2)
    size = ledger.size()
    with pytest.raises(ConfigError, match=r"replaced in this ledger by v2"):
        await gateway.install(charter, v1)
    assert ledger.size() == size
    assert (await gateway.submit(gateway.intent("executor", "noop", {}))).status == "denied"
    await gateway.install(charter, v2)  # the one in force: installing it again is fine
    v3 = new_ruleset(POLICIES, SCHEMA, people.ri, version=3, clock=gateway.clock, ids=gateway.ids)
    await gateway.install(charter, v3)
    assert (await gateway.submit(gateway.intent("executor", "noop", {}))).status == "succeeded"


async def test_an_outcome_that_cannot_be_recorded_on_a_closed_ledger_is_not_retried_forever(
    gateway: Gateway, ledger: SQLiteLedger
):
    """The Execution is appended again after a store error, until it lands or the lease is lost:
    a store away comes back. A ledger this process closed does not: the append raises
    LedgerClosed at once (it was retried, with back-off, for as long as the lease held)."""

    def book_and_close(shipment: str) -> dict[str, str]:
        ledger.close()  # the process shutting its ledger while a call was out
        return {"booked": shipment}

    gateway.register("carrier.fail", book_and_close, resource_class="shipment")
    with pytest.raises(LedgerClosed):
        await asyncio.wait_for(
            gateway.submit(gateway.intent("executor", "carrier.fail", {"shipment": "S-9"})), 30
        )


@pytest.mark.parametrize("fails", [False, True], ids=["succeeded", "failed"])
async def test_a_wall_clock_stepped_back_during_the_call_still_records_its_execution(
    gateway: Gateway, ledger: SQLiteLedger, clock: FakeClock, world: World, fails: bool
):
    """The wall clock may step back (NTP, a VM resumed) while a call runs: the call happened, so
    its Execution is recorded, with no latency rather than a negative one, which no Execution may
    hold. Before, the Execution failed its own validation after the call: a raw pydantic error
    from submit, the world changed and the ledger silent about it (a claim left open)."""
    original = world.book

    def book_while_the_clock_steps_back(**kwargs):  # type: ignore[no-untyped-def]
        clock.ns -= 2_000_000_000
        if fails:
            raise ValueError("carrier refused")
        return original(**kwargs)

    object.__setattr__(gateway.operations["carrier.book"], "call", book_while_the_clock_steps_back)
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    assert outcome.status == ("failed" if fails else "succeeded")
    assert outcome.execution is not None
    assert outcome.execution.latency_us == 0
    recorded = decode_entry(ledger.entries()[-1].data)
    assert isinstance(recorded, Execution)
    assert recorded.id == outcome.execution.id
    assert ledger.verify().size == ledger.size()


class _Unreadable(Exception):
    """A partner's exception whose message cannot be read (its __str__ looks up what is not there)."""

    def __str__(self) -> str:
        return str(self.args[0]["error"])


class _NoRepr:
    def __repr__(self) -> str:
        raise RuntimeError("detached")


def _cyclic() -> dict[str, object]:
    answer: dict[str, object] = {"booking": "B-1"}
    answer["parent"] = answer
    return answer


def _cyclic_wide() -> list[object]:
    """A list holding itself 100 times: each visit of the walk took 100 more references."""
    answer: list[object] = []
    answer.extend([answer] * 100)
    return answer


@pytest.mark.parametrize(
    ("answer", "status", "error"),
    [
        (_Unreadable({}), "failed", "_Unreadable: (its message could not be read: KeyError)"),
        (
            RuntimeError(b"refused \xff".decode("utf-8", "surrogateescape")),
            "failed",
            "RuntimeError: refused \\udcff",
        ),
        (lambda: _NoRepr(), "succeeded", None),
        (lambda: 10**5000, "succeeded", None),  # no JSON form, and too long for repr
        (_cyclic, "succeeded", None),  # walked for ever before
        (_cyclic_wide, "succeeded", None),  # a bound on containers walked still took 800 MB
    ],
    ids=["unreadable-error", "surrogate-error", "no-repr", "huge-int", "cyclic", "cyclic-wide"],
)
async def test_whatever_a_partner_hands_back_after_the_call_its_execution_is_recorded(
    gateway: Gateway, ledger: SQLiteLedger, world: World, answer: object, status: str, error: str | None
):
    """An error or a response is read after the call, when the world may have changed: reading it
    must not fail, nor what is read fail to be recorded. Before, each of these raised from submit
    (a raw KeyError, ValueError, RuntimeError, or RecordInvalid for a lone surrogate), or hung the
    event loop (a response holding itself), with the Execution unwritten and the claim open."""
    made: list[int] = []

    def call() -> object:
        made.append(1)
        if isinstance(answer, BaseException):
            raise answer
        return answer() if callable(answer) else answer

    gateway.register("carrier.fail", call, resource_class="bench")  # the test rules allow it
    outcome = await gateway.submit(gateway.intent("executor", "carrier.fail", {}))
    assert made == [1]
    assert outcome.status == status
    assert outcome.execution is not None
    assert outcome.execution.error == error
    recorded = decode_entry(ledger.entries()[-1].data)
    assert isinstance(recorded, Execution)
    assert recorded.id == outcome.execution.id
    assert (recorded.response_digest is not None) is (status == "succeeded")


async def test_a_builder_error_with_a_lone_surrogate_is_a_recorded_deny(
    gateway: Gateway, ledger: SQLiteLedger
):
    """A builder's error is recorded in the Decision: a lone surrogate in it (bytes decoded with
    surrogateescape) made the Decision unrecordable, and submit raised RecordInvalid about a
    record instead of recording the deny."""

    def broken(_args):  # type: ignore[no-untyped-def]
        raise ValueError(b"no r\xe9gion".decode("utf-8", "surrogateescape"))

    gateway.register("carrier.book3", lambda shipment: None, resource_class="shipment", resource=broken)
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book3", {"shipment": "S"}))
    assert outcome.status == "denied"
    assert outcome.decision is not None
    assert "\\udce9" in outcome.decision.errors[0]
    assert kinds(ledger)[-2:] == ["Intent", "Decision"]
