"""The embedded ledger backend: one SQLite file in WAL mode, durable group commit.

Layout: ``entries`` holds each leaf's exact canonical bytes and leaf hash; ``nodes`` the hash of
every complete subtree above the leaves, so that a proof reads O(log n) rows; ``causes`` indexes
who-cites-whom for provenance; ``checkpoints`` the signed tree heads; ``blobs`` payloads too big
for an entry. The signing key sits beside the file (``LEDGER.key``), not in it, so that whoever
can write the database cannot also sign a rewritten history.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from answerable._canonical import canonical_bytes
from answerable.errors import (
    ConfigError,
    Conflict,
    EntryNotFound,
    LeaseLost,
    LedgerError,
    NotALedger,
    ProofRequestInvalid,
    RecordInvalid,
)
from answerable.ledger import _verify, merkle, note
from answerable.ledger.base import MAX_ENTRY_BYTES, Guard, LeaseRow, StoredEntry, VerifyReport
from answerable.records import Record

if TYPE_CHECKING:  # at run time asyncio is imported by append, the one coroutine: a CLI halt never is
    import asyncio

__all__ = ["SQLiteLedger"]

_FORMAT = "answerable-ledger"
_FORMAT_VERSION = "2"
_READABLE_VERSIONS = ("1", "2")
"""Version 1 (before leases and claims) is migrated in place on open; see :func:`_migrate`."""
_V2_TABLES = """
CREATE TABLE IF NOT EXISTS lease (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    holder TEXT NOT NULL, epoch INTEGER NOT NULL, beat INTEGER NOT NULL, pid INTEGER NOT NULL,
    host TEXT NOT NULL, since TEXT NOT NULL, process TEXT NOT NULL, released INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS guards (key TEXT PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;
"""
_SCHEMA = (
    """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE entries (
    idx INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE INDEX entries_by_kind ON entries (kind, idx);
CREATE TABLE nodes (level INTEGER NOT NULL, i INTEGER NOT NULL, hash BLOB NOT NULL,
                    PRIMARY KEY (level, i)) WITHOUT ROWID;
CREATE TABLE causes (cause TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (cause, idx)) WITHOUT ROWID;
CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL);
CREATE TABLE blobs (digest TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
"""
    + _V2_TABLES
)
_OFFLOADABLE = ("payload",)
"""Only what agents and the world say may move to a blob; an Intent's arguments are what was
judged and approved, so they stay in the entry (an oversized intent is refused instead)."""

T = TypeVar("T")
_Row = tuple[str, str, bytes, bytes, tuple[str, ...]]


@dataclass(slots=True)
class _Item:
    """One caller's append: its rows, who waits for it, and the conditions it commits under."""

    rows: list[_Row]
    waiter: _Waiter
    fence: int | None = None
    guards: tuple[Guard, ...] = ()


def _key_path(path: Path) -> Path:
    return path.with_name(path.name + ".key")


class SQLiteLedger:
    """An answerable ledger in one SQLite file.

    Appends from any thread or coroutine are handed to one writer thread, which commits
    everything that arrived while the previous commit was in flight in one transaction with
    ``synchronous=FULL`` (group commit) and only then resolves the callers' futures.
    """

    def __init__(
        self,
        path: Path,
        *,
        signer: note.Signer | None,
        origin: str,
        verifier: str,
        key_path: Path | None = None,
    ) -> None:
        self.path = path
        self.key_path = key_path or _key_path(path)
        self.origin = origin
        self._signer = signer
        self._verifier = verifier
        self._read_lock = threading.Lock()
        self._reader = _connect(path)
        self._nonces: sqlite3.Connection | None = None
        self._nonce_lock = threading.Lock()
        self._nonce_calls = 0
        self._pending: list[_Item] = []
        self._turn: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        self._frontier: dict[tuple[int, int], bytes] = {}
        """The right edge of the tree after the last commit: the next commit's left siblings."""
        self._cv = threading.Condition()
        self._closing = False
        self._writer = threading.Thread(
            target=self._write_loop, name=f"ledger-writer:{path.name}", daemon=True
        )
        self._writer.start()

    # --- opening --------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        origin: str | None = None,
        signing_key: str | os.PathLike[str] | None = None,
    ) -> SQLiteLedger:
        """Open a ledger, creating it (and its signing key) when ``create`` is set and it is absent.

        ``signing_key`` is where the checkpoint signing key lives (created with mode 0600); by
        default beside the database as ``LEDGER.key``. It need not sit beside the database, and
        should not where whoever can write the database must not also be able to sign.

        A ledger of format version 1 is migrated in place to version 2 (two tables added, nothing
        in the Merkle log changes) and the migration is recorded in its metadata.

        Raises:
            NotALedger: the file exists but is not an answerable ledger, or does not exist and
                ``create`` is false.
        """
        p = Path(path)
        if not p.exists():
            if not create:
                raise NotALedger(str(p), "no such file")
            return cls._create(p, origin, Path(signing_key) if signing_key else _key_path(p))
        try:
            with open(p, "rb") as handle:
                magic = handle.read(16)
        except OSError as exc:
            raise NotALedger(str(p), str(exc)) from exc
        if magic != b"SQLite format 3\x00":
            raise NotALedger(str(p), "it is not an SQLite database")
        meta = _probe_meta(p)
        if meta.get("format") != _FORMAT:
            raise NotALedger(str(p), "its metadata does not name the answerable ledger format")
        if meta.get("version") not in _READABLE_VERSIONS:
            known = ", ".join(_READABLE_VERSIONS)
            raise NotALedger(str(p), f"format version {meta.get('version')!r} is not one of {known}")
        missing = [k for k in ("origin", "verifier_key") if not meta.get(k)]
        if missing:
            raise NotALedger(str(p), f"its metadata lacks {' and '.join(missing)}")
        if meta["version"] != _FORMAT_VERSION and os.access(p, os.W_OK) and os.access(p.parent, os.W_OK):
            _migrate(p, meta["version"])
        # A read-only older ledger is read as it is: verify, export and proofs need nothing new.
        signer = None
        key_file = Path(signing_key) if signing_key else _key_path(p)
        if key_file.exists():
            raw = key_file.read_bytes()
            try:
                signer = note.Signer.from_private_bytes(meta["origin"], bytes.fromhex(raw.decode().strip()))
            except ValueError as exc:
                raise ConfigError(f"ledger key file {key_file} is damaged: {exc}") from exc
        return cls(p, signer=signer, origin=meta["origin"], verifier=meta["verifier_key"], key_path=key_file)

    @classmethod
    def _create(cls, path: Path, origin: str | None, key_file: Path) -> SQLiteLedger:
        origin = origin or f"answerable.local/{uuid.uuid4().hex[:16]}"
        signer = note.Signer.generate(origin)
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: set it
        except OSError as exc:
            raise ConfigError(f"cannot create the signing key {key_file}: {exc.strerror}") from exc
        with os.fdopen(fd, "w") as handle:
            handle.write(signer.private_bytes().hex() + "\n")
        conn = _connect(path)
        try:
            with conn:
                conn.executescript(_SCHEMA)
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("format", _FORMAT),
                        ("version", _FORMAT_VERSION),
                        ("origin", origin),
                        ("verifier_key", signer.verifier_key()),
                    ],
                )
        finally:
            conn.close()
        return cls(path, signer=signer, origin=origin, verifier=signer.verifier_key(), key_path=key_file)

    # --- appending ------------------------------------------------------------------------------

    def append_nowait(
        self, records: Sequence[Record], *, fence: int | None = None, guards: Sequence[Guard] = ()
    ) -> Future[list[int]]:
        """Queue records for the next group commit; the future resolves to their indexes."""
        future: Future[list[int]] = Future()
        self._enqueue([_Item([self._row(r) for r in records], future, fence, tuple(guards))])
        return future

    async def append(
        self, records: Sequence[Record], *, fence: int | None = None, guards: Sequence[Guard] = ()
    ) -> list[int]:
        """Append and wait until the records are durably committed (or refused, all of them).

        Appends made in the same turn of the event loop travel to the writer together, and the
        writer wakes the loop once per commit, not once per caller: with many concurrent callers
        that is what keeps one core busy with work rather than with thread hand-offs.

        Raises:
            LeaseLost: ``fence`` is not the lease epoch in force when the commit runs.
            Conflict: a guarded head moved since the caller read it.
        """
        import asyncio  # loaded already: this is a coroutine

        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[int]] = loop.create_future()
        rows = [self._row(r) for r in records]
        batch = self._turn.get(loop)
        if batch is None:
            batch = self._turn[loop] = []
            loop.call_soon(self._end_of_turn, loop)
        batch.append(_Item(rows, _LoopWaiter(loop, waiter), fence, tuple(guards)))
        return await waiter

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
                raise LedgerError(f"ledger {self.path} is closed")
            self._pending.extend(items)
            self._cv.notify()

    def append_sync(
        self, records: Sequence[Record], *, fence: int | None = None, guards: Sequence[Guard] = ()
    ) -> list[int]:
        return self.append_nowait(records, fence=fence, guards=guards).result()

    def _row(self, record: Record) -> _Row:
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
                raise RecordInvalid(
                    f"{body['kind']} {body['id']} is {len(data)} bytes; an entry must stay under "
                    f"{MAX_ENTRY_BYTES + 1} bytes (only the payload of an event or message moves to a blob)",
                    record=body["kind"],
                )
        return body["id"], body["kind"], data, merkle.leaf_hash(data), tuple(body.get("causes", ()))

    def _offload(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the free-form payload of an oversized entry by a reference to its digest."""
        for field in _OFFLOADABLE:
            if field in body:
                blob = canonical_bytes(body[field])
                body = {**body, field: {"$blob": self.put_blob(blob), "bytes": len(blob)}}
        return body

    def _write_loop(self) -> None:
        conn = _connect(self.path)
        try:
            while True:
                with self._cv:
                    while not self._pending and not self._closing:
                        self._cv.wait()
                    batch, self._pending = self._pending, []
                if not batch:
                    return
                try:
                    try:
                        settlements = self._commit(conn, batch)
                    except sqlite3.IntegrityError:
                        # Rare: an id used twice. Fail only its callers and commit everyone else;
                        # the common path pays nothing for this check.
                        batch = self._refuse_duplicates(conn, batch)
                        settlements = self._commit(conn, batch) if batch else []
                except Exception as exc:  # every waiter must learn of the failure
                    error = _translate(exc, self.path)
                    _settle_all([(item.waiter, None, error) for item in batch])
                    continue
                # A caller that was cancelled while waiting (its task crashed) still had its records
                # committed: they are in the ledger, and Gateway.reconcile finishes what they began.
                _settle_all(settlements)
        finally:
            conn.close()

    def _refuse_duplicates(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[_Item]:
        """Fail only the callers whose entry ids are already used, not everyone sharing the commit."""
        ids = [row[0] for item in batch for row in item.rows]
        taken: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            taken.update(r[0] for r in conn.execute(f"SELECT id FROM entries WHERE id IN ({marks})", chunk))
        keep: list[_Item] = []
        refused: list[tuple[_Waiter, list[int] | None, BaseException | None]] = []
        seen = set(taken)
        for item in batch:
            mine = [row[0] for row in item.rows]
            clash = [i for i in mine if i in seen] or [i for i in set(mine) if mine.count(i) > 1]
            if clash:
                error = RecordInvalid(
                    f"ledger {self.path} already holds an entry with id {clash[0]}; ids are used once"
                )
                refused.append((item.waiter, None, error))
                continue
            seen.update(mine)
            keep.append(item)
        if refused:
            _settle_all(refused)
        return keep

    def _admit(
        self, conn: sqlite3.Connection, batch: list[_Item], size: int
    ) -> tuple[list[_Item], dict[str, int], list[tuple[_Waiter, list[int] | None, BaseException | None]]]:
        """Check each item's fence and guards in order, inside the commit's transaction.

        Items are judged one after another as if each were its own transaction, so two items
        of one group commit guarding the same head cannot both pass.
        """
        admitted: list[_Item] = []
        heads: dict[str, int | None] = {}
        moved: dict[str, int] = {}
        refused: list[tuple[_Waiter, list[int] | None, BaseException | None]] = []
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
                if guard.key not in heads:
                    found = conn.execute("SELECT idx FROM guards WHERE key = ?", (guard.key,)).fetchone()
                    heads[guard.key] = None if found is None else int(found[0])
                if heads[guard.key] != guard.expect:
                    conflict = Conflict(guard.key, guard.expect, heads[guard.key])
                    break
            if conflict is not None:
                refused.append((item.waiter, None, conflict))
                continue
            at += len(item.rows)
            for guard in item.guards:
                heads[guard.key] = moved[guard.key] = at - 1
            admitted.append(item)
        return admitted, moved, refused

    def _commit(
        self, conn: sqlite3.Connection, batch: list[_Item]
    ) -> list[tuple[_Waiter, list[int] | None, BaseException | None]]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            size = conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()[0]
            admitted, moved, settlements = self._admit(conn, batch, size)
            flat = [row for item in admitted for row in item.rows]
            entry_rows = [(size + n, r[0], r[1], r[2], r[3]) for n, r in enumerate(flat)]
            stored = _getter(conn)
            cache = self._frontier

            def get_node(level: int, index: int) -> bytes:
                # Complete subtrees never change in an append-only tree, so a cached one is never stale.
                node = cache.get((level, index))
                return node if node is not None else stored(level, index)

            nodes = merkle.append_leaves(size, (r[3] for r in flat), get_node)
            conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", entry_rows)
            conn.executemany("INSERT INTO nodes VALUES (?, ?, ?)", [n for n in nodes if n[0] > 0])
            conn.executemany(
                "INSERT OR IGNORE INTO causes VALUES (?, ?)",
                [(cause, size + n) for n, r in enumerate(flat) for cause in r[4]],
            )
            if moved:
                conn.executemany("INSERT OR REPLACE INTO guards VALUES (?, ?)", list(moved.items()))
            conn.execute("COMMIT")
        except BaseException:
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

    # --- guards and the lease -------------------------------------------------------------------

    def head(self, key: str) -> int | None:
        row = self._read(lambda c: _v2_row(c, "SELECT idx FROM guards WHERE key = ?", (key,)))
        return None if row is None else int(row[0])

    def lease(self) -> LeaseRow | None:
        row = self._read(
            lambda c: _v2_row(c, "SELECT holder, epoch, beat, pid, host, since, process, released FROM lease")
        )
        if row is None:
            return None
        holder, epoch, beat, pid, host, since, process, released = row
        return LeaseRow(holder, epoch, beat, pid, host, since, process, released=bool(released))

    def take_lease(self, row: LeaseRow, *, expect: tuple[int, int] | None) -> int | None:
        def take(conn: sqlite3.Connection) -> int | None:
            current = conn.execute("SELECT epoch, beat FROM lease").fetchone()
            if (None if current is None else (int(current[0]), int(current[1]))) != expect:
                return None
            epoch = 1 if current is None else int(current[0]) + 1
            conn.execute(
                "INSERT OR REPLACE INTO lease VALUES (1, ?, ?, 0, ?, ?, ?, ?, 0)",
                (row.holder, epoch, row.pid, row.host, row.since, row.process),
            )
            return epoch

        return self._short_write(take)

    def beat_lease(self, epoch: int) -> bool:
        def beat(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("UPDATE lease SET beat = beat + 1 WHERE epoch = ? AND released = 0", (epoch,))
            return cur.rowcount == 1

        return self._short_write(beat)

    def release_lease(self, epoch: int) -> None:
        self._short_write(
            lambda c: c.execute("UPDATE lease SET released = 1 WHERE epoch = ?", (epoch,)).rowcount
        )

    def _short_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """One small write transaction on its own connection (the writer thread may be busy)."""
        if self._closing or not self.path.exists():
            raise LedgerError(f"ledger {self.path} is closed or gone")
        conn = _connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return result
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self.path) from exc
        finally:
            conn.close()

    # --- reading --------------------------------------------------------------------------------

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._read_lock:
            try:
                return fn(self._reader)
            except sqlite3.DatabaseError as exc:
                raise _translate(exc, self.path) from exc

    def size(self) -> int:
        return int(
            self._read(lambda c: c.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()[0])
        )

    def data_version(self) -> int:
        """SQLite's ``data_version`` of the reading connection, which never writes: it moves with
        every commit by another connection, this store's own writer thread included."""
        return int(self._read(lambda c: c.execute("PRAGMA data_version").fetchone()[0]))

    def entry(self, index: int) -> StoredEntry:
        row = self._read(
            lambda c: c.execute("SELECT idx, id, kind, data FROM entries WHERE idx = ?", (index,)).fetchone()
        )
        if row is None:
            raise EntryNotFound(index)
        return StoredEntry(*row)

    def find(self, entry_id: str) -> StoredEntry:
        row = self._read(
            lambda c: c.execute(
                "SELECT idx, id, kind, data FROM entries WHERE id = ?", (entry_id,)
            ).fetchone()
        )
        if row is None:
            raise EntryNotFound(entry_id)
        return StoredEntry(*row)

    def entries(self, start: int = 0, stop: int | None = None) -> list[StoredEntry]:
        stop = self.size() if stop is None else stop
        rows = self._read(
            lambda c: c.execute(
                "SELECT idx, id, kind, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                (start, stop),
            ).fetchall()
        )
        return [StoredEntry(*r) for r in rows]

    def of_kind(self, kind: str, after: int = -1) -> list[StoredEntry]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT idx, id, kind, data FROM entries WHERE kind = ? AND idx > ? ORDER BY idx",
                (kind, after),
            ).fetchall()
        )
        return [StoredEntry(*r) for r in rows]

    def caused_by(self, entry_id: str) -> list[StoredEntry]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT e.idx, e.id, e.kind, e.data FROM causes k JOIN entries e ON e.idx = k.idx "
                "WHERE k.cause = ? ORDER BY e.idx",
                (entry_id,),
            ).fetchall()
        )
        return [StoredEntry(*r) for r in rows]

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` under its digest (see ``_verify.blob_digest``) and return the digest.

        A blob already stored under that digest is reused only if it still holds these bytes: an
        entry about to cite it must not cite an altered one.

        Raises:
            LedgerTampered: the blob stored under this digest was altered.
        """
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        conn = _connect(self.path)
        try:
            added = conn.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (digest, data)).rowcount
            if not added:
                row = conn.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
                if row is not None and bytes(row[0]) != data:
                    raise _verify.altered_blob(digest, bytes(row[0]), None)
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self.path) from exc
        finally:
            conn.close()
        return digest

    def get_blob(self, digest: str) -> bytes:
        """The bytes stored under ``digest``, checked against it on every read.

        Raises:
            EntryNotFound: no blob is stored under ``digest``.
            LedgerTampered: the stored bytes no longer hash to ``digest``; names the entry citing it.
        """
        row = self._read(lambda c: c.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone())
        if row is None:
            raise EntryNotFound(digest)
        data = bytes(row[0])
        if _verify.blob_digest(data) != digest:
            citing = self._read(
                lambda c: c.execute(
                    "SELECT idx, id FROM entries WHERE instr(data, ?) > 0 ORDER BY idx LIMIT 1",
                    (digest.encode(),),
                ).fetchone()
            )
            raise _verify.altered_blob(digest, data, None if citing is None else (int(citing[0]), citing[1]))
        return data

    # --- proofs and checkpoints -----------------------------------------------------------------

    def root(self, size: int | None = None) -> bytes:
        with self._read_lock:
            n, get = self._with_size_locked(size)
            return merkle.root_hash(n, get)

    def hashes(self, height: int, start: int, stop: int) -> list[bytes]:
        if height == 0:
            sql, args = "SELECT leaf_hash FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, stop)
        else:
            sql = "SELECT hash FROM nodes WHERE level = ? AND i >= ? AND i < ? ORDER BY i"
            args = (height, start, stop)  # type: ignore[assignment]
        rows = self._read(lambda c: c.execute(sql, args).fetchall())
        if len(rows) != stop - start:
            raise LedgerError(
                f"ledger {self.path} holds {len(rows)} of the {stop - start} hashes of height {height} "
                f"from {start}; run `answerable verify`"
            )
        return [bytes(r[0]) for r in rows]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        with self._read_lock:
            n, get = self._with_size_locked(size)
            return merkle.inclusion_proof(index, n, get)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        with self._read_lock:
            n, get = self._with_size_locked(size2)
            return merkle.consistency_proof(size1, n, get)

    def _with_size_locked(self, size: int | None) -> tuple[int, merkle.GetNode]:
        current = self._reader.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()[0]
        n = current if size is None else size
        if n < 0 or n > current:
            raise ProofRequestInvalid(f"tree size {n} is past the ledger's size {current}")
        return n, _getter(self._reader)

    def checkpoint(self) -> str:
        """Sign and store a checkpoint of the ledger as it is now."""
        if self._signer is None:
            raise ConfigError(f"cannot sign a checkpoint: the ledger key {self.key_path} is missing")
        with self._read_lock:
            try:
                size, get = self._with_size_locked(None)
                cp = note.Checkpoint(origin=self.origin, size=size, root_hash=merkle.root_hash(size, get))
            except sqlite3.DatabaseError as exc:
                raise _translate(exc, self.path) from exc
        signed = note.sign_checkpoint(cp, self._signer)
        conn = _connect(self.path)
        try:
            with conn:
                conn.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?)", (size, signed))
        except sqlite3.DatabaseError as exc:  # locked past the busy timeout, disk full ...
            raise _translate(exc, self.path) from exc
        finally:
            conn.close()
        return signed

    def latest_checkpoint(self) -> str | None:
        row = self._read(
            lambda c: c.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        )
        return None if row is None else str(row[0])

    def verifier_key(self) -> str:
        return self._verifier

    def use_nonce(self, key: str, created: int, *, forget_before: int | None = None) -> bool:
        """Record a request nonce durably; False when it was recorded before (a replay).

        Kept in the ledger's database (a table beside the log, not in it), so a request replayed
        after a restart is still refused. ``forget_before``: nonces created before it may be
        dropped (the caller refuses requests that old anyway); done once every 1,024 calls.
        """
        with self._nonce_lock:
            try:
                if self._nonces is None:
                    self._nonces = _connect(self.path)
                    self._nonces.execute(
                        "CREATE TABLE IF NOT EXISTS nonces (key TEXT PRIMARY KEY, created INTEGER NOT NULL) "
                        "WITHOUT ROWID"
                    )
                self._nonce_calls += 1
                if forget_before is not None and self._nonce_calls % 1024 == 0:
                    self._nonces.execute("DELETE FROM nonces WHERE created < ?", (forget_before,))
                self._nonces.execute("INSERT INTO nonces VALUES (?, ?)", (key, created))
            except sqlite3.IntegrityError:
                return False
            except sqlite3.DatabaseError as exc:
                raise _translate(exc, self.path) from exc
            return True

    def backup(self, target: str | os.PathLike[str]) -> int:
        """Copy the ledger, consistent as of one moment, into a new file; return its size.

        SQLite's online backup API copies a snapshot while this ledger keeps committing, so a
        live gateway need not stop. The copy opens and verifies with the same roots; the
        signing key is not copied (it stays wherever it is kept).

        Raises:
            ConfigError: ``target`` exists already or cannot be written.
        """
        path = Path(target)
        if path.exists():
            raise ConfigError(f"backup target {path} exists already; give a new file")
        try:
            copy = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot create backup {path}: {exc}") from exc
        try:
            with self._read_lock:
                self._reader.backup(copy)
            size = int(copy.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()[0])
        except sqlite3.Error as exc:
            copy.close()
            path.unlink(missing_ok=True)
            raise ConfigError(f"cannot write backup {path}: {exc}") from exc
        copy.close()
        return size

    # --- verification ---------------------------------------------------------------------------

    def verify(self, checkpoint: str | None = None, *, key: str | None = None) -> VerifyReport:
        """Recompute every leaf, blob, node, root and checkpoint; raise LedgerTampered at the first fault.

        Without ``checkpoint`` or ``key`` this proves self-consistency only: a history rewritten
        with a rebuilt tree and a fresh key agrees with itself too.

        Args:
            checkpoint: a checkpoint saved earlier (outside the ledger); the ledger must still be
                consistent with it, which catches truncation and rollback.
            key: the verifier key as ``answerable ledger key`` printed it, kept outside the ledger.
                The key the database records must be this one, every stored checkpoint must be
                signed with it, and one of them (or ``checkpoint``) must cover every entry.

        Raises:
            LedgerTampered: naming the entry by index and id as precisely as the evidence allows.
            ConfigError: ``key`` or ``checkpoint`` is malformed.
        """
        conn = _connect(self.path)
        try:
            conn.execute("BEGIN")  # one snapshot: a commit landing meanwhile is not seen half-way
            return _verify.verify(_SQLiteView(conn), checkpoint, key=key)
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self.path) from exc
        finally:
            conn.close()

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._writer.join()
        self._reader.close()
        if self._nonces is not None:
            self._nonces.close()

    def __enter__(self) -> SQLiteLedger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _SQLiteView:
    """The raw rows verification needs, read in index order inside the caller's read transaction.

    The key and origin are read from the database as it is now, not as it was when the ledger was
    opened: a key replaced since must be seen by the next verification.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        meta = dict(
            conn.execute("SELECT key, value FROM meta WHERE key IN ('verifier_key', 'origin')").fetchall()
        )
        self.verifier = str(meta.get("verifier_key", ""))
        self.origin = str(meta.get("origin", ""))

    def leaves(self) -> Iterator[list[tuple[int, str, str, bytes, bytes]]]:
        cur = self.conn.execute("SELECT idx, id, kind, data, leaf_hash FROM entries ORDER BY idx")
        while rows := cur.fetchmany(8192):
            yield rows

    def rows(self, start: int, stop: int) -> Iterator[tuple[int, str, bytes]]:
        cur = self.conn.execute(
            "SELECT idx, id, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, stop)
        )
        while rows := cur.fetchmany(4096):
            yield from rows

    def causes_by_index(self) -> Iterator[tuple[int, str]]:
        cur = self.conn.execute("SELECT idx, cause FROM causes ORDER BY idx")
        while rows := cur.fetchmany(8192):
            yield from rows

    def blobs(self) -> Iterator[tuple[str, bytes]]:
        cur = self.conn.execute("SELECT digest, data FROM blobs")
        while rows := cur.fetchmany(64):
            yield from rows

    def level(self, level: int) -> list[tuple[int, bytes]]:
        return self.conn.execute("SELECT i, hash FROM nodes WHERE level = ? ORDER BY i", (level,)).fetchall()

    def max_level(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(MAX(level), 0) FROM nodes").fetchone()[0])

    def checkpoints(self) -> list[tuple[int, str]]:
        return self.conn.execute("SELECT size, note FROM checkpoints ORDER BY size").fetchall()

    def causes(self) -> Iterator[list[tuple[str, int]]]:
        cur = self.conn.execute("SELECT cause, idx FROM causes")
        while rows := cur.fetchmany(16384):
            yield rows

    def id_at(self, index: int) -> str | None:
        row = self.conn.execute("SELECT id FROM entries WHERE idx = ?", (index,)).fetchone()
        return None if row is None else str(row[0])


@dataclass(frozen=True, slots=True)
class _LoopWaiter:
    """An asyncio future and the loop it belongs to: it may only be resolved on that loop."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[int]]


_Waiter = Future[list[int]] | _LoopWaiter
_Outcome = tuple[list[int] | None, BaseException | None]


def _settle_all(settlements: list[tuple[_Waiter, list[int] | None, BaseException | None]]) -> None:
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


def _resolve_on_loop(items: list[tuple[asyncio.Future[list[int]], _Outcome]]) -> None:
    for future, (result, error) in items:
        if future.done():  # cancelled: its task gave up (the records are committed all the same)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or [])


def _v2_row(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> Any:
    """One row of a table format 2 added; None in a format-1 ledger opened read-only."""
    try:
        return conn.execute(sql, args).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise


def _migrate(path: Path, version: str) -> None:
    """Bring an earlier format up to this one in place, and record that it was done.

    1 -> 2 adds the ``lease`` and ``guards`` tables; entries, nodes and checkpoints are untouched,
    so roots and old checkpoints stay valid. ``v2_from`` records the size at migration: entries
    before it were written without claims, which reconcile takes into account.
    """
    conn = _connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0]
            if current == version == "1":
                size = conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()[0]
                for statement in filter(str.strip, _V2_TABLES.split(";")):
                    conn.execute(statement)  # executescript would commit the open transaction
                conn.execute("UPDATE meta SET value = ? WHERE key = 'version'", (_FORMAT_VERSION,))
                conn.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [("v2_from", str(size)), ("migrated", f"1 -> 2 at size {size}")],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"ledger {path}: migrating format {version} failed: {exc}") from exc
    finally:
        conn.close()


def _probe_meta(path: Path) -> dict[str, str]:
    """The ``meta`` table of a file that may not be a ledger, read without changing the file.

    Read-only and without the WAL pragma: opening another program's database to look at it must
    not switch its journal mode or leave files beside it.

    Raises:
        NotALedger: the file has no readable ``meta`` table (not a ledger, or truncated).
    """
    conn = None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        rows = conn.execute("SELECT key, value FROM meta").fetchall()
    except sqlite3.Error as exc:
        raise NotALedger(str(path), f"it has no answerable metadata ({exc})") from exc
    finally:
        if conn is not None:
            conn.close()
    return {str(k): str(v) for k, v in rows}


def _connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with durable commits; a failure is a LedgerError, never raw sqlite3."""
    try:
        # isolation_level=None: we issue BEGIN ourselves, so a group commit is exactly one transaction.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
        except BaseException:
            conn.close()
            raise
    except sqlite3.Error as exc:
        raise LedgerError(f"ledger {path}: cannot open it: {exc}") from exc
    return conn


def _getter(conn: sqlite3.Connection) -> merkle.GetNode:
    def get_node(level: int, index: int) -> bytes:
        if level == 0:
            row = conn.execute("SELECT leaf_hash FROM entries WHERE idx = ?", (index,)).fetchone()
        else:
            row = conn.execute("SELECT hash FROM nodes WHERE level = ? AND i = ?", (level, index)).fetchone()
        if row is None:
            raise LedgerError(
                f"ledger is missing tree node (level {level}, index {index}); run `answerable verify`"
            )
        return bytes(row[0])

    return get_node


def _translate(exc: BaseException, path: Path) -> BaseException:
    if isinstance(exc, sqlite3.IntegrityError):
        return RecordInvalid(f"ledger {path} refused an entry: {exc} (an entry id is used twice?)")
    if isinstance(exc, sqlite3.DatabaseError):
        return LedgerError(f"ledger {path}: {exc}")
    return exc
