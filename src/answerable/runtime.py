"""Agents and the System that wires them to the bus, the ledger and the gateway.

An agent never calls the world itself: it sends messages (recorded, then published) and proposes
intents (submitted to the actuator, normally the gateway). Every message cites the records it
was derived from, so the chain from any execution back to the outside events can be walked.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from answerable._canonical import canonical_bytes, is_simple_json, json_problems
from answerable.bus import Bus, MemoryBus
from answerable.clock import Clock, IdSource, SystemClock, rfc3339
from answerable.contract import ContractCheck, Refused
from answerable.errors import (
    AgentFailed,
    AnswerableError,
    CallStopped,
    ConfigError,
    Conflict,
    EntryNotFound,
    MessageHeld,
    MessageRefused,
    RecordInvalid,
    UnknownAgent,
)
from answerable.gateway import SEND_PREFIX, Gateway, Outcome, Resource
from answerable.ledger.base import CONTROL_HEAD, Guard, LedgerStore
from answerable.operations import FencingToken
from answerable.records import (
    Control,
    ExternalEvent,
    Intent,
    Message,
    Refusal,
    Review,
    SystemCharter,
    decode_entry,
    digest,
    problems,
)

__all__ = ["SEND_PREFIX", "Actuator", "Agent", "Context", "System", "Watcher", "handle_record"]


class Actuator(Protocol):
    """What turns an agent's proposal into a governed call: the gateway, or a baseline without rules."""

    def intent(
        self,
        agent: str,
        operation: str,
        arguments: Mapping[str, Any],
        *,
        causes: tuple[str, ...] = (),
        idempotency_key: str | None = None,
        trace_id: str | None = None,
        on_behalf_of: str | None = None,
    ) -> Intent: ...

    async def submit(self, intent: Intent) -> Outcome: ...


class Watcher(Protocol):
    """Something that reads the ledger as it grows (the monitors) and may respond."""

    async def poll(self) -> Sequence[object]: ...


class Agent(ABC):
    """Base class: name the topics to hear, react in :meth:`handle`."""

    name: str = ""
    subscriptions: tuple[str, ...] = ()
    replayable: bool = False
    """Its state is what it heard, and handling a record again changes nothing outside: every
    intent it proposes carries an idempotency key made from its cause, and what it sends
    depends only on what it heard. An agent run in its own process that says so rebuilds its
    state at start by handling again, in the ledger's order, what it handled before (its
    messages come out with the ids already recorded; its intents meet their keys). The ledger's
    order is the order it heard them in when what it hears on one topic never races what it
    hears on another (the storm's driver steps its days so); where it may, its state must not
    depend on that order."""

    @abstractmethod
    async def handle(self, record: Message | ExternalEvent, ctx: Context) -> None:
        """React to one record: send messages, propose intents.

        A message refused by a halt in force (:attr:`MessageRefused.ends_handling`) that the
        handler does not catch ends its handling, and the record counts as handled: the refusal
        is recorded, and the work a halt cut is dropped, not resumed (a handler that must react
        catches it). Any other exception, a pause's refusal included, is the handling's failure:
        between processes the record comes again."""

    async def on_refusal(self, refusal: MessageRefused, ctx: Context) -> None:  # noqa: B027 - optional hook
        """A message this agent sent that was held for review has been denied: react (re-plan,
        tell someone). By default nothing happens; the denial is in the ledger either way."""


async def handle_record(agent: Agent, record: Message | ExternalEvent, ctx: Context) -> None:
    """``agent.handle``, ended where a halt refused what it said (see :meth:`Agent.handle`).

    Every runner of agents calls this, in one process or in their own, so an agent meets a halt
    the same way in both: the run goes on, and nothing it says is carried while the halt holds."""
    try:
        await agent.handle(record, ctx)
    except MessageRefused as exc:
        if not exc.ends_handling:
            raise


@dataclass(frozen=True, slots=True)
class Context:
    """What an agent may do while handling one record."""

    system: System
    agent: str
    trace_id: str

    async def send(
        self,
        topic: str,
        type: str,
        payload: Mapping[str, Any],
        *,
        causes: Sequence[str],
        recipients: Sequence[str] = (),
    ) -> Message:
        """Record a message citing its causes, then publish it."""
        return await self.system.send(self.agent, topic, type, payload, causes, recipients, self.trace_id)

    async def propose(
        self,
        operation: str,
        arguments: Mapping[str, Any],
        *,
        causes: Sequence[str],
        idempotency_key: str | None = None,
        on_behalf_of: str | None = None,
    ) -> Outcome:
        """Ask the actuator to call an operation on this agent's behalf (and a person's, if one asked).

        Raises:
            ConfigError: ``operation`` is a ``send:`` operation, which only :meth:`send` uses.
        """
        if operation.startswith(SEND_PREFIX):
            raise ConfigError(f"{operation!r} is how the system sends decided messages: use ctx.send")
        actuator = self.system.actuator
        intent = actuator.intent(
            self.agent,
            operation,
            arguments,
            causes=tuple(causes),
            idempotency_key=idempotency_key,
            trace_id=self.trace_id,
            on_behalf_of=on_behalf_of,
        )
        return await actuator.submit(intent)


class System:
    """Agents, their bus, the ledger all records go to, and the actuator all intents go through."""

    def __init__(
        self,
        ledger: LedgerStore,
        actuator: Actuator,
        *,
        agents: Iterable[str],
        bus: Bus | None = None,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        watcher: Watcher | None = None,
    ) -> None:
        self.ledger = ledger
        self._check: ContractCheck | None = None
        self._contexts: dict[tuple[str, str], Callable[[Mapping[str, Any]], Mapping[str, Any]]] = {}
        self.held: dict[str, tuple[str, str, str]] = {}
        """Intents of messages waiting for review -> (sender, topic, type), until settled; those
        an earlier system held are read from the ledger at the first :meth:`run_until_idle`."""
        self._held_read = False
        self._tracked = False
        """Whether the ledger is known to note senders told (see :meth:`_track`)."""
        self.watcher = watcher
        self.unpublished = 0
        """Records this system is appending whose publish has not returned yet: while none is,
        every record it appended so far is on the bus or in the bus's outbox."""
        self.actuator = actuator
        self.bus = bus or MemoryBus()
        self.clock = clock or SystemClock()
        self.ids = ids or IdSource(self.clock)
        self.known = frozenset(agents)
        self.agents: dict[str, Agent] = {}
        if isinstance(actuator, Gateway):  # every charter put in force: its decided messages' operations
            actuator.on_install(self._charter_installed)

    def add(self, agent: Agent) -> None:
        """Subscribe an agent the charter knows to its topics."""
        if agent.name not in self.known:
            raise UnknownAgent(agent.name)
        self.agents[agent.name] = agent
        for topic in agent.subscriptions:
            self.bus.subscribe(topic, self._deliver_to(agent))

    def _deliver_to(self, agent: Agent) -> Callable[[Message | ExternalEvent], Awaitable[None]]:
        async def deliver(record: Message | ExternalEvent) -> None:
            if isinstance(record, Message) and not self._may_receive(agent.name, record):
                return
            trace = record.trace_id if isinstance(record, Message) else record.id
            try:
                await handle_record(agent, record, Context(self, agent.name, trace))
            except AgentFailed:
                raise
            except Exception as exc:  # an agent bug: name the agent and the record, keep the cause
                raise AgentFailed(agent.name, record.id, record.type, exc) from exc

        return deliver

    def _charter_installed(self, _charter: SystemCharter) -> None:
        self._contract_check()

    def _stop_for(self, sender: str, topic: str) -> tuple[Control | None, tuple[Guard, ...]]:
        """A halt, or a pause of the sender or of the channel, in force now: the message stops;
        and the guards its append carries, so that a stop committed by anyone after this reading
        refuses the append (Conflict on the control head) instead of letting it land after the
        stop. Checking and then appending unguarded let another process's halt fall in between:
        the message was recorded and published after the halt."""
        if not isinstance(self.actuator, Gateway):
            return None, ()
        state, guard = self.actuator.control.guarded_state()
        return state.blocking_message(sender=sender, topic=topic), (guard,)

    def _may_receive(self, agent: str, message: Message) -> bool:
        """Under a contract, a message reaches only the topic's declared subscribers, and of those
        only its named recipients when it names some: subscribing is not enough to listen in."""
        check = self._contract_check()
        if check is None:
            return True
        if agent not in check.subscribers(message.topic):
            return False
        return not message.recipients or agent in message.recipients

    def _contract_check(self) -> ContractCheck | None:
        """The contract in force, compiled once per charter; its decided messages' operations
        registered on the gateway before anything needs them (a restart's reconcile, an approval).
        Read from the charter the gateway holds now, so a new version applies to the next message;
        an actuator that is not a gateway (a baseline without rules), or one with no charter yet,
        has none."""
        gateway = self.actuator
        if not isinstance(gateway, Gateway):
            return None
        try:
            contract = gateway.charter.coordination
        except ConfigError:  # no charter installed yet: nothing is declared, nothing refused
            return None
        if contract is None:
            return None
        if self._check is None or self._check.contract is not contract:
            self._check = ContractCheck(contract)
            for channel in contract.channels:
                for kind in channel.messages:
                    if kind.decide:
                        self._send_operation(gateway, channel.topic, kind.type)
        return self._check

    async def ingest(
        self, events: Sequence[tuple[str, str, str, Mapping[str, Any]]], *, brought_by: str | None = None
    ) -> list[ExternalEvent]:
        """Record outside events (topic, source, type, payload) in one commit, then publish them.

        ``brought_by``: the agent whose signed request brought them (the service's API); the
        events then also record their topic, which a delivery between processes is checked by.

        Raises:
            RecordInvalid: an event does not validate (naming it and the field); none is recorded.
        """
        made = []
        for i, given in enumerate(events):
            if not isinstance(given, tuple | list) or len(given) != 4:
                raise RecordInvalid(
                    f"event {i}: give (topic, source, type, payload), not {type(given).__name__} "
                    f"{given!r:.80}",
                    record="ExternalEvent",
                )
            topic, source, kind, payload = given
            try:
                event = ExternalEvent(
                    id=self.ids.new(),
                    at=rfc3339(self.clock.now_ns()),
                    source=source,
                    type=kind,
                    payload=dict(payload),
                    topic=None if brought_by is None else topic,
                    brought_by=brought_by,
                )
            except (ValidationError, TypeError, ValueError) as exc:  # ValueError: payload not a mapping
                why = problems(exc, "event")[0] if isinstance(exc, ValidationError) else str(exc)
                raise RecordInvalid(
                    f"event {kind!r} from {source!r} on {topic!r}: {why}", record="ExternalEvent"
                ) from exc
            # What is delivered is what is recorded: the record would hold a set as a list and
            # bytes as text, while the bus carried the set and the bytes themselves. Looked at
            # closely only when the cheap walk has doubts (floats are JSON, and pass).
            found = [] if is_simple_json(event.payload) else json_problems(event.payload, limit=3)
            if found:
                raise RecordInvalid(
                    f"event {kind!r} from {source!r} on {topic!r}: {'; '.join(found)}", record="ExternalEvent"
                )
            made.append(event)
        self.unpublished += 1
        try:
            await self.ledger.append(made)
            if self.watcher is not None:
                await self.watcher.poll()
            for (topic, *_), event in zip(events, made, strict=True):
                await self.bus.publish(topic, event)
        finally:
            self.unpublished -= 1
        return made

    async def send(
        self,
        sender: str,
        topic: str,
        type: str,
        payload: Mapping[str, Any],
        causes: Sequence[str],
        recipients: Sequence[str],
        trace_id: str,
    ) -> Message:
        """Record a message from a chartered agent and publish it.

        Raises:
            UnknownAgent: the sender is not in the charter.
            RecordInvalid: the message does not validate or its payload is not JSON (naming the
                field); nothing is recorded.
            MessageRefused: the message is outside the coordination contract in force, or the
                system is halted, or its sender or channel paused (``reason_code`` ``halt`` or
                ``pause``); the refusal is recorded, the message is not, and nobody receives it.
            MessageHeld: the rules sent it to review (a type the contract marks ``decide``).
        """
        if sender not in self.known:
            raise UnknownAgent(sender)
        try:
            message = Message(
                id=self.ids.new(),
                at=rfc3339(self.clock.now_ns()),
                causes=tuple(causes),
                sender=sender,
                topic=topic,
                recipients=tuple(recipients),
                type=type,
                payload=dict(payload),
                trace_id=trace_id,
            )
        except (ValidationError, TypeError, ValueError) as exc:  # ValueError: payload not a mapping
            why = problems(exc, "message")[0] if isinstance(exc, ValidationError) else str(exc)
            raise RecordInvalid(f"message from {sender} on {topic}: {why}", record="Message") from exc
        return await self.publish_message(message)

    async def publish_message(self, message: Message, *, decided: bool = True) -> Message:
        """Judge a message built elsewhere (an agent in another process signed it), record it,
        publish it: the same checks, refusals and records as :meth:`send`.

        ``decided``: False where a message the rules decide cannot be carried (its delivered
        copy would be made here, unsigned by its sender): such a message is refused then.

        Raises:
            as :meth:`send`.
        """
        sender, topic = message.sender, message.topic
        if sender not in self.known:
            raise UnknownAgent(sender)
        try:
            body = canonical_bytes(message.payload)
        except (RecordInvalid, TypeError, ValueError, OverflowError) as exc:
            raise RecordInvalid(
                f"message from {sender} on {topic}: payload is not JSON ({exc}); nothing was recorded",
                record="Message",
            ) from exc
        while True:
            published = await self._publish_once(message, body, decided=decided)
            if published is not None:
                return published

    async def _publish_once(self, message: Message, body: bytes, *, decided: bool) -> Message | None:
        """One try of :meth:`publish_message`: the message as published, or None when a stop
        committed after its check refused the append, so that it is judged again under the stop
        (and refused, unless a resume came too)."""
        sender, topic, type = message.sender, message.topic, message.type
        check = self._contract_check()
        stop, guards = self._stop_for(sender, topic)
        if stop is not None:
            refused: Refused | None = Refused(
                stop.action, f"{stop.action} {stop.id} by {stop.by}: {stop.reason}"
            )
        else:
            refused = (
                None
                if check is None
                else check.judge(sender, topic, type, message.payload, message.recipients)
            )
        if refused is not None:
            refusal = Refusal(
                id=self.ids.new(),
                at=rfc3339(self.clock.now_ns()),  # when it was refused: the sender chose the message's time
                causes=(*message.causes, *((stop.id,) if stop is not None else ())),
                claimed=sender,
                verified=True,
                channel="bus",
                target=f"publish {topic} {type}"[:300],
                reason_code=refused.code,
                detail=refused.detail[:500],
                body_digest=digest(body),
                topic=topic,
                type=type,
            )
            await self.ledger.append([refusal])
            raise MessageRefused(sender, topic, type, refused.code, refused.detail, refusal.id)
        if check is not None and check.decided(topic, type):
            if not decided:
                raise ConfigError(
                    f"message {type!r} on {topic!r}: the rules decide this type, and a decided message "
                    "is delivered as the gateway records it, which its sender did not sign; between "
                    "processes only undecided types are carried (nothing was recorded)"
                )
            return await self._decided(message)
        self.unpublished += 1
        try:
            try:
                await self.ledger.append([message], guards=guards)
            except Conflict as exc:
                if exc.key != CONTROL_HEAD:
                    raise
                return None
            await self.bus.publish(topic, message)
        finally:
            self.unpublished -= 1
        return message

    def message_context(
        self, topic: str, type: str, context: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    ) -> None:
        """How to build the Cedar context of a decided message from its payload (default: none)."""
        self._contexts[(topic, type)] = context

    async def _decided(self, message: Message) -> Message:
        """A message the rules decide goes the way of a tool call: an Intent for ``send:TOPIC/TYPE``,
        decided by Cedar, recorded, and executed (the message recorded and published) exactly once,
        now or when a reviewer approves it.

        Raises:
            ConfigError: the actuator is not a gateway, which alone can decide.
            MessageRefused: the rules refused it (``reason_code`` ``denied``).
            MessageHeld: a rule sent it to review.
        """
        gateway = self.actuator
        if not isinstance(gateway, Gateway):
            raise ConfigError("messages the rules decide need a Gateway as the system's actuator")
        operation = self._send_operation(gateway, message.topic, message.type)
        intent = gateway.intent(
            message.sender,
            operation,
            {
                "payload": message.payload,
                "recipients": list(message.recipients),
                "trace_id": message.trace_id,
            },
            causes=message.causes,
            trace_id=message.trace_id,
        )
        outcome = await gateway.submit(intent)
        if outcome.ok and isinstance(outcome.result, Message):
            return outcome.result
        if outcome.status == "review" and outcome.review is not None:
            check = self._contract_check()
            if check is not None and not self._tracked:
                self._track(gateway, _decided_kinds(check))
            self.held[intent.id] = (message.sender, message.topic, message.type)
            raise MessageHeld(message.sender, message.topic, message.type, intent.id, outcome.review.id)
        raise _refusal(message.sender, message.topic, message.type, outcome)

    def _send_operation(self, gateway: Gateway, topic: str, type: str) -> str:
        """The gateway operation that records and publishes a decided message, registered once."""
        name = f"{SEND_PREFIX}{topic}/{type}"
        if name in gateway.operations:
            return name

        def context(args: BaseModel) -> Mapping[str, Any]:
            builder = self._contexts.get((topic, type))  # read when deciding: set any time before
            return {} if builder is None or not isinstance(args, _SendArgs) else builder(args.payload)

        async def publish(
            payload: dict[str, Any],
            recipients: list[str],
            trace_id: str,
            idempotency_key: str,
            fencing_token: FencingToken,
        ) -> Message:
            # The key is the intent's own id (System.send never sets another), so the intent is
            # found by it, and a second intent cannot borrow the first one's message.
            try:
                intent = decode_entry(self.ledger.find(idempotency_key).data)
            except EntryNotFound as exc:
                raise ConfigError(f"{name} runs only for intents System.send made") from exc
            if not isinstance(intent, Intent) or intent.operation != name or intent.id != idempotency_key:
                raise ConfigError(f"{name} runs only for intents System.send made, keyed by their own id")
            found = self._message_of(intent.id)
            if found is not None:  # a replay after a crash: recorded once, published again
                await self.bus.publish(topic, found)
                return found
            check = self._contract_check()
            refused = None if check is None else check.judge(intent.agent, topic, type, payload, recipients)
            if refused is not None:  # the contract changed while it waited for review
                raise ConfigError(f"no longer within the contract ({refused.code}): {refused.detail}")
            message = Message(
                id=self.ids.new(),
                at=rfc3339(self.clock.now_ns()),
                causes=(*intent.causes, intent.id),
                sender=intent.agent,
                topic=topic,
                recipients=tuple(recipients),
                type=type,
                payload=payload,
                trace_id=trace_id,
            )
            self.unpublished += 1
            try:
                while True:
                    # The gateway checked control before this call; a stop committed since, by
                    # anyone, still keeps the message out of the ledger (the control head guard).
                    stop, guards = self._stop_for(intent.agent, topic)
                    if stop is not None:
                        why = f"{stop.action} {stop.id} by {stop.by}: {stop.reason}"
                        raise CallStopped(f"{why}; the message was not recorded")
                    try:
                        await self.ledger.append(
                            [message],
                            fence=fencing_token.epoch,
                            guards=[Guard(f"message:{intent.id}", None), *guards],
                        )
                        break
                    except Conflict as exc:
                        if exc.key == CONTROL_HEAD:
                            continue  # a stop landed after the check: judged again under it
                        found = self._message_of(intent.id)  # another process recorded it first
                        if found is None:
                            raise
                        message = found
                        break
                await self.bus.publish(topic, message)
            finally:
                self.unpublished -= 1
            return message

        gateway.register(
            name,
            publish,
            resource_class="message",
            args=_SendArgs,
            resource=lambda a: Resource("Message", f"{topic}/{type}", {"topic": topic, "type": type}),
            context=context,
            idempotent=True,
        )
        return name

    def _message_of(self, intent_id: str) -> Message | None:
        for stored in self.ledger.caused_by(intent_id):
            if stored.kind == "Message":
                found = decode_entry(stored.data)
                if isinstance(found, Message) and intent_id in found.causes:
                    return found
        return None

    async def settle_held(self) -> None:
        """Tell the senders of held messages that were denied (approved ones were delivered when
        the approval was acted on); run by :meth:`run_until_idle`. Each sender told is noted in
        the ledger (:func:`_told`), so a system started later does not tell it again; one that
        fails before the note tells it again (at least once, as the webhook)."""
        gateway = self.actuator
        if not self.held or not isinstance(gateway, Gateway):
            return
        for intent_id, (sender, topic, type_) in list(self.held.items()):
            intent = decode_entry(self.ledger.find(intent_id).data)
            if not isinstance(intent, Intent):
                continue
            outcome = gateway.recorded_outcome(intent)
            if outcome is None:
                continue
            del self.held[intent_id]
            agent = self.agents.get(sender)
            if outcome.ok or agent is None:  # delivered; or its sender lives in another system
                continue
            if self.ledger.get_note(_told(intent_id)) is not None:  # by another system first
                continue
            trace = intent.trace_id or intent.id
            try:
                await agent.on_refusal(_refusal(sender, topic, type_, outcome), Context(self, sender, trace))
            except MessageRefused as exc:  # what it said in answer met a halt: as in a handler
                if not exc.ends_handling:
                    raise
            await self._note_told(intent_id)

    async def _note_told(self, intent_id: str) -> None:
        import asyncio  # loaded already: this is a coroutine

        with contextlib.suppress(AnswerableError):  # the store away: told again by the next start
            await asyncio.to_thread(self.ledger.put_note, _told(intent_id), "1")

    def _read_held(self) -> None:
        """Messages held for review by an earlier system (a process before a restart) whose
        senders were not told their fate: those still open, and those denied since without a
        sender told (:func:`_told`), such as one denied by ``answerable deny`` while no system ran.
        ``held`` was only in memory, so a denial after a restart reached no ``on_refusal``.

        The first system to read a ledger written before senders were noted (no
        ``held:tracked`` note) counts every denial already there as told, as it was then, so an
        upgrade does not tell old news again.
        """
        gateway, check = self.actuator, self._contract_check()
        if not isinstance(gateway, Gateway) or check is None:
            return
        kinds = _decided_kinds(check)
        for intent, outcome in self._held_messages(gateway, kinds):
            if outcome is None or self.ledger.get_note(_told(intent.id)) is None:
                self.held[intent.id] = (intent.agent, *kinds[intent.operation])
        self._held_read = True

    def _held_messages(
        self, gateway: Gateway, kinds: Mapping[str, tuple[str, str]]
    ) -> Iterator[tuple[Intent, Outcome | None]]:
        """Each message ever held for review that was not delivered, with its outcome (None
        while its review is open); held ones this system knows of already are left out. First,
        see :meth:`_track`."""
        self._track(gateway, kinds)
        for stored in self.ledger.of_kind("Review"):
            review = decode_entry(stored.data)
            if not isinstance(review, Review) or review.intent_id in self.held:
                continue
            intent = decode_entry(self.ledger.find(review.intent_id).data)
            if not isinstance(intent, Intent) or intent.operation not in kinds:
                continue
            outcome = gateway.recorded_outcome(intent)
            if outcome is None or not outcome.ok:
                yield intent, outcome

    def _track(self, gateway: Gateway, kinds: Mapping[str, tuple[str, str]]) -> None:
        """Make sure the ledger notes senders told (the ``held:tracked`` note), before this
        system holds a message or reads those held. In a ledger an earlier version wrote, every
        held message already refused was told then (or lost then), so each is noted as told
        first: an upgrade tells no old news. Every held message after the note is this version's."""
        if self._tracked:
            return
        if self.ledger.get_note(_TRACKED) is None:
            self._tracked = True  # the walk below must not start this again
            try:
                for intent, outcome in self._held_messages(gateway, kinds):
                    if outcome is not None:
                        self.ledger.put_note(_told(intent.id), "1")
                self.ledger.put_note(_TRACKED, "1")
            except BaseException:
                self._tracked = False
                raise
        self._tracked = True

    async def run_until_idle(self) -> None:
        """Deliver until no agent has anything left to say, then let the watcher catch up.

        With messages waiting for review, answers given anywhere (``answerable approve`` in
        another process) are acted on first: an approved message is delivered now."""
        if not self._held_read:
            self._read_held()
        if self.held and isinstance(self.actuator, Gateway):
            await self.actuator.settle_reviews()
        await self.settle_held()
        await self.bus.drain()
        if self.watcher is not None:
            await self.watcher.poll()


def _decided_kinds(check: ContractCheck) -> dict[str, tuple[str, str]]:
    """The operation of each message type the rules decide -> (topic, type)."""
    return {
        f"{SEND_PREFIX}{c.topic}/{k.type}": (c.topic, k.type)
        for c in check.contract.channels
        for k in c.messages
        if k.decide
    }


_TRACKED = "held:tracked"
"""The ledger note that senders of denied held messages are noted when told (see :func:`_told`)."""


def _told(intent_id: str) -> str:
    """The ledger note that the sender of the held message of ``intent_id`` was told it was
    refused: a system started later, in this process or another, does not tell it again."""
    return f"held:told:{intent_id}"


class _SendArgs(BaseModel):
    """The arguments of a decided message's intent: exactly what will be recorded and published."""

    model_config = ConfigDict(extra="forbid")

    payload: dict[str, Any]
    recipients: list[str]
    trace_id: str


def _refusal(sender: str, topic: str, type: str, outcome: Outcome) -> MessageRefused:
    """A decided message that will not be delivered, naming the entry that refused it."""
    evidence = outcome.approval or outcome.execution or outcome.decision
    by = (
        f"its execution ({outcome.execution.error})"
        if outcome.execution is not None and outcome.execution.error and outcome.status != "denied"
        else f"a reviewer ({outcome.approval.by}: {outcome.approval.reason})"
        if outcome.approval is not None
        else f"a stop ({outcome.decision.stop})"
        if outcome.decision is not None and outcome.decision.stop is not None
        else f"the rules ({', '.join(outcome.decision.policy_ids) or 'no rule permits it'})"
        if outcome.decision is not None
        else "the gateway"
    )
    return MessageRefused(
        sender,
        topic,
        type,
        "denied" if outcome.status in ("denied", "review") else outcome.status,
        f"refused by {by}",
        evidence.id if evidence is not None else outcome.intent.id,
    )
