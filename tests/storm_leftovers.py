"""What distributed storm runs leave in the machine's PostgreSQL and nats-server, found by name.

A run names its schema ``storm_RUN`` and its stream ``answerable_storm-RUN``, and keeps its agents'
files in ``OUT/agents/RUN``. Tests run beside each other (two pytest workers), so a test cleans up
the runs whose folders lie in its own ``tmp_path``, never "whatever appeared while it ran": that
would be another worker's run, still going.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import nats
import psycopg
from backends import PG_BASE
from nats.js.errors import NotFoundError

from answerable.ledger.postgres import drop_schema

NATS = os.environ.get("ANSWERABLE_TEST_NATS", "nats://127.0.0.1:4222")


def runs_under(folder: Path) -> set[str]:
    """The ids of the distributed storm runs whose files lie under ``folder``."""
    return {p.name for p in folder.glob("**/agents/*") if p.is_dir()}


def storm_schemas() -> set[str]:
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'storm\\_%'").fetchall()
    return {r[0] for r in rows}


async def storm_streams() -> set[str]:
    connection = await nats.connect(NATS)
    try:
        found = await connection.jetstream().streams_info()
    finally:
        await connection.close()
    return {s.config.name for s in found if s.config.name and s.config.name.startswith("answerable_storm-")}


async def _delete_streams(names: set[str]) -> None:
    connection = await nats.connect(NATS)
    try:
        for name in names:
            with contextlib.suppress(NotFoundError):  # a run that ended well took it down itself
                await connection.jetstream().delete_stream(name)
    finally:
        await connection.close()


def drop_runs(folder: Path) -> None:
    """Drop the schema and delete the stream of every run whose files lie under ``folder``."""
    runs = runs_under(folder)
    for run in runs:
        drop_schema(f"{PG_BASE}?options=-csearch_path%3Dstorm_{run}")
    asyncio.run(_delete_streams({f"answerable_storm-{run}" for run in runs}))
