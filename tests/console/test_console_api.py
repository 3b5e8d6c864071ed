"""The console's API on a real ``answerable serve``: log-in, guards, reviews, control, reading."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from consoled import PASSWORDS, VIEWER, Console, console_system
from served import CLI, free_port, start

from answerable.client import Client
from answerable.console.api import CSP
from answerable.keys import KeyPair
from answerable.ledger.merkle import leaf_hash, verify_inclusion

pytestmark = pytest.mark.slow

POSTS = [
    ("logout", {}),
    ("reviews/00000000-0000-7000-8000-000000000000/answer", {"verdict": "approve", "reason": "fine"}),
    ("control", {"action": "halt", "scope": "system", "reason": "test"}),
    ("resume", {"scope": "system", "reason": "test"}),
]


def large_refund(console: Console, order: str) -> dict[str, object]:
    """A refund over 100 EUR, submitted by the agent: the scaffold's rules send it to review."""
    with Client(console.url, KeyPair.load(console.folder / "agent.key")) as agent:
        outcome = agent.submit("refund", {"order": order, "amount_cents": 25_000}, idempotency_key=order)
    assert outcome["status"] == "review", outcome
    return outcome


def test_login_gives_a_host_cookie_and_the_same_message_for_a_bad_password_or_name(console: Console) -> None:
    """A log-in sets a __Host- Secure HttpOnly SameSite=Strict cookie; a failure says not what was wrong."""
    tab = console.browser()
    ok = tab.login(console.who["reviewer"], PASSWORDS["reviewer"])
    assert ok.status_code == 200, ok.text
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith("__Host-answerable-session=")
    lowered = cookie.lower()
    for part in ("secure", "httponly", "samesite=strict", "path=/"):
        assert part in lowered
    assert "domain" not in lowered
    assert ok.json()["roles"] == ["reviewer"]
    assert tab.get("me").json()["identity"] == console.who["reviewer"]
    wrong = console.browser().login(console.who["reviewer"], "not-the-password")
    stranger = console.browser().login("nobody@example.org", "not-the-password")
    assert wrong.status_code == stranger.status_code == 401
    assert (
        wrong.json() == stranger.json() == {"error": "wrong identity or password", "reason_code": "bad_login"}
    )


def test_every_post_wants_a_session_its_csrf_token_and_the_same_origin(console: Console) -> None:
    """No session: 401; no or a wrong CSRF token: 403 csrf; another origin: 403 cross_origin."""
    tab = console.browser("ri")
    before = len(console.kinds("Control"))
    for path, doc in POSTS:
        bare = tab.post(path, doc, session=False)
        assert (bare.status_code, bare.json()["reason_code"]) == (401, "no_session"), path
        forged = tab.http.post(
            f"{console.url}/console/api/{path}",
            json=doc,
            headers={**tab.headers(), "Cookie": "__Host-answerable-session=forged"},
        )
        assert (forged.status_code, forged.json()["reason_code"]) == (401, "no_session"), path
        missing = tab.post(path, doc, csrf=None)
        assert (missing.status_code, missing.json()["reason_code"]) == (403, "csrf"), path
        wrong = tab.post(path, doc, csrf="not-the-token")
        assert (wrong.status_code, wrong.json()["reason_code"]) == (403, "csrf"), path
        foreign = tab.post(path, doc, origin="https://evil.example")
        assert (foreign.status_code, foreign.json()["reason_code"]) == (403, "cross_origin"), path
        no_origin = tab.post(path, doc, origin=None)
        assert (no_origin.status_code, no_origin.json()["reason_code"]) == (403, "cross_origin"), path
    login = tab.http.post(
        f"{console.url}/console/api/login",
        json={"identity": console.who["ri"], "password": PASSWORDS["ri"]},
        headers={"Origin": "https://evil.example"},
    )
    assert (login.status_code, login.json()["reason_code"]) == (403, "cross_origin")
    same_site = tab.http.post(
        f"{console.url}/console/api/control",
        json={"action": "halt", "reason": "x"},
        headers={"Cookie": str(tab.cookie), "X-CSRF-Token": str(tab.csrf), "Sec-Fetch-Site": "same-site"},
    )
    assert (same_site.status_code, same_site.json()["reason_code"]) == (403, "cross_origin")
    assert len(console.kinds("Control")) == before  # nothing refused was recorded as an act


def test_a_viewer_reads_but_cannot_answer_or_halt(console: Console) -> None:
    """The server refuses a viewer's approve and halt (403), whatever a page would show."""
    review = large_refund(console, "O-viewer")
    viewer = console.browser("viewer")
    assert viewer.me["roles"] == ["viewer"]
    listed = {r["review_id"]: r for r in viewer.get("reviews").json()}
    assert listed[review["review_id"]]["can_answer"] is False
    approve = viewer.post(f"reviews/{review['review_id']}/answer", {"verdict": "approve", "reason": "fine"})
    assert (approve.status_code, approve.json()["reason_code"]) == (403, "forbidden")
    halt = viewer.post("control", {"action": "halt", "scope": "system", "reason": "I think so"})
    assert (halt.status_code, halt.json()["reason_code"]) == (403, "forbidden")
    assert not [a for a in console.kinds("Approval") if a["review_id"] == review["review_id"]]


def test_a_reviewer_approves_in_the_console_and_the_intent_runs_once(console: Console) -> None:
    """The answer is signed with the reviewer's key as the CLI signs it; a second answer is refused (409)."""
    review = large_refund(console, "O-approve")
    reviewer = console.browser("reviewer")
    shown = reviewer.get(f"reviews/{review['review_id']}").json()
    assert shown["status"] == "open"
    assert shown["can_answer"] is True
    assert shown["operation"] == "refund"
    assert shown["arguments"] == {"order": "O-approve", "amount_cents": 25_000}
    assert "refunds-over-100-eur-need-a-person" in shown["policy_ids"]
    assert shown["reason"] == "a refund over 100 EUR needs a person"
    assert shown["deadline"] is not None
    assert shown["intent_id"] == review["intent_id"]
    blank = reviewer.post(f"reviews/{review['review_id']}/answer", {"verdict": "approve", "reason": "  "})
    assert (blank.status_code, blank.json()["reason_code"]) == (422, "reason_required")
    answered = reviewer.post(
        f"reviews/{review['review_id']}/answer", {"verdict": "approve", "reason": "order checked"}
    )
    assert answered.status_code == 200, answered.text
    with Client(console.url, KeyPair.load(console.folder / "agent.key")) as agent:
        assert agent.wait(str(review["intent_id"]), seconds=20)["status"] == "succeeded"
    approvals = [a for a in console.kinds("Approval") if a["review_id"] == review["review_id"]]
    assert [(a["by"], a["verdict"], a["reason"]) for a in approvals] == [
        (console.who["reviewer"], "approve", "order checked")
    ]
    conn = sqlite3.connect(console.folder / "ledger.db")
    try:
        order = [
            kind
            for kind, data in conn.execute("SELECT kind, data FROM entries ORDER BY idx")
            if json.loads(data).get("intent_id") == review["intent_id"] and kind in ("Approval", "Execution")
        ]
    finally:
        conn.close()
    assert order == ["Approval", "Execution"]
    again = reviewer.post(
        f"reviews/{review['review_id']}/answer", {"verdict": "deny", "reason": "changed my mind"}
    )
    assert again.status_code == 409, again.text
    assert again.json()["reason_code"] in ("already_claimed", "already_answered")
    assert reviewer.get(f"reviews/{review['review_id']}").json()["status"] == "settled"
    assert len([a for a in console.kinds("Approval") if a["review_id"] == review["review_id"]]) == 1


def test_halt_needs_a_reason_and_is_recorded_in_the_ris_name_then_the_ri_resumes(console: Console) -> None:
    """An empty reason: 422 and nothing recorded; a halt by the RI: a Control by the RI; a signed resume."""
    ri = console.browser("ri")
    before = console.kinds("Control")
    empty = ri.post("control", {"action": "halt", "scope": "system", "reason": ""})
    assert (empty.status_code, empty.json()["reason_code"]) == (422, "reason_required")
    assert console.kinds("Control") == before
    halted = ri.post("control", {"action": "halt", "scope": "system", "reason": "refunds look wrong"})
    assert halted.status_code == 200, halted.text
    controls = console.kinds("Control")
    assert [(c["action"], c["by"], c["reason"]) for c in controls[len(before) :]] == [
        ("halt", console.who["ri"], "refunds look wrong")
    ]
    state = ri.get("live/../me")  # any read still works while halted
    assert state.status_code == 200
    resumed = ri.post("resume", {"scope": "system", "reason": "checked and fixed"})
    assert resumed.status_code == 200, resumed.text
    last = console.kinds("Control")[-1]
    assert (last["action"], last["by"], last["causes"]) == (
        "resume",
        console.who["ri"],
        [halted.json()["id"]],
    )
    assert last["signature"]
    nothing = ri.post("resume", {"scope": "system", "reason": "again"})
    assert (nothing.status_code, nothing.json()["reason_code"]) == (409, "not_stopped")


def test_a_resume_lifts_only_the_stops_the_page_showed(console: Console) -> None:
    """The page showed the operator's own pause; a second stop on the scope landed meanwhile (a
    reconcile's "outcome unknown" pause, a monitor's): Resume, sent with the ids shown, is refused
    and lifts nothing. It lifted both, the one nobody had looked at too."""
    ri = console.browser("ri")
    first = ri.post("control", {"action": "pause", "scope": "operation:refund", "reason": "maintenance"})
    assert first.status_code == 200, first.text
    shown = [s["id"] for s in ri.get("control").json()["stops"]]
    meanwhile = ri.post("control", {"action": "pause", "scope": "operation:refund", "reason": "unknown call"})
    assert meanwhile.status_code == 200, meanwhile.text
    before = console.kinds("Control")
    refused = ri.post("resume", {"scope": "operation:refund", "reason": "done", "seen": shown})
    assert (refused.status_code, refused.json()["reason_code"]) == (409, "stops_changed"), refused.text
    assert meanwhile.json()["id"] in refused.json()["error"]
    assert console.kinds("Control") == before
    shown = [s["id"] for s in ri.get("control").json()["stops"]]
    resumed = ri.post("resume", {"scope": "operation:refund", "reason": "both looked at", "seen": shown})
    assert resumed.status_code == 200, resumed.text
    assert ri.get("control").json()["stops"] == []


def test_pages_and_api_carry_the_strict_csp(console: Console) -> None:
    """Every console response, pages and errors included, has the CSP and no-store headers."""
    tab = console.browser("viewer")
    for response in (
        tab.http.get(f"{console.url}/console/"),
        tab.get("me"),
        console.browser().get("me"),  # a 401
        tab.http.get(f"{console.url}/console/static/index.html"),
    ):
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
    page = tab.http.get(f"{console.url}/console/")
    assert page.status_code == 200
    assert "console" in page.text


def test_the_live_stream_sends_state_at_once_and_again_when_the_ledger_grows(console: Console) -> None:
    """An SSE ``state`` event comes first, and a new one follows an entry appended."""
    tab = console.browser("viewer")
    with tab.http.stream(
        "GET", f"{console.url}/console/api/live", headers=tab.headers(origin=None), timeout=20
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = _events(stream.iter_lines())
        first = next(events)
        assert {"ledger_size", "agents", "executed", "control", "alerts", "reviews_open"} <= set(first)
        with Client(console.url, KeyPair.load(console.folder / "agent.key")) as agent:
            agent.submit("refund", {"order": "O-live", "amount_cents": 500})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            later = next(events)
            if later["ledger_size"] > first["ledger_size"] and later["executed"].get("refund", 0) > first[
                "executed"
            ].get("refund", 0):
                break
        else:
            pytest.fail("no state event showed the new execution")


def _events(lines):  # type: ignore[no-untyped-def]
    kind = None
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind == "state":
            yield json.loads(line.removeprefix("data: "))


def test_the_ledger_explorer_lists_entries_and_proves_one_against_the_checkpoint(console: Console) -> None:
    """Entries newest first with a filter; an entry whole with an inclusion proof that verifies.
    Its own two refunds first: the module's service is shared, and under ``-n 2`` the tests that
    made Executions before it may run on the other worker (alone, it listed none)."""
    with Client(console.url, KeyPair.load(console.folder / "agent.key")) as agent:
        for order in ("O-ex-1", "O-ex-2"):
            agent.submit("refund", {"order": order, "amount_cents": 500})
    tab = console.browser("viewer")
    listed = tab.get("entries", kind="Execution", limit="2").json()
    assert listed["entries"]
    assert all(e["kind"] == "Execution" for e in listed["entries"])
    indexes = [e["index"] for e in listed["entries"]]
    assert indexes == sorted(indexes, reverse=True)
    bad = tab.get("entries", limit="501")
    assert (bad.status_code, bad.json()["reason_code"]) == (422, "bad_limit")
    chosen = listed["entries"][0]
    entry = tab.get(f"entries/{chosen['id']}").json()
    assert entry["entry"]["kind"] == "Execution"
    note = entry["checkpoint"].split("\n")
    root = base64.b64decode(note[2])
    conn = sqlite3.connect(console.folder / "ledger.db")
    try:
        (data,) = conn.execute("SELECT data FROM entries WHERE id = ?", (chosen["id"],)).fetchone()
    finally:
        conn.close()
    proof = [base64.b64decode(h) for h in entry["proof"]["hashes"]]
    assert entry["proof"]["tree_size"] == int(note[1])
    verify_inclusion(entry["proof"]["leaf_index"], entry["proof"]["tree_size"], leaf_hash(data), proof, root)
    missing = tab.get("entries/no-such-entry")
    assert (missing.status_code, missing.json()["reason_code"]) == (404, "unknown_entry")
    why = tab.get(f"why/{chosen['id']}").json()
    assert why["nodes"][0]["id"] == chosen["id"]
    assert why["layout"] is None
    assert {"from", "to"} <= set(why["edges"][0])


def test_rules_coordination_and_report_read(console: Console) -> None:
    """The ruleset in force and who signed it, a diff, the coordination graph, the report page."""
    tab = console.browser("viewer")
    rules = tab.get("rules").json()
    assert rules["active"]["version"] == 1
    assert rules["active"]["approved_by"] == console.who["ri"]
    assert [r["version"] for r in rules["history"]] == [1]
    assert tab.get("rules/diff", **{"from": "1", "to": "1"}).json() == {
        "added": [],
        "removed": [],
        "changed": [],
    }
    unknown = tab.get("rules/diff", **{"from": "1", "to": "9"})
    assert (unknown.status_code, unknown.json()["reason_code"]) == (404, "unknown_version")
    graph = tab.get("coordination").json()
    assert {"agents", "edges", "refusals", "days"} <= set(graph)
    report = tab.get("report")
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert "Incident report" in report.text
    # Named as the system's readers know it, not by where the server keeps its files.
    assert str(console.folder.resolve()) not in report.text
    assert str(console.folder) not in report.text
    assert "answerable verify ledger.db --checkpoint checkpoint.txt" in report.text


def test_logout_ends_the_session(console: Console) -> None:
    """After log-out the cookie opens nothing."""
    tab = console.browser("reviewer")
    assert tab.post("logout", {}).status_code == 200
    gone = tab.get("me")
    assert (gone.status_code, gone.json()["reason_code"]) == (401, "no_session")
    assert isinstance(gone, httpx.Response)


def test_the_comparison_page_sets_the_runs_the_config_names_beside_this_one(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    console_system(folder)
    other = subprocess.run(
        [*CLI, "demo", "quickstart", "--out", "earlier"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert other.returncode == 0, other.stderr
    with (folder / "answerable.toml").open("a", encoding="utf-8") as config:
        config.write('compare = ["earlier/ledger.db"]\n')  # [console] is the file's last table
    running = start(folder, free_port())
    try:
        tab = Console(running, {"viewer": VIEWER}).browser()
        assert tab.login(VIEWER, PASSWORDS["viewer"]).status_code == 200
        page = tab.http.get(f"{running.url}/console/api/report/compare", headers=tab.headers(origin=None))
        assert page.status_code == 200, page.text
        assert "Comparison of runs" in page.text
        assert "style-src 'self' 'sha256-" in page.headers["content-security-policy"]
        assert str(tmp_path) not in page.text
        assert "<code>earlier/ledger.db</code>" in page.text
        tab.http.close()
    finally:
        running.stop()
