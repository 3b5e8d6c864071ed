"""Agents as separate OS processes on NATS JetStream, the gateway as a service, the ledger on
PostgreSQL: what they do together, and what a kill -9 of an agent at a named point leaves.

``intake`` hears order events and asks for a refund on topic ``refunds``; ``refunder`` hears that
message and proposes the ``refund`` operation with an idempotency key made from the message that
caused it. The refunder is killed once (kill -9 on itself) at each named point of its handler,
for an order the seed picks:

- ``before_propose``: nothing of its work reached the service; the message comes again;
- ``after_propose``: the refund went through, the message was neither marked nor acknowledged;
  it comes again, the service answers the repeated key with the first intent: one refund;
- ``slower_than_ack_wait``: no kill; two replicas pull, one holds the record past ack_wait, the
  other is given it too: both propose with one key, the service makes one intent of them.

A second refunder process, started after the kill, takes over the redelivery. Afterwards: one
effect per order, every refund traceable in the ledger back to its order event across three
processes, every message signed by its sender, the ledger verifies. A message published straight
onto NATS in intake's name is refused and recorded, and refunds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from backends import PG_BASE
from natsd import NatsServer
from pgd import PgServer
from procs import seeds
from served import Running, free_port, start

from answerable.bus.nats import NatsBus
from answerable.charter import new_charter
from answerable.client import AsyncClient
from answerable.clock import IdSource, rfc3339
from answerable.errors import BusError, LedgerError
from answerable.keys import KeyPair
from answerable.ledger import open_ledger
from answerable.ledger.postgres import drop_schema
from answerable.provenance import why
from answerable.records import Execution, ExternalEvent, Message, Refusal, decode_entry, entry_bytes
from answerable.scaffold import init

pytestmark = [pytest.mark.crash, pytest.mark.slow]

NATS = os.environ.get("ANSWERABLE_TEST_NATS", "nats://127.0.0.1:4222")
CLI = [sys.executable, "-m", "answerable.cli"]
POINTS = ("before_propose", "after_propose", "slower_than_ack_wait")

AGENTS = '''
import os
from pathlib import Path
from answerable.runtime import Agent


class Intake(Agent):
    name = "intake"
    subscriptions = ("orders",)
    replayable = os.environ.get("REPLAYABLE") == "1"

    async def handle(self, record, ctx):
        p = record.payload
        await ctx.send("refunds", "refund.request", {"order": p["order"], "amount_cents": p["amount_cents"]},
                       causes=[record.id])


def die_here(point, order):
    """kill -9 on itself, once, at the named point for the chosen order."""
    marker = Path("died")
    if os.environ.get("DIE_AT") == f"{point}:{order}" and not marker.exists():
        marker.write_text(point)
        os.kill(os.getpid(), 9)


class Refunder(Agent):
    name = "refunder"
    subscriptions = ("refunds",)

    async def handle(self, record, ctx):
        order = record.payload["order"]
        with open("handled.log", "a") as log:
            log.write(f"{order} {os.getpid()}\\n")
        slowed = Path(f"slowed-{order}")
        if os.environ.get("SLOW_AT") == order and not slowed.exists():
            slowed.write_text("")  # the first to take it holds it past ack_wait; it goes to the other
            import asyncio
            await asyncio.sleep(3.5)
        die_here("before_propose", order)
        await ctx.propose("refund", {"order": order, "amount_cents": record.payload["amount_cents"]},
                          causes=[record.id], idempotency_key=f"refund-{record.id}")
        die_here("after_propose", order)
        print(f"refunded {order}", flush=True)  # what the test waits on: no polling
'''


TABLES = """
[nats]
url = "{nats}"
ack_wait_seconds = 2     # a killed agent's record goes to the replacement after 2 s

[agents.intake]
class = "agents:Intake"
key = "keys/intake.key"

[agents.refunder]
class = "agents:Refunder"
key = "keys/refunder.key"
"""


@dataclass
class Distributed:
    folder: Path
    service: Running
    ledger_url: str
    system: str
    intake: KeyPair
    procs: list[subprocess.Popen[str]]
    nats: str = NATS
    ended: set[int] = field(default_factory=set)
    """Pipes of agents that ended (read to their end): nothing more can wake a wait from them."""

    def wait_until(self, what: str, check: Callable[[], bool], seconds: float = 60.0) -> None:
        """Look again each time an agent says something (a refund made, a delivery refused),
        never on a timer; ``seconds`` is a guard, not a pace."""
        deadline = time.monotonic() + seconds
        while not check():
            left = deadline - time.monotonic()
            pipes = [
                p.fileno()
                for proc in self.procs
                for p in (proc.stdout, proc.stderr)
                if p is not None and not p.closed and p.fileno() not in self.ended
            ]
            if left <= 0 or not pipes:
                raise AssertionError(f"waited {seconds:g} s for {what}")
            ready, _, _ = select.select(pipes, [], [], left)
            for fd in ready:
                if not os.read(fd, 65536):
                    self.ended.add(fd)

    def agent(self, name: str, **env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*CLI, "agent", str(self.folder / "answerable.toml"), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.folder,
            env={**os.environ, **env},
        )
        self.procs.append(proc)  # stopped and its pipes closed after, whatever happens
        assert proc.stdout is not None
        # "listening on ..." once subscribed, or nothing if it died. Read a byte at a time from
        # the pipe itself: a buffered readline could swallow what the agent says next, which
        # wait_until must see.
        said = b""
        while not said.endswith(b"\n") and (byte := os.read(proc.stdout.fileno(), 1)):
            said += byte
        line = said.decode()
        assert "listening" in line, (
            f"agent {name} did not start: {line}{proc.stderr.read() if proc.stderr else ''}"
        )
        return proc


@pytest.fixture
def nats_url() -> str:
    """The machine's nats-server; a test that must kill one overrides this with its own."""
    return NATS


@pytest.fixture
def pg_base() -> str:
    """The machine's PostgreSQL; a test that must kill one overrides this with its own."""
    return PG_BASE


@pytest.fixture
def distributed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nats_url: str, pg_base: str
) -> Iterator[Distributed]:
    folder = tmp_path / "shop"
    init(folder)
    monkeypatch.setenv("ANSWERABLE_KEY_DIR", str(tmp_path / "ledger-keys"))
    ri, reviewer = KeyPair.load(folder / "ri.key"), KeyPair.load(folder / "reviewer.key")
    keys = {name: KeyPair.generate(name) for name in ("intake", "refunder")}
    (folder / "keys").mkdir()
    for name, key in keys.items():
        key.save(folder / "keys" / f"{name}.key")
    system = f"shop-{uuid.uuid4().hex[:8]}"
    charter = new_charter(
        system,
        ri,
        agents=list(keys),
        reviewers=[reviewer],
        agent_keys={n: k.public_b64 for n, k in keys.items()},
    )
    (folder / "charter.json").write_text(orjson.dumps(charter.model_dump(mode="json")).decode())
    (folder / "agents.py").write_text(AGENTS)
    ledger_url = f"{pg_base}?options=-csearch_path%3Danswerable_t_{uuid.uuid4().hex[:12]}"
    port = free_port()
    config = (folder / "answerable.toml").read_text()
    config = config.replace('path = "ledger.db"', f'url = "{ledger_url}"').replace(
        "port = 8470", f"port = {port}"
    )
    config += TABLES.format(nats=nats_url)
    (folder / "answerable.toml").write_text(config)
    service = start(folder, port)
    run = Distributed(folder, service, ledger_url, system, keys["intake"], [], nats_url)
    try:
        yield run
    finally:
        for proc in run.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in run.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        if run.service.proc.poll() is None:  # the one running now (a test may have started another)
            run.service.stop()
        with contextlib.suppress(BusError):  # an own server may be gone with its stream
            asyncio.run(_drop_stream(nats_url, system))
        with contextlib.suppress(LedgerError):  # an own server may be gone with its schema
            drop_schema(ledger_url)


async def _drop_stream(url: str, system: str) -> None:
    bus = await NatsBus.connect(url, system, connect_wait=2.0)
    await bus.delete_stream()
    await bus.close()


def effects(folder: Path) -> list[dict[str, object]]:
    path = folder / "effects.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def handlers(folder: Path, order: str) -> set[str]:
    """The processes that handled the request for ``order`` (each write one line as they start)."""
    path = folder / "handled.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return {pid for line in lines for o, pid in [line.split()] if o == order}


def scenario(run: Distributed, seed: int, point: str) -> None:
    rng = random.Random(seed)
    orders = [f"O-{seed}-{n}" for n in range(6)]
    victim = rng.choice(orders)
    run.agent("intake")
    if point == "slower_than_ack_wait":  # two replicas pulling; one holds the record past ack_wait
        first = run.agent("refunder", SLOW_AT=victim)
        run.agent("refunder", SLOW_AT=victim)
    else:
        first = run.agent("refunder", DIE_AT=f"{point}:{victim}")

    bring_orders(run, orders)
    if point != "slower_than_ack_wait":
        assert first.wait(timeout=60) == -signal.SIGKILL, f"seed {seed}: the refunder was to die at {point}"
        run.agent("refunder")  # the replacement: the record comes again to it
    run.wait_until(f"seed {seed}: six refunds", lambda: len({e["order"] for e in effects(run.folder)}) == 6)
    if point == "slower_than_ack_wait":
        run.wait_until(
            f"seed {seed}: the slow replica's answer", lambda: len(handlers(run.folder, victim)) == 2
        )
    forged(run)
    check(run, seed, orders, point)


def bring_orders(run: Distributed, orders: list[str]) -> None:
    """The shop's events through the service (intake's key: it brings them in)."""

    async def bring() -> None:
        async with AsyncClient(run.service.url, run.intake) as client:
            events = [
                {
                    "topic": "orders",
                    "source": "shop",
                    "type": "order.returned",
                    "payload": {"order": o, "amount_cents": 1000 + 100 * n},
                }
                for n, o in enumerate(orders)
            ]
            await client.ingest(events)

    asyncio.run(bring())


def forged(run: Distributed) -> None:
    """A refund request published straight onto NATS in intake's name, signed by intake even:
    it is not in the ledger, so it is refused and recorded, and refunds nothing."""
    ids = IdSource()
    message = Message(
        id=ids.new(),
        at=rfc3339(ids.clock.now_ns()),
        sender="intake",
        topic="refunds",
        type="refund.request",
        payload={"order": "O-forged", "amount_cents": 99},
        trace_id="forged",
    )
    from answerable.signing import sign

    message = sign(message, run.intake)

    async def publish() -> None:
        bus = await NatsBus.connect(run.nats, run.system)
        await bus.publish("refunds", message)
        await bus.close()

    asyncio.run(publish())

    def refused() -> bool:
        with open_ledger(run.ledger_url) as ledger:
            return any(
                isinstance(r := decode_entry(e.data), Refusal) and r.reason_code == "not_recorded"
                for e in ledger.of_kind("Refusal")
            )

    run.wait_until("the forged message's refusal", refused)


def check(run: Distributed, seed: int, orders: list[str], point: str) -> None:
    where = f"seed {seed} ({point})"
    done = effects(run.folder)
    assert sorted(e["order"] for e in done) == sorted(orders), where  # once each, the forged none
    with open_ledger(run.ledger_url) as ledger:
        assert ledger.verify().size == ledger.size(), where
        executions = [
            x for e in ledger.of_kind("Execution") if isinstance(x := decode_entry(e.data), Execution)
        ]
        assert sorted(x.status for x in executions) == ["succeeded"] * 6, where
        for x in executions:
            graph = why(ledger, x.id)
            kinds = {n.kind for n in graph.nodes}
            assert {"Intent", "Message", "ExternalEvent"} <= kinds, f"{where}: {kinds}"
        for e in ledger.of_kind("ExternalEvent"):
            event = decode_entry(e.data)
            assert isinstance(event, ExternalEvent), where
            assert (event.brought_by, event.topic) == ("intake", "orders"), where  # who brought it, where to
        for e in ledger.of_kind("Message"):
            message = decode_entry(e.data)
            assert isinstance(message, Message), where
            assert message.signature, where
        assert ledger.entry(ledger.find(executions[0].id).index).data == entry_bytes(executions[0]), where


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("seed", seeds())
def test_agents_in_their_own_processes_refund_each_order_once_across_a_kill(
    distributed: Distributed, seed: int, point: str
) -> None:
    scenario(distributed, seed, point)


def test_one_message_sent_eight_times_at_once_is_recorded_once_and_every_send_is_answered(
    distributed: Distributed,
) -> None:
    """An agent's retries can overlap (a lost answer, a second replica): all eight copies get 200,
    one recorded, seven as duplicates. Two at once were both new, and the second got a 422 (its
    id used twice) and a Refusal recorded in the agent's name."""
    from answerable.signing import sign

    run = distributed
    ids = IdSource()
    message = sign(
        Message(
            id=ids.new(), at=rfc3339(ids.clock.now_ns()), sender="intake", topic="refunds",
            type="refund.request", payload={"order": "O-9", "amount_cents": 900}, trace_id="t-9",
        ),
        run.intake,
    )  # fmt: skip

    async def send_all() -> list[dict[str, Any]]:
        async with AsyncClient(run.service.url, run.intake) as client:
            return list(await asyncio.gather(*(client.send(message) for _ in range(8))))

    answers = asyncio.run(send_all())
    assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 7, answers
    assert {(a["message_id"], a["index"]) for a in answers} == {(message.id, answers[0]["index"])}
    with open_ledger(run.ledger_url) as ledger:
        assert [e.id for e in ledger.of_kind("Message")] == [message.id]
        assert ledger.of_kind("Refusal") == []


def test_work_a_halt_cut_is_not_done_after_the_resume_when_the_agent_rebuilds_its_state(
    distributed: Distributed,
) -> None:
    """A halt refuses what intake says about O-1: the handling ends there, and the record counts
    as handled. After the RI resumes, intake is killed and started again; rebuilding its state,
    it handles O-1 again and says nothing it did not say then: O-1 is never refunded, its
    refusal recorded once. O-2 (after the resume) and O-3 (after the restart) are refunded."""
    run = distributed
    ri = KeyPair.load(run.folder / "ri.key")
    intake = run.agent("intake", REPLAYABLE="1")
    run.agent("refunder")
    halt = [*CLI, "halt", run.ledger_url, "--by", ri.identity, "--reason", "stop"]
    subprocess.run(halt, check=True, capture_output=True, timeout=60)
    bring_orders(run, ["O-1"])
    resume = [
        *CLI,
        "resume",
        run.ledger_url,
        "--by",
        ri.identity,
        "--reason",
        "go",
        "--key",
        str(run.folder / "ri.key"),
    ]
    subprocess.run(resume, check=True, capture_output=True, timeout=60)
    bring_orders(run, ["O-2"])  # heard after O-1's handling ended and was marked
    run.wait_until("O-2 refunded", lambda: {e["order"] for e in effects(run.folder)} == {"O-2"})
    intake.kill()
    intake.wait(timeout=30)
    run.agent("intake", REPLAYABLE="1")  # says "listening" once it has handled O-1 and O-2 again
    bring_orders(run, ["O-3"])
    run.wait_until("O-3 refunded", lambda: "O-3" in {e["order"] for e in effects(run.folder)})
    assert sorted(e["order"] for e in effects(run.folder)) == ["O-2", "O-3"]
    with open_ledger(run.ledger_url) as ledger:
        refusals = [r for e in ledger.of_kind("Refusal") if isinstance(r := decode_entry(e.data), Refusal)]
        messages = [m for e in ledger.of_kind("Message") if isinstance(m := decode_entry(e.data), Message)]
    intake_refused = sorted((r.channel, r.reason_code) for r in refusals if r.claimed == "intake")
    assert intake_refused == [("bus", "halt"), ("http", "halt")]  # once: the message, and its request
    assert sorted(m.payload["order"] for m in messages) == ["O-2", "O-3"]


class TestNatsKilled:
    """kill -9 of nats-server mid-run (a server of the test's own), then a restart on the same
    store: the service keeps what it records in an outbox while NATS is gone, the agents
    reconnect, and every order is refunded once."""

    @pytest.fixture
    def nats_url(self, tmp_path: Path) -> Iterator[str]:
        self.server = NatsServer(tmp_path / "nats", free_port())
        self.server.folder.mkdir()
        self.server.start()
        try:
            yield self.server.url
        finally:
            self.server.stop()

    @pytest.mark.parametrize("seed", seeds())
    def test_a_killed_nats_server_loses_nothing(self, distributed: Distributed, seed: int) -> None:
        orders = [f"O-{seed}-{n}" for n in range(6)]
        split = random.Random(seed).randrange(1, 6)
        run = distributed
        run.agent("intake")
        run.agent("refunder")
        bring_orders(run, orders[:split])
        run.wait_until(f"seed {seed}: refunds before the kill", lambda: len(effects(run.folder)) == split)
        self.server.kill()
        bring_orders(run, orders[split:])  # recorded now; published when NATS is back
        self.server.start()
        run.wait_until(f"seed {seed}: six refunds after the restart", lambda: len(effects(run.folder)) == 6)
        check(run, seed, orders, f"nats killed after {split}")

    @pytest.mark.crash
    @pytest.mark.parametrize("seed", seeds())
    def test_what_waited_in_the_outbox_is_published_by_the_next_service_after_a_kill(
        self, distributed: Distributed, seed: int
    ) -> None:
        """NATS away, the service records orders and holds them in its outbox; then the service
        itself is killed (kill -9), so the outbox is gone. The service started again publishes
        what was recorded after the size it last noted as all taken: every order refunded once."""
        orders = [f"O-{seed}-{n}" for n in range(6)]
        split = random.Random(seed).randrange(1, 6)
        run = distributed
        run.agent("intake")
        run.agent("refunder")
        bring_orders(run, orders[:split])
        run.wait_until(f"seed {seed}: refunds before the kill", lambda: len(effects(run.folder)) == split)
        self.server.kill()
        bring_orders(run, orders[split:])  # recorded, answered, held in the outbox
        assert run.service.stop(signal.SIGKILL) == -signal.SIGKILL
        self.server.start()
        port = int(run.service.url.rsplit(":", 1)[1])
        run.service = start(run.folder, port)
        run.wait_until(f"seed {seed}: six refunds after both restarts", lambda: len(effects(run.folder)) == 6)
        check(run, seed, orders, f"nats and the service killed after {split}")


class TestPostgresKilled:
    """kill -9 of PostgreSQL (a server of the test's own: postmaster and every backend) once the
    seeded n-th of eight refunds is made (the others in flight or waiting), then a restart on
    its data: the service and the agents wait the outage out, or, when it outlasts the service's
    lease, the service exits 75 and the test, as its supervisor, starts it again at once (it
    waits for the server). Every order is refunded once."""

    @pytest.fixture
    def pg_base(self, tmp_path: Path) -> Iterator[str]:
        self.server = PgServer().start()
        try:
            yield f"postgresql://postgres@127.0.0.1:{self.server.port}/postgres"
        finally:
            self.server.stop()

    @pytest.mark.parametrize("seed", seeds())
    def test_postgresql_killed_with_refunds_in_flight_loses_nothing_and_does_nothing_twice(
        self, distributed: Distributed, seed: int
    ) -> None:
        rng = random.Random(f"serve-postgres-kill:{seed}")
        orders = [f"O-{seed}-{n}" for n in range(8)]
        at, long = rng.randrange(1, 6), rng.random() < 0.5
        where = f"seed {seed}: killed at the refund {at}, {'past' if long else 'within'} the lease"
        run = distributed
        run.agent("intake")
        run.agent("refunder")
        bring_orders(run, orders)
        run.wait_until(f"{where}: refunds before the kill", lambda: len(effects(run.folder)) >= at)
        self.server.kill()
        if long:  # the lease cannot be beaten: the service stops, to be started again
            assert run.service.proc.wait(timeout=60) == 75, where
            assert run.service.proc.stderr is not None
            said = run.service.proc.stderr.read()
            run.service.proc.stderr.close()
            assert "stopped (exit 75) to be started again" in said, said
            # Started again at once, as a supervisor would, while the server is still down: it
            # waits for it (--wait-for-store), takes the lease back and settles what was open.
            back = threading.Timer(rng.uniform(1.0, 4.0), self.server.start)
            back.start()
            port = int(run.service.url.rsplit(":", 1)[1])
            run.service = start(run.folder, port, "--wait-for-store", "60")
            back.join()
        else:  # back within the lease's ttl: waited out by everyone
            back = threading.Timer(rng.uniform(1.0, 4.0), self.server.start)
            back.start()
            back.join()
        run.wait_until(f"{where}: every refund", lambda: len(effects(run.folder)) == len(orders), 120)
        assert run.service.proc.poll() is None, where
        done = effects(run.folder)
        assert sorted(e["order"] for e in done) == sorted(orders), where  # once each
        with open_ledger(run.ledger_url) as ledger:
            assert ledger.verify().size == ledger.size(), where
            executions = [
                x for e in ledger.of_kind("Execution") if isinstance(x := decode_entry(e.data), Execution)
            ]
        keys = [e["key"] for e in done]
        assert sorted(x.status for x in executions) == ["succeeded"] * len(orders), where
        assert len({x.intent_id for x in executions}) == len(orders), where  # one per intent
        assert len(set(keys)) == len(orders), where
