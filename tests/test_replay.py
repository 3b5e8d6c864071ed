"""Replay: a recorded run decided again under other rules, to judge them before the RI signs."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import POLICIES, SCHEMA, People, World, booking

from answerable import ConfigError, Gateway, Scope, SQLiteLedger
from answerable.errors import PolicyInvalid
from answerable.policy import load_ruleset
from answerable.replay import recorded_ruleset, replay, write_ruleset

STRICTER = (
    POLICIES
    + """
@id("no-booking-in-the-south")
forbid(principal, action == Action::"carrier.book", resource) when { resource.region == "south" };
"""
)


async def traffic(gateway: Gateway) -> dict[str, str]:
    """A mixed run: allowed, denied and reviewed bookings in two regions, and a noop.
    Returns intent id -> the region it booked in."""
    regions: dict[str, str] = {}
    cases = [
        booking("S-1", "retail", "north"),
        booking("S-2", "retail", "south"),
        booking("S-3", "medical", "south", disruption=True),  # review
        booking("S-4", "retail", "closed"),  # no permit: deny
        booking("S-5", "medical", "north", disruption=True),  # review
        booking("S-6", "retail", "south"),
    ]
    for args in cases:
        outcome = await gateway.submit(gateway.intent("executor", "carrier.book", args))
        regions[outcome.intent.id] = str(args["region"])
    await gateway.submit(gateway.intent("executor", "noop", {}))
    return regions


async def test_a_run_replayed_under_its_own_rules_changes_nothing(
    gateway: Gateway, ledger: SQLiteLedger, tmp_path: Path
) -> None:
    """Exported byte for byte, loaded again, every intent decides as recorded: allow, deny, review."""
    await traffic(gateway)
    policies, schema = write_ruleset(recorded_ruleset(ledger), tmp_path / "rules")
    assert (policies.name, schema.name) == ("policies.cedar", "schema.cedarschema")
    assert policies.read_text() == POLICIES
    assert schema.read_text() == SCHEMA
    report = replay(ledger, load_ruleset(policies.read_text(), schema.read_text()))
    assert (report.intents, report.replayed, report.unchanged) == (7, 7, 7)
    assert report.changed == ()
    assert report.not_replayable == ()


async def test_a_stricter_rule_changes_exactly_the_intents_it_matches(
    gateway: Gateway, ledger: SQLiteLedger
) -> None:
    """Forbidding southern bookings denies the two allowed ones and the reviewed one there,
    each naming the new policy; nothing else moves."""
    regions = await traffic(gateway)
    report = replay(ledger, load_ruleset(STRICTER, SCHEMA))
    south = {i for i, r in regions.items() if r == "south"}
    assert {c.intent for c in report.changed} == south
    assert sorted((c.recorded, c.replayed) for c in report.changed) == [
        ("allow", "deny"),
        ("allow", "deny"),
        ("review", "deny"),
    ]
    assert all(c.operation == "carrier.book" for c in report.changed)
    assert all("no-booking-in-the-south" in c.policies for c in report.changed)
    assert report.unchanged == report.replayed - 3 == 4
    doc = report.to_json()
    assert set(doc) == {"intents", "replayed", "unchanged", "changed", "not_replayable"}
    assert set(doc["changed"][0]) >= {"intent", "operation", "recorded", "replayed", "policies"}


async def test_an_intent_a_halt_denied_stays_denied_under_any_rules(
    gateway: Gateway, ledger: SQLiteLedger, people: People
) -> None:
    """The stop is a fact of the run, not a rule: replay does not lift it."""
    await gateway.control.halt(by="pager", reason="storm")
    stopped = await gateway.submit(gateway.intent("executor", "carrier.book", booking("S-9")))
    assert stopped.decision is not None
    assert stopped.decision.control_id is not None
    await gateway.control.resume(key=people.ri, reason="clear", scope=Scope(kind="system"))
    allowed = await gateway.submit(gateway.intent("executor", "carrier.book", booking("S-10")))
    assert allowed.ok
    report = replay(ledger, load_ruleset(POLICIES, SCHEMA))
    assert report.changed == ()
    assert report.replayed == 2
    stricter = replay(ledger, load_ruleset(STRICTER.replace('"south"', '"north"'), SCHEMA))
    assert [(c.intent, c.recorded, c.replayed) for c in stricter.changed] == [
        (allowed.intent.id, "allow", "deny")
    ]


async def test_a_ruleset_that_does_not_fit_the_recorded_requests_is_named_not_replayed(
    gateway: Gateway, ledger: SQLiteLedger
) -> None:
    """A schema that lacks a recorded action, types a context otherwise or wants an entity
    attribute the recorded entities lack: the intents it cannot ask about are named as not
    replayable with Cedar's reason; when it fits none of them, one precise error. A policy that
    does not parse: Cedar's error."""
    regions = await traffic(gateway)
    narrower = SCHEMA.replace(
        'action "noop" appliesTo { principal: [Agent], resource: [Resource], context: {} };\n', ""
    )
    partial = replay(ledger, load_ruleset(POLICIES.replace('Action::"noop", ', ""), narrower))
    [noop] = partial.not_replayable
    assert noop.intent not in regions
    assert "does not fit its request: failed to build request" in noop.why
    assert (partial.replayed, partial.unchanged, partial.changed) == (6, 6, ())
    wider_shipment = SCHEMA.replace(
        "entity Shipment { class: String, region: String };",
        "entity Shipment { class: String, region: String, weight: Long };",
    )
    entities = replay(ledger, load_ruleset(POLICIES, wider_shipment))
    assert {n.intent for n in entities.not_replayable} == set(regions)
    assert all("failed to parse entities: entity does not conform" in n.why for n in entities.not_replayable)
    assert all("bench-agent" not in n.why and "[{" not in n.why for n in entities.not_replayable)
    assert (entities.replayed, entities.changed) == (1, ())


async def test_a_schema_that_fits_no_recorded_request_is_one_precise_error(
    gateway: Gateway, ledger: SQLiteLedger
) -> None:
    for args in (booking("S-1"), booking("S-2", "medical", disruption=True)):
        await gateway.submit(gateway.intent("executor", "carrier.book", args))
    other_context = SCHEMA.replace("context: { disruption: Bool }", "context: { storm: Bool }")
    with pytest.raises(
        ConfigError,
        match=r"does not match what was recorded: intent \S+ \(carrier\.book\): failed to build request",
    ):
        replay(ledger, load_ruleset(POLICIES.replace("context.disruption", "context.storm"), other_context))
    renamed = SCHEMA.replace("Shipment", "Parcel")
    with pytest.raises(
        ConfigError, match=r"\(carrier\.book\): failed to parse entities: error during entity deserialization"
    ):
        replay(ledger, load_ruleset(POLICIES, renamed))
    with pytest.raises(PolicyInvalid, match="do not parse"):
        load_ruleset("permit(principal, action, resource", SCHEMA)


async def test_an_intent_the_schema_never_described_replays_unchanged_under_its_own_rules(
    ledger: SQLiteLedger, gateway: Gateway, tmp_path: Path
) -> None:
    """An operation registered at the gateway but missing from the Cedar schema was denied with
    Cedar's error when recorded; under the same rules it is denied again: no change, no error."""
    gateway.register("carrier.track", lambda: None, resource_class="bench")
    denied = await gateway.submit(gateway.intent("executor", "carrier.track", {}))
    assert denied.decision is not None
    assert denied.decision.effect == "deny"
    assert any("failed to build request" in e for e in denied.decision.errors)
    await gateway.submit(gateway.intent("executor", "noop", {}))
    policies, schema = write_ruleset(recorded_ruleset(ledger), tmp_path / "rules")
    report = replay(ledger, load_ruleset(policies.read_text(), schema.read_text()))
    assert (report.replayed, report.unchanged, report.changed, report.not_replayable) == (2, 2, (), ())


async def test_export_names_its_version_and_refuses_one_not_recorded(
    ledger: SQLiteLedger, gateway: Gateway
) -> None:
    assert recorded_ruleset(ledger, 1).version == 1
    with pytest.raises(ConfigError, match="records no ruleset version 3; it holds 1"):
        recorded_ruleset(ledger, 3)


def test_a_ledger_without_rules_has_nothing_to_export(tmp_path: Path) -> None:
    with (
        SQLiteLedger.open(tmp_path / "empty.db", create=True, origin="test.example/empty") as empty,
        pytest.raises(ConfigError, match="records no ruleset"),
    ):
        recorded_ruleset(empty)


async def test_an_ungoverned_intent_is_listed_as_not_replayable(
    gateway: Gateway, ledger: SQLiteLedger, world: World
) -> None:
    """An Intent no Decision followed (recorded by an ungoverned runner) is named with why."""
    intent = gateway.intent("executor", "carrier.book", booking("S-7"))
    await ledger.append([intent])
    report = replay(ledger, load_ruleset(POLICIES, SCHEMA))
    assert [(n.intent, n.why) for n in report.not_replayable] == [
        (intent.id, "no Decision was recorded for it (ungoverned)")
    ]
    assert report.intents == 1
    assert report.replayed == 0


async def test_the_default_export_is_the_ruleset_a_restarted_gateway_would_load(
    gateway: Gateway, ledger: SQLiteLedger, people: People
) -> None:
    """A RulesetVersion appended by someone who is not the RI never took effect: the default
    export skips it, as a gateway restarted on this ledger would; --version still finds it."""
    from answerable.charter import new_ruleset

    forged = new_ruleset(STRICTER, SCHEMA, people.stranger, version=2)
    await ledger.append([forged])
    assert recorded_ruleset(ledger).version == 1
    assert recorded_ruleset(ledger, 2).policies == STRICTER
