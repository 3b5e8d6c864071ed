"""Where a ledger lives: a file (SQLite) or a ``postgresql://`` URL naming a schema.

Every command that takes a ledger takes either; PostgreSQL's driver is imported only when a URL
names it, so a command on a file starts as fast as before.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING

from answerable.errors import StoreUnavailable

if TYPE_CHECKING:
    from answerable.ledger._sql import SQLLedger
    from answerable.ledger.note import Signer

__all__ = ["SERVING_PATIENCE", "is_postgres_url", "open_ledger"]

_CONNINFO = re.compile(r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|service|sslmode)\s*=")
"""A libpq ``keyword=value`` connection string, which names no ledger (only a URL does) and may
carry a password: it is refused without being echoed, unlike a path that names no file."""

SERVING_PATIENCE = 30.0
"""Seconds a long-running process (``answerable serve``, ``answerable agent``) waits, once its
ledger is open, for a database server that stops answering (``SQLLedger.patience``): a call the
gateway made is recorded once the server is back, not left open, and a handled mark is written.
The gateway's lease, which cannot be beaten meanwhile, lapses sooner: ``Lease.wait_lost``
counts it lost after its ttl (10 s) without a beat that landed, however long a hung beat
waits, and ``serve`` then exits 75, to be started again, and the next epoch settles what was
left open. That order matters: a gateway whose Execution could not be recorded while it still
held its lease would leave its claim open, since only a later epoch reconciles; so this stays
well above the ttl."""


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def open_ledger(
    target: str | os.PathLike[str],
    *,
    create: bool = False,
    origin: str | None = None,
    signing_key: str | os.PathLike[str] | None = None,
    identity: tuple[Signer | None, str] | None = None,
    patience: float = 0.0,
) -> SQLLedger:
    """Open (or with ``create``, create) the ledger at ``target``.

    ``identity``: the signer and verifier key to create it with instead of a fresh key, for a
    ledger being copied (:func:`answerable.ledger.copy.copy_ledger`): it is made an unfinished
    copy, which no open takes, until its ``mark_copied``. ``patience``: seconds to
    wait, trying again with back-off, for a database server that does not answer, now and for
    every read and append afterwards (``SQLLedger.patience``): for a long-running process, which
    outlives a restart of its server; a command fails at once instead (the default).

    Raises:
        NotALedger, LedgerError, ConfigError: as the backend's ``open`` documents.
        StoreUnavailable: the server did not answer within ``patience`` seconds.
    """
    deadline = time.monotonic() + patience
    pause = 0.1
    while True:
        try:
            ledger = _open(target, create=create, origin=origin, signing_key=signing_key, identity=identity)
        except StoreUnavailable:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 2.0)
            continue
        ledger.patience = patience
        return ledger


def _open(
    target: str | os.PathLike[str],
    *,
    create: bool,
    origin: str | None,
    signing_key: str | os.PathLike[str] | None,
    identity: tuple[Signer | None, str] | None,
) -> SQLLedger:
    if not isinstance(target, str | os.PathLike) or not isinstance(text := os.fspath(target), str):
        from answerable.errors import ConfigError

        raise ConfigError(f"a ledger is a file or a postgresql:// URL, not {type(target).__name__}")
    if "://" in text and not is_postgres_url(text):  # say the scheme, never the rest (a password)
        from answerable.errors import ConfigError

        scheme = text.split("://", 1)[0]
        raise ConfigError(f"a {scheme}:// URL names no ledger: give a file or a postgresql:// URL")
    if _CONNINFO.search(text) and not os.path.exists(text):  # never echoed: it may hold a password
        from answerable.errors import ConfigError

        raise ConfigError(
            "a keyword=value connection string names no ledger: give a file or a postgresql:// URL"
        )
    if is_postgres_url(text):
        from answerable.ledger.postgres import PostgresLedger

        return PostgresLedger.open(
            text, create=create, origin=origin, signing_key=signing_key, identity=identity
        )
    from answerable.ledger.sqlite import SQLiteLedger

    return SQLiteLedger.open(text, create=create, origin=origin, signing_key=signing_key, identity=identity)
