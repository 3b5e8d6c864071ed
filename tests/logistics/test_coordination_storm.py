"""The storm's agents under a declared contract, and a side channel the scenario can switch on:
the router sending priority hints straight to the allocator. Ungoverned it goes through unseen;
governed it is refused, recorded, shown and alerted."""

from __future__ import annotations

import asyncio
from pathlib import Path

from answerable import SQLiteLedger
from answerable.coordination import observe
from answerable.logistics.demo import storm
from answerable.logistics.world import ScenarioConfig, Storm
from answerable.records import Alert, Refusal, decode_entry

HINTS = ScenarioConfig(
    days=2,
    stores_per_region=12,
    hospitals_per_region=3,
    orders_per_day=400,
    trucks_per_region=2,
    router_iterations=200,
    storm=Storm(start_day=0, days=2),
    priority_hints=True,
)


def test_an_undeclared_channel_goes_unseen_ungoverned_and_is_refused_shown_and_alerted_governed(
    tmp_path: Path,
) -> None:
    runs = asyncio.run(storm(7, tmp_path, modes=("ungoverned", "governed"), config=HINTS))
    with SQLiteLedger.open(runs["ungoverned"].ledger) as ledger:
        loose = observe(ledger).as_json()
    hints = [e for e in loose["edges"] if e["topic"] == "hints"]
    assert len(hints) == 1
    assert (hints[0]["from"], hints[0]["type"], hints[0]["to"]) == ("router", "priority.hint", ["allocator"])
    assert hints[0]["messages"] > 0
    assert (loose["contract"], loose["undeclared"], loose["refused"]) == (False, [], 0)

    with SQLiteLedger.open(runs["governed"].ledger) as ledger:
        graph = observe(ledger).as_json()
        refusals = [decode_entry(e.data) for e in ledger.of_kind("Refusal")]
        alerts = [decode_entry(e.data) for e in ledger.of_kind("Alert")]
    assert not [e for e in graph["edges"] if e["topic"] == "hints"]
    (refusal,) = refusals  # the router reacts to the refusal: it stops trying
    assert isinstance(refusal, Refusal)
    assert (refusal.claimed, refusal.topic, refusal.reason_code) == ("router", "hints", "undeclared_topic")
    assert graph["refused"] == 1
    drift = [a for a in alerts if isinstance(a, Alert) and a.monitor == "no-new-coordination-channel"]
    assert len(drift) == 1
    assert drift[0].evidence == (refusal.id,)
    assert runs["governed"].metrics["coordination_alerts"][0]["topic"] == "hints"
