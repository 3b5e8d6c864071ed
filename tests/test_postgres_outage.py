"""The gateway on a PostgreSQL server of the test's own that stops answering, or crashes.

"NATS delivers; PostgreSQL decides": a gateway that cannot reach the store starts no call, since
none starts before its claim is committed there; and a server killed with kill -9 (postmaster and
backends) and started again costs a few refused submits, named, and nothing else: no effect
twice, every effect in the ledger, a ledger that verifies. The server is this test's own
(PostgreSQL refuses to run as root: it runs as ``postgres``), so only its processes are signalled.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from pgd import PgServer
from support import People, World, booking, make_gateway

from answerable.clock import FakeClock
from answerable.errors import AnswerableError
from answerable.lease import Lease
from answerable.ledger import open_ledger

pytestmark = [pytest.mark.slow, pytest.mark.crash]


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PgServer]:
    monkeypatch.setenv("ANSWERABLE_KEY_DIR", str(tmp_path / "keys"))
    own = PgServer().start()
    try:
        yield own
    finally:
        own.stop()


@pytest.mark.timeout(120)
def test_a_gateway_cut_off_from_postgresql_starts_no_call(server: PgServer, people: People) -> None:
    """The gateway runs in a thread of its own: while the store does not answer, its event loop
    waits on it (a read of the control state; see the README), so the test looks from outside."""
    world = World()
    ready, go = threading.Event(), threading.Event()
    outcomes: list[object] = []

    async def gateway_side() -> None:
        ledger = open_ledger(server.url("cut"), create=True, origin="test.example/cut")
        gateway = await make_gateway(ledger, people, FakeClock(), world)  # type: ignore[arg-type]
        try:
            outcomes.append(await gateway.submit(gateway.intent("executor", "carrier.book", booking("S-1"))))
            ready.set()
            go.wait()
            try:
                outcomes.append(
                    await gateway.submit(gateway.intent("executor", "carrier.book", booking("S-2")))
                )
            except AnswerableError as exc:  # gave up on the store, named: that is fine too
                outcomes.append(exc)
            assert ledger.verify().size == ledger.size()
        finally:
            gateway.close()
            ledger.close()

    worker = threading.Thread(target=asyncio.run, args=(gateway_side(),))
    worker.start()
    assert ready.wait(60)
    assert world.calls == 1
    server.signal_all(signal.SIGSTOP)  # every process of the server stops answering
    try:
        go.set()
        worker.join(timeout=3.0)  # well past 2 s without the store
        assert world.calls == 1  # no call started
    finally:
        server.signal_all(signal.SIGCONT)
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert len(outcomes) == 2
    later = outcomes[1]
    assert isinstance(later, AnswerableError) or getattr(later, "ok", False)
    assert world.calls == (1 if isinstance(later, AnswerableError) else 2)


@pytest.mark.timeout(180)
async def test_postgresql_killed_mid_run_and_restarted_loses_nothing_and_does_nothing_twice(
    server: PgServer, people: People
) -> None:
    ledger = open_ledger(server.url("crash"), create=True, origin="test.example/crash")
    restart: list[threading.Thread] = []

    class Crashing(World):
        """The 15th booking crashes the database server as it is made: its Execution, and the
        commits of the submits beside it, meet a dead server; it comes back on its own."""

        def book(
            self, shipment: str, cls: str, region: str, disruption: bool, idempotency_key: str
        ) -> dict[str, object]:
            made = super().book(shipment, cls, region, disruption, idempotency_key)
            if self.calls == 15:
                server.kill()
                restart.append(threading.Thread(target=server.start))
                restart[0].start()
            return made

    world = Crashing()
    gateway = await make_gateway(ledger, people, FakeClock(), world)  # type: ignore[arg-type]
    succeeded: dict[str, str] = {}  # idempotency key -> intent id
    refused: list[AnswerableError] = []

    async def book(n: int) -> None:
        key = f"book-{n}"
        for _ in range(20):  # a refused submit is made again with the same key, as a caller would
            try:
                intent = gateway.intent("executor", "carrier.book", booking(f"S-{n}"), idempotency_key=key)
                outcome = await gateway.submit(intent)
            except AnswerableError as exc:
                refused.append(exc)
                await asyncio.sleep(0.2)
                continue
            assert outcome.ok
            succeeded[key] = intent.id
            return
        raise AssertionError(f"{key} never went through")

    try:
        await asyncio.gather(*(book(n) for n in range(40)))
        await gateway.reconcile()
    finally:
        for thread in restart:
            thread.join()
        gateway.close()
        ledger.close()
    assert len(succeeded) == 40
    assert ledger.recoveries >= 1  # the writer met the dead server, and settled its commit again
    assert all(type(e).__module__ == "answerable.errors" for e in refused)  # named, never raw
    with open_ledger(server.url("crash")) as store:
        assert store.verify().size == store.size()
        executions = [orjson.loads(e.data) for e in store.of_kind("Execution")]
    done = {x["intent_id"] for x in executions if x["status"] == "succeeded"}
    assert set(succeeded.values()) <= done  # every effect a caller was told of is in the ledger
    assert len(world.bookings) == 40  # each booking made once, whatever was tried again


@pytest.mark.timeout(120)
def test_a_lease_whose_server_stops_answering_counts_as_lost_after_its_ttl(server: PgServer) -> None:
    """A server that accepts and never answers (SIGSTOP) hangs the heartbeat's UPDATE for good:
    no beat fails, so no failure is ever counted. The holder's watcher counts the lease lost
    once a ttl passed without a beat that landed, as a standby would see it: ``serve`` exits 75
    on exactly this."""
    ledger = open_ledger(server.url("stopped"), create=True, origin="test.example/stopped")
    lease = Lease(ledger, ttl=2.0)
    lease.acquire()
    try:
        assert not lease.wait_lost(timeout=3.0)  # beats land: held past its ttl
        assert lease.held
        server.signal_all(signal.SIGSTOP)
        try:
            assert lease.wait_lost(timeout=30.0)
            assert not lease.held
            assert "no longer in force" in str(lease.lost_error())
        finally:
            server.signal_all(signal.SIGCONT)
    finally:
        lease.release()
        ledger.close()
