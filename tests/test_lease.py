"""One active gateway per ledger: the lease, its epoch fencing, guarded heads, and old ledgers.

What these pin lives in the store, so each test opens the ledger as another process would: a
second SQLiteLedger on the same file, or a real child process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support import People, World, make_gateway, register_world

from answerable import FakeClock, Gateway, SQLiteLedger
from answerable.errors import ConfigError, Conflict, LeaseHeld, LeaseLost
from answerable.lease import Lease
from answerable.ledger.base import Guard
from answerable.records import Claim, Control, ExternalEvent, Scope, decode_entry

DATA = Path(__file__).with_name("data")


def event(n: int) -> ExternalEvent:
    return ExternalEvent(
        id=f"evt-{n}", at="2026-11-30T10:00:00Z", source="test", type="tick", payload={"n": n}
    )


class Ticks:
    """A monotonic clock that moves only when told: silence is measured on it, never on a wall clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_second_gateway_is_refused_naming_the_holder(
    gateway: Gateway, ledger_path: Path, people: People, clock: FakeClock
):
    """Started by mistake on a ledger another live gateway serves: a precise error, nothing written."""
    other = SQLiteLedger.open(ledger_path)
    try:
        size = other.size()
        second = Gateway(other)
        with pytest.raises(LeaseHeld) as refused:
            await second.resume_from_ledger()
        error = refused.value
        assert (error.pid, error.holder) == (gateway.lease.pid, gateway.lease.holder)
        assert error.host == gateway.lease.host
        assert error.since
        assert str(error.pid) in str(error)
        assert "standby" in str(error)
        assert other.size() == size
    finally:
        other.close()


def test_a_standby_takes_over_only_after_the_heartbeat_is_silent_for_the_ttl(ledger: SQLiteLedger):
    """Silence is counted on the standby's monotonic clock; a beat resets it; then epoch + 1."""
    holder = Lease(ledger, ttl=5.0, holder="first")
    assert holder.acquire() == 1
    holder._stop.set()  # freeze the holder's heartbeat, as SIGSTOP would
    assert holder._beater is not None
    holder._beater.join()
    ticks = Ticks()
    standby = Lease(ledger, ttl=5.0, holder="second", monotonic=ticks, poll=0.0)
    with pytest.raises(LeaseHeld):
        standby.acquire(standby=True, timeout=0.0)  # seen once: the silence starts now
    ticks.now += 4.9
    with pytest.raises(LeaseHeld):
        standby.acquire(standby=True, timeout=0.0)
    ledger.beat_lease(1)  # the holder is alive after all: the count starts again
    ticks.now += 4.9
    with pytest.raises(LeaseHeld):
        standby.acquire(standby=True, timeout=0.0)
    ticks.now += 5.0
    assert standby.acquire(standby=True, timeout=0.0) == 2
    assert not ledger.beat_lease(1)  # the old epoch can no longer beat
    with pytest.raises(LeaseLost):
        holder.check()
    standby.release()


def test_a_wall_clock_jump_changes_nothing(ledger: SQLiteLedger):
    """The lease row holds a beat counter, not times: a standby's wall clock is never consulted."""
    holder = Lease(ledger, ttl=60.0)
    holder.acquire()
    ticks = Ticks()
    standby = Lease(ledger, ttl=60.0, holder="standby", monotonic=ticks, poll=0.0)
    with pytest.raises(LeaseHeld):
        standby.acquire(standby=True, timeout=0.0)
    ticks.now += 59.0  # whatever the wall clock did meanwhile, a minute has not passed here
    with pytest.raises(LeaseHeld):
        standby.acquire(standby=True, timeout=0.0)
    holder.release()


async def test_a_fenced_append_of_a_deposed_epoch_is_refused(ledger: SQLiteLedger):
    """After a takeover the old holder can append nothing; others in the same commit still land."""
    old = Lease(ledger, ttl=5.0)
    old.acquire()
    ledger.release_lease(1)  # as if it had been taken over
    new = Lease(ledger, ttl=5.0, holder="new")
    assert new.acquire() == 2
    refused, landed = await asyncio.gather(
        ledger.append([event(1)], fence=1), ledger.append([event(2)], fence=2), return_exceptions=True
    )
    assert isinstance(refused, LeaseLost)
    assert refused.current == 2
    assert landed == [0]
    assert [e.id for e in ledger.entries()] == ["evt-2"]
    assert await ledger.append([event(3)]) == [1]  # CLI writers need no lease
    new.release()
    with pytest.raises(LeaseLost):
        await ledger.append([event(4)], fence=2)  # a released lease fences its own epoch too


async def test_guards_let_one_of_two_racing_writers_through(ledger: SQLiteLedger):
    """Two answers to one review in one group commit: the first wins, the second gets Conflict."""
    first, second = await asyncio.gather(
        ledger.append([event(1)], guards=[Guard("review:R", None)]),
        ledger.append([event(2)], guards=[Guard("review:R", None)]),
        return_exceptions=True,
    )
    assert first == [0]
    assert isinstance(second, Conflict)
    assert (second.expected, second.found) == (None, 0)
    assert ledger.head("review:R") == 0
    with pytest.raises(Conflict):
        await ledger.append([event(3)], guards=[Guard("review:R", None)])
    assert await ledger.append([event(3)], guards=[Guard("review:R", 0)]) == [1]
    assert ledger.head("review:R") == 1
    assert ledger.size() == 2


def test_a_holder_whose_process_died_is_replaced_at_once(ledger_path: Path, tmp_path: Path):
    """kill -9 leaves the lease row behind; a process on the same host sees the pid is gone."""
    SQLiteLedger.open(ledger_path, create=True).close()
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "from answerable import SQLiteLedger\n"
            "from answerable.lease import Lease\n"
            "Lease(SQLiteLedger.open(sys.argv[1]), ttl=3600).acquire()\n"
            "os._exit(137)\n",
            str(ledger_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 137, child.stderr
    with SQLiteLedger.open(ledger_path) as ledger:
        row = ledger.lease()
        assert row is not None
        assert not row.released
        assert row.epoch == 1
        lease = Lease(ledger, ttl=3600)
        assert lease.acquire() == 2  # no hour-long wait for a process known to be dead
        lease.release()


async def test_closing_a_gateway_hands_the_ledger_over_at_once(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
):
    """A clean stop releases the lease: the next gateway starts without waiting, with a new epoch."""
    first = await make_gateway(ledger, people, clock, world)
    assert first.lease.epoch == 1
    first.close()
    second = Gateway(ledger)
    second.register("carrier.book", lambda **_: None, resource_class="shipment")
    second.register("noop", lambda: None, resource_class="bench")
    await second.start()
    assert second.lease.epoch == 2
    with pytest.raises(LeaseLost):
        await first.submit(first.intent("executor", "noop", {}))
    second.close()


async def test_a_ledger_of_format_1_is_migrated_in_place_and_still_verifies(tmp_path: Path):
    """An earlier version's ledger opens, keeps its root and checkpoint, and records the migration."""
    for name in ("ledger.db", "ledger.db.key"):
        shutil.copy(DATA / "ledger-v1" / name, tmp_path / name)
    path = tmp_path / "ledger.db"
    before = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    assert before == ("1",)
    with SQLiteLedger.open(path) as ledger:
        report = ledger.verify()
        assert report.size == 17
        assert report.checkpoints_checked == 1
        checkpoint = ledger.latest_checkpoint()
        assert checkpoint is not None
        ledger.verify(checkpoint)
        gateway = Gateway(ledger)
        gateway.register("payments.refund", lambda **_: None, resource_class="payments")
        assert await gateway.start() == []  # nothing left open in it
        await gateway.control.pause(by="ops", reason="still writable", scope=Scope(kind="system"))
        gateway.close()
    meta = dict(sqlite3.connect(path).execute("SELECT key, value FROM meta").fetchall())
    assert meta["version"] == "2"
    assert meta["v2_from"] == "17"
    assert "1 -> 2" in meta["migrated"]
    with SQLiteLedger.open(path) as again:
        assert again.verify().size == 18
        assert isinstance(again.entry(17).data, bytes)
        assert b'"Control"' in again.entry(17).data


def test_the_signing_key_can_live_elsewhere_and_is_private(tmp_path: Path):
    """signing_key= puts the key where the operator says, mode 0600, and it signs checkpoints."""
    keys = tmp_path / "keys"
    keys.mkdir()
    path, key = tmp_path / "ledger.db", keys / "signing.key"
    with SQLiteLedger.open(path, create=True, signing_key=key) as ledger:
        ledger.append_sync([event(1)])
        ledger.checkpoint()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not (tmp_path / "ledger.db.key").exists()
    with SQLiteLedger.open(path, signing_key=key) as ledger:
        ledger.checkpoint()
        assert ledger.verify().checkpoints_checked >= 1


async def test_a_control_needs_no_lease(gateway: Gateway, ledger_path: Path):
    """Halting is a plain append from any process, while a gateway holds the lease."""
    other = SQLiteLedger.open(ledger_path)
    try:
        halt = Control(
            id="halt-1",
            at="2026-11-30T10:00:00Z",
            action="halt",
            scope=Scope(kind="system"),
            by="ops",
            reason="x",
        )
        await other.append([halt])
    finally:
        other.close()
    outcome = await gateway.submit(gateway.intent("executor", "noop", {}))
    assert outcome.status == "denied"


def test_a_holder_in_another_pid_namespace_is_not_judged_dead_by_its_pid(ledger: SQLiteLedger):
    """Same host name, other container: its pid means nothing here, so only silence deposes it."""
    import socket

    from answerable.lease import process_token
    from answerable.ledger.base import LeaseRow

    boot, start, _namespace = process_token(os.getpid()).split("|")
    elsewhere = LeaseRow(
        holder="gateway@container-b",
        epoch=0,
        beat=0,
        pid=4_000_000,  # no such process in this namespace
        host=socket.gethostname(),
        since="2026-12-01T00:00:00Z",
        process=f"{boot}|{start}|pid:[1]",
    )
    assert ledger.take_lease(elsewhere, expect=None) == 1
    with pytest.raises(LeaseHeld):
        Lease(ledger, ttl=3600).acquire()


def test_a_heartbeat_of_an_old_epoch_never_marks_a_new_one_lost(ledger: SQLiteLedger):
    """check() found the lease gone; acquiring again starts a fresh heartbeat the old one cannot spoil."""
    lease = Lease(ledger, ttl=0.3)
    assert lease.acquire() == 1
    old_beater = lease._beater
    assert old_beater is not None
    ledger.release_lease(1)
    with pytest.raises(LeaseLost):
        lease.check()
    assert not old_beater.is_alive()  # stopped and joined by check(): it cannot race the next epoch
    assert lease.acquire() == 2
    assert lease._beater is not old_beater
    lease._lose(1, LeaseLost(1, 2))  # what a late word from the old epoch would do: nothing
    assert lease.held
    assert lease.check() == 2
    lease.release()


@pytest.mark.parametrize("holder", ["gateway one", "g" * 201, "tab\there", "gw\udcff"])
def test_a_holder_no_claim_could_name_is_refused_when_the_gateway_is_made(ledger: SQLiteLedger, holder: str):
    """Every Claim names its gateway's holder, as a name (1 to 200 characters, no whitespace, no
    lone surrogate: the records' own check). A holder that is none was taken, and then every
    allowed intent raised pydantic's raw error about a Claim (a lone surrogate: SQLite's raw
    UnicodeEncodeError at start); now the Gateway is refused at once, saying what a holder is."""
    with pytest.raises(ConfigError, match="a lease holder is a name of 1 to 200 characters"):
        Gateway(ledger, holder=holder)
    assert ledger.size() == 0


@pytest.mark.parametrize("holder", [None, ""])
def test_no_holder_given_is_this_process_by_its_host_and_pid(ledger: SQLiteLedger, holder: str | None):
    gateway = Gateway(ledger, holder=holder)
    assert gateway.lease.holder == f"gateway@{gateway.lease.host}:{gateway.lease.pid}"
    gateway.close()


async def test_a_named_holder_is_the_one_its_claims_name(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
):
    gateway = await make_gateway(ledger, people, clock, world)
    gateway.close()
    named = Gateway(ledger, clock=clock, holder="gateway-one@north")
    register_world(named, world)
    await named.resume_from_ledger()
    outcome = await named.submit(named.intent("executor", "noop", {}))
    assert outcome.ok
    [claim] = [decode_entry(e.data) for e in ledger.of_kind("Claim")]
    assert isinstance(claim, Claim)
    assert claim.holder == "gateway-one@north"
    named.close()
