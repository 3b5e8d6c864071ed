"""Where a ledger lives: a file (SQLite) or a ``postgresql://`` URL naming a schema.

Every command that takes a ledger takes either; PostgreSQL's driver is imported only when a URL
names it, so a command on a file starts as fast as before.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from answerable.ledger._sql import SQLLedger
    from answerable.ledger.note import Signer

__all__ = ["is_postgres_url", "open_ledger"]


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def open_ledger(
    target: str | os.PathLike[str],
    *,
    create: bool = False,
    origin: str | None = None,
    signing_key: str | os.PathLike[str] | None = None,
    identity: tuple[Signer | None, str] | None = None,
) -> SQLLedger:
    """Open (or with ``create``, create) the ledger at ``target``.

    ``identity``: the signer and verifier key to create it with instead of a fresh key, for a
    ledger being copied (:func:`answerable.ledger.copy.copy_ledger`).

    Raises:
        NotALedger, LedgerError, ConfigError: as the backend's ``open`` documents.
    """
    text = os.fspath(target)
    if "://" in text and not is_postgres_url(text):  # say the scheme, never the rest (a password)
        from answerable.errors import ConfigError

        scheme = text.split("://", 1)[0]
        raise ConfigError(f"a {scheme}:// URL names no ledger: give a file or a postgresql:// URL")
    if is_postgres_url(text):
        from answerable.ledger.postgres import PostgresLedger

        return PostgresLedger.open(
            text, create=create, origin=origin, signing_key=signing_key, identity=identity
        )
    from answerable.ledger.sqlite import SQLiteLedger

    return SQLiteLedger.open(text, create=create, origin=origin, signing_key=signing_key, identity=identity)
