"""Bad input to the storm: precise errors, retries with the same key, nothing twice, nothing unrecorded."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from answerable import AgentFailed, ConfigError, SQLiteLedger
from answerable.cli import app
from answerable.logistics.agents import Executor
from answerable.logistics.governance import RI
from answerable.logistics.scenario import StormRun, check_scenario_file
from answerable.logistics.services import Booking, FaultPlan
from answerable.logistics.world import ScenarioConfig
from answerable.records import Claim, Control, Execution, ExternalEvent, Intent, Refusal, decode_entry

SMALL = {
    "days": 3,
    "stores_per_region": 12,
    "hospitals_per_region": 3,
    "orders_per_day": 300,
    "trucks_per_region": 2,
}
runner = CliRunner()


def scenario_file(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps({**SMALL, **changes}))
    return path


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"days": 0}, "days"),
        ({"colour": "red"}, "colour"),
        ({"storm": {"region": "atlantis"}}, "atlantis"),
        (
            {
                "extra_orders": [
                    {
                        "id": "X1",
                        "customer": "H-east-000",
                        "sku": "plutonium",
                        "qty": 1,
                        "day": 0,
                        "due_day": 1,
                    }
                ]
            },
            "plutonium",
        ),
        ({"outages": [{"warehouse": "wh-moon", "day": 1}]}, "wh-moon"),
    ],
)
def test_invalid_scenario_file_names_the_problem(tmp_path: Path, changes: dict[str, Any], named: str):
    """A scenario that does not validate is refused, naming the field or value at fault."""
    with pytest.raises(ConfigError, match=named):
        check_scenario_file(scenario_file(tmp_path, **changes))


def test_order_for_an_unknown_customer_is_refused(tmp_path: Path):
    """An order to a customer the world does not have is named when the world is built."""
    from answerable.logistics.world import World

    config = check_scenario_file(
        scenario_file(
            tmp_path,
            extra_orders=[
                {"id": "X9", "customer": "H-nowhere-001", "sku": "insulin", "qty": 1, "day": 0, "due_day": 1}
            ],
        )
    )
    with pytest.raises(ConfigError, match="X9: unknown customer 'H-nowhere-001'"):
        World(config, seed=1)


def test_cli_refuses_bad_scenario_seed_and_mode(tmp_path: Path):
    """demo storm exits 2 with the reason for a bad scenario file, a negative seed or an unknown mode."""
    bad = scenario_file(tmp_path, days=-1)
    result = runner.invoke(app, ["demo", "storm", "--scenario", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "days" in result.stderr
    assert runner.invoke(app, ["demo", "storm", "--seed", "-3"]).exit_code == 2
    mode = runner.invoke(app, ["demo", "storm", "--mode", "sideways"])
    assert mode.exit_code == 2
    assert "sideways" in mode.stderr
    missing = runner.invoke(app, ["demo", "storm", "--scenario", str(tmp_path / "none.json")])
    assert missing.exit_code == 2
    assert "none.json" in missing.stderr
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe{}")
    not_text = runner.invoke(app, ["demo", "storm", "--scenario", str(binary), "--out", str(tmp_path / "b")])
    assert not_text.exit_code == 2
    assert "not UTF-8" in not_text.stderr
    assert not (tmp_path / "b").exists()


def test_cli_runs_a_small_storm_and_writes_result_json(tmp_path: Path):
    """demo storm writes both ledgers and result.json with the contract keys, and verifies both."""
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "demo",
            "storm",
            "--seed",
            "5",
            "--out",
            str(out),
            "--scenario",
            str(scenario_file(tmp_path)),
            "--days",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "result.json").read_text())
    assert document["seed"] == 5
    assert set(document["runs"]) == {"ungoverned", "governed"}
    assert (out / "ungoverned.db").exists()
    assert (out / "governed.db").exists()
    assert "verified" in result.stdout


async def test_timeouts_are_retried_with_the_same_key_and_nothing_is_booked_twice(tmp_path: Path):
    """A booking whose answer is lost is retried with its key; the carrier books once, the ledger says so."""
    config = ScenarioConfig.model_validate(SMALL)
    async with StormRun("governed", 5, config, tmp_path) as run:
        run.world.carrier.faults = FaultPlan(["after_effect", None, "before_effect"])
        await run.day(0)
        bookings = [r for r in run.world.carrier.records if isinstance(r.response, Booking)]
        keys = [r.key for r in bookings]
        assert len(keys) == len(set(keys)) > 0
        executions = [decode_entry(e.data) for e in run.ledger.of_kind("Execution")]
        books = [x for x in executions if isinstance(x, Execution) and x.operation == "carrier.book"]
        assert sorted(x.attempts for x in books)[-1] >= 2
        assert len([x for x in books if x.status == "succeeded"]) == len(bookings)
        assert len(run.world.carrier.requests) > len(bookings)


async def test_a_lost_answer_that_stays_lost_is_recorded_as_ambiguous(tmp_path: Path):
    """When every retry times out, the Execution says ambiguous (the booking may exist), never failed."""
    config = ScenarioConfig.model_validate(SMALL)
    async with StormRun("governed", 5, config, tmp_path) as run:
        run.world.carrier.faults = FaultPlan(["after_effect", "before_effect", "after_effect"])
        await run.day(0)
        executions = [decode_entry(e.data) for e in run.ledger.of_kind("Execution")]
        [lost] = [x for x in executions if isinstance(x, Execution) and x.status == "ambiguous"]
        assert lost.attempts == 3
        intent = decode_entry(run.ledger.find(lost.intent_id).data)
        assert isinstance(intent, Intent)
        assert [r.key for r in run.world.carrier.records].count(intent.idempotency_key) == 1


async def test_double_booking_is_refused_and_recorded(tmp_path: Path):
    """Booking a truck already taken that day is a 409, recorded as failed; no second effect."""
    config = ScenarioConfig.model_validate(SMALL)
    async with StormRun("governed", 5, config, tmp_path) as run:
        await run.day(0)
        first = next(r for r in run.world.carrier.records if isinstance(r.response, Booking))
        body = first.body.model_dump(mode="json")
        intent = run.gateway.intent(
            "executor", "carrier.book", {**body, "route_id": "R-again"}, idempotency_key="book:R-again"
        )
        outcome = await run.gateway.submit(intent)
        assert outcome.status == "failed"
        assert outcome.execution is not None
        assert "409" in (outcome.execution.error or "")
        assert "double_booking" in (outcome.execution.error or "")
        assert (
            sum(1 for r in run.world.carrier.records if r.body.truck == body["truck"] and r.body.day == 0)
            == 1
        )  # type: ignore[union-attr]


class CrashingExecutor(Executor):
    """An executor that dies in the middle of a plan, after its third route of the day, as a process would."""

    bookings = 0

    async def _run_route(self, record, body, route, ctx):  # type: ignore[no-untyped-def]
        if CrashingExecutor.bookings == 3:
            raise RuntimeError("executor process lost")
        CrashingExecutor.bookings += 1
        await super()._run_route(record, body, route, ctx)


async def test_agent_crash_mid_step_is_named_and_a_restart_executes_nothing_twice(tmp_path: Path):
    """The crash names the agent and record; replaying it with a fresh executor books each route once."""
    config = ScenarioConfig.model_validate(SMALL)
    async with StormRun("governed", 5, config, tmp_path, executor=CrashingExecutor) as run:
        with pytest.raises(AgentFailed) as caught:
            await run.day(0)
        assert caught.value.agent == "executor"
        plan = decode_entry(run.ledger.find(caught.value.record_id).data)
        assert plan.type == "route.plan"  # type: ignore[union-attr]
        assert 2 <= len(run.world.carrier.records) < 8  # some of the day's routes were booked, not all

        restarted = Executor(run.reviewer, config.regions)
        from answerable.runtime import Context

        await restarted.handle(plan, Context(run.system, "executor", plan.trace_id))  # type: ignore[arg-type, union-attr]
        keys = [r.key for r in run.world.carrier.records]
        assert len(keys) == len(set(keys))
        body = plan.payload  # type: ignore[union-attr]
        wanted = {f"book:R-{body['region']}-d0-v{body['version']}-{truck}" for truck, _, _ in body["routes"]}
        assert wanted <= set(keys)
        intents = {
            i.id: i
            for i in (decode_entry(e.data) for e in run.ledger.of_kind("Intent"))
            if isinstance(i, Intent)
        }
        executed = {
            intents[x.intent_id].idempotency_key
            for x in (decode_entry(e.data) for e in run.ledger.of_kind("Execution"))
            if isinstance(x, Execution) and x.status == "succeeded" and x.operation == "carrier.book"
        }
        assert set(keys) == executed
        run.ledger.verify()


def test_storm_run_is_deterministic_for_a_seed(tmp_path: Path):
    """The same seed gives the same outcome table (wall time aside)."""
    import asyncio

    from answerable.logistics.scenario import run

    config = ScenarioConfig.model_validate(SMALL)
    a = asyncio.run(run("governed", 9, config, tmp_path / "a"))
    b = asyncio.run(run("governed", 9, config, tmp_path / "b"))
    for where in ("wall_seconds", "ledger"):  # how long it took, and which folder it went to
        a.metrics.pop(where)
        b.metrics.pop(where)
    assert a.metrics == b.metrics
    with SQLiteLedger.open(a.ledger) as first, SQLiteLedger.open(b.ledger) as second:
        assert first.root() == second.root()


async def test_warehouse_outage_is_ridden_out_with_retries_under_the_same_key(tmp_path: Path):
    """A warehouse down for its first requests: 503s, retried with the same key, each effect once."""
    from answerable.logistics.services import DispatchRequest

    config = ScenarioConfig.model_validate(
        {**SMALL, "outages": [{"warehouse": "wh-north", "day": 0, "failed_requests": 2}]}
    )
    async with StormRun("governed", 5, config, tmp_path) as run:
        await run.day(0)
        refused = [r for r in run.world.warehouse.requests if r.status == 503]
        assert len(refused) == 2
        executions = [decode_entry(e.data) for e in run.ledger.of_kind("Execution")]
        north = [
            x
            for x in executions
            if isinstance(x, Execution) and x.operation == "warehouse.dispatch" and x.attempts > 1
        ]
        assert north
        assert all(x.status == "succeeded" for x in north)
        keys = [r.key for r in run.world.warehouse.records if isinstance(r.body, DispatchRequest)]
        assert len(keys) == len(set(keys))


def test_demo_storm_runs_under_other_rules_given_as_a_folder_and_refuses_bad_ones(tmp_path: Path):
    """--rules DIR: every mode with rules decides under DIR's rules (here governed), signed by the
    demo's RI; result.json names them. A folder without them, or rules that do not validate:
    one line, exit 2, no run."""
    import hashlib

    from answerable.logistics.governance import POLICIES, SCHEMA
    from answerable.records import Decision, RulesetVersion

    rules = tmp_path / "rules"
    rules.mkdir()
    stricter = POLICIES + (
        '\n@id("no-medical-reprioritization")\n'
        'forbid(principal, action == Action::"shipment.reprioritize", resource)\n'
        '  when { resource.class == "medical" };\n'
    )
    (rules / "policies.cedar").write_text(stricter)
    (rules / "schema.cedarschema").write_text(SCHEMA)
    out = tmp_path / "out"
    base = ["demo", "storm", "--seed", "5", "--scenario", str(scenario_file(tmp_path)), "--days", "2"]
    result = runner.invoke(app, [*base, "--mode", "governed", "--out", str(out), "--rules", str(rules)])
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(stricter.encode()).hexdigest()
    assert json.loads((out / "result.json").read_text())["rules"] == {
        "source": str(rules),
        "ruleset_hash": digest,
    }
    for mode in ("governed",):  # every mode with rules takes them alike (StormRun.__aenter__)
        with SQLiteLedger.open(out / f"{mode}.db") as ledger:
            [recorded] = [decode_entry(e.data) for e in ledger.of_kind("RulesetVersion")]
            decisions = [decode_entry(e.data) for e in ledger.of_kind("Decision")]
        assert isinstance(recorded, RulesetVersion)
        assert (recorded.policies, recorded.schema_text) == (stricter, SCHEMA)
        assert decisions
        assert all(isinstance(d, Decision) and d.ruleset_hash == digest for d in decisions), mode

    (rules / "policies.cedar").write_text(stricter.replace("resource.class", "resource.colour"))
    bad = runner.invoke(app, [*base, "--out", str(tmp_path / "bad"), "--rules", str(rules)])
    assert bad.exit_code == 2
    assert "do not validate" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    missing = runner.invoke(
        app, [*base, "--out", str(tmp_path / "none"), "--rules", str(tmp_path / "nowhere")]
    )
    assert missing.exit_code == 2
    assert "must hold policies.cedar" in missing.stderr
    in_file = scenario_file(tmp_path, rules={"source": "x", "policies": "permit(", "schema_text": SCHEMA})
    from_file = runner.invoke(app, [*base[:4], "--scenario", str(in_file), "--out", str(tmp_path / "file")])
    assert from_file.exit_code == 2
    assert "do not parse" in from_file.stderr
    assert len(from_file.stderr.strip().splitlines()) == 1
    for never in ("bad", "none", "file"):
        assert not (tmp_path / never).exists()


class HaltingExecutor(Executor):
    """An executor during whose second plan the RI halts the system from another process (the
    command line), then carries on with its plan as if nothing happened."""

    ledger: Path | None = None
    routes = 0

    async def _run_route(self, record, body, route, ctx):  # type: ignore[no-untyped-def]
        HaltingExecutor.routes += 1
        if HaltingExecutor.routes == 6 and HaltingExecutor.ledger is not None:
            halt = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "answerable.cli", "halt", str(HaltingExecutor.ledger),
                "--by", RI, "--reason", "medical deliveries are slipping", stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, said = await halt.communicate()
            assert halt.returncode == 0, said
        await super()._run_route(record, body, route, ctx)


def test_a_halt_from_another_process_mid_storm_refuses_all_that_follows_and_the_run_ends_by_itself(
    tmp_path: Path,
) -> None:
    """The run does not stop because a person halted it (the world goes on) and does not fail
    either: the rest of the plan, and every later day's messages and calls, are refused and
    recorded, and the result says who halted and why."""
    from answerable.logistics.scenario import run

    config = ScenarioConfig.model_validate(SMALL)
    HaltingExecutor.ledger, HaltingExecutor.routes = tmp_path / "governed.db", 0
    storm = StormRun("governed", 5, config, tmp_path, executor=HaltingExecutor)
    result = asyncio.run(run("governed", 5, config, tmp_path, storm_run=storm))

    halted = result.metrics["halted"]
    assert halted is not None
    assert (halted["by"], halted["reason"]) == (RI, "medical deliveries are slipping")
    with SQLiteLedger.open(result.ledger) as ledger:
        ledger.verify()
        records = [(e.index, decode_entry(e.data)) for e in ledger.entries()]
    [at] = [i for i, r in records if isinstance(r, Control) and r.action == "halt"]
    index = {r.id: i for i, r in records if isinstance(r, Intent)}
    ran = [r for _, r in records if isinstance(r, Execution) and r.status == "succeeded"]
    assert ran
    assert all(index[r.intent_id] < at for r in ran)  # nothing proposed after the halt ran
    claimed = [i for i, r in records if isinstance(r, Claim)]
    assert claimed
    assert max(claimed) < at  # nor was anything claimed after it
    later = [r for i, r in records if isinstance(r, Intent) and i > at]
    assert later, "the executor proposed nothing after the halt: the test did not test it"
    refused = [r for i, r in records if isinstance(r, Refusal) and i > at and r.reason_code == "halt"]
    assert {r.claimed for r in refused} >= {"forecaster"}, "later days' messages were not refused"
    last_plan = [i for i, r in records if isinstance(r, ExternalEvent) and r.type == "day.plan"][-1]
    assert last_plan > at
    assert records[last_plan][1].payload["day"] == config.days - 1  # type: ignore[union-attr]
