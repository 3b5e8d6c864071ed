"""One active gateway per ledger: a lease in the store, with an epoch that fences the old holder.

The holder advances a heartbeat counter in the lease row from a thread of its own. A standby
watches that counter and takes over only when it has not moved for ``ttl`` seconds measured on
the standby's own monotonic clock: no wall clock is compared with another, so a clock that jumps
changes nothing. Taking over bumps the epoch in one conditional write; from then on the store
refuses every append fenced with the old epoch, and partners that check fencing tokens refuse
its calls, so a holder that was only paused (SIGSTOP, a long GC, a hung VM) can do no harm when
it wakes. A holder on this host whose process is gone is replaced at once: waiting out the lease
of a process known to be dead helps nobody.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from answerable.clock import rfc3339
from answerable.errors import AnswerableError, ConfigError, LeaseHeld, LeaseLost
from answerable.ledger.base import LeaseRow, LedgerStore

__all__ = ["DEPOSED", "Lease", "exit_when_lost", "process_alive", "process_token"]

DEPOSED = 75
"""The exit code of a serving process whose lease was lost (EX_TEMPFAIL): started again, it
takes the lease back and settles what was left open."""

Monotonic = Callable[[], float]


def process_token(pid: int) -> str:
    """Boot id, start time and PID namespace of a process: what tells it apart from a later one
    with its pid, and says whether a pid means the same process to another reader at all.

    Empty where /proc does not say (then only the pid is compared).
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        namespace = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return f"{boot}|{fields[19]}|{namespace}" if len(fields) > 19 else ""


def same_pid_namespace(token: str) -> bool:
    """Whether a holder's pid can be judged from here: same boot, same PID namespace.

    A holder in another container on the same host name has pids this process cannot see;
    judging them would depose a live gateway.
    """
    mine = process_token(os.getpid()).split("|")
    theirs = token.split("|")
    return len(mine) == 3 and len(theirs) == 3 and mine[0] == theirs[0] and mine[2] == theirs[2]


def process_alive(pid: int, token: str) -> bool:
    """Whether the process that took the lease still runs (on this host, in this PID namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not token  # no /proc to ask: trust the pid alone
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False  # killed, not yet reaped by its parent
    return not token or process_token(pid) == token


_MOST_HOLDER = 200
"""The longest name a record's name field holds (a Claim's ``holder``)."""


def _a_name(text: str) -> bool:
    """Whether a Claim could name ``text`` as its holder: the records' own check of a name (no
    whitespace, no lone surrogate, 1 to 200 characters), so the two cannot disagree."""
    from pydantic import TypeAdapter, ValidationError

    from answerable.records import _NAME

    try:
        TypeAdapter(_NAME).validate_python(text)
    except ValidationError:
        return False
    return True


class Lease:
    """This process's claim to be the ledger's one active gateway.

    Args:
        ledger: the store holding the lease row.
        ttl: seconds without a heartbeat after which a standby may take over.
        holder: a name for logs and errors; by default ``gateway@HOST:PID``.
        monotonic: the clock a standby measures silence with (injected in tests).
    """

    def __init__(
        self,
        ledger: LedgerStore,
        *,
        ttl: float = 10.0,
        holder: str | None = None,
        monotonic: Monotonic = time.monotonic,
        poll: float | None = None,
    ) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
            # NaN passed "ttl <= 0", and a lease that never expires is no lease
            raise ConfigError(f"a lease ttl must be a positive number of seconds, not {ttl!r}")
        self.ledger = ledger
        self.ttl = ttl
        self.host = socket.gethostname()
        self.pid = os.getpid()
        if holder and not _a_name(holder):  # "" or None: this process's default name
            # A Claim names its holder: refused here, not by every claim's validation later.
            raise ConfigError(
                f"a lease holder is a name of 1 to {_MOST_HOLDER} characters, with no whitespace and no "
                f"lone surrogate, not {holder!r:.80}"
            )
        self.holder = holder or f"gateway@{self.host[: _MOST_HOLDER - 30]}:{self.pid}"
        self._monotonic = monotonic
        self._poll = poll if poll is not None else min(ttl / 4, 0.5)
        self._epoch: int | None = None
        self._lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._seen: tuple[int, int] | None = None
        self._quiet_since = 0.0
        self._beater: threading.Thread | None = None
        self._gone = threading.Event()
        self._last_beat = 0.0
        """When a beat last landed (or the lease was taken), on ``monotonic``."""

    @property
    def epoch(self) -> int:
        """The epoch this gateway holds.

        Raises:
            LeaseLost: it never held one, or another gateway took over.
        """
        if self._lost is not None:
            raise self._lost
        if self._epoch is None:
            raise LeaseLost(0, None)
        return self._epoch

    def wait_lost(self, timeout: float | None = None) -> bool:
        """Block until the lease held is lost (True), or ``timeout`` passes (False): what a
        process's own thread waits on, whatever its event loop is doing (waiting on the store).

        A lease that went ``ttl`` seconds without a beat that landed counts as lost here too,
        even while a beat still hangs on a server that accepts and never answers (stopped): a
        standby may take over from then on, so this holder must stop."""
        deadline = None if timeout is None else self._monotonic() + timeout
        while True:
            wait = self._poll if deadline is None else min(self._poll, max(0.0, deadline - self._monotonic()))
            if self._gone.wait(wait):
                return True
            epoch, beat = self._epoch, self._last_beat
            if epoch is not None and self._lost is None and self._monotonic() - beat > self.ttl:
                self._lose(epoch, LeaseLost(epoch, None))
                return True
            if deadline is not None and self._monotonic() >= deadline:
                return False

    def lost_error(self) -> LeaseLost:
        """The error to raise once the lease is gone."""
        return self._lost if self._lost is not None else LeaseLost(self._epoch or 0, None)

    @property
    def held(self) -> bool:
        return self._epoch is not None and self._lost is None

    def acquire(self, *, standby: bool = False, timeout: float | None = None) -> int:
        """Take the lease, or wait for it as a standby; returns the epoch now held.

        Raises:
            LeaseHeld: another live gateway holds it (``standby`` false), or it still did when
                ``timeout`` ran out.
        """
        if self.held:
            return self.epoch
        deadline = None if timeout is None else self._monotonic() + timeout
        while True:
            row = self.ledger.lease()
            if row is None or row.released or self._dead_here(row):
                if (epoch := self._take(row)) is not None:
                    return epoch
                continue  # someone else changed it first: look again
            now = self._monotonic()
            if (row.epoch, row.beat) != self._seen:
                # It moved: the silence starts again. Kept across calls, so a standby that asks
                # now and then (timeout=0) counts the silence as well as one that waits.
                self._seen, self._quiet_since = (row.epoch, row.beat), now
            elif now - self._quiet_since >= self.ttl:
                if (epoch := self._take(row)) is not None:
                    return epoch
                continue
            if not standby or (deadline is not None and now >= deadline):
                raise LeaseHeld(
                    self.ledger.origin, holder=row.holder, pid=row.pid, host=row.host, since=row.since
                )
            time.sleep(self._poll)

    def _dead_here(self, row: LeaseRow) -> bool:
        """A holder whose death this process can see for itself: same host, same PID namespace."""
        if row.host != self.host or row.pid == self.pid or not same_pid_namespace(row.process):
            return False
        return not process_alive(row.pid, row.process)

    def _take(self, row: LeaseRow | None) -> int | None:
        mine = LeaseRow(
            holder=self.holder,
            epoch=0,
            beat=0,
            pid=self.pid,
            host=self.host,
            since=rfc3339(time.time_ns()),
            process=process_token(self.pid),
        )
        epoch = self.ledger.take_lease(mine, expect=None if row is None else (row.epoch, row.beat))
        if epoch is None:
            return None
        self._stop_beating()
        self._epoch, self._lost = epoch, None
        self._last_beat = self._monotonic()
        self._gone.clear()
        self._stop = threading.Event()  # each heartbeat thread has its own: an old one never revives
        self._beater = threading.Thread(
            target=self._beat, args=(epoch, self._stop), name=f"lease:{self.holder}", daemon=True
        )
        self._beater.start()
        return epoch

    def _beat(self, epoch: int, stop: threading.Event) -> None:
        failures = 0
        while not stop.wait(self.ttl / 3):
            try:
                if not self.ledger.beat_lease(epoch):
                    current = self.ledger.lease()
                    self._lose(epoch, LeaseLost(epoch, None if current is None else current.epoch))
                    return
                failures = 0
                self._last_beat = self._monotonic()
            except AnswerableError:
                # A busy store: try again next beat. A store gone for a whole ttl (closed, deleted)
                # cannot be held any more: a standby may already have taken over.
                failures += 1
                if failures >= 3:
                    self._lose(epoch, LeaseLost(epoch, None))
                    return
            except Exception:  # never die silently: a holder that cannot beat must stop acting
                self._lose(epoch, LeaseLost(epoch, None))
                return

    def _lose(self, epoch: int, error: LeaseLost) -> None:
        """Mark the lease lost, but only if it is still the epoch this heartbeat was beating."""
        if self._epoch == epoch:
            self._lost = error
            self._gone.set()

    def _stop_beating(self) -> None:
        self._stop.set()
        beater, self._beater = self._beater, None
        if beater is not None and beater is not threading.current_thread():
            beater.join()

    def check(self) -> int:
        """The epoch, confirmed against the store just now (a read, no write).

        Raises:
            LeaseLost: the store says another epoch is in force.
        """
        epoch = self.epoch
        row = self.ledger.lease()
        if row is None or row.released or row.epoch != epoch:
            lost = LeaseLost(epoch, None if row is None or row.released else row.epoch)
            self._lost = lost
            self._gone.set()
            self._stop_beating()
            raise lost
        return epoch

    def release(self) -> None:
        """Give the lease up so a successor need not wait out the ttl."""
        self._stop_beating()
        if self._epoch is not None and self._lost is None:
            with contextlib.suppress(AnswerableError):
                self.ledger.release_lease(self._epoch)
        self._epoch = None


def exit_when_lost(lease: Lease, who: str) -> threading.Thread:
    """Watch ``lease`` from a thread of its own and end the process (exit :data:`DEPOSED`) the
    moment it is lost: the store was out of reach for longer than its ttl, or another gateway
    took over. For a process's entry point (``answerable serve``, a storm's gateway), never a
    library caller. A holder without its lease may neither call out nor append, so there is
    nothing left to stop gently (the last checkpoint could not be appended); a process started
    again in its place takes the lease and settles from the ledger what this one left open, as
    after a kill -9. A thread, not a task: the event loop may be waiting on the store."""

    def watch() -> None:
        lease.wait_lost()
        print(f"{who}: {lease.lost_error()}; stopped (exit {DEPOSED}) to be started again", file=sys.stderr)
        sys.stderr.flush()
        os._exit(DEPOSED)

    thread = threading.Thread(target=watch, name=f"deposed:{lease.holder}", daemon=True)
    thread.start()
    return thread
