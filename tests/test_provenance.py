"""Provenance: why() walks an entry back to its causes and names who answers for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from support import People, booking
from typer.testing import CliRunner

from answerable import (
    Agent,
    Context,
    EntryNotFound,
    Execution,
    ExternalEvent,
    FakeClock,
    Gateway,
    IdSource,
    Intent,
    Message,
    SQLiteLedger,
    System,
)
from answerable.cli import app
from answerable.clock import rfc3339
from answerable.gateway import Outcome
from answerable.provenance import Provenance, why
from answerable.records import Record

runner = CliRunner()


def kinds(p: Provenance) -> list[str]:
    return [n.kind for n in p.nodes]


def edge_set(p: Provenance) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.relation) for e in p.edges}


def event(ids: IdSource, clock: FakeClock, *, type_: str = "storm.alert", causes: tuple[str, ...] = ()):
    return ExternalEvent(
        id=ids.new(),
        at=rfc3339(clock.now_ns()),
        causes=causes,
        source="weather-service",
        type=type_,
        payload={"region": "north"},
    )


def message(ids: IdSource, clock: FakeClock, causes: tuple[str, ...], *, type_: str = "route.plan"):
    return Message(
        id=ids.new(),
        at=rfc3339(clock.now_ns()),
        causes=causes,
        sender="router",
        topic="routes",
        type=type_,
        payload={},
        trace_id="t-1",
    )


async def booked(gateway: Gateway, **kwargs: Any) -> Outcome:
    return await gateway.submit(gateway.intent("executor", "carrier.book", booking(**kwargs)))


async def reviewed(
    gateway: Gateway, people: People, verdict: Literal["approve", "deny"], reason: str
) -> Outcome:
    outcome = await booked(gateway, cls="medical", disruption=True)
    assert outcome.review is not None
    return await gateway.answer(outcome.review.id, key=people.reviewer, verdict=verdict, reason=reason)


# --- governed actions ----------------------------------------------------------------------------


async def test_why_of_an_execution_reaches_intent_decision_policy_and_ruleset(
    gateway: Gateway, people: People
):
    """An executed intent's graph holds its Intent, Decision, policy and ruleset; RI answers via policy."""
    outcome = await booked(gateway)
    assert outcome.execution is not None
    assert outcome.decision is not None
    p = why(gateway.ledger, outcome.execution.id)
    decision = outcome.decision
    ruleset_id = decision.ruleset_id
    assert ruleset_id is not None
    assert p.root == outcome.execution.id
    assert kinds(p)[0] == "Execution"
    assert {"Intent", "Decision", "Policy", "RulesetVersion"} <= set(kinds(p))
    assert {
        (outcome.execution.id, outcome.intent.id, "caused_by"),
        (outcome.execution.id, decision.id, "caused_by"),
        (decision.id, ruleset_id, "under_ruleset"),
        (decision.id, "policy:routine-bookings", "decided_by"),
    } <= edge_set(p)
    a = p.accountable
    assert a.ri == people.ri.identity
    assert a.via == "policy"
    assert a.ids == ("routine-bookings",)
    assert a.ruleset_version == 1
    assert a.ruleset_hash == decision.ruleset_hash
    assert a.derived_from == outcome.execution.id
    assert not p.truncated


async def test_why_of_an_intent_answers_through_its_execution(gateway: Gateway, people: People):
    """An intent leads back to nothing, but whoever answers for its execution answers for it."""
    outcome = await booked(gateway)
    assert outcome.execution is not None
    p = why(gateway.ledger, outcome.intent.id)
    assert [(n.kind, n.summary) for n in p.nodes] == [("Intent", "Intent carrier.book by executor")]
    assert p.accountable.via == "policy"
    assert p.accountable.ri == people.ri.identity
    assert p.accountable.derived_from == outcome.execution.id


async def test_a_denied_decision_answers_through_the_default_deny(gateway: Gateway, people: People):
    """A decision no policy allowed still names the RI and the ruleset it was decided under."""
    outcome = await booked(gateway, region="closed")
    assert outcome.status == "denied"
    assert outcome.decision is not None
    p = why(gateway.ledger, outcome.decision.id)
    assert p.nodes[0].summary == "Decision deny: no policy permits this request"
    assert p.accountable.via == "policy"
    assert p.accountable.ids == ()
    assert p.accountable.ruleset_version == 1
    assert p.accountable.ri == people.ri.identity


async def test_an_approved_reviews_execution_names_the_approval(gateway: Gateway, people: People):
    """The execution of an approved review answers via that approval, and the graph shows the review."""
    outcome = await reviewed(gateway, people, "approve", "ok")
    assert outcome.execution is not None
    assert outcome.approval is not None
    assert outcome.review is not None
    p = why(gateway.ledger, outcome.execution.id)
    a = p.accountable
    assert (a.ri, a.via, a.ids) == (people.ri.identity, "approval", (outcome.approval.id,))
    assert a.approvers == (people.reviewer.identity,)
    assert a.ruleset_version == 1
    assert {"Approval", "Review", "Decision", "Intent", "Policy", "RulesetVersion"} <= set(kinds(p))
    assert (outcome.review.id, outcome.approval.id, "answered_by") in edge_set(p)
    assert (outcome.execution.id, outcome.approval.id, "caused_by") in edge_set(p)
    summaries = {n.id: n.summary for n in p.nodes}
    assert summaries[outcome.approval.id] == f"Approval approve by {people.reviewer.identity}: ok"
    assert summaries["policy:medical-under-disruption-needs-review"] == (
        "Policy medical-under-disruption-needs-review"
    )


async def test_a_review_shows_the_approval_that_answered_it(gateway: Gateway, people: People):
    """why(review) follows answered_by to its approval, though the approval came after it."""
    outcome = await reviewed(gateway, people, "approve", "ok")
    assert outcome.review is not None
    assert outcome.approval is not None
    assert outcome.execution is not None
    p = why(gateway.ledger, outcome.review.id)
    assert (outcome.review.id, outcome.approval.id, "answered_by") in edge_set(p)
    assert p.accountable.via == "approval"
    assert p.accountable.derived_from == outcome.execution.id


async def test_a_denied_approval_answers_through_itself(gateway: Gateway, people: People):
    """A reviewer's denial executes nothing; the RI answers through that denial."""
    outcome = await reviewed(gateway, people, "deny", 'storm: say "no"')
    assert outcome.status == "denied"
    assert outcome.approval is not None
    p = why(gateway.ledger, outcome.approval.id)
    assert p.nodes[0].summary == f'Approval deny by {people.reviewer.identity}: storm: say "no"'
    a = p.accountable
    assert (a.via, a.ids, a.approvers, a.derived_from) == (
        "approval",
        (outcome.approval.id,),
        (people.reviewer.identity,),
        outcome.approval.id,
    )
    assert a.ruleset_version == 1


# --- messages and external events ----------------------------------------------------------------


class Router(Agent):
    name = "router"
    subscriptions = ("weather",)

    async def handle(self, record: Message | ExternalEvent, ctx: Context) -> None:
        await ctx.send("plans", "route.plan", {"shipment": "S-9"}, causes=[record.id])


class Executor(Agent):
    name = "executor"
    subscriptions = ("plans",)

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    async def handle(self, record: Message | ExternalEvent, ctx: Context) -> None:
        self.outcomes.append(await ctx.propose("carrier.book", booking(shipment="S-9"), causes=[record.id]))


async def test_why_walks_messages_back_to_the_external_event(gateway: Gateway, clock: FakeClock):
    """An execution proposed after a message about an outside event leads back to that event."""
    system = System(gateway.ledger, gateway, agents=["router", "executor"], clock=clock, ids=gateway.ids)
    executor = Executor()
    system.add(Router())
    system.add(executor)
    (alert,) = await system.ingest([("weather", "weather-service", "storm.alert", {"region": "north"})])
    await system.run_until_idle()
    (outcome,) = executor.outcomes
    assert outcome.execution is not None
    p = why(gateway.ledger, outcome.execution.id)
    by_id = {n.id: n for n in p.nodes}
    assert by_id[alert.id].summary == "ExternalEvent storm.alert from weather-service"
    (plan,) = [n for n in p.nodes if n.kind == "Message"]
    assert plan.summary == "Message route.plan from router on plans"
    assert {
        (outcome.intent.id, plan.id, "caused_by"),
        (plan.id, alert.id, "caused_by"),
    } <= edge_set(p)


async def test_fan_in_reaches_every_cited_event_once(
    ledger: SQLiteLedger, gateway: Gateway, clock: FakeClock
):
    """A message citing several events reaches each; a node shared by two paths appears once."""
    ids = gateway.ids
    storm, orders = event(ids, clock), event(ids, clock, type_="orders.batch")
    forecast = message(ids, clock, (storm.id, orders.id), type_="forecast")
    plan = message(ids, clock, (forecast.id, storm.id))
    ledger.append_sync([storm, orders, forecast, plan])
    p = why(ledger, plan.id)
    assert [n.id for n in p.nodes] == [plan.id, forecast.id, storm.id, orders.id]
    assert edge_set(p) == {
        (plan.id, forecast.id, "caused_by"),
        (plan.id, storm.id, "caused_by"),
        (forecast.id, storm.id, "caused_by"),
        (forecast.id, orders.id, "caused_by"),
    }


async def test_an_event_with_no_decision_is_answered_for_by_the_charters_ri(
    ledger: SQLiteLedger, gateway: Gateway, clock: FakeClock, people: People
):
    """Outside any decision, the RI of the charter in force answers, through nothing in particular."""
    alert = event(gateway.ids, clock)
    ledger.append_sync([alert])
    a = why(ledger, alert.id).accountable
    assert (a.ri, a.via, a.ids, a.derived_from) == (people.ri.identity, None, (), None)


async def test_a_message_citing_an_execution_answers_through_it(
    ledger: SQLiteLedger, gateway: Gateway, clock: FakeClock
):
    """A report about an execution answers through that execution's authority."""
    outcome = await booked(gateway)
    assert outcome.execution is not None
    report = message(gateway.ids, clock, (outcome.execution.id,), type_="booking.done")
    ledger.append_sync([report])
    a = why(ledger, report.id).accountable
    assert (a.via, a.ids, a.derived_from) == ("policy", ("routine-bookings",), outcome.execution.id)


async def test_a_cited_id_the_ledger_lacks_is_a_missing_node(
    ledger: SQLiteLedger, gateway: Gateway, clock: FakeClock
):
    """A dangling cause is shown, not fatal."""
    note = message(gateway.ids, clock, ("not-in-this-ledger",))
    ledger.append_sync([note])
    p = why(ledger, note.id)
    assert [(n.id, n.kind) for n in p.nodes] == [(note.id, "Message"), ("not-in-this-ledger", "Missing")]


class Alert(Record):
    """A record kind newer than provenance.py: walked by its causes all the same."""

    kind: Literal["Alert"] = "Alert"
    rule: str


async def test_an_unknown_record_kind_is_walked_by_its_causes(
    ledger: SQLiteLedger, gateway: Gateway, clock: FakeClock
):
    """A kind decode_entry does not know is still a node, and still answers through its causes."""
    outcome = await booked(gateway)
    assert outcome.execution is not None
    alert = Alert(
        id=gateway.ids.new(), at=rfc3339(clock.now_ns()), causes=(outcome.execution.id,), rule="r-1"
    )
    ledger.append_sync([alert])
    p = why(ledger, alert.id)
    assert (p.nodes[0].kind, p.nodes[0].summary) == ("Alert", "Alert r-1")
    assert outcome.intent.id in {n.id for n in p.nodes}
    assert p.accountable.derived_from == outcome.execution.id


async def test_max_nodes_stops_the_walk_and_says_so(ledger: SQLiteLedger, gateway: Gateway, clock: FakeClock):
    """Past max_nodes nothing more is read, and no edge points outside the graph."""
    chain = [event(gateway.ids, clock)]
    for _ in range(9):
        chain.append(message(gateway.ids, clock, (chain[-1].id,)))
    ledger.append_sync(chain)
    p = why(ledger, chain[-1].id, max_nodes=3)
    assert p.truncated
    assert [n.id for n in p.nodes] == [r.id for r in reversed(chain[-3:])]
    node_ids = {n.id for n in p.nodes}
    assert all(e.source in node_ids and e.target in node_ids for e in p.edges)
    assert not why(ledger, chain[-1].id, max_nodes=None).truncated


# --- what why() must not do ----------------------------------------------------------------------


async def test_unknown_id_raises_entry_not_found_and_changes_nothing(ledger: SQLiteLedger, gateway: Gateway):
    """An id the ledger lacks is EntryNotFound naming it; the ledger is untouched."""
    await booked(gateway)
    size, root = ledger.size(), ledger.root()
    with pytest.raises(EntryNotFound, match="no-such-entry") as caught:
        why(ledger, "no-such-entry")
    assert caught.value.key == "no-such-entry"
    assert (ledger.size(), ledger.root()) == (size, root)


class NoScans:
    """A ledger that refuses every read that is not by id, by cited id, or of the charters."""

    def __init__(self, inner: SQLiteLedger) -> None:
        self.inner = inner
        self.origin = inner.origin
        self.finds = 0

    def find(self, entry_id: str) -> Any:
        self.finds += 1
        return self.inner.find(entry_id)

    def caused_by(self, entry_id: str) -> Any:
        return self.inner.caused_by(entry_id)

    def of_kind(self, kind: str, after: int = -1) -> Any:
        assert kind == "SystemCharter", f"why() scanned every {kind}"
        return self.inner.of_kind(kind, after)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"why() called ledger.{name}")


async def test_why_reads_only_what_the_walk_reaches(ledger: SQLiteLedger, gateway: Gateway, people: People):
    """Each entry is read once, by id; the ledger is never scanned."""
    for n in range(20):
        await booked(gateway, shipment=f"S-{n}")
    outcome = await reviewed(gateway, people, "approve", "ok")
    assert outcome.execution is not None
    spy = NoScans(ledger)
    p = why(spy, outcome.execution.id)
    entries = [n for n in p.nodes if n.kind not in ("Policy", "Missing")]
    assert spy.finds == len(entries)


async def test_an_ungoverned_ledger_says_nobody_answers(tmp_path: Path, clock: FakeClock):
    """With no charter in the ledger, the accountable RI is null."""
    ids = IdSource(clock)
    with SQLiteLedger.open(tmp_path / "baseline.db", create=True) as store:
        alert = event(ids, clock)
        intent = Intent(
            id=ids.new(),
            at=rfc3339(clock.now_ns()),
            causes=(alert.id,),
            agent="executor",
            operation="carrier.book",
            arguments=booking(),
            idempotency_key="k-1",
        )
        execution = Execution(
            id=ids.new(),
            at=rfc3339(clock.now_ns()),
            causes=(intent.id,),
            intent_id=intent.id,
            decision_id=None,
            operation="carrier.book",
            status="succeeded",
            authority=None,
        )
        store.append_sync([alert, intent, execution])
        for entry_id in (execution.id, intent.id, alert.id):
            doc = why(store, entry_id).to_json()
            assert doc["accountable"]["ri"] is None
            assert doc["accountable"]["via"] is None
        assert kinds(why(store, execution.id)) == ["Execution", "Intent", "ExternalEvent"]


# --- rendering and the CLI -----------------------------------------------------------------------


async def test_to_json_and_to_dot(gateway: Gateway, people: People):
    """to_json has exactly nodes, edges, accountable; to_dot is a digraph with escaped labels."""
    outcome = await reviewed(gateway, people, "deny", 'say "no"')
    assert outcome.approval is not None
    p = why(gateway.ledger, outcome.approval.id)
    doc = p.to_json()
    assert set(doc) == {"nodes", "edges", "accountable"}
    assert all(set(n) == {"id", "kind", "summary"} for n in doc["nodes"])
    assert all(set(e) == {"from", "to", "relation"} for e in doc["edges"])
    assert json.loads(json.dumps(doc)) == doc
    dot = p.to_dot()
    assert dot.startswith("digraph provenance {")
    assert dot.rstrip().endswith("}")
    assert 'say \\"no\\"' in dot
    assert dot.count(" -> ") == len(p.edges)


@pytest.fixture
async def executed(gateway: Gateway) -> tuple[Path, str]:
    outcome = await booked(gateway)
    assert outcome.execution is not None
    return Path(gateway.ledger.path), outcome.execution.id  # type: ignore[attr-defined]


def test_cli_why_json_has_exactly_the_documented_keys(executed: tuple[Path, str], people: People):
    """`answerable why --json` prints one document: nodes, edges, accountable."""
    path, execution_id = executed
    result = runner.invoke(app, ["why", str(path), execution_id, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"nodes", "edges", "accountable"}
    assert doc["nodes"][0]["id"] == execution_id
    assert doc["accountable"]["ri"] == people.ri.identity
    assert doc["accountable"]["via"] == "policy"


def test_cli_why_dot_and_tree(executed: tuple[Path, str], people: People):
    """--dot prints a digraph; the default is a tree ending with who answers."""
    path, execution_id = executed
    dot = runner.invoke(app, ["why", str(path), execution_id, "--dot"])
    assert dot.exit_code == 0, dot.output
    assert dot.stdout.startswith("digraph")
    tree = runner.invoke(app, ["why", str(path), execution_id])
    assert tree.exit_code == 0, tree.output
    assert "Intent carrier.book by executor" in tree.stdout
    assert f"accountable: {people.ri.identity} answers via policy routine-bookings" in tree.stdout


def test_cli_why_of_an_unknown_id_exits_2_naming_it(executed: tuple[Path, str]):
    """An id the ledger lacks is a usage error, named on stderr."""
    path, _ = executed
    result = runner.invoke(app, ["why", str(path), "no-such-entry"])
    assert result.exit_code == 2
    assert "no-such-entry" in result.stderr
    assert result.stdout == ""


def test_cli_why_refuses_json_and_dot_together(executed: tuple[Path, str]):
    """--json and --dot are one output each; asking for both is a usage error."""
    path, execution_id = executed
    result = runner.invoke(app, ["why", str(path), execution_id, "--json", "--dot"])
    assert result.exit_code == 2
    assert "exclusive" in result.stderr
