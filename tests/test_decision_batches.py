"""Cedar decisions made together: a batch decides each request exactly as it would be decided alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import cedarpy
import pytest
from support import POLICIES, SCHEMA, World, booking

from answerable import Gateway, SQLiteLedger, load_ruleset
from answerable._turns import PerTurn
from answerable.policy import CedarRequest, Ruleset, decide, decide_many
from answerable.records import Decision, decode_entry


def shipment(
    sid: str, cls: str = "retail", region: str = "north", disruption: bool = False, agent: str = "executor"
) -> CedarRequest:
    return CedarRequest(
        principal=("Agent", agent),
        action="carrier.book",
        resource=("Shipment", sid),
        context={"disruption": disruption},
        entities=(
            {"uid": {"type": "Agent", "id": agent}, "attrs": {}, "parents": []},
            {
                "uid": {"type": "Shipment", "id": sid},
                "attrs": {"class": cls, "region": region},
                "parents": [],
            },
        ),
    )


@pytest.fixture(scope="module")
def rules() -> Ruleset:
    return load_ruleset(POLICIES, SCHEMA)


def mixed() -> list[CedarRequest]:
    """Allow, review, deny, an evaluation error and a malformed request; some share entities."""
    return [
        shipment("S-1"),
        shipment("S-1", disruption=True),  # same entities as the first, other context
        shipment("S-2", cls="medical", disruption=True),  # review
        shipment("S-3", region="closed"),  # no permit: deny
        shipment("S-4", agent="router"),
        # Context of the wrong type in the same group as S-1: Cedar's error is this request's alone.
        CedarRequest(
            ("Agent", "executor"),
            "carrier.book",
            ("Shipment", "S-1"),
            {"disruption": "yes"},
            shipment("S-1").entities,
        ),
        CedarRequest(("Agent", "executor"), "carrier.book", ("Shipment", "S-6"), {"x": float("nan")}, ()),
        shipment("S-1"),
    ]


def test_a_batch_decides_each_request_as_it_is_decided_alone(rules: Ruleset) -> None:
    requests = mixed()
    together = decide_many(requests, rules)
    alone = [decide(r, rules) for r in requests]
    assert together == alone
    assert [v.effect for v in together] == [
        "allow",
        "allow",
        "review",
        "deny",
        "allow",
        "deny",
        "deny",
        "allow",
    ]


def test_requests_share_a_cedar_call_only_when_they_carry_the_same_entities(
    rules: Ruleset, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, str]] = []
    real = cedarpy.is_authorized_batch

    def counting(
        requests: list[dict[str, object]], policies: object, entities: str, schema: object
    ) -> object:
        calls.append((len(requests), entities))
        return real(requests, policies, entities, schema)  # type: ignore[arg-type]

    monkeypatch.setattr(cedarpy, "is_authorized_batch", counting)
    decide_many([shipment("S-1"), shipment("S-1", disruption=True), shipment("S-2"), shipment("S-1")], rules)
    assert sorted(n for n, _ in calls) == [1, 3]
    assert all(entities.count('"S-2"') == 0 for n, entities in calls if n == 3)


def test_a_request_whose_entities_the_schema_refuses_does_not_deny_its_neighbours(rules: Ruleset) -> None:
    """One shared call fails as a whole; each request is then decided alone."""
    broken = CedarRequest(
        ("Agent", "executor"),
        "carrier.book",
        ("Shipment", "S-1"),
        {"disruption": False},
        ({"uid": {"type": "Shipment", "id": "S-1"}, "attrs": {"region": "north"}, "parents": []},),
    )
    fine = CedarRequest(
        broken.principal, broken.action, broken.resource, {"disruption": True}, broken.entities
    )
    fine_entities = shipment("S-1").entities
    requests = [broken, CedarRequest(fine.principal, fine.action, fine.resource, fine.context, fine_entities)]
    verdicts = decide_many([requests[0], requests[0], requests[1]], rules)
    assert [v.effect for v in verdicts] == ["deny", "deny", "allow"]
    assert "class" in " ".join(verdicts[0].errors)


def test_json_checked_skips_only_the_walk_not_the_shape_checks(rules: Ruleset) -> None:
    bad_shape = CedarRequest(("Agent",), "carrier.book", ("Shipment", "S"), {}, ())  # type: ignore[arg-type]
    [verdict] = decide_many([bad_shape], rules, json_checked=True)
    assert verdict.effect == "deny"
    assert "malformed" in verdict.errors[0]
    nan = CedarRequest(("Agent", "executor"), "carrier.book", ("Shipment", "S"), {"x": float("nan")}, ())
    assert "not JSON" in decide_many([nan], rules)[0].errors[0]


async def test_per_turn_gathers_the_items_of_one_turn_into_one_call() -> None:
    seen: list[list[int]] = []

    def work(items: Sequence[int]) -> list[int]:
        seen.append(list(items))
        return [i * 10 for i in items]

    batch: PerTurn[int, int] = PerTurn(work)
    results = await asyncio.gather(*(batch(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert seen == [[0, 1, 2, 3, 4]]
    assert await batch(7) == 70
    assert seen[-1] == [7]


async def test_per_turn_hands_a_failure_to_every_caller_of_the_turn_and_skips_the_cancelled() -> None:
    def failing(items: Sequence[int]) -> list[int]:
        raise ValueError(f"no for {list(items)}")

    batch: PerTurn[int, int] = PerTurn(failing)
    results = await asyncio.gather(batch(1), batch(2), return_exceptions=True)
    assert [str(r) for r in results] == ["no for [1, 2]", "no for [1, 2]"]

    short: PerTurn[int, int] = PerTurn(lambda items: [1])
    results = await asyncio.gather(short(1), short(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "1 results for 2 items" in str(r) for r in results)

    fine: PerTurn[int, int] = PerTurn(lambda items: list(items))
    cancelled = asyncio.ensure_future(fine(1))
    kept = asyncio.ensure_future(fine(2))
    await asyncio.sleep(0)  # both are waiting for the end of the turn
    cancelled.cancel()
    assert await kept == 2
    assert cancelled.cancelled()


async def test_concurrent_submits_record_what_each_would_record_alone(
    gateway: Gateway, ledger: SQLiteLedger, world: World
) -> None:
    """Decided in one Cedar call, each Decision still records its own request, policies and effect."""
    args = [
        booking("S-1"),
        booking("S-2", cls="medical", disruption=True),
        booking("S-3", region="closed"),
        booking("S-1", disruption=True),
    ]
    outcomes = await asyncio.gather(
        *(gateway.submit(gateway.intent("executor", "carrier.book", a)) for a in args)
    )
    assert [o.status for o in outcomes] == ["succeeded", "review", "denied", "succeeded"]
    decisions = [decode_entry(e.data) for e in ledger.of_kind("Decision")]
    assert all(isinstance(d, Decision) for d in decisions)
    by_intent = {d.intent_id: d for d in decisions if isinstance(d, Decision)}
    rules = load_ruleset(POLICIES, SCHEMA)
    for outcome in outcomes:
        recorded = by_intent[outcome.intent.id]
        again = decide(CedarRequest.from_record(recorded.request, recorded.entities), rules)
        assert (recorded.effect, recorded.policy_ids) == (again.effect, again.policy_ids)
    assert world.calls == 2


class _Answer:
    """What cedarpy's AuthzResult offers the policy module: a decision and its diagnostics."""

    def __init__(self, decision: str) -> None:
        self.decision = cedarpy.Decision(decision)
        self.diagnostics = type("Diagnostics", (), {"reasons": [], "errors": []})()


def test_a_shared_call_that_raises_is_made_again_one_request_at_a_time(
    rules: Ruleset, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = cedarpy.is_authorized_batch
    sizes: list[int] = []

    def refuses_batches(requests: list[dict[str, object]], *args: object) -> object:
        sizes.append(len(requests))
        if len(requests) > 1:
            raise RuntimeError("the bindings failed")
        return real(requests, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(cedarpy, "is_authorized_batch", refuses_batches)
    medical = shipment("S-1", cls="medical")
    urgent = CedarRequest(
        medical.principal, medical.action, medical.resource, {"disruption": True}, medical.entities
    )
    verdicts = decide_many([medical, urgent], rules)  # one entity set: one shared call, refused
    assert sizes[:3] == [2, 1, 1]
    assert [v.effect for v in verdicts] == ["allow", "review"]
    assert verdicts[0].policy_ids == ("routine-bookings",)


def test_cedar_answering_the_wrong_number_of_requests_is_a_deny_naming_it(
    rules: Ruleset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cedarpy, "is_authorized_batch", lambda requests, *args: [])
    [verdict] = decide_many([shipment("S-1")], rules)
    assert verdict.effect == "deny"
    assert verdict.errors == ("Cedar could not evaluate the request: Cedar answered 0 of 1 requests",)


def test_no_decision_from_cedar_is_a_deny_saying_so(rules: Ruleset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cedarpy, "is_authorized_batch", lambda requests, *args: [_Answer("NoDecision")])
    [verdict] = decide_many([shipment("S-1")], rules)
    assert (verdict.effect, verdict.errors) == ("deny", ("Cedar reached no decision",))


@pytest.mark.parametrize(
    ("context", "entities"),
    [(["not", "a", "mapping"], ()), ({}, "not a sequence"), ({}, {"uid": "a mapping"})],
)
def test_a_context_that_is_no_mapping_or_entities_that_are_no_sequence_are_named(
    rules: Ruleset, context: object, entities: object
) -> None:
    request = CedarRequest(("Agent", "executor"), "carrier.book", ("Shipment", "S"), context, entities)  # type: ignore[arg-type]
    [verdict] = decide_many([request], rules, json_checked=True)
    assert verdict.errors == (
        "the Cedar request is malformed: context must be a mapping and entities a sequence",
    )


def test_the_verdicts_a_ruleset_keeps_are_the_ones_it_would_make_and_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cedar's answers without errors are turned into verdicts once per ruleset; an answer with
    errors is never kept (its text is its own), and the memory starts again when full."""
    from answerable import policy

    fresh = load_ruleset(POLICIES, SCHEMA)
    requests = mixed()
    first = decide_many(requests, fresh)
    kept = dict(fresh.verdicts)
    said = {e for v, _ in kept.values() if v is not None for e in v.errors}
    assert kept
    assert said <= {"no policy permits this request"}
    assert any("context" in e for v in first for e in v.errors)  # though one answer had one
    again = decide_many(requests, fresh)
    assert again == first == decide_many(requests, load_ruleset(POLICIES, SCHEMA))
    assert fresh.verdicts == kept  # nothing new to keep: the same answers came back

    monkeypatch.setattr(policy, "_VERDICTS_KEPT", 2)
    small = load_ruleset(POLICIES, SCHEMA)
    sizes = []
    for request in requests * 2:
        assert decide(request, small) == decide(request, fresh)
        sizes.append(len(small.verdicts))
    assert max(sizes) == 2
    assert 1 in sizes[1:]
