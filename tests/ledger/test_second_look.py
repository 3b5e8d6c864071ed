"""A second look at a ledger the process is serving (the console renders its report in the
service) must not cost the service its SQLite locks: on Linux, closing any descriptor of a file
drops every POSIX lock the process holds on it, and then another program's reader, closing
last, would delete the live WAL the service is still writing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import order_events

from answerable import SQLiteLedger
from answerable.clock import IdSource
from answerable.ledger import open_ledger


async def test_opening_the_served_ledger_again_keeps_its_wal(
    path: Path, store: SQLiteLedger, ids: IdSource
) -> None:
    await store.append(order_events(3, ids))
    wal = path.with_name(path.name + "-wal")
    assert wal.exists()
    with open_ledger(path) as again:  # what report.render does, in the same process
        assert again.size() == 3
    outside = (
        f"import sqlite3; sqlite3.connect({str(path)!r}).execute('SELECT count(*) FROM entries').fetchone()"
    )
    subprocess.run([sys.executable, "-c", outside], check=True, timeout=60)  # noqa: ASYNC221 (reads, closes last)
    assert wal.exists(), "another program deleted the WAL the service still writes"
    await store.append(order_events(2, ids))
    assert store.size() == 5
    assert store.verify().size == 5
