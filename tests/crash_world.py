"""The crash world: a carrier that keeps its own books, and gateway processes that die mid-action.

The parent test and the child processes share this module. The carrier is the partner: its
bookings live in its own SQLite file, it checks fencing tokens (it keeps the highest lease epoch
it has seen and refuses anything older, in the same transaction as the effect), and it writes
down every call it refused. At each effect it also notes what the ledger held at that moment
(the Intent, the Claim under the token's epoch, the lease epoch in force), so a test can prove
"recorded before executed" and "no effect with a stale epoch" from the partner's side.

Run as ``python tests/crash_world.py ROLE CONFIG_JSON``; the roles are the ``_role_*``
functions below. A child talks to the test over stdout (one JSON object a line) and stdin:
at its pause point it prints ``{"at": POINT, ...}`` and blocks until a line arrives on stdin,
which is where the test kills it (SIGKILL), stops it (SIGSTOP) or lets it go.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from answerable import (
    AnswerableError,
    Gateway,
    IdSource,
    Intent,
    KeyPair,
    Resource,
    new_charter,
    new_ruleset,
)
from answerable.errors import LeaseHeld
from answerable.ledger import SQLLedger, open_ledger
from answerable.operations import FencingToken

CRASH_EXIT = 137
"""What a child that kills itself with ``os._exit`` exits with (what a shell reports for kill -9)."""

RI = KeyPair.from_seed("ri@logistics.example", b"\x01" * 32)
REVIEWER = KeyPair.from_seed("reviewer@logistics.example", b"\x03" * 32)
REVIEWER2 = KeyPair.from_seed("second@logistics.example", b"\x05" * 32)

SCHEMA = """
entity Agent;
entity Shipment { kind: String, class: String };
entity Notice { class: String };
action "carrier.book" appliesTo { principal: [Agent], resource: [Shipment], context: {} };
action "carrier.notify" appliesTo { principal: [Agent], resource: [Notice], context: {} };
"""

POLICIES = """
@id("carrier")
permit(principal, action, resource);

@id("reviewed-bookings")
@review("this shipment needs a person")
forbid(principal, action == Action::"carrier.book", resource) when { resource.kind == "reviewed" };

@id("expiring-bookings")
@review("booked unless someone objects within a minute")
@on_expiry("approve")
@deadline_minutes("1")
@expires_minutes("1")
forbid(principal, action == Action::"carrier.book", resource) when { resource.kind == "expiring" };
"""

MODES = ("idempotent", "fenced", "lookup", "plain")
"""How the carrier's booking behaves and what the gateway is told about it: ``idempotent``
deduplicates by key (registered idempotent); ``fenced`` books every accepted call and answers a
lookup that carries a fencing token (registered fenced, with that lookup); ``lookup`` books every
call and can be asked by key (registered with a plain lookup); ``plain`` books every call
(registered with nothing). The carrier checks fencing tokens in all."""

FLOWS = ("allowed", "approved", "expiry", "expired_approval")
"""How an intent reaches its call: allowed by policy; sent to review and approved; sent to a
review that expires with ``approve``; approved by an approval that lapses unused (which must not
run it) and then approved again."""

KIND = {"allowed": "routine", "approved": "reviewed", "expiry": "expiring", "expired_approval": "reviewed"}

EXPIRE = 120.0
"""Seconds a clock is moved on to let a one-minute review or a sixty-second approval expire."""


class ShiftedClock:
    """The system clock plus an offset this process moves on, so a child can reach an expiry.

    Clocks are not shared between processes: each process shifts its own, as a real one would
    simply be later.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self.offset_ns = int(offset * 1_000_000_000)

    def now_ns(self) -> int:
        return time.time_ns() + self.offset_ns

    def shift(self, seconds: float) -> None:
        self.offset_ns += int(seconds * 1_000_000_000)


class StaleEpoch(Exception):
    """The carrier refused a call fenced with an epoch older than one it has seen."""


@dataclass(frozen=True, slots=True)
class Effect:
    """One booking (or notice) in the carrier's books, and what the ledger held when it was made."""

    n: int
    op: str
    key: str
    epoch: int
    lease_epoch: int | None
    """The lease epoch in force in the ledger at the moment of the effect."""
    intent_index: int | None
    """The ledger index of the Intent with this key, if one was committed before the effect."""
    claim_index: int | None
    """The ledger index of a Claim of that intent under the token's epoch, if one was committed."""
    halt_index: int | None
    """The ledger index of the first halt, if one was committed before the effect."""
    pid: int


class Carrier:
    """The partner's own books, in a file the gateway does not own."""

    def __init__(
        self, path: Path, *, ledger_path: Path | str | None = None, mode: str = "idempotent"
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown carrier mode {mode!r}")
        self.mode = mode
        self.path = path
        self.ledger_path = ledger_path
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS fence (one INTEGER PRIMARY KEY CHECK (one = 1), epoch INTEGER);
            CREATE TABLE IF NOT EXISTS effects (
                n INTEGER PRIMARY KEY, op TEXT, key TEXT, epoch INTEGER, lease_epoch INTEGER,
                intent_index INTEGER, claim_index INTEGER, halt_index INTEGER, pid INTEGER);
            CREATE TABLE IF NOT EXISTS refused (
                n INTEGER PRIMARY KEY, op TEXT, key TEXT, epoch INTEGER, highest INTEGER, pid INTEGER);
            """
        )
        self.during: Callable[[str], None] | None = None
        """Called after a booking is committed, before the call returns: "during the call"."""
        self.gate: asyncio.Event | None = None
        """When set, bookings of the keys in ``held`` wait for it before they happen (in flight)."""
        self.held: set[str] = set()
        self.in_flight = 0
        self.all_in: asyncio.Event | None = None
        self.hold = 0

    # --- the operations the gateway calls ---------------------------------------------------------

    async def book(
        self, shipment: str, kind: str, idempotency_key: str, fencing_token: FencingToken
    ) -> dict[str, Any]:
        if self.gate is not None and idempotency_key in self.held:
            self.in_flight += 1
            if self.all_in is not None and self.in_flight >= self.hold:
                self.all_in.set()
            await self.gate.wait()
        result = self._effect("book", idempotency_key, fencing_token, dedupe=self.mode == "idempotent")
        if self.during is not None:
            self.during(idempotency_key)
        return result

    async def notify(self, note: str, idempotency_key: str, fencing_token: FencingToken) -> dict[str, Any]:
        return self._effect("notify", idempotency_key, fencing_token, dedupe=True)

    async def fenced_lookup(self, key: str, fencing_token: FencingToken) -> dict[str, Any] | None:
        """A lookup that carries the caller's fencing token, as a fenced partner's does: once it has
        answered, no call under an older epoch can land, so "not found" stays true."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            row = self.conn.execute("SELECT epoch FROM fence").fetchone()
            highest = 0 if row is None else int(row[0])
            if fencing_token.epoch < highest:
                self.conn.execute("ROLLBACK")
                raise StaleEpoch(
                    f"fencing token epoch {fencing_token.epoch} is older than {highest}: refused"
                )
            self.conn.execute(
                "INSERT OR REPLACE INTO fence VALUES (1, ?)", (max(highest, fencing_token.epoch),)
            )
            found = self.conn.execute(
                "SELECT n FROM effects WHERE op = 'book' AND key = ?", (key,)
            ).fetchone()
            self.conn.execute("COMMIT")
        except StaleEpoch:
            raise
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return None if found is None else {"booking": f"B-{found[0]}"}

    async def lookup(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT n FROM effects WHERE op = 'book' AND key = ?", (key,)).fetchone()
        return None if row is None else {"booking": f"B-{row[0]}"}

    def _effect(self, op: str, key: str, token: FencingToken, *, dedupe: bool) -> dict[str, Any]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            row = self.conn.execute("SELECT epoch FROM fence").fetchone()
            highest = 0 if row is None else int(row[0])
            if token.epoch < highest:
                self.conn.execute(
                    "INSERT INTO refused (op, key, epoch, highest, pid) VALUES (?, ?, ?, ?, ?)",
                    (op, key, token.epoch, highest, os.getpid()),
                )
                self.conn.execute("COMMIT")
                raise StaleEpoch(f"fencing token epoch {token.epoch} is older than {highest}: refused")
            self.conn.execute("INSERT OR REPLACE INTO fence VALUES (1, ?)", (max(highest, token.epoch),))
            if dedupe:
                found = self.conn.execute(
                    "SELECT n FROM effects WHERE op = ? AND key = ?", (op, key)
                ).fetchone()
                if found is not None:
                    self.conn.execute("COMMIT")
                    return {"booking": f"B-{found[0]}"}
            seen = self._ledger_seen(key, token.epoch)
            cur = self.conn.execute(
                "INSERT INTO effects (op, key, epoch, lease_epoch, intent_index, claim_index, "
                "halt_index, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (op, key, token.epoch, *seen, os.getpid()),
            )
            self.conn.execute("COMMIT")
        except StaleEpoch:
            raise
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return {"booking": f"B-{cur.lastrowid}"}

    def _ledger_seen(self, key: str, epoch: int) -> tuple[int | None, int | None, int | None, int | None]:
        """What the ledger held at the moment of the effect: lease epoch, Intent, Claim, halt."""
        if self.ledger_path is None:
            return None, None, None, None
        ledger, contains = snapshot(self.ledger_path)
        try:
            lease = ledger.execute("SELECT epoch FROM lease WHERE NOT released").fetchone()
            intent_index, intent_id = None, None
            needle = json.dumps({"idempotency_key": key}, separators=(",", ":"))[1:-1].encode()
            for idx, data in ledger.execute(
                f"SELECT idx, data FROM entries WHERE kind = 'Intent' AND {contains} ORDER BY idx",
                (needle,),
            ):
                body = json.loads(data)
                if body["idempotency_key"] == key:
                    intent_index, intent_id = int(idx), body["id"]
                    break
            claim_index = None
            if intent_id is not None:
                for idx, data in ledger.execute(
                    f"SELECT idx, data FROM entries WHERE kind = 'Claim' AND {contains} ORDER BY idx",
                    (intent_id.encode(),),
                ):
                    body = json.loads(data)
                    if body["intent_id"] == intent_id and body["epoch"] == epoch:
                        claim_index = int(idx)
            halt_index = None
            for idx, data in ledger.execute(
                "SELECT idx, data FROM entries WHERE kind = 'Control' ORDER BY idx"
            ):
                if json.loads(data)["action"] == "halt":
                    halt_index = int(idx)
                    break
            return (None if lease is None else int(lease[0])), intent_index, claim_index, halt_index
        finally:
            ledger.close()

    # --- what the test reads --------------------------------------------------------------------

    def effects(self, op: str | None = "book") -> list[Effect]:
        rows = self.conn.execute(
            "SELECT n, op, key, epoch, lease_epoch, intent_index, claim_index, halt_index, pid "
            "FROM effects ORDER BY n"
        ).fetchall()
        return [Effect(*r) for r in rows if op is None or r[1] == op]

    def refused(self) -> list[tuple[str, str, int, int]]:
        return [tuple(r) for r in self.conn.execute("SELECT op, key, epoch, highest FROM refused ORDER BY n")]

    def count(self, key: str | None = None) -> int:
        return sum(1 for e in self.effects() if key is None or e.key == key)

    def close(self) -> None:
        self.conn.close()


# --- the gateway over the carrier -------------------------------------------------------------------


def build_gateway(
    ledger: SQLLedger,
    carrier: Carrier,
    *,
    clock: ShiftedClock | None = None,
    fault: Any = None,
    standby: bool = False,
    lease_ttl: float = 10.0,
) -> Gateway:
    """A gateway with ``carrier.book`` registered as the carrier's mode says, and ``carrier.notify``
    (idempotent and fenced: the call a new holder makes so that the carrier learns its epoch)."""
    clock = clock or ShiftedClock()
    gateway = Gateway(
        ledger, clock=clock, ids=IdSource(clock), fault=fault, standby=standby, lease_ttl=lease_ttl
    )
    mode = carrier.mode
    gateway.register(
        "carrier.book",
        carrier.book,
        resource_class="shipment",
        resource=lambda a: Resource("Shipment", a.shipment, {"kind": a.kind, "class": "shipment"}),  # type: ignore[attr-defined]
        idempotent=mode == "idempotent",
        fenced=mode == "fenced",
        lookup={"lookup": carrier.lookup, "fenced": carrier.fenced_lookup}.get(mode),
    )
    gateway.register(
        "carrier.notify",
        carrier.notify,
        resource_class="notice",
        resource=lambda a: Resource("Notice", a.note, {"class": "notice"}),  # type: ignore[attr-defined]
        idempotent=True,
        fenced=True,
    )
    return gateway


def snapshot(target: Path | str) -> tuple[Any, str]:
    """A read-only connection to the ledger's store holding one snapshot, and the SQL test for
    "the entry's bytes contain the parameter" in its dialect (this reads behind the ledger's back,
    as a partner auditing it would)."""
    if str(target).startswith("postgresql://"):
        import psycopg

        conn = psycopg.connect(str(target), autocommit=False)
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return conn, "position(%s in data) > 0"
    conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=30)
    conn.execute("BEGIN")
    return conn, "instr(data, ?) > 0"


async def install(ledger_path: Path | str) -> None:
    """Create the ledger with the charter and rules in force, then let go of its lease."""
    clock = ShiftedClock()
    ids = IdSource(clock)
    with open_ledger(ledger_path, create=True) as ledger:
        gateway = Gateway(ledger, clock=clock, ids=ids)
        charter = new_charter(
            "logistics", RI, agents=["executor"], reviewers=[REVIEWER, REVIEWER2], clock=clock, ids=ids
        )
        await gateway.install(charter, new_ruleset(POLICIES, SCHEMA, RI, clock=clock, ids=ids))
        gateway.close()


def booking(gateway: Gateway, key: str, flow: str = "allowed") -> Intent:
    return gateway.intent(
        "executor", "carrier.book", {"shipment": key, "kind": KIND[flow]}, idempotency_key=key
    )


def notice(gateway: Gateway, key: str) -> Intent:
    return gateway.intent("executor", "carrier.notify", {"note": key}, idempotency_key=key)


async def approve(
    gateway: Gateway, review_id: str, *, valid_for: int = 3600, key: KeyPair = REVIEWER
) -> None:
    """A reviewer's signed approval, written as the CLI writes it (not fenced: not a gateway)."""
    approval = gateway.reviews.approval(
        review_id, key=key, verdict="approve", reason="checked", valid_for_seconds=valid_for
    )
    await gateway.reviews.submit(approval)


async def run_flow(gateway: Gateway, clock: ShiftedClock, flow: str, key: str) -> list[str]:
    """Submit one booking and take it through its flow; the statuses of what ran, in order."""
    first = await gateway.submit(booking(gateway, key, flow))
    statuses: list[str] = [first.status]
    if first.review is None:
        return statuses
    return statuses + await finish_review(gateway, clock, flow, first.review.id)


async def finish_review(gateway: Gateway, clock: ShiftedClock, flow: str, review_id: str) -> list[str]:
    """Take an open review through its flow to its end, then settle."""
    statuses = []
    state = gateway.reviews.state(review_id)
    if state.resolution is None and state.claim is None:
        if flow == "approved":
            await approve(gateway, review_id)
        elif flow == "expiry":
            clock.shift(EXPIRE)
        elif flow == "expired_approval":
            if state.status == "open":
                await approve(gateway, review_id, valid_for=60)
                clock.shift(EXPIRE)
                statuses += ["stale:" + o.status for o in await gateway.settle_reviews()]
                reopened = gateway.reviews.state(review_id).status
                if reopened != "reopened":
                    raise RuntimeError(f"review {review_id} is {reopened} after its approval lapsed")
            await approve(gateway, review_id)
    statuses += [o.status for o in await gateway.settle_reviews()]
    return statuses


async def finish_all(gateway: Gateway, clock: ShiftedClock, flow: str) -> list[str]:
    """Every review still open in the ledger taken through ``flow`` (what a restarted system does)."""
    statuses = []
    for stored in gateway.ledger.of_kind("Review"):
        statuses += await finish_review(gateway, clock, flow, stored.id)
    return statuses + [o.status for o in await gateway.settle_reviews()]


# --- the child side ---------------------------------------------------------------------------------


def say(**message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def wait_for_go() -> str:
    return sys.stdin.readline().strip()


class Pause:
    """A fault hook that stops this process at one point of one intent until the test says go.

    With ``exit`` it dies there instead, by ``os._exit``, as a power cut would.
    """

    def __init__(self, point: str | None, key: str | None, *, exit: bool = False) -> None:
        self.point, self.key, self.exit = point, key, exit

    def __call__(self, point: str, intent: Intent) -> None:
        self.hit(point, intent.idempotency_key)

    def hit(self, point: str, key: str) -> None:
        if point != self.point or (self.key is not None and key != self.key):
            return
        if self.exit:
            os._exit(CRASH_EXIT)
        say(at=point, key=key, pid=os.getpid())
        wait_for_go()


def _stop_on_stdin() -> threading.Event:
    """An event set when a line (or end of file) arrives on stdin: the test's "stop"."""
    stop = threading.Event()

    def read() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=read, name="stop-on-stdin", daemon=True).start()
    return stop


def _error(exc: BaseException) -> str:
    code = getattr(exc, "reason_code", "")
    return type(exc).__name__ + (f":{code}" if code else "")


def _open(cfg: dict[str, Any]) -> tuple[SQLLedger, Carrier, ShiftedClock]:
    target = cfg["ledger"]
    ledger = open_ledger(target)
    carrier = Carrier(Path(cfg["world"]), ledger_path=target, mode=cfg.get("mode", "idempotent"))
    return ledger, carrier, ShiftedClock()


async def _role_holder(cfg: dict[str, Any]) -> None:
    """Take the lease, run one booking through its flow, pausing (or dying) at ``point``; then,
    with ``probe``, try one more booking to show whether this process may still append."""
    ledger, carrier, clock = _open(cfg)
    pause = Pause(cfg.get("point"), cfg["key"], exit=cfg.get("exit", False))
    carrier.during = lambda key: pause.hit("during", key)
    gateway = build_gateway(ledger, carrier, clock=clock, fault=pause, lease_ttl=cfg.get("ttl", 10.0))
    await gateway.start()
    say(started=gateway.lease.epoch, pid=os.getpid(), holder=gateway.lease.holder)
    report: dict[str, Any] = {"done": True, "statuses": [], "error": None, "probe": None}
    try:
        report["statuses"] = await run_flow(gateway, clock, cfg["flow"], cfg["key"])
    except AnswerableError as exc:
        report["error"] = _error(exc)
    if cfg.get("probe"):
        try:
            report["probe"] = (await gateway.submit(booking(gateway, cfg["key"] + "-probe"))).status
        except AnswerableError as exc:
            report["probe"] = _error(exc)
    gateway.close()
    ledger.close()
    say(**report)


async def _role_standby(cfg: dict[str, Any]) -> None:
    """Wait as a standby, take over, reconcile, make calls under the new epoch; hold the lease
    until told to exit."""
    ledger, carrier, clock = _open(cfg)
    gateway = build_gateway(ledger, carrier, clock=clock, standby=True, lease_ttl=cfg["ttl"])
    say(waiting=True)
    recovered = await gateway.start(wait_seconds=60)
    say(took_over=gateway.lease.epoch, recovered=[o.status for o in recovered])
    statuses: list[str] = [(await gateway.submit(notice(gateway, cfg["key"] + "-notice"))).status]
    statuses += await run_flow(gateway, clock, "allowed", cfg["key"] + "-after")
    say(called=statuses)
    await asyncio.to_thread(wait_for_go)
    gateway.close()
    ledger.close()
    say(done=True)


async def _role_contender(cfg: dict[str, Any]) -> None:
    """Try to start a second gateway, and to reconcile without the lease; report what happened."""
    ledger, carrier, clock = _open(cfg)
    gateway = build_gateway(ledger, carrier, clock=clock, lease_ttl=cfg.get("ttl", 10.0))
    report: dict[str, Any] = {"done": True}
    try:
        await gateway.start()
        report["started"] = gateway.lease.epoch
    except LeaseHeld as exc:
        report["lease_held"] = {"holder": exc.holder, "pid": exc.pid, "host": exc.host, "since": exc.since}
    try:
        report["reconciled"] = [o.status for o in await gateway.reconcile()]
    except AnswerableError as exc:
        report["reconcile_error"] = _error(exc)
    gateway.close()
    ledger.close()
    say(**report)


async def _role_service(cfg: dict[str, Any]) -> None:
    """A gateway as a service: take the lease (or wait for it as a standby), submit ``keys`` as
    bookings of ``flow``, then settle reviews answered from elsewhere until ``until`` intents
    have an Execution, or a line arrives on stdin. Pauses at ``point`` for ``pause_key``."""
    ledger, carrier, clock = _open(cfg)
    pause = Pause(cfg.get("point"), cfg.get("pause_key"))
    carrier.during = lambda key: pause.hit("during", key)
    gateway = build_gateway(
        ledger, carrier, clock=clock, fault=pause, standby=cfg.get("standby", False), lease_ttl=cfg["ttl"]
    )
    recovered = await gateway.start(wait_seconds=60)
    say(started=gateway.lease.epoch, pid=os.getpid(), recovered=[o.status for o in recovered])
    for key in cfg.get("keys", []):
        outcome = await gateway.submit(booking(gateway, key, cfg["flow"]))
        review = None if outcome.review is None else outcome.review.id
        say(submitted=key, status=outcome.status, review=review)
    stop = _stop_on_stdin()
    until = cfg.get("until")
    while not stop.is_set():
        for outcome in await gateway.settle_reviews():
            say(settled=outcome.intent.idempotency_key, status=outcome.status)
        if until is not None and len(ledger.of_kind("Execution")) >= until:
            break
        await asyncio.sleep(0.05)  # a service's poll interval, not a test's wait
    gateway.close()
    ledger.close()
    say(done=True)


async def _role_stream(cfg: dict[str, Any]) -> None:
    """Submit bookings from several workers without pause, settling reviews between them, until a
    line arrives on stdin; reports every outcome."""
    ledger, carrier, clock = _open(cfg)
    gateway = build_gateway(ledger, carrier, clock=clock, lease_ttl=cfg.get("ttl", 10.0))
    await gateway.start()
    first = await gateway.submit(booking(gateway, cfg["key"] + "-reviewed", "approved"))
    say(review=None if first.review is None else first.review.id, status=first.status)
    stop = _stop_on_stdin()

    async def worker(w: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            outcome = await gateway.submit(booking(gateway, f"{cfg['key']}-{w}-{n}"))
            say(outcome=outcome.intent.idempotency_key, status=outcome.status)
            for settled in await gateway.settle_reviews():
                say(outcome=settled.intent.idempotency_key, status=settled.status, reviewed=True)
            await asyncio.sleep(0.01)  # a producer's pace: the ledger need not fill up with denials

    async with asyncio.TaskGroup() as group:
        for w in range(cfg.get("workers", 3)):
            group.create_task(worker(w))
    gateway.close()
    ledger.close()
    say(done=True)


async def _role_inflight(cfg: dict[str, Any]) -> None:
    """Take the lease without reconciling, start ``hold`` bookings whose calls are held in
    flight at the carrier, reconcile while they are, then let them finish."""
    ledger, carrier, clock = _open(cfg)
    gateway = build_gateway(ledger, carrier, clock=clock)
    await gateway.acquire()
    await gateway.resume_from_ledger()
    keys = [f"{cfg['key']}-{i}" for i in range(cfg["hold"])]
    carrier.held, carrier.hold = set(keys), len(keys)
    carrier.gate, carrier.all_in = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(gateway.submit(booking(gateway, key))) for key in keys]
    await asyncio.wait_for(carrier.all_in.wait(), 60)
    reconciled = await gateway.reconcile()
    carrier.gate.set()
    done = await asyncio.gather(*tasks)
    gateway.close()
    ledger.close()
    say(
        done=True,
        reconciled=[(o.intent.idempotency_key, o.status) for o in reconciled],
        statuses=[o.status for o in done],
    )


async def _role_lapse(cfg: dict[str, Any]) -> None:
    """Two processes, two clocks, one approval. ``phase`` ``approve``: a booking goes to review, a
    sixty-second approval is given, this clock moves past it, another booking is recorded (the
    ledger now holds that later time) and the reviews are settled: the approval has lapsed.
    ``phase`` ``settle``: a gateway whose clock was not moved, so it is ``EXPIRE`` seconds behind
    the first, settles the reviews it finds."""
    ledger, carrier, clock = _open(cfg)
    gateway = build_gateway(ledger, carrier, clock=clock)
    await gateway.start()
    report: dict[str, Any] = {"done": True}
    if cfg["phase"] == "approve":
        first = await gateway.submit(booking(gateway, cfg["key"], "approved"))
        if first.review is None:
            raise RuntimeError(f"the booking was {first.status}, not sent to review")
        await approve(gateway, first.review.id, valid_for=60)
        clock.shift(EXPIRE)
        report["later"] = (await gateway.submit(booking(gateway, cfg["key"] + "-later"))).status
        report["settled"] = [o.status for o in await gateway.settle_reviews()]
        review_id = report["review"] = first.review.id
    else:
        report["settled"] = [o.status for o in await gateway.settle_reviews()]
        review_id = cfg["review"]
    report["status"] = gateway.reviews.state(review_id).status
    gateway.close()
    ledger.close()
    say(**report)


def _role_cli(cfg: dict[str, Any]) -> None:
    """The ``answerable`` command, loaded in advance, run when the go file appears: two of these
    released together answer at the same moment, with no interpreter start-up between them."""
    from answerable.cli import main

    with open(cfg["go"]) as gate:  # the test holds an exclusive lock on it until both are ready
        say(ready=True)
        fcntl.flock(gate, fcntl.LOCK_SH)  # blocks until the test lets go: no polling
    sys.argv = ["answerable", *cfg["argv"]]
    main()


ROLES = {
    "holder": _role_holder,
    "standby": _role_standby,
    "contender": _role_contender,
    "service": _role_service,
    "stream": _role_stream,
    "inflight": _role_inflight,
    "lapse": _role_lapse,
}


if __name__ == "__main__":
    role, config = sys.argv[1], json.loads(sys.argv[2])
    if role == "cli":
        _role_cli(config)
    else:
        asyncio.run(ROLES[role](config))
