"""``answerable serve`` as a real process, called by agents in other processes over HTTP.

The service, the agents and the reviewer are separate OS processes; the only thing they share
is the system's folder (the ledger in it) and HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from served import (
    CLI,
    STREAMING_AGENT,
    Running,
    Webhook,
    agent,
    cli,
    effects,
    entries_of,
    free_port,
    start,
    system,
)
from support import witness_process

from answerable import KeyPair, SQLiteLedger
from answerable.client import AsyncClient, Client, ServiceRefused
from answerable.clock import IdSource, SystemClock, rfc3339
from answerable.httpsig import sign_request
from answerable.records import Message
from answerable.scaffold import init
from answerable.service import MAX_BODY

pytestmark = pytest.mark.slow
__all__ = ["system"]  # the fixture, used by name


def leaves_of(folder: Path) -> list[str]:
    """Each entry's exact bytes, hex, in index order."""
    conn = sqlite3.connect(folder / "ledger.db")
    try:
        return [bytes(d).hex() for (d,) in conn.execute("SELECT data FROM entries ORDER BY idx")]
    finally:
        conn.close()


def executions(folder: Path) -> list[dict[str, object]]:
    conn = sqlite3.connect(folder / "ledger.db")
    try:
        return [json.loads(d) for (d,) in conn.execute("SELECT data FROM entries WHERE kind = 'Execution'")]
    finally:
        conn.close()


def test_an_agent_submits_a_reviewer_approves_from_the_cli_and_it_runs_with_no_host_code(
    system: Running,
) -> None:
    small, large = agent(
        system,
        {"arguments": {"order": "O-1", "amount_cents": 2500}, "key": "refund-O-1"},
        {"arguments": {"order": "O-2", "amount_cents": 50000}, "key": "refund-O-2"},
    )
    assert (small["status"], large["status"]) == ("succeeded", "review")
    reviewer = KeyPair.load(system.folder / "reviewer.key")
    approved = cli(
        system,
        "approve",
        "ledger.db",
        large["review_id"],
        "--by",
        reviewer.identity,
        "--reason",
        "checked",
        "--key",
        "reviewer.key",
    )
    assert approved.returncode == 0, approved.stderr
    [waited] = agent(system, {"wait": large["intent_id"]})
    assert waited["status"] == "succeeded"
    assert [e["order"] for e in effects(system)] == ["O-1", "O-2"]
    again, conflict = agent(
        system,
        {"arguments": {"order": "O-2", "amount_cents": 50000}, "key": "refund-O-2"},
        {"arguments": {"order": "O-2", "amount_cents": 1}, "key": "refund-O-2"},
    )
    assert (again["intent_id"], again["existing"]) == (large["intent_id"], True)
    assert conflict == {"refused": 409, "reason_code": "idempotency_conflict"}
    assert len(effects(system)) == 2


def test_a_value_read_as_another_type_is_recorded_as_read_and_an_empty_key_is_refused(
    system: Running,
) -> None:
    """``true`` for an integer field runs as 1 and the Intent records 1; the same request sent
    again finds that intent. An empty idempotency key names no slot a restart could find again
    (the same request would run twice), so it is refused, and nothing is recorded."""
    first, again = agent(
        system,
        {"arguments": {"order": "O-7", "amount_cents": True}, "key": "refund-O-7"},
        {"arguments": {"order": "O-7", "amount_cents": True}, "key": "refund-O-7"},
    )
    assert first["status"] == "succeeded"
    assert (again["intent_id"], again["existing"]) == (first["intent_id"], True)
    [intent] = [
        json.loads(d)
        for (d,) in sqlite3.connect(system.folder / "ledger.db").execute(
            "SELECT data FROM entries WHERE kind = 'Intent'"
        )
    ]
    assert intent["arguments"]["amount_cents"] == 1
    assert type(intent["arguments"]["amount_cents"]) is int
    assert [e["amount_cents"] for e in effects(system)] == [1]
    [empty] = agent(system, {"arguments": {"order": "O-8", "amount_cents": 100}, "key": ""})
    assert empty["refused"] == 422
    kinds = [
        k
        for (k,) in sqlite3.connect(system.folder / "ledger.db").execute(
            "SELECT kind FROM entries ORDER BY idx"
        )
    ]
    assert kinds.count("Intent") == 1
    assert kinds[-1] == "Refusal"  # a signed request refused is on record as a Refusal (README)
    assert len(effects(system)) == 1


def test_a_message_dated_ahead_of_the_service_clock_is_refused(system: Running) -> None:
    """A writer dates its own records; one from 2999 would stand before what it caused in every
    timeline drawn from the ledger (and once made the report draw a bar per day for centuries)."""
    clock = SystemClock()
    ids = IdSource(clock)

    def message(at: str) -> Message:
        return Message(
            id=ids.new(),
            at=at,
            causes=(),
            sender="refunds-agent",
            topic="t",
            type="note",
            payload={"a": 1},
            trace_id="t",
        )

    async def go() -> tuple[dict[str, object], ServiceRefused]:
        async with AsyncClient(system.url, KeyPair.load(system.folder / "agent.key")) as sender:
            now = await sender.send(message(rfc3339(clock.now_ns())))
            with pytest.raises(ServiceRefused) as caught:
                await sender.send(message("2999-01-01T00:00:00Z"))
            return now, caught.value

    now, refused = asyncio.run(go())
    assert now["duplicate"] is False
    assert (refused.status, refused.reason_code) == (422, "from_the_future")
    kinds = [k for (k,) in sqlite3.connect(system.folder / "ledger.db").execute("SELECT kind FROM entries")]
    assert kinds.count("Message") == 1


def test_a_halt_from_the_cli_stops_the_next_call(system: Running) -> None:
    ri = KeyPair.load(system.folder / "ri.key")
    assert cli(system, "halt", "ledger.db", "--by", ri.identity, "--reason", "storm").returncode == 0
    [after] = agent(system, {"arguments": {"order": "O-9", "amount_cents": 100}})
    assert after["status"] == "denied"
    assert "halt" in str(after["decision"])
    assert effects(system) == []


def post(running: Running, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{running.url}/v1/intents", content=body, headers=headers, timeout=30)


def test_unsigned_wrongly_signed_and_replayed_requests_are_refused_even_after_a_restart(
    system: Running,
) -> None:
    body = json.dumps({"operation": "refund", "arguments": {"order": "O-5", "amount_cents": 100}}).encode()
    url = f"{system.url}/v1/intents"
    unsigned = post(system, body, {})
    assert (unsigned.status_code, unsigned.json()["reason_code"]) == (401, "unsigned")
    impostor = KeyPair.generate("refunds-agent")  # the agent's name, another key
    forged = post(system, body, sign_request(impostor, "POST", url, body, created=int(time.time())))
    assert (forged.status_code, forged.json()["reason_code"]) == (401, "bad_signature")
    agent_key = KeyPair.load(system.folder / "agent.key")
    stale = post(system, body, sign_request(agent_key, "POST", url, body, created=int(time.time()) - 3600))
    assert (stale.status_code, stale.json()["reason_code"]) == (401, "clock_skew")
    headers = sign_request(agent_key, "POST", url, body, created=int(time.time()))
    assert post(system, body, headers).status_code == 200
    replayed = post(system, body, headers)
    assert (replayed.status_code, replayed.json()["reason_code"]) == (401, "replayed")
    tampered = post(system, body.replace(b"100", b"999"), headers)
    assert tampered.json()["reason_code"] == "bad_digest"
    port = int(system.url.rsplit(":", 1)[1])
    assert system.stop() == 0
    restarted = start(system.folder, port)
    try:
        again = post(restarted, body, headers)
        assert (again.status_code, again.json()["reason_code"]) == (401, "replayed")
    finally:
        restarted.stop()
    assert len(effects(system)) == 1


def test_sigterm_signs_a_final_checkpoint_and_releases_the_lease(system: Running) -> None:
    agent(system, *({"arguments": {"order": f"O-{n}", "amount_cents": 100}} for n in range(5)))
    assert system.stop() == 0
    conn = sqlite3.connect(system.folder / "ledger.db")
    try:
        size = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        latest = conn.execute("SELECT MAX(size) FROM checkpoints").fetchone()[0]
        released = conn.execute("SELECT released FROM lease").fetchone()[0]
    finally:
        conn.close()
    assert latest == size
    assert released == 1
    published = (system.folder / "log" / "checkpoint").read_text()
    assert published.split("\n")[1] == str(size)
    assert cli(system, "verify", "ledger.db").returncode == 0


def test_kill_9_under_load_and_a_restart_lose_nothing_and_run_nothing_twice(system: Running) -> None:
    asks = [
        {"arguments": {"order": f"O-{n}", "amount_cents": 100 + n}, "key": f"refund-{n}"} for n in range(40)
    ]
    loader = subprocess.Popen(
        [sys.executable, "-c", STREAMING_AGENT, system.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=system.folder,
    )
    assert loader.stdin is not None
    assert loader.stdout is not None
    for ask in asks:
        loader.stdin.write(json.dumps(ask) + "\n")
    loader.stdin.close()
    answered = [loader.stdout.readline() for _ in range(10)]  # ten answered, the rest in flight
    assert all(json.loads(line)["status"] == "succeeded" for line in answered)
    port = int(system.url.rsplit(":", 1)[1])
    system.stop(signal.SIGKILL)
    loader.wait(timeout=120)  # it fails once the service is gone: what it had sent is in the ledger or not
    for stream in (loader.stdout, loader.stderr):
        if stream is not None:
            stream.close()
    restarted = start(system.folder, port)
    try:
        results = agent(restarted, *asks)  # every ask again, same keys: nothing runs twice
    finally:
        assert restarted.stop() == 0
    keys = [e["key"] for e in effects(system)]
    assert len(keys) == len(set(keys))
    by_intent: dict[object, int] = {}
    for execution in executions(system.folder):
        by_intent[execution["intent_id"]] = by_intent.get(execution["intent_id"], 0) + 1
    assert all(n == 1 for n in by_intent.values())
    for ask, result in zip(asks, results, strict=True):
        assert result.get("status") in ("succeeded", "ambiguous"), (ask, result)
    assert cli(system, "verify", "ledger.db").returncode == 0


def test_configuration_errors_are_one_line_and_start_nothing(tmp_path: Path, system: Running) -> None:
    missing = subprocess.run(
        [*CLI, "serve", str(tmp_path / "nope.toml")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1
    port = int(system.url.rsplit(":", 1)[1])
    busy = subprocess.run(
        [*CLI, "serve", str(system.folder / "answerable.toml"), "--port", str(port)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert busy.returncode == 2
    assert "cannot listen" in busy.stderr
    held = subprocess.run(
        [*CLI, "serve", str(system.folder / "answerable.toml"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert held.returncode == 2
    assert "lease" in held.stderr.lower() or "held" in held.stderr.lower()
    broken = tmp_path / "broken"
    init(broken)
    config = (
        (broken / "answerable.toml")
        .read_text()
        .replace('target = "operations:refund"', 'target = "nowhere:refund"')
    )
    (broken / "answerable.toml").write_text(config)
    bad_target = subprocess.run(
        [*CLI, "serve", str(broken / "answerable.toml"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad_target.returncode == 2
    assert "cannot import nowhere" in bad_target.stderr
    assert not (broken / "ledger.db").exists()
    traced = tmp_path / "traced"
    init(traced)
    with (traced / "answerable.toml").open("a") as toml:
        toml.write('\n[otel]\nendpoint = "http://127.0.0.1:4318/v1/traces"\n')
    no_credential = subprocess.run(
        [*CLI, "serve", str(traced / "answerable.toml"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer;tok-6612"},
        timeout=60,
    )
    assert no_credential.returncode == 2
    assert "OTEL_EXPORTER_OTLP_HEADERS: element 1 of 1" in no_credential.stderr
    assert "tok-6612" not in no_credential.stderr
    assert not (traced / "ledger.db").exists()
    charter = json.loads((traced / "charter.json").read_text())
    charter["agents"] = 5
    (traced / "charter.json").write_text(json.dumps(charter))
    bad_charter = subprocess.run(
        [*CLI, "serve", str(traced / "answerable.toml"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_charter.returncode == 2
    assert "charter.json is not a signed SystemCharter: agents: Input should be a valid array" in (
        bad_charter.stderr
    )
    assert os.stat(broken / "ri.key").st_mode & 0o777 == 0o600


def test_the_service_notifies_a_webhook_has_its_checkpoints_witnessed_and_serves_log_and_why(
    tmp_path: Path,
) -> None:
    from answerable.ledger.tiles import entry_bundle, tile_path
    from answerable.ledger.witness import CosignatureVerifier

    hook = Webhook()
    folder = tmp_path / "shop"
    init(folder)
    log_key = None
    KeyPair.generate("witness.example/w9").save(tmp_path / "w.key")
    # The log's key is made when the ledger is; serve once to learn it, as an operator would.
    first = start(folder, free_port())
    assert first.stop() == 0
    log_key = cli(first, "ledger", "key", "ledger.db").stdout.strip()
    stack = contextlib.ExitStack()
    url, vkey = stack.enter_context(witness_process(tmp_path / "w.key", tmp_path / "wstate", log_key))
    config = (folder / "answerable.toml").read_text()
    config = config.replace(
        "every_seconds = 10",
        f'every_seconds = 0.5\nwitnesses = [{{ url = "{url}", key = "{vkey}" }}]',
    )
    config += f'\n[notify]\nwebhook = "http://127.0.0.1:{hook.port}/events"\n'
    (folder / "answerable.toml").write_text(config)
    running = start(folder, free_port())
    try:
        [large] = agent(running, {"arguments": {"order": "O-7", "amount_cents": 50000}})
        ri = KeyPair.load(folder / "ri.key")
        assert cli(running, "halt", "ledger.db", "--by", ri.identity, "--reason", "storm").returncode == 0
        assert hook.wait_for(lambda events: {"Review", "Control"} <= {e["kind"] for e in events}), hook.events
        halt = next(e for e in hook.events if e["kind"] == "Control")
        assert (halt["action"], halt["by"], halt["reason"]) == ("halt", ri.identity, "storm")
        served = httpx.get(f"{running.url}/log/checkpoint").text
        size = int(served.split("\n")[1])  # its partial tiles stay published, whatever comes after
        tile = httpx.get(f"{running.url}/log/{tile_path(0, 0, min(size, 256))}")
        assert (tile.status_code, len(tile.content)) == (200, 32 * min(size, 256))
        bundle_url = f"{running.url}/log/{tile_path('entries', 0, min(size, 256))}"
        assert httpx.get(bundle_url).status_code == 401  # entry bundles carry arguments: readers sign
        assert not (folder / "log" / "tile" / "entries").exists()  # and they are not in the folder
        signed = sign_request(ri, "GET", bundle_url, b"", created=int(time.time()))
        bundle = httpx.get(bundle_url, headers=signed).content
        assert bundle == entry_bundle([bytes.fromhex(h) for h in leaves_of(folder)[: min(size, 256)]])
        beyond = f"{running.url}/log/{tile_path('entries', 999)}"  # past any checkpoint signed here
        signed = sign_request(ri, "GET", beyond, b"", created=int(time.time()))
        assert httpx.get(beyond, headers=signed).status_code == 404
        assert httpx.get(f"{running.url}/v1/why/{large['intent_id']}").status_code == 401  # reads are signed
        with Client(running.url, ri) as as_ri:
            graph = as_ri.why(str(large["intent_id"]))
            with pytest.raises(ServiceRefused) as missing:
                as_ri.why("no-such-entry")
            assert missing.value.status == 404
        assert graph["accountable"]["ri"] == ri.identity
        assert running.stop() == 0  # its last checkpoint is signed, published and witnessed
        cosigned = (folder / "log" / "checkpoint").read_text()
        assert cosigned.split("\n")[1] == str(len(entries_of(folder)))
        assert CosignatureVerifier.from_key(vkey).timestamp(cosigned) is not None
    finally:
        if running.proc.poll() is None:
            running.stop(signal.SIGKILL)
        stack.close()
        hook.close()
    assert cli(running, "verify", "ledger.db", "--witness", tmp_path / "wstate").returncode == 0


def test_a_webhook_that_refuses_an_event_is_said_once_without_its_secret_path(tmp_path: Path) -> None:
    """A webhook that refuses (a 4xx: asked again, it says the same) or never answers leaves its
    people untold: the service says so on stderr, once until an event goes through again, naming
    the webhook without its path (an incoming hook's path is its token). It counted a 404 as
    delivered, and dropped an event after six failed attempts without a word."""
    hook = Webhook(lambda n: 404 if n == 1 else 204)
    folder = tmp_path / "shop"
    init(folder)
    with (folder / "answerable.toml").open("a") as toml:
        toml.write(f'\n[notify]\nwebhook = "http://127.0.0.1:{hook.port}/hooks/T0/sec-4419"\n')
    running = start(folder, free_port())
    try:
        ri = KeyPair.load(folder / "ri.key")
        for scope in ("agent:a", "agent:b", "agent:c"):
            stop = cli(running, "pause", "ledger.db", "--by", ri.identity, "--reason", "x", "--scope", scope)
            assert stop.returncode == 0, stop.stderr
        assert hook.wait_for(lambda events: len(events) == 3, timeout=60), hook.events
    finally:
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.stderr is not None
        said = running.proc.stderr.read()
        running.proc.stderr.close()
        running.proc.wait(timeout=60)
        hook.close()
    port, first = hook.port, hook.events[0]["id"]
    assert f"webhook http://127.0.0.1:{port}/(path hidden) did not take the Control event {first}" in said
    assert "(answered 404)" in said
    assert said.count("did not take") == 1
    assert f"webhook http://127.0.0.1:{port}/(path hidden) takes events again" in said
    assert "sec-4419" not in said


def test_events_written_while_no_service_ran_are_told_to_the_webhook_at_the_next_start(
    tmp_path: Path,
) -> None:
    """The webhook's position was in memory, so a halt by the CLI while the service was down
    (here: killed with SIGKILL) reached nobody; it is now kept in the ledger's notes, and the next
    service tells what came after it, once. An event posted and not answered when the service
    died is told again: at least once, each with its entry's id."""
    hook = Webhook(lambda n: None if n == 2 else 204)  # the second post is never answered
    folder = tmp_path / "shop"
    init(folder)
    with (folder / "answerable.toml").open("a") as toml:
        toml.write(f'\n[notify]\nwebhook = "http://127.0.0.1:{hook.port}/hooks/T0/sec"\n')
    ri = KeyPair.load(folder / "ri.key")
    by = ("--by", ri.identity, "--reason", "look")
    try:
        first = start(folder, free_port())
        for scope in ("agent:a", "agent:b"):
            pause = cli(first, "pause", "ledger.db", *by, "--scope", scope)
            assert pause.returncode == 0, pause.stderr
        # Events are posted one at a time, each noted as told before the next is posted: the
        # second post arriving means the first is noted, and the second never will be.
        assert hook.wait_for(lambda events: len(events) == 2), hook.events
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        while_down = cli(first, "halt", "ledger.db", "--by", ri.identity, "--reason", "storm", "--json")
        assert while_down.returncode == 0, while_down.stderr
        second = start(folder, free_port())
        try:
            # A pause after the halt: events are told in ledger order, so once it is told, any
            # second telling of what came before it would have been told too.
            after = cli(second, "pause", "ledger.db", *by, "--scope", "agent:c")
            assert after.returncode == 0, after.stderr
            assert hook.wait_for(lambda events: len(events) == 5), hook.events
        finally:
            assert second.stop() == 0
    finally:
        hook.close()
    told = [(e["action"], e["scope"]["kind"], e["scope"]["value"]) for e in hook.events]
    assert told == [
        ("pause", "agent", "a"),
        ("pause", "agent", "b"),  # posted, never answered: told again
        ("pause", "agent", "b"),
        ("halt", "system", None),
        ("pause", "agent", "c"),
    ], told
    ids = [e["id"] for e in hook.events]
    assert ids[1] == ids[2]
    assert len(set(ids)) == 4


def test_a_reviewer_answers_over_http_signed_as_the_cli_signs_and_the_intent_runs(system: Running) -> None:
    from answerable.errors import ApprovalRefused

    [large] = agent(system, {"arguments": {"order": "O-4", "amount_cents": 50000}, "key": "refund-O-4"})
    review_id = str(large["review_id"])
    as_agent = Client(system.url, KeyPair.load(system.folder / "agent.key"))
    with pytest.raises(ServiceRefused) as refused:
        as_agent.answer(review_id, "approve", "I approve myself")  # an agent is no reviewer
    assert (refused.value.status, refused.value.reason_code) == (401, "unknown_agent")
    reviewer = Client(system.url, KeyPair.load(system.folder / "reviewer.key"))
    with pytest.raises(ApprovalRefused) as blank:  # refused before anything is sent
        reviewer.answer(review_id, "approve", "   ")
    assert blank.value.reason_code == "missing_reason"
    answered = reviewer.answer(review_id, "approve", "order checked")
    assert answered["verdict"] == "approve"
    [waited] = agent(system, {"wait": large["intent_id"]})
    assert waited["status"] == "succeeded"
    assert [e["order"] for e in effects(system)] == ["O-4"]
    with pytest.raises(ServiceRefused) as twice:
        reviewer.answer(review_id, "approve", "again")
    assert twice.value.reason_code in ("already_claimed", "already_answered")
    assert twice.value.status == 409  # settled: a conflict, as the console answers (was 403)
    reviewer.close()
    as_agent.close()


def test_what_a_sceptical_reviewer_tried_is_refused_cleanly(system: Running, tmp_path: Path) -> None:
    """Found in review: a NaN wait, a huge body, the system folder over /log, a made-up cause, an
    id with percent-encoded characters."""
    agent_key = KeyPair.load(system.folder / "agent.key")
    for wait in ("nan", "inf", "-1", "61"):
        target = f"{system.url}/v1/intents/x?wait={wait}"
        headers = sign_request(agent_key, "GET", target, b"", created=int(time.time()))
        answer = httpx.get(target, headers=headers, timeout=10)
        assert (answer.status_code, answer.json()["reason_code"]) == (422, "bad_wait"), wait
    for encoded in ("a%20b", "%C3%97", "x%2Fy"):  # found by schemathesis: signed as sent, verified as sent
        target = f"{system.url}/v1/intents/{encoded}"
        headers = sign_request(agent_key, "GET", target, b"", created=int(time.time()))
        answer = httpx.get(httpx.URL(target), headers=headers, timeout=10)
        assert answer.status_code == 404, (encoded, answer.text)  # no such intent (or route): not 401
    huge = httpx.post(f"{system.url}/v1/intents", content=b"x" * (MAX_BODY + 1), timeout=30)
    assert (huge.status_code, huge.json()["reason_code"]) == (413, "body_too_large")
    for path in ("ri.key", "ledger.db", "ledger.db.key", "tile/../ri.key", "answerable.toml"):
        assert httpx.get(f"{system.url}/log/{path}", timeout=10).status_code == 404, path
    agent_key = KeyPair.load(system.folder / "agent.key")
    body = json.dumps(
        {"operation": "refund", "arguments": {"order": "O-1", "amount_cents": 1}, "causes": ["made-up"]}
    ).encode()
    url = f"{system.url}/v1/intents"
    made_up = post(system, body, sign_request(agent_key, "POST", url, body, created=int(time.time())))
    assert (made_up.status_code, made_up.json()["reason_code"]) == (422, "unknown_cause")
    shouted = url.replace("http://127.0.0.1", "HTTP://127.0.0.1")  # same URI, written otherwise
    fine = json.dumps({"operation": "refund", "arguments": {"order": "O-2", "amount_cents": 1}}).encode()
    assert (
        post(
            system, fine, sign_request(agent_key, "POST", shouted, fine, created=int(time.time()))
        ).status_code
        == 200
    )
    assert effects(system) == [{"order": "O-2", "amount_cents": 1, "key": effects(system)[0]["key"]}]
    toml = system.folder / "answerable.toml"
    mine = tmp_path / "other.toml"
    mine.write_text(toml.read_text().replace('publish_dir = "log"', 'publish_dir = "."'))
    shutil_copy_folder = subprocess.run(
        [*CLI, "serve", str(mine)], capture_output=True, text=True, check=False
    )
    assert shutil_copy_folder.returncode == 2


def test_what_a_second_sweep_of_the_api_found_is_refused_and_records_nothing(system: Running) -> None:
    """Found by a sweep of the API: a tile path too long for the filesystem was a 500 with the
    system's folder in the log; an answer citing no review was recorded and never counted; an
    answer valid until 9999, or until a day that does not exist, was taken (only the clients held
    it to a year); a reason of a zero-width space halted over the API (the console refused it)."""
    from answerable.review import unsigned_approval
    from answerable.signing import sign

    for tail in ("a" * 300, "a/" * 2100 + "x"):
        answer = httpx.get(f"{system.url}/log/tile/{tail}", timeout=10)
        assert (answer.status_code, answer.json()["reason_code"]) == (404, "not_published")
    [large] = agent(system, {"arguments": {"order": "O-9", "amount_cents": 50000}, "key": "refund-O-9"})
    review_id = str(large["review_id"])
    key = KeyPair.load(system.folder / "reviewer.key")
    reviewer = Client(system.url, key)
    ri = Client(system.url, KeyPair.load(system.folder / "ri.key"))
    try:
        review = reviewer._call("GET", f"/v1/reviews/{review_id}")
        made = unsigned_approval(
            review_id=review_id,
            intent_id=str(review["intent_id"]),
            binding=str(review["binding"]),
            by=key.identity,
            verdict="approve",
            reason="order checked",
            approval_id=IdSource().new(),
            at_ns=SystemClock().now_ns(),
            valid_for_seconds=3600,
        )
        before = entries_of(system.folder)
        for change, code in [
            ({"causes": ()}, "bad_causes"),
            ({"causes": (large["intent_id"],)}, "bad_causes"),
            ({"expires_at": "9999-12-31T23:59:59.000000Z"}, "bad_expiry"),
            ({"expires_at": "2099-02-30T00:00:00.000000Z"}, "bad_expiry"),
            ({"reason": "\u200b"}, "missing_reason"),
        ]:
            forged = sign(made.model_copy(update=change), key).model_dump(mode="json")
            with pytest.raises(ServiceRefused) as refused:
                reviewer._call("POST", f"/v1/reviews/{review_id}/answer", json.dumps(forged).encode())
            assert (refused.value.status, refused.value.reason_code) == (422, code), change
        for reason in ("\u200b", "\u0000", " \u202e\u2066 "):
            with pytest.raises(ServiceRefused) as refused:
                ri.pause(reason)
            assert refused.value.status == 422, reason
        for scope in ("agent:a b", "agent:\u200b", "channel:\n"):  # names nothing can have
            with pytest.raises(ServiceRefused) as refused:
                ri.pause("storm", scope=scope)
            assert refused.value.status == 422, scope
        kinds = sqlite3.connect(system.folder / "ledger.db").execute(
            "SELECT kind FROM entries WHERE idx >= ?", (len(before),)
        )
        assert {k for (k,) in kinds} <= {"Refusal"}  # no answer and no stop was recorded
        assert reviewer.answer(review_id, "approve", "order checked")["verdict"] == "approve"
    finally:
        reviewer.close()
        ri.close()


def test_the_witness_refuses_a_length_it_cannot_trust(tmp_path: Path) -> None:

    from answerable.ledger.note import Signer

    KeyPair.generate("witness.example/w3").save(tmp_path / "w.key")
    log = Signer.generate("log.example/x").verifier_key()
    with witness_process(tmp_path / "w.key", tmp_path / "s", log) as (url, _):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        for length in ("-1", "abc", "70000"):
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.sendall(
                    f"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()
                )
                assert conn.recv(100).startswith(b"HTTP/1.0 411"), length


def test_a_client_gone_before_its_body_arrived_leaves_no_traceback(system: Running) -> None:
    """A signed request whose sender closes the connection before the body it declared arrived:
    no effect, and no traceback in the service's log (nobody is there to read an answer)."""
    url = f"{system.url}/v1/intents"
    body = json.dumps({"operation": "refund", "arguments": {"order": "O-1", "amount_cents": 100}}).encode()
    headers = sign_request(
        KeyPair.load(system.folder / "agent.key"), "POST", url, body, created=int(time.time())
    )
    host, port = system.url.removeprefix("http://").split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "content-length")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"POST /v1/intents HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) + 10}\r\n{head}\r\n".encode()
            + body
        )
        sock.shutdown(socket.SHUT_WR)  # the sender goes, ten bytes short
        sock.settimeout(30)
        while sock.recv(4096):  # until the service has dealt with it and closed its side
            pass
    assert httpx.get(f"{system.url}/healthz", timeout=10).status_code == 200
    system.proc.send_signal(signal.SIGTERM)
    assert system.proc.wait(timeout=60) == 0
    assert system.proc.stderr is not None
    log = system.proc.stderr.read()
    system.proc.stderr.close()
    assert "Traceback" not in log, log
    assert "ClientDisconnect" not in log
    assert effects(system) == []


def test_every_refusal_has_one_shape_and_the_status_the_console_gives(system: Running) -> None:
    """Found by a sweep of the API: the framework's own refusals (no such path, a method a path
    does not take, ``?wait=abc``) came as ``{"detail": ...}``, not ``{"error", "reason_code"}``; an
    unknown review was 403 (the console says 404); a scope that does not parse was 400
    ``ConfigError`` (the console says 422 ``bad_scope``); and a body field no version of the API
    has (``idempotencyKey``, a typo) was dropped, so the refund ran with no idempotency key."""
    folder = system.folder
    ri = Client(system.url, KeyPair.load(folder / "ri.key"))
    refunds = Client(system.url, KeyPair.load(folder / "agent.key"))
    try:
        for method, path, status, code in [
            ("GET", "/v1/no-such-thing", 404, "not_found"),
            ("DELETE", "/v1/intents", 405, "method_not_allowed"),
        ]:
            answered = httpx.request(method, system.url + path, timeout=30)
            assert answered.status_code == status, answered.text
            assert sorted(answered.json()) == ["error", "reason_code"], answered.text
            assert answered.json()["reason_code"] == code
        assert "allow" in httpx.request("DELETE", system.url + "/v1/intents", timeout=30).headers

        def refusal(call: Any) -> tuple[int, str, str]:
            with pytest.raises(ServiceRefused) as refused:
                call()
            return refused.value.status, refused.value.reason_code, str(refused.value)

        assert refusal(lambda: ri._call("GET", "/v1/intents/x", wait="abc"))[:2] == (422, "bad_wait")
        assert refusal(lambda: ri._call("GET", "/v1/reviews/nope"))[:2] == (404, "unknown_review")
        assert refusal(lambda: ri.pause("storm", scope="galaxy:far"))[:2] == (422, "bad_scope")
        typo = ri.pause("storm", scope="agent:refunds-agnet")  # recorded, and the person is told
        assert "the charter names no agent 'refunds-agnet' (it names refunds-agent)" in typo["warning"]
        assert "warning" not in ri.pause("storm", scope="agent:refunds-agent")
        ri.resume("storm over", scope="agent:refunds-agent")
        before = entries_of(folder)
        typo = json.dumps(
            {"operation": "refund", "arguments": {"order": "O-1", "amount_cents": 100}, "idempotencyKey": "k"}
        ).encode()
        status, code, message = refusal(lambda: refunds._call("POST", "/v1/intents", typo))
        assert (status, code) == (422, "bad_body")
        assert "idempotencyKey" in message
        assert effects(system) == []
        kinds = sqlite3.connect(folder / "ledger.db").execute(
            "SELECT kind FROM entries WHERE idx >= ?", (len(before),)
        )
        assert {k for (k,) in kinds} <= {"Refusal"}  # the refused write is on record; no intent is
    finally:
        ri.close()
        refunds.close()


def test_serve_makes_no_ledger_for_a_config_it_refuses_and_says_the_port_it_got(tmp_path: Path) -> None:
    """A monitors file that does not parse was refused only after the ledger and its key were
    made; ``--port 0`` said "ready on 127.0.0.1:0", a port no client can reach."""
    folder = tmp_path / "shop"
    init(folder)
    good = (folder / "monitors.json").read_text()
    (folder / "monitors.json").write_text('{"monitors": 5}')
    refused = subprocess.run(
        [*CLI, "serve", "answerable.toml", "--port", "0"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "monitors.json" in refused.stderr
    # One line: the "serving" banner came before the config was loaded, and said it too.
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not (folder / "ledger.db").exists()
    assert not (folder / "ledger.db.key").exists()
    (folder / "monitors.json").write_text(good)
    proc = subprocess.Popen(
        [*CLI, "serve", "answerable.toml", "--port", "0"], cwd=folder, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        ready = next(line for line in proc.stderr if line.startswith("answerable ready on"))
        port = int(ready.rsplit(":", 1)[1])
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json() == {
            "lease": True,
            "store": True,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        if proc.stderr is not None:
            proc.stderr.close()


async def test_a_witnessed_checkpoint_does_not_replace_a_larger_one_published_meanwhile(
    tmp_path: Path,
) -> None:
    """The service publishes a checkpoint, has the witness cosign it, then puts the cosigned one
    in its place. Before, it did so outside the folder's lock, after the witness's round trip:
    a checkpoint another publisher (``answerable ledger publish``) wrote meanwhile, of a larger
    tree, was replaced by the smaller one, and the published log went back."""
    from dataclasses import replace

    from support import order_events

    from answerable.config import load_config
    from answerable.ledger.location import open_ledger
    from answerable.ledger.tiles import publish
    from answerable.service import Service

    folder = tmp_path / "shop"
    init(folder)
    config = load_config(folder / "answerable.toml")
    first = Service(config)
    await first.start()
    if first.ledger is None:
        raise AssertionError("the service did not open its ledger")
    log_key = first.ledger.verifier_key()
    await first.stop()
    KeyPair.generate("witness.example/w9").save(tmp_path / "w.key")
    with witness_process(tmp_path / "w.key", tmp_path / "wstate", log_key) as (url, vkey):
        service = Service(replace(config, witnesses=((url, vkey),)))
        await service.start()
        other = open_ledger(config.ledger, origin=config.origin)
        published = folder / "log" / "checkpoint"
        try:
            cosign = service._cosigned

            def meanwhile(note: str, url: str, key: str) -> str:
                cosigned = cosign(note, url, key)
                if cosigned == note:
                    raise AssertionError("the witness did not cosign")
                other.append_sync(order_events(3, IdSource(SystemClock())))
                publish(other, folder / "log")  # another publisher, while the witness answered
                return cosigned

            service._cosigned = meanwhile  # type: ignore[method-assign]
            other.append_sync(order_events(2, IdSource(SystemClock())))
            witnessed = other.size()
            await service.checkpoint()
            larger = other.size()
            assert witnessed < larger
            assert int(published.read_text().split("\n")[1]) == larger
        finally:
            other.close()
            await service.stop()
    assert int(published.read_text().split("\n")[1]) == larger  # the final one is all of it


async def test_events_the_webhook_queue_has_no_room_for_wait_in_the_ledger(
    tmp_path: Path,
) -> None:
    """The service queues webhook events as it reads them from the ledger. Before, an event that
    found the queue full was dropped (only counted), and the position told to the webhook moved
    past it with the rest. Now it waits in the ledger and is queued in a later round: with room
    for one event at a time, each of five stops reaches the webhook, in order."""
    from dataclasses import replace

    from answerable.config import load_config
    from answerable.records import Scope
    from answerable.service import Service

    hook = Webhook()
    folder = tmp_path / "shop"
    init(folder)
    config = load_config(folder / "answerable.toml")
    service = Service(replace(config, webhook=f"http://127.0.0.1:{hook.port}/events"))
    service._events = asyncio.Queue(maxsize=1)  # the 10,000 of a real backlog, made small
    await service.start()
    try:
        if service.gateway is None:
            raise AssertionError("the service did not start its gateway")
        ri = KeyPair.load(folder / "ri.key")
        stops = [
            await service.gateway.control.pause(
                by=ri.identity, reason="look", scope=Scope(kind="operation", value=f"op-{n}")
            )
            for n in range(5)
        ]
        arrived = await asyncio.to_thread(
            hook.wait_for, lambda events: len([e for e in events if e["kind"] == "Control"]) >= 5
        )
        assert arrived, hook.events
        assert [e["id"] for e in hook.events if e["kind"] == "Control"] == [s.id for s in stops]
    finally:
        await service.stop()
        hook.close()


async def test_a_full_webhook_queue_costs_a_round_no_reading_of_the_backlog(tmp_path: Path) -> None:
    """Behind a webhook that does not answer, the backlog waits in the ledger. A round that found
    the queue full used to read every entry from the first untold one to the end, on the event
    loop, each half second: a cost growing with the backlog (found by an independent review).
    Now a round reads nothing while the queue is full."""
    from dataclasses import replace

    from answerable.config import load_config
    from answerable.records import ExternalEvent, Scope
    from answerable.service import Service

    hook = Webhook(lambda _: None)  # takes the first post and never answers it
    folder = tmp_path / "shop"
    init(folder)
    config = load_config(folder / "answerable.toml")
    webhook = f"http://127.0.0.1:{hook.port}/events"
    service = Service(replace(config, webhook=webhook, settle_every=3600))  # rounds run by hand here
    service._events = asyncio.Queue(maxsize=1)
    await service.start()
    try:
        ledger, gateway = service._running()
        ri = KeyPair.load(folder / "ri.key")

        async def pause(name: str) -> None:
            scope = Scope(kind="operation", value=name)
            await gateway.control.pause(by=ri.identity, reason="look", scope=scope)

        await pause("op-0")
        await service._watch()
        assert await asyncio.to_thread(hook.wait_for, lambda events: len(events) == 1)  # the sender waits
        await pause("op-1")
        await service._watch()  # queued: the queue is full
        ids = IdSource(SystemClock())
        backlog = [
            ExternalEvent(id=ids.new(), at=rfc3339(time.time_ns()), source="s", type="t", payload={"n": n})
            for n in range(2000)
        ]
        await ledger.append(backlog)
        await pause("op-2")
        read: list[int] = []
        entries = ledger.entries

        def counted(start: int, stop: int | None = None) -> Any:
            found = list(entries(start, stop))
            read.append(len(found))
            return found

        ledger.entries = counted  # type: ignore[method-assign]
        await service._watch()
        assert sum(read) == 0, read
    finally:
        await service.stop()
        hook.close()


async def test_refusals_held_back_are_recorded_within_an_interval_not_only_at_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refusals in one identity's name past the first of an interval are counted, and the count
    goes into the ledger with the last of them. Before, that was at the next refusal recorded or
    at stop: a process killed lost every count since. Now the settle round records what an
    interval held back once the interval is over (the interval made short here)."""
    from answerable import service as service_module
    from answerable.config import load_config
    from answerable.records import Refusal, decode_entry
    from answerable.service import Service

    monkeypatch.setattr(service_module, "REFUSALS_EVERY", 2.0)  # above any one append's fsync
    folder = tmp_path / "shop"
    init(folder)
    service = Service(load_config(folder / "answerable.toml"))
    appended, append = asyncio.Queue[None](), service._append_refusal

    async def counted(refusal: Refusal) -> None:
        await append(refusal)
        appended.put_nowait(None)

    monkeypatch.setattr(service, "_append_refusal", counted)
    await service.start()
    try:
        ledger = service.ledger
        if ledger is None:
            raise AssertionError("the service did not open its ledger")
        for n in range(4):
            await service.record_refusal(
                "refunds-agent", verified=False, target="POST /v1/intents", reason_code="bad_signature",
                detail=f"forgery {n}", body=None,
            )  # fmt: skip
        for _ in range(2):  # the first, at once; the count, by a settle round (every half second)
            await asyncio.wait_for(appended.get(), 30)

        def recorded() -> list[tuple[str, int]]:
            found = [decode_entry(e.data) for e in ledger.of_kind("Refusal")]
            return [(r.detail, r.suppressed) for r in found if isinstance(r, Refusal)]

        assert recorded() == [("forgery 0", 0), ("forgery 3", 2)]
    finally:
        await service.stop()
    with SQLiteLedger.open(folder / "ledger.db") as after:
        assert len(after.of_kind("Refusal")) == 2  # nothing was left for the stop to record


@pytest.mark.parametrize(
    ("ahead", "said"), [(0, None), (60, "keep the clocks in step"), (900, "more than the 300 s")]
)
async def test_a_clock_behind_the_ledgers_latest_time_is_said_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ahead: int, said: str | None
) -> None:
    """Reviews run on the later of this machine's clock and the ledger's latest time, so a
    machine whose clock is behind sees reviews close before its clock says they should (past
    300 s, the ledger's time is not trusted at all). Said once at start, with how far behind,
    so its owner learns it before a review does something they did not expect."""
    from answerable.config import load_config
    from answerable.records import ExternalEvent
    from answerable.service import Service

    folder = tmp_path / "shop"
    init(folder)
    first = Service(load_config(folder / "answerable.toml"))  # makes the ledger
    await first.start()
    await first.stop()
    with SQLiteLedger.open(folder / "ledger.db") as ledger:  # an entry a clock ahead dated
        ids = IdSource(SystemClock())
        at = rfc3339(time.time_ns() + ahead * 1_000_000_000)
        await ledger.append([ExternalEvent(id=ids.new(), at=at, source="s", type="t", payload={})])
    capsys.readouterr()
    again = Service(load_config(folder / "answerable.toml"))
    await again.start()
    await again.stop()
    err = capsys.readouterr().err
    if said is None:
        assert "behind" not in err
    else:
        [line] = [line for line in err.splitlines() if "behind the latest time" in line]
        behind = float(line.split("clock is ")[1].split(" s behind")[0].replace(",", ""))
        assert ahead - 5 < behind <= ahead, line
        assert said in line, line


def agent_in_process(service: Any, folder: Path) -> AsyncClient:
    """The scaffold's agent, talking to ``service`` in this process (no socket between)."""
    from answerable.service import build_app

    client = AsyncClient("http://shop.test", KeyPair.load(folder / "agent.key"))
    client._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(service, lifespan=False)))
    return client


async def test_a_request_to_a_service_whose_ledger_is_closing_is_answered_503(tmp_path: Path) -> None:
    """A write through a ledger the stopping service closed raises LedgerClosed, which the API
    answered as the caller's fault (400); it is the service's, and passing: 503, so a caller's
    retry goes on to the service restarted or its standby."""
    from answerable.config import load_config
    from answerable.service import Service

    folder = tmp_path / "shop"
    init(folder)
    service = Service(load_config(folder / "answerable.toml"))
    await service.start()
    try:
        ledger, _ = service._running()
        async with agent_in_process(service, folder) as client:
            ledger.close()
            with pytest.raises(ServiceRefused) as refused:
                await client.submit("refund", {"order": "O-1", "amount_cents": 100})
        assert (refused.value.status, refused.value.reason_code) == (503, "ledger_closed")
    finally:
        await service.stop()


async def test_a_clock_ahead_writing_while_the_service_runs_is_said_in_the_next_round(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writer whose clock is far ahead turns the review clock's floor off for as long as it
    was ahead (a time past the skew is not trusted); the running service says so in the round
    it first sees it, once, not only at its next start (found by an independent review)."""
    from dataclasses import replace

    from answerable.config import load_config
    from answerable.records import ExternalEvent
    from answerable.service import Service

    folder = tmp_path / "shop"
    init(folder)
    service = Service(replace(load_config(folder / "answerable.toml"), settle_every=3600))
    await service.start()
    try:
        ledger, _ = service._running()
        await service._settle()
        assert "behind" not in capsys.readouterr().err
        ids = IdSource(SystemClock())
        at = rfc3339(time.time_ns() + 3600 * 1_000_000_000)  # a laptop an hour fast
        await ledger.append([ExternalEvent(id=ids.new(), at=at, source="s", type="t", payload={})])
        await service._settle()
        await service._settle()
        said = [line for line in capsys.readouterr().err.splitlines() if "behind the latest time" in line]
        assert len(said) == 1, said
        assert "more than the 300 s trusted" in said[0]
    finally:
        await service.stop()


async def test_a_clock_gap_hovering_about_a_threshold_is_said_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer whose clock is 2.3 s ahead and writes now and then moves the gap back and forth
    across the 2 s threshold: each return to "behind" was said again, some 60,000 lines a day
    (found by an independent review). Each standing is said once, the worse one too."""
    from dataclasses import replace

    from answerable import service as service_module
    from answerable.config import load_config
    from answerable.service import Service

    folder = tmp_path / "shop"
    init(folder)
    service = Service(replace(load_config(folder / "answerable.toml"), settle_every=3600))
    await service.start()
    try:
        gaps = iter(
            [None, (False, "behind-a"), None, (False, "behind-a"), (True, "far-b"), None, (True, "far-b")]
        )
        monkeypatch.setattr(service_module, "_clock_behind", lambda *_: next(gaps))
        capsys.readouterr()
        for _ in range(7):
            service._say_clock()
        said = capsys.readouterr().err.splitlines()
        assert said == ["answerable serve: behind-a", "answerable serve: far-b"], said
        # An hour on (the interval made nothing here), a clock that falls behind again is said
        # again: it was said once in the process's life, and a new incident went unsaid.
        monkeypatch.setattr(service_module, "CLOCK_SAID_EVERY", 0.0)
        gaps = iter([None, (False, "behind-c")])
        for _ in range(2):
            service._say_clock()
        assert capsys.readouterr().err.splitlines() == ["answerable serve: behind-c"]
        # Within the hour of a "far behind", a mere "behind" is not said: the worse was said.
        monkeypatch.setattr(service_module, "CLOCK_SAID_EVERY", 3600.0)
        service._clock_said.clear()
        gaps = iter([(True, "far-e"), (False, "behind-f")])
        for _ in range(2):
            service._say_clock()
        assert capsys.readouterr().err.splitlines() == ["answerable serve: far-e"]
    finally:
        await service.stop()


async def test_a_published_checkpoint_replaced_by_something_else_publishes_nothing(tmp_path: Path) -> None:
    """The /log/ route reads the folder's checkpoint for its size: a file replaced by hand with
    three lines of anything, or bytes that are not UTF-8, or one that cannot be read, was a raw
    ValueError there (a 500); now nothing counts as published (404), and the real note serves.
    A note this ledger's key did not sign for its origin publishes nothing either: one made up
    to claim a million entries had every tile up to there served, short or empty (200)."""
    from answerable.config import load_config
    from answerable.ledger._sql import load_signer
    from answerable.ledger.note import Checkpoint, Signer, sign_checkpoint
    from answerable.ledger.tiles import tile_path
    from answerable.service import Service, build_app

    folder = tmp_path / "shop"
    init(folder)
    service = Service(load_config(folder / "answerable.toml"))
    await service.start()
    try:
        await service._checkpoint(final=True)
        published = service.config.publish_dir
        assert published is not None
        ri = KeyPair.load(folder / "ri.key")
        url = f"http://shop.test/log/{tile_path('entries', 0, 1)}"
        transport = httpx.ASGITransport(app=build_app(service, lifespan=False), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:

            async def status() -> int:
                signed = sign_request(ri, "GET", url, b"", created=int(time.time()))
                return (await client.get(url, headers=signed)).status_code

            real = (published / "checkpoint").read_bytes()
            assert await status() == 200
            for replaced in (b"a\nb\nc\nd\n", b"\xff\xfe\n1\n2\n", b"log.example/a\n12x\nAAAA\n\n"):
                (published / "checkpoint").write_bytes(replaced)
                assert await status() == 404, replaced
            (published / "checkpoint").unlink()
            (published / "checkpoint").mkdir()  # IsADirectoryError
            assert await status() == 404
            (published / "checkpoint").rmdir()
            os.mkfifo(published / "checkpoint")  # nobody writes to it: read at once, as empty
            assert await asyncio.wait_for(status(), 10) == 404
            (published / "checkpoint").unlink()
            (published / "checkpoint").write_bytes(real + b"x" * (1 << 17))  # too big to be a note
            assert await status() == 404
            # A checkpoint this ledger's key did not sign, or signed for another log, publishes
            # nothing of it: a note made up to claim a million entries served short tiles (200).
            ours = Checkpoint.parse(real.decode()[: real.decode().rfind("\n\n") + 1])
            claims = Checkpoint(ours.origin, 1_000_000, ours.root_hash)
            ledger, _ = service._running()
            key, _ = load_signer(ledger.key_path, ledger.origin, ledger.verifier_key())
            assert key is not None
            beyond = f"http://shop.test/log/{tile_path('entries', 3, 1)}"

            async def status_beyond() -> int:
                made = sign_request(ri, "GET", beyond, b"", created=int(time.time()))
                return (await client.get(beyond, headers=made)).status_code

            for signed in (
                sign_checkpoint(claims, Signer.generate(ours.origin)),
                sign_checkpoint(
                    Checkpoint("other.example/log", ours.size, ours.root_hash), Signer.generate("x")
                ),
                sign_checkpoint(Checkpoint("other.example/log", 1_000_000, ours.root_hash), key),
                real.decode().replace(f"\n{ours.size}\n", "\n1000000\n", 1),  # its signature no longer holds
            ):
                (published / "checkpoint").write_text(signed)
                assert (await status(), await status_beyond()) == (404, 404), signed
            # Signed by this ledger's key for its origin, but stating more than the ledger holds
            # (an older copy of the ledger restored under it, say): what it has is served.
            (published / "checkpoint").write_text(sign_checkpoint(claims, key))
            assert (await status(), await status_beyond()) == (200, 404)

            async def status_of(width: int) -> int:  # the first ``width`` entries, as one tile
                there = f"http://shop.test/log/{tile_path('entries', 0, width)}"
                made = sign_request(ri, "GET", there, b"", created=int(time.time()))
                return (await client.get(there, headers=made)).status_code

            held = ledger.size()
            assert 2 <= held < 255
            # A tile reaching past the ledger's end, though within what the note states: not short.
            assert (await status_of(held), await status_of(held + 1)) == (200, 404)
            # A tile reaching past a checkpoint's end, though the ledger holds it: not published.
            smaller = Checkpoint(ours.origin, held - 1, ours.root_hash)
            (published / "checkpoint").write_text(sign_checkpoint(smaller, key))
            assert (await status_of(held - 1), await status_of(held)) == (200, 404)
            (published / "checkpoint").write_bytes(real)
            assert await status() == 200
    finally:
        await service.stop()


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        (lambda: {"refund": "R-1", "at": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)}, False),
        (lambda: {"refund": "R-1", "n": 2**60}, False),  # past I-JSON: orjson writes it, JCS does not
        (lambda: {"refund": "R-1", "n": 2**70}, False),
        (lambda: {"refund": "R-1", "note": "\udcff"}, False),
        (lambda: {"refund": "R-1", "n": 7}, True),
    ],
    ids=["datetime", "2**60", "2**70", "surrogate", "json"],
)
async def test_a_result_with_no_json_form_leaves_the_status_and_the_receipt_readable(
    tmp_path: Path, answer: Any, kept: bool
) -> None:
    """The service kept a call's raw result for the intent's status and its receipt: a result
    JSON cannot hold failed every later status read and the receipt with a 500, and one past
    I-JSON's integers made a genuine receipt fail verification as if tampered with. Now the
    result is kept only as the JSON value its Execution's digest was taken of."""
    from answerable.config import load_config
    from answerable.receipt import result_digest, verify_receipt
    from answerable.service import Service

    folder = tmp_path / "shop"
    init(folder)
    service = Service(load_config(folder / "answerable.toml"))
    await service.start()
    try:
        ledger, gateway = service._running()
        object.__setattr__(gateway.operations["refund"], "call", lambda **_: answer())
        async with agent_in_process(service, folder) as client:
            done = await client.submit("refund", {"order": "O-1", "amount_cents": 100})
            assert done["status"] == "succeeded"
            status = await client.wait(done["intent_id"], seconds=0)
            receipt = await client.receipt(done["intent_id"], seconds=5)
        assert ("result" in status) is kept
        assert ("result" in receipt) is kept
        assert (done["result"] is not None) is kept
        if kept:
            assert status["result"] == receipt["result"] == done["result"] == answer()
            assert result_digest(receipt["result"]) == status["execution"]["response_digest"]
        proven = verify_receipt(receipt, ledger.verifier_key())
        assert proven.execution is not None
        assert proven.execution.status == "succeeded"
    finally:
        await service.stop()
