"""The storm, run both ways from the same seeds: the failure emerges, governance prevents it."""

from __future__ import annotations

import ast
import asyncio
import base64
import inspect
from collections import Counter

import pytest
from procs import SOAK

from answerable import SQLiteLedger
from answerable.logistics import agents
from answerable.logistics.demo import price_of_accountability, storm
from answerable.logistics.governance import RI
from answerable.logistics.scenario import RunResult
from answerable.logistics.services import Booking, DispatchRequest, TransferRequest
from answerable.records import Approval, Execution, ExternalEvent, Intent, Message, decode_entry

pytestmark = [pytest.mark.slow, pytest.mark.soak]
SEEDS = (7, 3) if SOAK else (7,)
"""Seed 7 in ``make test``; seed 3 too under ``make soak``."""


@pytest.fixture(scope="module", params=SEEDS, ids=lambda s: f"seed{s}")
def runs(request, tmp_path_factory) -> dict[str, RunResult]:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp(f"storm{request.param}")
    return asyncio.run(storm(request.param, out, modes=("ungoverned", "rules", "governed")))  # type: ignore[return-value]


def entries(result: RunResult, kind: str) -> list:  # type: ignore[type-arg]
    with SQLiteLedger.open(result.ledger) as ledger:
        return [decode_entry(e.data) for e in ledger.of_kind(kind)]


def test_ungoverned_run_lets_medical_fall_behind_retail(runs):
    """Without governance, hospitals are served clearly worse than stores."""
    m = runs["ungoverned"].metrics
    assert m["medical_on_time_rate"] < m["retail_on_time_rate"] - 0.05


def test_governed_run_keeps_hospitals_supplied(runs):
    """With governance, medical on-time is at least 0.95 and above retail's."""
    m = runs["governed"].metrics
    assert m["medical_on_time_rate"] >= 0.95
    assert m["medical_on_time_rate"] > m["retail_on_time_rate"]


def test_price_of_accountability_is_within_three_percent(runs):
    """Governed transport and handling cost no more than 3% above the ungoverned run's."""
    assert price_of_accountability(runs) <= 3.0


def test_failure_is_where_the_storm_is(runs):
    """The ungoverned medical lateness sits in the storm region; elsewhere hospitals are served."""
    world = runs["ungoverned"].world
    judged = [o for o in world.orders.values() if o.cls == "medical" and o.due_day < world.config.days]
    on_time: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for order in judged:
        total[order.region] += 1
        on_time[order.region] += order.delivered_day is not None and order.delivered_day <= order.due_day
    rates = {r: on_time[r] / total[r] for r in total}
    storm_region = world.config.storm.region
    assert rates[storm_region] < 0.8
    assert all(rate >= 0.9 for region, rate in rates.items() if region != storm_region)


def test_no_agent_ranks_by_class():
    """Nothing in the agents' code (docstrings aside) names a class of goods: the ranking must emerge."""
    tree = ast.parse(inspect.getsource(agents))
    prose = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
    for banned in ("medical", "retail", "hospital", "store", "cls", "clinical", "penalty"):
        assert not [w for w in words if banned in w.lower()], banned


def test_every_governed_execution_is_attributed_to_the_ri(runs):
    """actions_attributed == actions_executed, and each names the RI through a policy or an approval."""
    m = runs["governed"].metrics
    assert m["actions_attributed"] == m["actions_executed"] > 0
    for execution in entries(runs["governed"], "Execution"):
        assert execution.authority is not None
        assert execution.authority.responsible == RI
        assert execution.authority.via in ("policy", "approval")


def test_ungoverned_executions_have_no_one_to_answer(runs):
    """In the baseline nothing decided the actions and no one answers for them."""
    m = runs["ungoverned"].metrics
    assert m["actions_executed"] > 0
    assert m["actions_attributed"] == 0


@pytest.mark.parametrize("mode", ["ungoverned", "governed"])
def test_every_execution_reaches_back_to_external_events(runs, mode):
    """The causal chain of every execution reaches the orders, and during the storm the storm alert."""
    result = runs[mode]
    with SQLiteLedger.open(result.ledger) as ledger:
        memo: dict[str, frozenset[str]] = {}

        def reach(entry_id: str) -> frozenset[str]:
            if entry_id in memo:
                return memo[entry_id]
            record = decode_entry(ledger.find(entry_id).data)
            found: set[str] = {record.type} if isinstance(record, ExternalEvent) else set()
            for cause in record.causes:
                found |= reach(cause)
            memo[entry_id] = frozenset(found)
            return memo[entry_id]

        executions = [decode_entry(e.data) for e in ledger.of_kind("Execution")]
        storm = result.world.config.storm
        for execution in executions:
            assert isinstance(execution, Execution)
            origins = reach(execution.id)
            assert "orders.batch" in origins or "delivery" in origins, execution.id
            intent = decode_entry(ledger.find(execution.intent_id).data)
            assert isinstance(intent, Intent)
            day = intent.arguments.get("day")
            if day is not None and storm.start_day <= day < storm.start_day + storm.days:
                assert "storm.alert" in origins, execution.id


@pytest.mark.parametrize("mode", ["ungoverned", "governed"])
def test_both_ledgers_verify(runs, mode):
    """answerable verify passes on both ledgers."""
    with SQLiteLedger.open(runs[mode].ledger) as ledger:
        assert ledger.verify().size == runs[mode].metrics["ledger_entries"]


@pytest.mark.parametrize("mode", ["ungoverned", "governed"])
def test_partner_records_match_the_ledger_one_to_one(runs, mode):
    """Each booking, dispatch and transfer a partner made has exactly one succeeded Execution, and back."""
    result = runs[mode]
    intents = {i.id: i for i in entries(result, "Intent")}
    succeeded = [x for x in entries(result, "Execution") if x.status == "succeeded"]
    by_operation: dict[str, list[str]] = {}
    for execution in succeeded:
        by_operation.setdefault(execution.operation, []).append(intents[execution.intent_id].idempotency_key)
    world = result.world
    carrier = [r.key for r in world.carrier.records if isinstance(r.response, Booking)]
    dispatches = [r.key for r in world.warehouse.records if isinstance(r.body, DispatchRequest)]
    transfers = [r.key for r in world.warehouse.records if isinstance(r.body, TransferRequest)]
    assert sorted(carrier) == sorted(by_operation.get("carrier.book", []))
    assert sorted(dispatches) == sorted(by_operation.get("warehouse.dispatch", []))
    assert sorted(transfers) == sorted(by_operation.get("inventory.reallocate", []))
    assert len(set(carrier)) == len(carrier)
    assert len(world.promises) == len(by_operation.get("shipment.reprioritize", []))


def test_denied_reviews_become_constraints_the_router_replans_with(runs):
    """A refusal (a person's denial, or a monitor's pause) is told to the planners; a new plan cites it."""
    result = runs["governed"]
    messages = entries(result, "Message")
    approvals = {a.id: a for a in entries(result, "Approval") if isinstance(a, Approval)}
    paused = {d.id for d in entries(result, "Decision") if d.effect == "deny" and d.control_id}
    must = [m for m in messages if isinstance(m, Message) and m.type == "must_serve"]
    assert must
    for message in must:
        assert any((c in approvals and approvals[c].verdict == "deny") or c in paused for c in message.causes)
    replans = [
        m for m in messages if m.type == "route.plan" and any(c in {x.id for x in must} for c in m.causes)
    ]
    assert len(replans) == len(must)
    assert all(m.payload["version"] >= 2 for m in replans)
    assert runs["governed"].metrics["reviews_denied"] > 0
    assert runs["governed"].metrics["reviews_approved"] > 0


def test_result_json_has_the_contract_keys(runs):
    """result.json carries seed and, per run, every figure the issue names."""
    import json

    document = json.loads((runs["governed"].ledger.parent / "result.json").read_text())
    assert set(document["runs"]) == {"ungoverned", "rules", "governed"}
    required = {
        "medical_orders", "medical_on_time_rate", "retail_orders", "retail_on_time_rate", "total_cost",
        "penalties", "margin", "actions_executed", "actions_attributed", "actions_denied", "reviews_raised",
        "reviews_approved", "reviews_denied", "ledger_entries", "wall_seconds",
        # the whole price: costs split, changes against ungoverned, what review cost and waited
        "transport_cost_cents", "handling_cost_cents", "moving_cost_cents", "total_cost_change_pct",
        "margin_change_pct", "review_wait_p50_minutes", "review_wait_p95_minutes", "reviewer_hours",
        "reviewers",
    }  # fmt: skip
    for metrics in document["runs"].values():
        assert required <= set(metrics)
        split = (
            metrics["transport_cost_cents"] + metrics["handling_cost_cents"] + metrics["moving_cost_cents"]
        )
        assert split == metrics["total_cost"]
    governed, base = document["runs"]["governed"], document["runs"]["ungoverned"]
    assert governed["margin_change_pct"] == round(
        100 * (governed["margin"] - base["margin"]) / base["margin"], 2
    )
    assert document["price_of_accountability_pct"] == governed["total_cost_change_pct"]
    assert document["seed"] in SEEDS


def test_rules_alone_keep_hospitals_supplied_with_no_person_asked(runs):
    """The desk's written guidance compiled to Cedar: what review decided, rules decide."""
    rules = runs["rules"].metrics
    assert rules["medical_on_time_rate"] >= 0.95
    assert rules["medical_on_time_rate"] >= rules["retail_on_time_rate"]
    assert (rules["reviews_raised"], rules["reviewers"]) == (0, "none")
    assert rules["actions_attributed"] == rules["actions_executed"]
    executions = [x for x in entries(runs["rules"], "Execution") if x.status == "succeeded"]
    assert {x.authority.via for x in executions} == {"policy"}
    decisions = entries(runs["rules"], "Decision")
    assert any("clinical-priority-medical-shipments-are-not-postponed" in d.policy_ids for d in decisions)


def test_the_desk_is_modelled_people_marked_simulated_who_take_time_and_follow_their_guidance(runs):
    """Every answer is by a reviewer the charter marks simulated, carries the mark, took
    simulated minutes, and follows the written guidance on what the review shows, except the
    answers the model drew as errors, which say so."""
    from answerable.charter import charter_of
    from answerable.logistics.desk import DEFAULT_DESK, ModelledDesk, cited, facts_of

    governed = runs["governed"]
    with SQLiteLedger.open(governed.ledger) as ledger:
        charter = charter_of(ledger)
        reviews = {r.id: decode_entry(r.data) for r in ledger.of_kind("Review")}
        decisions = {d.id: decode_entry(d.data) for d in ledger.of_kind("Decision")}
        closed = [decode_entry(c.data) for c in ledger.of_kind("ReviewClosed")]
        intents = {i.id: decode_entry(i.data) for i in ledger.of_kind("Intent")}
        shown = {r: cited(ledger, intents[review.intent_id]) for r, review in reviews.items()}
    answers = entries(governed, "Approval")
    assert answers
    desk = {r.name for r in DEFAULT_DESK.reviewers}
    decide = ModelledDesk(None, None, DEFAULT_DESK, 0)._decide  # type: ignore[arg-type]
    errors = 0
    for answer in answers:
        person = charter.person(answer.by)
        assert person is not None
        assert (answer.by in desk, person.simulated, answer.simulated) == (True, True, True)
        assert "simulated" in answer.reason
        review = reviews[answer.review_id]
        intent = intents[review.intent_id]
        verdict, _ = decide(
            facts_of(decisions[review.decision_id], review.operation, intent, shown[review.id])
        )
        if "against the guidance" in answer.reason:
            errors += 1
            assert answer.verdict != verdict
        else:
            assert answer.verdict == verdict
    metrics = governed.metrics
    assert errors == metrics["answers_against_guidance"]
    assert metrics["review_wait_p50_minutes"] > 0  # waiting is real: answers come minutes later
    assert metrics["reviewer_hours"] > 0
    assert metrics["reviewers"] == "modelled people (simulated)"
    # a review nobody reached before it expired closed with its rule's safe default, and its
    # intent never ran
    assert len(closed) == metrics["reviews_too_late"]
    assert {c.resolution for c in closed} <= {"deny"}
    executed = {x.intent_id for x in entries(governed, "Execution")}
    assert not {reviews[c.review_id].intent_id for c in closed} & executed


def test_why_of_every_governed_execution_reaches_an_event_and_names_the_ri(runs):
    """provenance.why() of each governed execution reaches an external event and names the RI."""
    from answerable.provenance import why

    with SQLiteLedger.open(runs["governed"].ledger) as ledger:
        for stored in ledger.of_kind("Execution"):
            graph = why(ledger, stored.id).to_json()
            assert any(node["kind"] == "ExternalEvent" for node in graph["nodes"]), stored.id
            assert graph["accountable"]["ri"] == RI
            assert graph["accountable"]["via"] in ("policy", "approval")


def test_the_published_storm_ledger_audits_with_an_independent_tlog_client(runs, tmp_path, tlogcheck):  # type: ignore[no-untyped-def]
    """The governed storm's ledger, published as tlog tiles, passes Go's sumdb/tlog audit."""
    from support import tlog_audit

    from answerable.ledger.tiles import publish

    with SQLiteLedger.open(runs["governed"].ledger) as ledger:
        done = publish(ledger, tmp_path / "log")
        key, root = ledger.verifier_key(), ledger.root(done.size)
    assert done.size > 256  # more than one tile
    report = tlog_audit(tlogcheck, tmp_path / "log", key)
    assert report == f"ok {done.size} {base64.b64encode(root).decode()}"


def _postponements(result: RunResult) -> list[tuple[dict[str, object], str]]:
    """Each proposed postponement during the storm: what its review would show, and what came of it
    ("executed", "executed in error" when a modelled error approved it, or the effect that
    stopped it)."""
    from answerable.logistics.desk import cited, facts_of

    with SQLiteLedger.open(result.ledger) as ledger:
        intents = {i.id: decode_entry(i.data) for i in ledger.of_kind("Intent")}
        decisions = {d.intent_id: d for d in (decode_entry(e.data) for e in ledger.of_kind("Decision"))}
        done = {x.intent_id for x in (decode_entry(e.data) for e in ledger.of_kind("Execution"))}
        reviews = {r.id: decode_entry(r.data) for r in ledger.of_kind("Review")}
        erred = {
            reviews[a.review_id].intent_id
            for a in (decode_entry(e.data) for e in ledger.of_kind("Approval"))
            if "against the guidance" in a.reason
        }
        out = []
        for intent in intents.values():
            decision = decisions.get(intent.id)
            if intent.operation != "shipment.reprioritize" or decision is None:
                continue
            facts = facts_of(decision, intent.operation, intent, cited(ledger, intent))
            # what the review showed is what the world held: the store's marks, the hospital's stock
            world, orders = result.world, intent.arguments["orders"]
            assert facts["time_critical"] == any(world.orders[o].time_critical for o in orders)
            customer, day = intent.arguments["shipment"].split("@")[0], intent.arguments["to_day"] - 1
            assert facts.get("cover_days") == world.cover_reported[day].get(customer)
            if facts.get("disruption"):
                done_as = "executed in error" if intent.id in erred else "executed"
                out.append((facts, done_as if intent.id in done else decision.effect))
    return out


def test_review_decides_the_cases_rules_cannot_see_and_the_table_shows_the_difference(runs):
    """The hospitals' reported stock and the stores' time-critical marks are in the reports a
    postponement cites, not in the request: the rules refuse every medical postponement in the
    storm and let every retail one through; the desk lets a well-stocked hospital wait and
    refuses to postpone a time-critical line. The outcome table differs where those cases say."""
    rules, governed = _postponements(runs["rules"]), _postponements(runs["governed"])
    covered = [(f, o) for f, o in rules if f.get("class") == "medical" and f.get("cover_days", 0) >= 3]
    critical = [(f, o) for f, o in rules if f.get("class") == "retail" and f.get("time_critical")]
    assert covered  # the rules met both cases ...
    assert critical
    assert {o for _, o in covered} == {"deny"}  # ... and refused every well-stocked hospital's wait
    assert {o for _, o in critical} == {"executed"}  # ... and postponed every time-critical line
    waited = [f for f, o in governed if o == "executed" and f.get("class") == "medical"]
    assert waited
    assert all(f.get("cover_days", 0) >= 3 for f in waited)
    kept = [o for f, o in governed if f.get("class") == "retail" and f.get("time_critical")]
    assert kept
    assert "executed" not in kept  # only the desk's modelled errors let one wait
    r, g = runs["rules"].metrics, runs["governed"].metrics
    assert g["time_critical_on_time_rate"] > r["time_critical_on_time_rate"]
    assert g["time_critical_shipments_postponed"] < r["time_critical_shipments_postponed"]
    assert g["medical_on_time_rate"] >= 0.95
    assert g["medical_on_time_rate"] >= g["retail_on_time_rate"]


@pytest.mark.parametrize("mode", ["ungoverned", "rules", "governed"])
def test_the_coordination_graph_holds_every_message_once_and_the_governed_storm_stays_in_its_contract(
    runs, mode
):
    """Every Message entry is in exactly one edge; the governed runs use only declared channels,
    refuse nothing, and the drift monitor stays quiet through the storm's own shifts."""
    from answerable.coordination import observe

    with SQLiteLedger.open(runs[mode].ledger) as ledger:
        graph = observe(ledger).as_json()
        messages = len(ledger.of_kind("Message"))
    assert sum(e["messages"] for e in graph["edges"]) == messages > 0
    assert len({(e["from"], e["topic"], e["type"]) for e in graph["edges"]}) == len(graph["edges"])
    if mode != "ungoverned":
        assert (graph["contract"], graph["undeclared"], graph["refused"]) == (True, [], 0)
        assert runs[mode].metrics["coordination_alerts"] == []


STRICTER_STORM_RULE = """
@id("no-medical-reprioritization")
forbid(principal, action == Action::"shipment.reprioritize", resource) when { resource.class == "medical" };
"""


@pytest.mark.parametrize("mode", ["rules", "governed"])
def test_a_storm_ledger_replays_under_its_own_rules_unchanged_and_under_a_stricter_one_as_expected(
    runs, mode, tmp_path
):  # type: ignore[no-untyped-def]
    """Issue 11's replay on a real run: its exported rules decide every intent as recorded; a
    rule forbidding every medical reprioritization denies exactly the recorded ones that were
    not denied, found here from the Decisions' own resource entities."""
    from answerable.policy import load_ruleset
    from answerable.records import Decision
    from answerable.replay import recorded_ruleset, replay, write_ruleset

    with SQLiteLedger.open(runs[mode].ledger) as ledger:
        policies, schema = write_ruleset(recorded_ruleset(ledger), tmp_path / "rules")
        own = replay(ledger, load_ruleset(policies.read_text(), schema.read_text()))
        stricter = replay(
            ledger, load_ruleset(policies.read_text() + STRICTER_STORM_RULE, schema.read_text())
        )
        first: dict[str, Decision] = {}
        for stored in ledger.of_kind("Decision"):
            decision = decode_entry(stored.data)
            assert isinstance(decision, Decision)
            first.setdefault(decision.intent_id, decision)
        intents = len(ledger.of_kind("Intent"))
    assert (own.intents, own.replayed, own.unchanged, own.changed, own.not_replayable) == (
        intents, intents, intents, (), ()
    )  # fmt: skip

    def medical(d: Decision) -> bool:
        resource = d.request["resource"]
        return any(e["uid"] == resource and e["attrs"].get("class") == "medical" for e in d.entities)

    expected = {
        i for i, d in first.items()
        if d.request["action"]["id"] == "shipment.reprioritize" and medical(d) and d.effect != "deny"
        and d.control_id is None
    }  # fmt: skip
    assert expected, "the storm reprioritized medical shipments"
    assert {c.intent for c in stricter.changed} == expected
    assert all(c.replayed == "deny" and "no-medical-reprioritization" in c.policies for c in stricter.changed)


def test_an_ungoverned_storm_ledger_has_nothing_to_replay(runs):  # type: ignore[no-untyped-def]
    """The baseline decided nothing: every intent is named as not replayable, none is invented."""
    from answerable.logistics.governance import POLICIES, SCHEMA
    from answerable.policy import load_ruleset
    from answerable.replay import replay

    with SQLiteLedger.open(runs["ungoverned"].ledger) as ledger:
        report = replay(ledger, load_ruleset(POLICIES, SCHEMA))
        intents = len(ledger.of_kind("Intent"))
    assert (report.intents, report.replayed, len(report.not_replayable)) == (intents, 0, intents)
