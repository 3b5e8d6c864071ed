"""Reads of a served shop's ledger and effects, straight from its files (not via the API)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any


def recorded(folder: Path, kind: str) -> list[dict[str, Any]]:
    """The ledger's entries of ``kind``, decoded, read straight from its file (not via the API)."""
    conn = sqlite3.connect(f"file:{folder / 'ledger.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT data FROM entries WHERE kind = ? ORDER BY idx", (kind,))
        return [json.loads(data) for (data,) in rows]
    finally:
        conn.close()


def executions_of(folder: Path, intent_id: str) -> list[dict[str, Any]]:
    return [e for e in recorded(folder, "Execution") if e["intent_id"] == intent_id]


def refunds_paid(folder: Path) -> list[dict[str, Any]]:
    """The effects the operation itself wrote: what really happened, one line per refund."""
    path = folder / "effects.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
