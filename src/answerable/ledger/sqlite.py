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
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from answerable.errors import (
    ConfigError,
    LedgerClosed,
    LedgerError,
    NotALedger,
    RecordInvalid,
)
from answerable.ledger import _verify, note
from answerable.ledger._sql import (
    FORGET_NONCES,
    LATEST_TIME,
    LEDGER_FORMAT,
    UNFINISHED_COPY,
    SQLLedger,
    SQLView,
    blob_bytes,
    file_path,
    fresh_identity,
    key_for,
    key_text,
    load_signer,
    new_origin,
    nonce_time,
    stored_text,
)
from answerable.ledger.base import LeaseRow, VerifyReport

__all__ = ["SQLiteLedger"]

_FORMAT = LEDGER_FORMAT
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
_UNFINISHED = (
    "it is a copy that did not finish (`answerable ledger copy` was killed); delete it and copy again"
)
_BESIDE = ("-wal", "-shm", "-journal")
"""The files SQLite keeps beside a database while it is open or was left open."""
_NONCES = "CREATE TABLE IF NOT EXISTS nonces (key TEXT PRIMARY KEY, created INTEGER NOT NULL) WITHOUT ROWID"
T = TypeVar("T")


def _key_path(path: Path) -> Path:
    return path.with_name(path.name + ".key")


class SQLiteLedger(SQLLedger):
    """An answerable ledger in one SQLite file.

    Appends from any thread or coroutine are handed to one writer thread, which commits
    everything that arrived while the previous commit was in flight in one transaction with
    ``synchronous=FULL`` (group commit) and only then resolves the callers' futures. SQLite's
    ``BEGIN IMMEDIATE`` keeps every other writer, of any process, out while it commits.
    """

    _INSERT_ROWS = "INSERT OR FAIL"
    """A statement of many rows under the default ABORT keeps a statement journal to undo itself
    alone, and spilled it to a temporary file: 6.5 KB more written per governed action (found by
    a study of the storage floor). Any failure rolls the whole commit back, so FAIL's keeping of
    the rows before the failing one changes nothing, and the journal is not kept."""

    def __init__(
        self,
        path: Path,
        *,
        signer: note.Signer | None,
        origin: str,
        verifier: str,
        key_path: Path | None = None,
    ) -> None:
        super().__init__(str(path))
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
        self._start()

    # --- opening --------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        origin: str | None = None,
        signing_key: str | os.PathLike[str] | None = None,
        identity: tuple[note.Signer | None, str] | None = None,
    ) -> SQLiteLedger:
        """Open a ledger, creating it (and its signing key) when ``create`` is set and it is absent.

        ``identity``: the signer and verifier key of a ledger being copied here, instead of a
        fresh key (see :func:`answerable.ledger.copy.copy_ledger`); it is made an unfinished copy,
        which no open takes, until :meth:`mark_copied`.

        ``signing_key`` is where the checkpoint signing key lives (created with mode 0600); by
        default beside the database as ``LEDGER.key``. It need not sit beside the database, and
        should not where whoever can write the database must not also be able to sign. Creating
        a ledger never writes over a file there: it may be someone's private key, or another
        ledger's (a copy may find its own source's key there: that one is used as it is).

        A ledger of format version 1 is migrated in place to version 2 (two tables added, nothing
        in the Merkle log changes) and the migration is recorded in its metadata.

        Raises:
            NotALedger: the file exists but is not an answerable ledger, or does not exist and
                ``create`` is false.
            ConfigError: ``path`` or ``signing_key`` is no file name (a NUL, a lone surrogate, not
                a path); creating, the origin is invalid or a file is where the key would go.
                Nothing is made then.
        """
        p = file_path(path, "the ledger path")
        key_given = file_path(signing_key, "the signing key path") if signing_key else None
        if not p.exists():
            if not create:
                raise NotALedger(str(p), "no such file")
            return cls._create(p, origin, key_given or _key_path(p), identity)
        # Never open(2) the file outside SQLite: closing any descriptor of it drops every POSIX
        # lock this process holds on it, so a second look at a ledger the process is serving (a
        # report rendered by the console) would let another program delete its live WAL.
        meta = _probe_meta(p)
        if meta.get("format") == UNFINISHED_COPY:
            raise NotALedger(str(p), _UNFINISHED)
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
        key_file = key_given or _key_path(p)
        origin, verifier = meta["origin"], meta["verifier_key"]
        signer, _ = load_signer(key_file, origin, verifier)
        return cls(p, signer=signer, origin=origin, verifier=verifier, key_path=key_file)

    @classmethod
    def _create(
        cls,
        path: Path,
        origin: str | None,
        key_file: Path,
        identity: tuple[note.Signer | None, str] | None = None,
    ) -> SQLiteLedger:
        origin = new_origin(origin)
        if key_file.absolute() == path.absolute():
            raise ConfigError(f"the signing key {key_file} cannot be the ledger file itself; give another")
        signer, verifier = identity or fresh_identity(origin)
        # The database file is left if making it fails: another process may have made it
        # meanwhile (it is its ledger then, not debris). The key is this call's alone.
        with key_for(key_file, signer, copied=identity is not None):
            form = _FORMAT if identity is None else UNFINISHED_COPY
            return cls._make(path, origin, key_file, signer, verifier, form)

    @classmethod
    def _make(
        cls, path: Path, origin: str, key_file: Path, signer: note.Signer | None, verifier: str, form: str
    ) -> SQLiteLedger:
        conn = _connect(path)
        try:
            # One transaction (the connection commits each statement by itself otherwise, and
            # executescript would commit the open one): a ledger, or a copy that names itself
            # unfinished, appears whole, with its metadata, or not at all.
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("format", form),  # a copy is unfinished from the commit that makes it
                        ("version", _FORMAT_VERSION),
                        ("origin", origin),
                        ("verifier_key", verifier),
                    ],
                )
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()
        return cls(path, signer=signer, origin=origin, verifier=verifier, key_path=key_file)

    # --- the sequencer's hooks -----------------------------------------------------------------

    def _writer_connection(self) -> sqlite3.Connection:
        return _connect(self.path)

    def _begin_append(self, conn: sqlite3.Connection) -> int:
        conn.execute("BEGIN IMMEDIATE")
        try:
            return int(conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()[0])
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _end_append(self, conn: sqlite3.Connection, size: int, latest: str | None) -> None:
        """The latest time only: SQLite's size is its entries', read under ``BEGIN IMMEDIATE``."""
        if latest is not None:
            conn.execute(LATEST_TIME, (latest,))

    def _is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def _translate(self, exc: BaseException) -> BaseException:
        return _translate(exc, self.path)

    # --- guards and the lease -------------------------------------------------------------------

    def head(self, key: str) -> int | None:
        if key_text(key) is None:  # no head can have been moved under it
            return None
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

    def _connect_again(self) -> sqlite3.Connection:
        """A connection of its own to this ledger's file, refused once the ledger is closed or
        its file is gone: SQLite would make an empty database under the name (a stray file where
        a ledger was, which then refuses to become one), and a closed ledger takes no writes."""
        if self._closing or not self.path.exists():
            raise LedgerClosed(f"ledger {self.path} is closed or gone")
        return _connect(self.path)

    def _short_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """One small write transaction on its own connection (the writer thread may be busy)."""
        conn = self._connect_again()
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

    def _nonce_rows(self, conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        if _v2_row(conn, "SELECT name FROM sqlite_master WHERE name = 'nonces'") is None:
            return []
        return super()._nonce_rows(conn)

    def _nonce_seen(self, conn: sqlite3.Connection, key: str) -> bool:
        return _v2_row(conn, "SELECT 1 FROM nonces WHERE key = ?", (key,)) is not None

    def _prepare_nonces(self, conn: sqlite3.Connection) -> None:
        conn.execute(_NONCES)

    # --- reading --------------------------------------------------------------------------------

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._read_lock:
            try:
                return fn(self._reader)
            except sqlite3.DatabaseError as exc:
                raise _translate(exc, self.path) from exc

    def data_version(self) -> int:
        """SQLite's ``data_version`` of the reading connection, which never writes: it moves with
        every commit by another connection, this store's own writer thread included."""
        with self._read_lock:  # _read spelled out: read before every governed call
            try:
                return int(self._reader.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.DatabaseError as exc:
                raise _translate(exc, self.path) from exc

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` under its digest (see ``_verify.blob_digest``) and return the digest.

        A blob already stored under that digest is reused only if it still holds these bytes: an
        entry about to cite it must not cite an altered one.

        Raises:
            LedgerTampered: the blob stored under this digest was altered.
            RecordInvalid: ``data`` is not bytes (nothing is stored).
        """
        data = blob_bytes(data)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        conn = self._connect_again()
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

    # --- proofs and checkpoints -----------------------------------------------------------------

    def use_nonce(self, key: str, created: int, *, forget_before: int | None = None) -> bool:
        """Record a request nonce durably; False when it was recorded before (a replay).

        Kept in the ledger's database (a table beside the log, not in it), so a request replayed
        after a restart is still refused. ``forget_before``: nonces created before it may be
        dropped (the caller refuses requests that old anyway); done once every 1,024 calls.

        Raises:
            RecordInvalid: ``key`` is not text either backend can store, or ``created`` is not a
                whole number of seconds (nothing is recorded).
        """
        row = (stored_text(key, "nonce"), nonce_time(created))
        if forget_before is not None:
            forget_before = nonce_time(forget_before)
        with self._nonce_lock:
            try:
                if self._closing:
                    raise LedgerClosed(f"ledger {self.path} is closed")
                if self._nonces is None:
                    self._nonces = self._connect_again()
                    self._nonces.execute(_NONCES)
                self._nonce_calls += 1
                if forget_before is not None and self._nonce_calls % 1024 == 0:
                    self._nonces.execute(FORGET_NONCES, (forget_before,))
                self._nonces.execute("INSERT INTO nonces VALUES (?, ?)", row)
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
            ConfigError: ``target`` exists already, cannot be written or is no file name (nothing
                is made then).
        """
        path = file_path(target, "the backup target")
        if path.exists():
            raise ConfigError(f"backup target {path} exists already; give a new file")
        try:
            copy = sqlite3.connect(path.absolute(), isolation_level=None)  # see _connect
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
        conn = self._connect_again()
        try:
            conn.execute("BEGIN")  # one snapshot: a commit landing meanwhile is not seen half-way
            return _verify.verify(SQLView(conn, self._sql), checkpoint, key=key)
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self.path) from exc
        finally:
            conn.close()

    def close(self) -> None:
        self._stop_writer()
        self._reader.close()
        if self._nonces is not None:
            self._nonces.close()

    def discard(self) -> None:
        """Delete the file and what SQLite keeps beside it (the key is not this ledger's to delete:
        a copy writes it only once it is whole)."""
        for name in (self.path, *(self.path.with_name(self.path.name + end) for end in _BESIDE)):
            with contextlib.suppress(FileNotFoundError):
                name.unlink()


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
        if path.is_dir():
            raise NotALedger(str(path), "Is a directory")
        if not os.access(path, os.R_OK):
            raise NotALedger(str(path), "Permission denied")
        if path.stat().st_size < 100:  # shorter than SQLite's own header: what open(2) would show
            raise NotALedger(str(path), "it is not an SQLite database")
        # A read-only connection to a WAL-mode database makes its -wal and -shm, and leaves them
        # when the file turns out to be another program's. With neither a -wal nor a -journal
        # beside it, no connection has the database open and every page is in the file: read it
        # as immutable, which makes nothing. Beside a live one, the files it needs are there.
        live = any(path.with_name(path.name + end).exists() for end in ("-wal", "-journal"))
        flags = "mode=ro" if live else "mode=ro&immutable=1"
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True, check_same_thread=False)
        conn.execute("PRAGMA schema_version").fetchone()
    except OSError as exc:
        raise NotALedger(str(path), exc.strerror or str(exc)) from exc
    except sqlite3.DatabaseError as exc:
        raise NotALedger(str(path), "it is not an SQLite database") from exc
    try:
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
        # The absolute path: SQLite reads ":memory:" as no file at all and, built to accept URIs
        # (Debian's is), "file:NAME" as a URI that can name another file; "/here/:memory:" is a file.
        conn = sqlite3.connect(path.absolute(), isolation_level=None, check_same_thread=False, timeout=30)
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


def _translate(exc: BaseException, path: Path) -> BaseException:
    if isinstance(exc, sqlite3.IntegrityError):
        return RecordInvalid(f"ledger {path} refused an entry: {exc} (an entry id is used twice?)")
    if isinstance(exc, sqlite3.DatabaseError):
        return LedgerError(f"ledger {path}: {exc}")
    return exc
