"""The SQLite ledger: verification that names what was altered in its file, and what only a file
has. What every backend must do (appends, proofs, checkpoints, guards, the lease) is in
``test_contract.py``, which runs on SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import order_events

from answerable import (
    LedgerError,
    LedgerTampered,
    NotALedger,
    SQLiteLedger,
    StoreUnavailable,
)
from answerable.clock import FakeClock, IdSource
from answerable.ledger import (
    Verifier,
    leaf_hash,
    open_checkpoint,
    verify_consistency,
    verify_inclusion,
)


@pytest.fixture
def filled(ledger: SQLiteLedger) -> SQLiteLedger:
    ledger.append_sync(order_events(13))
    ledger.checkpoint()
    return ledger


def test_checkpoint_is_a_signed_note_for_the_ledger_key(filled: SQLiteLedger):
    """The checkpoint opens with the printed verifier key and commits to the current root."""
    note = filled.checkpoint()
    checkpoint = open_checkpoint(note, Verifier.from_key(filled.verifier_key()), origin=filled.origin)
    assert checkpoint.size == filled.size()
    assert checkpoint.root_hash == filled.root()
    assert note.splitlines()[0] == "test.example/ledger"


def test_a_file_that_is_not_a_ledger_is_named(tmp_path: Path):
    """Text files, foreign SQLite databases and missing files are refused as not a ledger."""
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    foreign = tmp_path / "other.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.close()
    for path in (text, foreign, tmp_path / "missing.db"):
        with pytest.raises(NotALedger, match=str(path.name)):
            SQLiteLedger.open(path)


def raw(path: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(sql, args)
    conn.close()


def test_flipping_one_byte_names_the_entry(filled: SQLiteLedger, ledger_path: Path):
    """A changed byte in an entry is reported by index and id."""
    victim = filled.entry(6)
    data = bytearray(victim.data)
    data[20] ^= 0x01
    raw(ledger_path, "UPDATE entries SET data = ? WHERE idx = 6", bytes(data))
    with pytest.raises(LedgerTampered) as caught:
        filled.verify()
    assert (caught.value.index, caught.value.entry_id) == (6, victim.id)


def test_rewritten_leaf_hash_is_caught_by_the_tree(filled: SQLiteLedger, ledger_path: Path):
    """Changing the bytes and their leaf hash together still fails against the stored tree."""
    victim = filled.entry(4)
    forged = victim.data.replace(b"O-4", b"O-9")
    raw(ledger_path, "UPDATE entries SET data = ?, leaf_hash = ? WHERE idx = 4", forged, leaf_hash(forged))
    with pytest.raises(LedgerTampered) as caught:
        filled.verify()
    assert caught.value.index == 4


def test_deleting_the_last_entry_is_caught(filled: SQLiteLedger, ledger_path: Path):
    """Truncation is caught by the stored checkpoint (and by an external one)."""
    raw(ledger_path, "DELETE FROM entries WHERE idx = 12")
    with pytest.raises(LedgerTampered, match="removed"):
        filled.verify()


def test_truncation_with_tree_rewritten_is_caught_by_an_external_checkpoint(
    filled: SQLiteLedger, ledger_path: Path
):
    """Even a truncation that also deletes the stored tree and checkpoints fails an earlier checkpoint."""
    saved = filled.checkpoint()
    raw(ledger_path, "DELETE FROM entries WHERE idx = 12")
    raw(ledger_path, "DELETE FROM nodes WHERE (i + 1) * (1 << level) > 12")
    raw(ledger_path, "DELETE FROM checkpoints")
    filled.verify()  # without outside evidence, a clean prefix looks like a ledger
    with pytest.raises(LedgerTampered, match="commits to 13 entries but the ledger holds 12"):
        filled.verify(saved)


def test_reordering_two_entries_is_caught(filled: SQLiteLedger, ledger_path: Path):
    """Swapping two whole rows (bytes, hash and id) breaks the tree at the first swapped entry."""
    raw(ledger_path, "UPDATE entries SET idx = -1 WHERE idx = 2")
    raw(ledger_path, "UPDATE entries SET idx = 2 WHERE idx = 9")
    raw(ledger_path, "UPDATE entries SET idx = 9 WHERE idx = -1")
    with pytest.raises(LedgerTampered) as caught:
        filled.verify()
    assert caught.value.index == 2


def test_altered_checkpoint_is_caught(filled: SQLiteLedger, ledger_path: Path):
    """A stored checkpoint whose text was edited no longer verifies with the ledger key."""
    conn = sqlite3.connect(ledger_path, isolation_level=None)
    size, note = conn.execute("SELECT size, note FROM checkpoints").fetchone()
    lines = note.split("\n")
    lines[1] = str(size - 1)
    conn.execute("UPDATE checkpoints SET note = ?", ("\n".join(lines),))
    conn.close()
    with pytest.raises(LedgerTampered, match="stored checkpoint"):
        filled.verify()


def test_checkpoint_of_another_history_is_caught(filled: SQLiteLedger, tmp_path: Path):
    """A checkpoint from a ledger with other content does not match this one."""
    other = SQLiteLedger.open(tmp_path / "other.db", create=True, origin="test.example/other")
    other.append_sync(order_events(3))
    foreign = other.checkpoint()
    other.close()
    with pytest.raises(LedgerTampered, match="does not verify"):
        filled.verify(foreign)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=6), data=st.data())
def test_any_appends_give_verifiable_proofs(tmp_path_factory, batches: list[int], data) -> None:  # type: ignore[no-untyped-def]
    """For any sequence of batch appends, random inclusion and consistency proofs verify."""
    path = tmp_path_factory.mktemp("prop") / "ledger.db"
    with SQLiteLedger.open(path, create=True) as store:
        ids = IdSource(FakeClock())
        for n in batches:
            store.append_sync(order_events(n, ids))
        size = store.size()
        assert size == sum(batches)
        index = data.draw(st.integers(0, size - 1))
        verify_inclusion(
            index, size, leaf_hash(store.entry(index).data), store.inclusion_proof(index), store.root()
        )
        old = data.draw(st.integers(1, size))
        verify_consistency(old, size, store.consistency_proof(old, size), store.root(old), store.root())
        assert store.verify().size == size


def test_an_edited_causes_index_is_caught(ledger: SQLiteLedger, ledger_path: Path):
    """The causes index is rebuilt from the entries on verify: a forged link fails it."""
    ids = IdSource(FakeClock())
    first, second = order_events(2, ids)
    ledger.append_sync([first, second.model_copy(update={"causes": (first.id,)})])
    ledger.verify()
    raw(ledger_path, "INSERT INTO causes VALUES (?, ?)", second.id, 0)
    with pytest.raises(LedgerTampered, match="causes index"):
        ledger.verify()


@pytest.mark.timeout(60)
def test_a_store_that_refuses_is_not_waited_for_like_one_out_of_reach(tmp_path: Path):
    """Patience is for a server restarting: a writer that cannot open its file at all (here its
    folder is gone) fails its append after the few quick retries, however long the patience."""
    folder = tmp_path / "here"
    folder.mkdir()
    ledger = SQLiteLedger.open(folder / "l.db", create=True, origin="test.example/refuses")
    ledger.patience = 3600.0  # waited out, this test would time out
    try:
        folder.rename(tmp_path / "gone")
        with pytest.raises(LedgerError, match="cannot open it") as raised:
            ledger.append_sync(order_events(1))
        assert not isinstance(raised.value, StoreUnavailable)
    finally:
        ledger.close()
