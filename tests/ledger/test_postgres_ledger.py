"""What only a ledger on a server can suffer: its connection cut in the middle of a commit.

The writer's backend is terminated on the server (``pg_terminate_backend``, as a failover or an
operator would) while appends keep arriving from many threads. A commit is all or nothing; the
writer reconnects, reads back which items of the cut commit are stored, and sends the rest again,
so every caller learns the truth and the head is re-derived from the database, not from memory.
"""

from __future__ import annotations

import random
import threading

import psycopg
import pytest
from backends import Backend
from procs import SEED
from support import order_events

from answerable.clock import FakeClock, IdSource
from answerable.errors import LedgerError

pytestmark = pytest.mark.slow

THREADS, BATCHES, PER_BATCH = 6, 25, 3


def ids_for(n: int) -> IdSource:
    return IdSource(FakeClock(ns=(n + 1) * 10**15))


def test_a_commit_cut_by_the_server_is_all_or_nothing_and_every_caller_learns_which(pg: Backend):
    store = pg.open(create=True)
    rng = random.Random(SEED)
    batches = [
        [
            order_events(PER_BATCH, IdSource(FakeClock(ns=(t * BATCHES + b + 1) * 10**15)))
            for b in range(BATCHES)
        ]
        for t in range(THREADS)
    ]
    results: dict[tuple[int, int], list[int] | LedgerError] = {}
    done = threading.Event()

    def append(t: int) -> None:
        for b, batch in enumerate(batches[t]):
            try:
                results[(t, b)] = store.append_sync(batch)
            except LedgerError as exc:
                results[(t, b)] = exc

    kills = 0
    writer = f"answerable-writer {store.schema}"[:63]  # type: ignore[attr-defined]

    def killer() -> None:
        nonlocal kills
        with psycopg.connect(pg.target, autocommit=True) as admin:
            while not done.is_set() and kills < 8:
                if rng.random() < 0.5:
                    continue
                row = admin.execute(  # this ledger's writer only: other tests may share the server
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND state <> 'idle' LIMIT 1",
                    (writer,),
                ).fetchone()
                kills += bool(row and row[0])

    threads = [threading.Thread(target=append, args=(t,)) for t in range(THREADS)]
    cutter = threading.Thread(target=killer)
    cutter.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    cutter.join()
    assert kills > 0, f"seed {SEED}: the writer was never caught mid-commit"
    unknown = sum(isinstance(o, LedgerError) for o in results.values())
    print(
        f"seed {SEED}: the writer was cut {kills} times; {unknown} callers were told the outcome is unknown"
    )

    fresh = pg.open()  # read from a new connection: what the database holds, nothing cached
    entries = fresh.entries()
    assert [e.index for e in entries] == list(range(len(entries)))
    where = {e.id: e.index for e in entries}
    for (t, b), outcome in results.items():
        ids = [e.id for e in batches[t][b]]
        if isinstance(outcome, LedgerError):
            present = [i in where for i in ids]
            assert present in ([True] * PER_BATCH, [False] * PER_BATCH), f"seed {SEED}: half a batch"
            # An error that does not say "unknown" must be true: nothing of the batch is stored.
            assert "is unknown" in str(outcome) or not any(present), f"seed {SEED}: {outcome}"
        else:
            assert [where[i] for i in ids] == outcome, f"seed {SEED}: batch {t}/{b} not where it was told"
    assert fresh.verify().size == len(entries)
    assert len(entries) >= PER_BATCH * sum(not isinstance(o, LedgerError) for o in results.values())


def test_a_pooled_connection_the_server_closed_is_replaced_on_the_next_read(pg: Backend):
    """A server restart or an administrator closes idle connections; the next read still answers."""
    store = pg.open(create=True)
    store.append_sync(order_events(3))
    assert store.size() == 3
    readers = f"answerable {store.schema}"[:63]  # type: ignore[attr-defined]
    with psycopg.connect(pg.target, autocommit=True) as admin:
        [(closed,)] = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (readers,),
        ).fetchall()
    assert closed >= 1
    assert store.size() == 3
    assert store.entry(2).index == 2
    assert store.append_sync(order_events(1, ids_for(999))) == [3]


def test_a_commit_whose_answer_was_lost_is_found_stored_not_written_again(
    pg: Backend, monkeypatch: pytest.MonkeyPatch
):
    """The commit reached the server, the answer never came back (the connection died right
    after COMMIT): the writer finds every entry stored, in order, and tells each caller its
    indexes; nothing is written twice."""
    store = pg.open(create=True)
    real = type(store)._commit
    cut: list[int] = []

    def commit_then_cut(self, conn, batch, *, recovering=False):  # type: ignore[no-untyped-def]
        done = real(self, conn, batch, recovering=recovering)
        if not cut:
            cut.append(len(batch))
            conn.close()  # as if the socket died before COMMIT's answer arrived
            raise psycopg.OperationalError("the connection was cut after COMMIT")
        return done

    monkeypatch.setattr(type(store), "_commit", commit_then_cut)
    first = store.append_nowait(order_events(3, ids_for(1)))
    assert first.result() == [0, 1, 2]
    assert cut == [1]
    assert store.append_sync(order_events(2, ids_for(2))) == [3, 4]
    assert [e.index for e in store.entries()] == [0, 1, 2, 3, 4]
    assert store.verify().size == 5
