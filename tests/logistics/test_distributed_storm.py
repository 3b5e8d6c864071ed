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
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import psycopg
import pytest
from backends import PG_BASE
from procs import SOAK

from answerable.ledger import open_ledger
from answerable.ledger.postgres import drop_schema
from answerable.logistics.distributed import DistributedStormRun
from answerable.logistics.scenario import Mode, run
from answerable.logistics.world import ScenarioConfig

pytestmark = [pytest.mark.slow, pytest.mark.soak]

NATS = os.environ.get("ANSWERABLE_TEST_NATS", "nats://127.0.0.1:4222")
CLI = [sys.executable, "-m", "answerable.cli"]
DAYS = None if SOAK else 2
"""The whole storm under soak; two days (a calm one and the storm's first) in ``make test``."""
CASES: list[tuple[int, Mode]] = (
    [(seed, mode) for seed in (7, 11) for mode in ("ungoverned", "rules", "governed", "monitored")]
    if SOAK
    else [(7, "governed"), (11, "governed"), (11, "ungoverned")]
)


def storm_schemas() -> set[str]:
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'storm\\_%'").fetchall()
    return {r[0] for r in rows}


async def storm_streams() -> set[str]:
    nc = await nats.connect(NATS)
    try:
        names = await nc.jetstream().streams_info()
    finally:
        await nc.close()
    return {s.config.name for s in names if s.config.name and s.config.name.startswith("answerable_storm-")}


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ledger keys in the test's folder; every schema a run made dropped afterwards."""
    monkeypatch.setenv("ANSWERABLE_KEY_DIR", str(tmp_path / "keys"))
    before = storm_schemas()
    yield
    for schema in storm_schemas() - before:
        drop_schema(f"{PG_BASE}?options=-csearch_path%3D{schema}")


def scenario() -> ScenarioConfig:
    config = ScenarioConfig()
    return config if DAYS is None else ScenarioConfig.model_validate({**config.model_dump(), "days": DAYS})


@pytest.mark.timeout(1800 if SOAK else 240)
@pytest.mark.parametrize(("seed", "mode"), CASES)
async def test_the_storm_in_processes_gives_the_outcome_table_of_the_storm_in_one(
    seed: int, mode: Mode, tmp_path: Path, clean: None
) -> None:
    config = scenario()
    streams_before = await storm_streams()
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
    # The agents really were elsewhere: four processes, each said something into the ledger.
    assert set(spread.processes) == {"forecaster", "allocator", "router", "executor"}
    assert all(p.returncode is not None for p in spread.processes.values())
    with open_ledger(there.metrics["ledger"]) as ledger:
        assert ledger.verify().size == there.metrics["ledger_entries"]
        senders = {json.loads(e.data)["sender"] for e in ledger.of_kind("Message")}
        assert senders == {"forecaster", "allocator", "router", "executor"}
        signed = [json.loads(e.data).get("signature") for e in ledger.of_kind("Message")]
        assert all(signed)  # each signed by its sender in its own process
    assert there.metrics["ledger"].startswith(PG_BASE + "?options=-csearch_path%3Dstorm_")
    assert await storm_streams() == streams_before  # the run took its stream down


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
        (["--postgres", "postgresql://postgres@127.0.0.1:1/test"], "127.0.0.1:1"),
    ],
)
def test_bad_backends_are_one_line_and_leave_nothing_behind(
    flags: list[str], said: str, tmp_path: Path, clean: None
) -> None:
    schemas = storm_schemas()
    streams = asyncio.run(storm_streams())
    done = subprocess.run(
        [*CLI, "demo", "storm", "--days", "1", "--out", str(tmp_path / "out"), "--distributed", *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (1, 2)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert said in lines[0]
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
    assert storm_schemas() == schemas
    assert asyncio.run(storm_streams()) == streams
    assert not (tmp_path / "out" / "result.json").exists()
