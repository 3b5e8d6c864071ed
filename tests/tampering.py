"""Tampering with a ledger file as an attacker with write access would: rows, hashes, the tree.

Shared by the trust and verify tests; every helper works on a real SQLite file, never a mock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from support import order_events

from answerable import LedgerTampered, SQLiteLedger
from answerable.clock import IdSource
from answerable.ledger import leaf_hash, merkle

__all__ = ["fault", "filled", "forge", "rebuild_tree", "sql"]


def filled(store: SQLiteLedger, ids: IdSource, *batches: int) -> list[str]:
    """Append batches of events, signing a checkpoint after each; return the ids in index order."""
    written: list[str] = []
    for n in batches:
        batch = order_events(n, ids)
        store.append_sync(batch)
        store.checkpoint()
        written += [e.id for e in batch]
    return written


def sql(path: Path, statement: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(statement, args).fetchall()
    finally:
        conn.close()


def forge(path: Path, index: int, edit: Callable[[bytes], bytes]) -> None:
    """Rewrite one entry's bytes and its leaf hash together, as a careful forger would."""
    [(data,)] = sql(path, "SELECT data FROM entries WHERE idx = ?", index)
    assert isinstance(data, bytes)
    forged = edit(data)
    sql(path, "UPDATE entries SET data = ?, leaf_hash = ? WHERE idx = ?", forged, leaf_hash(forged), index)


def rebuild_tree(path: Path) -> None:
    """Recompute every stored subtree hash from the entries as they stand."""
    leaves = [bytes(h) for (h,) in sql(path, "SELECT leaf_hash FROM entries ORDER BY idx")]  # type: ignore[call-overload]
    nodes = merkle.append_leaves(0, leaves, lambda level, index: b"")
    sql(path, "DELETE FROM nodes")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executemany("INSERT INTO nodes VALUES (?, ?, ?)", [n for n in nodes if n[0] > 0])
    conn.close()


def fault(store: SQLiteLedger, *args: object, **kwargs: object) -> LedgerTampered:
    with pytest.raises(LedgerTampered) as caught:
        store.verify(*args, **kwargs)  # type: ignore[arg-type]
    return caught.value
