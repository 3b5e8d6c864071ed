"""The RI presses halt in the console while the storm runs against the service: the four agents
in processes of their own on NATS JetStream, the executor submitting through the service's API,
the ledger in PostgreSQL. Read back from that ledger: nothing claimed after the halt ran, no
intent recorded after it ran, and the executor went on proposing (each refused).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import psycopg
import pytest
from backends import PG_BASE
from playwright.sync_api import expect, sync_playwright

from answerable.console.accounts import set_password
from answerable.ledger import open_ledger
from answerable.ledger.postgres import drop_schema
from answerable.logistics.distributed import DistributedStormRun
from answerable.logistics.governance import RI
from answerable.logistics.scenario import run
from answerable.logistics.world import ScenarioConfig

pytestmark = [pytest.mark.slow]
NATS = os.environ.get("ANSWERABLE_TEST_NATS", "nats://127.0.0.1:4222")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "the-storm-ri-password-1"


def storm_schemas() -> set[str]:
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'storm\\_%'").fetchall()
    return {r[0] for r in rows}


async def storm_streams() -> set[str]:
    connection = await nats.connect(NATS)
    try:
        found = await connection.jetstream().streams_info()
    finally:
        await connection.close()
    return {s.config.name for s in found if s.config.name and s.config.name.startswith("answerable_storm-")}


async def delete_streams(names: set[str]) -> None:
    connection = await nats.connect(NATS)
    try:
        for name in names:
            await connection.jetstream().delete_stream(name)
    finally:
        await connection.close()


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ledger keys in the test's folder; the schemas and streams a run made, dropped afterwards
    (a run stopped by killing its agents does not take its stream down itself)."""
    monkeypatch.setenv("ANSWERABLE_KEY_DIR", str(tmp_path / "keys"))
    before, streams = storm_schemas(), asyncio.run(storm_streams())
    yield
    for schema in storm_schemas() - before:
        drop_schema(f"{PG_BASE}?options=-csearch_path%3D{schema}")
    asyncio.run(delete_streams(asyncio.run(storm_streams()) - streams))


def kinds(url: str, kind: str) -> list[tuple[int, dict[str, object]]]:
    import orjson

    with open_ledger(url) as ledger:
        return [(e.index, orjson.loads(e.data)) for e in ledger.of_kind(kind)]


@pytest.mark.timeout(300)
def test_halt_in_the_console_mid_storm_stops_every_later_call(tmp_path: Path, clean: None) -> None:
    users = tmp_path / "console-users.json"
    set_password(users, RI, PASSWORD, None)  # halting needs no key: the service records who
    config = ScenarioConfig.model_validate({**ScenarioConfig().model_dump(), "days": 3})
    storm = DistributedStormRun(
        "governed", 11, config, tmp_path / "run", nats_url=NATS, postgres_url=PG_BASE, console_users=users
    )
    finished: dict[str, object] = {}
    loop = asyncio.new_event_loop()
    scenario = loop.create_task(run("governed", 11, config, tmp_path / "run", storm_run=storm))

    def driver() -> None:
        try:
            finished["result"] = loop.run_until_complete(scenario)
        except BaseException as exc:  # the test reads it below
            finished["error"] = exc
        finally:  # what the cancelled run left pending (its agents' watchers) goes too
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.close()

    thread = threading.Thread(target=driver, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while storm.console_url is None:
        assert time.monotonic() < deadline, f"the storm's service did not start: {finished}"
        assert thread.is_alive(), f"the storm ended before the halt: {finished}"
        time.sleep(0.05)

    def intents() -> int:
        return len(kinds(storm.ledger_url, "Intent"))

    with sync_playwright() as driver_:
        browser = driver_.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(storm.console_url)
            page.fill("#login-identity", RI)
            page.fill("#login-password", PASSWORD)
            page.click("#login-form button[type=submit]")
            expect(page.locator("#who")).to_contain_text(RI)
            # The provenance graph of a storm execution, drawn from the PostgreSQL ledger.
            while not kinds(storm.ledger_url, "Execution"):
                assert time.monotonic() < deadline, f"the storm ran nothing: {finished}"
                time.sleep(0.1)
            execution = str(kinds(storm.ledger_url, "Execution")[0][1]["id"])
            page.goto(f"{storm.console_url}#/why/{execution}")
            graph = page.locator("#why-graph")
            expect(graph).to_have_attribute("data-nodes", re.compile(r"^[1-9][0-9]*$"))
            assert int(graph.get_attribute("data-nodes") or 0) >= 5  # event, messages, intent, decision...
            page.click("#halt")
            page.fill("#halt-reason", "medical deliveries are being pushed behind retail")
            # Pressed while the executor is proposing: two looks at the ledger a moment apart
            # both find new intents, after some calls have run.
            seen = intents()
            while not (len(kinds(storm.ledger_url, "Execution")) >= 20 and intents() > seen > 0):
                assert time.monotonic() < deadline, f"the storm did not get going: {finished}"
                assert thread.is_alive(), f"the storm ended before the halt: {finished}"
                seen = intents()
                time.sleep(0.1)
            page.click("#halt-confirm")
            expect(page.locator("#message")).to_contain_text("Halted")
        finally:
            browser.close()
    # The storm does not wind down by itself once halted (its simulated days wait on deliveries
    # that will never be made): watch the executor go on proposing, then stop the agents.
    [(halted_at, _)] = [(i, c) for i, c in kinds(storm.ledger_url, "Control") if c["action"] == "halt"]
    deadline = time.monotonic() + 120
    while not [i for i, _ in kinds(storm.ledger_url, "Intent") if i > halted_at]:
        assert time.monotonic() < deadline, "the executor proposed nothing after the halt"
        assert thread.is_alive(), f"the storm ended: {finished}"
        time.sleep(0.2)
    loop.call_soon_threadsafe(scenario.cancel)  # the run stops its agents and service as it unwinds
    thread.join(timeout=120)
    assert not thread.is_alive(), "the storm's driver did not stop when cancelled"

    [(halted_at, halt)] = [(i, c) for i, c in kinds(storm.ledger_url, "Control") if c["action"] == "halt"]
    assert halt["by"] == RI
    intents = {c["id"]: i for i, c in kinds(storm.ledger_url, "Intent")}
    claims = {c["intent_id"]: i for i, c in kinds(storm.ledger_url, "Claim")}
    ran = [e for _, e in kinds(storm.ledger_url, "Execution") if e["status"] == "succeeded"]
    assert ran, "nothing ran before the halt"
    assert all(intents[e["intent_id"]] < halted_at for e in ran), "an intent recorded after the halt ran"
    assert all(claims[e["intent_id"]] < halted_at for e in ran), "a call claimed after the halt ran"
    later = [i for i in intents.values() if i > halted_at]
    assert later, "the executor proposed nothing after the halt: the test did not test the halt"
    assert all(claims.get(intent, -1) < halted_at for intent in intents)  # nothing claimed after it
