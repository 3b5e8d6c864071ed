"""Every bad input a user can type at the CLI: one line on stderr, exit 2, and nothing changed."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import People, booking
from typer.testing import CliRunner

from answerable import Gateway, SQLiteLedger
from answerable.cli import app

runner = CliRunner()


def run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def refused(result, *words: str) -> None:  # type: ignore[no-untyped-def]
    """Exit 2 with exactly one line on stderr, naming each of ``words``, and no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("answerable: error: ")
    for word in words:
        assert word in lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
async def used(gateway: Gateway, ledger: SQLiteLedger, ledger_path: Path) -> Path:
    await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    ledger.close()
    return ledger_path


def stored_checkpoints(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("command", ["checkpoint", "export"])
def test_out_into_a_missing_folder_is_refused_and_no_checkpoint_is_stored(
    used: Path, tmp_path: Path, command: str
) -> None:
    before = stored_checkpoints(used)
    refused(run("ledger", command, used, "--out", tmp_path / "nowhere" / "x"), "does not exist")
    (tmp_path / "a-file").write_text("")
    refused(
        run("ledger", command, used, "--out", tmp_path / "a-file" / "x"), "a-file is a file, not a folder"
    )
    assert stored_checkpoints(used) == before


def test_a_report_under_a_file_says_the_file_is_no_folder(used: Path, tmp_path: Path) -> None:
    """The report makes its --out folder; under a file that failed as "File exists"."""
    (tmp_path / "a-file").write_text("kept")
    refused(
        run("report", used, "--out", tmp_path / "a-file" / "r" / "x.html"), "a-file is a file, not a folder"
    )
    assert (tmp_path / "a-file").read_text() == "kept"


@pytest.mark.parametrize("command", ["checkpoint", "export"])
def test_out_on_an_existing_file_is_refused_unless_forced(used: Path, tmp_path: Path, command: str) -> None:
    target = tmp_path / "there.txt"
    target.write_text("keep me")
    refused(run("ledger", command, used, "--out", target), "exists already", "--force")
    assert target.read_text() == "keep me"
    assert run("ledger", command, used, "--out", target, "--force").exit_code == 0
    assert target.read_text() != "keep me"


def test_out_on_a_folder_is_refused(used: Path, tmp_path: Path) -> None:
    refused(run("ledger", "export", used, "--out", tmp_path), "is a folder")


def test_report_out_on_an_existing_file_is_refused(used: Path, tmp_path: Path) -> None:
    target = tmp_path / "r.html"
    target.write_text("keep me")
    refused(run("report", used, "--out", target), "exists already")
    refused(run("report-compare", used, "--out", target), "exists already")
    assert target.read_text() == "keep me"


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [("--reason", "   ", ("give a reason",)), ("--reason", "", ("reason",)), ("--by", "  ", ("by",))],
)
@pytest.mark.parametrize("action", ["halt", "pause"])
def test_halt_and_pause_refuse_an_empty_or_blank_reason_or_by(
    used: Path, action: str, flag: str, value: str, words: tuple[str, ...]
) -> None:
    args = {"--by": "ri@example.com", "--reason": "storm", flag: value}
    before = digest(used)
    refused(run(action, used, *[x for pair in args.items() for x in pair]), *words)
    assert digest(used) == before


def test_files_that_are_not_utf8_are_refused(tmp_path: Path) -> None:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    schema = tmp_path / "schema.cedarschema"
    schema.write_text("entity Agent;")
    refused(run("rules", "check", binary, "--schema", schema), "not UTF-8")
    refused(run("rules", "check", schema, "--schema", binary), "not UTF-8")
    refused(run("verify", tmp_path / "none.db", "--checkpoint", binary), "not text")


def test_a_ledger_whose_metadata_lacks_a_field_is_refused(used: Path) -> None:
    conn = sqlite3.connect(used, isolation_level=None)
    conn.execute("DELETE FROM meta WHERE key = 'origin'")
    conn.close()
    refused(run("verify", used), "lacks origin")


def test_a_truncated_ledger_is_refused(used: Path) -> None:
    data = used.read_bytes()
    used.write_bytes(data[: len(data) // 2])
    for wal in used.parent.glob(used.name + "-*"):
        wal.unlink()
    refused(run("verify", used), "not an answerable ledger")


def test_opening_a_database_that_is_not_a_ledger_changes_nothing_in_it(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other, isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    before = digest(other)
    refused(run("verify", other), "not an answerable ledger")
    assert digest(other) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]
    conn = sqlite3.connect(other)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_quickstart_refuses_a_folder_it_did_not_make_and_reuses_its_own(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("do not delete")
    refused(run("demo", "quickstart", "--out", mine), "not made by the quickstart")
    assert (mine / "precious.txt").read_text() == "do not delete"
    made = tmp_path / "made"
    assert run("demo", "quickstart", "--out", made).exit_code == 0
    first = digest(made / "ledger.db")
    assert run("demo", "quickstart", "--out", made).exit_code == 0
    assert digest(made / "ledger.db") != first  # made again, in its own folder


def test_version_is_printed() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("answerable ")


def test_keys_new_makes_a_private_file_and_never_writes_over_one(tmp_path: Path) -> None:
    key_file = tmp_path / "ri.key"
    made = run("keys", "new", "ri@example.com", "--out", key_file, "--json")
    assert made.exit_code == 0, made.output
    assert key_file.stat().st_mode & 0o777 == 0o600
    shown = run("keys", "show", key_file, "--json")
    assert shown.exit_code == 0
    assert shown.stdout == made.stdout
    private = key_file.read_text().split()[1]
    assert private not in made.stdout + shown.stdout
    before = key_file.read_bytes()
    refused(run("keys", "new", "ri@example.com", "--out", key_file), "never written over")
    assert key_file.read_bytes() == before


@pytest.mark.parametrize("identity", ["", "two words", "x" * 201])
def test_keys_new_refuses_an_identity_the_charter_could_not_hold(tmp_path: Path, identity: str) -> None:
    refused(run("keys", "new", identity, "--out", tmp_path / "k"), "identity")
    assert not (tmp_path / "k").exists()


def test_keys_show_refuses_a_file_that_is_not_a_key(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"\xff\xfe")
    refused(run("keys", "show", bogus), "not an answerable key file")
    refused(run("keys", "show", tmp_path / "none"), "does not exist")


def test_rules_check_and_ledger_key_print_json_when_asked(used: Path, tmp_path: Path) -> None:
    import json

    from support import POLICIES, SCHEMA

    (tmp_path / "p.cedar").write_text(POLICIES)
    (tmp_path / "s.cedarschema").write_text(SCHEMA)
    checked = json.loads(
        run("rules", "check", tmp_path / "p.cedar", "--schema", tmp_path / "s.cedarschema", "--json").stdout
    )
    assert checked["ok"] is True
    assert "routine-bookings" in checked["policies"]
    assert checked["review"] == ["medical-under-disruption-needs-review"]
    key = json.loads(run("ledger", "key", used, "--json").stdout)
    assert key["origin"] == "test.example/ledger"
    assert key["verifier_key"].startswith("test.example/ledger+")


def test_replay_and_rules_export_refuse_bad_input_in_one_line_and_write_nothing(
    used: Path, tmp_path: Path
) -> None:
    """A version not recorded, files already there, a policy that does not parse or does not
    fit its schema, a schema that does not fit what was recorded, a missing file."""
    rules = tmp_path / "rules"
    refused(run("rules", "export", used, "--version", 7, "--out", rules), "no ruleset version 7", "holds 1")
    assert not rules.exists()
    assert run("rules", "export", used, "--out", rules).exit_code == 0
    policies, schema = rules / "policies.cedar", rules / "schema.cedarschema"
    kept = policies.read_text()
    policies.write_text("edited")
    refused(run("rules", "export", used, "--out", rules), "already holds policies.cedar", "--force")
    assert policies.read_text() == "edited"
    refused(run("replay", used, "--policies", policies, "--schema", schema), "do not parse")
    policies.write_text(kept + "\npermit(principal, action, resource) when { context.nothing };\n")
    refused(run("replay", used, "--policies", policies, "--schema", schema), "do not validate")
    narrow = tmp_path / "narrow.cedarschema"
    narrow.write_text(schema.read_text().replace("context: { disruption: Bool }", "context: { storm: Bool }"))
    policies.write_text(kept.replace("context.disruption", "context.storm"))
    refused(
        run("replay", used, "--policies", policies, "--schema", narrow),
        "does not match what was recorded",
        "(carrier.book)",
    )
    refused(run("replay", used, "--policies", tmp_path / "none.cedar", "--schema", schema), "none.cedar")


def test_otel_export_refuses_a_bad_endpoint_and_names_one_that_is_down(used: Path) -> None:
    import socket

    refused(run("otel-export", used, "--endpoint", "ftp://collector"), "http:// or https://")
    with_password = run("otel-export", used, "--endpoint", "http://me:secret@127.0.0.1:4318/v1/traces")
    refused(with_password, "OTEL_EXPORTER_OTLP_HEADERS")
    assert "secret" not in with_password.output
    refused(
        run("otel-export", used, "--endpoint", "http://127.0.0.1:4318/v1/traces", "--start", 99),
        "nothing to export",
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}/v1/traces"
    refused(
        run("otel-export", used, "--endpoint", down, "--timeout", 1),
        down,
        "run the export again from --start 0",
    )


def test_otel_export_refuses_headers_the_exporter_would_drop_without_showing_them(
    used: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed element of OTEL_EXPORTER_OTLP_HEADERS is skipped by the exporter (with a log
    line quoting it): the spans would go without the credential, each refused as unauthorized.
    Refused before anything is sent, the element named by its place, never shown."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=a,authorization: Bearer tok-5521")
    bad = run("otel-export", used, "--endpoint", "http://127.0.0.1:4318/v1/traces")
    refused(bad, "OTEL_EXPORTER_OTLP_HEADERS", "element 2 of 2")
    assert "tok-5521" not in bad.output
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer%20tok;x")
    traces = run("otel-export", used, "--endpoint", "http://127.0.0.1:4318/v1/traces")
    refused(traces, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "element 1 of 1")
    assert "tok" not in traces.output


@given(st.text(alphabet=st.sampled_from('ab=,;: \t%"\\\x7f'), max_size=12))
def test_the_headers_check_agrees_with_the_exporters_reading(value: str) -> None:
    """The check refuses exactly what the exporter would skip (it logs each element it skips)."""
    import logging

    from opentelemetry.util.re import parse_env_headers

    from answerable.config import otlp_headers_problem

    skipped: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = skipped.append  # type: ignore[method-assign]
    logger = logging.getLogger("opentelemetry.util.re")
    level = logger.level  # otel-export quiets the opentelemetry loggers in this process
    logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        parse_env_headers(value, liberal=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    problem = otlp_headers_problem({"OTEL_EXPORTER_OTLP_HEADERS": value})
    assert (problem is None) == (not skipped), (value, problem)


def test_another_ledgers_key_file_signs_nothing_and_the_ledger_still_verifies(
    used: Path, tmp_path: Path
) -> None:
    """A key file copied from another ledger would sign checkpoints no verifier of this one
    accepts, and the ledger could never be vouched for again: signing is refused, reading is not."""
    with SQLiteLedger.open(tmp_path / "other.db", create=True, origin="test.example/other"):
        pass
    key = used.with_name(used.name + ".key")
    key.write_bytes((tmp_path / "other.db.key").read_bytes())
    before = stored_checkpoints(used)
    refused(run("ledger", "checkpoint", used), "another ledger's")
    assert stored_checkpoints(used) == before
    assert run("verify", used).exit_code == 0
    key.unlink()
    key.mkdir()
    refused(run("ledger", "checkpoint", used), "is not a file")
    assert run("verify", used).exit_code == 0


def test_a_private_key_given_where_a_public_one_belongs_is_not_echoed(used: Path) -> None:
    """The ledger's private key pasted as the pinned or the witness key: refused in one line that
    does not print it back (to a terminal, a CI log)."""
    private = used.with_name(used.name + ".key").read_text().strip()
    pinned = run("verify", used, "--key", private)
    refused(pinned, "not shown")
    witness = run("ledger", "witness", used, "--url", "http://127.0.0.1:9", "--witness", private)
    assert witness.exit_code in (1, 2)
    assert "not shown" in witness.stderr
    for result in (pinned, witness):
        assert private not in result.output
        assert private[:16] not in result.stderr


def test_no_output_is_written_over_the_ledger_or_its_key_even_with_force(used: Path, tmp_path: Path) -> None:
    """An --out aimed at the ledger it is made from (or at its key, or its log) would destroy the
    evidence: refused even with --force, and nothing changes."""
    key = used.with_name(used.name + ".key")
    before = (digest(used), digest(key), stored_checkpoints(used))
    refused(run("ledger", "export", used, "--out", used, "--force"), "never written over a ledger")
    refused(run("ledger", "checkpoint", used, "--out", key, "--force"), "the key file")
    refused(run("report", used, "--out", used, "--force"), "is a database")
    assert (digest(used), digest(key), stored_checkpoints(used)) == before
    named_html = tmp_path / "run.html"  # a ledger named like a report would be its own default output
    named_html.write_bytes(used.read_bytes())
    refused(run("report", named_html), "the report's path")
    assert digest(named_html) == before[0]


def test_a_charter_changed_since_it_was_signed_is_not_amended(tmp_path: Path) -> None:
    """The RI's signature on the amendment would vouch for whatever was changed in the file
    before: a key swapped in is refused (exit 1, the file's signature fails), nothing written."""
    import json

    from answerable.keys import KeyPair
    from answerable.scaffold import init

    folder = tmp_path / "sys"
    init(folder)
    charter = folder / "charter.json"
    signed = charter.read_text()
    amended = run("charter", "amend", charter, "--key", folder / "ri.key", "--out", tmp_path / "ok.json")
    assert amended.exit_code == 0, amended.output  # the file as signed amends
    doc = json.loads(signed)
    stranger = KeyPair.generate("mallory@example.org")
    doc["people"][-1]["public_key"] = stranger.public_b64
    charter.write_text(json.dumps(doc))
    out = tmp_path / "c2.json"
    tampered = run("charter", "amend", charter, "--key", folder / "ri.key", "--out", out)
    assert tampered.exit_code == 1, tampered.output
    assert "changed since it was signed" in tampered.stderr
    assert not out.exists()
    doc = json.loads(signed)
    doc["agents"], doc["version"] = 5, "two"
    charter.write_text(json.dumps(doc))
    # pydantic's first line ("2 validation errors for SystemCharter") was all it said
    refused(
        run("charter", "amend", charter, "--key", folder / "ri.key", "--out", out),
        "version: Input should be a valid integer",
        "agents: Input should be a valid array",
    )
    refused(run("users", "set-password", folder / "answerable.toml", "ri@x"), "agents: Input should be")
    assert not out.exists()


@pytest.mark.parametrize("out", ["/proc/version", "/proc/answerable-checkpoint.txt"], ids=["file", "folder"])
def test_an_out_that_cannot_be_written_is_refused_before_a_checkpoint_is_stored(used: Path, out: str) -> None:
    """A file or folder nobody may write (not even root: /proc) is found out before signing, so a
    refused command leaves no checkpoint behind."""
    before = stored_checkpoints(used)
    refused(run("ledger", "checkpoint", used, "--out", out, "--force"), "cannot write --out")
    assert stored_checkpoints(used) == before


@pytest.mark.parametrize("command", ["approve", "deny"])
@pytest.mark.parametrize("reason", ["", "   "], ids=["empty", "blank"])
def test_a_blank_reason_on_an_answer_is_a_usage_error(used: Path, command: str, reason: str) -> None:
    """As for halt and resume: exit 2, one line, and the ledger unchanged."""
    before = digest(used)
    refused(
        run(command, used, "some-review", "--by", "r@x", "--reason", reason, "--key", used),
        "--reason is blank",
    )
    assert digest(used) == before


@pytest.mark.parametrize(
    "command",
    [["serve", "answerable.toml"], ["witness", "--key", "ri.key", "--state", "w", "--log", "x"]],
    ids=["serve", "witness"],
)
@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], port: str
) -> None:
    """Refused by the option itself (exit 2, no traceback), before a folder is made or a socket opened."""
    monkeypatch.chdir(tmp_path)
    result = run(*command, "--port", port)
    assert result.exit_code == 2, result.output
    assert "'--port'" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "w").exists()


def test_a_name_no_file_system_takes_is_one_line_from_every_command(used: Path, tmp_path: Path) -> None:
    """A path component over the file system's 255 bytes made ``pathlib`` raise where each command
    first probed it: a traceback from a dozen commands. Now one line naming it, exit 2, and nothing
    made or changed. Through the installed console script, as a person types it (the net is there)."""
    import subprocess

    from procs import CLI

    long = tmp_path / ("x" * 300)
    before = (digest(used), sorted(p.name for p in tmp_path.iterdir()))
    lines = [
        ["verify", long],
        ["halt", long, "--by", "ri@example.org", "--reason", "storm"],  # the fast path, no typer
        ["why", long, "some-id"],
        ["init", long],
        ["report", long],
        ["ledger", "export", used, "--out", long],
        ["ledger", "checkpoint", used, "--out", long],
        ["keys", "new", "someone@example.org", "--out", long],
        ["demo", "storm", "--out", long / "storm"],
    ]
    for line in lines:
        done = subprocess.run([str(CLI), *map(str, line)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (line, done.stderr)
        assert "Traceback" not in done.stderr, (line, done.stderr)
        (said,) = done.stderr.strip().splitlines()
        assert said.startswith("answerable: error: "), (line, said)
        assert said.endswith("characters): File name too long"), (line, said)
    assert (digest(used), sorted(p.name for p in tmp_path.iterdir())) == before


def test_the_storm_refuses_an_out_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("keep me")
    refused(run("demo", "storm", "--days", "1", "--out", target), "is a file", "folder")
    assert target.read_text() == "keep me"


def _as_text(path: Path, index: int) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE entries SET data = CAST(data AS TEXT) WHERE idx = ?", (index,))
    assert conn.execute("SELECT typeof(data) FROM entries WHERE idx = ?", (index,)).fetchone() == ("text",)
    conn.close()


def test_an_entry_rewritten_as_text_is_read_as_its_bytes(used: Path, tmp_path: Path) -> None:
    """``data`` cast to TEXT in SQL (same characters, another storage class) was a traceback in
    export, copy and publish (str + bytes). Its bytes are still the ones hashed: verify passes,
    and every reader serves exactly what the untouched ledger serves."""
    twin = tmp_path / "twin.db"
    twin.write_bytes(used.read_bytes())
    Path(f"{twin}.key").write_bytes(Path(f"{used}.key").read_bytes())  # publish signs a checkpoint
    _as_text(twin, 1)
    for path in (used, twin):
        assert run("ledger", "export", path, "--out", tmp_path / f"{path.stem}.jsonl").exit_code == 0
        assert run("ledger", "publish", path, "--out", tmp_path / f"{path.stem}-tiles").exit_code == 0
    assert (tmp_path / "twin.jsonl").read_bytes() == (tmp_path / "ledger.jsonl").read_bytes()
    bundles = tmp_path / "twin-tiles" / "tile" / "entries"
    tiles = [t for t in sorted(bundles.rglob("*")) if t.is_file()]
    assert tiles
    for tile in tiles:
        theirs = tmp_path / "ledger-tiles" / tile.relative_to(tmp_path / "twin-tiles")
        assert tile.read_bytes() == theirs.read_bytes()
    copied = run("ledger", "copy", twin, tmp_path / "copy.db")
    assert copied.exit_code == 0, copied.output
    assert run("verify", tmp_path / "copy.db").exit_code == 0
    proved = run("ledger", "prove", twin, "--index", "1")
    assert proved.exit_code == 0, proved.output


def test_a_damaged_page_met_halfway_through_an_export_leaves_the_out_file_as_it_was(tmp_path: Path) -> None:
    """The first 10,000 entries were written, then a damaged page: the --out file (forced over an
    old one) was left half written and the error was a traceback. Now one line, exit 2, the old
    file as it was and no part file beside it."""
    from support import order_events

    path = tmp_path / "big.db"
    with SQLiteLedger.open(path, create=True, origin="test.example/ledger") as store:
        events = order_events(12_000)
        for start in range(0, len(events), 2_000):
            store.append_sync(events[start : start + 2_000])
    conn = sqlite3.connect(path)
    last_leaf = conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'entries' AND pagetype = 'leaf' ORDER BY path DESC LIMIT 1"
    ).fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with path.open("r+b") as db:  # the leaf holding the last entries: met in the second batch
        db.seek((last_leaf - 1) * page_size)
        db.write(b"\xff" * page_size)
    out = tmp_path / "old.jsonl"
    out.write_text("keep me")
    refused(run("ledger", "export", path, "--out", out, "--force"), "malformed")
    assert out.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.db", "big.db.key", "old.jsonl"]


def test_a_damaged_page_met_by_prove_rules_diff_or_otel_export_is_one_line(tmp_path: Path) -> None:
    """Found by a sweep of the CLI: the same damaged file that verify and export refuse in one line
    was a 48-line traceback from ``ledger prove``, ``rules diff --ledger`` and ``otel-export``,
    whose reads ran outside the one-line guard; and ``report-compare --out`` into a symlink loop
    was a RuntimeError traceback."""
    from support import order_events

    path = tmp_path / "damaged.db"
    with SQLiteLedger.open(path, create=True, origin="test.example/ledger") as store:
        store.append_sync(order_events(2_000))
    with path.open("r+b") as db:  # pages 3 and 4: the tables' first pages, read by any query
        db.seek(8192)
        db.write(b"\xab" * 8192)
    before = digest(path)
    for args in (
        ("ledger", "prove", path, "--index", "0"),
        ("rules", "diff", "1", "2", "--ledger", path),
        ("otel-export", path, "--endpoint", "http://127.0.0.1:9/v1/traces"),
    ):
        refused(run(*args))  # "malformed", or what the pages it could read say
        assert digest(path) == before, args
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    good = tmp_path / "good.db"
    with SQLiteLedger.open(good, create=True, origin="test.example/ledger") as store:
        store.append_sync(order_events(3))
    refused(run("report-compare", good, "--out", tmp_path / "loop1"), "loop1")


def test_another_programs_wal_database_is_refused_and_left_as_found(tmp_path: Path) -> None:
    """Looking at a WAL-mode database to find it is no ledger made its -wal and -shm and left them
    beside it (a read-only connection cannot remove them). Now nothing is made."""
    other = tmp_path / "app.db"
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA journal_mode=WAL")
    with conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    conn.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]
    before = digest(other)
    refused(run("verify", other), "not an answerable ledger")
    refused(run("halt", other, "--by", "ri@example.org", "--reason", "storm"), "not an answerable ledger")
    refused(run("ledger", "export", other, "--out", tmp_path / "out.jsonl"), "not an answerable ledger")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]
    assert digest(other) == before


def test_a_malformed_or_wrong_kind_of_witness_key_is_a_usage_error(used: Path, tmp_path: Path) -> None:
    """A key typed wrong is bad input (exit 2), not the "no" of a signature that fails (exit 1,
    which a script reads as a rewritten history), and nothing is signed or made first."""
    from answerable.keys import KeyPair

    ledger_key = run("ledger", "key", used).stdout.strip()
    before = stored_checkpoints(used)
    for witness in ("garbage", ledger_key):  # the ledger's own key is no cosignature key
        refused(
            run("ledger", "witness", used, "--url", "http://127.0.0.1:9", "--witness", witness), "--witness"
        )
    assert stored_checkpoints(used) == before
    key = tmp_path / "witness.key"
    KeyPair.generate("witness@example.org").save(key)
    refused(run("witness", "--key", key, "--state", tmp_path / "state", "--log", "garbage"), "--log")
    assert not (tmp_path / "state").exists()


def test_no_output_goes_over_a_ledger_through_a_link_or_over_a_private_key(
    used: Path, tmp_path: Path
) -> None:
    """Found by a sweep: ``rules export --force`` wrote Cedar text through a link named
    policies.cedar into the ledger; a link named ``k`` to the ledger's key let ``report --force``
    replace the key; and any command's ``--out --force`` replaced a person's private key file."""
    from answerable.keys import KeyPair

    ledger_key = Path(f"{used}.key")
    person = tmp_path / "ri.key"
    KeyPair.generate("ri@example.org").save(person)
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "policies.cedar").symlink_to(used)
    (tmp_path / "k").symlink_to(ledger_key)
    before = [digest(p) for p in (used, ledger_key, person)]
    refused(run("rules", "export", used, "--out", folder, "--force"), "is a database")
    refused(run("report", used, "--out", tmp_path / "k", "--force"), "a private key file")
    refused(run("report", used, "--out", person, "--force"), "a private key file")
    refused(run("ledger", "export", used, "--out", person, "--force"), "a private key file")
    refused(run("ledger", "checkpoint", used, "--out", person, "--force"), "a private key file")
    assert [digest(p) for p in (used, ledger_key, person)] == before
    plain = tmp_path / "notes.txt"  # an ordinary file is still replaced when forced
    plain.write_text("two words")
    assert run("ledger", "export", used, "--out", plain, "--force").exit_code == 0


def test_a_private_key_pasted_as_an_agent_is_not_printed_back(tmp_path: Path) -> None:
    """A base64 private key ends in "=", so ``--agent KEY`` split into a name and nothing and the
    refusal quoted the whole value: the private key, on the terminal and in whatever logs it. A
    key too long for a file name is judged as a key too (it was refused as "File name too long")."""
    from answerable.scaffold import init

    folder = tmp_path / "sys"
    init(folder)
    private = (folder / "agent.key").read_text().split()[1]
    out = tmp_path / "next.json"
    for value in (private, f"={private}", f"bot={private * 8}"):
        said = run(
            "charter",
            "amend",
            folder / "charter.json",
            "--key",
            folder / "ri.key",
            "--out",
            out,
            "--agent",
            value,
        )
        refused(said, "--agent", "not shown")
        assert private not in said.output
        assert private.rstrip("=") not in said.output
    assert not out.exists()


def test_a_copy_to_a_name_sqlite_reads_specially_is_a_file_and_a_failed_copy_leaves_no_key(
    used: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``:memory:`` was no file at all (the copy went nowhere and a copy of the source's signing key
    was left as ``:memory:.key``), and ``file:NAME`` a URI naming another file. Now each is a
    file of that name. And a copy that cannot be made leaves no key behind."""
    monkeypatch.chdir(tmp_path)
    for name in (":memory:", "file:copy.db"):
        copied = run("ledger", "copy", used, name)
        assert copied.exit_code == 0, copied.output
        assert (tmp_path / name).is_file()
        assert run("verify", name).exit_code == 0
    refused(run("ledger", "copy", used, "nowhere/c.db", "--signing-key", "c.key"), "nowhere/c.db")
    assert not (tmp_path / "c.key").exists()


def test_a_witness_url_that_names_no_place_is_refused_before_a_checkpoint_is_signed(
    used: Path, tmp_path: Path
) -> None:
    """A port out of range was said as the socket's "Connection refused", after a checkpoint was
    signed and stored for it; a mistyped scheme likewise. Now: one line saying what is wrong with
    the URL, and no checkpoint."""
    from answerable.keys import KeyPair
    from answerable.ledger.witness import Cosigner
    from answerable.scaffold import init

    witness = KeyPair.generate("witness@example.org")
    vkey = Cosigner(witness.identity, witness.private).vkey()
    before = stored_checkpoints(used)
    for url, said in (
        ("http://127.0.0.1:99999", "Port out of range"),
        ("127.0.0.1:7380", "want an http:// or https:// URL"),
        ("http://127.0.0.1:0", "port 0"),
    ):
        refused(run("ledger", "witness", used, "--url", url, "--witness", vkey), "--url", said)
    assert stored_checkpoints(used) == before
    folder = tmp_path / "sys"
    init(folder)
    config = folder / "answerable.toml"
    config.write_text(
        config.read_text().replace(
            "every_seconds = 10",
            f'every_seconds = 10\nwitnesses = [{{ url = "http://127.0.0.1:99999", key = "{vkey}" }}]',
        )
    )
    refused(
        run("rules", "sign", config, "--key", folder / "ri.key"), "witnesses #1: url", "Port out of range"
    )


def test_credentials_in_a_url_are_never_printed_back(used: Path, tmp_path: Path) -> None:
    """A witness URL's user, password or token was quoted by the connection error; a config URL
    of the wrong scheme was quoted whole, and a ``[ledger] url`` without one (user:pw@host) too;
    a witness URL httpx cannot parse was a traceback."""
    from answerable.keys import KeyPair
    from answerable.ledger.witness import Cosigner
    from answerable.scaffold import init

    witness = KeyPair.generate("witness@example.org")
    vkey = Cosigner(witness.identity, witness.private).vkey()
    for url in ("http://u:secretpw@127.0.0.1:1/?token=tok3n", "http://[::1", "http://127.0.0.1:1/\nsecretpw"):
        said = run("ledger", "witness", used, "--url", url, "--witness", vkey)
        refused(said, "witness")
        assert "secretpw" not in said.output
        assert "tok3n" not in said.output
    folder = tmp_path / "sys"
    init(folder)
    config = folder / "answerable.toml"
    plain = config.read_text()
    for changed in (
        plain + '\n[notify]\nwebhook = "ftp://u:secretpw@host/x?token=tok3n"\n',
        plain + '\n[notify]\nwebhook = "htps://hooks.example/services/secretpw"\n',  # its path is its secret
        plain + '\n[notify]\nwebhook = "https://hooks.example:99999/services/secretpw"\n',  # no port
        plain.replace('path = "ledger.db"', 'url = "u:secretpw@h/db"'),
    ):
        config.write_text(changed)
        said = run("rules", "sign", config, "--key", folder / "ri.key")
        refused(said, "answerable.toml")
        assert "secretpw" not in said.output
        assert "tok3n" not in said.output


def test_paths_that_lead_nowhere_and_files_that_never_end_are_one_line(used: Path, tmp_path: Path) -> None:
    """A loop of links or a NUL in a path the config names, a loop given to init, a binary file as
    the signing key of a copy: each was a traceback. /dev/zero or a FIFO as a key file was read
    until memory ran out, or forever. Each is now one line, exit 2, nothing made."""
    import os

    from answerable.scaffold import init

    folder = tmp_path / "sys"
    init(folder)
    (folder / "l1").symlink_to("l2")
    (folder / "l2").symlink_to("l1")
    config = folder / "answerable.toml"
    plain = config.read_text()
    for changed, word in (
        (plain.replace('path = "ledger.db"', 'path = "l1"'), "cannot be followed"),
        (plain.replace('file = "charter.json"', 'file = "char\\u0000ter.json"'), "NUL"),
    ):
        config.write_text(changed)
        refused(run("rules", "sign", config, "--key", folder / "ri.key"), word)
    refused(run("init", folder / "l1"), "cannot be followed")
    os.mkfifo(tmp_path / "fifo")
    refused(run("keys", "show", "/dev/zero"), "larger than")
    refused(run("keys", "show", tmp_path / "fifo"), "not an answerable key file")  # nobody writes
    binary = tmp_path / "binary.key"
    binary.write_bytes(bytes(range(256)))
    refused(run("ledger", "copy", used, tmp_path / "c.db", "--signing-key", binary), "another ledger key")
    assert not (tmp_path / "c.db").exists()


def test_a_resume_of_a_scope_nothing_stops_is_refused_not_recorded(
    used: Path, tmp_path: Path, people: People
) -> None:
    """After a system halt, ``resume --scope agent:x`` said "resume recorded", exit 0, while the
    halt stayed in force: the person read a resume that lifted nothing (the API says 409)."""
    key = tmp_path / "ri.key"
    people.ri.save(key)
    assert run("halt", used, "--by", "ops", "--reason", "storm").exit_code == 0
    size = SQLiteLedger.open(used)
    before = size.size()
    size.close()
    said = run(
        "resume", used, "--by", people.ri.identity, "--reason", "over", "--key", key, "--scope", "agent:x"
    )
    refused(said, "nothing is halted or paused on agent:x", "stopped now: system")
    with SQLiteLedger.open(used) as store:
        assert store.size() == before
    lifted = run("resume", used, "--by", people.ri.identity, "--reason", "over", "--key", key)
    assert lifted.exit_code == 0, lifted.output


def test_a_refused_command_makes_no_key_folder_or_ledger_first(tmp_path: Path) -> None:
    """nats-config made the service's key, then refused (no coordination contract); witness made
    its state folder, then could not listen; a storm seed past 32 bits ran until the solver
    refused it, leaving a ledger and a five-line error."""
    import socket

    from answerable.keys import KeyPair
    from answerable.scaffold import init

    folder = tmp_path / "sys"
    init(folder)
    config = folder / "answerable.toml"
    config.write_text(config.read_text() + '\n[nats]\nkey = "nats.key"\n')
    refused(run("nats-config", config), "coordination")
    assert not (folder / "nats.key").exists()
    key = tmp_path / "witness.key"
    KeyPair.generate("witness@example.org").save(key)
    with SQLiteLedger.open(tmp_path / "log.db", create=True, origin="example.org/log") as log:
        vkey = log.verifier_key()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = run("witness", "--key", key, "--state", tmp_path / "state", "--log", vkey, "--port", port)
    assert said.exit_code == 2, said.output
    assert not (tmp_path / "state").exists()
    refused(run("demo", "storm", "--seed", 1 << 32, "--days", 1, "--out", tmp_path / "storm"), "--seed")
    assert not (tmp_path / "storm").exists()


def test_recorded_text_reaches_the_terminal_escaped_and_names_print_as_typed(
    used: Path, tmp_path: Path
) -> None:
    """A reason holding ESC sequences (a colour, an OSC 52 write to the clipboard) was printed by
    ``why`` for the terminal to obey; ``:smile:`` in a key's identity printed as a picture; an
    identity with ESC in it was accepted."""
    halted = run("halt", used, "--by", "ops", "--reason", "x\x1b]52;c;ZXZpbA==\x07\x1b[31mred", "--json")
    assert halted.exit_code == 0, halted.output
    stop = json.loads(halted.stdout)["id"]
    told = run("why", used, stop)
    assert told.exit_code == 0, told.output
    assert "\x1b" not in told.stdout
    assert "\\x1b]52;c;ZXZpbA==\\x07\\x1b[31mred" in told.stdout
    made = run("keys", "new", "a:smile:", "--out", tmp_path / "smile.key")
    assert made.exit_code == 0, made.output
    assert made.stdout.startswith("a:smile: ")
    refused(run("keys", "new", "a\x1b[31mred", "--out", tmp_path / "red.key"), "control character")
    assert not (tmp_path / "red.key").exists()


def test_an_input_file_that_is_a_fifo_with_no_writer_or_endless_is_one_line(
    used: Path, tmp_path: Path
) -> None:
    """``--checkpoint FIFO`` (nobody writing) waited for ever, in verify, receipt verify, rules
    check and charter amend alike; /dev/zero was read until memory ran out. A pipe with a writer
    (``<(answerable ledger checkpoint ...)``) is still read."""
    import os
    import subprocess

    from procs import CLI

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused(run("verify", used, "--checkpoint", fifo), "not a signed checkpoint")
    refused(run("receipt", "verify", fifo, "--key", "k"), "receipt")
    refused(run("verify", used, "--checkpoint", "/dev/zero"), "larger than 67,108,864 bytes")
    signed = subprocess.run(
        ["bash", "-c", f'"{CLI}" verify "{used}" --checkpoint <("{CLI}" ledger checkpoint "{used}")'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert signed.returncode == 0, signed.stderr


def test_a_charter_file_that_never_ends_is_one_line_in_rules_sign_and_nats_config(tmp_path: Path) -> None:
    """The config's [charter] file was read whole by ``rules sign`` and ``nats-config``: /dev/zero
    grew until memory ran out (a MemoryError traceback). Read capped, as every other input is.
    Run under a 2 GiB address-space cap, so a regression fails alone instead of taking the machine."""
    import resource
    import subprocess

    from procs import CLI

    from answerable.scaffold import init

    folder = tmp_path / "sys"
    init(folder)
    config = folder / "answerable.toml"
    text = config.read_text().replace('file = "charter.json"', 'file = "/dev/zero"')
    config.write_text(text + '\n[nats]\nurl = "nats://127.0.0.1:4222"\nkey = "nats.key"\n')

    def capped() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    for line in (["rules", "sign", config, "--key", folder / "ri.key"], ["nats-config", config]):
        done = subprocess.run(
            [str(CLI), *map(str, line)], capture_output=True, text=True, timeout=120, preexec_fn=capped
        )
        assert done.returncode == 2, (line, done.stderr)
        assert done.stderr == "answerable: error: cannot read /dev/zero: larger than 67,108,864 bytes\n"
    assert not (folder / "nats.key").exists()


def test_outputs_go_through_links_keep_their_mode_and_keys_come_through_pipes(
    used: Path, tmp_path: Path, people: People
) -> None:
    """Found in review of the atomic writes: an --out that is a link was replaced by a file (the
    target left as it was; with /dev/stdout redirected to a file, the /dev link itself would be);
    the new file was made 0644 whatever the umask; a temp name 15 characters longer than --out
    failed for long names; --key <(...) was refused once key files had to be regular; and
    nats-config --out on its own key path wrote the authorization block over the key just made."""
    import os
    import stat
    import subprocess

    from procs import CLI

    target = tmp_path / "target.jsonl"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert run("ledger", "export", used, "--out", link, "--force").exit_code == 0
    assert link.is_symlink()
    assert target.read_text() != "old\n"
    replaced = tmp_path / "plain.jsonl"
    replaced.write_text("old\n")
    os.chmod(replaced, 0o640)
    assert run("ledger", "export", used, "--out", replaced, "--force").exit_code == 0
    assert stat.S_IMODE(replaced.stat().st_mode) == 0o640  # the mode of the file it replaced
    fresh = tmp_path / "fresh.jsonl"
    assert run("ledger", "export", used, "--out", fresh).exit_code == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600  # every call's arguments: its owner's only
    longest = tmp_path / ("x" * 250)
    assert run("ledger", "export", used, "--out", longest).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    key = tmp_path / "ri.key"
    people.ri.save(key)
    shown = subprocess.run(
        ["bash", "-c", f'"{CLI}" keys show <(cat "{key}")'], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(people.ri.identity)

    from answerable.keys import KeyPair
    from answerable.scaffold import init

    folder = tmp_path / "sys"
    init(folder)
    config = folder / "answerable.toml"
    config.write_text(config.read_text() + '\n[nats]\nkey = "nats.key"\n')
    from answerable.charter import new_charter

    contract = {
        "channels": [
            {
                "topic": "t",
                "publishers": ["a"],
                "messages": [{"type": "m", "payload_schema": {"type": "object"}}],
            }
        ]
    }
    charter = new_charter("sys", people.ri, agents=["a"], coordination=contract)
    (folder / "charter.json").write_text(charter.model_dump_json())
    refused(run("nats-config", config, "--out", folder / "nats.key"), "the service's NATS key")
    assert not (folder / "nats.key").exists()
    made = run("nats-config", config, "--out", folder / "nats.conf")
    assert made.exit_code == 0, made.output
    assert "authorization" in (folder / "nats.conf").read_text()
    assert KeyPair.load(folder / "nats.key").identity == "answerable-service"


def test_init_in_a_folder_whose_name_no_person_can_carry_says_it_is_the_name(tmp_path: Path) -> None:
    """The system is named after its folder and its people after the system (ri@NAME.example):
    a folder "my system" was refused as "key identity ... holds whitespace", naming no folder.
    Now the name is said to be the fault, and where it came from; nothing is made."""
    for folder, said in (
        (tmp_path / "my system", "holds whitespace"),
        (tmp_path / ("x" * 190), "at most 200"),
    ):
        refused(run("init", folder), "the system's name", said, "the folder's name")
        assert not folder.exists()


def test_what_a_third_sweep_of_the_cli_found_is_one_line_and_changes_nothing(
    used: Path, tmp_path: Path
) -> None:
    """Each was left by the last sweep: an empty path (an unset variable in a script) meant the
    current folder and published, exported or wrote results there; a device that never ends as a
    config, a scenario or a key's place was read forever (``ledger copy`` hung, and left its
    ``-wal`` and ``-shm`` when killed); a copy onto a hard link of its source left an empty ``-wal``;
    an answer to a review id that names none exited 1, where ``reviews --id`` exits 2. Through the
    console script, as a person types it; run in a folder of its own, which must stay empty."""
    import subprocess

    from procs import CLI

    here = tmp_path / "here"
    here.mkdir()
    (here / "link.db").hardlink_to(used)
    key = tmp_path / "ri.key"
    assert run("keys", "new", "ri@logistics.example", "--out", key).exit_code == 0
    before = (digest(used), sorted(p.name for p in used.parent.iterdir()))
    lines = [
        (["ledger", "publish", used, "--out", ""], "--out: an empty path"),
        (["ledger", "publish", used, "--out="], "--out: an empty path"),
        (["rules", "export", used, "--out", ""], "--out: an empty path"),
        (["demo", "storm", "--days", "1", "--out", ""], "--out: an empty path"),
        (["verify", used, "--witness", ""], "--witness: an empty path"),
        (["serve", "/dev/zero"], "larger than"),
        (["demo", "storm", "--scenario", "/dev/zero", "--out", tmp_path / "s"], "larger than"),
        (["ledger", "copy", used, tmp_path / "copy.db", "--signing-key", "/dev/full"], "not a file"),
        (["ledger", "copy", used, "link.db"], "source's own file"),
        (
            [
                "approve",
                used,
                "no-such-review",
                "--by",
                "ri@logistics.example",
                "--reason",
                "ok",
                "--key",
                key,
            ],
            "[unknown_review]",
        ),
    ]
    for line, words in lines:
        done = subprocess.run(
            [str(CLI), *map(str, line)], capture_output=True, text=True, timeout=60, cwd=here
        )
        assert done.returncode == 2, (line, done.stderr)
        (said,) = done.stderr.strip().splitlines()
        assert said.startswith("answerable: error: "), (line, said)
        assert words in said, (line, said)
    assert sorted(p.name for p in here.iterdir()) == ["link.db"]
    assert (digest(used), sorted(p.name for p in used.parent.iterdir())) == before
    assert not (tmp_path / "copy.db").exists()
    assert not (tmp_path / "s").exists()


def test_a_misspelt_key_or_table_in_the_config_is_refused_with_the_name_it_meant(tmp_path: Path) -> None:
    """A key this version does not read was dropped: ``every_secs`` left checkpoints at their
    default, ``[sever]`` the server on its defaults, while the operator believed them set."""
    from answerable.config import load_config
    from answerable.errors import ConfigError

    assert run("init", tmp_path / "s").exit_code == 0
    config = tmp_path / "s" / "answerable.toml"
    text = config.read_text()
    load_config(config)
    for old, new, words in [
        (
            "every_seconds = 10",
            "every_secs = 10",
            "[checkpoints]: unknown key 'every_secs' (did you mean 'every_seconds'?)",
        ),
        ("[server]", "[sever]", "top level: unknown key 'sever' (did you mean 'server'?)"),
        (
            "[server]",
            "[agents.bot]\nclass = 'm:C'\nkee = 'k'\n[server]",
            "[agents.bot]: unknown key 'kee' (did you mean 'key'?)",
        ),
    ]:
        config.write_text(text.replace(old, new))
        with pytest.raises(ConfigError) as caught:
            load_config(config)
        assert words in str(caught.value), caught.value
    config.write_text(text.replace("every_seconds", "every_secs"))
    refused(run("serve", config), "did you mean 'every_seconds'?")


def test_python_dash_m_answerable_is_the_command() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "answerable", "halt", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--reason" in done.stdout


def test_a_config_naming_one_file_for_two_roles_is_refused_and_rules_sign_writes_over_nothing(
    tmp_path: Path,
) -> None:
    """Found by an audit: with ``[rules] signed`` naming the charter, ``rules sign`` wrote a
    signed ruleset over the charter (its integer version passed the check) and exited 0."""
    assert run("init", tmp_path / "s").exit_code == 0
    folder = tmp_path / "s"
    config = folder / "answerable.toml"
    text = config.read_text()
    charter = (folder / "charter.json").read_bytes()
    config.write_text(text.replace('signed = "ruleset.json"', 'signed = "charter.json"'))
    refused(run("rules", "sign", config, "--key", folder / "ri.key"), "[rules] signed", "[charter] file")
    refused(run("serve", config), "name one file")
    assert (folder / "charter.json").read_bytes() == charter
    config.write_text(
        text.replace("[server]\n", '[server]\ntls_cert = "schema.cedarschema"\ntls_key = "k.pem"\n')
    )
    (folder / "k.pem").write_text("")
    refused(run("serve", config), "[server] tls_cert", "[rules] schema", "name one file")
    # One PEM file may hold a certificate and its key: not two roles.
    pem = folder / "server.pem"
    pem.write_text("not checked here")
    config.write_text(
        text.replace("[server]\n", '[server]\ntls_cert = "server.pem"\ntls_key = "server.pem"\n')
    )
    from answerable.config import load_config

    assert load_config(config).tls_cert == pem.resolve()
    # A signed ruleset file that holds something else is not written over either.
    config.write_text(text)
    (folder / "ruleset.json").write_bytes(charter)
    refused(run("rules", "sign", config, "--key", folder / "ri.key"), "holds no signed ruleset")
    assert (folder / "ruleset.json").read_bytes() == charter


@pytest.mark.parametrize(
    "table", ['[agents.bot]\nclass = "m:C"\nkey = "a\\u0000b"\n', '[console]\ncompare = ["a\\u0000b"]\n']
)
def test_a_nul_in_an_agents_key_or_a_console_ledger_path_is_one_line(tmp_path: Path, table: str) -> None:
    """Found by an audit: these two paths were resolved with ``Path.resolve``, whose ValueError
    (embedded null byte) ended ``serve`` in a traceback."""
    assert run("init", tmp_path / "s").exit_code == 0
    config = tmp_path / "s" / "answerable.toml"
    config.write_text(config.read_text() + "\n" + table)
    refused(run("serve", config), "NUL")
    assert not (tmp_path / "s" / "ledger.db").exists()


@pytest.mark.parametrize("name", ['a"b', "e\\", "c\\u0041d"])
def test_init_writes_a_config_that_reads_back_whatever_the_folder_is_named(tmp_path: Path, name: str) -> None:
    """Found by an audit: the folder's name went into the config's TOML unescaped, so ``init
    'a"b'`` wrote a config ``serve`` refused as not TOML and ``init 'c\\u0041d'`` named its
    origin ``cAd``; a line break in the parent folder's name ended the comment early."""
    from answerable.config import load_config

    folder = tmp_path / "p\nq" / name
    assert run("init", folder).exit_code == 0
    config = load_config(folder / "answerable.toml")
    assert config.origin == f"answerable.local/{name}"
