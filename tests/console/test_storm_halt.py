"""The RI presses halt in the console while the storm runs against the service: the four agents
in processes of their own on NATS JetStream, the executor submitting through the service's API,
the ledger in PostgreSQL. Read back from that ledger: nothing claimed after the halt ran, no
intent recorded after it ran, and the executor's dispatch through the API after it was refused.
The run is held after its second-to-last day until the halt is in; its last day runs under it,
everything its agents say refused, and it ends by itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import PG_BASE
from playwright.sync_api import expect, sync_playwright
from storm_leftovers import drop_runs

from answerable.client import Client
from answerable.console.accounts import set_password
from answerable.ledger import open_ledger
from answerable.logistics.distributed import DistributedStormRun
from answerable.logistics.governance import RI
from answerable.logistics.scenario import RunResult, run
from answerable.logistics.world import ScenarioConfig

pytestmark = [pytest.mark.slow]
NATS = os.environ.get("ANSWERABLE_TEST_NATS", "nats://127.0.0.1:4222")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "the-storm-ri-password-1"


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ledger keys in the test's folder; the schema and stream of its run dropped afterwards (a
    run stopped by killing its agents does not take its stream down itself)."""
    monkeypatch.setenv("ANSWERABLE_KEY_DIR", str(tmp_path / "keys"))
    yield
    drop_runs(tmp_path)


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
    halted, done_asking = concurrent.futures.Future[None](), concurrent.futures.Future[None]()

    def held(day: int) -> asyncio.Future[None] | None:
        """The run waits after its second-to-last day until the RI has halted it (so its last
        day runs under the halt), and after its last, its service still up, until the test has
        asked it what it asks below."""
        if day == config.days - 2:
            return asyncio.wrap_future(halted)
        return asyncio.wrap_future(done_asking) if day == config.days - 1 else None

    scenario = loop.create_task(run("governed", 11, config, tmp_path / "run", storm_run=storm, on_day=held))

    def driver() -> None:
        asyncio.set_event_loop(loop)
        try:
            finished["result"] = loop.run_until_complete(scenario)
        except BaseException as exc:  # the test reads it below
            finished["error"] = exc
        finally:  # anything a failed run left pending goes too
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.close()

    thread = threading.Thread(target=driver, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(asyncio.wait_for(storm.serving.wait(), 120), loop).result()
    assert storm.console_url is not None

    def count(selector: str) -> str:
        """A page expression: the number a live-view element shows (-1 before it is drawn)."""
        return f"Number((document.querySelector('{selector}') || {{dataset: {{n: -1}}}}).dataset.n)"

    with sync_playwright() as driver_:
        browser = driver_.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(storm.console_url)
            page.fill("#login-identity", RI)
            page.fill("#login-password", PASSWORD)
            page.click("#login-form button[type=submit]")
            expect(page.locator("#who")).to_contain_text(RI)
            # The live view is told of every new entry (server-sent events): wait on what it shows.
            page.goto(f"{storm.console_url}#/live")
            page.wait_for_function(f"() => {count('#live-executed')} >= 20", timeout=120_000)
            # The provenance graph of a storm execution, drawn from the PostgreSQL ledger.
            listed = "/console/api/entries?kind=Execution&limit=1"
            execution = page.evaluate(f"async () => (await (await fetch('{listed}')).json()).entries[0].id")
            page.goto(f"{storm.console_url}#/why/{execution}")
            graph = page.locator("#why-graph")
            expect(graph).to_have_attribute("data-nodes", re.compile(r"^[1-9][0-9]*$"))
            assert int(graph.get_attribute("data-nodes") or 0) >= 5  # event, messages, intent, decision...
            page.click("#halt")
            page.fill("#halt-reason", "medical deliveries are being pushed behind retail")
            page.click("#halt-confirm")
            expect(page.locator("#message")).to_contain_text("Halted")
            page.goto(f"{storm.console_url}#/live")
            expect(page.locator("#live-control")).to_have_text("HALTED", timeout=30_000)
            halted.set_result(None)  # the last day now runs under the halt
            # The executor dispatches again through the service's API, as it does in the storm:
            # its last proposal, once more (the storm's own executor may or may not be mid-plan).
            last = page.evaluate(
                "async () => { const found = await (await fetch("
                "'/console/api/entries?kind=Intent&agent=executor&limit=1')).json();"
                " const one = await fetch('/console/api/entries/' + found.entries[0].id);"
                " return (await one.json()).entry; }"
            )
        finally:
            browser.close()
    base = storm.console_url.removesuffix("/console/")
    with Client(base, storm.keys["executor"]) as executor:
        again = f"after-halt-{last['id']}"
        after = executor.submit(last["operation"], last["arguments"], idempotency_key=again)
    assert after["status"] != "succeeded", after
    done_asking.set_result(None)
    thread.join(timeout=120)  # the halted run goes to its last day and ends by itself
    assert not thread.is_alive(), "the halted storm did not end by itself"
    assert "error" not in finished, finished["error"]
    result = finished["result"]
    assert isinstance(result, RunResult)
    assert result.metrics["halted"]["by"] == RI
    assert result.metrics["halted"]["reason"] == "medical deliveries are being pushed behind retail"
    assert [p.returncode for p in storm.processes.values()] == [0, 0, 0, 0]  # stopped, not killed

    [(halted_at, halt)] = [(i, c) for i, c in kinds(storm.ledger_url, "Control") if c["action"] == "halt"]
    assert halt["by"] == RI
    intents = {c["id"]: i for i, c in kinds(storm.ledger_url, "Intent")}
    claims = {c["intent_id"]: i for i, c in kinds(storm.ledger_url, "Claim")}
    ran = [e for _, e in kinds(storm.ledger_url, "Execution") if e["status"] == "succeeded"]
    assert ran, "nothing ran before the halt"
    assert all(intents[e["intent_id"]] < halted_at for e in ran), "an intent recorded after the halt ran"
    assert all(claims[e["intent_id"]] < halted_at for e in ran), "a call claimed after the halt ran"
    assert [i for i in intents.values() if i > halted_at], "the test's dispatch after the halt is missing"
    # An intent decided just before the halt may be committed, claim and all, just after it: the
    # check after that commit stops it (README, "control is checked again, after that commit").
    # Nothing claimed after the halt was called, not even a call that failed.
    status = {e["intent_id"]: e["status"] for _, e in kinds(storm.ledger_url, "Execution")}
    late = [intent for intent, at in claims.items() if at > halted_at]
    assert all(status.get(intent) == "not_executed" for intent in late), {i: status.get(i) for i in late}
    # The run went on to its last day under the halt, and what its agents said then was refused.
    plans = [i for i, e in kinds(storm.ledger_url, "ExternalEvent") if e["type"] == "day.plan"]
    assert max(plans) > halted_at
    refused = [
        r for i, r in kinds(storm.ledger_url, "Refusal") if i > halted_at and r["reason_code"] == "halt"
    ]
    assert {r["claimed"] for r in refused} & {"forecaster", "allocator", "router", "executor"}
