"""What the SQL ledger backends share: the sequencer (one writer, group commit, fences and guards
judged inside the commit) and the reads, written once in the SQL that SQLite and PostgreSQL both
speak.

A backend says how to open its connections, how to start a commit's transaction so that no other
writer runs beside it (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: the head row locked), and how to
translate its driver's errors. Everything that decides what is written, in which order, under which
epoch and guards, is here, so the two backends cannot drift apart on a guarantee.

SQL here uses ``?`` for parameters; :meth:`SQLLedger._sql` turns them into the driver's marks.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeGuard, TypeVar

from answerable._canonical import canonical_bytes
from answerable._files import read_capped
from answerable.clock import on_the_calendar, parse_rfc3339, rfc3339
from answerable.errors import (
    ConfigError,
    Conflict,
    EntryNotFound,
    LeaseLost,
    LedgerClosed,
    LedgerError,
    ProofRequestInvalid,
    RecordInvalid,
    StoreUnavailable,
)
from answerable.ledger import _verify, merkle, note
from answerable.ledger.base import CONTROL_HEAD, MAX_ENTRY_BYTES, Guard, LeaseRow, StoredEntry, VerifyReport
from answerable.records import Record, decode_entry, entry_bytes

if TYPE_CHECKING:  # at run time asyncio is imported by _in_turn, on a running loop: a CLI halt never is
    import asyncio

__all__ = [
    "FORGET_NONCES",
    "LEDGER_FORMAT",
    "UNFINISHED_COPY",
    "Row",
    "SQLLedger",
    "SQLView",
    "SideTables",
    "blob_bytes",
    "check_key_place",
    "file_path",
    "fresh_identity",
    "key_for",
    "key_text",
    "new_origin",
    "nonce_time",
    "stored_text",
    "write_key",
]

_KEY_FILE_MAX = 4096
"""A signing key file is 65 bytes; one far larger (or a device that never ends) is no key."""
_OFFLOADABLE = ("payload",)
"""Only what agents and the world say may move to a blob; an Intent's arguments are what was
judged and approved, so they stay in the entry (an oversized intent is refused instead)."""

T = TypeVar("T")
FORGET_NONCES = "DELETE FROM nonces WHERE created < ? AND key NOT LIKE 'handled:%'"
"""Request nonces too old to matter are forgotten; a subscriber group's handled marks never are
(a record can be delivered again long after, when its agent comes back)."""
LEDGER_FORMAT = "answerable-ledger"
"""What a ledger's ``meta`` names as its format."""
UNFINISHED_COPY = "answerable-ledger-unfinished-copy"
"""What a copy's ``meta`` names as its format from the commit that makes its tables until the copy
is whole and verified: every open refuses it, so a copy cut short by kill -9 is never taken for
the ledger (nor forks it)."""
Row = tuple[str, str, bytes, bytes, tuple[str, ...]]
"""One entry on its way in: id, kind, the exact bytes, their leaf hash, the ids it cites."""
LATEST_TIME = (
    "INSERT INTO meta (key, value) VALUES ('latest_time', ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE meta.value < excluded.value"
)
"""Raise the latest time to a commit's, never lower it: fixed-width rfc3339 text compares as the
time it says (the punctuation stands in the same places in every value)."""
_MOST_ROWS = 64
"""Rows one INSERT statement takes at most (see :meth:`SQLLedger._insert`): 320 parameters for
the widest table, far below SQLite's limit (32,766 since 3.32; 999 before)."""
_MOST_KEYS = 512
"""Guarded keys one query reads at most (see :meth:`SQLLedger._heads`), within every SQLite's
limit on parameters (999 before 3.32)."""
Conn = Any
"""A DB-API connection of either driver: both have ``execute(sql, args)`` returning a cursor."""


@dataclass(slots=True)
class _Item:
    """One caller's append: its rows, who waits for it, and the conditions it commits under."""

    rows: list[Row]
    waiter: _Waiter
    fence: int | None = None
    guards: tuple[Guard, ...] = ()
    dated: str | None = None
    """The latest time the runtime's clock gave any of its records (see :meth:`SQLLedger.latest_time`)."""


@dataclass(frozen=True, slots=True)
class _LoopWaiter:
    """An asyncio future and the loop it belongs to: it may only be resolved on that loop."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[int]]


_Waiter = Future[list[int]] | _LoopWaiter
_Outcome = tuple[list[int] | None, BaseException | None]
_Settlement = tuple[_Waiter, list[int] | None, BaseException | None]


class SQLLedger(ABC):
    """An answerable ledger in SQL tables, sequenced by one writer thread of this process.

    Appends from any thread or coroutine are handed to the writer, which commits everything that
    arrived while the previous commit was in flight in one durable transaction (group commit) and
    only then resolves the callers' futures.
    """

    origin: str
    key_path: Path
    """Where the checkpoint signing key is kept, outside the database."""
    _signer: note.Signer | None
    _verifier: str
    _MARK = "?"
    _CONTAINS = "instr(data, ?) > 0"
    """SQL true when an entry's bytes contain the parameter."""
    _INSERT_ROWS = "INSERT"
    """How :meth:`_insert` begins its statements of many rows."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._pending: list[_Item] = []
        self._turn: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        self._cut_at = 0
        """The size at the start of the last commit tried: a commit cut after it wrote from here."""
        self.recoveries = 0
        """Commits whose connection was lost, settled again on a new one (seen, not hidden)."""
        self.patience = 0.0
        """Seconds a read or an append waits, trying again with back-off, for a server that does
        not answer (restarting, say) before it fails with StoreUnavailable. 0 by default, so
        a command fails at once and says where; a long-running process (a service, an agent)
        sets it to wait out a restart of its database server. Never for the lease, whose holder
        must learn at once that it cannot beat."""
        self._frontier: dict[tuple[int, int], bytes] = {}
        """The right edge of the tree after the last commit: the next commit's left siblings."""
        self._latest_kept = False
        """Whether this process has seen the store keep a latest time (see :func:`_seeded`)."""
        self._insert_texts: dict[tuple[str, int, int], str] = {}
        self._heads_texts: dict[int, str] = {}
        self._cv = threading.Condition()
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, name=f"ledger-writer:{name}", daemon=True)

    @property
    def name(self) -> str:
        """How messages name this ledger: its file, or its server and schema (never a password)."""
        return self._name

    def _start(self) -> None:
        self._writer.start()

    # --- what a backend supplies ----------------------------------------------------------------

    @abstractmethod
    def _writer_connection(self) -> Conn:
        """The writer thread's own connection, opened on that thread."""

    @abstractmethod
    def _begin_append(self, conn: Conn) -> int:
        """Open the commit's transaction so that no other writer of any process runs beside it,
        and return the ledger's size as of that moment."""

    @abstractmethod
    def _end_append(self, conn: Conn, size: int, latest: str | None) -> None:
        """Anything the backend records beside the rows before the commit (its head, say), and
        the latest time raised to ``latest`` (with :data:`LATEST_TIME`), if one is given."""

    @abstractmethod
    def _is_duplicate(self, exc: BaseException) -> bool:
        """The driver's unique-constraint violation: an entry id used twice."""

    @abstractmethod
    def _translate(self, exc: BaseException) -> BaseException:
        """The driver's error as one of answerable's."""

    @abstractmethod
    def _read(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` on a reading connection; driver errors come out translated."""

    @abstractmethod
    def _short_write(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` in a small write transaction that no append runs beside."""

    @abstractmethod
    def put_blob(self, data: bytes) -> str: ...

    def get_blob(self, digest: str) -> bytes:
        """The bytes stored under ``digest``, checked against it on every read.

        Raises:
            EntryNotFound: no blob is stored under ``digest``.
            LedgerTampered: the stored bytes no longer hash to ``digest``; names the entry citing it.
        """
        if key_text(digest) is None:  # no blob is stored under it (asked, a driver would raise)
            raise EntryNotFound(digest)
        sql = self._sql("SELECT data FROM blobs WHERE digest = ?")
        row = self._read(lambda c: c.execute(sql, (digest,)).fetchone())
        if row is None:
            raise EntryNotFound(digest)
        data = _verify.stored_bytes(row[0])
        if _verify.blob_digest(data) != digest:
            citing_sql = self._sql(f"SELECT idx, id FROM entries WHERE {self._CONTAINS} ORDER BY idx LIMIT 1")
            citing = self._read(lambda c: c.execute(citing_sql, (digest.encode(),)).fetchone())
            raise _verify.altered_blob(digest, data, None if citing is None else (int(citing[0]), citing[1]))
        return data

    @abstractmethod
    def data_version(self) -> int: ...

    @abstractmethod
    def take_lease(self, row: LeaseRow, *, expect: tuple[int, int] | None) -> int | None: ...

    @abstractmethod
    def beat_lease(self, epoch: int) -> bool: ...

    @abstractmethod
    def release_lease(self, epoch: int) -> None: ...

    @abstractmethod
    def use_nonce(self, key: str, created: int, *, forget_before: int | None = None) -> bool: ...

    def mark_nonces(self, keys: Sequence[str], created: int) -> None:
        """Record many nonces in one durable transaction; ones recorded before stay as they are.
        What a subscriber group's handled marks of one fetched batch cost: one commit, not one each."""
        if not keys:
            return
        sql = self._sql("INSERT INTO nonces VALUES (?, ?) ON CONFLICT DO NOTHING")
        rows = [(stored_text(key, "nonce"), nonce_time(created)) for key in keys]

        def mark(conn: Conn) -> None:
            self._prepare_nonces(conn)
            conn.cursor().executemany(sql, rows)

        self._write_nonces(mark)

    def _write_nonces(self, fn: Callable[[Conn], None]) -> None:
        self._short_write(fn)

    def put_note(self, key: str, value: str) -> None:
        """Keep a small durable note beside the entries (not an entry: neither hashed nor
        signed), replacing the one under ``key``. What a component must remember across its
        restarts about its own progress, such as how far the bus has taken the ledger.

        Raises:
            RecordInvalid: the key or value is not text either backend can store (nothing is written).
        """
        row = (stored_text(f"note:{key}", "note key"), stored_text(value, "note value"))
        sql = self._sql(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        self._short_write(lambda c: c.execute(sql, row))

    def get_note(self, key: str) -> str | None:
        """The note kept under ``key``, or None."""
        name = key_text(f"note:{key}")
        if name is None:  # no note can be kept under it
            return None
        sql = self._sql("SELECT value FROM meta WHERE key = ?")
        row = self._read(lambda c: c.execute(sql, (name,)).fetchone())
        return None if row is None else str(row[0])

    def nonce_seen(self, key: str) -> bool:
        """Whether ``use_nonce`` recorded ``key`` (and it was not forgotten since)."""
        if key_text(key) is None:  # use_nonce refuses such a key: it cannot have been recorded
            return False
        return self._read(lambda c: self._nonce_seen(c, key))

    def _nonce_seen(self, conn: Conn, key: str) -> bool:
        return conn.execute(self._sql("SELECT 1 FROM nonces WHERE key = ?"), (key,)).fetchone() is not None

    def checkpoint(self) -> str:
        """Sign and store a checkpoint of the ledger as it is now.

        Raises:
            ConfigError: the signing key file is missing (only the verifier key is known).
        """
        if self._signer is None:
            # Why, read again from the key file: another ledger's key, or none at all.
            why = load_signer(self.key_path, self.origin, self._verifier)[1]
            why = why or f"the ledger key {self.key_path} is missing"
            raise ConfigError(f"cannot sign a checkpoint: {why}")
        cp = self._head_now()
        signed = note.sign_checkpoint(cp, self._signer)
        sql = self._sql(
            "INSERT INTO checkpoints VALUES (?, ?) ON CONFLICT (size) DO UPDATE SET note = excluded.note"
        )
        self._short_write(lambda c: c.execute(sql, (cp.size, signed)))
        return signed

    def verifier_key(self) -> str:
        return self._verifier

    @abstractmethod
    def verify(self, checkpoint: str | None = None, *, key: str | None = None) -> VerifyReport: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _sql(self, sql: str) -> str:
        return sql if self._MARK == "?" else sql.replace("?", self._MARK)

    # --- appending ------------------------------------------------------------------------------

    def append_nowait(
        self, records: Iterable[Record], *, fence: int | None = None, guards: Sequence[Guard] = ()
    ) -> Future[list[int]]:
        """Queue records for the next group commit; the future resolves to their indexes."""
        future: Future[list[int]] = Future()
        rows, dated = self._rows(records)
        self._enqueue([_Item(rows, future, fence, tuple(guards), dated)])
        return future

    async def append(
        self, records: Iterable[Record], *, fence: int | None = None, guards: Sequence[Guard] = ()
    ) -> list[int]:
        """Append and wait until the records are durably committed (or refused, all of them).

        Appends made in the same turn of the event loop travel to the writer together, and the
        writer wakes the loop once per commit, not once per caller: with many concurrent callers
        that is what keeps one core busy with work rather than with thread hand-offs.

        Raises:
            LeaseLost: ``fence`` is not the lease epoch in force when the commit runs.
            Conflict: a guarded head moved since the caller read it.
        """
        rows, dated = self._rows(records)
        return await self._in_turn(rows, dated, fence, tuple(guards))

    def _in_turn(
        self, rows: list[Row], dated: str | None, fence: int | None, guards: tuple[Guard, ...]
    ) -> asyncio.Future[list[int]]:
        """Queue rows with this turn's other appends; the future resolves to their indexes. A
        plain call, not a coroutine: ``append`` awaits what it returns, one frame the fewer."""
        import asyncio  # loaded already: called on a running loop

        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[int]] = loop.create_future()
        batch = self._turn.get(loop)
        if batch is None:
            batch = self._turn[loop] = []
            loop.call_soon(self._end_of_turn, loop)
        batch.append(_Item(rows, _LoopWaiter(loop, waiter), fence, guards, dated))
        return waiter

    def append_sync(
        self, records: Iterable[Record], *, fence: int | None = None, guards: Sequence[Guard] = ()
    ) -> list[int]:
        return self.append_nowait(records, fence=fence, guards=guards).result()

    def append_rows(self, rows: Sequence[Row]) -> list[int]:
        """Append entries whose exact bytes are given (a ledger being copied): no fence, no guard.

        The bytes are stored as they are, so the copy's leaves, tree and roots equal the source's.
        """
        for row in rows:
            if len(row[2]) > MAX_ENTRY_BYTES:
                raise RecordInvalid(f"{row[1]} {row[0]} is {len(row[2])} bytes; too big for an entry")
        future: Future[list[int]] = Future()
        self._enqueue([_Item(list(rows), future)])
        return future.result()

    def _end_of_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        items = self._turn.pop(loop, [])
        try:
            self._enqueue(items)
        except LedgerError as exc:
            _resolve_on_loop(
                [(i.waiter.future, (None, exc)) for i in items if isinstance(i.waiter, _LoopWaiter)]
            )

    def _enqueue(self, items: list[_Item]) -> None:
        with self._cv:
            if self._closing:
                raise LedgerClosed(f"ledger {self._name} is closed")
            self._pending.extend(items)
            self._cv.notify()

    def _rows(self, records: Iterable[Record]) -> tuple[list[Row], str | None]:
        """The rows to store, and the latest time the runtime gave them (see :func:`_dated`).
        Any iterable of records is taken (a generator too, read once); one record alone is not,
        though pydantic makes it iterable (its fields), nor text."""
        listed: Sequence[Record]
        if type(records) is list or type(records) is tuple:  # nearly always: no ABC check on the loop
            listed = records
        elif isinstance(records, Record | str | bytes | dict) or not isinstance(records, Iterable):
            raise RecordInvalid(f"append takes a list of records, not {type(records).__name__}")
        else:
            listed = list(records)
        return [self._row(r) for r in listed], _dated(listed)

    def _row(self, record: Record) -> Row:
        if not isinstance(record, Record):  # a raw AttributeError deep in the encoder, before
            raise RecordInvalid(f"append takes records (Intent, Control, ...), not {type(record).__name__}")
        if record.free_form is not None and record.free_form.isdisjoint(_OFFLOADABLE):
            # Nothing in it can move to a blob, or read as a blob reference: its bytes are the
            # record's own, made without a dump when its free-form fields are simple JSON.
            data, kind = entry_bytes(record), record.__dict__["kind"]
            if len(data) > MAX_ENTRY_BYTES:
                raise _too_big(kind, record.id, len(data))
            return record.id, kind, data, merkle.leaf_hash(data), record.causes
        body = record.model_dump(mode="json")
        for field in _OFFLOADABLE:
            value = body.get(field)
            if (
                type(value) is dict
                and value.keys() == {"$blob", "bytes"}
                and type(value["$blob"]) is str
                and type(value["bytes"]) is int
            ):
                # The ledger's own reference to a blob has this shape: a payload written with it
                # would read as one, and verify could not tell the two apart.
                raise RecordInvalid(
                    f"{body['kind']} {body['id']}: a {field} of exactly $blob and bytes is reserved for "
                    "the ledger's blob references; add or rename a key",
                    record=body["kind"],
                )
        data = canonical_bytes(body, walk=record.free_form)
        if len(data) > MAX_ENTRY_BYTES:
            data = canonical_bytes(self._offload(body))
            if len(data) > MAX_ENTRY_BYTES:
                raise _too_big(body["kind"], body["id"], len(data))
        return body["id"], body["kind"], data, merkle.leaf_hash(data), tuple(body.get("causes", ()))

    def _offload(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the free-form payload of an oversized entry by a reference to its digest."""
        for field in _OFFLOADABLE:
            if field in body:
                blob = canonical_bytes(body[field])
                body = {**body, field: {"$blob": self.put_blob(blob), "bytes": len(blob)}}
        return body

    def _write_loop(self) -> None:
        conn: Conn = None
        try:
            while True:
                with self._cv:
                    while not self._pending and not self._closing:
                        self._cv.wait()
                    batch, self._pending = self._pending, []
                if not batch:
                    return
                try:
                    if conn is None:
                        conn = self._reconnect()
                    settlements = self._commit_all(conn, batch)
                except Exception as exc:
                    if conn is None or not self._connection_lost(conn, exc):
                        _settle_all([(item.waiter, None, self._translate(exc)) for item in batch])
                        conn = None if conn is None else self._after_failure(conn)
                        continue
                    # The connection died during the commit: it may or may not have committed.
                    # A new connection tells which items are stored; the rest go again.
                    conn, recovered = self._recover(batch)
                    if recovered is None:
                        continue
                    settlements = recovered
                # A caller that was cancelled while waiting (its task crashed) still had its records
                # committed: they are in the ledger, and Gateway.reconcile finishes what they began.
                _settle_all(settlements)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    _RETRIES = (0.1, 0.3, 1.0)
    """Back-off between attempts to reach the store again after a commit was cut, or before one
    (and then on, up to :attr:`patience` seconds in all)."""

    def _pauses(self) -> Iterator[float]:
        """The back-off before each further attempt to reach the store: ``_RETRIES``, then more
        until :attr:`patience` runs out."""
        deadline = time.monotonic() + self.patience
        yield from self._RETRIES
        while time.monotonic() < deadline:
            yield 1.0

    def _reconnect(self) -> Conn:
        """The writer's connection, tried again with back-off: a store restarting is not a failure
        of the batch waiting for it (nothing of that batch was sent yet). Only a store out of
        reach is waited for up to :attr:`patience`; any other refusal (a wrong password, no such
        database) is tried the few ``_RETRIES`` times and then raised."""
        refused = 0  # only refusals count toward the quick retries, not waits for a store out of reach
        for pause in self._pauses():
            try:
                return self._writer_connection()
            except StoreUnavailable:
                time.sleep(pause)
            except LedgerError:
                refused += 1
                if refused > len(self._RETRIES):
                    raise
                time.sleep(pause)
        return self._writer_connection()

    def _recover(self, batch: list[_Item]) -> tuple[Conn, list[_Settlement] | None]:
        """After a commit was cut: reconnect (with back-off), settle the items it stored and commit
        the others. When the store stays out of reach, every caller learns that the outcome is
        unknown (never that nothing was written), and None is returned."""
        self.recoveries += 1
        last: BaseException | None = None
        for pause in itertools.chain((0.0,), self._pauses()):
            time.sleep(pause)
            conn: Conn = None
            try:
                conn = self._writer_connection()
                return conn, self._commit_all(conn, batch, recovering=True)
            except Exception as exc:
                last = exc
                if conn is not None and not self._connection_lost(conn, exc):
                    _settle_all([(item.waiter, None, self._translate(exc)) for item in batch])
                    return conn, None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
        error = StoreUnavailable(
            f"ledger {self._name}: the connection was lost during a commit and the store stayed out "
            f"of reach ({self._translate(last) if last else 'no answer'}); whether these entries were "
            "stored is unknown until the ledger is read again"
        )
        _settle_all([(item.waiter, None, error) for item in batch])
        return None, None

    def _commit_all(self, conn: Conn, batch: list[_Item], *, recovering: bool = False) -> list[_Settlement]:
        try:
            return self._commit(conn, batch, recovering=recovering)
        except Exception as exc:
            if not self._is_duplicate(exc):
                raise
        # Rare: an id used twice. Fail only its callers and commit everyone else; the common
        # path pays nothing for this check.
        batch = self._refuse_duplicates(conn, batch)
        return self._commit(conn, batch, recovering=recovering) if batch else []

    def _connection_lost(self, conn: Conn, exc: BaseException) -> bool:
        """Whether ``exc`` cut the writer's connection, so that a commit in flight has an
        unknown outcome. An embedded database never loses its connection."""
        return False

    def _split_stored(
        self, conn: Conn, batch: list[_Item], since: int
    ) -> tuple[list[_Settlement], list[_Item]]:
        """Inside the commit that follows a cut one (the head row held): the items that cut commit
        stored (every entry there, byte for byte, in order) are settled with their indexes; the
        others go on. A commit is all or nothing, so an item stored in part means the store was
        changed by hand: its caller is told so."""
        sql = self._sql("SELECT idx, data FROM entries WHERE id = ?")
        stored: list[_Settlement] = []
        again: list[_Item] = []
        for item in batch:
            found = [conn.execute(sql, (row[0],)).fetchone() for row in item.rows]
            # Only what the cut commit could have written counts: rows from before it (an id used
            # twice) go on, to be refused as duplicates there.
            if not item.rows or all(f is None or int(f[0]) < since for f in found):
                again.append(item)
                continue
            indexes = [None if f is None else int(f[0]) for f in found]
            whole = all(
                f is not None and bytes(f[1]) == row[2] for f, row in zip(found, item.rows, strict=True)
            )
            if whole and indexes == list(range(indexes[0] or 0, (indexes[0] or 0) + len(item.rows))):
                stored.append((item.waiter, [int(i or 0) for i in indexes], None))
            else:
                error = LedgerError(
                    f"ledger {self._name}: after a cut commit, {item.rows[0][1]} {item.rows[0][0]} is "
                    "stored in part or elsewhere; run `answerable verify`"
                )
                stored.append((item.waiter, None, error))
        return stored, again

    def _after_failure(self, conn: Conn) -> Conn:
        """The writer's connection after a failed commit: kept by default; a backend whose
        connection may have died returns None to have a new one opened for the next batch."""
        return conn

    def _refuse_duplicates(self, conn: Conn, batch: list[_Item]) -> list[_Item]:
        """Fail only the callers whose entry ids are already used, not everyone sharing the commit."""
        ids = [row[0] for item in batch for row in item.rows]
        taken: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            taken.update(
                r[0] for r in conn.execute(self._sql(f"SELECT id FROM entries WHERE id IN ({marks})"), chunk)
            )
        keep: list[_Item] = []
        refused: list[_Settlement] = []
        seen = set(taken)
        for item in batch:
            mine = [row[0] for row in item.rows]
            clash = [i for i in mine if i in seen] or [i for i in set(mine) if mine.count(i) > 1]
            if clash:
                error = RecordInvalid(
                    f"ledger {self._name} already holds an entry with id {clash[0]}; ids are used once"
                )
                refused.append((item.waiter, None, error))
                continue
            seen.update(mine)
            keep.append(item)
        if refused:
            _settle_all(refused)
        return keep

    def _admit(
        self, conn: Conn, batch: list[_Item], size: int
    ) -> tuple[list[_Item], dict[str, int], list[_Settlement]]:
        """Check each item's fence and guards in order, inside the commit's transaction.

        Items are judged one after another as if each were its own transaction, so two items
        of one group commit guarding the same head cannot both pass.
        """
        admitted: list[_Item] = []
        heads = self._heads(conn, {guard.key for item in batch for guard in item.guards})
        moved: dict[str, int] = {}
        refused: list[_Settlement] = []
        epoch: int | None = None
        lease_read = False
        at = size
        for item in batch:
            if item.fence is not None:
                if not lease_read:
                    row = conn.execute("SELECT epoch, released FROM lease").fetchone()
                    epoch = None if row is None or row[1] else int(row[0])
                    lease_read = True
                if epoch != item.fence:
                    refused.append((item.waiter, None, LeaseLost(item.fence, epoch)))
                    continue
            conflict = None
            for guard in item.guards:
                if heads[guard.key] != guard.expect:
                    conflict = Conflict(guard.key, guard.expect, heads[guard.key])
                    break
            if conflict is not None:
                refused.append((item.waiter, None, conflict))
                continue
            for guard in item.guards:
                if guard.key != CONTROL_HEAD:  # checked only: writers guarded on it do not race
                    heads[guard.key] = moved[guard.key] = at + len(item.rows) - 1
            for n, row in enumerate(item.rows):
                if row[1] == "Control":  # moved unasked, so no stop waits on a writer's guard
                    heads[CONTROL_HEAD] = moved[CONTROL_HEAD] = at + n
            at += len(item.rows)
            admitted.append(item)
        return admitted, moved, refused

    def _heads(self, conn: Conn, keys: set[str]) -> dict[str, int | None]:
        """Where each guarded key's head stands (None: never moved), read in one query for a
        commit's guards rather than one per guard: a governed load guards one key an action."""
        heads: dict[str, int | None] = dict.fromkeys(keys)
        listed = sorted(keys)
        for start in range(0, len(listed), _MOST_KEYS):
            chunk = listed[start : start + _MOST_KEYS]
            # Padded to a power of two with its last key again: a handful of query texts, not one
            # per count, so the drivers' statement caches keep the writer's other statements.
            width = 1 << (len(chunk) - 1).bit_length()
            chunk += chunk[-1:] * (width - len(chunk))
            query = self._heads_texts.get(width)
            if query is None:
                query = self._sql(f"SELECT key, idx FROM guards WHERE key IN ({', '.join('?' * width)})")
                self._heads_texts[width] = query
            for key, idx in conn.execute(query, chunk).fetchall():
                heads[key] = int(idx)
        return heads

    def _commit(self, conn: Conn, batch: list[_Item], *, recovering: bool = False) -> list[_Settlement]:
        size = self._begin_append(conn)
        if not recovering:
            self._cut_at = size  # where this commit's rows go, should its answer be lost
        try:
            if recovering:  # read under the head row: a late COMMIT of the cut one is seen or waited for
                known, batch = self._split_stored(conn, batch, self._cut_at)
                _settle_all(known)  # told now: whatever becomes of the rest, these are stored
            admitted, moved, settlements = self._admit(conn, batch, size)
            flat = [row for item in admitted for row in item.rows]
            stored = self._getter(conn)
            cache = self._frontier

            def get_node(level: int, index: int) -> bytes:
                # Complete subtrees never change in an append-only tree, so a cached one is never stale.
                node = cache.get((level, index))
                return node if node is not None else stored(level, index)

            nodes = merkle.append_leaves(size, (r[3] for r in flat), get_node)
            cur = conn.cursor()  # both drivers' cursors have executemany
            self._insert(cur, "entries", [(size + n, r[0], r[1], r[2], r[3]) for n, r in enumerate(flat)])
            self._insert(cur, "nodes", [n for n in nodes if n[0] > 0])
            # An entry may cite one id twice; the index holds the pair once.
            self._insert(
                cur, "causes", list(dict.fromkeys((c, size + n) for n, r in enumerate(flat) for c in r[4]))
            )
            dated = max((i.dated for i in admitted if i.dated is not None), default=None)
            if dated is not None and not self._latest_kept:
                dated = _seeded(conn, self._sql, size, dated)
            if moved:
                cur.executemany(
                    self._sql(
                        "INSERT INTO guards VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET idx = excluded.idx"
                    ),
                    list(moved.items()),
                )
            self._end_append(conn, size + len(flat), dated)
            conn.execute("COMMIT")
            self._latest_kept = self._latest_kept or dated is not None
        except BaseException:
            with contextlib.suppress(Exception):  # a dead connection has nothing to roll back
                conn.execute("ROLLBACK")
            raise
        made = {(level, index): h for level, index, h in nodes}
        self._frontier = {
            (level, index): h
            for level, index, h in merkle.roots_for_size(
                size + len(flat), lambda lv, i: made.get((lv, i)) or get_node(lv, i)
            )
        }
        start = size
        for item in admitted:
            settlements.append((item.waiter, list(range(start, start + len(item.rows))), None))
            start += len(item.rows)
        return settlements

    def _insert(self, cur: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert new rows into one of the log's tables (a backend may stream them instead).

        Many rows to a statement, not one: ``executemany`` runs the statement once per row, and
        a group commit of a governed load writes some fifteen rows an action. Statements take a
        power of two of rows, at most 64, so a handful of statement texts serve every batch (the
        driver caches each prepared one) and no statement nears SQLite's limit on parameters."""
        start, count = 0, len(rows)
        while start < count:
            size = min(_MOST_ROWS, 1 << ((count - start).bit_length() - 1))
            chunk = rows[start : start + size]
            cur.execute(self._insert_sql(table, len(chunk[0]), size), [v for row in chunk for v in row])
            start += size

    def _insert_sql(self, table: str, width: int, size: int) -> str:
        key = (table, width, size)
        found = self._insert_texts.get(key)
        if found is None:
            one = "(" + ", ".join("?" * width) + ")"
            found = self._sql(f"{self._INSERT_ROWS} INTO {table} VALUES {', '.join([one] * size)}")
            self._insert_texts[key] = found
        return found

    def _getter(self, conn: Conn) -> merkle.GetNode:
        leaf = self._sql("SELECT leaf_hash FROM entries WHERE idx = ?")
        node = self._sql("SELECT hash FROM nodes WHERE level = ? AND i = ?")

        def get_node(level: int, index: int) -> bytes:
            if level == 0:
                row = conn.execute(leaf, (index,)).fetchone()
            else:
                row = conn.execute(node, (level, index)).fetchone()
            if row is None:
                raise LedgerError(
                    f"ledger is missing tree node (level {level}, index {index}); run `answerable verify`"
                )
            return bytes(row[0])

        return get_node

    def latest_time(self) -> int | None:
        """The latest time, in nanoseconds since the epoch, that the runtime's clock gave an
        entry it appended (records their signers date are left out: ``Record.dated_by_signer``);
        None for a ledger that has appended nothing since the store began keeping it.

        Kept by the store in each commit's own transaction, as a maximum: an entry appended
        later by a process whose clock is behind does not lower it, so every process reads the
        furthest any clock writing here had come (the review clock is floored at it)."""
        row = self._read(lambda c: c.execute("SELECT value FROM meta WHERE key = 'latest_time'").fetchone())
        if row is None:
            return None
        try:
            return parse_rfc3339(str(row[0]))
        except ValueError:
            return None  # not written by this code: no floor rather than a wrong one

    # --- guards and the lease -------------------------------------------------------------------

    def head(self, key: str) -> int | None:
        if key_text(key) is None:  # no head can have been moved under it
            return None
        sql = self._sql("SELECT idx FROM guards WHERE key = ?")
        row = self._read(lambda c: c.execute(sql, (key,)).fetchone())
        return None if row is None else int(row[0])

    def _lease_read(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` where the lease is read (a backend may keep a connection for it)."""
        return self._read(fn)

    def lease(self) -> LeaseRow | None:
        row = self._lease_read(
            lambda c: c.execute(
                "SELECT holder, epoch, beat, pid, host, since, process, released FROM lease"
            ).fetchone()
        )
        if row is None:
            return None
        holder, epoch, beat, pid, host, since, process, released = row
        return LeaseRow(holder, epoch, beat, pid, host, since, process, released=bool(released))

    # --- reading --------------------------------------------------------------------------------

    def size(self) -> int:
        return int(
            self._read(lambda c: c.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()[0])
        )

    def entry(self, index: int) -> StoredEntry:
        """The entry at ``index``.

        Raises:
            EntryNotFound: no entry is there, as for any index past the end, however large, and
                for anything that is not a whole number.
        """
        if not _whole(index) or not 0 <= index <= _INT64_MAX:
            raise EntryNotFound(index)
        sql = self._sql("SELECT idx, id, kind, data FROM entries WHERE idx = ?")
        row = self._read(lambda c: c.execute(sql, (index,)).fetchone())
        if row is None:
            raise EntryNotFound(index)
        return _stored(row)

    def find(self, entry_id: str) -> StoredEntry:
        """The entry with id ``entry_id``.

        Raises:
            EntryNotFound: no entry has it; so for anything no id can be (not text, a NUL, a lone
                surrogate), which the drivers would otherwise raise on each in its own way.
        """
        if key_text(entry_id) is None:
            raise EntryNotFound(entry_id)
        sql = self._sql("SELECT idx, id, kind, data FROM entries WHERE id = ?")
        row = self._read(lambda c: c.execute(sql, (entry_id,)).fetchone())
        if row is None:
            raise EntryNotFound(entry_id)
        return _stored(row)

    def unknown(self, entry_ids: Sequence[str]) -> list[str]:
        """Those of ``entry_ids`` no entry has (anything no id can be among them), in one query:
        what an intent's causes cost the gateway to check, however many it cites."""
        asked = [i for i in entry_ids if key_text(i) is not None]
        known: set[str] = set()
        if asked:
            marks = ", ".join("?" * len(asked))
            sql = self._sql(f"SELECT id FROM entries WHERE id IN ({marks})")  # the ids go as parameters
            known = {row[0] for row in self._read(lambda c: c.execute(sql, asked).fetchall())}
        return [i for i in entry_ids if i not in known]

    def entries(self, start: int = 0, stop: int | None = None) -> list[StoredEntry]:
        """The entries from ``start`` up to ``stop`` (None: the end); a range past the end, however
        far, holds none.

        Raises:
            EntryNotFound: ``start`` or ``stop`` is not a whole number (no entry is there).
        """
        stop = self.size() if stop is None else stop
        for bound in (start, stop):
            if not _whole(bound):
                raise EntryNotFound(bound)
        sql = self._sql("SELECT idx, id, kind, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx")
        rows = self._read(lambda c: c.execute(sql, (_bounded(start), _bounded(stop))).fetchall())
        return [_stored(r) for r in rows]

    def of_kind(self, kind: str, after: int = -1) -> list[StoredEntry]:
        """The entries of ``kind`` after index ``after``, in order; none for a kind no entry can
        have (see :meth:`find`) or after an index past the end, however far.

        Raises:
            EntryNotFound: ``after`` is not a whole number (no entry is there).
        """
        if not _whole(after):
            raise EntryNotFound(after)
        if key_text(kind) is None:
            return []
        sql = self._sql("SELECT idx, id, kind, data FROM entries WHERE kind = ? AND idx > ? ORDER BY idx")
        rows = self._read(lambda c: c.execute(sql, (kind, _bounded(after))).fetchall())
        return [_stored(r) for r in rows]

    def caused_by(self, entry_id: str) -> list[StoredEntry]:
        """The entries that cite ``entry_id``; none for anything no id can be (see :meth:`find`)."""
        if key_text(entry_id) is None:
            return []
        sql = self._sql(
            "SELECT e.idx, e.id, e.kind, e.data FROM causes k JOIN entries e ON e.idx = k.idx "
            "WHERE k.cause = ? ORDER BY e.idx"
        )
        rows = self._read(lambda c: c.execute(sql, (entry_id,)).fetchall())
        return [_stored(r) for r in rows]

    # --- proofs ---------------------------------------------------------------------------------

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the first ``size`` entries (None: all of them).

        Raises:
            ProofRequestInvalid: ``size`` is past the ledger's size, negative or not a whole number.
        """
        return self._read(lambda c: self._tree(c, size, merkle.root_hash))

    def hashes(self, height: int, start: int, stop: int) -> list[bytes]:
        """See :meth:`LedgerStore.hashes`.

        Raises:
            ProofRequestInvalid: ``height``, ``start`` or ``stop`` is not a whole number, the range
                is negative or reversed, or it reaches past the tree (however far).
            LedgerError: hashes inside the tree are missing (see ``answerable verify``).
        """
        _check_whole("tile hashes", height=height, start=start, stop=stop)
        if height < 0 or start < 0 or stop < start:
            raise ProofRequestInvalid(
                f"tile hashes of height {height} from {start} to {stop}: want a height and a start of "
                "at least 0 and a stop no smaller than the start"
            )
        bounds = (_bounded(start), _bounded(stop))
        if height == 0:
            sql, args = "SELECT leaf_hash FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", bounds
        else:
            sql = "SELECT hash FROM nodes WHERE level = ? AND i >= ? AND i < ? ORDER BY i"
            args = (_bounded(height), *bounds)  # type: ignore[assignment]
        rows = self._read(lambda c: c.execute(self._sql(sql), args).fetchall())
        if len(rows) != stop - start:
            held = self.size() >> height  # the complete subtrees of that height (the size only grows)
            if stop > held:
                raise ProofRequestInvalid(
                    f"tile hashes of height {height} up to {stop} are past the tree: it holds {held} "
                    "complete subtrees of that height"
                )
            raise LedgerError(
                f"ledger {self._name} holds {len(rows)} of the {stop - start} hashes of height {height} "
                f"from {start}; run `answerable verify`"
            )
        return [bytes(r[0]) for r in rows]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The proof that leaf ``index`` is in the tree of ``size`` entries (None: all of them).

        Raises:
            ProofRequestInvalid: ``index`` or ``size`` is outside the tree or not a whole number.
        """
        _check_whole("inclusion proof", index=index)
        return self._read(lambda c: self._tree(c, size, lambda n, get: merkle.inclusion_proof(index, n, get)))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The proof that the tree of ``size1`` entries is a prefix of the tree of ``size2``.

        Raises:
            ProofRequestInvalid: a size is past the ledger's, out of order or not a whole number.
        """
        _check_whole("consistency proof", size1=size1, size2=size2)
        return self._read(
            lambda c: self._tree(c, size2, lambda n, get: merkle.consistency_proof(size1, n, get))
        )

    def _tree(self, conn: Conn, size: int | None, compute: Callable[[int, merkle.GetNode], T]) -> T:
        """``compute(n, get_node)`` over the tree of ``size`` entries (None: all of them)."""
        return compute(*self._sized(conn, size))

    def _sized(self, conn: Conn, size: int | None) -> tuple[int, merkle.GetNode]:
        """A tree size no larger than the ledger, and a reader of its nodes on ``conn``.

        Complete subtrees never change, so reading nodes after the size was read is consistent."""
        if size is not None:
            _check_whole("tree", size=size)
        current = int(conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()[0])
        n = current if size is None else size
        if n < 0 or n > current:
            raise ProofRequestInvalid(f"tree size {n} is past the ledger's size {current}")
        return n, self._getter(conn)

    def _head_now(self) -> note.Checkpoint:
        """The unsigned checkpoint of the ledger as it is now."""

        def head(conn: Conn) -> note.Checkpoint:
            size, root = self._tree(conn, None, lambda n, get: (n, merkle.root_hash(n, get)))
            return note.Checkpoint(origin=self.origin, size=size, root_hash=root)

        return self._read(head)

    def latest_checkpoint(self) -> str | None:
        row = self._read(
            lambda c: c.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        )
        return None if row is None else str(row[0])

    # --- copying --------------------------------------------------------------------------------

    def identity(self) -> tuple[note.Signer | None, str]:
        """The checkpoint signer (None when its key file is absent) and the verifier key."""
        return self._signer, self._verifier

    def side_tables(self, size: int) -> SideTables:
        """What a copy of the first ``size`` entries needs beside them: blobs, checkpoints that
        cover no more, guarded heads inside them, the lease (to be copied as released, so its
        epoch keeps counting up), nonces and the metadata a migration left."""

        def read(conn: Conn) -> SideTables:
            def rows(statement: str, *args: object) -> list[tuple[Any, ...]]:
                return [tuple(r) for r in conn.execute(self._sql(statement), args).fetchall()]

            lease = rows("SELECT holder, epoch, beat, pid, host, since, process FROM lease")
            return SideTables(
                blobs=[
                    (digest, _verify.stored_bytes(data))
                    for digest, data in rows("SELECT digest, data FROM blobs ORDER BY digest")
                ],
                checkpoints=rows("SELECT size, note FROM checkpoints WHERE size <= ? ORDER BY size", size),
                guards=rows("SELECT key, idx FROM guards WHERE idx < ? ORDER BY key", size),
                lease=lease[0] if lease else None,
                nonces=self._nonce_rows(conn),
                meta=rows(
                    "SELECT key, value FROM meta WHERE key NOT IN "
                    "('format', 'version', 'origin', 'verifier_key') ORDER BY key"
                ),
            )

        return self._read(read)

    def mark_copied(self) -> None:
        """Name this copy (made an unfinished copy, see ``identity`` in ``open``) a ledger, once whole.

        Raises:
            LedgerError: it was not an unfinished copy (nothing is changed).
        """
        sql = self._sql("UPDATE meta SET value = ? WHERE key = 'format' AND value = ?")
        if self._short_write(lambda c: c.execute(sql, (LEDGER_FORMAT, UNFINISHED_COPY)).rowcount) != 1:
            raise LedgerError(f"ledger {self._name}: it is not an unfinished copy; nothing was changed")

    @abstractmethod
    def discard(self) -> None:
        """Remove, once closed, what creating this ledger made: for a copy that did not finish."""

    def _nonce_rows(self, conn: Conn) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in conn.execute("SELECT key, created FROM nonces ORDER BY key").fetchall()]

    def put_side_tables(self, side: SideTables) -> None:
        """Write what :meth:`side_tables` read into this (new) ledger, in one transaction."""

        def put(conn: Conn) -> None:
            cur = conn.cursor()
            for table, rows in (
                ("blobs", side.blobs),
                ("checkpoints", side.checkpoints),
                ("guards", side.guards),
                ("meta", side.meta),
            ):
                if rows:
                    cur.executemany(
                        self._sql(f"INSERT INTO {table} VALUES (?, ?) ON CONFLICT DO NOTHING"), rows
                    )
            if side.nonces:
                self._prepare_nonces(conn)
                cur.executemany(
                    self._sql("INSERT INTO nonces VALUES (?, ?) ON CONFLICT DO NOTHING"), side.nonces
                )
            if side.lease is not None:
                conn.execute(
                    self._sql("INSERT INTO lease VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)"), (*side.lease, True)
                )

        self._short_write(put)

    @abstractmethod
    def _prepare_nonces(self, conn: Conn) -> None:
        """Make sure the nonce table exists (SQLite creates it on first use)."""

    def _stop_writer(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        if self._writer.is_alive():
            self._writer.join()


@dataclass(frozen=True, slots=True)
class SideTables:
    """The rows beside the log that a copy carries over (see :meth:`SQLLedger.side_tables`)."""

    blobs: list[tuple[Any, ...]]
    checkpoints: list[tuple[Any, ...]]
    guards: list[tuple[Any, ...]]
    lease: tuple[Any, ...] | None
    nonces: list[tuple[Any, ...]]
    meta: list[tuple[Any, ...]]


def load_signer(key_file: Path, origin: str, verifier: str) -> tuple[note.Signer | None, str | None]:
    """The checkpoint signer a ledger's key file holds, or None and why it may not sign.

    A key file that is not this ledger's (copied from another ledger, say) is never used: every
    checkpoint it signed would fail verification and the ledger could not be vouched for again.
    It does not stop the ledger opening, so it can still be read and verified; only signing is
    refused, with the reason.

    Raises:
        ConfigError: the key file cannot be read as a key.
    """
    if not key_file.exists():
        return None, None
    if not key_file.is_file():
        return None, f"the ledger key {key_file} is not a file"
    try:
        hexed = read_capped(key_file, _KEY_FILE_MAX).decode("ascii").strip()
        signer = note.Signer.from_private_bytes(origin, bytes.fromhex(hexed))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"ledger key file {key_file} is damaged: {exc}") from exc
    if signer.verifier_key() != verifier:
        return None, (
            f"the ledger key {key_file} is another ledger's: it signs as {signer.verifier_key()}, "
            f"this ledger's checkpoints verify with {verifier}"
        )
    return signer, None


def fresh_identity(origin: str) -> tuple[note.Signer | None, str]:
    """A new checkpoint signing key for a new ledger, and its verifier key."""
    signer = note.Signer.generate(origin)
    return signer, signer.verifier_key()


_INT64_MAX = (1 << 63) - 1
"""The largest index SQL stores (a signed 64-bit integer); SQLite refuses to bind a larger one."""


def _whole(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a whole number (not a bool, which SQLite and PostgreSQL bind apart)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _bounded(value: int) -> int:
    """``value`` brought within SQL's 64-bit integers: an index past them is past every entry the
    ledger can hold, so the query answers the same, and SQLite has no OverflowError to raise."""
    return max(-_INT64_MAX - 1, min(value, _INT64_MAX))


def key_text(value: object) -> str | None:
    """``value`` when a stored id, key or digest could equal it; None when none could: it is not
    a string, holds a NUL (PostgreSQL text cannot) or is not UTF-8 (a lone surrogate, which no
    driver can send). A lookup of such a value finds nothing, the same on both backends."""
    if not isinstance(value, str) or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _check_whole(what: str, **numbers: object) -> None:
    """Refuse a size or index that is not a whole number, before any query or tree walk uses it.

    Raises:
        ProofRequestInvalid: naming the first that is not.
    """
    for name, value in numbers.items():
        if not _whole(value):
            kind = type(value).__name__
            raise ProofRequestInvalid(f"{what} {name} {value!r:.40} is not a whole number ({kind})")


def nonce_time(created: object) -> int:
    """``created``, when it is a time in seconds a nonce row can hold.

    Raises:
        RecordInvalid: it is not a whole number, or is beyond SQL's 64-bit integers.
    """
    if not _whole(created) or not -_INT64_MAX - 1 <= created <= _INT64_MAX:
        raise RecordInvalid(f"a nonce's time {created!r} is not a whole number of seconds", record="nonce")
    return created


def stored_text(value: object, what: str) -> str:
    """``value``, when it can be written as text on every backend.

    Raises:
        RecordInvalid: it is not a string, holds a NUL or is not UTF-8 (nothing is written).
    """
    if not isinstance(value, str):
        raise RecordInvalid(f"a {what} is text, not {type(value).__name__}", record=what)
    if key_text(value) is None:
        why = "a NUL" if "\x00" in value else "a lone surrogate (not UTF-8)"
        raise RecordInvalid(f"{what} {value!r} holds {why}: only UTF-8 text without NUL is kept", record=what)
    return value


def blob_bytes(data: object) -> bytes:
    """``data`` as the bytes a blob holds.

    Raises:
        RecordInvalid: it is not bytes (text must be encoded by whoever knows its encoding).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise RecordInvalid(f"a blob holds bytes, not {type(data).__name__}: encode it first", record="blob")
    return bytes(data)


def file_path(value: object, what: str) -> Path:
    """``value`` as a path this system can name, checked before anything is made there.

    Raises:
        ConfigError: it is not a path, holds a NUL byte or is not a name the file system can
            encode (a lone surrogate): no file can have that name.
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a file name, not {type(value).__name__}")
    if "\x00" in value:
        raise ConfigError(f"{what} {value!r} holds a NUL byte: no file can have that name")
    try:
        os.fsencode(value)
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{what} {value!r} is not a name this system can hold ({exc.reason})") from exc
    return Path(value)


def new_origin(origin: str | None) -> str:
    """The origin of a ledger being made: the one given, else a fresh one. Checked before anything
    is made: an origin no checkpoint can carry would make a ledger that fails every checkpoint
    and every open after this one.

    Raises:
        ConfigError: see :func:`note.check_origin`.
    """
    return note.check_origin(f"answerable.local/{uuid.uuid4().hex[:16]}" if origin in (None, "") else origin)


@contextlib.contextmanager
def key_for(
    key_file: Path, signer: note.Signer | None, *, copied: bool, folder: bool = False
) -> Iterator[None]:
    """The signing key of a ledger being made, written for the block that makes the ledger: a
    key this call wrote does not outlive a ledger that was not made (a copy of another ledger's
    key beside a file that is no ledger). ``folder``: make the key's folder if need be.

    Raises:
        ConfigError: see :func:`write_key`.
    """
    made = signer is not None and write_key(key_file, signer, copied=copied, folder=folder)
    try:
        yield
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                key_file.unlink(missing_ok=True)
        raise


def write_key(key_file: Path, signer: note.Signer, *, copied: bool, folder: bool = False) -> bool:
    """Write the signing key of a ledger being made (mode 0600); whether this call wrote it.

    Never over a file: whatever sits there (a person's private key, another ledger's key, another
    ledger, a link) is not this call's to replace, and a signing key destroyed cannot be had
    again. A copy's key (``copied``) may find the very same key there already: it is used as it
    is. ``folder``: make the key's folder (mode 0700) if need be.

    Raises:
        ConfigError: naming the path, when a file is there or the key cannot be written.
    """
    text = signer.private_bytes().hex()
    try:
        if folder:
            key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        _refuse_taken(key_file, text, copied=copied, cause=exc)
        return False
    except OSError as exc:
        raise ConfigError(f"cannot create the signing key {key_file}: {exc.strerror}") from exc
    try:  # made by this call: a failure removes it, so no empty key is left to refuse the next try
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text + "\n")
    except BaseException as exc:
        with contextlib.suppress(OSError):
            key_file.unlink()
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write the signing key {key_file}: {exc.strerror or exc}") from exc
        raise
    return True


def check_key_place(key_file: Path, signer: note.Signer, *, folder: bool = False) -> None:
    """Refuse now a place :func:`write_key` would refuse for a copy's key, so that a copy whose
    key is written only once its ledger is whole is refused before it begins, not after.

    Raises:
        ConfigError: as :func:`write_key`.
    """
    if os.path.lexists(key_file):
        _refuse_taken(key_file, signer.private_bytes().hex(), copied=True, cause=None)
    elif not folder and not key_file.absolute().parent.is_dir():
        raise ConfigError(f"cannot create the signing key {key_file}: its folder does not exist")


def _refuse_taken(key_file: Path, text: str, *, copied: bool, cause: BaseException | None) -> None:
    """Return when a copy's key finds its very key there already; else refuse the place."""
    if copied and _holds_key(key_file, text):
        return
    if not key_file.is_file():  # /dev/full, a folder: nothing a key can be kept in
        raise ConfigError(f"{key_file} is not a file a signing key can be kept in") from cause
    if copied:
        raise ConfigError(f"{key_file} holds another ledger key; give another --signing-key path") from cause
    raise ConfigError(
        f"the signing key {key_file} exists already (perhaps left by a ledger deleted there): a new "
        "ledger never writes over a file, which may be a key; move it away, or give another path "
        "(signing_key=, --signing-key)"
    ) from cause


def _holds_key(key_file: Path, text: str) -> bool:
    try:
        return read_capped(key_file, _KEY_FILE_MAX).strip() == text.encode()
    except OSError:  # a directory, unreadable, endless (/dev/zero): not this key
        return False


def _stored(row: tuple[Any, ...]) -> StoredEntry:
    index, entry_id, kind, data = row
    return StoredEntry(index, entry_id, kind, data if type(data) is bytes else _verify.stored_bytes(data))


class SQLView:
    """The raw rows verification needs, read in index order inside the caller's read transaction.

    The key and origin are read from the database as it is now, not as it was when the ledger was
    opened: a key replaced since must be seen by the next verification. A backend whose driver
    loads a whole result at once overrides :meth:`_batches` to stream it.
    """

    def __init__(self, conn: Conn, sql: Callable[[str], str]) -> None:
        self.conn = conn
        self._sql = sql
        meta = dict(
            conn.execute("SELECT key, value FROM meta WHERE key IN ('verifier_key', 'origin')").fetchall()
        )
        self.verifier = str(meta.get("verifier_key", ""))
        self.origin = str(meta.get("origin", ""))

    def _batches(self, sql: str, args: tuple[Any, ...], size: int) -> Iterator[list[Any]]:
        cur = self.conn.execute(self._sql(sql), args)
        while rows := cur.fetchmany(size):
            yield rows

    def leaves(self) -> Iterator[list[tuple[int, str, str, bytes, bytes]]]:
        # Small batches: what one batch allocates stays in the CPU's caches and the allocator's
        # free lists while it is checked (reading and hashing 200,000 entries took 0.86 s 8,192
        # rows at a time, 0.50 s 256 at a time).
        sql = "SELECT idx, id, kind, data, leaf_hash FROM entries ORDER BY idx"
        yield from self._batches(sql, (), 256)

    def rows(self, start: int, stop: int) -> Iterator[tuple[int, str, bytes]]:
        sql = "SELECT idx, id, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx"
        for rows in self._batches(sql, (start, stop), 4096):
            yield from rows

    def causes_by_index(self) -> Iterator[tuple[int, str]]:
        for rows in self._batches("SELECT idx, cause FROM causes ORDER BY idx", (), 8192):
            yield from rows

    def blobs(self) -> Iterator[tuple[str, bytes]]:
        for rows in self._batches("SELECT digest, data FROM blobs ORDER BY digest", (), 64):
            yield from rows

    def level(self, level: int) -> list[tuple[int, bytes]]:
        sql = self._sql("SELECT i, hash FROM nodes WHERE level = ? ORDER BY i")
        return list(self.conn.execute(sql, (level,)).fetchall())

    def nodes(self, level: int) -> Iterator[list[tuple[int, bytes]]]:
        yield from self._batches("SELECT i, hash FROM nodes WHERE level = ? ORDER BY i", (level,), 1024)

    def max_level(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(MAX(level), 0) FROM nodes").fetchone()[0])

    def checkpoints(self) -> list[tuple[int, str]]:
        return list(self.conn.execute("SELECT size, note FROM checkpoints ORDER BY size").fetchall())

    def causes(self) -> Iterator[list[tuple[str, int]]]:
        yield from self._batches("SELECT cause, idx FROM causes", (), 1024)

    def id_at(self, index: int) -> str | None:
        row = self.conn.execute(self._sql("SELECT id FROM entries WHERE idx = ?"), (index,)).fetchone()
        return None if row is None else str(row[0])


def _settle_all(settlements: list[_Settlement]) -> None:
    """Resolve thread waiters directly and each loop's waiters with one wake-up of that loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[list[int]], _Outcome]]] = {}
    for waiter, result, error in settlements:
        if isinstance(waiter, _LoopWaiter):
            by_loop.setdefault(waiter.loop, []).append((waiter.future, (result, error)))
            continue
        try:  # the caller may have given up at any moment, hence the guard
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(result or [])
        except InvalidStateError:
            pass
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve_on_loop, items)


def _too_big(kind: str, entry_id: str, size: int) -> RecordInvalid:
    return RecordInvalid(
        f"{kind} {entry_id} is {size} bytes; an entry must stay under "
        f"{MAX_ENTRY_BYTES + 1} bytes (only the payload of an event or message moves to a blob)",
        record=kind,
    )


def _resolve_on_loop(items: list[tuple[asyncio.Future[list[int]], _Outcome]]) -> None:
    for future, (result, error) in items:
        if future.done():  # cancelled: its task gave up (the records are committed all the same)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or [])


_FIXED = len("2026-01-01T00:00:00.000000Z")
_WRITTEN_SECOND = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-5][0-9]:[0-5][0-9]\.")
"""The shape :func:`rfc3339` writes up to the microseconds, ASCII digits only (the records'
pattern takes any script's)."""


def _written(at: str) -> bool:
    """Whether ``at`` is a time as :func:`rfc3339` writes it (six ASCII digits of microseconds
    and ``Z`` after the second) of a second the calendar has. The second is checked once per
    second (cached): checked whole for each record, it cost 1.6 µs a record, four an action."""
    return len(at) == _FIXED and at.isascii() and at[20:26].isdigit() and at[26] == "Z" and _second(at[:20])


@functools.lru_cache(maxsize=1024)
def _second(prefix: str) -> bool:
    return _WRITTEN_SECOND.fullmatch(prefix) is not None and on_the_calendar(prefix)


_SEED_PAGE = 256
"""Entries read back at a time, once, for the latest time of a ledger that keeps none yet."""
_SIGNED_KINDS = "('Message', 'Approval', 'SystemCharter', 'RulesetVersion')"
"""Kinds their signers always date (``Record.dated_by_signer``), passed over by the seed's
query: messages are most of a busy ledger's entries. Any other kind is decoded and asked."""


def _seeded(conn: Conn, sql: Callable[[str], str], size: int, dated: str) -> str:
    """The latest time to keep in a store that keeps none yet (a ledger an earlier version
    wrote, appended to by this one for the first time): the later of ``dated`` and the time the
    runtime gave the newest entry it dated before this commit. Unseeded, the first append by a
    clock behind set the floor below what the ledger already said (the newest entry floored
    review clocks until then), and a lapsed approval counted again (found by an independent
    review). Read back a page at a time until one is found: once per process."""
    if conn.execute("SELECT value FROM meta WHERE key = 'latest_time'").fetchone() is not None:
        return dated
    query = sql(
        "SELECT idx, data FROM entries WHERE idx < ? AND kind NOT IN "
        + _SIGNED_KINDS
        + " ORDER BY idx DESC LIMIT ?"
    )
    before = size  # this commit's own rows are from here on
    while True:
        rows = conn.execute(query, (before, _SEED_PAGE)).fetchall()
        for _, data in rows:
            try:
                newest = _dated([decode_entry(_verify.stored_bytes(data))])
            except (RecordInvalid, ValueError):  # verify names a damaged entry; it dates nothing
                continue
            if newest is not None:
                return max(newest, dated)
        if len(rows) < _SEED_PAGE:
            return dated
        before = int(rows[-1][0])


def _dated(records: Sequence[Record]) -> str | None:
    """The latest ``at`` among records the runtime dated itself, as :func:`rfc3339` writes it
    (fixed width, so the text sorts as the time, in Python and in SQL); None if it dated none.
    Compared as text, not parsed: parsing cost 4 µs an append, on the event loop."""
    times = [record.at for record in records if not record.dated_by_signer]
    if not times:
        return None
    newest = max(times)
    if _written(newest):
        # Nearly always: every other time sorts below it as text, and none reads as a later time
        # (times of a record's shape share their first 19 characters' layout; a shorter fraction
        # or none sorts above, at its Z), so checking the rest changes nothing.
        return newest
    latest = None
    for record in records:
        if not record.dated_by_signer:
            at = record.at
            # Dated by hand, not by rfc3339: made so. A time in other digits, one the calendar
            # lacks (an hour 99, February 30), or one of another shape (a record made with
            # model_construct skips the pattern) sorted as text above the times after it and held
            # the latest time unreadable: parsed, it moves nothing.
            if not _written(at):
                try:
                    at = rfc3339(parse_rfc3339(at))
                except ValueError:  # a date no calendar has: it moves nothing
                    continue
            if latest is None or at > latest:
                latest = at
    return latest
