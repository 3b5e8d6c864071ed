"""The console's edges a sceptical review found: log-in bursts, a new password, digits that are
not ASCII, reasons that say nothing, a password that is not text."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from consoled import PASSWORDS, Console, set_password

from answerable.console.sessions import LoginLimit
from answerable.httpsig import sign_request
from answerable.keys import KeyPair


def test_a_burst_of_wrong_passwords_meets_the_limit_as_a_sequence_would(own_console: Console) -> None:
    console = own_console
    identity = console.who["ri"]

    def guess(n: int) -> int:
        with httpx.Client(timeout=60) as http:
            answer = http.post(
                f"{console.url}/console/api/login",
                json={"identity": identity, "password": f"wrong-guess-{n:04d}"},
                headers={"Origin": console.url},
            )
            return answer.status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(guess, range(24)))
    assert statuses.count(401) <= 5, statuses
    assert statuses.count(429) >= 19, statuses


def test_a_new_password_ends_the_sessions_of_the_old_one(own_console: Console) -> None:
    console = own_console
    tab = console.browser("reviewer")
    assert tab.get("me").status_code == 200
    done = set_password(console.folder, console.who["reviewer"], "a-brand-new-password-9", "reviewer.key")
    assert done.returncode == 0, done.stderr
    ended = tab.get("me")
    assert ended.status_code == 401
    assert ended.json()["reason_code"] == "session_ended"


def test_digits_that_are_not_ascii_and_reasons_that_say_nothing_are_refused(console: Console) -> None:
    ri = console.browser("ri")
    for path, params in (
        ("entries", {"limit": "²"}),
        ("entries", {"before": "①"}),
        ("coordination", {"day": "①"}),
    ):
        answer = ri.get(path, **params)
        assert 400 <= answer.status_code < 500, (path, params, answer.status_code, answer.text)
    before = len(console.kinds("Control"))
    for reason in ("\u200b", " \u00a0\u200b", "   "):
        answer = ri.post("control", {"action": "pause", "scope": "agent:refunds-agent", "reason": reason})
        assert answer.status_code == 422, answer.text
        assert answer.json()["reason_code"] == "reason_required"
    assert len(console.kinds("Control")) == before


def test_set_password_refuses_bytes_that_are_not_text_in_one_line(own_console: Console) -> None:
    import subprocess

    from served import CLI

    done = subprocess.run(
        [*CLI, "users", "set-password", "answerable.toml", own_console.who["viewer"]],
        input=b"\xff\xfe-not-text-at-all-really\n",
        capture_output=True,
        cwd=own_console.folder,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == ["answerable: error: the password is not UTF-8 text"]
    assert PASSWORDS["viewer"]  # the old one still logs in
    assert own_console.browser().login(own_console.who["viewer"], PASSWORDS["viewer"]).status_code == 200


def test_a_guesser_at_one_address_does_not_lock_the_ri_out(own_console: Console) -> None:
    """Five wrong passwords for the RI from 127.0.0.2 block that address, not the RI: from
    127.0.0.1 the RI logs in. (One count per identity let anyone keep the RI out of the console
    with five guesses a minute.)"""
    console = own_console
    ri = console.who["ri"]

    def login(address: str, password: str) -> int:
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(timeout=60, transport=transport) as http:
            return http.post(
                f"{console.url}/console/api/login",
                json={"identity": ri, "password": password},
                headers={"Origin": console.url},
            ).status_code

    assert [login("127.0.0.2", f"wrong-{n}") for n in range(5)] == [401] * 5
    assert login("127.0.0.2", PASSWORDS["ri"]) == 429  # that address waits, right password or not
    assert login("127.0.0.1", PASSWORDS["ri"]) == 200


def test_the_log_in_limit_counts_addresses_and_identities_apart() -> None:
    """Five failures stop an address (an IPv6 /64 is one), fifty from many addresses stop an
    identity, and both are heard again once the window has passed."""
    now = [0.0]
    limit = LoginLimit(clock=lambda: now[0])
    for _ in range(5):
        assert limit.blocked("ri", "192.0.2.1") is None
        limit.failed("ri", "192.0.2.1")
    assert limit.blocked("ri", "192.0.2.1") == 60.0
    assert limit.blocked("someone", "192.0.2.1") == 60.0  # the address, for every identity
    assert limit.blocked("ri", "192.0.2.2") is None  # the identity, from elsewhere
    for n in range(5):
        limit.failed("ri", f"2001:db8::{n + 1}")  # one host's /64
    assert limit.blocked("ri", "2001:db8::ffff") is not None
    assert limit.blocked("ri", "2001:db8:0:1::1") is None
    assert limit.blocked("ri", "::ffff:192.0.2.1") is not None  # an IPv4 address mapped into IPv6
    for n in range(40):
        limit.failed("ri", f"198.51.100.{n}")
    assert limit.blocked("ri", "203.0.113.9") is not None  # fifty from many addresses: the identity waits
    assert limit.blocked("someone", "203.0.113.9") is None
    now[0] = 61.0
    assert limit.blocked("ri", "192.0.2.1") is None


def test_a_signature_header_sent_twice_is_refused_and_no_refusal_names_who_did_not_sign(
    own_console: Console,
) -> None:
    """Two Signature-Input headers were read two ways: the check took the first (the agent's own,
    genuine), the record of the refusal the last (naming the RI), so the ledger held a Refusal
    verified in the name of someone who signed nothing (found by an audit). A signature header
    sent twice is refused before anything is read, and a refusal names only the signer."""
    console = own_console
    agent = KeyPair.load(console.folder / "agent.key")
    ri = console.who["ri"]
    url = f"{console.url}/v1/intents"
    body = b'{"operation": "no-such-operation", "arguments": {}}'
    signed = sign_request(agent, "POST", url, body, created=int(time.time()))
    forged = signed["Signature-Input"].replace(f'keyid="{agent.identity}"', f'keyid="{ri}"')
    base = [("Content-Type", "application/json"), ("Content-Digest", signed["Content-Digest"])]
    for doubled in (
        [
            ("Signature", signed["Signature"]),
            ("Signature-Input", signed["Signature-Input"]),
            ("Signature-Input", forged),
        ],
        [("Signature", signed["Signature"]), ("Signature", signed["Signature"]), ("Signature-Input", forged)],
    ):
        answer = httpx.post(url, content=body, headers=[*base, *doubled], timeout=30)
        assert answer.status_code == 401, answer.text
        assert answer.json()["reason_code"] == "bad_signature_input"
    # The agent's own request, signed once, is refused for what it asks, in its own name.
    again = sign_request(agent, "POST", url, body, created=int(time.time()))
    answer = httpx.post(url, content=body, headers={**again, "Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 422, answer.text
    # The service records a refusal durably before it answers: no wait for it.
    refusals = [(r["claimed"], r["verified"]) for r in console.kinds("Refusal") if r.get("channel") == "http"]
    assert (agent.identity, True) in refusals, refusals
    assert not [r for r in refusals if r[0] == ri], refusals


def test_log_ins_refused_while_blocked_take_no_room() -> None:
    """A log-in refused at the limit is not counted, and took an entry of the limit's table all
    the same, one per new name tried, never dropped (found by an audit): 300,000 held 296 MiB."""
    now = [0.0]
    limit = LoginLimit(clock=lambda: now[0])
    for n in range(5):
        limit.failed(f"guess{n}", "203.0.113.9")
    held = len(limit._seen)
    for n in range(1000):
        assert limit.blocked(f"name{n}", "203.0.113.9") is not None
    assert len(limit._seen) == held
    now[0] = 61.0  # the window passed: reading the address again lets go of it
    assert limit.blocked("ri", "203.0.113.9") is None
    assert "ip:203.0.113.9" not in limit._seen


@pytest.mark.parametrize(
    "public_url",
    [
        "https://console.example.com",
        "https://console.example.com:443",
        "https://Console.Example.com/",
        "https://console.example.com:443/path",
    ],
)
def test_a_browsers_origin_matches_the_public_url_however_it_is_written(public_url: str) -> None:
    """Browsers send Origin lower-case and without a default port; the console compared it with
    the configured public URL as written, and refused every log-in and POST (found by an audit)."""
    from starlette.requests import Request

    from answerable.console.api import ConsoleRefused, _same_origin

    def request(origin: str) -> Request:
        headers = [(b"host", b"console.example.com"), (b"origin", origin.encode())]
        scope = {"type": "http", "method": "POST", "path": "/console/api/login", "scheme": "https"}
        return Request({**scope, "server": ("x", 443), "query_string": b"", "headers": headers})

    _same_origin(request("https://console.example.com"), public_url)
    for other in (
        "https://console.example.com:8443",
        "http://console.example.com",
        "https://evil.example",
        "null",
        "https://Console.example.com",  # forms no browser sends
        "https://x@console.example.com",
        "https://console.example.com:443",
        "https://console.example.com/",
    ):
        with pytest.raises(ConsoleRefused) as refused:
            _same_origin(request(other), public_url)
        assert refused.value.reason_code == "cross_origin"
