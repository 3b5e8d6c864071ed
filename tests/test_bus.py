"""The bus contract on both buses (in-process and NATS JetStream), and what only JetStream adds:
de-duplication by record id, redelivery of what a handler did not finish, replicas sharing a
group, and deliveries the ledger does not hold or the sender did not sign, refused and recorded.

Runs against the machine's nats-server (127.0.0.1:4222, JetStream on); each test makes a stream
of its own and deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from support import order_events

from answerable import FakeClock, KeyPair
from answerable.bus import MemoryBus
from answerable.bus.nats import NatsBus, subject_of
from answerable.charter import new_charter
from answerable.clock import IdSource, rfc3339
from answerable.delivery import Admission, LedgerMarks
from answerable.errors import BusError, RecordInvalid
from answerable.ledger import SQLiteLedger
from answerable.records import ExternalEvent, Message, Refusal, decode_entry, entry_bytes
from answerable.signing import sign

NATS = os.environ.get("ANSWERABLE_TEST_NATS", "nats://127.0.0.1:4222")
Open = Callable[..., Awaitable[NatsBus]]


class SetMarks:
    """Handled marks in a set: what one process remembers (the ledger keeps them across processes)."""

    def __init__(self) -> None:
        self.marks: set[str] = set()

    async def seen(self, mark: str) -> bool:
        return mark in self.marks

    async def mark(self, mark: str) -> None:
        self.marks.add(mark)

    async def mark_many(self, marks: list[str]) -> None:
        self.marks.update(marks)


@pytest.fixture
async def nats_bus() -> AsyncIterator[Open]:
    """Buses on one fresh stream; every one opened is closed and the stream deleted after."""
    system = f"test-{uuid.uuid4().hex[:10]}"
    opened: list[NatsBus] = []

    async def open_bus(**kwargs: Any) -> NatsBus:
        kwargs.setdefault("marks", SetMarks())
        bus = await NatsBus.connect(NATS, system, **kwargs)
        opened.append(bus)
        return bus

    yield open_bus
    if opened:
        await opened[0].delete_stream()
    for bus in opened:
        await bus.close()


class Inbox:
    def __init__(self) -> None:
        self.got: list[str] = []

    async def __call__(self, record: Message | ExternalEvent) -> None:
        self.got.append(record.id)


@pytest.mark.parametrize("kind", ["memory", "nats"])
async def test_every_subscriber_gets_each_record_of_its_topic_once_in_order(kind: str, nats_bus: Open):
    bus: Any = MemoryBus() if kind == "memory" else await nats_bus()
    first, second, other = Inbox(), Inbox(), Inbox()
    bus.subscribe("orders", first, group="planner") if kind == "nats" else bus.subscribe("orders", first)
    bus.subscribe("orders", second, group="auditor") if kind == "nats" else bus.subscribe("orders", second)
    bus.subscribe("weather", other, group="planner") if kind == "nats" else bus.subscribe("weather", other)
    if kind == "nats":
        await bus.start()
    orders, weather = order_events(5), order_events(3, IdSource(FakeClock(ns=10**18)))
    for e in orders:
        await bus.publish("orders", e)
    for e in weather:
        await bus.publish("weather", e)
    await bus.drain()
    assert first.got == second.got == [e.id for e in orders]
    assert other.got == [e.id for e in weather]


async def test_a_record_published_twice_is_delivered_once(nats_bus: Open):
    bus = await nats_bus()
    inbox = Inbox()
    bus.subscribe("orders", inbox, group="planner")
    await bus.start()
    [event] = order_events(1)
    await bus.publish("orders", event)
    await bus.publish("orders", event)  # a retry inside the duplicate window: JetStream drops it
    await bus.drain()
    assert inbox.got == [event.id]


async def test_a_redelivery_beyond_the_duplicate_window_is_dropped_by_the_group_marks(nats_bus: Open):
    """The same record in the stream twice (as a retry after the window would put it there):
    the group handles it once, by its handled mark, and acknowledges the second silently."""
    bus = await nats_bus()
    inbox = Inbox()
    bus.subscribe("orders", inbox, group="planner")
    await bus.start()
    [event] = order_events(1)
    subject = subject_of(bus.system, "orders")
    for msg_id in ("first", "second"):
        await bus._js.publish(subject, entry_bytes(event), headers={"Nats-Msg-Id": msg_id})
    await bus.drain()
    assert inbox.got == [event.id]
    assert bus.dropped == 1


async def test_a_record_whose_handler_failed_is_delivered_again(nats_bus: Open):
    bus = await nats_bus()
    calls: list[str] = []

    async def flaky(record: Message | ExternalEvent) -> None:
        calls.append(record.id)
        if len(calls) == 1:
            raise RuntimeError("the first try fails")

    bus.subscribe("orders", flaky, group="planner")
    await bus.start()
    [event] = order_events(1)
    await bus.publish("orders", event)
    with pytest.raises(RuntimeError, match="first try"):
        await bus.drain()
    await bus.drain()  # the nak'ed record comes back and is handled
    assert calls == [event.id, event.id]


class _Unreadable(Exception):
    """A handler's exception whose message cannot be read."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


async def test_a_failure_its_teller_cannot_tell_does_not_stop_the_topic(nats_bus: Open):
    """A long-running agent is told of each handler failure (``on_failure`` prints it). Telling
    one whose message cannot be read raised inside the pull task, which ended: the agent stopped
    hearing the topic, silently, until a restart. Now the failure is kept for drain(), and the
    next record is handled."""
    told: list[str] = []
    bus = await nats_bus()
    bus.on_failure = lambda exc: told.append(f"{exc}")  # as serve_agent's printing teller does
    calls: list[str] = []

    async def fails_once(record: Message | ExternalEvent) -> None:
        calls.append(record.id)
        if len(calls) == 1:
            raise _Unreadable

    bus.subscribe("orders", fails_once, group="planner")
    await bus.start()
    first, second = order_events(2)
    await bus.publish("orders", first)
    await bus.publish("orders", second)
    with pytest.raises(_Unreadable):
        await bus.drain()
    await bus.drain()  # the first comes again; the second was heard too
    assert sorted(calls) == sorted([first.id, first.id, second.id])
    assert told == []


async def test_close_ends_a_pull_whose_fetch_swallowed_its_cancellation(nats_bus: Open):
    """Python 3.11's wait_for may turn a cancellation that meets its timeout into the timeout:
    the pull loop took it for an idle fetch and went on, and close() waited on it for ever (a
    test's teardown hung 120 s under load). A fetch that always does so stands in for the race."""
    await nats_bus()  # the first opened deletes the stream at the end: it stays open till then
    bus = await nats_bus()
    bus.subscribe("orders", Inbox(), group="planner")
    await bus.start()
    [s] = bus._subs
    swallowing = asyncio.Event()

    async def fetch(**_: Any) -> list[Any]:  # the pull loop passes batch and timeout by name
        swallowing.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)
        raise TimeoutError

    s.sub.fetch = fetch
    await asyncio.wait_for(swallowing.wait(), 10)  # the real fetch in flight has timed out
    await asyncio.wait_for(bus.close(), 5)
    assert s.task is not None
    assert s.task.done()


async def test_replicas_of_one_group_share_the_records_each_handled_once(nats_bus: Open):
    marks = SetMarks()  # shared, as the ledger's store is shared between replicas
    one, two = await nats_bus(marks=marks), await nats_bus(marks=marks)
    a, b = Inbox(), Inbox()
    one.subscribe("orders", a, group="planner")
    two.subscribe("orders", b, group="planner")
    await one.start()
    await two.start()
    events = order_events(40)
    await asyncio.gather(*(one.publish("orders", e) for e in events))
    await asyncio.gather(one.drain(), two.drain())
    assert sorted(a.got + b.got) == sorted(e.id for e in events)


async def test_a_record_bigger_than_the_server_takes_is_refused_whole(nats_bus: Open):
    bus = await nats_bus()
    big = ExternalEvent(
        id="evt-big", at=rfc3339(0), source="test", type="blob", payload={"pad": "x" * (bus.max_payload + 1)}
    )
    with pytest.raises(RecordInvalid, match="max_payload"):
        await bus.publish("orders", big)


async def test_an_unreachable_server_is_named():
    with pytest.raises(BusError, match=r"NATS at nats://127\.0\.0\.1:1: cannot connect"):
        await NatsBus.connect("nats://127.0.0.1:1", "nobody", connect_wait=1.0)


async def test_only_recorded_messages_signed_by_their_sender_reach_an_agent(nats_bus: Open, tmp_path):
    """Straight onto NATS, altered, or signed by another key: refused, recorded once, never handled."""
    clock = FakeClock()
    ids = IdSource(clock)
    ri, router, mallory = (KeyPair.generate(n) for n in ("ri@x.example", "router", "mallory"))
    ledger = SQLiteLedger.open(tmp_path / "ledger.db", create=True)
    try:
        charter = new_charter(
            "bus-test",
            ri,
            agents=["router", "executor"],
            agent_keys={"router": router.public_b64},
            clock=clock,
        )
        ledger.append_sync([charter])
        admission = Admission(ledger, clock=clock, ids=ids)
        planner, auditor = Inbox(), Inbox()
        bus = await nats_bus(admit=admission, on_refused=admission.refuse, marks=LedgerMarks(ledger, clock))
        bus.subscribe("plans", planner, group="executor")
        bus.subscribe("plans", auditor, group="auditor")
        await bus.start()

        def message(n: int, key: KeyPair) -> Message:
            m = Message(
                id=ids.new(),
                at=rfc3339(clock.now_ns()),
                sender="router",
                topic="plans",
                type="route",
                payload={"n": n},
                trace_id=f"t-{n}",
            )
            return sign(m, key)

        good, forged_key = message(1, router), message(2, mallory)
        unrecorded, altered = message(3, router), message(4, router)
        ledger.append_sync([good, forged_key, altered])
        for m in (good, forged_key, unrecorded):
            await bus.publish("plans", m)
        await bus._js.publish(
            subject_of(bus.system, "plans"),
            entry_bytes(altered).replace(b'"n":4', b'"n":5'),
            headers={"Nats-Msg-Id": "altered"},
        )
        await bus.drain()
        assert planner.got == auditor.got == [good.id]
        refusals = [decode_entry(e.data) for e in ledger.of_kind("Refusal")]
        assert sorted(r.reason_code for r in refusals if isinstance(r, Refusal)) == [
            "altered",
            "bad_signature",
            "not_recorded",
        ]
        assert {r.channel for r in refusals if isinstance(r, Refusal)} == {"bus"}
    finally:
        ledger.close()


async def test_a_record_the_ledger_keeps_by_digest_is_delivered_whole_and_admitted(nats_bus: Open, tmp_path):
    """Over 64 KiB the ledger moves the payload to a blob; the bus carries the record whole, and
    admission recognises it as the entry the ledger holds."""
    ledger = SQLiteLedger.open(tmp_path / "ledger.db", create=True)
    try:
        admission = Admission(ledger)
        inbox = Inbox()
        bus = await nats_bus(admit=admission, on_refused=admission.refuse)
        bus.subscribe("orders", inbox, group="planner")
        await bus.start()
        [big] = order_events(1, size=100_000)
        ledger.append_sync([big])
        assert len(ledger.find(big.id).data) < 65_536  # stored by digest
        await bus.publish("orders", big)
        await bus.drain()
        assert inbox.got == [big.id]
        assert admission.refused == 0
    finally:
        ledger.close()


async def test_a_recorded_message_replayed_onto_another_topic_is_refused(nats_bus: Open, tmp_path):
    clock = FakeClock()
    ri, router = KeyPair.generate("ri@x.example"), KeyPair.generate("router")
    ledger = SQLiteLedger.open(tmp_path / "ledger.db", create=True)
    try:
        keys = {"router": router.public_b64}
        ledger.append_sync(
            [new_charter("t", ri, agents=["router", "executor"], agent_keys=keys, clock=clock)]
        )
        admission = Admission(ledger, clock=clock)
        inbox = Inbox()
        bus = await nats_bus(admit=admission, on_refused=admission.refuse)
        bus.subscribe("audit", inbox, group="executor")
        await bus.start()
        ids = IdSource(clock)
        plan = sign(
            Message(
                id=ids.new(),
                at=rfc3339(0),
                sender="router",
                topic="plans",
                type="route",
                payload={},
                trace_id="t",
            ),
            router,
        )
        ledger.append_sync([plan])
        await bus._js.publish(
            subject_of(bus.system, "audit"), entry_bytes(plan), headers={"Nats-Msg-Id": "x"}
        )
        await bus.drain()
        assert inbox.got == []
        [refusal] = [decode_entry(e.data) for e in ledger.of_kind("Refusal")]
        assert isinstance(refusal, Refusal)
        assert refusal.reason_code == "wrong_topic"
    finally:
        ledger.close()
