"""The LedgerStore contract, one suite for every backend: SQLite and PostgreSQL pass the same tests.

What makes a guarantee true lives in the store (the lease epoch, the guards, unique ids, the
order of indexes), so several tests open the same ledger a second time, or from other OS
processes, as another gateway or a CLI would.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import PG_BASE, Backend, make_backend
from support import order_events

from answerable.clock import FakeClock, IdSource, rfc3339
from answerable.control import unsigned_control
from answerable.errors import (
    Conflict,
    EntryNotFound,
    LeaseLost,
    LedgerError,
    LedgerTampered,
    NotALedger,
    ProofRequestInvalid,
    RecordInvalid,
)
from answerable.lease import Lease
from answerable.ledger import (
    MAX_ENTRY_BYTES,
    Verifier,
    leaf_hash,
    open_checkpoint,
    open_ledger,
    verify_consistency,
    verify_inclusion,
)
from answerable.ledger._sql import SQLLedger
from answerable.ledger.base import CONTROL_HEAD, Guard
from answerable.records import (
    Control,
    ExternalEvent,
    Intent,
    Message,
    Record,
    Scope,
    decode_entry,
    entry_bytes,
)

ORIGIN = "test.example/contract"


@pytest.fixture
def store(backend: Backend) -> SQLLedger:
    return backend.open(create=True, origin=ORIGIN)


def later_ids(k: int = 1) -> IdSource:
    """Ids that sort after order_events' default ones, for a second batch of fresh records."""
    return IdSource(FakeClock(ns=k * 1_000_000_000_000_000_000))


def test_entries_are_the_exact_bytes_hashed_and_found_every_way(store: SQLLedger):
    """Stored bytes are the canonical serialization; by index, id, kind and cause alike."""
    first, second = order_events(2)
    second = second.model_copy(update={"causes": (first.id,)})
    assert store.append_sync([first, second]) == [0, 1]
    stored = store.entry(1)
    assert stored.data == entry_bytes(second)
    assert decode_entry(stored.data) == second
    assert store.find(second.id) == stored
    assert [e.id for e in store.of_kind("ExternalEvent")] == [first.id, second.id]
    assert [e.id for e in store.of_kind("ExternalEvent", after=0)] == [second.id]
    assert [e.id for e in store.caused_by(first.id)] == [second.id]
    assert [e.index for e in store.entries(1)] == [1]
    with pytest.raises(EntryNotFound):
        store.entry(2)
    with pytest.raises(EntryNotFound):
        store.find("no-such-id")


def test_commits_of_every_size_store_each_row_in_order(store: SQLLedger):
    """A commit's rows go in through statements of several rows each (SQLite): batches on both
    sides of each statement's size keep every entry, its tree and its causes, in order."""
    sizes = [1, 2, 3, 63, 64, 65, 127, 128, 129, 200]
    made: list[Record] = []
    for event in order_events(sum(sizes)):  # each cites the one before it
        made.append(event.model_copy(update={"causes": (made[-1].id,)}) if made else event)
    start = 0
    for n in sizes:
        assert store.append_sync(made[start : start + n]) == list(range(start, start + n))
        start += n
    assert [e.data for e in store.entries()] == [entry_bytes(e) for e in made]
    for i in (0, 62, 63, 64, 192, len(made) - 2):
        assert [e.id for e in store.caused_by(made[i].id)] == [made[i + 1].id]
    assert store.verify().size == len(made)
    size, root = len(made), store.root(len(made))
    for index in (0, 63, 64, 65, 128, size - 1):
        proof = store.inclusion_proof(index, size)
        verify_inclusion(index, size, leaf_hash(store.entry(index).data), proof, root)


def test_every_proof_verifies_and_a_proof_past_the_size_is_refused(store: SQLLedger):
    store.append_sync(order_events(13))
    n = store.size()
    for size in range(1, n + 1):
        root = store.root(size)
        for index in range(size):
            verify_inclusion(
                index, size, leaf_hash(store.entry(index).data), store.inclusion_proof(index, size), root
            )
        for old in range(1, size + 1):
            verify_consistency(old, size, store.consistency_proof(old, size), store.root(old), root)
    assert store.hashes(0, 0, 13) == [leaf_hash(e.data) for e in store.entries()]
    assert len(store.hashes(2, 0, 3)) == 3
    with pytest.raises(ProofRequestInvalid, match="past the ledger's size 13"):
        store.inclusion_proof(0, 14)
    with pytest.raises(ProofRequestInvalid):
        store.consistency_proof(5, 20)


def test_a_checkpoint_is_signed_stored_and_verifiable_after_reopening(backend: Backend, store: SQLLedger):
    """The checkpoint opens with the verifier key; another opening finds the same key and history."""
    store.append_sync(order_events(5))
    signed = store.checkpoint()
    checkpoint = open_checkpoint(signed, Verifier.from_key(store.verifier_key()), origin=ORIGIN)
    assert (checkpoint.size, checkpoint.root_hash) == (5, store.root())
    assert store.latest_checkpoint() == signed
    again = backend.open()
    assert (again.origin, again.verifier_key(), again.root()) == (ORIGIN, store.verifier_key(), store.root())
    again.append_sync(order_events(1, later_ids()))
    again.checkpoint()  # the key was found where it was created
    report = store.verify(signed, key=store.verifier_key())
    assert (report.size, report.checkpoints_checked) == (6, 2)


def test_appends_from_many_threads_share_commits_and_lose_nothing(store: SQLLedger):
    ids = IdSource(FakeClock())
    batches = [order_events(5, ids) for _ in range(40)]
    results: list[list[int]] = [[] for _ in batches]

    def append(k: int) -> None:
        results[k] = store.append_sync(batches[k])

    threads = [threading.Thread(target=append, args=(k,)) for k in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i for r in results for i in r) == list(range(200))
    assert all(r == list(range(r[0], r[0] + 5)) for r in results)
    assert store.verify().size == 200


async def test_appends_from_64_tasks_each_get_their_own_indexes(store: SQLLedger):
    events = order_events(64)
    indexes = await asyncio.gather(*(store.append([e]) for e in events))
    assert sorted(i for [i] in indexes) == list(range(64))
    assert [store.entry(i).id for [i] in indexes] == [e.id for e in events]


def test_a_payload_too_big_for_an_entry_moves_to_a_blob(store: SQLLedger):
    [big] = order_events(1, size=100_000)
    [index] = store.append_sync([big])
    stored = store.entry(index)
    assert len(stored.data) <= MAX_ENTRY_BYTES
    ref = decode_entry(stored.data).payload  # type: ignore[union-attr]
    assert len(store.get_blob(ref["$blob"])) == ref["bytes"]
    assert store.verify().size == 1


async def test_a_record_too_big_with_no_payload_to_move_is_refused_and_nothing_stored(store: SQLLedger):
    """Only an event's or message's payload moves to a blob: an Intent past the limit is refused
    by name, as it is written, and its neighbours in the call are not stored either."""
    [event] = order_events(1)
    big = Intent(
        id="i-big",
        at=event.at,
        agent="a",
        operation="op",
        arguments={"pad": "x" * MAX_ENTRY_BYTES},
        idempotency_key="k",
    )
    too_big = r"Intent i-big is \d+ bytes; an entry must stay under"
    with pytest.raises(RecordInvalid, match=too_big):
        store.append_sync([event, big])
    with pytest.raises(RecordInvalid, match=too_big):
        await store.append([event, big])
    assert store.size() == 0


def test_an_id_used_twice_fails_only_its_caller(store: SQLLedger):
    """Everyone else in the same group commit lands; the ledger still verifies."""
    [record] = order_events(1)
    store.append_sync([record])
    clash = store.append_nowait([record])
    fresh = store.append_nowait(order_events(2, later_ids()))
    with pytest.raises(RecordInvalid, match="already holds an entry with id"):
        clash.result()
    assert fresh.result() == [1, 2]
    assert store.verify().size == 3


async def test_a_cancelled_append_is_still_committed(store: SQLLedger):
    first, second = order_events(2)
    task = asyncio.create_task(store.append([first]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.append([second]) == [1]
    assert store.find(first.id).index == 0


def test_data_version_stands_until_anyone_commits(backend: Backend, store: SQLLedger):
    first = store.data_version()
    store.size()
    assert store.data_version() == first
    backend.open().append_sync(order_events(1))  # another connection, as another process
    second = store.data_version()
    assert second != first
    store.append_sync(order_events(1, later_ids()))
    assert store.data_version() != second


async def test_a_deposed_epoch_can_append_nothing(backend: Backend, store: SQLLedger):
    """Fencing is judged inside the commit: after a takeover the old holder's appends are refused."""
    old = Lease(store, ttl=5.0)
    assert old.acquire() == 1
    store.release_lease(1)
    other = backend.open()  # the new holder is another connection
    assert Lease(other, ttl=5.0, holder="new").acquire() == 2
    assert not store.beat_lease(1)
    assert other.beat_lease(2)
    refused, landed = await asyncio.gather(
        store.append(order_events(1), fence=1),
        store.append(order_events(1, later_ids()), fence=2),
        return_exceptions=True,
    )
    assert isinstance(refused, LeaseLost)
    assert refused.current == 2
    assert landed == [0]
    lease = store.lease()
    assert lease is not None
    assert (lease.holder, lease.epoch, lease.released) == ("new", 2, False)
    other.release_lease(2)
    with pytest.raises(LeaseLost):
        await store.append(order_events(1, later_ids(2)), fence=2)
    assert await store.append(order_events(1, later_ids(3))) == [1]  # writers without a lease


async def test_a_guard_lets_one_of_two_writers_through(backend: Backend, store: SQLLedger):
    """Two answers to one review, from two connections: one lands, the other gets Conflict."""
    other = backend.open()
    first, second = await asyncio.gather(
        store.append(order_events(1), guards=[Guard("review:R", None)]),
        asyncio.to_thread(other.append_sync, order_events(1, later_ids()), guards=[Guard("review:R", None)]),
        return_exceptions=True,
    )
    outcomes = [first, second]
    assert sum(isinstance(o, Conflict) for o in outcomes) == 1, outcomes
    assert [0] in outcomes
    assert store.head("review:R") == other.head("review:R") == 0
    assert await store.append(order_events(1, later_ids(2)), guards=[Guard("review:R", 0)]) == [1]


def a_stop(action: str, n: int) -> Control:
    return unsigned_control(
        action, Scope(kind="system"), "pager@ops.example", "storm", causes=[],
        control_id=f"01K0000000000000000000000{n}", at_ns=1_767_225_600_000_000_000 + n,
    )  # fmt: skip


async def test_the_store_moves_the_control_head_to_every_control_entry(backend: Backend, store: SQLLedger):
    """A stop asks for no guard, so it never waits on or fails for a writer; a writer that read
    the head before the stop landed gets Conflict, through another connection too, and inside one
    group commit (items judged in order: the stop, then the append guarded on the old head)."""
    assert store.head(CONTROL_HEAD) is None
    await store.append(order_events(2))
    assert store.head(CONTROL_HEAD) is None  # other kinds leave it where it is
    other = backend.open()
    [halt] = other.append_sync([*order_events(1, later_ids(9)), a_stop("halt", 1)])[-1:]
    assert store.head(CONTROL_HEAD) == halt == 3
    with pytest.raises(Conflict):
        await store.append(order_events(1, later_ids()), guards=[Guard(CONTROL_HEAD, None)])
    stop, late = await asyncio.gather(
        store.append([a_stop("pause", 2)]),
        store.append(order_events(1, later_ids(2)), guards=[Guard(CONTROL_HEAD, halt)]),
        return_exceptions=True,
    )
    assert stop == [4], stop
    assert isinstance(late, Conflict), late
    assert other.head(CONTROL_HEAD) == 4
    together = await asyncio.gather(  # a guard on it is checked, and moves nothing: both land
        store.append(order_events(1, later_ids(3)), guards=[Guard(CONTROL_HEAD, 4)]),
        store.append(order_events(1, later_ids(4)), guards=[Guard(CONTROL_HEAD, 4)]),
    )
    assert together == [[5], [6]]
    assert store.head(CONTROL_HEAD) == 4


def test_a_nonce_is_accepted_once_even_through_another_connection(backend: Backend, store: SQLLedger):
    assert store.use_nonce("k1", 100)
    assert not store.use_nonce("k1", 100)
    assert not backend.open().use_nonce("k1", 100)


def test_a_note_is_kept_replaced_and_read_through_another_connection(backend: Backend, store: SQLLedger):
    """What a component remembers of its own progress (the bus's published size) outlives it,
    and is not an entry: the tree does not change."""
    assert store.get_note("published:shop") is None
    store.put_note("published:shop", "12")
    store.put_note("published:shop", "40")
    assert backend.open().get_note("published:shop") == "40"
    assert store.size() == 0
    assert store.get_note("origin") is None  # notes live apart from the ledger's own metadata


def test_a_place_without_a_ledger_is_named(backend: Backend):
    with pytest.raises(NotALedger):
        backend.open()


def test_one_changed_byte_is_named_by_verify(backend: Backend, store: SQLLedger):
    store.append_sync(order_events(4))
    store.checkpoint()
    target = store.entry(2)
    changed = target.data.replace(b"O-2", b"O-9")
    backend_sql(backend, "UPDATE entries SET data = ? WHERE idx = 2", changed)
    with pytest.raises(LedgerTampered, match=f"ledger entry 2 \\(id {target.id}\\)"):
        store.verify()


WRITER = """
import sys, threading
sys.path.insert(0, {tests!r})
from support import order_events
from answerable.clock import FakeClock, IdSource, rfc3339
from answerable.ledger import open_ledger

store = open_ledger({target!r})
ids = IdSource(FakeClock(ns={start}))
batches = [order_events(5, ids) for _ in range(8)]
threads = [threading.Thread(target=store.append_sync, args=(b,)) for b in batches]
for t in threads: t.start()
for t in threads: t.join()
store.close()
"""


@pytest.mark.slow
def test_writers_in_three_processes_interleave_without_a_gap(backend: Backend, store: SQLLedger):
    """Three OS processes append at once: every index once, each batch contiguous, the tree whole."""
    tests = str(Path(__file__).parents[1])
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER.format(tests=tests, target=backend.target, start=(k + 1) * 10**18)]
        )
        for k in range(3)
    ]
    assert [c.wait(timeout=120) for c in children] == [0, 0, 0]
    entries = store.entries()
    assert [e.index for e in entries] == list(range(120))
    assert len({e.id for e in entries}) == 120
    assert store.verify().size == 120


def backend_sql(backend: Backend, statement: str, *args: object) -> None:
    """Change the store behind the ledger's back, as whoever can write the database could."""
    if backend.name == "sqlite":
        import sqlite3

        with sqlite3.connect(backend.target) as conn:
            conn.execute(statement, args)
        return
    import psycopg

    with psycopg.connect(backend.target, autocommit=True) as conn:
        conn.execute(statement.replace("?", "%s"), args)


def test_old_request_nonces_are_forgotten_but_handled_marks_are_kept(store: SQLLedger):
    """A subscriber group's handled marks outlive the request window: a record delivered again
    long after is still dropped."""
    assert store.use_nonce("handled:planner:m1", 1)
    assert store.use_nonce("agent:n1", 1)
    for n in range(2, 1100):  # the store forgets once every 1,024 calls
        store.use_nonce(f"agent:n{n}", 10_000, forget_before=5_000)
    assert store.nonce_seen("handled:planner:m1")
    assert not store.nonce_seen("agent:n1")
    assert store.nonce_seen("agent:n2")


async def test_a_copy_carries_guards_lease_epoch_and_nonces(
    backend: Backend, store: SQLLedger, tmp_path: Path
):
    """What makes exactly-once true beside the log moves with it: a claimed intent stays claimed,
    the next lease epoch counts on, a spent nonce stays spent."""
    from answerable.ledger.copy import copy_ledger

    await store.append(order_events(2), guards=[Guard("claim:I-1", None)])
    assert Lease(store, ttl=5.0).acquire() == 1
    store.release_lease(1)
    assert store.use_nonce("agent:n1", 100)
    report = copy_ledger(store, tmp_path / "copy.db", signing_key=tmp_path / "copy.key")
    assert report.size == 2
    from answerable.ledger import open_ledger

    with open_ledger(tmp_path / "copy.db", signing_key=tmp_path / "copy.key") as moved:
        assert moved.head("claim:I-1") == 1
        with pytest.raises(Conflict):
            await moved.append(order_events(1, later_ids()), guards=[Guard("claim:I-1", None)])
        assert Lease(moved, ttl=5.0).acquire() == 2
        assert moved.nonce_seen("agent:n1")
        assert moved.root() == store.root()


@pytest.fixture(params=["sqlite", "postgres"])
def copy_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Where a copy goes, on either backend whatever the source's: a file in a folder of its own,
    or a schema of its own (its key under the source's ANSWERABLE_KEY_DIR, the backend's place)."""
    folder = tmp_path / "target"
    folder.mkdir()
    made = make_backend(request.param, folder)
    yield made
    made.close()


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def schema_tables(target: Backend) -> list[str] | None:
    """The tables in the target's schema; None when there is no such schema."""
    import psycopg

    from answerable.ledger.postgres import parse_url

    _, schema = parse_url(target.target)
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
            return None
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)).fetchall()
    return sorted(r[0] for r in rows)


def assert_copied(store: SQLLedger, target: Backend) -> None:
    """The target holds the source's ledger, verifies with its root and signs with its key (0600)."""
    with open_ledger(target.target) as moved:
        assert moved.verify().root == store.root()
        assert moved.verifier_key() == store.verifier_key()
        signed = open_checkpoint(moved.checkpoint(), Verifier.from_key(store.verifier_key()), store.origin)
        assert signed.size == store.size()
        assert moved.key_path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("fault", [KeyboardInterrupt, LedgerError], ids=["ctrl-c", "error"])
@pytest.mark.parametrize("call", [1, 3], ids=["first-batch", "last-batch"])
def test_an_interrupted_copy_leaves_nothing_and_the_next_copy_succeeds(
    store: SQLLedger,
    copy_target: Backend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: type[BaseException],
    call: int,
):
    """A copy stopped at any batch (Ctrl-C, a failing store) changes nothing: no file, -wal, -shm
    or key at the target, no schema or table; so no fork signed with the source's key remains,
    and copying again is not refused."""
    from answerable.ledger import copy as copying

    store.append_sync(order_events(5))
    store.checkpoint()
    before = files_under(tmp_path)
    monkeypatch.setattr(copying, "_BATCH", 2)  # 5 entries: 3 batches
    original = SQLLedger.append_rows
    calls: list[int] = []

    def failing(self: SQLLedger, rows: list[Any]) -> list[int]:
        calls.append(len(rows))
        if len(calls) == call:
            raise fault("stopped")
        return original(self, rows)

    monkeypatch.setattr(SQLLedger, "append_rows", failing)
    with pytest.raises(fault):
        copying.copy_ledger(store, copy_target.target)
    assert len(calls) == call
    assert files_under(tmp_path) == before
    if copy_target.name == "postgres":
        assert schema_tables(copy_target) is None
    monkeypatch.setattr(SQLLedger, "append_rows", original)
    report = copying.copy_ledger(store, copy_target.target)
    assert (report.size, report.root) == (5, store.root())
    assert_copied(store, copy_target)


def test_a_copy_with_another_root_leaves_nothing(
    store: SQLLedger, copy_target: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A copy whose root is not the source's is not left where it could be used as the ledger."""
    from answerable.ledger.copy import copy_ledger

    store.append_sync(order_events(3))
    before = files_under(tmp_path)
    with monkeypatch.context() as patched:
        patched.setattr(store, "root", lambda size=None: bytes(32))
        with pytest.raises(LedgerError, match="another root"):
            copy_ledger(store, copy_target.target)
    assert files_under(tmp_path) == before
    if copy_target.name == "postgres":
        assert schema_tables(copy_target) is None
    copy_ledger(store, copy_target.target)
    assert_copied(store, copy_target)


def test_a_failed_copy_into_an_empty_schema_keeps_the_schema(
    store: SQLLedger, pg: Backend, monkeypatch: pytest.MonkeyPatch
):
    """A schema that was there before the copy (made for it by whoever runs the database) stays,
    empty; only the tables the copy made are dropped."""
    import psycopg

    from answerable.ledger.copy import copy_ledger
    from answerable.ledger.postgres import parse_url

    store.append_sync(order_events(3))
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {parse_url(pg.target)[1]}")

    def interrupted(self: SQLLedger, rows: list[Any]) -> list[int]:
        raise KeyboardInterrupt

    monkeypatch.setattr(SQLLedger, "append_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        copy_ledger(store, pg.target)
    assert schema_tables(pg) == []


COPIER = """
import sys
from answerable.ledger import copy as copying, open_ledger
from answerable.ledger._sql import SQLLedger

copying._BATCH = 2
original = SQLLedger.append_rows
calls = []

def held(self, rows):
    calls.append(len(rows))
    if len(calls) == 2:  # one batch in: say so, and wait to be killed
        print("copying", flush=True)
        sys.stdin.readline()
    return original(self, rows)

SQLLedger.append_rows = held
with open_ledger(sys.argv[1]) as source:
    copying.copy_ledger(source, sys.argv[2])
"""


def kill_copy_when_held(script: str, *args: str, says: str = "held") -> None:
    """Run ``script`` (a copy whose child says ``says`` and waits at a point of its own) in a
    process of its own and kill -9 it there."""
    with subprocess.Popen(
        [sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == says + "\n"
        finally:
            child.kill()
            child.wait(timeout=60)


def test_a_copy_killed_mid_way_leaves_nothing_under_the_target_name(
    backend: Backend, store: SQLLedger, tmp_path: Path
):
    """kill -9 in the middle of a copy into a file: the target's name holds nothing (no file, no
    key), what is left under the copy's own temporary name refuses to open as a ledger, and the
    next copy succeeds."""
    from answerable.ledger.copy import copy_ledger

    store.append_sync(order_events(5))
    folder = tmp_path / "target"
    folder.mkdir()
    target = folder / "copy.db"
    kill_copy_when_held(COPIER, backend.target, str(target), says="copying")
    left = files_under(folder)
    assert not target.exists()
    assert not any(name.endswith(".key") for name in left), left
    assert all(name.startswith("copy.db.copying-") for name in left), left
    for name in left:
        if not name.endswith(("-wal", "-shm")):
            with pytest.raises(NotALedger, match="a copy that did not finish"):
                open_ledger(folder / name)
    copy_ledger(store, target)
    assert_copied(store, Backend("sqlite", str(target), folder))


MADE = """
import sys
from answerable.ledger import copy as copying, open_ledger
from answerable.ledger.postgres import PostgresLedger
from answerable.ledger.sqlite import SQLiteLedger

with open_ledger(sys.argv[1]) as source:
    made = PostgresLedger if "://" in sys.argv[2] else SQLiteLedger
    original = made.__init__

    def held(self, *args, **kwargs):  # the copy's tables are committed; its object is not built
        print("held", flush=True)
        sys.stdin.readline()
        original(self, *args, **kwargs)

    made.__init__ = held
    copying.copy_ledger(source, sys.argv[2])
"""


def test_a_copy_killed_as_its_tables_are_made_is_no_ledger(
    backend: Backend, store: SQLLedger, copy_target: Backend
):
    """kill -9 the instant after a copy made its tables, before any entry: what is left is an
    unfinished copy every open refuses, never an empty ledger of the source's origin and key (in
    a schema whose key's place is the source's, it signed as the source: a fork). Copying into the
    schema again is refused in one line (exit 2) until its tables are dropped; into a file, it
    succeeds at once."""
    from typer.testing import CliRunner

    from answerable.cli import app
    from answerable.ledger.copy import copy_ledger
    from answerable.ledger.postgres import drop_schema

    store.append_sync(order_events(5))
    store.checkpoint()
    kill_copy_when_held(MADE, backend.target, copy_target.target)
    if copy_target.name == "sqlite":
        folder = Path(copy_target.target).parent
        [left] = [
            p for p in folder.iterdir() if ".copying-" in p.name and not p.name.endswith(("-wal", "-shm"))
        ]
        with pytest.raises(NotALedger, match="a copy that did not finish"):
            open_ledger(left)
        copy_ledger(store, copy_target.target)
        assert_copied(store, copy_target)
        return
    with pytest.raises(NotALedger, match="a copy that did not finish"):
        open_ledger(copy_target.target)
    again = CliRunner().invoke(app, ["ledger", "copy", backend.target, copy_target.target])
    assert again.exit_code == 2, again.output
    [line] = again.stderr.splitlines()
    assert "a copy that did not finish" in line, line
    assert "drop its tables" in line, line
    drop_schema(copy_target.target)
    copy_ledger(store, copy_target.target)
    assert_copied(store, copy_target)


MARKED = """
import sys
from answerable.ledger import copy as copying, open_ledger
from answerable.ledger._sql import SQLLedger

with open_ledger(sys.argv[1]) as source:
    original = SQLLedger.mark_copied
    when = sys.argv[3]

    def held(self):  # the copy is whole; held just before, or just after, it is named a ledger
        if when == "after":
            original(self)
        print("held", flush=True)
        sys.stdin.readline()
        if when == "before":
            original(self)

    SQLLedger.mark_copied = held
    copying.copy_ledger(source, sys.argv[2])
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_copy_killed_as_it_is_named_a_ledger_is_whole_with_its_key_or_no_ledger(
    backend: Backend, store: SQLLedger, copy_target: Backend, when: str
):
    """kill -9 at the instant a whole copy is named a ledger. The key was written after the
    mark: killed between, a schema held the whole ledger with no key, which could not sign, and
    the next copy was refused as "holds a ledger already" (found in review). The key is written
    while the copy is still unfinished: killed before the mark, what is left is refused and the
    next copy takes the key as its own; killed after it, the schema is the copy, key and all.
    Into a file, the whole copy lies under its temporary name until the move, and the next copy
    goes on beside it."""
    from answerable.ledger.copy import copy_ledger
    from answerable.ledger.postgres import drop_schema

    store.append_sync(order_events(5))
    store.checkpoint()
    kill_copy_when_held(MARKED, backend.target, copy_target.target, when)
    if copy_target.name == "sqlite":
        with pytest.raises(NotALedger):
            open_ledger(copy_target.target)  # nothing under the target's name before the move
        copy_ledger(store, copy_target.target)
        assert_copied(store, copy_target)
        return
    if when == "after":
        assert_copied(store, copy_target)
        return
    with pytest.raises(NotALedger, match="a copy that did not finish"):
        open_ledger(copy_target.target)
    drop_schema(copy_target.target)
    copy_ledger(store, copy_target.target)  # the key left beside the unfinished copy is taken
    assert_copied(store, copy_target)


def test_an_altered_blob_is_named_with_the_entry_citing_it(backend: Backend, store: SQLLedger):
    [big] = order_events(1, size=100_000)
    store.append_sync([big])
    ref = decode_entry(store.entry(0).data).payload["$blob"]  # type: ignore[union-attr]
    backend_sql(backend, "UPDATE blobs SET data = ? WHERE digest = ?", b'{"pad":"forged"}', ref)
    with pytest.raises(LedgerTampered, match=big.id):
        store.get_blob(ref)


def test_many_marks_go_in_one_commit_and_again_change_nothing(backend: Backend, store: SQLLedger):
    """A subscriber group's handled marks of one fetched batch; marking one again is harmless."""
    store.mark_nonces(["handled:g:a", "handled:g:b"], 100)
    store.mark_nonces(["handled:g:b", "handled:g:c"], 200)
    other = backend.open()
    assert all(other.nonce_seen(f"handled:g:{k}") for k in "abc")
    assert not other.nonce_seen("handled:g:d")
    assert not store.use_nonce("handled:g:a", 300)  # the same store's nonces, one table


def test_a_closed_ledger_takes_no_nonce_blob_or_note(store: SQLLedger):
    """Found by a sweep of the library: after ``close()`` an SQLite ledger still recorded a nonce
    (answering True, as if the request were fresh) and stored a blob, and with its file deleted
    it made an empty database under the name. Every backend refuses all three with LedgerError."""
    from answerable.errors import LedgerError

    store.close()
    for write in (
        lambda: store.use_nonce("n-after-close", 1),
        lambda: store.put_blob(b"after close"),
        lambda: store.put_note("after", "close"),
    ):
        with pytest.raises(LedgerError):
            write()


def test_unknown_names_the_ids_no_entry_has_in_one_read(store: SQLLedger):
    """What the gateway checks an intent's causes with: the ids no entry has, in the order asked,
    anything no id can be among them (a NUL, a lone surrogate, not text), the same on each backend."""
    events = order_events(3, IdSource(FakeClock()))
    store.append_sync(events)
    known = [e.id for e in events]
    assert store.unknown(known) == []
    asked = [known[1], "nothing", known[0], "a\x00b", "\ud800", 5]
    assert store.unknown(asked) == ["nothing", "a\x00b", "\ud800", 5]  # type: ignore[list-item]
    assert store.unknown([]) == []


def test_the_latest_time_is_the_furthest_a_runtime_clock_came_and_no_signer_moves_it(
    backend: Backend, store: SQLLedger
):
    """What floors the review clock in every process: the latest ``at`` of an entry the runtime
    dated, kept by the store as a maximum. An entry appended later with an earlier time (a
    writer whose clock is behind) does not lower it; a message, an answer or a signed resume,
    dated by whoever signed it, does not raise it; a refused append moves nothing."""
    base, ids = 1_767_225_600_000_000_000, IdSource(FakeClock())

    def event(seconds: int) -> ExternalEvent:
        return ExternalEvent(
            id=ids.new(), at=rfc3339(base + seconds * 1_000_000_000), source="s", type="t", payload={}
        )

    def dated(record: Record, seconds: int) -> Record:
        return record.model_copy(update={"id": ids.new(), "at": rfc3339(base + seconds * 1_000_000_000)})

    assert store.latest_time() is None  # nothing appended: no time to floor at
    store.append_sync([event(100), event(50)])
    assert store.latest_time() == base + 100 * 1_000_000_000
    store.append_sync([event(10)])
    assert store.latest_time() == base + 100 * 1_000_000_000
    message = Message(
        id=ids.new(), at=rfc3339(base), sender="a", topic="t", type="t", payload={}, trace_id=ids.new()
    )
    resume = a_stop("resume", 1).model_copy(update={"signature": "c2lnbmVk"})
    store.append_sync([dated(message, 500), dated(resume, 500)])
    assert store.latest_time() == base + 100 * 1_000_000_000
    with pytest.raises(Conflict):
        store.append_sync([event(400)], guards=[Guard("review:none", 7)])
    assert store.latest_time() == base + 100 * 1_000_000_000
    store.append_sync([dated(a_stop("halt", 2), 200), event(20)])
    assert store.latest_time() == base + 200 * 1_000_000_000
    assert backend.open().latest_time() == base + 200 * 1_000_000_000  # another connection reads it


def test_a_ledger_without_a_latest_time_is_seeded_from_behind_pages_of_signed_entries(
    backend: Backend, store: SQLLedger
):
    """A ledger an earlier version wrote keeps no latest time: the first append of a process
    seeds it from the newest entry the runtime dated, read back a page at a time. Here that
    entry stands behind 300 signed resumes (a kind the seed's query cannot skip, so it reads
    them and asks each who dated it): a seed that read one page missed it, and the clock behind
    set the latest time 90 s low (found by an independent review)."""
    base, ids = 1_767_225_600_000_000_000, IdSource(FakeClock())
    ahead = rfc3339(base + 90 * 1_000_000_000)
    store.append_sync([ExternalEvent(id=ids.new(), at=ahead, source="s", type="t", payload={})])
    resumes = [
        a_stop("resume", n).model_copy(
            update={"id": ids.new(), "at": rfc3339(base + 500 * 1_000_000_000), "signature": "c2lnbmVk"}
        )
        for n in range(300)
    ]
    store.append_sync(resumes)
    forget = "DELETE FROM meta WHERE key = 'latest_time'"
    if backend.name == "sqlite":
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(backend.target)) as db, db:
            db.execute(forget)
    else:
        import psycopg

        with psycopg.connect(backend.target, autocommit=True) as db:
            db.execute(forget)
    fresh = backend.open()  # another process, as it were: it has not seen the store keep a time
    late = ExternalEvent(id=ids.new(), at=rfc3339(base), source="s", type="t", payload={})
    fresh.append_sync([late])  # from a clock 90 s behind the newest entry the runtime dated
    assert fresh.latest_time() == base + 90 * 1_000_000_000
