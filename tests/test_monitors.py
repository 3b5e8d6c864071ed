"""Monitors: invariants from configuration, evaluated incrementally; a breach pauses exactly its class."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import booking, store_away_once

from answerable import ConfigError, Gateway, SQLiteLedger
from answerable.clock import rfc3339
from answerable.monitors import Monitors, load_monitors
from answerable.records import Alert, Control, ExternalEvent, decode_entry

KNOWN = {"resource_class:medical", "resource_class:retail", "operation:carrier.book", "operation:noop"}
RATE_GAP = {
    "monitors": [
        {
            "name": "medical-vs-retail",
            "shape": "rate_gap",
            "invariant": "medical on-time may not fall more than 5 points below retail",
            "source": {"kind": "ExternalEvent", "types": ["delivery"]},
            "outcome": "payload.on_time",
            "group": "payload.class",
            "watch": "medical",
            "versus": "retail",
            "max_gap_permille": 50,
            "window": 20,
            "min_samples": 10,
            "respond": {"pause": "resource_class:medical"},
        }
    ]
}


def deliveries(gateway: Gateway, cls: str, on_time: list[bool]) -> list[ExternalEvent]:
    return [
        ExternalEvent(
            id=gateway.ids.new(),
            at="2026-01-01T00:00:00.000000Z",
            source="carrier",
            type="delivery",
            payload={"class": cls, "on_time": [ok]},
        )
        for ok in on_time
    ]


@pytest.fixture
def monitors(gateway: Gateway, ledger: SQLiteLedger) -> Monitors:
    return Monitors(load_monitors(RATE_GAP, known_scopes=KNOWN), ledger, clock=gateway.clock, ids=gateway.ids)


async def test_breach_writes_an_alert_with_evidence_and_calls_the_ri(gateway, ledger, monitors, people):
    """When medical falls behind retail, an Alert names the invariant, the evidence and the RI."""
    ledger.append_sync(
        deliveries(gateway, "retail", [True] * 15) + deliveries(gateway, "medical", [True] * 8)
    )
    assert await monitors.poll() == []
    late = deliveries(gateway, "medical", [False] * 3)
    ledger.append_sync(late)
    [alert] = await monitors.poll()
    assert alert.monitor == "medical-vs-retail"
    assert alert.escalated_to == people.ri.identity
    assert alert.evidence
    assert set(alert.evidence) <= {e.id for e in late}
    assert alert.observed["medical_rate_permille"] < alert.observed["retail_rate_permille"] - 50
    stored = decode_entry(ledger.find(alert.id).data)
    assert isinstance(stored, Alert)


async def test_breach_pauses_exactly_its_action_class_until_resumed(gateway, ledger, monitors, people, world):
    """Nothing medical runs after the breach; retail still runs; an authorized resume lifts it."""
    ledger.append_sync(
        deliveries(gateway, "retail", [True] * 15) + deliveries(gateway, "medical", [False] * 11)
    )
    [alert] = await monitors.poll()
    assert alert.paused == "resource_class:medical"
    pause = decode_entry(ledger.find(alert.control_id).data)  # type: ignore[arg-type]
    assert isinstance(pause, Control)
    assert pause.by == "answerable.monitor:medical-vs-retail"
    medical = await gateway.submit(
        gateway.intent("executor", "carrier.book", booking(shipment="M", cls="medical"))
    )
    retail = await gateway.submit(
        gateway.intent("executor", "carrier.book", booking(shipment="R", cls="retail"))
    )
    assert (medical.status, retail.status) == ("denied", "succeeded")
    assert world.calls == 1
    from answerable import Scope

    await gateway.control.resume(
        key=people.operator,
        reason="checked the storm plan",
        scope=Scope(kind="resource_class", value="medical"),
    )
    again = await gateway.submit(
        gateway.intent("executor", "carrier.book", booking(shipment="M2", cls="medical"))
    )
    assert again.status == "succeeded"
    assert await monitors.poll() == []


async def test_monitor_fires_once_until_resumed(gateway, ledger, monitors):
    """A breach latches: later bad samples write no second alert while the pause stands."""
    ledger.append_sync(
        deliveries(gateway, "retail", [True] * 15) + deliveries(gateway, "medical", [False] * 11)
    )
    assert len(await monitors.poll()) == 1
    ledger.append_sync(deliveries(gateway, "medical", [False] * 30))
    assert await monitors.poll() == []
    assert len(ledger.of_kind("Alert")) == 1


def invoices(gateway: Gateway, *cents: int) -> list[ExternalEvent]:
    """One invoice event of each amount, at one time."""
    return [
        ExternalEvent(
            id=gateway.ids.new(),
            at="2026-01-01T00:00:00.000000Z",
            source="x",
            type="invoice",
            payload={"cents": amount},
        )
        for amount in cents
    ]


async def test_count_and_budget_shapes(gateway, ledger):
    """A count per time and a running budget each fire when crossed."""
    config = {
        "monitors": [
            {
                "name": "too-many-bookings",
                "shape": "count",
                "invariant": "at most 2 bookings a day",
                "source": {"kind": "Intent"},
                "where": {"operation": "carrier.book"},
                "max": 2,
                "window_seconds": 86400,
            },
            {
                "name": "spend",
                "shape": "budget",
                "invariant": "spend at most 100",
                "source": {"kind": "ExternalEvent", "types": ["invoice"]},
                "amount": "payload.cents",
                "limit": 100,
            },
        ]
    }
    watch = Monitors(load_monitors(config, known_scopes=KNOWN), ledger, clock=gateway.clock, ids=gateway.ids)
    for n in range(3):
        await gateway.submit(gateway.intent("executor", "carrier.book", booking(shipment=f"S{n}")))
    ledger.append_sync(invoices(gateway, 60, 60))
    assert sorted(a.monitor for a in await watch.poll()) == ["spend", "too-many-bookings"]


async def test_a_budget_whose_total_passes_the_json_integer_range_still_alerts(gateway, ledger):
    """Each amount is a JSON integer (±(2**53-1)), but their total may pass that range: such a
    total has no canonical JSON, and every poll raised RecordInvalid, so the breach was never
    recorded and nothing paused. The total is now recorded as text; a limit past the range is
    refused when the monitors are loaded."""
    top = 2**53 - 1
    config = {
        "monitors": [
            {
                "name": "spend",
                "shape": "budget",
                "invariant": "spend at most the most JSON can say",
                "source": {"kind": "ExternalEvent", "types": ["invoice"]},
                "amount": "payload.cents",
                "limit": top,
            }
        ]
    }
    watch = Monitors(load_monitors(config, known_scopes=KNOWN), ledger, clock=gateway.clock, ids=gateway.ids)
    ledger.append_sync(invoices(gateway, top, top))
    [alert] = await watch.poll()
    assert alert.observed == {"total": str(2 * top), "limit": top}
    assert [decode_entry(e.data).id for e in ledger.of_kind("Alert")] == [alert.id]
    config["monitors"][0]["limit"] = top + 1
    with pytest.raises(ConfigError, match="limit"):
        load_monitors(config, known_scopes=KNOWN)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"outcome": "payload.on_time", "group": "colour.tone"}, r"no field 'colour'"),
        ({"source": {"kind": "Gossip"}}, "unknown record kind 'Gossip'"),
        ({"respond": {"pause": "operation:teleport"}}, "unknown action class 'operation:teleport'"),
        ({"respond": {"pause": "planet:mars"}}, "planet:mars"),
        ({"max_gap_permille": 5000}, "max_gap_permille"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_configuration_is_refused_naming_the_problem(change, named):
    """Unknown fields, record kinds and action classes are named; nothing is evaluated."""
    config = {"monitors": [{**RATE_GAP["monitors"][0], **change}]}
    with pytest.raises(ConfigError, match=named):
        load_monitors(config, known_scopes=KNOWN)


def test_configuration_file_that_is_not_json_is_refused(tmp_path: Path):
    """A broken file is named."""
    path = tmp_path / "monitors.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"monitors\.json"):
        load_monitors(path, known_scopes=KNOWN)


def test_reference_configuration_loads():
    """The logistics system's monitors, declared in JSON, validate against its operations and classes."""
    from answerable.logistics.scenario import MONITORS

    names = {
        m.name
        for m in load_monitors(
            MONITORS, known_scopes={"resource_class:medical", "operation:inventory.reallocate"}
        ).monitors
    }
    assert "medical-on-time-vs-retail" in names
    assert json.loads(MONITORS.read_text())


@pytest.mark.slow
@pytest.mark.full
def test_monitor_catches_the_storm_where_the_rules_did_not_foresee_it(tmp_path: Path):
    """With the first rules (no storm reviews), the monitor fires during the storm and stops the damage."""
    import asyncio

    from answerable.logistics.demo import storm

    results = asyncio.run(storm(7, tmp_path, modes=("ungoverned", "monitored")))
    monitored, ungoverned = results["monitored"].metrics, results["ungoverned"].metrics
    first = monitored["first_alert"]
    assert first is not None
    assert first["monitor"] == "medical-on-time-vs-retail"
    storm_cfg = results["monitored"].world.config.storm
    assert storm_cfg.start_day <= first["day"] < storm_cfg.start_day + storm_cfg.days
    assert monitored["medical_late_after_alert"] < monitored["medical_late_before_alert"]
    assert monitored["medical_on_time_rate"] > ungoverned["medical_on_time_rate"]
    assert monitored["actions_attributed"] == monitored["actions_executed"]


def test_a_monitor_name_too_long_for_the_pause_it_would_sign_is_a_config_error() -> None:
    """Found in review: a 190-character name passed, then its pause (``by`` at most 200) failed
    to be made at the breach, after the call had run."""
    from answerable.errors import ConfigError
    from answerable.monitors import load_monitors

    spec = {"name": "m" * 101, "invariant": "x", "shape": "count", "source": {"kind": "Execution"}, "max": 1}
    with pytest.raises(ConfigError, match="name"):
        load_monitors({"monitors": [spec]}, known_scopes=[])


def test_rate_gap_keeps_its_running_counts_equal_to_its_windows() -> None:
    """The ok-count of each window is kept as samples enter and leave, never rescanned: after any
    seeded stream it equals a recount of the window."""
    import random

    from answerable.clock import FakeClock, IdSource
    from answerable.monitors import Monitors, load_monitors

    spec = {
        "name": "gap",
        "shape": "rate_gap",
        "invariant": "i",
        "source": {"kind": "ExternalEvent", "types": ["delivery"]},
        "outcome": "payload.on_time",
        "group": "payload.class",
        "watch": "a",
        "versus": "b",
        "max_gap_permille": 1000,
        "window": 7,
        "min_samples": 1,
    }
    monitors = Monitors(
        load_monitors({"monitors": [spec]}, known_scopes=()), None, clock=FakeClock(), ids=IdSource()
    )  # type: ignore[arg-type]
    rng = random.Random(1729)
    for n in range(500):
        flags = [rng.random() < 0.7 for _ in range(rng.randint(1, 3))]
        entry = {
            "kind": "ExternalEvent", "id": f"e{n}", "at": "2026-01-01T00:00:00Z", "type": "delivery",
            "payload": {"class": rng.choice("ab"), "on_time": flags},
        }  # fmt: skip
        monitors.observe(entry)
        state = monitors._state["gap"]
        for group, window in state.samples.items():
            assert state.ok[group] == sum(ok for ok, _ in window), (n, group)


async def test_a_breach_whose_alert_could_not_be_stored_is_answered_by_the_next_poll(
    ledger: SQLiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is away when the Alert is appended (past its patience): the poll raises, and
    the next one alerts and pauses. The monitor was latched on the breach and its entries read,
    so nothing was alerted or paused in that process again, however many more events came."""
    from answerable.clock import IdSource, SystemClock, rfc3339
    from answerable.errors import StoreUnavailable

    config = {
        "monitors": [
            {
                "name": "too-many", "shape": "count", "invariant": "at most 2 events",
                "source": {"kind": "ExternalEvent"}, "max": 2, "window_seconds": 3600,
                "respond": {"pause": "system"},
            }
        ]
    }  # fmt: skip
    clock = SystemClock()
    ids = IdSource(clock)
    watch = Monitors(load_monitors(config, known_scopes=None), ledger, clock=clock, ids=ids)

    def events(n: int) -> list[ExternalEvent]:
        at = rfc3339(clock.now_ns())
        return [ExternalEvent(id=ids.new(), at=at, source="s", type="t", payload={}) for _ in range(n)]

    away = store_away_once(monkeypatch, ledger, "Alert")
    ledger.append_sync(events(3))
    with pytest.raises(StoreUnavailable):
        await watch.poll()
    assert away == [1]
    assert ledger.of_kind("Alert") == []
    ledger.append_sync(events(5))
    (alert,) = await watch.poll()
    assert alert.monitor == "too-many"
    assert [decode_entry(e.data).id for e in ledger.of_kind("Alert")] == [alert.id]
    assert len(ledger.of_kind("Control")) == 1
    assert await watch.poll() == []  # answered once


async def test_a_resume_rearms_only_the_monitors_whose_pause_it_lifted(
    gateway: Gateway, ledger: SQLiteLedger, people: Any
) -> None:
    """Two monitors pause one scope. An operator signs a resume of the pause they see (m1's);
    m2 pauses before it lands. It lifts m1's pause alone, and re-armed both: m2 alerted and paused
    a second time while its first pause stood, and the RI was called twice for it."""
    from answerable.control import unsigned_control
    from answerable.signing import sign

    def count(name: str, kind: str) -> dict[str, Any]:
        return {
            "name": name, "shape": "count", "invariant": f"at most 1 {kind}", "max": 1,
            "source": {"kind": "ExternalEvent", "types": [kind]}, "window_seconds": 100_000,
            "respond": {"pause": "operation:noop"},
        }  # fmt: skip

    config = load_monitors({"monitors": [count("m1", "a"), count("m2", "b")]}, known_scopes=None)
    watch = Monitors(config, ledger, clock=gateway.clock, ids=gateway.ids)
    now = rfc3339(gateway.clock.now_ns())

    def events(kind: str) -> list[ExternalEvent]:
        return [
            ExternalEvent(id=gateway.ids.new(), at=now, source="s", type=kind, payload={}) for _ in range(2)
        ]

    ledger.append_sync(events("a"))
    assert [a.monitor for a in await watch.poll()] == ["m1"]
    [m1_pause] = gateway.control.state().stops
    resume = sign(
        unsigned_control(
            "resume", m1_pause.scope, people.operator.identity, "checked a", causes=[m1_pause.id],
            control_id=gateway.ids.new(), at_ns=gateway.clock.now_ns(),
        ),
        people.operator,
    )  # fmt: skip
    ledger.append_sync(events("b"))
    assert [a.monitor for a in await watch.poll()] == ["m2"]
    await gateway.control.record_resume(resume)
    assert [s.by for s in gateway.control.state().stops] == ["answerable.monitor:m2"]
    ledger.append_sync(events("b") + events("a"))
    assert [a.monitor for a in await watch.poll()] == ["m1"]  # m1 re-armed; m2 still paused, latched
    alerts = [decode_entry(e.data).monitor for e in ledger.of_kind("Alert")]
    assert alerts == ["m1", "m2", "m1"]
