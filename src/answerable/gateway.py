"""The action gateway: the one place that holds credentials and calls out to the world.

For every intent, in this order: validate it into the exact canonical arguments that will be
recorded and run, check control, decide under the approved rules, commit Intent, Decision and
(when allowed) the Claim in one durable transaction, check control again against the ledger,
execute with the intent's idempotency key and the lease's fencing token, commit the Execution.

What makes this hold across processes lives in the ledger store, not in this object: one
active gateway per ledger holds the lease and fences every append with its epoch; a claim per
intent is a guarded head the store lets through once; a review's state is a fold over its
entries, each change guarded by the review's head. So a second gateway, a CLI answering from
another shell, a restart or a standby taking over after kill -9 all see the same truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from answerable._canonical import canonical_bytes
from answerable._locks import KeyedLocks
from answerable._text import exception_text, message_of, recordable
from answerable._turns import PerTurn
from answerable.charter import CharterHistory, charter_of
from answerable.clock import Clock, IdSource, SystemClock, on_the_calendar, rfc3339
from answerable.contract import check_contract
from answerable.control import Controller, ControlState
from answerable.errors import (
    AnswerableError,
    ArgumentsInvalid,
    CallStopped,
    ConfigError,
    Conflict,
    EntryNotFound,
    IdempotencyConflict,
    LeaseLost,
    LedgerError,
    RecordInvalid,
    RequestBuildFailed,
    StoreUnavailable,
    TransientError,
    UnknownAgent,
    UnknownOperation,
)
from answerable.keys import KeyPair
from answerable.lease import Lease
from answerable.ledger.base import Guard, LedgerStore
from answerable.operations import (
    FencingToken,
    Operation,
    Resource,
    args_model,
    canonical_arguments,
    cedar_inputs_simple,
    http_operation,
    invoke,
)
from answerable.policy import CedarRequest, ReviewTerms, Ruleset, Verdict, decide_many, load_ruleset
from answerable.records import (
    Approval,
    Authority,
    Claim,
    Control,
    Decision,
    Execution,
    Intent,
    Review,
    ReviewClosed,
    RulesetVersion,
    Scope,
    SystemCharter,
    assembled,
    decode_entry,
    digest,
    is_id,
    is_name,
    is_rfc3339_in_range,
    problems,
    validated,
    vouched_simple,
    whole_fields,
)
from answerable.review import ReviewQueue, ReviewState, binding_of, review_key
from answerable.signing import verify_charter, verify_ruleset

__all__ = ["Gateway", "Operation", "Outcome", "Resource", "claim_key", "http_operation", "invoke", "key_head"]

SEND_PREFIX = "send:"
"""Operations named ``send:TOPIC/TYPE`` record and publish a message the rules decided (the
runtime registers them); a pause of the channel ``TOPIC`` stops them as it stops the message."""


_T = TypeVar("_T")
_Made = TypeVar("_Made", bound=BaseModel)

GATEWAY_IDENTITY = "answerable.gateway"
"""Who the gateway says it is when it pauses an operation on its own (an ambiguous crash)."""


def claim_key(intent_id: str) -> str:
    """The guarded head of an intent's claims: the store lets one claim through per head value."""
    return f"claim:{intent_id}"


def key_head(agent: str, idempotency_key: str) -> str:
    """The guarded head of an agent's idempotency key: the store lets one intent through per key.

    A digest, so that any key (a NUL, a colon, 128 characters) makes a head every store can hold,
    and an agent's name cannot run into its key."""
    named = f"{len(agent)}:{agent}:{idempotency_key}".encode("utf-8", "surrogatepass")
    return f"key:{hashlib.sha256(named).hexdigest()}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one intent."""

    status: Literal["succeeded", "failed", "denied", "review", "not_executed", "ambiguous"]
    intent: Intent
    decision: Decision | None
    """None only from an actuator that decides nothing (the ungoverned baseline)."""
    execution: Execution | None = None
    result: Any = None
    review: Review | None = None
    approval: Approval | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


Fault = Callable[[str, Intent], None]
"""A hook for crash tests, called at the named points of the call path: ``"before_record"``
(before the Intent is committed), ``"recorded"`` (after it), ``"claimed"`` (after the Claim,
before the call), ``"executed"`` (after the call returned, before its Execution is recorded)
and ``"finished"`` (after the Execution)."""


@dataclass(frozen=True, slots=True)
class _Open:
    """An intent whose claim belongs to a dead epoch (or, in a ledger from before claims, an
    allowed intent with no Execution): what a crash or a takeover left behind."""

    intent: Intent
    decision: Decision
    claim: Claim | None
    claim_index: int | None
    approvals: tuple[Approval, ...]
    expiry: ReviewClosed | None


class Gateway:
    """Governs every call to a registered operation; see the module docstring for the sequence.

    Args:
        standby: when another live gateway holds the ledger's lease, wait and take over once its
            heartbeat stops for ``lease_ttl`` seconds, instead of refusing with LeaseHeld.
        lease_ttl: seconds of silence after which a holder counts as dead.
    """

    def __init__(
        self,
        ledger: LedgerStore,
        *,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        fault: Fault | None = None,
        standby: bool = False,
        lease_ttl: float = 10.0,
        holder: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not callable(getattr(ledger, "append", None)):  # a path given for it failed later, AttributeError
            raise ConfigError(
                f"a Gateway governs a ledger (open_ledger(...) makes one), not a {type(ledger).__name__}"
            )
        self.ledger = ledger
        self.clock = clock or SystemClock()
        self.ids = ids or IdSource(self.clock)
        self.charters = CharterHistory()
        """One fold of the charter chain by position, shared by control and review."""
        self.control = Controller(ledger, clock=self.clock, ids=self.ids, charters=self.charters)
        self.reviews = ReviewQueue(ledger, clock=self.clock, ids=self.ids, charters=self.charters)
        self.lease = Lease(ledger, ttl=lease_ttl, holder=holder, monotonic=monotonic)
        self._standby = standby
        self._settled: set[str] = set()
        """Reviews that are final in the ledger (claimed, denied, closed with deny): a cache that
        only grows with the log, never a second source of truth."""
        self._review_locks: KeyedLocks[str] = KeyedLocks()
        self._key_locks: KeyedLocks[str] = KeyedLocks()
        self._recovery_claims: dict[str, Claim] = {}
        """Recovery claims written by the reconcile running now, until it settles their intents."""
        self._held_back: tuple[ControlState, frozenset[str]] | None = None
        """The intents the last reconcile left open for a stop, and the control state then."""
        self._operations: dict[str, Operation] = {}
        self._fault = fault
        self._on_install: list[Callable[[SystemCharter], None]] = []
        self._decide: PerTurn[tuple[CedarRequest, Ruleset], tuple[Verdict, ControlState]] = PerTurn(
            self._judge_turn
        )
        """Cedar decisions of the intents submitted in one loop turn, made in one call per ruleset,
        and the control state read once for all of them."""
        self._agent_names: tuple[SystemCharter | None, frozenset[str]] = (None, frozenset())
        self._charter: SystemCharter | None = None
        self._ruleset: Ruleset | None = None
        self._ruleset_record: RulesetVersion | None = None

    # --- the lease ------------------------------------------------------------------------------

    async def acquire(self, *, standby: bool | None = None, wait_seconds: float | None = None) -> int:
        """Become the ledger's active gateway; returns the lease epoch.

        Raises:
            LeaseHeld: another live gateway holds the lease (and this one is not a standby, or
                ``wait_seconds`` ran out).
        """
        if self.lease.held:
            return self.lease.epoch
        wait = self._standby if standby is None else standby
        return await asyncio.to_thread(self.lease.acquire, standby=wait, timeout=wait_seconds)

    async def start(self, *, standby: bool | None = None, wait_seconds: float | None = None) -> list[Outcome]:
        """Take the lease (or wait for it), load charter and rules from the ledger, reconcile."""
        await self.acquire(standby=standby, wait_seconds=wait_seconds)
        await self.resume_from_ledger()
        return await self.reconcile()

    def close(self) -> None:
        """Give up the lease so that a successor takes over at once."""
        self.lease.release()

    # --- set-up ---------------------------------------------------------------------------------

    async def install(self, charter: SystemCharter, ruleset: RulesetVersion) -> None:
        """Put the signed charter and ruleset in force, recording them if the ledger lacks them.

        Takes the lease first if this gateway does not hold it yet.

        Raises:
            SignatureInvalid, NotAuthorized: the charter or ruleset is not signed by the RI.
            PolicyInvalid: the ruleset does not parse or validate.
            ConfigError: the charter's coordination contract names an unknown agent or holds a
                schema that cannot judge a payload.
            LeaseHeld: another gateway is active on this ledger.
        """
        if not isinstance(charter, SystemCharter) or not isinstance(ruleset, RulesetVersion):
            raise ConfigError(
                "install takes a signed SystemCharter and RulesetVersion (new_charter and new_ruleset "
                f"make them), not a {type(charter).__name__} and a {type(ruleset).__name__}"
            )
        epoch = await self.acquire()
        try:
            in_force: SystemCharter | None = charter_of(self.ledger)
        except ConfigError:
            in_force = None
        if in_force is None or in_force.id != charter.id:
            # The charter in force was verified along its chain; a new one must extend it.
            verify_charter(charter, in_force)
        verify_ruleset(ruleset, charter)
        if charter.coordination is not None:  # signed elsewhere, perhaps: a bad schema is refused here
            check_contract(charter.coordination, charter.agent_names())
        parsed = load_ruleset(ruleset.policies, ruleset.schema_text)
        if parsed.ruleset_hash != ruleset.ruleset_hash or parsed.schema_hash != ruleset.schema_hash:
            raise ConfigError(f"ruleset v{ruleset.version}: its recorded hashes do not match its text")
        self._not_replaced(ruleset, charter)
        missing = [r for r in (charter, ruleset) if not _has(self.ledger, r.id)]
        if missing:
            await self.ledger.append(missing, fence=epoch)
        self._charter, self._ruleset, self._ruleset_record = charter, parsed, ruleset
        for hook in self._on_install:
            hook(charter)

    def _not_replaced(self, ruleset: RulesetVersion, charter: SystemCharter) -> None:
        """Refuse a ruleset the ledger records a later one after: the RI replaced it, and a
        replica or a restart still holding its old file would put a revoked rule back in force
        without a word in the ledger. A rule comes back only signed again, as a new version.

        Raises:
            ConfigError: a later ruleset signed by the charter's RI is recorded after it.
        """
        try:
            at = self.ledger.find(ruleset.id).index
        except EntryNotFound:
            return  # new to this ledger: recorded now, so it is the latest
        later = next(self._signed_rulesets(charter, after=at), None)
        if later is not None:
            raise ConfigError(
                f"ruleset v{ruleset.version} ({ruleset.id}) was replaced in this ledger by "
                f"v{later.version} ({later.id}), which the RI signed after it; to put its rules back "
                "in force, have the RI sign them again as a new version"
            )

    def _signed_rulesets(self, charter: SystemCharter, *, after: int = -1) -> Iterator[RulesetVersion]:
        """The rulesets recorded after index ``after`` that the charter's RI signed, in order;
        one signed by anyone else never took effect."""
        for stored in self.ledger.of_kind("RulesetVersion", after=after):
            ruleset = decode_entry(stored.data)
            if not isinstance(ruleset, RulesetVersion):
                continue
            try:
                verify_ruleset(ruleset, charter)
            except AnswerableError:
                continue
            yield ruleset

    async def resume_from_ledger(self) -> None:
        """Load the charter and the last ruleset its RI signed from the ledger (a restart)."""
        await self.acquire()
        charter = charter_of(self.ledger)
        signed = list(self._signed_rulesets(charter))
        if not signed:
            raise ConfigError(
                f"ledger {self.ledger.origin} has no RulesetVersion signed by the RI {charter.ri}"
            )
        await self.install(charter, signed[-1])

    def on_install(self, hook: Callable[[SystemCharter], None]) -> None:
        """Call ``hook`` with each charter put in force from now on (and the one in force now):
        what registers operations a charter implies does it here, before a start's reconcile
        needs them."""
        self._on_install.append(hook)
        if self._charter is not None:
            hook(self._charter)

    def register(
        self,
        name: str,
        call: Callable[..., Any],
        *,
        resource_class: str,
        args: type[BaseModel] | None = None,
        resource: Callable[[BaseModel], Resource] | None = None,
        context: Callable[[BaseModel], Mapping[str, Any]] | None = None,
        idempotent: bool = False,
        fenced: bool = False,
        lookup: Callable[[str], Awaitable[Any | None]] | None = None,
    ) -> Operation:
        """Register an operation; its argument schema comes from ``args`` or from ``call``'s signature.

        ``call`` receives ``idempotency_key`` and ``fencing_token`` (a FencingToken) when its
        signature names them, and so does ``lookup``. ``fenced``: the partner refuses stale
        fencing tokens; after a crash, a lookup that carries the new token and finds nothing is
        then proof that the old call never landed and never will, so the call is made again.
        """
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ConfigError(f"an operation is named by text without spaces, not {name!r}")
        if name in self._operations:
            raise ConfigError(f"operation {name!r} is already registered")
        if not callable(call):
            raise ConfigError(f"operation {name!r}: call is a function, not a {type(call).__name__}")
        if lookup is not None and not callable(lookup):
            raise ConfigError(f"operation {name!r}: lookup is a function, not a {type(lookup).__name__}")
        if args is not None and not (isinstance(args, type) and issubclass(args, BaseModel)):
            raise ConfigError(f"operation {name!r}: args is a pydantic model class, not {args!r}")
        parameters = inspect.signature(call).parameters
        op = Operation(
            name=name,
            resource_class=resource_class,
            args=args or args_model(name, call),
            call=call,
            resource=resource or (lambda _a: Resource("Resource", name, {"class": resource_class})),
            context=context or (lambda _a: {}),
            idempotent=idempotent,
            lookup=lookup,
            wants_key="idempotency_key" in parameters,
            fenced=fenced,
            wants_token="fencing_token" in parameters,
            lookup_wants_token=lookup is not None and "fencing_token" in inspect.signature(lookup).parameters,
        )
        self._operations[name] = op
        return op

    @property
    def operations(self) -> Mapping[str, Operation]:
        return self._operations

    def has_charter(self) -> bool:
        """Whether a charter is in force (a baseline without rules never has one)."""
        return self._charter is not None

    @property
    def charter(self) -> SystemCharter:
        if self._charter is None:
            raise ConfigError("the gateway has no charter: call install() or resume_from_ledger() first")
        return self._charter

    def _rules(self) -> tuple[Ruleset, RulesetVersion]:
        if self._ruleset is None or self._ruleset_record is None:
            raise ConfigError("the gateway has no ruleset: call install() or resume_from_ledger() first")
        return self._ruleset, self._ruleset_record

    # --- the governed call ----------------------------------------------------------------------

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
    ) -> Intent:
        """Build an Intent stamped with this gateway's clock and ids.

        ``on_behalf_of`` names the person who asked the agent for this, if one did; with
        separation of duties in the charter, they may not approve it themselves.
        """
        if not isinstance(arguments, Mapping):  # dict() would take a list of pairs, or fail oddly
            raise RecordInvalid(
                f"intent: the arguments are a JSON object (a mapping), not a {type(arguments).__name__}",
                record="Intent",
            )
        intent_id = self.ids.new()
        given = dict(arguments)
        values = {
            "id": intent_id,
            "at": rfc3339(self.clock.now_ns()),
            "causes": causes,
            "kind": "Intent",
            "agent": agent,
            "operation": operation,
            "arguments": given,
            "idempotency_key": intent_id if idempotency_key is None else idempotency_key,
            "trace_id": trace_id,
            "on_behalf_of": on_behalf_of,
        }
        # The common intent, checked field by field as validation would; any other is validated.
        if (
            is_id(intent_id)
            and is_rfc3339_in_range(values["at"])
            and type(causes) is tuple
            and not causes
            and is_name(agent)
            and is_name(operation)
            and all(type(k) is str for k in given)
            and (idempotency_key is None or is_id(idempotency_key))
            and (trace_id is None or is_id(trace_id))
            and (on_behalf_of is None or is_name(on_behalf_of))
        ):
            return assembled(Intent, values)
        try:
            return validated(Intent, values)
        except ValidationError as exc:
            raise RecordInvalid(f"intent: {'; '.join(problems(exc, 'intent'))}", record="Intent") from exc

    async def submit(self, intent: Intent) -> Outcome:
        """Govern one intent end to end.

        An idempotency key names one request of its agent. An intent whose key an earlier intent
        of the agent used, for the same operation and arguments, is that request again: nothing
        is recorded or called, and the earlier intent's outcome comes back (with no ``result``:
        the ledger keeps its digest). The store holds the key (a guarded head), so this holds
        across restarts and processes. An intent keyed by its own id (the default) has no head:
        submitted again, the same Intent meets itself in the ledger, as a key does.

        Raises:
            UnknownAgent, UnknownOperation, ArgumentsInvalid: before anything is recorded.
            RecordInvalid: an intent built by hand with a time the calendar lacks, or a cause
                the ledger does not hold; nothing is recorded.
            IdempotencyConflict: the key was used by an earlier intent of the agent with another
                operation or other arguments, or that intent has no outcome yet; nothing is
                recorded.
            LeaseLost: this gateway was deposed; nothing was recorded or called.
        """
        if not isinstance(intent, Intent):  # made by Gateway.intent, which checks what it is given
            raise RecordInvalid(
                f"submit takes an Intent (Gateway.intent makes one), not a {type(intent).__name__}",
                record="Intent",
            )
        charter = self.charter
        epoch = self.lease.epoch
        if intent.agent not in self._agents(charter):
            raise UnknownAgent(intent.agent)
        op = self._operations.get(intent.operation)
        if op is None:
            raise UnknownOperation(intent.operation, tuple(sorted(self._operations)))
        self._recordable(intent)
        intent, args = _canonical_intent(op, intent)
        # An intent keyed by its own id (nearly always) has no head: no other intent has its id.
        head = None if intent.idempotency_key == intent.id else key_head(intent.agent, intent.idempotency_key)
        # A second caller of one key in this process waits here and meets the first's outcome.
        async with contextlib.nullcontext() if head is None else self._key_locks.hold(head):
            if head is not None:
                met = self._keyed(head, intent)
                if met is not None:
                    return met
            try:
                recorded = await self._record(
                    op, intent, args, epoch, () if head is None else (Guard(head, None),)
                )
            except (Conflict, RecordInvalid) as exc:
                met = self._recorded_first(exc, head, intent)
                if met is None:
                    raise
                return met
            if isinstance(recorded, Outcome):
                return recorded
            return await self._execute(op, intent, recorded[0], args, recorded[1], recovered=False)

    def _recorded_first(self, exc: AnswerableError, head: str | None, intent: Intent) -> Outcome | None:
        """The outcome ``intent`` meets when recording it failed because its request is recorded
        already (another process took its key first, or this very Intent was submitted before);
        None when ``exc`` is about something else."""
        if head is not None:
            return self._keyed(head, intent) if isinstance(exc, Conflict) and exc.key == head else None
        earlier = self._recorded_intent(intent.id)  # its claim's head or its id was taken
        return None if earlier is None else self._met(earlier, intent)

    async def _record(
        self, op: Operation, intent: Intent, args: BaseModel, epoch: int, keyed: tuple[Guard, ...]
    ) -> Outcome | tuple[Decision, Claim]:
        """Decide a checked intent and record it (``keyed``: its key's guard): its outcome when it
        is denied or held for review, else its Decision and the Claim to run it under. Only the
        append of the intent raises here, so a Conflict or a taken id is about the intent."""
        request, verdict, state, simple = await self._judge(op, intent, args)
        decision = self._decision(op, intent, request, verdict, state, simple=simple)
        self._at("before_record", intent)
        if decision.effect == "review":
            review = self._review(intent, decision, verdict)
            await self.ledger.append(
                [intent, decision, review], fence=epoch, guards=[Guard(review_key(review.id), None), *keyed]
            )
            self._at("recorded", intent)
            return Outcome("review", intent, decision, review=review)
        if decision.effect == "deny":
            await self.ledger.append([intent, decision], fence=epoch, guards=keyed)
            self._at("recorded", intent)
            return Outcome("denied", intent, decision)
        # Made in the instant the decision was: one clock reading serves both.
        claim = self._claim(intent, epoch, "policy", (intent.id, decision.id), at=decision.at)
        await self.ledger.append(
            [intent, decision, claim], fence=epoch, guards=[Guard(claim_key(intent.id), None), *keyed]
        )
        self._at("recorded", intent)
        self._at("claimed", intent)
        return decision, claim

    def _keyed(self, head: str, intent: Intent) -> Outcome | None:
        """The outcome of the earlier intent that used ``intent``'s key, if one did.

        Raises:
            IdempotencyConflict: it was for another operation or other arguments, or it has no
                outcome in the ledger yet.
        """
        index = self.ledger.head(head)
        if index is None:
            return None
        last = decode_entry(self.ledger.entry(index).data)  # the last entry of the earlier intent's append
        if not isinstance(last, Decision | Claim | Review):
            raise LedgerError(f"the head of an idempotency key points at a {type(last).__name__}")
        return self._met(_entry(self.ledger, last.intent_id, Intent), intent)

    def _met(self, earlier: Intent, intent: Intent) -> Outcome:
        """``intent`` met ``earlier``, recorded under its key: the same request, whose outcome
        comes back, unless it asks for something else or has no outcome yet.

        Raises:
            IdempotencyConflict: another operation or other arguments, or no outcome yet.
        """
        agent, key = intent.agent, intent.idempotency_key
        # A key's head is its agent's; an id reused by hand may be anyone's.
        same = (earlier.agent, earlier.idempotency_key, earlier.operation) == (agent, key, intent.operation)
        if not same or not _same_json(earlier.arguments, intent.arguments):
            raise IdempotencyConflict(agent, key, earlier.id, "idempotency_conflict")
        found = self._outcome_now(earlier)
        if found is None:
            raise IdempotencyConflict(agent, key, earlier.id, "idempotency_in_flight")
        return found

    def _recorded_intent(self, intent_id: str) -> Intent | None:
        """The Intent the ledger holds under this id, if it holds one."""
        try:
            found = decode_entry(self.ledger.find(intent_id).data)
        except EntryNotFound:
            return None
        return found if isinstance(found, Intent) else None

    def _recordable(self, intent: Intent) -> None:
        """Refuse an intent built by hand (not by :meth:`intent`) that would record a time the
        calendar lacks, or cite what the ledger does not hold: the service refused both; the
        library recorded them, and a report of the ledger then failed on the date."""
        if not on_the_calendar(intent.at):
            raise RecordInvalid(f"intent {intent.id}: its time {intent.at!r} is no time", record="Intent")
        missing = self.ledger.unknown(intent.causes) if intent.causes else ()
        if missing:  # an intent cites what is in the ledger, nothing else
            raise RecordInvalid(
                f"intent {intent.id}: cause {missing[0]!r} is no entry of the ledger", record="Intent"
            )

    def _stop_for(
        self,
        op: Operation,
        intent: Intent,
        request: Mapping[str, Any],
        entities: Sequence[Mapping[str, Any]],
        state: ControlState | None = None,
    ) -> Control | None:
        """The stop that applies to this intent (its agent, operation, operation class or its
        resource's class) in ``state``, by default the state in force now, read from the ledger;
        None when it may run."""
        state = state if state is not None else self.control.state()
        if not state.stops:  # nearly always: nothing to match the action against
            return None
        topic = (
            op.name.removeprefix(SEND_PREFIX).rpartition("/")[0] if op.name.startswith(SEND_PREFIX) else None
        )
        return state.blocking(
            agent=intent.agent,
            operation=op.name,
            resource_class=op.resource_class,
            resource_classes=_resource_classes(request, entities),
            channel=topic,
        )

    async def _record_execution(self, execution: Execution, claim: Claim) -> None:
        """Append what became of a claimed call, again after a store error (with back-off),
        until it lands or the claim's lease is lost. Given up after one error, the claim stayed
        open for this process's life (its reconcile leaves its own epoch's claims alone): the
        key answered ``idempotency_in_flight``, and the next epoch judged a call this process
        knew the outcome of to be ambiguous. A store that never comes back holds the caller here,
        as it holds the lease's heartbeat; losing the lease ends it with LeaseLost."""
        delay = 0.05
        while True:
            try:
                await self.ledger.append([execution], fence=claim.epoch)
                return
            except RecordInvalid:
                if not _has(self.ledger, execution.id):  # stored by the try whose answer was lost
                    raise
                return
            except LedgerError as exc:
                if type(exc) is not LedgerError and not isinstance(exc, StoreUnavailable):
                    raise  # LeaseLost, a tampered ledger: no retry changes them
                self._still_holding(claim)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _still_holding(self, claim: Claim) -> None:
        """Refuse to call out unless the lease held now is the one the claim was made under.

        The partner's fencing is the guard that holds; this spares it a call that must fail.
        """
        if not self.lease.held or self.lease.epoch != claim.epoch:
            raise self.lease.lost_error() if not self.lease.held else LeaseLost(claim.epoch, self.lease.epoch)

    def _agents(self, charter: SystemCharter) -> frozenset[str]:
        """The charter's agent names, computed once per charter, not once per intent."""
        if self._agent_names[0] is not charter:
            self._agent_names = (charter, charter.agent_names())
        return self._agent_names[1]

    def _at(self, point: str, intent: Intent) -> None:
        if self._fault is not None:
            self._fault(point, intent)

    def _claim(
        self,
        intent: Intent,
        epoch: int,
        via: str,
        causes: tuple[str, ...],
        *,
        at: str | None = None,
        takes_over: str | None = None,
    ) -> Claim:
        holder = self.lease.holder
        values = {
            "id": self.ids.new(),
            "at": at or rfc3339(self.clock.now_ns()),
            "causes": causes,
            "kind": "Claim",
            "intent_id": intent.id,
            "epoch": epoch,
            "holder": holder,
            "via": via,
            "takes_over": takes_over,
        }
        # The causes are the intent's id and records' ids, the epoch the store's, the way the
        # gateway's own; the holder was given to it. Anything else is validated.
        sure = _new_parts(values, intent) and is_name(holder) and (takes_over is None or is_id(takes_over))
        return assembled(Claim, values) if sure else _validated(Claim, values)

    async def _judge(
        self, op: Operation, intent: Intent, args: BaseModel
    ) -> tuple[CedarRequest, Verdict, ControlState, bool]:
        """The Cedar request, its verdict, the control state in force when it was decided, and
        whether the request's context and attributes are simple JSON (``cedar_inputs_simple``)."""
        ruleset, _ = self._rules()
        try:
            res, context, simple = cedar_inputs_simple(op, args)
        except RequestBuildFailed as exc:  # a broken builder denies, recorded with the error
            empty = CedarRequest(("Agent", intent.agent), op.name, ("Resource", op.name), {}, ())
            why = recordable(f"building the Cedar request for {op.name} failed: {exc.reason}")
            return empty, Verdict("deny", (), (why,)), self.control.state(), False
        entities = (
            {"uid": {"type": "Agent", "id": intent.agent}, "attrs": {}, "parents": []},
            {"uid": {"type": res.type, "id": res.id}, "attrs": dict(res.attrs), "parents": []},
        )
        request = CedarRequest(("Agent", intent.agent), op.name, (res.type, res.id), context, entities)
        verdict, state = await self._decide((request, ruleset))
        return request, verdict, state, simple

    def _judge_turn(
        self, items: Sequence[tuple[CedarRequest, Ruleset]]
    ) -> list[tuple[Verdict, ControlState]]:
        """The decisions of one loop turn's intents, and the control state read once for all of
        them, after Cedar: as fresh for each as a read of its own at that moment."""
        verdicts = _decide_all(items)
        state = self.control.state()
        return [(verdict, state) for verdict in verdicts]

    def _decision(
        self,
        op: Operation,
        intent: Intent,
        request: CedarRequest,
        verdict: Verdict,
        state: ControlState,
        *,
        simple: bool = False,
    ) -> Decision:
        """The Decision on an intent: Cedar's verdict, unless a stop in ``state`` applies to it.
        ``simple``: the request's context and attributes are simple JSON, walked already
        (``cedar_inputs_simple``); the Decision is then vouched for and assembled, not validated."""
        ruleset, record = self._rules()
        recorded = request.to_json()
        stop = self._stop_for(op, intent, recorded, request.entities, state)
        effect, errors = verdict.effect, verdict.errors
        if stop is not None:
            effect = "deny"
            errors = (*errors, f"{stop.action} in force on {stop.scope.label()} by {stop.by}: {stop.reason}")
        values = {
            "id": self.ids.new(),
            "at": rfc3339(self.clock.now_ns()),
            "causes": (intent.id,) if stop is None else (intent.id, stop.id),
            "kind": "Decision",
            "intent_id": intent.id,
            "effect": effect,
            "policy_ids": verdict.policy_ids,
            "ruleset_id": record.id,
            "ruleset_hash": ruleset.ruleset_hash,
            "schema_hash": ruleset.schema_hash,
            "request": recorded,
            "entities": request.entities,
            "errors": errors,
            "control_id": None if stop is None else stop.id,
        }
        # The request and entities are simple JSON the gateway built (a tuple of dicts of text
        # keys); the verdict and errors its own, the rest records' ids and hashes.
        if not (simple and _new_parts(values, intent)):
            return _validated(Decision, values)
        return vouched_simple(assembled(Decision, values))

    async def _execute(
        self,
        op: Operation,
        intent: Intent,
        decision: Decision,
        args: BaseModel,
        claim: Claim,
        *,
        recovered: bool,
        approvals: tuple[Approval, ...] = (),
        expiry: ReviewClosed | None = None,
    ) -> Outcome:
        """Check control immediately before the call (read now: a stop committed by anyone after
        the claim still stops it), call, record the Execution."""
        approval = approvals[-1] if approvals else None
        stop = self._stop_for(op, intent, decision.request, decision.entities)
        if stop is not None and recovered:
            # Whether the crashed call happened is not known yet: record nothing, so the claim
            # stays open and is reconciled again (by a later epoch) once the stop is lifted.
            return Outcome("not_executed", intent, decision, approval=approval)
        if stop is not None:
            return await self._stopped(op, intent, decision, claim, stop, recovered, approvals, expiry)
        self._still_holding(claim)
        token = FencingToken(claim.epoch, intent.idempotency_key)
        # Latency is read from the injected clock like every other time, so a replayed run with a
        # fake clock produces the same bytes; with the system clock it is the real latency.
        started = self.clock.now_ns()
        attempts = 0
        while True:
            attempts += 1
            try:
                result = await invoke(op, args, intent.idempotency_key, token)
                break
            except TransientError as exc:
                failure: Exception = exc
                # A lost answer is not a refusal: the effect may have happened. Say so.
                status: Literal["failed", "ambiguous"] = "ambiguous"
                # Safe to try again only where the world deduplicates by key, and only while
                # nothing was stopped and the lease is still this claim's: a retry is a new call.
                if op.idempotent and attempts <= op.retries:
                    self._still_holding(claim)
                    halted = self._stop_for(op, intent, decision.request, decision.entities)
                    if halted is None:
                        continue
                    came = f"{halted.action} {halted.id} by {halted.by} came first"
                    failure = TransientError(f"{message_of(exc)}; not retried: {came}")
            except CallStopped as exc:  # it found a stop and did nothing: the stop it names, if any
                stop = self._stop_for(op, intent, decision.request, decision.entities)
                if stop is not None:
                    stopped = (op, intent, decision, claim, stop, recovered, approvals, expiry)
                    return await self._stopped(*stopped)
                failure, status = exc, "failed"
            except Exception as exc:  # the world said no: a value to record, not a crash
                failure, status = exc, "failed"
            execution = self._execution(
                op.name,
                intent,
                decision,
                claim,
                status,
                error=exception_text(failure),
                latency_us=(self.clock.now_ns() - started) // 1000,
                recovered=recovered,
                approvals=approvals,
                expiry=expiry,
                attempts=attempts,
            )
            await self._record_execution(execution, claim)
            self._at("finished", intent)
            return Outcome(status, intent, decision, execution, approval=approval)
        latency = (self.clock.now_ns() - started) // 1000
        self._at("executed", intent)
        execution = self._execution(
            op.name,
            intent,
            decision,
            claim,
            "succeeded",
            response=result,
            latency_us=latency,
            recovered=recovered,
            approvals=approvals,
            expiry=expiry,
            attempts=attempts,
        )
        await self._record_execution(execution, claim)
        self._at("finished", intent)
        return Outcome("succeeded", intent, decision, execution, result, approval=approval)

    async def _stopped(
        self,
        op: Operation,
        intent: Intent,
        decision: Decision,
        claim: Claim,
        stop: Control,
        recovered: bool,
        approvals: tuple[Approval, ...],
        expiry: ReviewClosed | None,
    ) -> Outcome:
        """Record a claimed call that a stop kept from acting as ``not_executed``, citing the stop."""
        execution = self._execution(
            op.name,
            intent,
            decision,
            claim,
            "not_executed",
            error=f"{stop.action} {stop.id} by {stop.by}: {stop.reason}",
            causes=(stop.id,),
            recovered=recovered,
            approvals=approvals,
            expiry=expiry,
        )
        await self._record_execution(execution, claim)
        self._at("finished", intent)
        approval = approvals[-1] if approvals else None
        return Outcome("not_executed", intent, decision, execution, approval=approval)

    def _execution(
        self,
        operation: str,
        intent: Intent,
        decision: Decision,
        claim: Claim | None,
        status: Literal["succeeded", "failed", "not_executed", "ambiguous"],
        *,
        response: Any = None,
        error: str | None = None,
        latency_us: int = 0,
        causes: tuple[str, ...] = (),
        recovered: bool = False,
        approvals: tuple[Approval, ...] = (),
        attempts: int = 1,
        expiry: ReviewClosed | None = None,
    ) -> Execution:
        if claim is not None:
            causes = (claim.id, *causes)
        via: Literal["policy", "approval", "expiry"]
        ids: tuple[str, ...]
        if expiry is not None:
            via, ids = "expiry", (expiry.id,)
        elif not approvals:
            via, ids = "policy", decision.policy_ids
        else:
            via, ids = "approval", tuple(a.id for a in approvals)
        authority = {
            "responsible": self.charter.ri,
            "via": via,
            "ids": ids,
            "ruleset_hash": decision.ruleset_hash,
        }
        # A policy's ids name rules, not entries: only approvals and an expiry are causes.
        cited = ids if via != "policy" else ()
        values: dict[str, Any] = {
            "id": self.ids.new(),
            "at": rfc3339(self.clock.now_ns()),
            "causes": (intent.id, decision.id, *cited, *causes),
            "kind": "Execution",
            "intent_id": intent.id,
            "decision_id": decision.id,
            "operation": operation,
            "status": status,
            "authority": authority,
            "response_digest": _response_digest(response) if status == "succeeded" else None,
            # The wall clock steps back at times (NTP, a resumed VM): a call that took
            # negative time took none, and its Execution must still be recorded.
            "latency_us": max(latency_us, 0),
            "error": None if error is None else recordable(error),
            "recovered": recovered,
            "attempts": attempts,
        }
        # The causes and the authority are records' ids, hashes and names, the status, attempts
        # and error the gateway's own; an operation's name is its registrant's, and the latency
        # the clock's. Anything else is validated.
        sure = _new_parts(values, intent) and is_name(operation) and type(values["latency_us"]) is int
        if not sure:
            return _validated(Execution, values)
        values["authority"] = assembled(Authority, authority)
        return assembled(Execution, values)

    # --- review ---------------------------------------------------------------------------------

    def _review(self, intent: Intent, decision: Decision, verdict: Verdict) -> Review:
        terms = verdict.review or ReviewTerms()
        now = self.clock.now_ns()
        charter = self.charter
        reviewers = sorted(
            p.identity for p in charter.people if "reviewer" in p.roles and p.identity != charter.ri
        )
        return Review(
            id=self.ids.new(),
            at=rfc3339(now),
            causes=(intent.id, decision.id),
            intent_id=intent.id,
            decision_id=decision.id,
            operation=intent.operation,
            reasons=verdict.review_reasons,
            policy_ids=decision.policy_ids,
            binding=binding_of(intent, decision.ruleset_hash),
            approvals_required=terms.approvals,
            assignees=(*reviewers, charter.ri),
            deadline=rfc3339(min(now + terms.deadline_minutes * 60_000_000_000, _LAST_NS)),
            escalate_every_seconds=min(terms.deadline_minutes * 60, (_LAST_NS - now) // 1_000_000_000 + 1),
            expires_at=rfc3339(min(now + terms.expires_minutes * 60_000_000_000, _LAST_NS)),
            on_expiry=terms.on_expiry,
        )

    async def answer(
        self,
        review_id: str,
        *,
        key: KeyPair,
        verdict: Literal["approve", "deny"],
        reason: str,
        valid_for_seconds: int = 3600,
        simulated: bool = False,
    ) -> Outcome:
        """Answer a review as the key's owner: sign the verdict over the exact intent, then settle
        it. ``simulated``: the owner is a modelled person, as the charter marks them."""
        approval = self.reviews.approval(
            review_id,
            key=key,
            verdict=verdict,
            reason=reason,
            valid_for_seconds=valid_for_seconds,
            simulated=simulated,
        )
        return await self.settle(approval)

    async def settle(self, approval: Approval) -> Outcome:
        """Accept a signed answer to a review; once the review is settled, act on it.

        Raises:
            ApprovalRefused: with a stable reason code; nothing is recorded.
        """
        async with self._review_locks.hold(approval.review_id):
            state = await self.reviews.submit(approval)
            outcome = await self._conclude(state)
            if outcome is not None:
                return outcome
            return self._as_recorded(self.reviews.state(approval.review_id))

    def _as_recorded(self, state: ReviewState) -> Outcome:
        """The outcome a review has in the ledger now, for a caller who did not act on it."""
        review, intent, decision = state.review, state.intent, state.decision
        last = state.approvals[-1] if state.approvals else None
        done = _executions_of(self.ledger, intent.id)
        if done:
            return Outcome(done[-1].status, intent, decision, done[-1], review=review, approval=last)
        if state.resolution in ("denied", "expired:deny"):
            return Outcome("denied", intent, decision, review=review, approval=last)
        return Outcome("review", intent, decision, review=review, approval=last)

    async def outcome(self, intent_id: str, *, every: float = 0.2) -> Outcome:
        """Wait for an intent's final outcome and return it: the awaitable way for a program to
        wait for a review, with no loop of its own (bound the wait with ``asyncio.timeout``).

        While it waits it settles reviews every ``every`` seconds, so an answer given anywhere
        (``answerable approve`` in another terminal, a client of the service) is acted on here,
        once, as :meth:`settle_reviews` acts on it. An intent already final returns at once.
        ``result`` is the operation's return value when this wait ran it; an outcome reached
        before (by another caller's settle) has the Execution, whose response digest the ledger
        keeps, and no result.

        Raises:
            EntryNotFound: no intent has this id.
            ConfigError: ``every`` is not a positive number of seconds (0 or less polled the
                ledger without pause).
        """
        if isinstance(every, bool) or not isinstance(every, int | float) or not 0 < every < math.inf:
            raise ConfigError(f"outcome: every must be a positive number of seconds, not {every!r}")
        intent = _entry(self.ledger, intent_id, Intent)
        while True:
            for settled in await self.settle_reviews():
                if settled.intent.id == intent_id:
                    return settled  # run by this wait: with the operation's result
            found = self.recorded_outcome(intent)
            if found is not None:
                return found
            await asyncio.sleep(every)

    def recorded_outcome(self, intent: Intent) -> Outcome | None:
        """The intent's final outcome as the ledger has it, or None while it still waits. The
        ledger keeps a result's digest, not the result: ``result`` is None here."""
        found = self._outcome_now(intent)
        return None if found is None or found.status == "review" else found

    def _outcome_now(self, intent: Intent) -> Outcome | None:
        """The intent's outcome as the ledger has it now, ``review`` while a review is open; None
        while its call is running or waits to be reconciled."""
        decision, review, execution = self.records_of(intent.id)
        if review is not None:
            return self._as_recorded(self.reviews.state(review.id))
        if execution is not None:
            return Outcome(execution.status, intent, decision, execution)
        if decision is not None and decision.effect == "deny":
            return Outcome("denied", intent, decision)
        return None  # recorded, its call in flight (or left for reconcile)

    def records_of(self, intent_id: str) -> tuple[Decision | None, Review | None, Execution | None]:
        """The intent's Decision, Review and last Execution in the ledger (None where there is
        none yet), in one read of the entries that cite it."""
        decision: Decision | None = None
        review: Review | None = None
        execution: Execution | None = None
        for stored in self.ledger.caused_by(intent_id):
            record = decode_entry(stored.data)
            if isinstance(record, Decision) and record.intent_id == intent_id:
                decision = record
            elif isinstance(record, Review) and record.intent_id == intent_id:
                review = record
            elif isinstance(record, Execution) and record.intent_id == intent_id:
                execution = record
        return decision, review, execution

    async def settle_reviews(self) -> list[Outcome]:
        """Escalate and expire on the clock, then act on reviews settled since the last call.

        Answers given from another process (``answerable approve``) are found here. A review
        is acted on once across every process and restart: its claim is a guarded head.

        Raises:
            UnknownOperation, or what an operation's argument validator raised of its own: a
                review that cannot be acted on now (nothing is claimed for it; a later round
                tries again). The reviews after it are acted on first, and the error is raised
                in a round that has no other outcome to give, so it is never lost.
        """
        await self.reviews.tick(fence=self.lease.epoch)
        outcomes = []
        stuck: Exception | None = None
        for stored in self.ledger.of_kind("Review"):
            if stored.id in self._settled:
                continue
            try:
                outcome = await self.settle_review(stored.id)
            except (LeaseLost, StoreUnavailable):
                raise  # nothing more is acted on here
            except Exception as exc:  # its operation not registered, a validator's own error
                # Not claimed: a later round tries it again. Raised at once, it kept every
                # review after it from running, at every round, for as long as it lasted.
                stuck = stuck or exc
                continue
            if outcome is not None:
                outcomes.append(outcome)
        if stuck is not None and not outcomes:
            raise stuck  # told once no other review has an outcome to give: by the next round
        return outcomes

    async def settle_review(self, review_id: str) -> Outcome | None:
        """Act on one review already answered (here, in another process, or before a restart)
        without moving the review clock: what :meth:`settle_reviews` does for it, and only for
        it. None when there is nothing left to do.

        Raises:
            ApprovalRefused: ``unknown_review``, no such review.
        """
        async with self._review_locks.hold(review_id):
            if review_id in self._settled:
                return None
            return await self._conclude(self.reviews.state(review_id))

    async def _conclude(self, state: ReviewState) -> Outcome | None:
        """Act on a settled review exactly once: claim it (guarded), then run it. None when there
        is nothing for this gateway to do (still open, or already claimed by someone)."""
        review, intent, decision = state.review, state.intent, state.decision
        last = state.approvals[-1] if state.approvals else None
        resolution = state.resolution
        if state.final:  # claimed (or executed before claims existed): for good
            self._settled.add(review.id)
            return None
        if resolution is None:
            return None
        if resolution in ("denied", "expired:deny"):
            self._settled.add(review.id)
            return Outcome("denied", intent, decision, review=review, approval=last)
        epoch = self.lease.epoch
        op = self._operations.get(intent.operation)
        if op is None:  # perhaps not registered yet: nothing is claimed, a later round decides
            raise UnknownOperation(intent.operation, tuple(sorted(self._operations)))
        # Recorded arguments the operation's schema now refuses (it changed since) can never
        # run as approved: claimed, and recorded as failed with nothing called. Raised instead,
        # the review came up again at every round. Any other error (a validator's own, which
        # may pass) is raised, nothing claimed: the next round tries again.
        refused: ArgumentsInvalid | None = None
        try:
            _, args = _canonical_intent(op, intent, read_back=False)  # as it was decided
        except ArgumentsInvalid as exc:
            refused = exc
        approvals = state.live_approvals if state.closed is None else ()
        expiry = state.closed
        used = (expiry.id,) if expiry is not None else tuple(a.id for a in approvals)
        claim = self._claim(
            intent,
            epoch,
            "expiry" if expiry is not None else "approval",
            (intent.id, decision.id, review.id, *used),
            at=state.now,
        )
        records: list[Claim | Execution] = [claim]
        if refused is not None:  # with its claim: a crash between the two left an "ambiguous" call
            failed = self._execution(
                intent.operation,
                intent,
                decision,
                claim,
                "failed",
                error=f"not run as approved: {refused}",
                approvals=approvals,
                expiry=expiry,
            )
            records.append(failed)
        try:
            await self.ledger.append(
                records,
                fence=epoch,
                guards=[Guard(claim_key(intent.id), None), Guard(review_key(review.id), state.head)],
            )
        except Conflict:
            return None  # the review changed or was claimed meanwhile: the next round decides again
        self._settled.add(review.id)
        self._at("claimed", intent)
        if refused is not None:
            self._at("finished", intent)
            return Outcome("failed", intent, decision, failed, None, review, last)
        outcome = await self._execute(
            op,
            intent,
            decision,
            args,
            claim,
            recovered=False,
            approvals=approvals,
            expiry=expiry,
        )
        return Outcome(outcome.status, intent, decision, outcome.execution, outcome.result, review, last)

    # --- after a crash or a takeover ------------------------------------------------------------

    def _dead_claims(self, epoch: int) -> list[_Open]:
        """Claims of earlier epochs that nothing followed (no Execution, no recovery claim), and
        allowed intents with no claim and no Execution (written before claims existed)."""
        out: list[_Open] = []
        claimed: set[str] = set()
        for stored in self.ledger.of_kind("Claim"):
            claim = decode_entry(stored.data)
            if not isinstance(claim, Claim):
                continue
            claimed.add(claim.intent_id)
            if claim.epoch >= epoch or self.ledger.caused_by(claim.id):
                continue  # a live epoch's, or already followed by an Execution or a recovery
            intent, decision = _entry(self.ledger, claim.intent_id, Intent), None
            for follower in self.ledger.caused_by(claim.intent_id):
                record = decode_entry(follower.data)
                if isinstance(record, Decision) and record.intent_id == claim.intent_id:
                    decision = record
            if decision is None:
                raise RecordInvalid(f"claim {claim.id} names intent {claim.intent_id}, which has no Decision")
            approvals, expiry = self._authority_of(claim)
            out.append(_Open(intent, decision, claim, stored.index, approvals, expiry))
        for stored in self.ledger.of_kind("Decision"):
            allowed = decode_entry(stored.data)
            if not isinstance(allowed, Decision) or allowed.effect != "allow":
                continue
            if allowed.intent_id in claimed or _executions_of(self.ledger, allowed.intent_id):
                continue
            out.append(_Open(_entry(self.ledger, allowed.intent_id, Intent), allowed, None, None, (), None))
        return out

    def _authority_of(self, claim: Claim) -> tuple[tuple[Approval, ...], ReviewClosed | None]:
        """The approvals or the expiry a claim was made under, so a recovered Execution names them."""
        approvals: list[Approval] = []
        expiry = None
        for cause in claim.causes:
            try:
                record = decode_entry(self.ledger.find(cause).data)
            except EntryNotFound:
                continue
            if isinstance(record, Approval):
                approvals.append(record)
            elif isinstance(record, ReviewClosed):
                expiry = record
            elif isinstance(record, Claim):
                return self._authority_of(record)
        return tuple(approvals), expiry

    async def reconcile(self) -> list[Outcome]:
        """Settle what a dead epoch (a crash, a deposed holder) claimed and never finished.

        Only claims of earlier epochs are touched, never one of this gateway's own (those are
        in flight here). For each, a recovery claim is committed first (guarded, so two
        recoveries cannot both run), then: an idempotent operation is called again with the same
        key under this epoch; else the effect is looked up by key and recorded if found; where
        the partner is fenced and the lookup carried this epoch's token, "not found" is proof
        (the old holder can no longer land its call) and the call is made; any other negative
        or failing lookup, or no lookup at all, marks the intent ambiguous and pauses its
        operation for a person. Run it at start-up (``start()`` does).
        """
        epoch = self.lease.epoch
        # The stops as read before any claim was judged: a resume landing while the loop runs
        # then differs from them, and reconcile_held runs again (read after the loop, it counted
        # as seen, and a claim it held stayed open until the next start). A pause the loop
        # writes itself, for an ambiguous call, differs too: one more pass, which finds nothing.
        seen = self.control.state()
        outcomes = []
        for left in self._dead_claims(epoch):
            try:
                outcome = await self._recover(left, epoch)
            except (LeaseLost, Conflict, StoreUnavailable):
                raise  # (a store away is no verdict on the call: it is settled on a later try)
            except Exception as exc:
                # Not only answerable's errors: the operation's own code fails here too (an
                # argument model's validator raising KeyError on arguments recorded under an
                # earlier schema). Raised on, it stopped the start, left every later claim open
                # and failed again at each start; this intent needs a person, the rest go on.
                said = str(exc) if isinstance(exc, AnswerableError) else exception_text(exc)
                # Cite the newest claim: the recovery claim, if it was written, so that claim is
                # closed by this Execution and no later epoch recovers the intent a second time.
                newest = self._recovery_claims.get(left.intent.id, left.claim)
                if newest is not None and any(
                    newest.id in x.causes for x in _executions_of(self.ledger, left.intent.id)
                ):
                    # What became of the call is recorded already (the failure came after): a
                    # second, contradicting Execution would be a lie. Raised on; the claim is
                    # closed, so the next start does not meet it again.
                    raise
                outcome = await self._ambiguous(left, newest, f"could not reconcile: {said}")
            finally:
                self._recovery_claims.pop(left.intent.id, None)
            if outcome is not None:
                outcomes.append(outcome)
        held = frozenset(o.intent.id for o in outcomes if o.status == "not_executed" and o.execution is None)
        self._held_back = (seen, held) if held else None
        return outcomes

    async def reconcile_held(self) -> list[Outcome]:
        """Reconcile again once the stops changed, when the last reconcile left claims open for a
        stop (whether their call happened is unknown, so nothing was recorded). Without this they
        stayed open until the next start: their keys answered ``idempotency_in_flight`` and
        their calls were neither done nor settled. Costs nothing while nothing is held or no
        control entry came since (a service calls it every round).

        Raises:
            as :meth:`reconcile`.
        """
        if self._held_back is None or self._held_back[0] is self.control.state():
            return []
        return await self.reconcile()

    async def _recover(self, left: _Open, epoch: int) -> Outcome | None:
        intent, decision = left.intent, left.decision
        op = self._operations.get(intent.operation)
        if op is None:
            raise UnknownOperation(intent.operation, tuple(sorted(self._operations)))
        _, args = _canonical_intent(op, intent, read_back=False)  # recorded already, as it was decided
        stop = self._stop_for(op, intent, decision.request, decision.entities)
        if stop is not None:
            # Whether the old call happened is unknown: leave the claim open until the stop is lifted.
            return Outcome("not_executed", intent, decision)
        old = () if left.claim is None else (left.claim.id,)
        claim = self._claim(
            intent,
            epoch,
            "recovery",
            (intent.id, decision.id, *old),
            takes_over=None if left.claim is None else left.claim.id,
        )
        try:
            await self.ledger.append(
                [claim], fence=epoch, guards=[Guard(claim_key(intent.id), left.claim_index)]
            )
        except Conflict:
            return None  # recovered by someone else meanwhile
        self._recovery_claims[intent.id] = claim
        self._at("claimed", intent)
        if op.idempotent:
            return await self._replay(op, left, args, claim)
        if op.lookup is None:
            return await self._ambiguous(
                left, claim, "claimed before a crash; the operation honours no key and has no lookup"
            )
        fenced_lookup = op.fenced and op.lookup_wants_token
        try:
            if fenced_lookup:
                token = FencingToken(epoch, intent.idempotency_key)
                found = await op.lookup(intent.idempotency_key, fencing_token=token)  # type: ignore[call-arg]
            else:
                found = await op.lookup(intent.idempotency_key)
        except Exception as exc:  # a failing lookup settles nothing: this intent needs a person
            return await self._ambiguous(left, claim, f"lookup by key failed: {exception_text(exc)}")
        if found is None and fenced_lookup:
            # The partner has seen this epoch: the old holder's call can no longer land, and it
            # has not landed. Making it now is the one call.
            return await self._replay(op, left, args, claim)
        if found is None:
            return await self._ambiguous(
                left,
                claim,
                "no effect found by key, but the old holder may still call: a negative lookup is no proof",
            )
        execution = self._execution(
            op.name,
            intent,
            decision,
            claim,
            "succeeded",
            response=found,
            recovered=True,
            approvals=left.approvals,
            expiry=left.expiry,
        )
        await self.ledger.append([execution], fence=epoch)
        last = left.approvals[-1] if left.approvals else None
        return Outcome("succeeded", intent, decision, execution, found, approval=last)

    async def _replay(self, op: Operation, left: _Open, args: BaseModel, claim: Claim) -> Outcome:
        return await self._execute(
            op,
            left.intent,
            left.decision,
            args,
            claim,
            recovered=True,
            approvals=left.approvals,
            expiry=left.expiry,
        )

    async def _ambiguous(self, left: _Open, claim: Claim | None, why: str) -> Outcome:
        intent, decision = left.intent, left.decision
        execution = self._execution(
            intent.operation,
            intent,
            decision,
            claim,
            "ambiguous",
            recovered=True,
            approvals=left.approvals,
            expiry=left.expiry,
            error=why,
        )
        pause = Control(
            id=self.ids.new(),
            at=rfc3339(self.clock.now_ns()),
            causes=(intent.id, execution.id),
            action="pause",
            scope=Scope(kind="operation", value=intent.operation),
            by=GATEWAY_IDENTITY,
            reason=f"outcome of intent {intent.id} unknown after a crash; reconcile it, then resume",
        )
        await self.ledger.append([execution, pause], fence=self.lease.epoch)
        return Outcome("ambiguous", intent, decision, execution)


_LAST_NS = 253_402_300_799_000_000_000
"""9999-12-31T23:59:59Z, the last instant a record's time can say: a review term of a ruleset
signed before terms were bounded is held there (it reads as "never"), not refused at submit."""


def _decide_all(items: Sequence[tuple[CedarRequest, Ruleset]]) -> list[Verdict]:
    """Each request decided under the ruleset it was judged with (one per turn but for a rules change).

    Every context and entity was built by cedar_inputs from canonical JSON: ``json_checked``.
    """
    if len(items) == 1:
        return decide_many([items[0][0]], items[0][1], json_checked=True)
    by_ruleset: dict[int, tuple[Ruleset, list[int]]] = {}
    for i, (_, ruleset) in enumerate(items):
        by_ruleset.setdefault(id(ruleset), (ruleset, []))[1].append(i)
    verdicts: list[Verdict] = [Verdict("deny", ())] * len(items)
    for ruleset, members in by_ruleset.values():
        decided = decide_many([items[i][0] for i in members], ruleset, json_checked=True)
        for i, verdict in zip(members, decided, strict=True):
            verdicts[i] = verdict
    return verdicts


def _canonical_intent(op: Operation, intent: Intent, *, read_back: bool = True) -> tuple[Intent, BaseModel]:
    """The intent with exactly the canonical arguments that are recorded, and the values the
    operation will receive, decoded from those same bytes.

    A copy holding the decoded arguments unless the given ones are those already and hold no
    list or object: nested ones may be the caller's own (an Intent copies only the top level),
    and a caller's task changing one while the intent awaited its decision changed what the
    ledger recorded, but not what Cedar judged or the operation received (found by an
    independent review)."""
    given = intent.arguments
    recorded, args = canonical_arguments(op, given, read_back=read_back)
    if all(type(v) in _SCALARS for v in given.values()) and _same_json(recorded, given):
        return intent, args
    values = whole_fields(intent)
    if values is None:  # not as a record of this package holds its fields: pydantic copies it
        return intent.model_copy(update={"arguments": recorded}), args
    return assembled(Intent, {**values, "arguments": recorded}), args


def _same_json(recorded: dict[str, Any], given: Mapping[str, Any]) -> bool:
    """Whether ``given`` already is ``recorded`` in JSON, types included: Python's ``==`` holds
    ``True == 1`` and ``0 == False``, so a schema that read ``true`` as 1 would leave ``true`` in
    the Intent while Cedar judged and the operation ran 1."""
    try:
        return orjson.dumps(recorded, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
            given, option=orjson.OPT_SORT_KEYS
        )
    except (orjson.JSONEncodeError, TypeError):  # not plain JSON: certainly not what is recorded
        return False


def _executions_of(ledger: LedgerStore, intent_id: str) -> list[Execution]:
    out = []
    for stored in ledger.caused_by(intent_id):
        if stored.kind == "Execution":
            record = decode_entry(stored.data)
            if isinstance(record, Execution) and record.intent_id == intent_id:
                out.append(record)
    return out


def _entry(ledger: LedgerStore, entry_id: str, kind: type[_T]) -> _T:
    record = decode_entry(ledger.find(entry_id).data)
    if not isinstance(record, kind):
        raise RecordInvalid(f"entry {entry_id} is a {type(record).__name__}, not a {kind.__name__}")
    return record


def _response_digest(response: Any) -> str:
    """The digest of what a call answered: of its canonical JSON, or of its ``repr`` when it has
    none. Never failing, for it is taken after the call: a response whose ``repr`` raises (or an
    integer too long for one) is digested as its type's name."""
    if response is None:  # most operations answer nothing
        return _NOTHING
    try:
        return digest(canonical_bytes(response))
    except Exception:  # not JSON (RecordInvalid), or foreign code failing inside: its repr
        pass
    try:
        text = repr(response)
    except Exception:  # foreign code: its __repr__ may raise anything
        text = f"<{type(response).__name__} with no repr>"
    return digest(text.encode("utf-8", "backslashreplace"))


_NOTHING = digest(b"null")
"""The response digest of an operation that answered nothing (None, JSON ``null``)."""


def _resource_classes(request: Mapping[str, Any], entities: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The ``class`` attribute of the request's resource entity, if it has one."""
    resource = request.get("resource", {})
    for entity in entities:
        if entity.get("uid") == resource:
            value = entity.get("attrs", {}).get("class")
            return (value,) if isinstance(value, str) else ()
    return ()


def _has(ledger: LedgerStore, entry_id: str) -> bool:
    try:
        ledger.find(entry_id)
    except EntryNotFound:
        return False
    return True


_SCALARS = frozenset((str, int, bool, type(None)))
"""What an argument can be that nobody can change once it is in an Intent's own dict."""


def _validated(kind: type[_Made], values: dict[str, Any]) -> _Made:
    """A record the gateway makes, validated: only an id source or a clock of the caller's (or an
    intent built without validation) gives it what a record cannot hold, and that is said as a
    RecordInvalid naming the field, before anything of the intent is recorded."""
    try:
        return validated(kind, values)
    except ValidationError as exc:
        raise RecordInvalid(
            f"the gateway's {kind.__name__} cannot be recorded: {problems(exc, 'record')[0]} (an id "
            "source or a clock that gives what no record can hold?)",
            record=kind.__name__,
        ) from exc


def _new_parts(values: dict[str, Any], intent: Intent) -> bool:
    """Whether what a record the gateway makes takes from outside its own code is as validation
    would make it: its new id and time (an id source or a clock can be anyone's), and the id of
    its intent, which a caller may have built without validation."""
    return is_id(values["id"]) and is_rfc3339_in_range(values["at"]) and is_id(intent.id)
