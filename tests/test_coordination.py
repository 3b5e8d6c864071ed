"""The coordination contract: declared channels pass, everything else is refused and recorded;
the observed graph counts every message once; drift on a channel nobody declared is alerted."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from support import POLICIES, SCHEMA
from typer.testing import CliRunner

from answerable import (
    Agent,
    Context,
    FakeClock,
    Gateway,
    IdSource,
    KeyPair,
    MessageHeld,
    MessageRefused,
    SQLiteLedger,
    System,
    amend_charter,
    new_charter,
    new_ruleset,
)
from answerable.charter import charter_of
from answerable.cli import app
from answerable.coordination import observe
from answerable.errors import ConfigError, NotAuthorized, RecordInvalid, SignatureInvalid
from answerable.monitors import Monitors, load_monitors
from answerable.records import ExternalEvent, Message, Refusal, SystemCharter, decode_entry
from answerable.signing import sign

AGENTS = ("router", "executor", "allocator")
PLAN = {
    "type": "object",
    "required": ["shipment", "day"],
    "properties": {"shipment": {"type": "string"}, "day": {"type": "integer", "minimum": 0}},
    "additionalProperties": False,
}
CONTRACT: dict[str, Any] = {
    "channels": [
        {
            "topic": "plans",
            "publishers": ["router"],
            "subscribers": ["executor"],
            "messages": [{"type": "route.plan", "payload_schema": PLAN}],
        }
    ]
}
RI = KeyPair.from_seed("ri@example.com", b"\x01" * 32)


def charter(contract: dict[str, Any] | None = CONTRACT, **kw: Any) -> SystemCharter:
    clock = FakeClock()
    return new_charter(
        "sys", RI, agents=AGENTS, coordination=contract, clock=clock, ids=IdSource(clock), **kw
    )


class Heard(Agent):
    """Subscribes to every topic the tests use and keeps what reached it."""

    subscriptions = ("plans", "hints")

    def __init__(self, name: str) -> None:
        self.name = name
        self.heard: list[Message | ExternalEvent] = []

    async def handle(self, record: Message | ExternalEvent, ctx: Context) -> None:
        self.heard.append(record)


@pytest.fixture
async def system(tmp_path: Path) -> Any:
    clock = FakeClock()
    ids = IdSource(clock)
    ledger = SQLiteLedger.open(tmp_path / "c.db", create=True)
    gateway = Gateway(ledger, clock=clock, ids=ids)
    gateway.register("noop", lambda: None, resource_class="bench")
    chartered = charter()
    await gateway.install(chartered, new_ruleset(POLICIES, SCHEMA, RI, clock=clock, ids=ids))
    system = System(ledger, gateway, agents=AGENTS, clock=clock, ids=ids)
    heard = {name: Heard(name) for name in AGENTS}
    for agent in heard.values():
        system.add(agent)
    yield system, gateway, heard
    gateway.close()
    ledger.close()


def kinds(ledger: SQLiteLedger, kind: str) -> list[Any]:
    return [decode_entry(e.data) for e in ledger.of_kind(kind)]


async def test_a_declared_message_is_recorded_and_delivered_to_its_subscribers(system: Any) -> None:
    sys_, _gateway, heard = system
    message = await sys_.send("router", "plans", "route.plan", {"shipment": "S-1", "day": 2}, (), (), "t")
    await sys_.run_until_idle()
    assert [m.id for m in kinds(sys_.ledger, "Message")] == [message.id]
    assert [r.id for r in heard["executor"].heard] == [message.id]
    # the allocator subscribed to "plans" too, but the contract does not let it listen in
    assert heard["allocator"].heard == []
    assert heard["router"].heard == []


@pytest.mark.parametrize(
    ("sender", "topic", "type_", "payload", "recipients", "code", "named"),
    [
        ("router", "hints", "priority.hint", {"x": 1}, (), "undeclared_topic", "hints"),
        ("executor", "plans", "route.plan", {"shipment": "S", "day": 1}, (), "undeclared_sender", "executor"),
        ("router", "plans", "route.hint", {"shipment": "S", "day": 1}, (), "undeclared_type", "route.hint"),
        (
            "router",
            "plans",
            "route.plan",
            {"shipment": "S", "day": 1},
            ("allocator",),
            "undeclared_recipient",
            "allocator",
        ),
        ("router", "plans", "route.plan", {"shipment": "S", "day": -1}, (), "payload_schema", "payload.day"),
        ("router", "plans", "route.plan", {"shipment": "S", "day": 1, "x": 2}, (), "payload_schema", "'x'"),
    ],
)
async def test_each_kind_of_violation_is_refused_recorded_with_its_reason_and_never_delivered(
    system: Any,
    sender: str,
    topic: str,
    type_: str,
    payload: dict[str, Any],
    recipients: tuple[str, ...],
    code: str,
    named: str,
) -> None:
    sys_, _gateway, heard = system
    cause = (await sys_.ingest([("orders", "order-system", "orders.batch", {"n": 1})]))[0]
    with pytest.raises(MessageRefused) as refused:
        await sys_.send(sender, topic, type_, payload, (cause.id,), recipients, "t")
    await sys_.run_until_idle()
    assert refused.value.reason_code == code
    assert named in str(refused.value)
    assert kinds(sys_.ledger, "Message") == []
    assert not any(isinstance(r, Message) for agent in heard.values() for r in agent.heard)
    (refusal,) = kinds(sys_.ledger, "Refusal")
    assert isinstance(refusal, Refusal)
    assert (refusal.channel, refusal.claimed, refusal.topic, refusal.type) == ("bus", sender, topic, type_)
    assert (refusal.reason_code, refusal.id, refusal.causes) == (code, refused.value.refusal_id, (cause.id,))
    assert named in refusal.detail


async def test_a_payload_that_is_not_json_is_refused_before_anything_is_recorded(system: Any) -> None:
    sys_, *_ = system
    before = sys_.ledger.size()
    for payload in ({"shipment": {1, 2}, "day": 1}, {"shipment": "S", "day": float("nan")}):
        with pytest.raises(RecordInvalid, match="not JSON"):
            await sys_.send("router", "plans", "route.plan", payload, (), (), "t")
    assert sys_.ledger.size() == before


async def test_a_new_contract_takes_effect_at_once_and_only_from_the_ri(system: Any) -> None:
    sys_, gateway, _heard = system
    hint = {"type": "object"}
    wider = {
        "channels": [
            *CONTRACT["channels"],
            {
                "topic": "hints",
                "publishers": ["router"],
                "subscribers": ["allocator"],
                "messages": [{"type": "priority.hint", "payload_schema": hint}],
            },
        ]
    }
    with pytest.raises(MessageRefused):
        await sys_.send("router", "hints", "priority.hint", {"a": 1}, (), (), "t")
    stranger = KeyPair.from_seed("mallory@example.com", b"\x07" * 32)
    with pytest.raises(NotAuthorized):
        amend_charter(gateway.charter, stranger, coordination=wider)
    forged = sign(amend_charter(gateway.charter, RI, coordination=wider), stranger)
    ruleset = new_ruleset(POLICIES, SCHEMA, RI)
    with pytest.raises((SignatureInvalid, NotAuthorized)):
        await gateway.install(forged, ruleset)
    with pytest.raises(MessageRefused):  # a forged contract changed nothing
        await sys_.send("router", "hints", "priority.hint", {"a": 1}, (), (), "t")
    await gateway.install(amend_charter(gateway.charter, RI, coordination=wider), ruleset)
    await sys_.send("router", "hints", "priority.hint", {"a": 1}, (), (), "t")
    assert charter_of(sys_.ledger).coordination is not None
    assert [m.topic for m in kinds(sys_.ledger, "Message")] == ["hints"]


def test_a_charter_without_a_contract_keeps_its_bytes() -> None:
    """Charters written before contracts existed sign and verify as they did: no key at all."""
    assert "coordination" not in charter(None).model_dump(mode="json")
    assert "coordination" in charter().model_dump(mode="json")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"publishers": ["ghost"]}, "coordination.channels.0.publishers"),
        ({"subscribers": ["ghost"]}, "coordination.channels.0.subscribers"),
        ({"publishers": []}, "publishers"),
        (
            {"messages": [{"type": "t", "payload_schema": {"type": "nope"}}]},
            "coordination.channels.0.messages.0.payload_schema",
        ),
        (
            {"messages": [{"type": "t", "payload_schema": {"$ref": "https://example.com/s.json"}}]},
            "https://example.com/s.json",
        ),
        (
            {"messages": [{"type": "t", "payload_schema": {"$defs": {"a": {"$ref": "other.json#/x"}}}}]},
            "other.json",
        ),
        (
            {"messages": [{"type": "t", "payload_schema": {}}, {"type": "t", "payload_schema": {}}]},
            "declared twice",
        ),
        ({"messages": [{"type": "t", "payload_schema": {"$ref": "#/$defs/missing"}}]}, "#/$defs/missing"),
        ({"messages": [{"type": "t", "payload_schema": {"$ref": "#anchor"}}]}, "#anchor"),
        (
            {"messages": [{"type": "t", "payload_schema": {"$dynamicRef": "https://x.example/s"}}]},
            "x.example",
        ),
        ({"messages": [{"type": "t", "payload_schema": {"$ref": "#"}}]}, "cannot judge"),
        (
            {"messages": [{"type": "t", "payload_schema": {"required": ["a"], "$ref": "#/required"}}]},
            "#/required",
        ),
    ],
)
def test_a_bad_contract_is_refused_naming_the_field(change: dict[str, Any], named: str) -> None:
    contract = {"channels": [{**CONTRACT["channels"][0], **change}]}
    with pytest.raises(ConfigError) as refused:
        charter(contract)
    assert named in str(refused.value)


def test_a_topic_declared_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="declared twice"):
        charter({"channels": [CONTRACT["channels"][0], CONTRACT["channels"][0]]})


async def test_the_graph_counts_every_message_once_with_what_it_caused(system: Any, tmp_path: Path) -> None:
    sys_, gateway, _heard = system
    for day in range(3):
        await sys_.send("router", "plans", "route.plan", {"shipment": f"S-{day}", "day": day}, (), (), "t")
    with pytest.raises(MessageRefused):
        await sys_.send("router", "hints", "priority.hint", {}, (), (), "t")
    plans = kinds(sys_.ledger, "Message")
    intent = gateway.intent("executor", "noop", {}, causes=(plans[0].id,))
    await gateway.submit(intent)
    graph = observe(sys_.ledger).as_json()
    (edge,) = graph["edges"]
    assert (edge["from"], edge["to"], edge["topic"], edge["type"]) == (
        "router",
        ["executor"],
        "plans",
        "route.plan",
    )
    assert (edge["messages"], edge["caused_intents"], edge["caused_executions"]) == (3, 1, 1)
    assert (edge["first"], edge["last"]) == (plans[0].at, plans[-1].at)
    assert (graph["undeclared"], graph["refused"], graph["contract"]) == ([], 1, True)
    assert graph["refusals"] == [
        {
            "from": "router",
            "topic": "hints",
            "type": "priority.hint",
            "reason_code": "undeclared_topic",
            "messages": 1,
        }
    ]
    # the CLI prints the same document; --since after the last message leaves no edge
    runner = CliRunner()
    path = str(sys_.ledger.path)
    printed = runner.invoke(app, ["coordination", path, "--json"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == graph
    later = runner.invoke(app, ["coordination", path, "--json", "--since", "2100-01-01T00:00:00+01:00"])
    assert json.loads(later.output)["edges"] == []
    dot = runner.invoke(app, ["coordination", path, "--dot"])
    assert '"router" -> "executor"' in dot.output
    assert "refused" in dot.output


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "yesterday"],
        ["--since", "2026-12-01T10:00:00"],
        ["--since", "2026-12-02T00:00:00Z", "--until", "2026-12-01T00:00:00Z"],
        ["--json", "--dot"],
    ],
)
def test_bad_coordination_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "l.db"
    SQLiteLedger.open(path, create=True).close()
    result = CliRunner().invoke(app, ["coordination", str(path), *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


NEW_EDGE = {
    "monitors": [
        {
            "name": "no-new-channel",
            "shape": "new_edge",
            "invariant": "agents talk only over declared channels",
            "source": {"kind": "Message"},
        }
    ]
}


async def test_the_drift_monitor_alerts_a_refused_channel_and_not_a_declared_one(system: Any) -> None:
    sys_, gateway, _heard = system
    monitors = Monitors(
        load_monitors(NEW_EDGE, known_scopes=()), sys_.ledger, clock=gateway.clock, ids=gateway.ids
    )
    for day in range(5):
        await sys_.send("router", "plans", "route.plan", {"shipment": "S", "day": day}, (), (), "t")
    assert await monitors.poll() == []
    with pytest.raises(MessageRefused):
        await sys_.send("router", "hints", "priority.hint", {}, (), (), "t")
    (alert,) = await monitors.poll()
    (refusal,) = kinds(sys_.ledger, "Refusal")
    assert alert.evidence == (refusal.id,)
    assert (alert.observed["from"], alert.observed["topic"], alert.escalated_to) == (
        "router",
        "hints",
        RI.identity,
    )


async def test_without_a_contract_the_drift_monitor_learns_the_first_channels(tmp_path: Path) -> None:
    """No contract: the channels used while learning are the usual ones; a later new one is drift."""
    clock = FakeClock()
    ids = IdSource(clock)
    with SQLiteLedger.open(tmp_path / "n.db", create=True) as ledger:
        gateway = Gateway(ledger, clock=clock, ids=ids)
        await gateway.install(charter(None), new_ruleset(POLICIES, SCHEMA, RI, clock=clock, ids=ids))
        sys_ = System(ledger, gateway, agents=AGENTS, clock=clock, ids=ids)
        spec = {"monitors": [{**NEW_EDGE["monitors"][0], "learn_seconds": 3600}]}
        monitors = Monitors(load_monitors(spec, known_scopes=()), ledger, clock=clock, ids=ids)
        await sys_.send("router", "plans", "route.plan", {}, (), (), "t")
        clock.advance(7200)
        await sys_.send("router", "plans", "route.plan", {}, (), (), "t")
        assert await monitors.poll() == []
        hint = await sys_.send("router", "hints", "priority.hint", {}, (), (), "t")  # no contract: it goes
        (alert,) = await monitors.poll()
        assert alert.evidence == (hint.id,)
        assert alert.observed["declared"] == "no contract"
        gateway.close()


def test_a_new_edge_monitor_reads_messages() -> None:
    spec = {"monitors": [{**NEW_EDGE["monitors"][0], "source": {"kind": "Intent"}}]}
    with pytest.raises(ConfigError, match="new_edge"):
        load_monitors(spec, known_scopes=())


REVIEWER = KeyPair.from_seed("desk@example.com", b"\x09" * 32)
SEND_SCHEMA = (
    SCHEMA
    + """
entity Message { topic: String, type: String };
action "send:plans/route.plan" appliesTo {
  principal: [Agent], resource: [Message], context: { urgent: Bool, blocked: Bool }
};
"""
)
SEND_POLICIES = (
    POLICIES
    + """
@id("router-sends-plans")
permit(principal == Agent::"router", action == Action::"send:plans/route.plan", resource);

@id("urgent-plans-need-the-desk")
@review("an urgent priority change goes to the desk before the executor acts on it")
forbid(principal, action == Action::"send:plans/route.plan", resource) when { context.urgent };

@id("blocked-plans-never-go")
forbid(principal, action == Action::"send:plans/route.plan", resource) when { context.blocked };
"""
)


class Sender(Heard):
    """The router: keeps the refusals it is told of."""

    def __init__(self) -> None:
        super().__init__("router")
        self.refusals: list[MessageRefused] = []

    async def on_refusal(self, refusal: MessageRefused, ctx: Context) -> None:
        self.refusals.append(refusal)


@pytest.fixture
async def decided(tmp_path: Path) -> Any:
    """A system whose contract lets the rules decide route plans."""
    clock = FakeClock()
    ids = IdSource(clock)
    ledger = SQLiteLedger.open(tmp_path / "d.db", create=True)
    gateway = Gateway(ledger, clock=clock, ids=ids)
    kinds_ = [{"type": "route.plan", "payload_schema": {"type": "object"}, "decide": True}]
    contract = {"channels": [{**CONTRACT["channels"][0], "messages": kinds_}]}
    chartered = new_charter(
        "sys", RI, agents=AGENTS, reviewers=[REVIEWER], coordination=contract, clock=clock, ids=ids
    )
    await gateway.install(chartered, new_ruleset(SEND_POLICIES, SEND_SCHEMA, RI, clock=clock, ids=ids))
    system = System(ledger, gateway, agents=AGENTS, clock=clock, ids=ids)
    system.message_context(
        "plans",
        "route.plan",
        lambda p: {"urgent": bool(p.get("urgent")), "blocked": bool(p.get("blocked"))},
    )
    router, executor = Sender(), Heard("executor")
    system.add(router)
    system.add(executor)
    yield system, gateway, router, executor
    gateway.close()
    ledger.close()


def plans_of(ledger: SQLiteLedger) -> list[Message]:
    return [m for m in kinds(ledger, "Message") if m.type == "route.plan"]


async def test_a_rule_on_messages_lets_one_through_as_a_decided_call(decided: Any) -> None:
    system, _gateway, _router, executor = decided
    message = await system.send("router", "plans", "route.plan", {"n": 1}, (), (), "t")
    await system.run_until_idle()
    (intent,) = kinds(system.ledger, "Intent")
    assert intent.operation == "send:plans/route.plan"
    (decision,) = kinds(system.ledger, "Decision")
    assert (decision.effect, decision.policy_ids) == ("allow", ("router-sends-plans",))
    assert [m.id for m in plans_of(system.ledger)] == [message.id]
    assert intent.id in message.causes
    assert [r.id for r in executor.heard] == [message.id]


async def test_a_rule_on_messages_holds_one_for_review_and_delivers_it_once_approved(decided: Any) -> None:
    system, gateway, router, executor = decided
    with pytest.raises(MessageHeld) as held:
        await system.send("router", "plans", "route.plan", {"n": 2, "urgent": True}, (), (), "t")
    await system.run_until_idle()
    assert plans_of(system.ledger) == []
    assert executor.heard == []
    outcome = await gateway.answer(
        held.value.review_id, key=REVIEWER, verdict="approve", reason="the desk agrees: it is urgent"
    )
    assert outcome.ok
    await system.run_until_idle()
    await gateway.settle_reviews()  # acting on the settled review again delivers nothing more
    await system.run_until_idle()
    (message,) = plans_of(system.ledger)
    assert message.payload == {"n": 2, "urgent": True}
    assert held.value.intent_id in message.causes
    assert [r.id for r in executor.heard] == [message.id]
    assert router.refusals == []
    assert system.held == {}


async def test_a_denied_message_never_arrives_and_its_sender_hears_why(decided: Any) -> None:
    system, gateway, router, executor = decided
    with pytest.raises(MessageHeld) as held:
        await system.send("router", "plans", "route.plan", {"n": 3, "urgent": True}, (), (), "t")
    denied = await gateway.answer(held.value.review_id, key=REVIEWER, verdict="deny", reason="not urgent")
    await system.run_until_idle()
    assert plans_of(system.ledger) == []
    assert executor.heard == []
    (refusal,) = router.refusals
    assert denied.approval is not None
    assert (refusal.reason_code, refusal.refusal_id) == ("denied", denied.approval.id)
    assert "not urgent" in str(refusal)
    with pytest.raises(MessageRefused) as refused:  # a rule that refuses outright says so at once
        await system.send("router", "plans", "route.plan", {"n": 4, "blocked": True}, (), (), "t")
    assert refused.value.reason_code == "denied"
    assert "blocked-plans-never-go" in str(refused.value)
    assert plans_of(system.ledger) == []


async def test_a_message_held_before_a_restart_and_denied_after_it_is_told_to_its_sender(
    decided: Any,
) -> None:
    """Which messages wait for review was kept only in the first system's memory: after a
    restart, a denial reached no ``on_refusal``. The new system reads them from the ledger."""
    system, gateway, _router, _executor = decided
    with pytest.raises(MessageHeld) as held:
        await system.send("router", "plans", "route.plan", {"n": 5, "urgent": True}, (), (), "t")
    gateway.close()
    again = Gateway(system.ledger, clock=gateway.clock, ids=gateway.ids)
    await again.start()
    restarted = System(system.ledger, again, agents=AGENTS, clock=gateway.clock, ids=gateway.ids)
    router, executor = Sender(), Heard("executor")
    restarted.add(router)
    restarted.add(executor)
    await restarted.run_until_idle()  # still open: nobody is told anything yet
    assert router.refusals == []
    denied = await again.answer(held.value.review_id, key=REVIEWER, verdict="deny", reason="not urgent")
    await restarted.run_until_idle()
    (refusal,) = router.refusals
    assert denied.approval is not None
    assert (refusal.reason_code, refusal.refusal_id) == ("denied", denied.approval.id)
    assert restarted.held == {}
    again.close()


def _restarted(system: System, gateway: Gateway) -> tuple[System, Sender]:
    """A new system on the same ledger and gateway (a process started later), with its router."""
    again = System(system.ledger, gateway, agents=AGENTS, clock=gateway.clock, ids=gateway.ids)
    router = Sender()
    again.add(router)
    again.add(Heard("executor"))
    return again, router


async def test_a_held_message_denied_while_no_system_ran_is_told_once_at_the_next_start(
    decided: Any,
) -> None:
    """Denied while no system ran (``answerable deny`` with the agents down), the sender heard
    nothing: nothing recorded that it was told. The next system tells it, notes it, and the one
    after that does not tell it again."""
    system, gateway, router, _executor = decided
    with pytest.raises(MessageHeld) as held:
        await system.send("router", "plans", "route.plan", {"n": 7, "urgent": True}, (), (), "t")
    denied = await gateway.answer(held.value.review_id, key=REVIEWER, verdict="deny", reason="not urgent")
    assert denied.approval is not None
    second, told = _restarted(system, gateway)  # the first system never ran again
    await second.run_until_idle()
    assert [(r.reason_code, r.refusal_id) for r in told.refusals] == [("denied", denied.approval.id)]
    third, again = _restarted(system, gateway)
    await third.run_until_idle()
    await system.run_until_idle()  # the first one, still in memory, was told by the ledger too
    assert (again.refusals, router.refusals) == ([], [])


async def test_denials_in_a_ledger_from_before_senders_were_noted_are_not_told_again(
    decided: Any,
) -> None:
    """A ledger an earlier version wrote has no notes of senders told: its denials were told
    then (or lost then), and an upgrade must not tell them a second time."""
    import sqlite3

    system, gateway, router, _executor = decided
    with pytest.raises(MessageHeld) as held:
        await system.send("router", "plans", "route.plan", {"n": 8, "urgent": True}, (), (), "t")
    await system.run_until_idle()
    await gateway.answer(held.value.review_id, key=REVIEWER, verdict="deny", reason="not urgent")
    await system.run_until_idle()
    assert len(router.refusals) == 1
    with contextlib.closing(sqlite3.connect(system.ledger.path)) as db, db:  # as the earlier version left it
        db.execute("DELETE FROM meta WHERE key LIKE 'note:held:%'")
    upgraded, told = _restarted(system, gateway)
    await upgraded.run_until_idle()
    assert told.refusals == []


def _monitor(spec: dict[str, Any]) -> Monitors:
    config = load_monitors({"monitors": [{"name": "m", "invariant": "i", **spec}]}, known_scopes=())
    return Monitors(config, ledger=None, clock=FakeClock(), ids=IdSource())  # type: ignore[arg-type]


def _at(seconds: int) -> str:
    from answerable.clock import rfc3339

    return rfc3339(1_700_000_000_000_000_000 + seconds * 1_000_000_000)


def _message(n: int, at: int, sender: str = "router", topic: str = "plans") -> dict[str, Any]:
    return {"kind": "Message", "id": f"m{n}", "at": _at(at), "sender": sender, "topic": topic, "type": "t"}


def test_a_channel_whose_rate_leaves_its_band_is_drift_and_a_storm_sized_rise_is_not() -> None:
    """Learned: at most 4 a day. Seven a day (the storm's re-plans) stays in a band of 3x; thirteen
    does not."""
    monitor = _monitor(
        {"shape": "rate_band", "source": {"kind": "Message"}, "learn_seconds": 86_400, "max_factor": 3}
    )
    day = 86_400
    seen = [monitor.observe(_message(n, n * 3600)) for n in range(4)]  # day 0: 4 messages
    seen += [monitor.observe(_message(10 + n, day + n * 600)) for n in range(7)]  # day 1: 7
    assert not any(seen)
    breaches = [b for n in range(13) for b in monitor.observe(_message(30 + n, 2 * day + n * 600))]
    (breach,) = breaches
    assert breach.observed["messages_in_window"] == 13
    assert (breach.observed["usual_most"], breach.observed["topic"]) == (4, "plans")
    assert breach.evidence == ("m42",)


def test_an_agent_that_comes_to_drive_another_is_drift() -> None:
    """While learning, a third of the executor's intents cite the router; later nearly all do."""
    monitor = _monitor(
        {
            "shape": "influence",
            "source": {"kind": "Intent"},
            "learn_seconds": 86_400,
            "window": 30,
            "min_samples": 30,
            "max_rise_permille": 300,
        }
    )
    monitor.observe(_message(0, 0))
    monitor.observe(_message(1, 0, sender="allocator", topic="allocation"))

    def intent(n: int, at: int, cause: str) -> dict[str, Any]:
        return {"kind": "Intent", "id": f"i{n}", "at": _at(at), "agent": "executor", "causes": [cause]}

    seen = [monitor.observe(intent(n, n * 60, "m0" if n % 3 == 0 else "m1")) for n in range(60)]
    assert not any(seen)
    found = [b for n in range(60) for b in monitor.observe(intent(100 + n, 90_000 + n * 60, "m0"))]
    assert found  # latched after the first breach
    (breach, *_) = found
    assert (breach.observed["from"], breach.observed["to"]) == ("router", "executor")
    assert int(breach.observed["share_permille"]) - int(breach.observed["learned_permille"]) > 300


@pytest.mark.parametrize(("shape", "kind"), [("rate_band", "Intent"), ("influence", "Message")])
def test_a_coordination_monitor_on_the_wrong_records_is_refused(shape: str, kind: str) -> None:
    with pytest.raises(ConfigError, match=shape):
        _monitor({"shape": shape, "source": {"kind": kind}, "learn_seconds": 60})


async def test_a_hand_signed_charter_with_a_schema_that_cannot_judge_is_refused_at_install(
    tmp_path: Path,
) -> None:
    """A charter signed outside new_charter still has its contract checked before it is in force."""
    clock = FakeClock()
    ids = IdSource(clock)
    good = charter()
    document = good.model_dump(mode="json", exclude={"signature"})
    document["coordination"]["channels"][0]["messages"][0]["payload_schema"] = {"type": "nope"}
    forged = sign(SystemCharter.model_validate(document), RI)
    with SQLiteLedger.open(tmp_path / "x.db", create=True) as ledger:
        gateway = Gateway(ledger, clock=clock, ids=ids)
        with pytest.raises(ConfigError, match="payload_schema"):
            await gateway.install(forged, new_ruleset(POLICIES, SCHEMA, RI, clock=clock, ids=ids))
        assert ledger.size() == 0
        gateway.close()


async def test_the_send_operation_is_not_a_way_around_the_contract(decided: Any) -> None:
    """Only System.send makes send: intents: an agent cannot propose one, and an intent keyed to
    another intent (to borrow its sender) records no message."""
    system, gateway, _router, _executor = decided
    await system.send("router", "plans", "route.plan", {"n": 1}, (), (), "t")
    from answerable.runtime import Context as Ctx

    with pytest.raises(ConfigError, match=r"ctx\.send"):
        await Ctx(system, "allocator", "t").propose("send:plans/route.plan", {}, causes=[])
    (first,) = kinds(system.ledger, "Intent")
    borrowed = gateway.intent(
        "allocator",
        "send:plans/route.plan",
        {"payload": {"n": 9}, "recipients": [], "trace_id": "t"},
        idempotency_key=first.id,
    )
    outcome = await gateway.submit(borrowed)
    assert not outcome.ok
    await system.run_until_idle()
    assert [m.payload for m in plans_of(system.ledger)] == [{"n": 1}]
    assert all(m.sender == "router" for m in kinds(system.ledger, "Message"))


async def test_an_answer_recorded_elsewhere_is_acted_on_and_delivered_once(decided: Any) -> None:
    """A reviewer answers in another process (the approval is recorded, nobody here acted on it):
    the system's next run delivers the message, once."""
    system, gateway, _router, executor = decided
    with pytest.raises(MessageHeld) as held:
        await system.send("router", "plans", "route.plan", {"n": 5, "urgent": True}, (), (), "t")
    approval = gateway.reviews.approval(
        held.value.review_id, key=REVIEWER, verdict="approve", reason="approved from the CLI"
    )
    await gateway.reviews.submit(approval)  # recorded, not acted on: as `answerable approve` does
    assert plans_of(system.ledger) == []
    await system.run_until_idle()
    await system.run_until_idle()
    (message,) = plans_of(system.ledger)
    assert [r.id for r in executor.heard] == [message.id]


async def test_each_new_channel_alerts_once_even_across_a_restart(system: Any) -> None:
    sys_, gateway, _heard = system

    def monitors() -> Monitors:
        config = load_monitors(NEW_EDGE, known_scopes=())
        return Monitors(config, sys_.ledger, clock=gateway.clock, ids=gateway.ids)

    first = monitors()
    for topic in ("hints", "side", "hints"):
        with pytest.raises(MessageRefused):
            await sys_.send("router", topic, "priority.hint", {}, (), (), "t")
    alerts = await first.poll()
    assert sorted(a.observed["topic"] for a in alerts) == ["hints", "side"]
    assert await monitors().poll() == []  # a restarted reader finds both answered
    with pytest.raises(MessageRefused):
        await sys_.send("router", "other", "priority.hint", {}, (), (), "t")
    (later,) = await first.poll()
    assert later.observed["topic"] == "other"


async def test_a_halt_or_a_paused_channel_stops_messages_until_resumed(system: Any) -> None:
    """Nothing slips through after a halt, messages included; a pause of one channel stops only it."""
    from answerable.records import Scope

    sys_, gateway, heard = system
    plan = {"shipment": "S", "day": 1}
    pause = await gateway.control.pause(
        by="ops", reason="plans look odd", scope=Scope(kind="channel", value="plans")
    )
    with pytest.raises(MessageRefused) as refused:
        await sys_.send("router", "plans", "route.plan", plan, (), (), "t")
    assert refused.value.reason_code == "pause"
    (refusal,) = kinds(sys_.ledger, "Refusal")
    assert pause.id in refusal.causes
    outcome = await gateway.submit(gateway.intent("executor", "noop", {}))  # tool calls go on
    assert outcome.ok
    await gateway.control.resume(key=RI, reason="checked", scope=Scope(kind="channel", value="plans"))
    await sys_.send("router", "plans", "route.plan", plan, (), (), "t")
    await gateway.control.halt(by="ops", reason="stop everything")
    with pytest.raises(MessageRefused) as halted:
        await sys_.send("router", "plans", "route.plan", plan, (), (), "t")
    assert halted.value.reason_code == "halt"
    await sys_.run_until_idle()
    assert len(heard["executor"].heard) == 1


def halt_at_check(monkeypatch: pytest.MonkeyPatch, gateway: Gateway, at: int) -> list[str]:
    """Make another connection commit a halt right after the ``at``-th control check a message
    makes (counted from 1), before its append: the window two processes found. Returns the
    halt's id once it is written."""
    from answerable.control import unsigned_control
    from answerable.records import Scope

    real = gateway.control.guarded_state
    calls: list[int] = []
    halted: list[str] = []

    def late() -> Any:
        state = real()
        calls.append(1)
        if len(calls) == at:
            stop = unsigned_control(
                "halt", Scope(kind="system"), "pager@ops", "storm", causes=[],
                control_id=gateway.ids.new(), at_ns=gateway.clock.now_ns(),
            )  # fmt: skip
            with SQLiteLedger.open(gateway.ledger.path) as other:
                other.append_sync([stop])
            halted.append(stop.id)
        return state

    monkeypatch.setattr(gateway.control, "guarded_state", late)
    return halted


async def test_a_halt_between_a_messages_check_and_its_append_keeps_it_out(
    system: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check said go; a halt landed before the append: the store refuses the append (the
    control head moved) and the message, judged again, is refused, not recorded after the halt."""
    sys_, gateway, heard = system
    halted = halt_at_check(monkeypatch, gateway, 1)
    with pytest.raises(MessageRefused) as refused:
        await sys_.send("router", "plans", "route.plan", {"shipment": "S", "day": 1}, (), (), "t")
    assert refused.value.reason_code == "halt"
    assert kinds(sys_.ledger, "Message") == []
    (refusal,) = kinds(sys_.ledger, "Refusal")
    assert refusal.causes == tuple(halted)
    await sys_.run_until_idle()
    assert heard["executor"].heard == []


async def test_a_halt_after_the_gateways_check_keeps_a_decided_message_out(
    decided: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decided message passed the gateway's check after its claim; a halt landed before the
    message's own append: its execution is recorded not executed, citing the halt (the call
    did nothing; it did not fail), and no message is recorded."""
    system, gateway, _router, executor = decided
    halted = halt_at_check(monkeypatch, gateway, 2)  # the first is publish_message's own
    with pytest.raises(MessageRefused) as refused:
        await system.send("router", "plans", "route.plan", {"n": 1, "urgent": False}, (), (), "t")
    assert refused.value.reason_code == "not_executed"
    assert halted[0] in str(refused.value)
    (execution,) = kinds(system.ledger, "Execution")
    assert execution.status == "not_executed"
    assert halted[0] in execution.causes
    assert halted[0] in (execution.error or "")
    assert plans_of(system.ledger) == []
    await system.run_until_idle()
    assert executor.heard == []


def test_a_monitor_may_pause_a_channel() -> None:
    spec = {**NEW_EDGE["monitors"][0], "respond": {"pause": "channel:hints"}}
    (monitor,) = load_monitors({"monitors": [spec]}, known_scopes=()).monitors
    assert monitor.respond.pause == "channel:hints"


async def test_a_held_message_approved_while_its_channel_is_paused_is_not_delivered(decided: Any) -> None:
    from answerable.records import Scope

    system, gateway, _router, executor = decided
    with pytest.raises(MessageHeld) as held:
        await system.send("router", "plans", "route.plan", {"n": 6, "urgent": True}, (), (), "t")
    channel = Scope(kind="channel", value="plans")
    pause = await gateway.control.pause(by="ops", reason="hold the plans", scope=channel)
    outcome = await gateway.answer(held.value.review_id, key=REVIEWER, verdict="approve", reason="fine")
    await system.run_until_idle()
    assert outcome.status == "not_executed"
    assert outcome.execution is not None
    assert pause.id in outcome.execution.causes
    assert plans_of(system.ledger) == []
    assert executor.heard == []
