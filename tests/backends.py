"""The ledger backends every contract test runs against: a SQLite file and a PostgreSQL schema.

PostgreSQL is the machine's own server (127.0.0.1:5432, trust auth; ``ANSWERABLE_TEST_PG`` names
another). Each test gets a schema of its own, dropped afterwards, and its signing keys in its own
folder, so runs never collide and nothing is left behind.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from answerable.ledger import open_ledger
from answerable.ledger._sql import SQLLedger

PG_BASE = os.environ.get("ANSWERABLE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


@dataclass
class Backend:
    """One place a ledger lives; ``open`` again gives another connection to the same ledger."""

    name: str
    target: str
    key_dir: Path
    opened: list[SQLLedger] = field(default_factory=list)

    def open(self, *, create: bool = False, origin: str | None = None) -> SQLLedger:
        store = open_ledger(self.target, create=create, origin=origin)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()
        if self.name == "postgres":
            from answerable.ledger.postgres import drop_schema

            drop_schema(self.target)


def make_backend(name: str, tmp_path: Path) -> Backend:
    if name == "sqlite":
        return Backend(name, str(tmp_path / "ledger.db"), tmp_path)
    schema = f"answerable_t_{uuid.uuid4().hex[:12]}"
    return Backend(name, pg_url(schema), tmp_path / "keys")
