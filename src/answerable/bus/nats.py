"""The bus on NATS JetStream, for agents in separate processes or on other machines.

One durable stream per system (``answerable_SYSTEM``), one subject per topic
(``answerable.SYSTEM.TOPIC``). A record goes over the wire as the exact bytes the ledger holds,
with its id as the ``Nats-Msg-Id`` header, so JetStream drops a second publish of it inside the
stream's duplicate window. Each subscriber group (an agent; its replicas share the group) has one
durable pull consumer per topic: replicas pull from it in turn, and a record is acknowledged only
after the handler returned, that is after everything it wrote is durable in the ledger. A handler
that fails or a process that dies leaves the record unacknowledged, and JetStream delivers it
again after ``ack_wait``.

NATS delivers; the ledger decides. Before a handler sees a record, ``admit`` (given by whoever
wires the bus, normally a check against the ledger and the charter) says whether it is the record
the ledger holds and whether a message carries its sender's valid signature; a record it refuses
is acknowledged, never handled, and reported to ``on_refused``. A record the group already handled
(a redelivery after a lost acknowledgement, or beyond the duplicate window) is dropped silently:
the group's handled marks live in the ledger's store (``use_nonce``), not in any process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import nats
from nats.errors import Error as NatsError
from nats.js import api
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError

from answerable.bus.base import Handler
from answerable.errors import BusError, RecordInvalid, StoreUnavailable
from answerable.records import ExternalEvent, Message, decode_entry, entry_bytes

__all__ = ["Marks", "NatsBus", "durable_name", "handled_mark", "stream_name", "subject_of"]

Admit = Callable[[Message | ExternalEvent, bytes, str], Awaitable[str | None]]
"""Given a delivered record, its bytes and the topic it came on: None to handle it, or why not."""
Refused = Callable[[Message | ExternalEvent | None, bytes, str], Awaitable[None]]


class Marks(Protocol):
    """Durable handled marks of subscriber groups, kept where every replica and restart sees them."""

    async def seen(self, mark: str) -> bool: ...

    async def mark(self, mark: str) -> None: ...

    async def mark_many(self, marks: list[str]) -> None:
        """All of them in one durable step (one commit for a fetched batch)."""
        ...


_TOKEN = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def shown(url: str) -> str:
    """A server URL as messages may show it: any user and password taken out."""
    return re.sub(r"//[^/?#]*@", "//", url)


def url_problem(url: str) -> str | None:
    """What keeps ``url`` from naming one server (host, and a port from 1 to 65535), or None.

    Asked before anything is made: nats-py says only "invalid connect url option" of every such
    URL, and says it after the caller may have made what a refusal must not leave behind.
    """
    # The reasons are this function's own: the URL's text may hold a password, never repeated.
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a URL (an IPv6 address's bracket not closed?): want nats://HOST:PORT"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "its port is not a number from 1 to 65535"
    if not parts.hostname:
        return "names no host: want nats://HOST:PORT"
    return None


def stream_name(system: str) -> str:
    return "answerable_" + re.sub(r"[^A-Za-z0-9_-]", "_", system)[:100]


def subject_of(system: str, topic: str) -> str:
    """A topic's subject: as named when it is plain NATS tokens, else hex (no wildcards leak in)."""
    sys_token = system if _TOKEN.fullmatch(system) and "." not in system else "x" + system.encode().hex()
    token = topic if _TOKEN.fullmatch(topic) else "x" + topic.encode().hex()
    return f"answerable.{sys_token}.{token}"


def _decode(data: bytes) -> tuple[Message | ExternalEvent | None, str | None]:
    """The record a delivery carries, or why it is none the bus carries."""
    try:
        record = decode_entry(data)
    except RecordInvalid as exc:
        return None, f"not a record: {exc}"
    if not isinstance(record, Message | ExternalEvent):
        return None, f"a {record.kind} is not sent on the bus"
    return record, None


def handled_mark(group: str, record_id: str) -> str:
    """The mark a subscriber group leaves in the store for a record it handled."""
    return f"handled:{group}:{record_id}"


def durable_name(group: str, topic: str) -> str:
    """The durable consumer of a subscriber group on a topic (its NATS permissions name it)."""
    plain = re.sub(r"[^A-Za-z0-9_-]", "_", group)[:40]
    digest = hashlib.sha256(group.encode() + b"\0" + topic.encode()).hexdigest()[:16]
    return f"{plain}-{digest}"


@dataclass
class _Subscription:
    topic: str
    handler: Handler
    group: str
    sub: Any = None
    task: asyncio.Task[None] | None = None
    busy: int = 0


@dataclass
class NatsBus:
    """The Bus contract on JetStream (see the module's docstring)."""

    nc: Any
    system: str
    admit: Admit | None = None
    on_refused: Refused | None = None
    marks: Marks | None = None
    on_failure: Callable[[Exception], None] | None = None
    """Told of each handler's failure (a long-running agent says it); else drain() raises it."""
    ack_wait: float = 30.0
    _subs: list[_Subscription] = field(default_factory=list)
    _js: Any = None
    delivered: int = 0
    dropped: int = 0
    _outbox: deque[tuple[str, Message | ExternalEvent, bytes]] = field(default_factory=deque)
    _flusher: asyncio.Task[None] | None = None
    failures: list[Exception] = field(default_factory=list)
    """Handlers' exceptions since the last drain(), which raises the first of them."""
    held_back: int = 0
    """Records that waited in the outbox because the stream did not take them at once."""
    made_stream: bool = False
    """Whether :meth:`connect` made the system's stream (it was not on the server before)."""
    _taken: int = 0
    """Records the stream took from this bus as new (not dropped as a repeat of one it held)."""
    _closing: bool = False
    """Set by :meth:`close`: the pull loops end at their next turn, even one whose cancellation
    a fetch swallowed (Python 3.11's ``wait_for`` may turn it into a timeout when both come at
    once), which left ``close`` waiting on it for ever."""

    @classmethod
    async def connect(
        cls,
        url: str,
        system: str,
        *,
        duplicate_window: float = 120.0,
        ack_wait: float = 30.0,
        admit: Admit | None = None,
        on_refused: Refused | None = None,
        marks: Marks | None = None,
        name: str = "answerable",
        connect_wait: float = 5.0,
        nkey_seed: str | None = None,
        request_timeout: float = 5.0,
    ) -> NatsBus:
        """Connect and make sure the stream exists. The first connection is tried again (every
        half second) for ``connect_wait`` seconds; once connected, reconnects never give up.

        ``nkey_seed``: log in as this NKEY user (see :mod:`answerable.bus.auth`).

        Raises:
            BusError: the server cannot be reached, refused the login, or has no JetStream.
        """
        errors: list[BaseException] = []
        connected = False

        async def said(exc: Exception) -> None:
            # nats-py prints a traceback for every failed attempt by default; one line here, and
            # none while the first connection is still being tried (its failure is raised below).
            if connected:
                print(
                    f"answerable: NATS at {shown(url)}: {type(exc).__name__}: {exc}",
                    file=sys.stderr,
                    flush=True,
                )
            elif not errors:
                errors.append(exc)

        try:
            nc = await asyncio.wait_for(
                nats.connect(
                    url,
                    name=name,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    allow_reconnect=True,
                    error_cb=said,
                    nkeys_seed_str=nkey_seed,
                ),
                timeout=connect_wait,
            )
        except (NatsError, OSError, TimeoutError) as exc:
            seen = errors[0] if errors else exc
            why = str(seen) or f"no answer within {connect_wait:g} s"
            raise BusError(f"NATS at {shown(url)}: cannot connect: {why}") from exc
        connected = True  # from now on, errors are said as they come
        bus = cls(nc, system, admit=admit, on_refused=on_refused, marks=marks, ack_wait=ack_wait)
        bus._js = nc.jetstream(timeout=request_timeout)
        config = api.StreamConfig(
            name=stream_name(system),
            subjects=[subject_of(system, "*").rsplit(".", 1)[0] + ".>"],
            storage=api.StorageType.FILE,
            duplicate_window=duplicate_window,
        )
        try:
            try:
                await bus._js.stream_info(config.name)
            except NotFoundError:
                await bus._js.add_stream(config)
                bus.made_stream = True
        except (NatsError, JetStreamError, TimeoutError) as exc:
            await nc.close()
            raise BusError(
                f"NATS at {shown(url)}: cannot make stream {config.name} (JetStream on?): {exc}"
            ) from exc
        return bus

    @property
    def max_payload(self) -> int:
        return int(self.nc.max_payload)

    # --- the Bus contract -----------------------------------------------------------------------

    def subscribe(self, topic: str, handler: Handler, *, group: str = "") -> None:
        """Deliver ``topic`` to ``handler``; replicas subscribing with one ``group`` share the work."""
        self._subs.append(_Subscription(topic, handler, group or "default"))

    async def publish(self, topic: str, record: Message | ExternalEvent) -> None:
        """Publish the record's ledger bytes, once per id (JetStream drops a repeat in its window).

        The record is in the ledger already. While the stream does not acknowledge (NATS down or
        restarting), it waits in order in an outbox that a task publishes again with back-off;
        what comes later queues behind it, so each topic keeps its order.

        Raises:
            RecordInvalid: the record is larger than the server takes; nothing is cut.
        """
        data = entry_bytes(record)
        if len(data) > self.max_payload:
            raise RecordInvalid(
                f"{record.kind} {record.id} is {len(data)} bytes; the NATS server takes at most "
                f"{self.max_payload} (max_payload): it was not published",
                record=record.kind,
            )
        if self._outbox or not await self._send(topic, record, data):
            self._outbox.append((topic, record, data))
            self.held_back += 1
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush(), name=f"bus-outbox:{self.system}")

    async def _send(self, topic: str, record: Message | ExternalEvent, data: bytes) -> bool:
        try:
            ack = await self._js.publish(
                subject_of(self.system, topic),
                data,
                headers={"Nats-Msg-Id": record.id, "Answerable-Topic": topic},
                stream=stream_name(self.system),
            )
        except (NatsError, JetStreamError, TimeoutError) as exc:
            said = f"answerable: NATS: {record.kind} {record.id} on {topic!r} waits to be published: {exc}"
            print(said, file=sys.stderr, flush=True)
            return False
        if not ack.duplicate:
            self._taken += 1
        return True

    async def _flush(self) -> None:
        pause = 0.2
        while self._outbox:
            topic, record, data = self._outbox[0]
            if await self._send(topic, record, data):
                self._outbox.popleft()
                pause = 0.2
            else:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    @property
    def waiting(self) -> int:
        """Records recorded but not yet acknowledged by the stream (the outbox)."""
        return len(self._outbox)

    async def start(self) -> None:
        """Create each subscription's durable consumer and start pulling."""
        for s in self._subs:
            if s.task is not None:
                continue
            durable = durable_name(s.group, s.topic)
            config = api.ConsumerConfig(
                durable_name=durable,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait,
                # A group that subscribes for the first time hears what is published from then on,
                # as on the in-process bus; a group that was here before resumes where it was.
                deliver_policy=api.DeliverPolicy.NEW,
                max_deliver=-1,
            )
            try:
                s.sub = await self._js.pull_subscribe(
                    subject_of(self.system, s.topic),
                    durable=durable,
                    stream=stream_name(self.system),
                    config=config,
                )
            except (NatsError, JetStreamError, TimeoutError) as exc:
                raise BusError(f"NATS: cannot subscribe to {s.topic!r} as {s.group!r}: {exc}") from exc
            s.task = asyncio.create_task(self._pull(s), name=f"bus:{s.group}:{s.topic}")

    async def history(self, topic: str) -> list[Message | ExternalEvent]:
        """Every record the stream holds on ``topic``, oldest first (an ephemeral consumer that
        reads and acknowledges nothing; deleted after). Undecodable deliveries are skipped:
        they were refused when they came.

        Raises:
            BusError: the stream cannot be read.
        """
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.ALL,
            inactive_threshold=30.0,
        )
        out: list[Message | ExternalEvent] = []
        try:
            sub = await self._js.pull_subscribe(
                subject_of(self.system, topic), stream=stream_name(self.system), config=config
            )
            try:
                while (await sub.consumer_info()).num_pending:
                    with contextlib.suppress(TimeoutError):
                        for msg in await sub.fetch(batch=256, timeout=1.0):
                            record, _ = _decode(bytes(msg.data))
                            if record is not None:
                                out.append(record)
            finally:
                name = (await sub.consumer_info()).name
                with contextlib.suppress(NatsError, JetStreamError, TimeoutError):
                    await sub.unsubscribe()
                    await self._js.delete_consumer(stream_name(self.system), name)
        except (NatsError, JetStreamError, TimeoutError) as exc:
            raise BusError(f"NATS: cannot read what {topic!r} carried: {exc}") from exc
        return out

    async def _pull(self, s: _Subscription) -> None:
        while not self._closing:
            try:
                msgs = await s.sub.fetch(batch=16, timeout=1.0)
            except TimeoutError:
                continue
            except NatsError:
                await asyncio.sleep(0.2)  # reconnecting: the consumer keeps our place
                continue
            s.busy += 1
            try:
                await self._batch(s, msgs)
            finally:
                s.busy -= 1

    async def _batch(self, s: _Subscription, msgs: list[Any]) -> None:
        """Handle a fetched batch in order, then mark what was handled in one durable step and
        acknowledge it: a crash before the marks means those records come again (handlers must
        bear that, as after any crash); a lost acknowledgement, that they come and are dropped."""
        handled: list[tuple[Any, str]] = []
        for msg in msgs:
            try:
                mark = await self._deliver(s, msg, {m for _, m in handled})
            except Exception as exc:  # a handler's failure: the record is delivered again
                self._failed(exc)
                continue
            if mark is not None:
                handled.append((msg, mark))
        if not handled:
            return
        if self.marks is not None:
            try:
                await self._mark([mark for _, mark in handled])
            except Exception as exc:  # unmarked and unacknowledged: they come again
                self._failed(exc)
                return
        with contextlib.suppress(NatsError, TimeoutError):  # lost: redelivered, then dropped as handled
            for msg, _ in handled:
                await msg.ack()
            await self.nc.flush(timeout=5)
        self.delivered += len(handled)

    def _failed(self, exc: Exception) -> None:
        """Tell ``on_failure`` of a failure, else keep it for the next drain(). A teller that
        fails itself (a handler's exception whose message cannot be read, say) must not end the
        pull task: the agent would stop hearing the topic, silently, until a restart."""
        if self.on_failure is not None:
            try:
                self.on_failure(exc)
                return
            except Exception:  # told nobody: drain() raises it
                pass
        self.failures.append(exc)

    async def _mark(self, marks: list[str]) -> None:
        """Write the handled marks of records whose handlers returned, waiting out a store that
        does not answer: those handlers changed their agents' state, so this process must not be
        handed the records again (it would count them twice). Past ``ack_wait`` JetStream may
        give them to another replica of the group meanwhile, which handles them once more: what
        they said and proposed is made again under the same ids and keys, so nothing is done
        twice, as after a crash."""
        if self.marks is None:
            return
        pause = 0.1
        while True:
            try:
                await self.marks.mark_many(marks)
                return
            except StoreUnavailable as exc:
                if pause == 0.1 and self.on_failure is not None:
                    self._failed(exc)
            await asyncio.sleep(pause)
            pause = min(2 * pause, 2.0)

    async def _deliver(self, s: _Subscription, msg: Any, batch: set[str]) -> str | None:
        """Admit and handle one delivery; the handled mark to write, or None when it was refused
        or dropped (acknowledged here already)."""
        data = bytes(msg.data)
        record, why = _decode(data)
        if record is not None and why is None and self.admit is not None:
            why = await self.admit(record, data, s.topic)
        if why is not None:
            if self.on_refused is not None:
                await self.on_refused(record, data, why)
            await msg.term()  # never again: it is refused, and the refusal is recorded
            self.dropped += 1
            return None
        if record is None:  # _decode gives a reason whenever it gives no record
            return None
        mark = handled_mark(s.group, record.id)
        if mark in batch or (self.marks is not None and await self.marks.seen(mark)):
            await msg.ack()  # a redelivery of what this group handled: dropped silently
            self.dropped += 1
            return None
        try:
            await s.handler(record)
        except Exception:
            await msg.nak(delay=1.0)  # again later, here or in another replica
            raise
        return mark

    async def drain(self) -> None:
        """Return once every record published so far was handled by every subscription here;
        on a bus that only publishes (the service's), by every subscriber of the stream,
        wherever it runs: each consumer has nothing left to deliver and nothing unacknowledged,
        and a record is acknowledged only after its handler returned, so what a handler said
        is on the stream (and counted) before the record it answered is done.

        Raises:
            Exception: the first a handler raised meanwhile (its record is delivered again).
        """
        while True:
            if self.failures:
                first, self.failures = self.failures[0], []
                raise first
            if self._flusher is not None and not self._flusher.done():
                await self._flusher  # what waits in the outbox is not on the stream yet
                continue  # (and more may have joined it meanwhile)
            if await (self._idle() if self._subs else self._stream_idle()) and not self._outbox:
                return
            await asyncio.sleep(0.01)

    async def _idle(self) -> bool:
        for s in self._subs:
            if s.sub is None:
                continue
            info = await s.sub.consumer_info()
            if info.num_pending or info.num_ack_pending or s.busy:
                return False
        return True

    async def _stream_idle(self) -> bool:
        """Whether every consumer of the stream is done; not while NATS is away (asked again:
        whoever waits bounds the wait)."""
        try:
            infos = await self._js.consumers_info(stream_name(self.system))
        except (NatsError, JetStreamError, TimeoutError, AttributeError):
            # AttributeError: nats-py cannot parse a consumer listed while it is being deleted
            # (an agent's reading of the stream's history, say); the next look sees it gone.
            await asyncio.sleep(0.2)
            return False
        return not any(info.num_pending or info.num_ack_pending for info in infos)

    async def close(self, *, unmake: bool = False) -> None:
        """Stop pulling and publishing, and disconnect. Never raises.

        ``unmake`` (a start that failed): first delete the stream if :meth:`connect` made it and
        nothing shows anyone else using it, see :meth:`_unmake_stream`.
        """
        self._closing = True
        if self._outbox:
            print(
                f"answerable: NATS: closing with {len(self._outbox)} recorded records not published; "
                "they are in the ledger",
                file=sys.stderr,
                flush=True,
            )
        if self._flusher is not None:
            self._flusher.cancel()
        for s in self._subs:
            if s.task is not None:
                s.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await s.task
        try:
            if unmake:
                with contextlib.suppress(Exception):  # left on the server: the failure said is the start's
                    await self._unmake_stream()
        finally:  # a cancellation while the stream is looked at still disconnects
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def _unmake_stream(self) -> bool:
        """Delete the stream :meth:`connect` made, unless something else uses it already: a
        consumer on it (an agent subscribed) or a record on it this bus did not publish (every
        sequence number the stream gave out was given to this bus). Whether it was deleted.

        JetStream makes a stream for whoever asks first and tells each asker alike, so another
        process starting at the same moment may count on the stream too; one that has left no
        trace on it yet (nothing published, no consumer) finds it gone: what it publishes waits
        in its outbox until the stream is made again (by the next process to connect that may
        make it), and a subscriber's start fails with "stream not found". The service deletes
        only with the ledger it made, which no other gateway holds a lease on.
        """
        if not self.made_stream:
            return False
        name = stream_name(self.system)
        try:
            state = (await self._js.stream_info(name)).state
            if state.consumer_count or state.last_seq != self._taken:
                return False
            await self._js.delete_stream(name)
        except NotFoundError:
            return False  # gone already (an operator): nothing of this start's is left
        except (NatsError, JetStreamError, TimeoutError) as exc:
            raise BusError(f"NATS: cannot remove stream {name} that this process made: {exc}") from exc
        self.made_stream = False
        return True

    async def delete_stream(self) -> None:
        """Drop this system's stream (tests and throw-away runs)."""
        with contextlib.suppress(NotFoundError):
            await self._js.delete_stream(stream_name(self.system))
