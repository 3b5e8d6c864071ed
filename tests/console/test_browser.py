"""The console as people use it: Debian's chromium, driven through Playwright's executable path,
against a real ``answerable serve`` with a ``[console]`` table. What the page shows is checked
against what the ledger records, not against the page's own words.

The session cookie is ``__Host-`` and ``Secure``: Chromium keeps and sends it on
``http://127.0.0.1`` because loopback is a secure context, as it would over https elsewhere.
Screenshots of the main pages are written to ``docs/console/`` when ANSWERABLE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from consoled import PASSWORDS, Console
from playwright.sync_api import Browser, Page, expect, sync_playwright

from answerable.client import Client
from answerable.keys import KeyPair

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).parents[2] / "docs" / "console"


BROKEN: list[str] = []
"""What the browser said about the pages breaking their Content-Security-Policy."""


@pytest.fixture(autouse=True)
def _csp_kept() -> Iterator[None]:
    BROKEN.clear()
    yield
    assert BROKEN == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


def log_in(browser: Browser, console: Console, role: str) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    # A page (or a popup it opens) that breaks its Content-Security-Policy is a bug.
    context.on(
        "console",
        lambda message: BROKEN.append(message.text) if "Content Security Policy" in message.text else None,
    )
    page = context.new_page()
    page.goto(f"{console.url}/console/")
    page.fill("#login-identity", console.who[role])
    page.fill("#login-password", PASSWORDS[role])
    page.click("#login-form button[type=submit]")
    expect(page.locator("#who")).to_contain_text(console.who[role])
    return page


def shot(page: Page, name: str) -> None:
    if os.environ.get("ANSWERABLE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def agent(console: Console) -> Client:
    return Client(console.url, KeyPair.load(console.folder / "agent.key"))


def test_a_reviewer_approves_with_a_reason_and_the_waiting_action_runs(
    browser: Browser, console: Console
) -> None:
    with agent(console) as refunds:
        waiting = refunds.submit("refund", {"order": "B-1", "amount_cents": 25_000}, idempotency_key="B-1")
    assert waiting["status"] == "review"
    page = log_in(browser, console, "reviewer")
    card = page.locator(f".review[data-review='{waiting['review_id']}']")
    expect(card).to_contain_text('"order": "B-1"')
    expect(card).to_contain_text("refunds-over-100-eur-need-a-person")
    shot(page, "reviews")
    card.locator(".approve").click()  # no reason yet: the server refuses, the page says why
    expect(page.locator("#message")).to_contain_text("refused")
    assert console.kinds("Approval") == [] or all(
        a["intent_id"] != waiting["intent_id"] for a in console.kinds("Approval")
    )
    card.locator(".answer-reason").fill("the customer returned the goods")
    card.locator(".approve").click()
    expect(page.locator("#message")).to_contain_text("approve recorded")
    with agent(console) as refunds:
        done = refunds.wait(waiting["intent_id"], seconds=30)
    assert done["status"] == "succeeded"
    [approval] = [a for a in console.kinds("Approval") if a["intent_id"] == waiting["intent_id"]]
    assert (approval["by"], approval["reason"]) == (
        console.who["reviewer"],
        "the customer returned the goods",
    )
    [execution] = [e for e in console.kinds("Execution") if e["intent_id"] == waiting["intent_id"]]
    assert execution["authority"]["ids"] == [approval["id"]]

    # Its provenance, drawn: the execution's why graph holds its intent, decision and approval.
    page.goto(f"{console.url}/console/#/why/{execution['id']}")
    graph = page.locator("#why-graph")
    expect(graph).to_have_attribute(
        "data-nodes",
        str(
            len(
                page.evaluate(
                    "async (id) => (await (await fetch('/console/api/why/' + id)).json()).nodes",
                    execution["id"],
                )
            )
        ),
    )
    assert int(graph.get_attribute("data-nodes") or 0) >= 4
    shot(page, "why")


def test_a_viewer_finds_approve_and_halt_refused_by_the_server(browser: Browser, console: Console) -> None:
    with agent(console) as refunds:
        waiting = refunds.submit("refund", {"order": "B-2", "amount_cents": 26_000}, idempotency_key="B-2")
    page = log_in(browser, console, "viewer")
    card = page.locator(f".review[data-review='{waiting['review_id']}']")
    expect(card).to_contain_text("You cannot answer this review.")
    before = len(console.kinds("Control")), len(console.kinds("Approval"))
    # The halt button is there for everyone; the server refuses a viewer's halt.
    page.click("#halt")
    page.fill("#halt-reason", "a viewer tries")
    page.click("#halt-confirm")
    expect(page.locator("#message")).to_contain_text("Halt refused")
    # No approve button: the same request the button sends, from the viewer's page, is refused too.
    status = page.evaluate(
        """async ([id, token]) => (await fetch('/console/api/reviews/' + id + '/answer', {method: 'POST',
             headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token},
             body: JSON.stringify({verdict: 'approve', reason: 'a viewer tries'})})).status""",
        [
            waiting["review_id"],
            page.evaluate("async () => (await (await fetch('/console/api/me')).json()).csrf_token"),
        ],
    )
    assert status == 403
    assert (len(console.kinds("Control")), len(console.kinds("Approval"))) == before


def test_the_live_view_updates_without_reload(browser: Browser, console: Console) -> None:
    page = log_in(browser, console, "viewer")
    page.goto(f"{console.url}/console/#/live")
    size = page.locator("#live-size")
    expect(size).to_contain_text("entries")
    before = size.inner_text()
    page.evaluate("() => { window.notReloaded = true; }")
    with agent(console) as refunds:
        refunds.submit("refund", {"order": "L-1", "amount_cents": 700})
    expect(size).not_to_have_text(before, timeout=15_000)
    assert page.evaluate("() => window.notReloaded") is True
    shot(page, "live")
    page.goto(f"{console.url}/console/#/ledger")
    expect(page.locator("#entries")).to_contain_text("Execution")
    shot(page, "ledger")


def test_halt_in_the_browser_while_an_executor_submits_nothing_runs_after_it(
    browser: Browser, own_console: Console
) -> None:
    """An executor submits through the service's API while the RI presses halt: no intent
    recorded after the halt ran, and a call that finished after it had been claimed (and passed
    its control check) before the halt was committed: it was already in flight."""
    console = own_console
    page = log_in(browser, console, "ri")
    stop, progressed = threading.Event(), threading.Event()
    outcomes: list[dict[str, object]] = []

    def executor() -> None:
        with agent(console) as refunds:
            n = 0
            while not stop.is_set():
                n += 1
                outcomes.append(refunds.submit("refund", {"order": f"H-{n}", "amount_cents": 300}))
                progressed.set()

    def wait_for(count: int) -> None:
        while len(outcomes) < count:
            assert progressed.wait(timeout=30), f"the executor stalled at {len(outcomes)} calls"
            progressed.clear()

    worker = threading.Thread(target=executor, daemon=True)
    worker.start()
    try:
        wait_for(5)  # the executor is running: calls have gone through
        page.click("#halt")
        page.fill("#halt-reason", "storm: medical deliveries are being pushed back")
        page.click("#halt-confirm")
        expect(page.locator("#message")).to_contain_text("Halted")
        after = len(outcomes)
        wait_for(after + 5)  # the executor keeps trying after the halt
    finally:
        stop.set()
        worker.join(timeout=60)
    [halt] = [c for c in console.kinds("Control") if c["action"] == "halt"]
    assert halt["by"] == console.who["ri"]
    entries = console.indexed()
    halted_at = entries[halt["id"]]
    ran = [e for e in console.kinds("Execution") if e["status"] == "succeeded"]
    claimed = {c["intent_id"]: entries[c["id"]] for c in console.kinds("Claim")}
    assert all(entries[e["intent_id"]] < halted_at for e in ran), "an intent recorded after the halt ran"
    assert all(claimed[e["intent_id"]] < halted_at for e in ran), "a call claimed after the halt ran"
    assert any(
        entries[e["intent_id"]] > halted_at for e in console.kinds("Execution") + console.kinds("Decision")
    )
    assert any(o["status"] != "succeeded" for o in outcomes[after:])
    page.goto(f"{console.url}/console/#/live")
    expect(page.locator("#live-control")).to_have_text("HALTED")
    shot(page, "halted")


def test_the_incident_report_opens_styled_under_the_consoles_policy(
    browser: Browser, console: Console
) -> None:
    page = log_in(browser, console, "viewer")
    page.goto(f"{console.url}/console/#/reports")
    with page.expect_popup() as opened:
        page.click("#report-link")
    report = opened.value
    report.wait_for_load_state()
    expect(report.locator("h1").first).to_be_visible()
    # Its one inline stylesheet is allowed by hash (the policy names it), nothing else inline.
    assert report.evaluate("() => document.styleSheets.length") >= 1
    assert report.evaluate("() => document.styleSheets[0].cssRules.length") > 0


def test_resume_in_the_browser_lifts_only_what_the_page_showed(browser: Browser, console: Console) -> None:
    """The page shows one pause; `answerable pause`, another process, adds a second on the same
    scope; Resume on the old page is refused and lifts nothing; on the page loaded again it lifts
    both."""
    import subprocess
    import sys

    cli = Path(sys.executable).with_name("answerable")
    page = log_in(browser, console, "ri")
    page.goto(f"{console.url}/console/#/control")
    page.fill("#pause-scope", "operation:refund")
    page.fill("#pause-reason", "maintenance")
    page.click("#pause")
    expect(page.locator("#message")).to_contain_text("pause of operation:refund recorded")
    expect(page.locator("#view")).to_contain_text("maintenance")
    ri = KeyPair.load(console.folder / "ri.key")
    added = subprocess.run(
        [str(cli), "pause", str(console.folder / "ledger.db"), "--by", ri.identity,
         "--reason", "outcome unknown", "--scope", "operation:refund"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    page.fill("#pause-scope", "operation:refund")
    page.fill("#pause-reason", "done")
    page.click("#resume")
    expect(page.locator("#message")).to_contain_text("you were not shown")
    api = console.browser("ri")
    assert len(api.get("control").json()["stops"]) == 2
    page.reload()
    expect(page.locator("#view")).to_contain_text("outcome unknown")
    page.fill("#pause-scope", "operation:refund")
    page.fill("#pause-reason", "both looked at")
    page.click("#resume")
    expect(page.locator("#message")).to_contain_text("resume of operation:refund recorded")
    assert api.get("control").json()["stops"] == []
