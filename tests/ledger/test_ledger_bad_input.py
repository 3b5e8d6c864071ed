"""Bad input at the ledger's public API: a typed refusal, the same on both backends, and nothing made.

A sweep found raw library errors (OverflowError from sqlite3, TypeError, UnicodeEncodeError,
ValueError "embedded null byte", AttributeError) crossing the API, a signing key written over
whatever file sat where it would go, and an origin that made a ledger no checkpoint could sign.
Each test here failed before its fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from backends import Backend
from support import order_events

from answerable import SQLiteLedger
from answerable.clock import FakeClock, IdSource
from answerable.errors import (
    ApprovalRefused,
    ConfigError,
    EntryNotFound,
    NotALedger,
    ProofRequestInvalid,
    RecordInvalid,
)
from answerable.gateway import Gateway
from answerable.ledger import open_ledger
from answerable.ledger._sql import SQLLedger
from answerable.provenance import why

ORIGIN = "test.example/bad-input"
SURROGATE = "\ud800"


@pytest.fixture
def store(backend: Backend) -> SQLLedger:
    made = backend.open(create=True, origin=ORIGIN)
    made.append_sync(order_events(3))
    return made


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes: what "nothing made, nothing changed" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_no_ledger(backend: Backend) -> None:
    with pytest.raises(NotALedger):
        open_ledger(backend.target).close()


# --- 1. creating a ledger never writes over the file where its key would go ----------------------


@pytest.mark.parametrize("what", ["a person's key", "another ledger's key", "another ledger"])
def test_creating_a_ledger_never_writes_over_an_existing_signing_key_file(
    backend: Backend, tmp_path: Path, what: str
) -> None:
    """The key path was opened with O_TRUNC: a person's private key, another ledger's key or
    another ledger itself was destroyed (SQLite); PostgreSQL read it as text first (a database
    there raised UnicodeDecodeError, a key was called "another ledger key")."""
    other = tmp_path / "other"
    other.mkdir()
    with SQLiteLedger.open(other / "a.db", create=True, origin="test.example/a") as a:
        a.checkpoint()
    person = other / "ri.key"
    person.write_text("PRIVATE+KEY+ri@example.com+01234567+c2VjcmV0\n")
    there = {
        "a person's key": person,
        "another ledger's key": other / "a.db.key",
        "another ledger": other / "a.db",
    }[what]
    before = files_under(tmp_path)
    with pytest.raises(ConfigError, match="exists already") as refused:
        open_ledger(backend.target, create=True, origin=ORIGIN, signing_key=there)
    assert str(there) in str(refused.value)
    assert files_under(tmp_path) == before  # the file is whole, and no database or key was made
    assert_no_ledger(backend)
    with SQLiteLedger.open(other / "a.db") as a:  # the other ledger still signs and verifies
        a.checkpoint()
        a.verify()


def test_a_new_ledger_never_writes_over_a_key_left_beside_its_path(tmp_path: Path) -> None:
    """A deleted ledger's key (``LEDGER.key``) was replaced: a private key destroyed."""
    path = tmp_path / "ledger.db"
    key = tmp_path / "ledger.db.key"
    key.write_text("0123456789abcdef\n")
    with pytest.raises(ConfigError, match="exists already"):
        SQLiteLedger.open(path, create=True, origin=ORIGIN)
    assert key.read_text() == "0123456789abcdef\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.db.key"]


# --- 2. an id no entry can have is not found, on both backends --------------------------------------


def test_an_id_no_entry_can_have_is_not_found(store: SQLLedger) -> None:
    """A lone surrogate raised UnicodeEncodeError on both; NUL and bytes a LedgerError on
    PostgreSQL (EntryNotFound on SQLite already): now the same on both."""
    for bad in (SURROGATE, f"a{SURROGATE}b", "a\x00b", b"id"):
        with pytest.raises(EntryNotFound):
            store.find(bad)  # type: ignore[arg-type]
        with pytest.raises(EntryNotFound):
            store.get_blob(bad)  # type: ignore[arg-type]
        with pytest.raises(EntryNotFound):
            why(store, bad)  # type: ignore[arg-type]
        assert store.caused_by(bad) == []  # type: ignore[arg-type]
        assert store.of_kind(bad) == []  # type: ignore[arg-type]
        assert store.head(bad) is None  # type: ignore[arg-type]
        assert store.get_note(bad) is None  # type: ignore[arg-type]
        assert store.nonce_seen(bad) is False  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [SURROGATE, "a\x00b", None, b"v"], ids=repr)
def test_a_note_or_nonce_that_cannot_be_stored_is_refused_and_nothing_written(
    store: SQLLedger, bad: Any
) -> None:
    before = store.data_version(), store.side_tables(store.size())
    with pytest.raises(RecordInvalid):
        store.put_note("a", bad)
    with pytest.raises(RecordInvalid):
        store.use_nonce(bad, 1)
    with pytest.raises(RecordInvalid):
        store.mark_nonces(["fine", bad], 1)
    assert store.get_note("a") is None
    assert not store.nonce_seen("fine")
    assert (store.data_version(), store.side_tables(store.size())) == before
    if isinstance(bad, str):
        with pytest.raises(RecordInvalid):
            store.put_note(bad, "v")


async def test_the_gateway_finds_nothing_for_an_id_no_entry_can_have(gateway: Gateway) -> None:
    """Gateway.records_of, outcome and settle_review raised UnicodeEncodeError from the store."""
    assert gateway.records_of(SURROGATE) == (None, None, None)
    with pytest.raises(EntryNotFound):
        await gateway.outcome(SURROGATE)
    with pytest.raises(ApprovalRefused) as refused:
        await gateway.settle_review(SURROGATE)
    assert refused.value.reason_code == "unknown_review"


# --- 3. huge or wrongly typed indexes and sizes -----------------------------------------------------


def test_an_index_past_sql_integers_is_past_the_end(store: SQLLedger) -> None:
    """SQLite raised OverflowError ("Python int too large to convert to SQLite INTEGER")."""
    every = store.entries()
    for index in (10**30, -(10**30), 2**63, 2**63 - 1):
        with pytest.raises(EntryNotFound):
            store.entry(index)
    assert store.entries(0, 10**30) == every
    assert store.entries(-(10**30), 10**30) == every
    assert store.entries(10**30) == []
    assert store.of_kind("ExternalEvent", after=10**30) == []
    assert store.of_kind("ExternalEvent", after=-(10**30)) == every
    with pytest.raises(ProofRequestInvalid):
        store.hashes(0, 0, 10**30)
    with pytest.raises(ProofRequestInvalid):
        store.hashes(10**30, 0, 1)
    with pytest.raises(ProofRequestInvalid):  # reversed: it said "holds 0 of the -3 hashes"
        store.hashes(0, 3, 0)


@pytest.mark.parametrize("bad", ["0", None, 0.0, True], ids=repr)
def test_an_index_that_is_not_a_whole_number_is_refused_typed(store: SQLLedger, bad: Any) -> None:
    """Proofs raised TypeError; a bool was read as 1 by SQLite and refused raw by PostgreSQL."""
    with pytest.raises(EntryNotFound):
        store.entry(bad)
    if bad is not None:  # None is entries()'s own "to the end"
        with pytest.raises(EntryNotFound):
            store.entries(0, bad)
    with pytest.raises(EntryNotFound):
        store.entries(bad)
    with pytest.raises(EntryNotFound):
        store.of_kind("ExternalEvent", after=bad)
    with pytest.raises(ProofRequestInvalid):
        store.hashes(0, bad, 1)
    with pytest.raises(ProofRequestInvalid):
        store.inclusion_proof(bad)
    with pytest.raises(ProofRequestInvalid):
        store.consistency_proof(bad, 2)
    with pytest.raises(ProofRequestInvalid):
        store.consistency_proof(1, bad)
    if bad is not None:  # None is root()'s and inclusion_proof()'s own "all of them"
        with pytest.raises(ProofRequestInvalid):
            store.root(bad)
        with pytest.raises(ProofRequestInvalid):
            store.inclusion_proof(0, bad)


@pytest.mark.parametrize("bad", [None, [None], "x", [1], {"kind": "Control"}], ids=repr)
async def test_appending_what_is_no_list_of_records_is_record_invalid(store: SQLLedger, bad: Any) -> None:
    """Raised TypeError or AttributeError ('NoneType' object has no attribute 'free_form') from
    inside the encoder; nothing is written either way."""
    size = store.size()
    with pytest.raises(RecordInvalid, match="append takes"):
        await store.append(bad)
    with pytest.raises(RecordInvalid, match="append takes"):
        store.append_sync(bad)
    assert store.size() == size


async def test_any_iterable_of_records_is_appended_but_one_record_alone_is_refused(store: SQLLedger) -> None:
    """A generator was taken before the check above came in; it still is (read once). One record
    alone is iterable too (pydantic iterates its fields), and is refused by name."""
    first, second, third = order_events(3, IdSource(FakeClock(ns=10**24)))
    size = store.size()
    assert await store.append(e for e in [first, second]) == [size, size + 1]
    assert store.append_sync(iter([third])) == [size + 2]
    with pytest.raises(RecordInvalid, match="append takes a list of records, not ExternalEvent"):
        await store.append(first)  # type: ignore[arg-type]
    assert store.size() == size + 3


def test_verify_refuses_a_checkpoint_or_key_that_is_not_text(store: SQLLedger) -> None:
    """Both raised AttributeError ('int' object has no attribute 'rfind' / 'strip')."""
    with pytest.raises(ConfigError, match="not a signed checkpoint"):
        store.verify(123)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pinned key"):
        store.verify(key=123)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pinned key"):  # UnicodeEncodeError, hashing the name
        store.verify(key=f"a{SURROGATE}+01234567+AQ==")


# --- 4. an origin, path or blob the ledger cannot hold: refused before anything is made ------------


@pytest.mark.parametrize("origin", ["a\x00b", "a\x1bb", f"a{SURROGATE}", 123], ids=repr)
def test_an_origin_no_checkpoint_can_carry_is_refused_before_anything_is_made(
    backend: Backend, tmp_path: Path, origin: Any
) -> None:
    """SQLite made the ledger and its key with an origin holding NUL, and every checkpoint and
    open after failed SignatureInvalid; PostgreSQL wrote the key and then failed; a surrogate
    raised UnicodeEncodeError and an int TypeError."""
    before = files_under(tmp_path)
    with pytest.raises(ConfigError, match="origin"):
        open_ledger(backend.target, create=True, origin=origin)
    assert files_under(tmp_path) == before
    assert_no_ledger(backend)


@pytest.mark.parametrize("bad", ["k\x00", f"k{SURROGATE}", 5], ids=repr)
def test_a_signing_key_path_no_file_can_have_is_refused_before_anything_is_made(
    backend: Backend, tmp_path: Path, bad: Any
) -> None:
    """ValueError: embedded null byte, UnicodeEncodeError and TypeError before."""
    before = files_under(tmp_path)
    with pytest.raises(ConfigError, match="signing key path"):
        open_ledger(
            backend.target,
            create=True,
            origin=ORIGIN,
            signing_key=str(tmp_path / "x") + bad if isinstance(bad, str) else bad,
        )
    assert files_under(tmp_path) == before
    assert_no_ledger(backend)


@pytest.mark.parametrize("bad", ["l\x00.db", f"l{SURROGATE}.db", None], ids=repr)
def test_a_ledger_path_no_file_can_have_is_refused(tmp_path: Path, bad: Any) -> None:
    """ValueError: embedded null byte, UnicodeEncodeError and TypeError before."""
    target = bad if bad is None else str(tmp_path / bad)
    for opening in (SQLiteLedger.open, open_ledger):
        with pytest.raises(ConfigError):
            opening(target, create=True, origin=ORIGIN)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["b\x00.db", f"b{SURROGATE}.db", None], ids=repr)
def test_a_backup_target_no_file_can_have_is_refused(tmp_path: Path, bad: Any) -> None:
    with SQLiteLedger.open(tmp_path / "ledger.db", create=True, origin=ORIGIN) as ledger:
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(ConfigError, match="backup target"):
            ledger.backup(bad if bad is None else str(tmp_path / bad))
        assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("bad", ["x", None, 5], ids=repr)
def test_a_blob_that_is_not_bytes_is_refused_and_nothing_stored(store: SQLLedger, bad: Any) -> None:
    """TypeError ("Strings must be encoded before hashing") before."""
    before = store.side_tables(store.size()).blobs
    with pytest.raises(RecordInvalid, match="blob"):
        store.put_blob(bad)
    assert store.side_tables(store.size()).blobs == before
