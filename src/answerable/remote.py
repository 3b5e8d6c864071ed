"""One agent in its own process: ``answerable agent CONFIG NAME``.

The agent hears its topics on NATS JetStream (its name is its subscriber group, so replicas share
the work), and speaks only through the service: a message it sends is built and signed here and
recorded by the service before anyone receives it; an intent goes to the service's gateway. What
it receives was admitted against the ledger first (recorded byte for byte, signed by its sender;
see :mod:`answerable.delivery`), and is acknowledged only after its handler returned, so a crash
in the middle means the record comes again, here or in a replica.

An agent that handles a record twice (it died after its effects and before its handled mark)
sends nothing twice that matters: it should give its intents an idempotency key derived from
what caused them, and the service answers a repeated key with the first intent's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from answerable._text import exception_text
from answerable.bus.auth import nkey_seed
from answerable.bus.nats import NatsBus, handled_mark
from answerable.charter import charter_of
from answerable.client import AsyncClient, ServiceRefused, patiently
from answerable.clock import Clock, FakeClock, IdSource, SystemClock, parse_rfc3339, rfc3339
from answerable.config import ServiceConfig, resolve_target
from answerable.delivery import Admission, LedgerMarks
from answerable.errors import ConfigError, EntryNotFound, MessageRefused
from answerable.keys import KeyPair
from answerable.ledger import SERVING_PATIENCE, LedgerStore, open_ledger
from answerable.records import ExternalEvent, Message
from answerable.runtime import Agent, Context, handle_record

__all__ = ["Ref", "RemoteContext", "RemoteOutcome", "run_agent", "serve_agent"]


@dataclass(frozen=True, slots=True)
class Ref:
    """An entry named by its id (what an agent cites)."""

    id: str


@dataclass(frozen=True, slots=True)
class RemoteOutcome:
    """What the service answered for a proposed intent (its ``/v1/intents`` document), with the
    entries an agent cites by the names an in-process :class:`answerable.gateway.Outcome` has."""

    doc: Mapping[str, Any]

    @property
    def status(self) -> str:
        return str(self.doc.get("status", ""))

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @property
    def intent_id(self) -> str:
        return str(self.doc.get("intent_id", ""))

    @property
    def result(self) -> Any:
        return self.doc.get("result")

    @property
    def intent(self) -> Ref:
        return Ref(self.intent_id)

    @property
    def decision(self) -> Ref | None:
        return self._ref("decision")

    @property
    def execution(self) -> Ref | None:
        return self._ref("execution")

    @property
    def approval(self) -> Ref | None:
        return self._ref("approval")

    @property
    def review(self) -> Ref | None:
        found = self.doc.get("review_id")
        return Ref(str(found)) if isinstance(found, str) and found else None

    def _ref(self, name: str) -> Ref | None:
        found = self.doc.get(name)
        return Ref(str(found["id"])) if isinstance(found, Mapping) and "id" in found else None


@dataclass(frozen=True, slots=True)
class RemoteContext(Context):
    """What an agent may do while handling one record, through the service."""

    client: AsyncClient | None = None
    ids: IdSource | None = None
    cause: str | None = None
    """The record being handled by a replayable agent: the messages its handling sends get ids
    derived from it and their order, so handling it again (after a crash) sends the very
    messages already sent. None: fresh ids."""
    cause_ns: int = 0
    """The record's time: the time part of those ids (not the clock's, which moves on)."""
    key: KeyPair | None = None
    """The agent's key: the ids are derived through its signature, so no one else can know
    one in advance and take it first."""
    sent: Iterator[int] = field(default_factory=itertools.count)
    fault: Callable[[str], None] | None = None
    """A hook for crash tests, called at ``before_send``, ``after_send``, ``before_propose``
    and ``after_propose`` (after the service answered)."""

    recorded: Callable[[str], bool] | None = None
    """Set while the agent handles again what it handled before, to rebuild its state: whether
    the ledger holds an entry. A message it did not say then (a halt cut the first handling
    short) is not said now: the handling ends there, as it ended then."""

    patience: float = 120.0
    """How long a request the service could not take (unreachable: killed, starting again) is
    made again before the handling fails. Only requests that are safe to repeat are: a message
    (its id makes it once) and an intent with an idempotency key (the service gives back the
    intent the key made). A handler that failed halfway would leave its agent's state halfway
    too, and the record handled again would not say what it said the first time."""

    def _derived_id(self) -> str:
        place = f"answerable message id:{self.agent}:{self.cause}:{next(self.sent)}".encode()
        secret = place.decode() if self.key is None else self.key.sign(place)
        return IdSource.derived(self.cause_ns, secret)

    def _at(self, point: str) -> None:
        if self.fault is not None:
            self.fault(point)

    async def send(
        self,
        topic: str,
        type: str,
        payload: Mapping[str, Any],
        *,
        causes: Sequence[str],
        recipients: Sequence[str] = (),
    ) -> Message:
        if self.client is None or self.ids is None:
            raise ConfigError("a remote context needs its client")
        now = self.ids.clock.now_ns()
        message = Message(
            id=self.ids.new() if self.cause is None else self._derived_id(),
            at=rfc3339(now),
            causes=tuple(causes),
            sender=self.agent,
            topic=topic,
            recipients=tuple(recipients),
            type=type,
            payload=dict(payload),
            trace_id=self.trace_id,
        )
        if self.recorded is not None and not await asyncio.to_thread(self.recorded, message.id):
            raise MessageRefused(
                self.agent,
                topic,
                type,
                "not_said_then",
                "handled again to rebuild state, and not recorded when first handled",
                "",
            )
        self._at("before_send")
        client = self.client
        try:
            await patiently(lambda: client.send(message), self.patience)
        except ServiceRefused as exc:
            if exc.status == 409 and "refusal_id" in exc.doc:  # refused and recorded, as in process
                raise MessageRefused(
                    self.agent,
                    topic,
                    type,
                    exc.reason_code,
                    str(exc.doc.get("error", "")),
                    str(exc.doc["refusal_id"]),
                ) from None
            raise
        self._at("after_send")
        return message

    async def propose(  # type: ignore[override]
        self,
        operation: str,
        arguments: Mapping[str, Any],
        *,
        causes: Sequence[str],
        idempotency_key: str | None = None,
        on_behalf_of: str | None = None,
    ) -> RemoteOutcome:
        if self.client is None:
            raise ConfigError("a remote context needs its client")
        self._at("before_propose")
        client = self.client

        async def submit() -> dict[str, Any]:
            return await client.submit(
                operation, dict(arguments), idempotency_key=idempotency_key, causes=tuple(causes)
            )

        doc = await (submit() if idempotency_key is None else patiently(submit, self.patience))
        self._at("after_propose")
        return RemoteOutcome(doc)


def load_agent(config: ServiceConfig, name: str) -> tuple[Agent, KeyPair]:
    """The agent ``[agents.NAME]`` names, made, and its key.

    Raises:
        ConfigError: no such table, the class cannot be imported or is no Agent, or the key is
            missing or belongs to someone else.
    """
    found = next((a for a in config.agents if a.name == name), None)
    if found is None:
        known = ", ".join(a.name for a in config.agents) or "none"
        raise ConfigError(f"{config.source.name}: no [agents.{name}] table (agents configured: {known})")
    made = resolve_target(found.target, config.folder, f"agents.{name}")
    if isinstance(made, type):
        try:
            agent = made()
        except Exception as exc:  # the agent author's constructor: any failure is the config's
            raise ConfigError(
                f"{config.source.name}: [agents.{name}] class {found.target} could not be made "
                f"(with no arguments): {exception_text(exc)}"
            ) from exc
    else:
        agent = made
    if not isinstance(agent, Agent):
        raise ConfigError(f"{config.source.name}: [agents.{name}] class {found.target} is not an Agent")
    if not agent.name:
        agent.name = name
    if agent.name != name:
        raise ConfigError(f"{found.target} calls itself {agent.name!r}, not {name!r}")
    if not found.key.exists():
        raise ConfigError(f"{config.source.name}: [agents.{name}] key {found.key} does not exist")
    key = KeyPair.load(found.key)
    if key.identity != name:
        raise ConfigError(f"{found.key} is the key of {key.identity!r}, not of agent {name!r}")
    return agent, key


async def run_agent(config: ServiceConfig, name: str, *, stop: asyncio.Event | None = None) -> None:
    """Run agent ``name`` until ``stop`` is set (or SIGTERM/SIGINT arrives).

    Raises:
        ConfigError: as :func:`load_agent`, or the config names no ``[nats] url``.
        BusError, LedgerError: NATS or the ledger cannot be reached (named).
    """
    if config.nats_url is None:
        raise ConfigError(f"{config.source.name}: [nats] url is needed to run an agent in its own process")
    agent, key = load_agent(config, name)
    ledger = open_ledger(config.ledger_url or config.ledger)
    ledger.patience = SERVING_PATIENCE  # a wrong address said at once; a server restarting waited out
    try:
        await serve_agent(
            agent,
            key,
            ledger=ledger,
            nats_url=config.nats_url,
            service_url=_service_url(config),
            ack_wait=config.nats_ack_wait,
            nkey=config.nats_key is not None,
            stop=stop,
        )
    finally:
        ledger.close()


async def serve_agent(
    agent: Agent,
    key: KeyPair,
    *,
    ledger: LedgerStore,
    nats_url: str,
    service_url: str,
    system: str | None = None,
    ack_wait: float = 30.0,
    nkey: bool = False,
    clock: Clock | None = None,
    keys: Mapping[str, str] | None = None,
    stop: asyncio.Event | None = None,
    fault: Callable[[str], None] | None = None,
) -> None:
    """Serve one agent: hear its topics on NATS, speak through the service, until ``stop``.

    It handles one record at a time, whatever topic it came on, as the in-process bus hands
    them over: an agent's state is never touched by two handlers at once. ``system``: the
    stream (default: the charter's system). ``clock``: a simulated clock (a scenario's) is moved
    to each record's time as it arrives, so nothing the agent says is stamped before what it
    heard. ``keys``: senders' keys where the ledger holds no charter (an ungoverned baseline).
    ``fault``: see :attr:`RemoteContext.fault`.
    """
    name = agent.name
    clock = clock or SystemClock()
    ids = IdSource(clock)
    admission = Admission(ledger, agent=name, clock=clock, ids=ids, keys=keys)
    client = AsyncClient(service_url, key)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    system = system or charter_of(ledger).system

    async def refused(record: Message | ExternalEvent | None, data: bytes, why: str) -> None:
        await admission.refuse(record, data, why)
        code = why.partition(":")[0]
        print(f"answerable agent {name}: refused a delivery ({code}); recorded", file=sys.stderr, flush=True)

    marks = LedgerMarks(ledger, clock)
    bus = await NatsBus.connect(
        nats_url,
        system,
        admit=admission,
        on_refused=refused,
        marks=marks,
        ack_wait=ack_wait,
        name=f"answerable agent {name}",
        nkey_seed=nkey_seed(key) if nkey else None,
    )
    one_at_a_time = asyncio.Lock()

    def recorded(entry_id: str) -> bool:
        try:
            ledger.find(entry_id)
        except EntryNotFound:
            return False
        return True

    async def deliver(record: Message | ExternalEvent, *, again: bool = False) -> None:
        """Handle one record (``again``: one handled before, to rebuild the agent's state)."""
        if isinstance(record, Message) and record.recipients and name not in record.recipients:
            return
        trace = record.trace_id if isinstance(record, Message) else record.id
        ctx = RemoteContext(
            system=None,  # type: ignore[arg-type]
            agent=name,
            trace_id=trace,
            client=client,
            ids=ids,
            cause=record.id if agent.replayable else None,
            cause_ns=parse_rfc3339(record.at),
            key=key,
            fault=fault,
            recorded=recorded if again else None,
        )
        async with one_at_a_time:
            if isinstance(clock, FakeClock):
                clock.ns = max(clock.ns, parse_rfc3339(record.at))
            await handle_record(agent, record, ctx)

    def failed(exc: Exception) -> None:
        print(
            f"answerable agent {name}: {exception_text(exc)} (the record comes again)",
            file=sys.stderr,
            flush=True,
        )

    bus.on_failure = failed
    try:
        if agent.replayable:
            await _rebuild(agent, bus, ledger, marks, deliver)
        for topic in agent.subscriptions:
            bus.subscribe(topic, deliver, group=name)
        await bus.start()
        print(f"answerable agent {name}: listening on {', '.join(agent.subscriptions)}", flush=True)
        await stop.wait()
    finally:
        await bus.close()
        await client.aclose()


async def _rebuild(
    agent: Agent,
    bus: NatsBus,
    ledger: LedgerStore,
    marks: LedgerMarks,
    deliver: Callable[..., Awaitable[None]],
) -> None:
    """Handle again, in the ledger's order, every record the stream holds that this agent's
    group marked handled: a replayable agent's state is what it heard (see ``Agent.replayable``).
    What is still unhandled comes afterwards, live, from its durable consumers."""
    heard: dict[str, Message | ExternalEvent] = {}
    for topic in agent.subscriptions:
        for record in await bus.history(topic):
            heard.setdefault(record.id, record)
    handled = [r for r in heard.values() if await marks.seen(handled_mark(agent.name, r.id))]
    at = {r.id: (await asyncio.to_thread(ledger.find, r.id)).index for r in handled}
    for record in sorted(handled, key=lambda r: at[r.id]):
        await deliver(record, again=True)
    if handled:
        print(
            f"answerable agent {agent.name}: handled again the {len(handled)} records it had handled",
            file=sys.stderr,
            flush=True,
        )


def _service_url(config: ServiceConfig) -> str:
    if config.public_url:
        return config.public_url
    scheme = "https" if config.tls_cert is not None else "http"
    return f"{scheme}://{config.host}:{config.port}"
