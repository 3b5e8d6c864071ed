"""The storm with each agent in a process of its own (NATS JetStream, the ledger in PostgreSQL)
comes out exactly as the storm in one process, seed for seed; and its command line refuses bad
backends in one line, with nothing left behind.

``make test`` runs a short storm (two days) under two seeds; ``make soak`` runs the whole storm
in every mode under both seeds. Every run makes its own schema and stream, and this file drops
the schemas afterwards (the run deletes its stream itself, which is checked).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import PG_BASE
from natsd import NatsServer, free_port
from procs import SOAK, seeds
from storm_leftovers import drop_runs, storm_schemas, storm_streams

from answerable.lease import DEPOSED
from answerable.ledger import open_ledger
from answerable.logistics.distributed import DistributedStormRun
from answerable.logistics.scenario import Mode, RunResult, run
from answerable.logistics.world import ScenarioConfig

pytestmark = [pytest.mark.slow, pytest.mark.soak]

NATS = os.environ.get("ANSWERABLE_TEST_NATS", "nats://127.0.0.1:4222")
CLI = [sys.executable, "-m", "answerable.cli"]
DAYS = None if SOAK else 3
"""The whole storm under soak; in ``make test`` three days: two calm ones and the storm's first,
the day the desk is asked (about seventy reviews)."""
CASES: list[tuple[int, Mode]] = (
    [(seed, mode) for seed in (7, 11) for mode in ("ungoverned", "rules", "governed", "monitored")]
    if SOAK
    else [(11, "governed")]
)
"""``make test`` compares one seed; ``make soak`` both seeds in all four modes, and kills an
agent (5 seeds) and the nats-server mid-storm."""


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ledger keys in the test's folder; the schema (and stream) of each run it made, dropped
    afterwards: only its own, as another worker's storm may be running beside it."""
    monkeypatch.setenv("ANSWERABLE_KEY_DIR", str(tmp_path / "keys"))
    yield
    drop_runs(tmp_path)


def scenario() -> ScenarioConfig:
    config = ScenarioConfig()
    return config if DAYS is None else ScenarioConfig.model_validate({**config.model_dump(), "days": DAYS})


@pytest.mark.timeout(1800 if SOAK else 240)
@pytest.mark.parametrize(("seed", "mode"), CASES)
async def test_the_storm_in_processes_gives_the_outcome_table_of_the_storm_in_one(
    seed: int, mode: Mode, tmp_path: Path, clean: None
) -> None:
    config = scenario()
    here = await run(mode, seed, config, tmp_path / "one")
    spread = DistributedStormRun(mode, seed, config, tmp_path / "many", nats_url=NATS, postgres_url=PG_BASE)
    there = await run(mode, seed, config, tmp_path / "many", storm_run=spread)

    differ = {
        key: (here.metrics.get(key), there.metrics.get(key))
        for key in set(here.metrics) | set(there.metrics)
        if key not in ("wall_seconds", "ledger") and here.metrics.get(key) != there.metrics.get(key)
    }
    assert differ == {}
    assert here.metrics["actions_executed"] > 0
    assert set(here.metrics) == set(there.metrics)
    # The agents really were elsewhere: four processes, each said something into the ledger;
    # the gateway too, its claims made under a lease of its own, not the driver's.
    assert set(spread.processes) == {"forecaster", "allocator", "router", "executor"}
    assert [p.returncode for p in spread.processes.values()] == [0, 0, 0, 0]  # stopped, not killed
    assert spread.gateway_process is not None
    assert spread.gateway_process.returncode == 0
    with open_ledger(there.metrics["ledger"]) as ledger:
        assert ledger.verify().size == there.metrics["ledger_entries"]
        senders = {json.loads(e.data)["sender"] for e in ledger.of_kind("Message")}
        assert senders == {"forecaster", "allocator", "router", "executor"}
        signed = [json.loads(e.data).get("signature") for e in ledger.of_kind("Message")]
        assert all(signed)  # each signed by its sender in its own process
        epochs = {json.loads(e.data)["epoch"] for e in ledger.of_kind("Claim")}
    assert epochs == ({2} if mode != "ungoverned" else epochs)  # the driver's install held the 1st
    assert there.metrics["ledger"].startswith(PG_BASE + "?options=-csearch_path%3Dstorm_")
    assert not [s for s in await storm_streams() if spread.run_id in s]  # the run took its stream down


_ALONE: dict[tuple[int, str], RunResult] = {}


async def in_one_process(seed: int, config: ScenarioConfig, folder: Path) -> RunResult:
    """The governed storm in one process for ``seed`` and ``config``, run once per test session:
    each kill test compares its run with it, and a seed's in-process run is the same run every
    time (the first caller's folder keeps its ledger)."""
    key = (seed, config.model_dump_json())
    if key not in _ALONE:
        _ALONE[key] = await run("governed", seed, config, folder)
    return _ALONE[key]


def kill_plan(seed: int) -> tuple[str, str]:
    """Which agent dies (kill -9 on itself) and where, drawn from the seed: a point of its work
    within the three days (each agent does at least this much in any seed's first three). The
    executor dies on the storm's first day (it proposes about 80 intents on the two calm days),
    between the desk's answers and what follows them."""
    rng = random.Random(f"storm-kill:{seed}")
    agent = rng.choice(["forecaster", "allocator", "router", "executor", "executor"])  # effects: twice
    if agent == "executor":
        point, first, last = rng.choice(["before_propose", "after_propose"]), 85, 150
    else:
        point, first, last = rng.choice(["before_send", "after_send"]), 1, 8 if agent == "router" else 3
    return agent, f"{point}:{rng.randint(first, last)}"


@pytest.mark.crash
@pytest.mark.full
@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", seeds())
async def test_an_agent_killed_mid_storm_is_started_again_and_the_storm_comes_out_the_same(
    seed: int, tmp_path: Path, clean: None
) -> None:
    """kill -9 of one agent at a seeded point of its work: the driver starts it again, it
    handles again what it had handled (its messages come out as the ones recorded, its intents
    meet their keys), the record it held comes to it again; no effect twice, none the ledger does
    not show, and the outcome table is the one of the storm in one process."""
    config = ScenarioConfig.model_validate({**ScenarioConfig().model_dump(), "days": 3})
    agent, plan = kill_plan(seed)
    here = await in_one_process(seed, config, tmp_path / "one")
    spread = DistributedStormRun(
        "governed", seed, config, tmp_path / "many", nats_url=NATS, postgres_url=PG_BASE, die=(agent, plan)
    )
    there = await run("governed", seed, config, tmp_path / "many", storm_run=spread)

    assert spread.restarted == [(agent, -9)], (agent, plan)
    differ = {
        key: (here.metrics[key], there.metrics.get(key))
        for key in here.metrics
        if key not in ("wall_seconds", "ledger") and here.metrics[key] != there.metrics.get(key)
    }
    assert differ == {}, (agent, plan)
    world, alone = there.world, here.world
    assert world is not None
    assert alone is not None
    # No effect twice: the partners did as much as in the run without a kill, once per business
    # id (a second effect under another idempotency key would show in both).
    assert len(world.carrier.records) == len(alone.carrier.records)
    assert len(world.warehouse.records) == len(alone.warehouse.records)
    assert len(world.promises) == len(alone.promises)
    booked = [r.body.route_id for r in world.carrier.records]  # type: ignore[union-attr]
    assert len(booked) == len(set(booked))
    keys = [r.key for r in world.carrier.records] + [r.key for r in world.warehouse.records]
    with open_ledger(there.metrics["ledger"]) as ledger:
        assert ledger.verify().size == there.metrics["ledger_entries"]
        executed = {
            json.loads(ledger.find(json.loads(e.data)["intent_id"]).data)["idempotency_key"]
            for e in ledger.of_kind("Execution")
            if json.loads(e.data)["status"] == "succeeded"
        }
        messages = [json.loads(e.data) for e in ledger.of_kind("Message")]
    assert set(keys) <= executed  # no effect the ledger does not show
    said = [(m["sender"], m["topic"], m["type"], sorted(m["causes"])) for m in messages]
    assert len(said) == len(set(map(repr, said)))  # nothing said twice by the agent started again


def same_storm_each_effect_once(
    here: RunResult, there: RunResult, records: list[dict[str, Any]], plan: object
) -> None:
    """After a kill: the metrics of the storm in one process (but its ledger's size: a restarted
    gateway records its recovery), the partners' effects as many as there and each once, every
    effect in the ledger (``records``, its entries) and every success an effect, one per key."""
    differ = {
        key: (here.metrics[key], there.metrics.get(key))
        for key in here.metrics
        if key not in ("wall_seconds", "ledger", "ledger_entries")
        and here.metrics[key] != there.metrics.get(key)
    }
    assert differ == {}, plan
    world, alone = there.world, here.world
    assert world is not None
    assert alone is not None
    assert len(world.carrier.records) == len(alone.carrier.records), plan  # no effect twice
    assert len(world.warehouse.records) == len(alone.warehouse.records), plan
    assert len(world.promises) == len(alone.promises), plan
    keys = [r.key for r in world.carrier.records] + [r.key for r in world.warehouse.records]
    keys += [p[4] for p in world.promises]
    assert len(keys) == len(set(keys)), plan
    intents = {r["id"]: r for r in records if r["kind"] == "Intent"}
    executed = [
        intents[r["intent_id"]]["idempotency_key"]
        for r in records
        if r["kind"] == "Execution" and r["status"] == "succeeded"
    ]
    assert set(keys) == set(executed), plan  # every effect in the ledger, every success an effect
    assert len(executed) == len(set(executed)), plan  # one success per key


def gateway_kill_plan(seed: int) -> str:
    """Where the gateway's process dies (kill -9 on itself), drawn from the seed: before its
    N-th partner call (the claim durable, the partner not asked) or after it (the partner did
    it, nothing recorded yet); N within the three days' 200-odd calls, the storm's first day
    included."""
    rng = random.Random(f"storm-gateway-kill:{seed}")
    return f"{rng.choice(['before_call', 'after_call'])}:{rng.randint(5, 180)}"


@pytest.mark.crash
@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", seeds())
async def test_the_gateway_killed_mid_storm_is_started_again_and_the_storm_comes_out_the_same(
    seed: int, tmp_path: Path, clean: None
) -> None:
    """kill -9 of the gateway's process at a seeded partner call: the driver starts it again on
    its port; it takes the lease over once the dead one's lapses and settles the call left open
    (the partner finds the effect by its key, or is asked again with it); the agents' requests
    that failed meanwhile come again. No effect twice, none the ledger does not show, a ledger
    that verifies, and the outcome table of the storm in one process."""
    config = ScenarioConfig.model_validate({**ScenarioConfig().model_dump(), "days": 3})
    plan = gateway_kill_plan(seed)
    here = await in_one_process(seed, config, tmp_path / "one")
    spread = DistributedStormRun(
        "governed",
        seed,
        config,
        tmp_path / "many",
        nats_url=NATS,
        postgres_url=PG_BASE,
        die=("gateway", plan),
    )
    there = await run("governed", seed, config, tmp_path / "many", storm_run=spread)

    assert spread.restarted == [("gateway", -9)], plan
    with open_ledger(there.metrics["ledger"]) as ledger:
        assert ledger.verify().size == there.metrics["ledger_entries"]
        records = [json.loads(e.data) for e in ledger.entries()]
    same_storm_each_effect_once(here, there, records, plan)
    epochs = {r["epoch"] for r in records if r["kind"] == "Claim"}
    assert len(epochs) == 2, epochs  # claims made by the gateway before its death and after it


@pytest.mark.crash
@pytest.mark.full
@pytest.mark.timeout(300)
async def test_nats_server_killed_mid_day_and_back_the_storm_comes_out_the_same(
    tmp_path: Path, clean: None
) -> None:
    """kill -9 of nats-server as day 2's plan (the storm's first) is asked for, started again
    six seconds later on its store: the service keeps recording and holds what it could not
    publish, the agents reconnect and hear it, and the storm comes out as in one process."""
    (tmp_path / "nats").mkdir()
    server = NatsServer(tmp_path / "nats", free_port()).start()
    config = ScenarioConfig.model_validate({**ScenarioConfig().model_dump(), "days": 3})
    back: list[threading.Thread] = []

    class NatsDies(DistributedStormRun):
        steps = 0

        async def settled(self) -> None:
            self.steps += 1
            await super().settled()
            if self.steps == 7:  # day 2's news heard; its plan is asked for next, into the outage
                server.kill()
                back.append(threading.Timer(6.0, server.start))  # past a publish's 5 s wait
                back[0].start()

    try:
        here = await run("governed", 7, config, tmp_path / "one")
        spread = NatsDies("governed", 7, config, tmp_path / "many", nats_url=server.url, postgres_url=PG_BASE)
        there = await run("governed", 7, config, tmp_path / "many", storm_run=spread)
    finally:
        for thread in back:
            thread.join()
        server.stop()
    assert back, "nats-server was never killed"
    assert spread._nats.held_back >= 1  # the day's plan waited in the outbox, then went out
    assert spread.restarted == []
    differ = {
        key: (here.metrics[key], there.metrics.get(key))
        for key in here.metrics
        if key not in ("wall_seconds", "ledger") and here.metrics[key] != there.metrics.get(key)
    }
    assert differ == {}
    with open_ledger(there.metrics["ledger"]) as ledger:
        assert ledger.verify().size == there.metrics["ledger_entries"]


def test_demo_storm_distributed_writes_the_ledger_url_into_result_json(tmp_path: Path, clean: None) -> None:
    env = {**os.environ, "ANSWERABLE_KEY_DIR": str(tmp_path / "keys")}
    done = subprocess.run(
        [
            *CLI,
            "demo",
            "storm",
            "--seed",
            "3",
            "--days",
            "1",
            "--mode",
            "governed",
            "--out",
            str(tmp_path / "out"),
            "--distributed",
            "--nats",
            NATS,
            "--postgres",
            PG_BASE,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    url = result["runs"]["governed"]["ledger"]
    assert url.startswith("postgresql://")
    assert "storm_governed_3_" in url
    assert f"{url} (" in done.stdout  # on one line, with its size and "verified"
    assert "verified" in done.stdout
    verify = subprocess.run([*CLI, "verify", url], capture_output=True, text=True, env=env, timeout=60)
    assert verify.returncode == 0, verify.stderr


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--nats", "http://127.0.0.1:4222"], "--nats: want a nats:// URL"),
        (["--postgres", "postgresql://postgres:hunter2@127.0.0.1:5432/test"], "never carries a password"),
        (["--postgres", PG_BASE + "?options=-csearch_path%3Dmine"], "without options"),
        (["--postgres", "mysql://127.0.0.1/x"], "not a postgresql:// URL"),
        (["--nats", "nats://127.0.0.1:1"], "NATS at nats://127.0.0.1:1: cannot connect"),
        (["--postgres", "postgresql://postgres@127.0.0.1:1/test"], "PostgreSQL at 127.0.0.1:1/test: cannot"),
    ],
)
def test_bad_backends_are_one_line_and_leave_nothing_behind(
    flags: list[str], said: str, tmp_path: Path, clean: None
) -> None:
    seed = 900_000 + os.getpid() % 10_000  # a run of this test names its schema and stream with it
    done = subprocess.run(
        [
            *CLI,
            "demo",
            "storm",
            "--seed",
            str(seed),
            "--days",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--distributed",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert said in lines[0]
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
    assert not [s for s in storm_schemas() if f"_{seed}_" in s]
    assert not [s for s in asyncio.run(storm_streams()) if f"_{seed}_" in s]
    assert not (tmp_path / "out" / "result.json").exists()


def postgres_kill_plan(seed: int) -> tuple[str, str, int, float]:
    """How PostgreSQL dies, drawn from the seed: the whole server (kill -9 of its postmaster and
    every backend), started again on its data (crash recovery) after a short outage, which every
    process waits out, or one longer than the gateway's lease can outlast (it exits and is
    started again); or one backend (kill -9), after which the postmaster ends the others and
    recovers by itself. When: as the gateway's N-th partner call arrives at the partner or as
    its answer leaves (the claim durable, the effect done or doing, nothing after it recorded)."""
    rng = random.Random(f"storm-postgres-kill:{seed}")
    when, nth = rng.choice(["before", "after"]), rng.randint(5, 180)
    down = rng.uniform(0.5, 3.0) if rng.random() < 0.5 else rng.uniform(8.0, 15.0)
    what = "backend" if rng.random() > 2 / 3 else "server"
    return what, when, nth, round(down, 2)


@pytest.mark.crash
@pytest.mark.timeout(400)
@pytest.mark.parametrize("seed", seeds())
async def test_postgresql_killed_mid_storm_and_started_again_the_storm_comes_out_the_same(
    seed: int, tmp_path: Path, clean: None
) -> None:
    """kill -9 of the whole PostgreSQL server (a server of the test's own) at a seeded partner
    call, started again a seeded while later, or of one of its backends: every process that
    touches the store (the gateway, the agents, the driver's desk and monitors) waits for it and
    goes on, the gateway started again if its lease ran out meanwhile; no ledger entry lost,
    no effect twice, none the ledger does not show, a ledger that verifies, and the outcome table
    of the storm in one process."""
    from fastapi import FastAPI, Request
    from pgd import PgServer

    config = ScenarioConfig.model_validate({**ScenarioConfig().model_dump(), "days": 3})
    what, when, nth, down = postgres_kill_plan(seed)
    server = PgServer().start()
    pick = random.Random(f"storm-postgres-backend:{seed}").choice
    back: list[threading.Thread] = []

    class PostgresDies(DistributedStormRun):
        calls = 0

        def _world_routes(self, app: FastAPI) -> None:
            super()._world_routes(app)

            @app.middleware("http")
            async def kill_at_the_call(request: Request, call_next):  # type: ignore[no-untyped-def]
                partner = request.method == "POST" and request.url.path.startswith(
                    ("/carrier/", "/warehouse/", "/orders/")
                )
                if partner:
                    self.calls += 1
                if partner and self.calls == nth and when == "before":
                    die()
                response = await call_next(request)
                if partner and self.calls == nth and when == "after":
                    die()
                return response

    def die() -> None:
        if what == "backend":
            server.kill_backend(pick)
            back.append(threading.Thread())  # nothing to start again: the postmaster recovers
        else:
            server.kill()
            back.append(threading.Timer(down, server.start))
        back[0].start()

    try:
        here = await in_one_process(seed, config, tmp_path / "one")
        spread = PostgresDies(
            "governed",
            seed,
            config,
            tmp_path / "many",
            nats_url=NATS,
            postgres_url=f"postgresql://postgres@127.0.0.1:{server.port}/postgres",
        )
        there = await run("governed", seed, config, tmp_path / "many", storm_run=spread)
        with open_ledger(there.metrics["ledger"]) as ledger:
            assert ledger.verify().size == there.metrics["ledger_entries"]
            records = [json.loads(e.data) for e in ledger.entries()]
        said = (server.folder / "log").read_text()
    finally:
        for thread in back:
            thread.join()
        server.stop()
    if what == "backend":  # it died, and the postmaster ended the others and recovered
        assert "was terminated by signal 9" in said
        assert "all server processes terminated; reinitializing" in said
    plan = (what, when, nth, down)
    assert back, f"PostgreSQL was never killed: {plan}"
    # Only the gateway may have gone, by itself, when its lease ran out before the server was
    # back (its ttl is 2 s): no agent died, and the driver waited the outage out.
    assert set(spread.restarted) <= {("gateway", DEPOSED)}, (plan, spread.restarted)
    print(f"PostgreSQL killed at {plan}: restarted {spread.restarted}")
    same_storm_each_effect_once(here, there, records, plan)
