"""A live ledger copied while it is being written: the copy is one consistent moment and verifies."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from support import order_events
from typer.testing import CliRunner

from answerable import SQLiteLedger
from answerable.cli import app
from answerable.clock import IdSource
from answerable.errors import ConfigError


async def test_a_backup_taken_during_appends_verifies_with_the_roots_of_its_size(
    store: SQLiteLedger, ids: IdSource, tmp_path: Path
) -> None:
    await store.append(order_events(50, ids))
    done = threading.Event()
    copies: list[tuple[Path, int]] = []

    def back_up() -> None:
        for n in range(5):
            target = tmp_path / f"copy-{n}.db"
            copies.append((target, store.backup(target)))
        done.set()

    thread = threading.Thread(target=back_up)
    thread.start()
    while not done.is_set():
        await store.append(order_events(20, ids))
        await asyncio.sleep(0)
    thread.join()
    assert store.size() > copies[0][1]
    for target, size in copies:
        with SQLiteLedger.open(target) as copy:
            assert copy.size() == size
            assert copy.verify().size == size
            assert copy.root() == store.root(size)
            assert copy.verifier_key() == store.verifier_key()
        assert not target.with_name(target.name + ".key").exists()  # the signing key is not copied


def test_a_backup_never_writes_over_a_file(store: SQLiteLedger, tmp_path: Path) -> None:
    target = tmp_path / "there.db"
    target.write_text("keep")
    with pytest.raises(ConfigError, match="exists already"):
        store.backup(target)
    assert target.read_text() == "keep"


async def test_the_cli_backs_up_and_refuses_an_existing_target(
    store: SQLiteLedger, ids: IdSource, path: Path, tmp_path: Path
) -> None:
    await store.append(order_events(3, ids))
    runner = CliRunner()
    target = tmp_path / "copy.db"
    result = runner.invoke(app, ["ledger", "backup", str(path), "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert "copied 3 entries" in result.stderr
    assert runner.invoke(app, ["verify", str(target)]).exit_code == 0
    again = runner.invoke(app, ["ledger", "backup", str(path), "--out", str(target)])
    assert again.exit_code == 2
    assert "exists already" in again.stderr


def test_nonces_are_refused_twice_and_old_ones_are_forgotten(store: SQLiteLedger, path: Path) -> None:
    """A replayed nonce is refused across reopenings; nonces older than the window are pruned."""
    assert store.use_nonce("agent:n-0", 100) is True
    assert store.use_nonce("agent:n-0", 100) is False
    for n in range(1, 1100):
        assert store.use_nonce(f"agent:n-{n}", 100 + n, forget_before=600)
    store.close()
    with SQLiteLedger.open(path) as again:
        assert again.use_nonce("agent:n-1000", 1) is False  # kept: created after the cut
        assert again.use_nonce("agent:n-5", 1) is True  # forgotten at the 1,024th call
