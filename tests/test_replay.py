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
    assert set(doc["changed"][0]) == {"intent", "operation", "recorded", "replayed", "policies"}


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
    """A schema without the recorded action, or with other context: one precise error, naming
    the first intent it cannot ask about; a policy that does not parse: Cedar's error."""
    await traffic(gateway)
    narrower = SCHEMA.replace(
        'action "noop" appliesTo { principal: [Agent], resource: [Resource], context: {} };\n', ""
    )
    no_noop = POLICIES.replace('Action::"noop", ', "")
    with pytest.raises(
        ConfigError, match=r"does not match what was recorded: intent \S+ \(noop\): failed to build"
    ):
        replay(ledger, load_ruleset(no_noop, narrower))
    other_context = SCHEMA.replace("context: { disruption: Bool }", "context: { storm: Bool }")
    with pytest.raises(ConfigError, match=r"\(carrier\.book\): failed to build request"):
        replay(ledger, load_ruleset(POLICIES.replace("context.disruption", "context.storm"), other_context))
    with pytest.raises(PolicyInvalid, match="do not parse"):
        load_ruleset("permit(principal, action, resource", SCHEMA)


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
