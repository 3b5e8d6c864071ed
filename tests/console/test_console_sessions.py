"""Sessions that end on their own: the log-in limit, and a charter that no longer names the person."""

from __future__ import annotations

import json

import pytest
from consoled import PASSWORDS, Console
from served import cli

pytestmark = pytest.mark.slow


def test_five_failed_logins_block_the_identity_and_the_address_for_the_window(own_console: Console) -> None:
    """After five failures within 60 s, even the right password gets 429 too_many_logins."""
    tab = own_console.browser()
    reviewer = own_console.who["reviewer"]
    for _ in range(5):
        assert tab.login(reviewer, "not-the-password").status_code == 401
    blocked = tab.login(reviewer, PASSWORDS["reviewer"])
    assert (blocked.status_code, blocked.json()["reason_code"]) == (429, "too_many_logins")
    other = own_console.browser().login(own_console.who["ri"], PASSWORDS["ri"])  # the same address
    assert (other.status_code, other.json()["reason_code"]) == (429, "too_many_logins")


def test_a_charter_that_removes_the_reviewer_ends_their_session(own_console: Console) -> None:
    """The running service follows the amendment, and the reviewer's next request is 401 session_ended."""
    reviewer = own_console.browser("reviewer")
    ri = own_console.browser("ri")
    assert reviewer.get("me").status_code == 200
    # The reviewer's live stream: the service says on it, the moment it follows the new charter,
    # that the session ended (an event to wait on, not a guess of how long that takes).
    with reviewer.http.stream(
        "GET", f"{own_console.url}/console/api/live", headers=reviewer.headers(origin=None), timeout=30
    ) as live:
        lines = live.iter_lines()
        assert next(lines) == "event: state"
        amended = cli(
            own_console.running, "charter", "amend", "charter.json", "--key", "ri.key",
            "--out", "charter.json", "--force", "--revoke", own_console.who["reviewer"], "--json",
        )  # fmt: skip
        assert amended.returncode == 0, amended.stderr
        assert json.loads(amended.stdout)["version"] == 2
        ended = next(line for line in lines if line.startswith("event: ended"))
        data = next(lines)
    assert ended == "event: ended"
    assert json.loads(data.removeprefix("data: "))["reason_code"] == "session_ended"
    answer = reviewer.get("me")
    assert answer.status_code == 401
    again = reviewer.get("reviews")
    assert (again.status_code, again.json()["reason_code"]) == (401, "no_session")
    relog = own_console.browser().login(own_console.who["reviewer"], PASSWORDS["reviewer"])
    assert (relog.status_code, relog.json()["reason_code"]) == (401, "bad_login")
    assert ri.get("me").status_code == 200  # the RI's session stands


def test_a_session_past_its_minutes_is_gone_and_its_key_with_it() -> None:
    from answerable.console.sessions import Sessions
    from answerable.keys import KeyPair

    now = [1_000.0]
    sessions = Sessions(30, clock=lambda: now[0])
    key = KeyPair.generate("reviewer@shop.example")
    token, _ = sessions.open("reviewer@shop.example", ("reviewer",), key)
    now[0] += 30 * 60 - 1
    assert sessions.get(token) is not None
    now[0] += 1
    assert sessions.get(token) is None  # expired: the route answers 401 no_session
    assert sessions.get(token) is None
    other, _ = sessions.open("ri@shop.example", ("ri",), None)
    assert sessions.get(other) is not None
    assert len(sessions._by_hash) == 1  # the expired one, with its unlocked key, is forgotten


def test_a_new_password_ends_the_session_and_says_so(own_console: Console) -> None:
    """Found by a sweep: a session ended by a password change was told the charter no longer gave
    its roles, when the charter had not changed. Also: a path nobody serves came back whole in the
    404 (7 KB of it), where every other refusal cuts what it repeats."""
    from consoled import set_password

    viewer = own_console.browser("viewer")
    assert viewer.get("me").status_code == 200
    done = set_password(own_console.running.folder, own_console.who["viewer"], PASSWORDS["viewer"])
    assert done.returncode == 0, done.stderr
    ended = viewer.get("me")
    assert (ended.status_code, ended.json()["reason_code"]) == (401, "session_ended")
    assert "password" in ended.json()["error"]
    assert "charter" not in ended.json()["error"]
    long = viewer.get("a" * 7000)
    assert long.status_code == 404
    assert len(long.text) < 400, long.text
