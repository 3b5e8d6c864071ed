"""A world kept in its own SQLite file, and a child process that dies in the middle of an action.

Run as ``python tests/crash_world.py LEDGER WORLD MODE POINT``: it submits one booking and kills
itself with ``os._exit`` at POINT, as a power cut would, leaving no chance to clean up.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from answerable import Gateway, IdSource, KeyPair, SQLiteLedger, SystemClock, new_charter, new_ruleset
from answerable.charter import schema_for

CRASH_EXIT = 137
RI = KeyPair.from_seed("ri@logistics.example", b"\x01" * 32)
POLICIES = '@id("bookings") permit(principal, action, resource);'


class CarrierWorld:
    """The carrier's own record of bookings, in a file the gateway does not own."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS bookings (n INTEGER PRIMARY KEY, key TEXT, shipment TEXT)"
        )

    def book_idempotent(self, shipment: str, idempotency_key: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT n FROM bookings WHERE key = ?", (idempotency_key,)).fetchone()
        if row is None:
            self.conn.execute(
                "INSERT INTO bookings (key, shipment) VALUES (?, ?)", (idempotency_key, shipment)
            )
        return {"shipment": shipment}

    def book_plain(self, shipment: str, idempotency_key: str) -> dict[str, Any]:
        self.conn.execute("INSERT INTO bookings (key, shipment) VALUES (?, ?)", (idempotency_key, shipment))
        return {"shipment": shipment}

    async def lookup(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT shipment FROM bookings WHERE key = ?", (key,)).fetchone()
        return None if row is None else {"shipment": row[0]}

    def count(self, key: str | None = None) -> int:
        if key is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM bookings").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM bookings WHERE key = ?", (key,)).fetchone()[0])


def build_gateway(ledger: SQLiteLedger, world: CarrierWorld, mode: str, fault: Any = None) -> Gateway:
    gateway = Gateway(ledger, fault=fault)
    if mode == "idempotent":
        gateway.register("carrier.book", world.book_idempotent, resource_class="shipment", idempotent=True)
    elif mode == "lookup":
        gateway.register("carrier.book", world.book_plain, resource_class="shipment", lookup=world.lookup)
    else:
        gateway.register("carrier.book", world.book_plain, resource_class="shipment")
    return gateway


async def _child(ledger_path: Path, world_path: Path, mode: str, point: str) -> None:
    def die(at: str, _intent: object) -> None:
        if at == point:
            os._exit(CRASH_EXIT)

    ledger = SQLiteLedger.open(ledger_path, create=True)
    gateway = build_gateway(ledger, CarrierWorld(world_path), mode, fault=die)
    ids = IdSource(SystemClock())
    await gateway.install(
        new_charter("logistics", RI, agents=["executor"], ids=ids),
        new_ruleset(POLICIES, schema_for(["carrier.book"]), RI, ids=ids),
    )
    intent = gateway.intent("executor", "carrier.book", {"shipment": "S-1"}, idempotency_key="book-S-1")
    await gateway.submit(intent)
    raise SystemExit("the child was meant to crash before this line")


if __name__ == "__main__":
    asyncio.run(_child(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]))
