"""A gateway on PostgreSQL, and every reading command taking a postgresql:// URL where it takes a
file: verify, ledger checkpoint|prove|export|copy, why, report, halt; bad URLs are one line."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from backends import Backend, pg_url
from procs import CLI
from support import People, World, booking, make_gateway
from typer.testing import CliRunner

from answerable import FakeClock
from answerable.cli import app
from answerable.ledger import leaf_hash, open_ledger, verify_inclusion
from answerable.ledger.postgres import drop_schema
from answerable.records import Control, decode_entry

runner = CliRunner()


def run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def b64(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.fixture
async def used(pg: Backend, people: People, world: World) -> AsyncIterator[str]:
    """Five governed bookings through a gateway whose ledger is in PostgreSQL."""
    store = pg.open(create=True, origin="test.example/postgres")
    gateway = await make_gateway(store, people, FakeClock(), world)  # type: ignore[arg-type]
    for n in range(5):
        outcome = await gateway.submit(gateway.intent("executor", "carrier.book", booking(shipment=f"S-{n}")))
        assert outcome.status == "succeeded", outcome
    gateway.close()
    store.close()
    return pg.target


def test_the_cli_reads_and_writes_a_ledger_in_postgres(used: str, tmp_path: Path):
    verified = run("verify", used, "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["size"] == 2 + 5 * 4
    assert run("ledger", "checkpoint", used).exit_code == 0
    proof = json.loads(run("ledger", "prove", used, "--index", "3", "--json").stdout)
    with open_ledger(used) as store:
        execution = store.of_kind("Execution")[-1]
        verify_inclusion(
            3,
            proof["tree_size"],
            leaf_hash(store.entry(3).data),
            [b64(p) for p in proof["proof"]],
            b64(proof["root"]),
        )
    assert run("ledger", "export", used, "--out", tmp_path / "x.jsonl").exit_code == 0
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 22
    why = run("why", used, execution.id, "--json")
    assert why.exit_code == 0, why.output
    assert any(n["kind"] == "Intent" for n in json.loads(why.stdout)["nodes"])
    report = run("report", used, "--out", tmp_path / "r.html")
    assert report.exit_code == 0, report.output
    assert "Incident report" in (tmp_path / "r.html").read_text()
    halted = run("halt", used, "--by", "ops@logistics.example", "--reason", "storm drill")
    assert halted.exit_code == 0, halted.output
    with open_ledger(used) as store:
        [control] = [decode_entry(e.data) for e in store.of_kind("Control")]
    assert isinstance(control, Control)
    assert control.action == "halt"
    assert run("verify", used).exit_code == 0


def test_ledger_copy_moves_a_ledger_between_backends_with_identical_roots(used: str, tmp_path: Path):
    """PostgreSQL -> SQLite -> another PostgreSQL schema: the same bytes, roots, checkpoints and key."""
    assert run("ledger", "checkpoint", used).exit_code == 0
    key = run("ledger", "key", used).stdout.strip()
    file = tmp_path / "copy.db"
    first = run("ledger", "copy", used, str(file), "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert (doc["size"], doc["checkpoints"]) == (22, 1)
    back = pg_url("answerable_t_copy_" + tmp_path.name[-8:].replace("-", "_"))
    try:
        second = run("ledger", "copy", str(file), back, "--json", "--signing-key", tmp_path / "back.key")
        assert second.exit_code == 0, second.output
        roots = {
            json.loads(run("verify", t, "--json", "--key", key).stdout)["root"]
            for t in (used, str(file), back)
        }
        assert roots == {doc["root"]}
        again = run("ledger", "copy", used, back)
        assert again.exit_code == 2
        assert "holds a ledger already" in again.stderr
        assert run("ledger", "checkpoint", back).exit_code == 0  # the copy signs as the same log
        assert run("verify", back, "--key", key).exit_code == 0
    finally:
        drop_schema(back)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://postgres:secret@127.0.0.1:5432/test", "never carries a password"),
        ("postgresql://postgres@127.0.0.1:5432/test?sslpassword=secret", "never carries an sslpassword"),
        ("host=127.0.0.1 dbname=test user=postgres password=secret", "keyword=value connection string"),
        ("postgresql://u:secret@[bad/db", "malformed (not shown"),
        ("postgresql://u:secret%zz@h/db", "malformed (not shown"),
        (
            "postgresql://postgres@127.0.0.1:1/test?options=-csearch_path%3Dx",
            "PostgreSQL at 127.0.0.1:1/test: cannot connect",
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Danswerable_none",
            "holds no answerable ledger",
        ),
        ("postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dx%3By", "not a plain identifier"),
    ],
    ids=[
        "password",
        "sslpassword",
        "conninfo",
        "malformed",
        "bad-escape",
        "unreachable",
        "empty-schema",
        "bad-schema",
    ],
)
def test_a_bad_ledger_url_is_one_line_and_exit_2(url: str, says: str):
    """Through the real command: one line on stderr, exit 2, no traceback, the password never echoed."""
    done = subprocess.run(
        [str(CLI), "verify", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "secret" not in done.stderr + done.stdout
