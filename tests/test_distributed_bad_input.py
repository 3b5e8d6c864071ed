"""Distributed mode's bad input, through the real commands: one line on stderr, exit 2, nothing
started, no password echoed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
