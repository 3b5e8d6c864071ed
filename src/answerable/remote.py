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
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from answerable.bus.auth import nkey_seed
from answerable.bus.nats import NatsBus
from answerable.charter import charter_of
from answerable.client import AsyncClient
from answerable.clock import IdSource, SystemClock, rfc3339
from answerable.config import ServiceConfig, resolve_target
from answerable.delivery import Admission, LedgerMarks
from answerable.errors import ConfigError
from answerable.keys import KeyPair
from answerable.ledger import open_ledger
from answerable.records import ExternalEvent, Message
from answerable.runtime import Agent, Context

__all__ = ["RemoteContext", "RemoteOutcome", "run_agent"]


@dataclass(frozen=True, slots=True)
class RemoteOutcome:
    """What the service answered for a proposed intent (its ``/v1/intents`` document)."""

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


@dataclass(frozen=True, slots=True)
class RemoteContext(Context):
    """What an agent may do while handling one record, through the service."""

    client: AsyncClient | None = None
    ids: IdSource | None = None

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
        message = Message(
            id=self.ids.new(),
            at=rfc3339(self.ids.clock.now_ns()),
            causes=tuple(causes),
            sender=self.agent,
            topic=topic,
            recipients=tuple(recipients),
            type=type,
            payload=dict(payload),
            trace_id=self.trace_id,
        )
        await self.client.send(message)
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
        doc = await self.client.submit(
            operation, dict(arguments), idempotency_key=idempotency_key, causes=tuple(causes)
        )
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
    agent = made() if isinstance(made, type) else made
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
    clock = SystemClock()
    ids = IdSource(clock)
    admission = Admission(ledger, agent=name, clock=clock, ids=ids)
    client = AsyncClient(_service_url(config), key)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    charter_system = charter_of(ledger).system

    async def refused(record: Message | ExternalEvent | None, data: bytes, why: str) -> None:
        await admission.refuse(record, data, why)
        code = why.partition(":")[0]
        print(f"answerable agent {name}: refused a delivery ({code}); recorded", file=sys.stderr, flush=True)

    bus = await NatsBus.connect(
        config.nats_url,
        charter_system,
        admit=admission,
        on_refused=refused,
        marks=LedgerMarks(ledger, clock),
        ack_wait=config.nats_ack_wait,
        name=f"answerable agent {name}",
        nkey_seed=None if config.nats_key is None else nkey_seed(key),
    )

    async def deliver(record: Message | ExternalEvent) -> None:
        if isinstance(record, Message) and record.recipients and name not in record.recipients:
            return
        trace = record.trace_id if isinstance(record, Message) else record.id
        ctx = RemoteContext(system=None, agent=name, trace_id=trace, client=client, ids=ids)  # type: ignore[arg-type]
        await agent.handle(record, ctx)

    def failed(exc: Exception) -> None:
        print(
            f"answerable agent {name}: {type(exc).__name__}: {exc} (the record comes again)",
            file=sys.stderr,
            flush=True,
        )

    bus.on_failure = failed
    try:
        for topic in agent.subscriptions:
            bus.subscribe(topic, deliver, group=name)
        await bus.start()
        print(f"answerable agent {name}: listening on {', '.join(agent.subscriptions)}", flush=True)
        await stop.wait()
    finally:
        await bus.close()
        await client.aclose()
        ledger.close()


def _service_url(config: ServiceConfig) -> str:
    if config.public_url:
        return config.public_url
    scheme = "https" if config.tls_cert is not None else "http"
    return f"{scheme}://{config.host}:{config.port}"
