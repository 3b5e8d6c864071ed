"""What people do to a running service: rotate and revoke keys, pause and resume over HTTP,
and what the service does by itself: monitors that pause a class, refusals that are recorded.

Each test runs ``answerable serve`` as a real process; agents, reviewers and the RI act from
other processes (the CLI) or through the client, never through the service's objects.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from served import Running, agent, cli, effects, self_signed, start, system

from answerable import KeyPair
from answerable.client import Client, ServiceRefused
from answerable.httpsig import sign_request
from answerable.scaffold import init

pytestmark = pytest.mark.slow
__all__ = ["system"]  # the fixture, used by name


def kinds(folder: Path, kind: str) -> list[dict[str, object]]:
    conn = sqlite3.connect(folder / "ledger.db")
    try:
        return [json.loads(d) for (d,) in conn.execute("SELECT data FROM entries WHERE kind = ?", (kind,))]
    finally:
        conn.close()


def amend(running: Running, key: str, out: str, *changes: str) -> subprocess.CompletedProcess[str]:
    """``answerable charter amend charter.json --key KEY --out OUT CHANGES...`` in the system's folder."""
    return cli(running, "charter", "amend", "charter.json", "--key", key, "--out", out, *changes)


def heard(running: Running, start_of_line: str) -> str:
    """Read the service's stderr until it says a line starting so (it says nothing else here)."""
    assert running.proc.stderr is not None
    for line in running.proc.stderr:
        if line.startswith(start_of_line):
            return line
    raise AssertionError(f"serve exited ({running.proc.poll()}) without saying {start_of_line!r}")


def test_a_new_charter_version_rotates_and_revokes_keys_and_the_running_service_follows(
    system: Running,
) -> None:
    folder = system.folder
    [large] = agent(system, {"arguments": {"order": "O-1", "amount_cents": 50000}, "key": "refund-O-1"})
    old_agent = KeyPair.load(folder / "agent.key")
    old_reviewer = KeyPair.load(folder / "reviewer.key")
    new_agent = KeyPair.generate(old_agent.identity)
    new_agent.save(folder / "agent-2.key")
    newcomer = KeyPair.generate("second-reviewer@shop.example")
    newcomer.save(folder / "reviewer-2.key")
    amended = amend(
        system, "ri.key", "charter.json", "--force",
        "--agent", f"{old_agent.identity}=agent-2.key",
        "--reviewer", f"{newcomer.identity}={newcomer.public_b64}",
        "--revoke", old_reviewer.identity, "--json",
    )  # fmt: skip
    assert amended.returncode == 0, amended.stderr
    assert json.loads(amended.stdout)["version"] == 2
    assert "charter v2" in heard(system, "answerable serve: charter v2")

    with Client(system.url, old_agent) as stale, pytest.raises(ServiceRefused) as refused:
        stale.submit("refund", {"order": "O-2", "amount_cents": 100})
    assert (refused.value.status, refused.value.reason_code) == (401, "bad_signature")
    with Client(system.url, new_agent) as rotated:
        assert rotated.submit("refund", {"order": "O-3", "amount_cents": 100})["status"] == "succeeded"

    revoked = cli(
        system, "approve", "ledger.db", large["review_id"], "--by", old_reviewer.identity,
        "--reason", "looks fine", "--key", "reviewer.key",
    )  # fmt: skip
    assert revoked.returncode == 1, revoked.stderr
    assert "not_a_reviewer" in revoked.stderr, revoked.stderr
    with Client(system.url, newcomer) as second:
        second.answer(str(large["review_id"]), "approve", "order checked")
        assert second.wait(str(large["intent_id"]), seconds=20)["status"] == "succeeded"
    assert [e["order"] for e in effects(system)] == ["O-3", "O-1"]
    with Client(system.url, old_reviewer) as removed, pytest.raises(ServiceRefused) as gone:
        removed.halt("I am still here")  # a person no longer in the charter: refused, and recorded
    assert (gone.value.status, gone.value.reason_code) == (401, "unknown_agent")
    refusals = [(r["claimed"], r["verified"], r["reason_code"]) for r in kinds(folder, "Refusal")]
    assert refusals == [
        (old_agent.identity, False, "bad_signature"),
        (old_reviewer.identity, False, "unknown_agent"),
    ]
    approvals = kinds(folder, "Approval")
    assert [a["by"] for a in approvals] == [newcomer.identity]
    verified = cli(system, "verify", "ledger.db")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_an_amendment_the_ri_did_not_sign_is_refused_and_the_charter_in_force_stays(system: Running) -> None:
    folder = system.folder
    not_ri = amend(system, "reviewer.key", "charter.json", "--force", "--revoke", "refunds-agent")
    assert (not_ri.returncode, "[not_the_ri]" in not_ri.stderr) == (1, True), not_ri.stderr
    KeyPair.generate(KeyPair.load(folder / "ri.key").identity).save(folder / "fake-ri.key")
    fake = amend(system, "fake-ri.key", "c3.json", "--revoke", "refunds-agent")
    assert (fake.returncode, (folder / "c3.json").exists()) == (1, False), fake.stderr  # name, not key
    bad = amend(system, "ri.key", "c2.json", "--agent", "x=nokey")
    assert (bad.returncode, len(bad.stderr.strip().splitlines())) == (2, 1), bad.stderr
    # Found by an audit: asking to revoke the RI was exit 1 (a refusal), not 2 (bad input).
    touched = amend(system, "ri.key", "c4.json", "--revoke", KeyPair.load(folder / "ri.key").identity)
    assert (touched.returncode, (folder / "c4.json").exists()) == (2, False), touched.stderr
    assert touched.stderr.count("\n") == 1, touched.stderr
    assert "is the RI: the RI's key changes by a handover" in touched.stderr, touched.stderr
    # A charter written over the file that does not chain (signed afresh, superseding nothing).
    from answerable.charter import new_charter

    rogue = new_charter("shop", KeyPair.generate("mallory@shop.example"), agents=["refunds-agent"])
    (folder / "charter.json").write_text(rogue.model_dump_json())
    assert "not put in force" in heard(system, "answerable serve: charter.json not put in force")
    [done] = agent(system, {"arguments": {"order": "O-1", "amount_cents": 100}})
    assert done["status"] == "succeeded"  # the agent's key of the charter in force still works
    assert len(kinds(folder, "SystemCharter")) == 1


def test_a_person_pauses_and_resumes_over_http_signed_as_the_cli_signs(system: Running) -> None:
    folder = system.folder
    ri = Client(system.url, KeyPair.load(folder / "ri.key"))
    reviewer = Client(system.url, KeyPair.load(folder / "reviewer.key"))
    try:
        paused = ri.pause("chargeback wave", scope="operation:refund")
        assert paused["scope"] == "operation:refund"
        [stopped] = agent(system, {"arguments": {"order": "O-1", "amount_cents": 100}})
        assert stopped["status"] == "denied"
        with pytest.raises(ServiceRefused) as not_allowed:  # a reviewer is no operator
            reviewer.resume("I want refunds back", scope="operation:refund")
        assert not_allowed.value.status == 403
        resumed = ri.resume("wave over", scope="operation:refund")
        assert (resumed["action"], resumed["by"]) == ("resume", ri.key.identity)
        [again] = agent(system, {"arguments": {"order": "O-2", "amount_cents": 100}})
        assert again["status"] == "succeeded"
        with pytest.raises(ServiceRefused) as nothing:  # lifts nothing: not answered as if it had
            ri.resume("once more", scope="operation:refund")
        assert (nothing.value.status, nothing.value.reason_code) == (409, "not_stopped")
    finally:
        ri.close()
        reviewer.close()
    [resume] = [c for c in kinds(folder, "Control") if c["action"] == "resume"]
    again = json.dumps(resume).encode()  # the same signed resume, in a fresh request: its id is taken
    url = f"{system.url}/v1/control/resume"
    ri_key = KeyPair.load(folder / "ri.key")
    twice = httpx.post(
        url, content=again, headers=sign_request(ri_key, "POST", url, again, created=int(time.time()))
    )
    assert twice.status_code == 422, twice.text
    assert str(folder) not in twice.text  # the store's file paths are not the caller's to know
    assert "answerable.local/shop" in twice.text
    assert resume["signature"]
    assert resume["causes"] == [paused["id"]]
    assert [e["order"] for e in effects(system)] == ["O-2"]
    assert cli(system, "verify", "ledger.db").returncode == 0
    # A resume signed elsewhere whose reason says nothing (the clients refuse one; the service took it).
    from answerable.clock import IdSource, SystemClock
    from answerable.control import scope_from_text, unsigned_control
    from answerable.signing import sign

    with Client(system.url, ri_key) as client:
        stop = client.pause("second wave", scope="operation:refund")
    made = unsigned_control(
        "resume",
        scope_from_text("operation:refund"),
        ri_key.identity,
        "placeholder",
        causes=[stop["id"]],
        control_id=IdSource().new(),
        at_ns=SystemClock().now_ns(),
    )
    blank = sign(made.model_copy(update={"reason": " \u200b "}), ri_key).model_dump_json().encode()
    refused = httpx.post(
        url, content=blank, headers=sign_request(ri_key, "POST", url, blank, created=int(time.time()))
    )
    assert refused.status_code == 422, refused.text
    assert made.id not in {c["id"] for c in kinds(folder, "Control")}


MONITORS = {
    "monitors": [
        {
            "name": "refund-burst",
            "invariant": "at most two refunds an hour",
            "shape": "count",
            "source": {"kind": "Execution"},
            "where": {"operation": "refund", "status": "succeeded"},
            "max": 2,
            "window_seconds": 3600,
            "respond": {"pause": "operation:refund"},
        }
    ]
}


def test_a_monitor_pauses_its_class_at_the_breach_and_a_restart_does_not_alert_twice(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    init(folder)
    (folder / "monitors.json").write_text(json.dumps(MONITORS))
    running = start(folder)
    try:
        done = agent(running, *({"arguments": {"order": f"O-{i}", "amount_cents": 100}} for i in range(4)))
        assert [d["status"] for d in done] == ["succeeded"] * 3 + ["denied"]
        [alert] = kinds(folder, "Alert")
        assert (alert["monitor"], alert["paused"], alert["observed"]) == (
            "refund-burst",
            "operation:refund",
            {"count": 3, "max": 2},
        )
        assert running.stop() == 0
        running = start(folder)
        [after] = agent(running, {"arguments": {"order": "O-9", "amount_cents": 100}})
        assert after["status"] == "denied"  # still paused: a person must resume
        assert len(kinds(folder, "Alert")) == 1
    finally:
        if running.proc.poll() is None:
            running.stop(signal.SIGKILL)
    assert len(effects(running)) == 3


def test_refusals_in_a_chartered_name_are_recorded_once_per_interval_per_kind_and_strangers_never(
    system: Running,
) -> None:
    url = f"{system.url}/v1/intents"
    body = json.dumps({"operation": "refund", "arguments": {"order": "O-1", "amount_cents": 100}}).encode()
    impostor = KeyPair.generate("refunds-agent")
    stranger = KeyPair.generate("nobody")
    for key in (impostor,) * 5 + (stranger,) * 5:
        answer = httpx.post(
            url, content=body, headers=sign_request(key, "POST", url, body, created=int(time.time()))
        )
        assert answer.status_code == 401
    real = KeyPair.load(system.folder / "agent.key")
    garbage = b'{"operation": "refund"'
    answer = httpx.post(
        url, content=garbage, headers=sign_request(real, "POST", url, garbage, created=int(time.time()))
    )
    assert (answer.status_code, answer.json()["reason_code"]) == (422, "bad_body")
    refusals = kinds(system.folder, "Refusal")
    assert [(r["claimed"], r["verified"], r["reason_code"], r["suppressed"]) for r in refusals] == [
        ("refunds-agent", False, "bad_signature", 0),
        ("refunds-agent", True, "bad_body", 0),
    ]  # five forgeries, one record (the forger cannot hide the agent's own); the stranger's, none
    assert refusals[1]["target"] == "POST /v1/intents"
    assert system.stop() == 0
    held_back = kinds(system.folder, "Refusal")[2:]
    assert [(r["verified"], r["reason_code"], r["suppressed"]) for r in held_back] == [
        (False, "bad_signature", 3)
    ]
    assert cli(system, "verify", "ledger.db").returncode == 0


def test_the_service_speaks_tls_and_refuses_to_listen_beyond_loopback_without_it(tmp_path: Path) -> None:
    import ssl
    import sys

    folder = tmp_path / "shop"
    init(folder)
    config = (folder / "answerable.toml").read_text()
    wide = subprocess.run(
        [
            sys.executable,
            "-m",
            "answerable.cli",
            "serve",
            str(folder / "answerable.toml"),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (wide.returncode, len(wide.stderr.strip().splitlines())) == (2, 1), wide.stderr
    assert "beyond loopback needs" in wide.stderr
    assert not (folder / "ledger.db").exists()
    cert, _ = self_signed(folder)
    (folder / "answerable.toml").write_text(
        config.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\ntls_cert = "tls.crt"\ntls_key = "tls.key"')
    )
    running = start(folder, scheme="https")
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        with Client(running.url, KeyPair.load(folder / "agent.key"), verify=trusted) as over_tls:
            assert over_tls.submit("refund", {"order": "O-1", "amount_cents": 100})["status"] == "succeeded"
        with (
            Client(running.url, KeyPair.load(folder / "agent.key")) as untrusting,
            pytest.raises(ServiceRefused) as unknown_ca,
        ):
            untrusting.submit("refund", {"order": "O-2", "amount_cents": 100})
        assert unknown_ca.value.reason_code == "unreachable"  # the system's CAs do not know this cert
        plain = running.url.replace("https://", "http://")
        with Client(plain, KeyPair.load(folder / "agent.key")) as cleartext, pytest.raises(ServiceRefused):
            cleartext.submit("refund", {"order": "O-3", "amount_cents": 100})
        assert running.stop() == 0
    finally:
        if running.proc.poll() is None:
            running.stop(signal.SIGKILL)
    assert [e["order"] for e in effects(running)] == ["O-1"]


def test_no_private_key_reaches_the_ledger_the_published_log_or_the_logs(tmp_path: Path) -> None:
    """Keys, in every encoding a leak would take (base64, hex, raw), are nowhere the service
    writes or says: its ledger (and WAL), its published tiles (entries public here), its stderr."""
    import base64

    folder = tmp_path / "shop"
    init(folder)
    config = (folder / "answerable.toml").read_text()
    (folder / "answerable.toml").write_text(
        config.replace("[checkpoints]", "[checkpoints]\npublic_entries = true")
    )
    running = start(folder)
    agent(
        running,
        {"arguments": {"order": "O-1", "amount_cents": 100}},
        {"arguments": {"order": "O-2", "amount_cents": 50000}},
    )
    with Client(running.url, KeyPair.generate("refunds-agent")) as forger, pytest.raises(ServiceRefused):
        forger.submit("refund", {"order": "O-3", "amount_cents": 1})
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.stderr is not None
    said = running.proc.stderr.read()
    running.proc.stderr.close()
    assert running.proc.wait(timeout=60) == 0
    secrets = []
    for key_file in folder.glob("*.key"):  # ri, reviewer, agent, and the ledger's signing key
        raw = base64.b64decode(key_file.read_text().split()[-1])
        secrets += [base64.b64encode(raw), raw.hex().encode(), raw]
    assert len(secrets) >= 12
    written = [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".key"]
    assert any("tile/entries" in str(p) for p in written)  # entries were published: they are checked
    for path in written:
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, path
    for secret in secrets:
        assert secret.decode("latin-1") not in said
