"""Helpers the tests share: the test world, its Cedar rules, people with fixed keys."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from answerable import FakeClock, Gateway, IdSource, KeyPair, Resource, SQLiteLedger, new_charter, new_ruleset
from answerable.clock import rfc3339
from answerable.gateway import Fault
from answerable.records import ExternalEvent

SCHEMA = """
entity Agent;
entity Shipment { class: String, region: String };
entity Resource { class: String };
action "carrier.book" appliesTo { principal: [Agent], resource: [Shipment], context: { disruption: Bool } };
action "noop" appliesTo { principal: [Agent], resource: [Resource], context: {} };
action "carrier.fail" appliesTo { principal: [Agent], resource: [Resource], context: {} };
action "carrier.http" appliesTo { principal: [Agent], resource: [Resource], context: {} };
"""

POLICIES = """
@id("routine-bookings")
permit(principal, action == Action::"carrier.book", resource) when { resource.region != "closed" };

@id("medical-under-disruption-needs-review")
@review("a medical booking during a disruption needs a person")
forbid(principal, action == Action::"carrier.book", resource)
  when { resource.class == "medical" && context.disruption };

@id("noop-allowed")
permit(principal, action in [Action::"noop", Action::"carrier.fail", Action::"carrier.http"], resource);
"""


@dataclass
class World:
    """What the outside world saw: bookings by idempotency key, as a carrier would keep them."""

    bookings: dict[str, dict[str, object]] = field(default_factory=dict)
    calls: int = 0

    def book(
        self, shipment: str, cls: str, region: str, disruption: bool, idempotency_key: str
    ) -> dict[str, object]:
        self.calls += 1
        return self.bookings.setdefault(
            idempotency_key, {"shipment": shipment, "booking": f"B-{len(self.bookings)}"}
        )


@dataclass(frozen=True)
class People:
    ri: KeyPair
    operator: KeyPair
    reviewer: KeyPair
    stranger: KeyPair


def register_world(gateway: Gateway, world: World) -> None:
    gateway.register(
        "carrier.book",
        world.book,
        resource_class="shipment",
        resource=lambda a: Resource("Shipment", a.shipment, {"class": a.cls, "region": a.region}),  # type: ignore[attr-defined]
        context=lambda a: {"disruption": a.disruption},  # type: ignore[attr-defined]
        idempotent=True,
    )
    gateway.register("noop", lambda: None, resource_class="bench")


def booking(
    shipment: str = "S-1", cls: str = "retail", region: str = "north", disruption: bool = False
) -> dict[str, object]:
    return {"shipment": shipment, "cls": cls, "region": region, "disruption": disruption}


async def make_gateway(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World, fault: Fault | None = None
) -> Gateway:
    """A gateway over the test world, with the test charter and rules installed."""
    ids = IdSource(clock)
    gw = Gateway(ledger, clock=clock, ids=ids, fault=fault)
    register_world(gw, world)
    charter = new_charter(
        "logistics",
        people.ri,
        agents=["executor", "router"],
        reviewers=[people.reviewer],
        operators=[people.operator],
        clock=clock,
        ids=ids,
    )
    await gw.install(charter, new_ruleset(POLICIES, SCHEMA, people.ri, clock=clock, ids=ids))
    return gw


def order_events(n: int, ids: IdSource | None = None, size: int = 0) -> list[ExternalEvent]:
    """``n`` order events a microsecond apart, each padded with ``size`` bytes (a big one goes to a blob)."""
    ids = ids or IdSource(FakeClock())
    return [
        ExternalEvent(
            id=ids.new(),
            at=rfc3339(1_767_225_600_000_000_000 + k),
            source="orders",
            type="order.created",
            payload={"order": f"O-{k}", "pad": "x" * size},
        )
        for k in range(n)
    ]


async def reviewing_gateway(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World, policies: str = POLICIES
) -> Gateway:
    """A gateway over the test world whose charter names the RI and one reviewer, under ``policies``."""
    ids = IdSource(clock)
    gw = Gateway(ledger, clock=clock, ids=ids)
    register_world(gw, world)
    charter = new_charter(
        "logistics", people.ri, agents=["executor"], reviewers=[people.reviewer], clock=clock, ids=ids
    )
    await gw.install(charter, new_ruleset(policies, SCHEMA, people.ri, clock=clock, ids=ids))
    return gw


async def pending_review(gw: Gateway, shipment: str = "S-1") -> str:
    """Submit a medical booking during a disruption, which the test rules send to review; its id."""
    outcome = await gw.submit(
        gw.intent("executor", "carrier.book", booking(shipment=shipment, cls="medical", disruption=True))
    )
    if outcome.review is None:
        raise AssertionError(f"expected a review, got {outcome.status}")
    return outcome.review.id


GO_SOURCE = "/usr/share/gocode"
"""Where Debian's golang-golang-x-mod-dev puts golang.org/x/mod (``make test`` installs it)."""


def build_tlogcheck(into: Path) -> Path:
    """Build tests/tlogcheck, the Go auditor of published tiles, offline against Debian's x/mod."""
    source = Path(__file__).parent / "tlogcheck" / "main.go"
    binary = into / "tlogcheck"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": GO_SOURCE,
        "GOCACHE": str(into / "gocache"),
        "GOFLAGS": "",
    }
    done = subprocess.run(
        ["go", "build", "-o", str(binary), str(source)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"cannot build tests/tlogcheck (make test installs golang-go and golang-golang-x-mod-dev): "
            f"{done.stderr.strip()}"
        )
    return binary


def tlog_audit(binary: Path, folder: Path, verifier_key: str, *, hashes_only: bool = False) -> str:
    """Run the Go auditor on a published folder: its output, or AssertionError with its complaint."""
    args = [str(binary), str(folder), verifier_key, *(["--hashes-only"] if hashes_only else [])]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"tlogcheck refused {folder}: {done.stderr.strip()}")
    return done.stdout.strip()


@contextlib.contextmanager
def witness_process(key_file: Path, state: Path, *logs: str) -> Iterator[tuple[str, str]]:
    """An ``answerable witness`` process on a free loopback port: (its URL, its verifier key).

    Stopped with SIGTERM on exit, which must end it cleanly (exit 0).
    """
    args = [sys.executable, "-m", "answerable.cli", "witness", "--key", str(key_file), "--state", str(state)]
    for log in logs:
        args += ["--log", log]
    proc = subprocess.Popen([*args, "--port", "0"], stderr=subprocess.PIPE, text=True)
    if proc.stderr is None:
        raise AssertionError("no stderr pipe")
    line = proc.stderr.readline()
    found = re.search(r"listening on (http://\S+/) .* its key: (\S+)", line)
    try:
        if found is None:
            raise AssertionError(f"the witness did not start: {line}")
        yield found.group(1), found.group(2)
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
        proc.stderr.close()
        if code != 0:
            raise AssertionError(f"the witness exited {code} on SIGTERM")


def store_away_once(monkeypatch: Any, ledger: Any, kind: str) -> list[int]:
    """Make the ledger's next append holding a ``kind`` record fail as a store away for longer
    than its patience (StoreUnavailable), as a fault at that one point; the real store does the
    rest. Returns a list that holds 1 once the fault was met."""
    from answerable.errors import StoreUnavailable

    real = ledger.append
    away: list[int] = []

    async def once_away(records: Any, **kw: Any) -> Any:
        if not away and any(r.kind == kind for r in records):
            away.append(1)
            raise StoreUnavailable("the database is away for longer than its patience")
        return await real(records, **kw)

    monkeypatch.setattr(ledger, "append", once_away)
    return away
