"""The ledger on PostgreSQL: the same tables and the same sequencer as the SQLite ledger, for many
readers on many machines.

The gateway holding the lease is the single sequencer: a commit locks the one ``head`` row, reads
the size there, writes ``size + i`` for its entries, moves the head and commits, so two writers of
any process serialize on that row (the CLI appending a halt beside a running gateway, say). The
lease epoch, the guards (a claim, a review's answer) and the entry ids are read or constrained
inside that same transaction: what stops a second execution is a UNIQUE row in the database, never
a message acknowledgement.

A ledger lives in one schema, named by the URL's ``options=-csearch_path=NAME``, so runs never
collide. A URL never carries a password: libpq takes it from ``PGPASSWORD`` or a password file.
The checkpoint signing key is a file outside the database (by default under
``$ANSWERABLE_KEY_DIR``, else ``~/.local/share/answerable/ledger-keys``, named after the origin),
so that whoever can write the database cannot also sign a rewritten history.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo, errors, sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from answerable.errors import (
    ConfigError,
    LedgerClosed,
    LedgerError,
    NotALedger,
    RecordInvalid,
    StoreUnavailable,
)
from answerable.ledger import _verify, merkle, note
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
from answerable.ledger.location import is_postgres_url

__all__ = ["PostgresLedger", "drop_schema", "is_postgres_url", "key_dir"]

_FORMAT = LEDGER_FORMAT
_FORMAT_VERSION = "2"
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE head (one INTEGER PRIMARY KEY CHECK (one = 1), size BIGINT NOT NULL);
INSERT INTO head VALUES (1, 0);
CREATE TABLE entries (
    idx BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    data BYTEA NOT NULL,
    leaf_hash BYTEA NOT NULL
);
CREATE INDEX entries_by_kind ON entries (kind, idx);
CREATE TABLE nodes (level INTEGER NOT NULL, i BIGINT NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY (level, i));
CREATE TABLE causes (cause TEXT NOT NULL, idx BIGINT NOT NULL, PRIMARY KEY (cause, idx));
CREATE TABLE checkpoints (size BIGINT PRIMARY KEY, note TEXT NOT NULL);
CREATE TABLE blobs (digest TEXT PRIMARY KEY, data BYTEA NOT NULL);
CREATE TABLE lease (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    holder TEXT NOT NULL, epoch BIGINT NOT NULL, beat BIGINT NOT NULL, pid INTEGER NOT NULL,
    host TEXT NOT NULL, since TEXT NOT NULL, process TEXT NOT NULL, released BOOLEAN NOT NULL
);
CREATE TABLE guards (key TEXT PRIMARY KEY, idx BIGINT NOT NULL);
CREATE TABLE nonces (key TEXT PRIMARY KEY, created BIGINT NOT NULL);
"""
_TABLES = tuple(re.findall(r"CREATE TABLE (\w+)", _SCHEMA))
"""Every table a ledger is made of: what :meth:`PostgresLedger.discard` drops."""
_SEARCH_PATH = re.compile(r"-c\s*search_path=([^\s,]+)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
T = TypeVar("T")

_HEAD_AND_LATEST = "WITH latest AS (" + LATEST_TIME.replace("?", "%s") + ") UPDATE head SET size = %s"
"""The head's size and the latest time, in one statement (see ``_end_append``)."""


def key_dir() -> Path:
    """Where the signing keys of ledgers in PostgreSQL live unless a path is given."""
    chosen = os.environ.get("ANSWERABLE_KEY_DIR")
    if chosen:
        return Path(chosen)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "answerable" / "ledger-keys"


def _default_key(origin: str) -> Path:
    return key_dir() / (re.sub(r"[^A-Za-z0-9._-]", "_", origin) + ".key")


def parse_url(url: str) -> tuple[str, str]:
    """The URL checked, and the schema it names (``public`` when it names none).

    Raises:
        ConfigError: it is not a PostgreSQL URL, carries a password, or names a schema that is
            not a plain identifier.
    """
    if not isinstance(url, str):
        raise ConfigError(f"a ledger URL is text (postgresql://...), not {type(url).__name__}")
    if not is_postgres_url(url):
        raise ConfigError(f"{url!r} is not a postgresql:// URL")
    if key_text(url) is None:
        # Not shown: it may hold a password. libpq would cut it at the NUL and open another place.
        raise ConfigError(
            "the PostgreSQL URL holds a NUL byte or a lone surrogate (not shown: it may hold a password)"
        )
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:  # libpq's message quotes the URL, password and all
        raise ConfigError(
            "the PostgreSQL URL is malformed (not shown: it may hold a password); "
            "want postgresql://USER@HOST:PORT/DB?options=-csearch_path%3DSCHEMA"
        ) from exc
    if parts.get("password"):
        raise ConfigError(
            "a ledger URL never carries a password (it would be printed and logged): "
            "put it in PGPASSWORD or a password file (PGPASSFILE, ~/.pgpass)"
        )
    if parts.get("sslpassword"):
        # The passphrase of the client's TLS key is as secret as a password, and a command
        # line is readable by every user of the machine (ps).
        raise ConfigError(
            "a ledger URL never carries an sslpassword (it would be printed and logged): put it in a "
            "connection service file (PGSERVICEFILE, ~/.pg_service.conf) and name it with ?service=NAME"
        )
    found = _SEARCH_PATH.search(str(parts.get("options", "")))
    schema = found.group(1) if found else "public"
    if not _IDENTIFIER.fullmatch(schema):
        raise ConfigError(f"the schema {schema!r} in the URL is not a plain identifier (letters, digits, _)")
    return url, schema


def _where(url: str) -> str:
    parts = conninfo.conninfo_to_dict(url)
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    return f"PostgreSQL at {host}:{port}/{parts.get('dbname', '')}"


_LIVENESS: dict[str, Any] = {
    "connect_timeout": 5,
    "tcp_user_timeout": 2000,
    "keepalives": 1,
    "keepalives_idle": 1,
    "keepalives_interval": 1,
    "keepalives_count": 2,
}
"""A server that stops answering (a partition, not a refusal) is given up within about 2 s,
instead of the minutes TCP would wait: a gateway that cannot reach the store must learn so soon,
since it starts no call without it."""


def _session(conn: psycopg.Connection[Any]) -> None:
    """Server-side limits, so a client that died holding the head row (between statements, or in
    the middle of a COPY, its socket not yet seen to close) lets go of it within seconds: the
    server probes the silent client and gives up on it, and a writer waits at most 15 s."""
    for setting in (
        "idle_in_transaction_session_timeout = '10s'",
        "lock_timeout = '15s'",
        "tcp_keepalives_idle = 2",
        "tcp_keepalives_interval = 1",
        "tcp_keepalives_count = 3",
        "tcp_user_timeout = 5000",
    ):
        conn.execute(f"SET {setting}")


def _connect(
    url: str, *, autocommit: bool = True, application_name: str = "answerable"
) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(url, autocommit=autocommit, application_name=application_name, **_LIVENESS)
    except psycopg.Error as exc:
        unreached = StoreUnavailable if _unreachable(exc) else LedgerError
        raise unreached(f"{_where(url)}: cannot connect: {_first_line(exc)}") from exc
    try:
        if autocommit:  # (a read-only snapshot needs its isolation level set first, and no limits)
            _session(conn)
        return conn
    except psycopg.Error as exc:
        conn.close()
        unreached = StoreUnavailable if _unreachable(exc) else LedgerError
        raise unreached(f"{_where(url)}: cannot set up the session: {_first_line(exc)}") from exc


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the server could not be reached or the connection broke (it is down,
    restarting, or out of the network's reach), as opposed to a refusal by a server that
    answered (a lock timeout, a full disk, a query cancelled): only the first is waited out."""
    if isinstance(exc, PoolClosed) or not isinstance(exc, psycopg.OperationalError):
        return False
    if isinstance(exc, PoolTimeout):
        return True
    state = exc.sqlstate
    if state is None:  # said by libpq, not by a server: at connect, a server's refusal is text
        text = str(exc)
        return "FATAL:" not in text or any(passing in text for passing in _PASSING)
    return (state.startswith("08") and state != "08P01") or state in ("57P01", "57P02", "57P03")


_PASSING = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "too many clients",
    "sorry, too many clients",
)
"""What a server says at connect while it cannot take the connection yet; any other FATAL there
(a password refused, no such database or role, no pg_hba entry) stays until someone acts."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def drop_schema(url: str) -> None:
    """Drop the schema a URL names, with everything in it (tests and throw-away runs)."""
    url, schema = parse_url(url)
    if schema == "public":
        raise ConfigError("refusing to drop the public schema")
    with _connect(url) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


class PostgresLedger(SQLLedger):
    """An answerable ledger in one PostgreSQL schema (see the module's docstring)."""

    _MARK = "%s"
    _CONTAINS = "position(? in data) > 0"

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        signer: note.Signer | None,
        origin: str,
        verifier: str,
        key_path: Path,
    ) -> None:
        super().__init__(f"{_where(url)} schema {schema}")
        self.url = url
        self.schema = schema
        self.key_path = key_path
        self.origin = origin
        self._signer = signer
        self._verifier = verifier
        self._nonce_calls = 0
        self._lease_lock = threading.Lock()
        self._lease_conn: psycopg.Connection[Any] | None = None
        self.made_schema = False
        """Whether creating this ledger made its schema too (else it was there, perhaps granted to
        us by whoever runs the database, and :meth:`discard` leaves it)."""
        try:
            self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                url,
                min_size=1,
                max_size=4,
                kwargs={"autocommit": True, "application_name": f"answerable {schema}"[:63], **_LIVENESS},
                timeout=2.0,
                configure=_session,
                name=f"ledger:{schema}",
                open=True,
            )
        except psycopg.Error as exc:
            raise LedgerError(f"{self._name}: cannot open a connection pool: {_first_line(exc)}") from exc
        self._start()

    # --- opening --------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        create: bool = False,
        origin: str | None = None,
        signing_key: str | os.PathLike[str] | None = None,
        identity: tuple[note.Signer | None, str] | None = None,
    ) -> PostgresLedger:
        """Open the ledger in the schema ``url`` names, creating it when ``create`` is set.

        ``identity``: the signer and verifier key of a ledger being copied here, instead of a
        fresh key (see :func:`answerable.ledger.copy.copy_ledger`); its tables are made an
        unfinished copy, which no open takes, until :meth:`mark_copied`.

        Creating, the key is never written over a file that is there (see :meth:`SQLiteLedger.open`).

        Raises:
            ConfigError: the URL is malformed or carries a password; the key file is damaged or
                ``signing_key`` is no file name; creating, the origin is invalid or a file is where
                the key would go (nothing is made then).
            LedgerError: the server cannot be reached (named, with where).
            NotALedger: the schema holds no answerable ledger and ``create`` is false.
        """
        url, schema = parse_url(url)
        key_given = file_path(signing_key, "the signing key path") if signing_key else None
        where = f"{_where(url)} schema {schema}"
        with _connect(url) as conn:
            meta = _probe_meta(conn, schema, where)
            if meta is None:
                if not create:
                    raise NotALedger(where, "the schema holds no answerable ledger")
                return cls._create(conn, url, schema, origin, key_given, identity)
        if meta.get("format") == UNFINISHED_COPY:
            raise NotALedger(
                where,
                "it is a copy that did not finish (`answerable ledger copy` was killed); "
                "drop its tables (or its schema) and copy again",
            )
        if meta.get("format") != _FORMAT:
            raise NotALedger(where, "its metadata does not name the ledger format")
        if meta.get("version") != _FORMAT_VERSION:
            raise NotALedger(where, f"format version {meta.get('version')!r} is not {_FORMAT_VERSION}")
        key_file = key_given or _default_key(meta["origin"])
        origin, verifier = meta["origin"], meta["verifier_key"]
        signer, _ = load_signer(key_file, origin, verifier)
        return cls(url, schema, signer=signer, origin=origin, verifier=verifier, key_path=key_file)

    @classmethod
    def _create(
        cls,
        conn: psycopg.Connection[Any],
        url: str,
        schema: str,
        origin: str | None,
        key_given: Path | None,
        identity: tuple[note.Signer | None, str] | None,
    ) -> PostgresLedger:
        origin = new_origin(origin)
        signer, verifier = identity or fresh_identity(origin)
        key_file = key_given or _default_key(origin)
        with key_for(key_file, signer, copied=identity is not None, folder=True):
            form = _FORMAT if identity is None else UNFINISHED_COPY
            return cls._make(conn, url, schema, origin, key_file, signer, verifier, form)

    @classmethod
    def _make(
        cls,
        conn: psycopg.Connection[Any],
        url: str,
        schema: str,
        origin: str,
        key_file: Path,
        signer: note.Signer | None,
        verifier: str,
        form: str,
    ) -> PostgresLedger:
        try:
            with conn.transaction():
                there = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement.encode())
                conn.cursor().executemany(
                    "INSERT INTO meta VALUES (%s, %s)",
                    [
                        ("format", form),  # a copy is unfinished from the commit that makes it
                        ("version", _FORMAT_VERSION),
                        ("origin", origin),
                        ("verifier_key", verifier),
                    ],
                )
        except errors.DuplicateTable as exc:
            raise LedgerError(
                f"{_where(url)} schema {schema}: another process created a ledger here at the same "
                "moment; open it instead"
            ) from exc
        except psycopg.Error as exc:
            raise LedgerError(f"{_where(url)} schema {schema}: cannot create it: {_first_line(exc)}") from exc
        ledger = cls(url, schema, signer=signer, origin=origin, verifier=verifier, key_path=key_file)
        ledger.made_schema = there is None
        return ledger

    # --- the sequencer's hooks ------------------------------------------------------------------

    def _writer_connection(self) -> psycopg.Connection[Any]:
        return _connect(self.url, application_name=f"answerable-writer {self.schema}"[:63])

    def _begin_append(self, conn: psycopg.Connection[Any]) -> int:
        conn.execute("BEGIN")
        try:
            row = conn.execute("SELECT size FROM head FOR UPDATE").fetchone()
        except BaseException:
            with contextlib.suppress(psycopg.Error):  # a dead connection has nothing to roll back
                conn.execute("ROLLBACK")
            raise
        if row is None:
            conn.execute("ROLLBACK")
            raise LedgerError(f"{self._name}: the head row is missing; run `answerable verify`")
        return int(row[0])

    def _end_append(self, conn: psycopg.Connection[Any], size: int, latest: str | None) -> None:
        """The head's size, and the latest time in the same statement: one round trip to the
        server, not two (the second cost a sequential append about 8%)."""
        if latest is None:
            conn.execute("UPDATE head SET size = %s", (size,))
        else:
            conn.execute(_HEAD_AND_LATEST, (latest, size))

    def _is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, errors.UniqueViolation)

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, errors.UniqueViolation):
            return RecordInvalid(f"ledger {self._name} refused an entry: {_first_line(exc)}")
        if isinstance(exc, PoolClosed):
            return LedgerClosed(f"ledger {self._name} is closed")
        if _unreachable(exc):  # the server away, or the pool waiting for it
            return StoreUnavailable(f"{self._name}: {_first_line(exc)}")
        if isinstance(exc, psycopg.Error):
            return LedgerError(f"{self._name}: {_first_line(exc)}")
        return exc

    def _insert(self, cur: psycopg.Cursor[Any], table: str, rows: list[tuple[Any, ...]]) -> None:
        """COPY, not one INSERT per row: a batch of a thousand entries and their nodes goes in one
        stream (about five times the rows per second here)."""
        if rows:
            with cur.copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))) as copy:
                for row in rows:
                    copy.write_row(row)

    def _connection_lost(self, conn: psycopg.Connection[Any], exc: BaseException) -> bool:
        """Whatever the driver raised (an admin shutdown, a closed socket in the middle of a COPY),
        a connection that is dead afterwards leaves the commit's outcome unknown."""
        return conn.closed or conn.broken

    def _after_failure(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any] | None:
        if conn.closed or conn.broken:
            return None  # the server went away: the next batch opens a new connection
        return conn

    def _read(self, fn: Callable[[psycopg.Connection[Any]], T], *, again: bool = True) -> T:
        """Run ``fn`` on a pooled connection. A pooled connection the server has closed since
        (a restart, an administrator) fails its first use; with ``again``, ``fn`` then runs once
        more on a fresh one: right for reads and idempotent writes, not for a write whose answer
        depends on whether it ran before (a nonce, a lease taken). While the server does not
        answer at all, ``fn`` is tried again with back-off for up to :attr:`patience` seconds
        (when ``again``, or when it never began): a restart of the server is waited out, not
        reported to every caller."""
        deadline = time.monotonic() + self.patience
        pause = 0.05
        for attempt in itertools.count(1):
            began = False
            try:
                with self._pool.connection() as conn:
                    began = True
                    return fn(conn)
            except psycopg.OperationalError as exc:
                if (began and not again) or not _unreachable(exc):
                    raise self._translate(exc) from exc
                if not (began and attempt == 1):  # not a stale pooled connection: the server is away
                    if time.monotonic() >= deadline:
                        raise self._translate(exc) from exc
                    time.sleep(pause)
                    pause = min(2 * pause, 1.0)
                # The pool drops this one as it takes it back; the others may be as dead (a
                # server restarted): the idle ones are checked before the next attempt.
                with contextlib.suppress(psycopg.Error, PoolTimeout):
                    self._pool.check()
            except psycopg.Error as exc:
                raise self._translate(exc) from exc
        raise LedgerError(f"{self._name}: unreachable")  # the loop returns or raises first

    def _short_write(
        self, fn: Callable[[psycopg.Connection[Any]], T], *, serialize: bool = True, again: bool = False
    ) -> T:
        """One small transaction, after the head row when ``serialize``: it then runs between two
        appends, never beside one. ``again``: see :meth:`_read` (only for a write that may run
        twice)."""
        if self._closing:
            raise LedgerClosed(f"ledger {self._name} is closed")

        def run(conn: psycopg.Connection[Any]) -> T:
            with conn.transaction():
                if serialize:
                    conn.execute("SELECT size FROM head FOR UPDATE")
                return fn(conn)

        return self._read(run, again=again)

    def _write_nonces(self, fn: Callable[[psycopg.Connection[Any]], None]) -> None:
        # Beside the log, so appends need not wait; marks written twice are written once.
        self._short_write(fn, serialize=False, again=True)

    def _prepare_nonces(self, conn: psycopg.Connection[Any]) -> None:
        """Nothing: the table is made with the schema."""

    def _tree(
        self, conn: psycopg.Connection[Any], size: int | None, compute: Callable[[int, merkle.GetNode], T]
    ) -> T:
        """Two passes: which nodes ``compute`` reads depends on the sizes and indexes alone, never
        on the hashes, so a first pass over placeholders names them all and one query per table
        fetches them, instead of a round trip to the server per node."""
        n, _ = self._sized(conn, size)
        wanted: list[tuple[int, int]] = []

        def record(level: int, index: int) -> bytes:
            wanted.append((level, index))
            return bytes(32)

        compute(n, record)
        found: dict[tuple[int, int], bytes] = {}
        leaves = [i for level, i in wanted if level == 0]
        if leaves:
            rows = conn.execute("SELECT idx, leaf_hash FROM entries WHERE idx = ANY(%s)", (leaves,))
            found.update(((0, int(i)), bytes(h)) for i, h in rows)
        inner = [(level, i) for level, i in wanted if level > 0]
        if inner:
            rows = conn.execute(
                "SELECT n.level, n.i, n.hash FROM nodes n "
                "JOIN unnest(%s::int[], %s::bigint[]) AS w(level, i) ON n.level = w.level AND n.i = w.i",
                ([level for level, _ in inner], [i for _, i in inner]),
            )
            found.update(((int(level), int(i)), bytes(h)) for level, i, h in rows)

        def get_node(level: int, index: int) -> bytes:
            node = found.get((level, index))
            if node is None:
                raise LedgerError(
                    f"ledger {self._name} is missing tree node (level {level}, index {index}); "
                    "run `answerable verify`"
                )
            return node

        return compute(n, get_node)

    # --- the lease ------------------------------------------------------------------------------

    def _on_lease_connection(
        self, fn: Callable[[psycopg.Connection[Any]], T], *, again: bool = True, serialize: bool = False
    ) -> T:
        """Run ``fn`` in a transaction on the lease's own connection, outside the pool: its holder
        learns at once that the server is away (no pool timeout to wait out) and is heard at
        once when it is back (no pool reconnection back-off), so the lease lapses after its ttl
        and no later. Never waits with :attr:`patience`. A connection the server closed since
        (a restart) is replaced once, where ``again`` says ``fn`` may run twice. ``serialize``:
        after the head row, as :meth:`_short_write`: a takeover then lands between two appends,
        never beside one whose fence was read before it (and which would commit after it)."""
        with self._lease_lock:
            if self._closing:
                raise LedgerClosed(f"ledger {self._name} is closed")
            for attempt in (1, 2):
                conn, fresh = self._lease_conn, self._lease_conn is None
                try:
                    if conn is None:
                        conn = self._lease_conn = _connect(
                            self.url, application_name=f"answerable-lease {self.schema}"[:63]
                        )
                    with conn.transaction():
                        if serialize:
                            conn.execute("SELECT size FROM head FOR UPDATE")
                        return fn(conn)
                except psycopg.Error as exc:
                    self._lease_conn = None
                    with contextlib.suppress(psycopg.Error):
                        conn.close()  # type: ignore[union-attr]
                    if fresh or not again or attempt == 2 or not _unreachable(exc):
                        raise self._translate(exc) from exc
            raise LedgerError(f"{self._name}: unreachable")  # the loop returns or raises first

    def _lease_read(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        return self._on_lease_connection(fn)

    def take_lease(self, row: LeaseRow, *, expect: tuple[int, int] | None) -> int | None:
        def take(conn: psycopg.Connection[Any]) -> int | None:
            # FOR UPDATE: a heartbeat of the holder landing now waits, so (epoch, beat) is compared
            # and swapped as one step, as SQLite's BEGIN IMMEDIATE makes it there.
            current = conn.execute("SELECT epoch, beat FROM lease FOR UPDATE").fetchone()
            if (None if current is None else (int(current[0]), int(current[1]))) != expect:
                return None
            epoch = 1 if current is None else int(current[0]) + 1
            conn.execute(
                "INSERT INTO lease VALUES (1, %s, %s, 0, %s, %s, %s, %s, FALSE) ON CONFLICT (one) DO UPDATE "
                "SET holder = excluded.holder, epoch = excluded.epoch, beat = 0, pid = excluded.pid, "
                "host = excluded.host, since = excluded.since, process = excluded.process, released = FALSE",
                (row.holder, epoch, row.pid, row.host, row.since, row.process),
            )
            return epoch

        return self._on_lease_connection(take, again=False, serialize=True)

    def beat_lease(self, epoch: int) -> bool:
        def beat(conn: psycopg.Connection[Any]) -> bool:
            cur = conn.execute("UPDATE lease SET beat = beat + 1 WHERE epoch = %s AND NOT released", (epoch,))
            return cur.rowcount == 1

        return self._on_lease_connection(beat)

    def release_lease(self, epoch: int) -> None:
        self._on_lease_connection(
            lambda c: c.execute("UPDATE lease SET released = TRUE WHERE epoch = %s", (epoch,)).rowcount,
            serialize=True,
        )

    # --- reading --------------------------------------------------------------------------------

    def data_version(self) -> int:
        """The head's size: every append moves it, by any process, in the append's own commit."""
        row = self._read(lambda c: c.execute("SELECT size FROM head").fetchone())
        return -1 if row is None else int(row[0])

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` under its digest and return the digest (see SQLiteLedger.put_blob).

        Raises:
            LedgerTampered: the blob stored under this digest was altered.
            RecordInvalid: ``data`` is not bytes (nothing is stored).
        """
        data = blob_bytes(data)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()

        def put(conn: psycopg.Connection[Any]) -> None:
            added = conn.execute(
                "INSERT INTO blobs VALUES (%s, %s) ON CONFLICT DO NOTHING", (digest, data)
            ).rowcount
            if not added:
                row = conn.execute("SELECT data FROM blobs WHERE digest = %s", (digest,)).fetchone()
                if row is not None and bytes(row[0]) != data:
                    raise _verify.altered_blob(digest, bytes(row[0]), None)

        self._read(put)
        return digest

    # --- checkpoints, nonces, verification ------------------------------------------------------

    def use_nonce(self, key: str, created: int, *, forget_before: int | None = None) -> bool:
        """Record a request nonce durably; False when it was recorded before (a replay).

        Raises:
            RecordInvalid: as SQLiteLedger.use_nonce (nothing is recorded).
        """
        key, created = stored_text(key, "nonce"), nonce_time(created)
        if forget_before is not None:
            forget_before = nonce_time(forget_before)
        self._nonce_calls += 1
        forget = forget_before is not None and self._nonce_calls % 1024 == 0

        def use(conn: psycopg.Connection[Any]) -> bool:
            if forget:
                conn.execute(FORGET_NONCES.replace("%", "%%").replace("?", "%s"), (forget_before,))
            cur = conn.execute("INSERT INTO nonces VALUES (%s, %s) ON CONFLICT DO NOTHING", (key, created))
            return cur.rowcount == 1

        return self._read(use, again=False)

    def verify(self, checkpoint: str | None = None, *, key: str | None = None) -> VerifyReport:
        """Recompute every leaf, blob, node, root and checkpoint from one snapshot; see
        SQLiteLedger.verify for what it proves with and without ``key`` and ``checkpoint``."""
        conn = _connect(self.url, autocommit=False)
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _verify.verify(_StreamingView(conn, self._sql), checkpoint, key=key)
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        finally:
            conn.close()

    def close(self) -> None:
        self._stop_writer()
        self._pool.close()
        with self._lease_lock:
            if self._lease_conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._lease_conn.close()
                self._lease_conn = None

    def discard(self) -> None:
        """Drop this ledger's tables, and its schema when creating the ledger made it (the key is
        not this ledger's to delete: a copy writes it only once it is whole).

        Raises:
            StoreUnavailable, LedgerError: the server could not be reached or refused.
        """
        tables = sql.SQL(", ").join(sql.Identifier(self.schema, t) for t in _TABLES)
        try:
            with _connect(self.url) as conn:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tables))
                if self.made_schema:  # RESTRICT: whatever else is in it by now is not ours
                    with contextlib.suppress(errors.DependentObjectsStillExist):
                        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(self.schema)))
        except psycopg.Error as exc:
            raise self._translate(exc) from exc


class _StreamingView(SQLView):
    """Verification's rows through server-side cursors, so a million entries never sit in memory."""

    _names = itertools.count()
    _FETCH = 16_384
    """Rows fetched from the server at a time; each round trip costs more than its rows (verify
    of 200,000 entries: 4.4 s fetching 256 at a time, 3.8 s at 16,384)."""

    def _batches(self, sql: str, args: tuple[Any, ...], size: int) -> Iterator[list[Any]]:
        """Rows in batches of ``size``, the size verification checks at a time, sliced from
        larger fetches."""
        fetch = max(size, self._FETCH)
        with self.conn.cursor(name=f"verify_{next(self._names)}") as cur:
            cur.itersize = fetch
            cur.execute(self._sql(sql), args)
            while rows := cur.fetchmany(fetch):
                for start in range(0, len(rows), size):
                    yield rows[start : start + size]


def _probe_meta(conn: psycopg.Connection[Any], schema: str, where: str) -> dict[str, str] | None:
    """The ``meta`` table of ``schema``, or None when the schema holds none."""
    try:
        found = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'meta'",
            (schema,),
        ).fetchone()
        if found is None:
            return None
        rows = conn.execute(
            sql.SQL("SELECT key, value FROM {}.meta").format(sql.Identifier(schema))
        ).fetchall()
    except psycopg.Error as exc:
        unreached = StoreUnavailable if _unreachable(exc) else LedgerError
        raise unreached(f"{where}: cannot read it: {_first_line(exc)}") from exc
    return {str(k): str(v) for k, v in rows}
