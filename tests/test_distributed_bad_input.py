"""Distributed mode's bad input, through the real commands: one line on stderr, exit 2, nothing
started, no password echoed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from backends import PG_BASE, pg_url
from served import start

from answerable.scaffold import init

CLI = [sys.executable, "-m", "answerable.cli"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    made = tmp_path / "shop"
    init(made)
    return made


def edit(folder: Path, old: str, new: str, extra: str = "") -> Path:
    config = folder / "answerable.toml"
    text = config.read_text()
    config.write_text(text.replace(old, new) + extra)
    return config


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=folder, timeout=60, check=False)


def one_line(done: subprocess.CompletedProcess[str], says: str) -> None:
    """The error is one line (serve first says which config it serves, on a line of its own)."""
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("answerable serving ")]
    assert len(lines) == 1, done.stderr
    assert says in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("old", "new", "extra", "says"),
    [
        (
            'path = "ledger.db"',
            'url = "postgresql://postgres:hunter2@127.0.0.1:5432/test?options=-csearch_path%3Dx"',
            "",
            "never carries a password",
        ),
        (
            'path = "ledger.db"',
            'url = "postgresql://postgres@127.0.0.1:1/test?options=-csearch_path%3Dx"',
            "",
            "PostgreSQL at 127.0.0.1:1/test: cannot connect",
        ),
        ("", "", '\n[nats]\nurl = "nats://127.0.0.1:1"\n', "NATS at nats://127.0.0.1:1: cannot connect"),
        ("", "", '\n[nats]\nurl = "amqp://hunter2@127.0.0.1"\n', "[nats] url: want a nats:// URL"),
        (
            "",
            "",
            '\n[nats]\nurl = "nats://bob:hunter2@127.0.0.1:1"\n',
            "NATS at nats://127.0.0.1:1: cannot connect",
        ),
        ('path = "ledger.db"', 'url = "mysql://bob:hunter2@h/db"', "", "want a postgresql:// URL"),
        ('path = "ledger.db"', 'path = "ledger.db"\nurl = "postgresql://h/db"', "", "not both"),
    ],
    ids=["password", "postgres-down", "nats-down", "not-nats", "nats-user", "not-postgres", "path-and-url"],
)
def test_serve_refuses_a_bad_backend_before_anything_starts(
    folder: Path, old: str, new: str, extra: str, says: str
):
    config = edit(folder, old, new, extra)
    done = run(folder, "serve", str(config))
    one_line(done, says)
    assert "hunter2" not in done.stderr + done.stdout


def test_an_agent_needs_its_table_and_nats(folder: Path):
    config = folder / "answerable.toml"
    one_line(run(folder, "agent", str(config), "ghost"), "[nats] url is needed")
    edit(folder, "", "", '\n[nats]\nurl = "nats://127.0.0.1:4222"\n')
    one_line(run(folder, "agent", str(config), "ghost"), "no [agents.ghost] table")
    edit(folder, "", "", '\n[agents.ghost]\nclass = "operations:refund"\n')
    one_line(run(folder, "agent", str(config), "ghost"), "is not an Agent")


def test_an_agent_class_that_cannot_be_made_with_no_arguments_is_one_line(folder: Path):
    """Found by an audit: a class whose constructor takes arguments (or raises) ended ``answerable
    agent`` in a TypeError traceback."""
    (folder / "needy.py").write_text(
        "from answerable.runtime import Agent\n\n"
        "class Needy(Agent):\n"
        "    def __init__(self, level):\n"
        "        super().__init__()\n\n"
        "class Broken(Agent):\n"
        "    def __init__(self):\n"
        "        raise RuntimeError('no model file')\n\n"
        "    async def handle(self, message, ctx):\n"
        "        return None\n"
    )
    config = edit(
        folder, "", "", '\n[nats]\nurl = "nats://127.0.0.1:4222"\n[agents.needy]\nclass = "needy:Needy"\n'
    )
    one_line(
        run(folder, "agent", str(config), "needy"),
        "[agents.needy] class needy:Needy could not be made (with no arguments): TypeError",
    )
    edit(folder, 'class = "needy:Needy"', 'class = "needy:Broken"')
    one_line(run(folder, "agent", str(config), "needy"), "RuntimeError: no model file")


def test_a_url_of_another_scheme_is_no_ledger_and_its_password_is_not_echoed(folder: Path):
    done = run(folder, "verify", "postgresql+psycopg://bob:hunter2@127.0.0.1/db")
    one_line(done, "names no ledger")
    assert "hunter2" not in done.stderr + done.stdout


_BAD_PEM = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
_TLS = 'port = 8470\ntls_cert = "{0}"\ntls_key = "{0}"'
_REFUSED_BEFORE_A_LEDGER = [
    ("", "", '\n[[prerequisites]]\noperation = "refund"\nafter = "nosuch"\n', "'nosuch' is neither"),
    ("", "", '\n[nats]\nurl = "nats://127.0.0.1:99999"\n', "[nats] url nats://127.0.0.1:99999: its port"),
    ("", "", '\n[nats]\nurl = "nats://127.0.0.1:abc"\n', "[nats] url nats://127.0.0.1:abc: its port"),
    ("", "", '\n[nats]\nurl = "nats://[::1"\n', "[nats] url nats://[::1: not a URL"),
    ("", "", '\n[nats]\nurl = "nats://127.0.0.1:1"\n', "NATS at nats://127.0.0.1:1: cannot connect"),
    ("", "", '\n[nats]\nurl = "nats://127.0.0.1:4222"\nkey = "nosuch.key"\n', "[nats] key: key file"),
    ("", "", '\n[nats]\nurl = "nats://127.0.0.1:4222"\nkey = "bad.pem"\n', "is not an answerable key"),
    ("port = 8470", _TLS.format("bad.pem"), "", "[server] tls_cert"),
    ("port = 8470", _TLS.format("pems"), "", "Is a directory"),
]
_CASE_IDS = [
    "prerequisite",
    "nats-port",
    "nats-port-text",
    "nats-bracket",
    "nats-down",
    "nats-no-key",
    "nats-not-a-key",
    "tls-garbage",
    "tls-folder",
]


def _bad_files(folder: Path) -> None:
    """What the cases point at: a PEM file that holds nothing PEM, and a folder."""
    (folder / "bad.pem").write_text(_BAD_PEM)
    (folder / "pems").mkdir()


def refused_alone(done: subprocess.CompletedProcess[str], says: str) -> None:
    """Exit 2 and exactly one line on stderr: nothing started, not even the "serving" line."""
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("answerable: error: "), done.stderr
    assert says in lines[0], done.stderr


def ledger_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("ledger.db"))


@pytest.mark.parametrize(("old", "new", "extra", "says"), _REFUSED_BEFORE_A_LEDGER, ids=_CASE_IDS)
def test_a_refused_serve_makes_no_ledger(folder: Path, old: str, new: str, extra: str, says: str):
    """A serve refused for its config leaves no ledger file, journal or signing key behind."""
    _bad_files(folder)
    config = edit(folder, old, new, extra)
    refused_alone(run(folder, "serve", str(config), "--port", "0"), says)
    assert ledger_files(folder) == []


def _schema_exists(url: str) -> bool:
    import psycopg

    from answerable.ledger.postgres import parse_url

    base, schema = parse_url(url)
    with psycopg.connect(base) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    return found is not None


@pytest.mark.parametrize(
    ("old", "new", "extra", "says"),
    [_REFUSED_BEFORE_A_LEDGER[i] for i in (0, 1, 4, 7)],
    ids=[_CASE_IDS[i] for i in (0, 1, 4, 7)],
)
def test_a_refused_serve_makes_no_postgres_schema(
    folder: Path, tmp_path: Path, old: str, new: str, extra: str, says: str
):
    """On PostgreSQL a refused serve creates no schema, no tables and no signing key."""
    from answerable.ledger.postgres import drop_schema

    url = pg_url(f"answerable_t_{uuid.uuid4().hex[:12]}")
    keys = tmp_path / "keys"
    _bad_files(folder)
    edit(folder, 'path = "ledger.db"', f'url = "{url}"')
    config = edit(folder, old, new, extra)
    try:
        refused_alone(_serve_keys_in(folder, config, keys), says)
        assert not _schema_exists(url)
        assert not keys.exists() or list(keys.iterdir()) == []
    finally:
        drop_schema(url)


def _serve(folder: Path, config: Path, **options: Any) -> subprocess.CompletedProcess[str]:
    """``answerable serve`` of ``config`` on any free port, run to its end (``options``: more of
    ``subprocess.run``'s, such as the environment or a session of its own)."""
    return subprocess.run(
        [*CLI, "serve", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=60,
        check=False,
        **options,
    )


def _serve_keys_in(folder: Path, config: Path, keys: Path) -> subprocess.CompletedProcess[str]:
    """``answerable serve`` of ``config`` with ledger keys kept in ``keys`` (a PostgreSQL ledger's)."""
    return _serve(folder, config, env={**os.environ, "ANSWERABLE_KEY_DIR": str(keys)})


def _mcp_away(folder: Path) -> Path:
    """A config whose MCP server cannot be started: found only once the ledger is open."""
    return edit(
        folder,
        "",
        "",
        '\n[mcp]\nconnect_timeout_seconds = 0.5\n[mcp.servers.away]\ncommand = ["/nonexistent/mcp"]\n',
    )


def test_a_start_that_fails_after_making_its_ledger_removes_it(folder: Path):
    """A step that can fail only once the ledger is made (an MCP server that will not start)
    removes the ledger that start made: its file, journal and key."""
    done = run(folder, "serve", str(_mcp_away(folder)), "--port", "0")
    refused_alone(done, "[mcp.servers.away]: cannot connect")
    assert ledger_files(folder) == []


def test_a_start_that_fails_after_making_its_postgres_ledger_drops_it(folder: Path, tmp_path: Path):
    """On PostgreSQL, the schema that start made is dropped and its signing key removed."""
    from answerable.ledger.postgres import drop_schema

    schema = f"answerable_t_{uuid.uuid4().hex[:12]}"
    url = pg_url(schema)
    keys = tmp_path / "keys"
    edit(folder, 'path = "ledger.db"', f'url = "{url}"')
    config = _mcp_away(folder)
    try:
        refused_alone(_serve_keys_in(folder, config, keys), "[mcp.servers.away]: cannot connect")
        assert not _schema_exists(url)
        assert list(keys.iterdir()) == []
        # A schema that was there (granted by whoever runs the database) stays, and so does
        # whatever else it holds: only the ledger's own tables go.
        import psycopg

        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"CREATE TABLE {schema}.theirs (x int)")
        refused_alone(_serve_keys_in(folder, config, keys), "[mcp.servers.away]: cannot connect")
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
            ).fetchall()
        assert tables == [("theirs",)]
        assert list(keys.iterdir()) == []
    finally:
        drop_schema(url)


def _state(folder: Path) -> tuple[dict[str, bytes], str]:
    """Every ledger file's bytes, and what ``answerable verify`` says of it (size and root)."""
    files = {name: (folder / name).read_bytes() for name in ledger_files(folder)}
    verified = run(folder, "verify", "ledger.db", "--json")
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    return files, f"{report['size']} {report['root']}"


def _served_once(folder: Path) -> tuple[dict[str, bytes], str]:
    """A ledger made by a serve that started and stopped, as it is then."""
    served = start(folder)
    assert served.stop() == 0
    return _state(folder)


@pytest.mark.parametrize(("old", "new", "extra", "says"), _REFUSED_BEFORE_A_LEDGER[1:], ids=_CASE_IDS[1:])
def test_a_refused_serve_leaves_an_existing_ledger_byte_for_byte(
    folder: Path, old: str, new: str, extra: str, says: str
):
    """A serve refused for its config on a ledger that was there before leaves every byte of it,
    and its size and root, as they were."""
    before = _served_once(folder)
    _bad_files(folder)
    refused_alone(run(folder, "serve", str(edit(folder, old, new, extra)), "--port", "0"), says)
    assert _state(folder) == before


def test_a_start_that_fails_on_an_existing_ledger_never_removes_it(folder: Path):
    """Only a ledger this very start made is removed: one there before stays, size and root."""
    before = _served_once(folder)
    refused_alone(run(folder, "serve", str(_mcp_away(folder)), "--port", "0"), "cannot connect")
    assert _state(folder)[1] == before[1]  # (its lease row changed: it was opened)


def test_a_serve_refused_for_its_ledger_makes_no_nats_stream(tmp_path: Path):
    """Found in review: NATS was connected (which makes the system's stream) before the ledger
    was opened, so a serve refused for its ledger (a file there that is no ledger) left a
    stream behind. NATS now connects only once the ledger is open."""
    import asyncio

    from natsd import stream_there

    system = f"nostream{uuid.uuid4().hex[:10]}"
    folder = tmp_path / system
    init(folder)
    (folder / "ledger.db").write_text("not a ledger\n")
    config = edit(folder, "", "", '\n[nats]\nurl = "nats://127.0.0.1:4222"\n')
    refused_alone(run(folder, "serve", str(config), "--port", "0"), "ledger")

    assert not asyncio.run(stream_there(system))
    assert (folder / "ledger.db").read_text() == "not a ledger\n"


def test_an_encrypted_tls_key_no_terminal_can_unlock_is_refused_before_a_ledger_is_made(folder: Path):
    """Checked before the ledger is made, an encrypted key is unlocked as uvicorn unlocks it (a
    password asked on the terminal). With no terminal (a service manager, a container) it is
    refused in one line and nothing is made; skipping the check (tried in review) crashed uvicorn
    after the ledger was made."""
    from served import self_signed

    self_signed(folder, password=b"secret")
    config = edit(folder, "port = 8470", 'port = 8470\ntls_cert = "tls.crt"\ntls_key = "tls.key"')
    # A session of its own: no terminal to ask on, whoever runs the tests.
    done = _serve(folder, config, stdin=subprocess.DEVNULL, start_new_session=True)
    refused_alone(done, "[server] tls_key")
    assert "is encrypted with a password, and no terminal is there to ask for it" in done.stderr
    assert ledger_files(folder) == []
