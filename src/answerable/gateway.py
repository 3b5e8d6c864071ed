"""The action gateway: the one place that holds credentials and calls out to the world.

For every intent, in this order: validate it, check control, decide under the approved rules,
commit Intent and Decision durably, check control again against the ledger, execute with the
intent's idempotency key, commit the Execution. Nothing runs unwritten, and a halt committed
before an intent was recorded always stops it: the second control check reads the ledger after
the intent's own commit.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from answerable._canonical import canonical_bytes
from answerable.charter import charter_of
from answerable.clock import Clock, IdSource, SystemClock, rfc3339
from answerable.control import Controller
from answerable.errors import (
    AnswerableError,
    ConfigError,
    EntryNotFound,
    TransientError,
    UnknownAgent,
    UnknownOperation,
)
from answerable.keys import KeyPair
from answerable.ledger.base import LedgerStore
from answerable.operations import (
    Operation,
    Resource,
    args_model,
    http_operation,
    invoke,
    validate_arguments,
)
from answerable.policy import CedarRequest, ReviewTerms, Ruleset, Verdict, decide, load_ruleset
from answerable.records import (
    Approval,
    Authority,
    Control,
    Decision,
    Execution,
    Intent,
    Review,
    ReviewClosed,
    RulesetVersion,
    Scope,
    SystemCharter,
    decode_entry,
    digest,
)
from answerable.review import ReviewQueue, ReviewState, binding_of
from answerable.signing import verify_charter, verify_ruleset

__all__ = ["Gateway", "Operation", "Outcome", "Resource", "http_operation", "invoke"]


GATEWAY_IDENTITY = "answerable.gateway"
"""Who the gateway says it is when it pauses an operation on its own (an ambiguous crash)."""


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
"""A hook for crash tests, called at named points: ``"recorded"`` after the Intent and Decision
commit, ``"executed"`` after the call returned and before its Execution is recorded."""


class Gateway:
    """Governs every call to a registered operation; see the module docstring for the sequence."""

    def __init__(
        self,
        ledger: LedgerStore,
        *,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        fault: Fault | None = None,
    ) -> None:
        self.ledger = ledger
        self.clock = clock or SystemClock()
        self.ids = ids or IdSource(self.clock)
        self.control = Controller(ledger, clock=self.clock, ids=self.ids)
        self.reviews = ReviewQueue(ledger, clock=self.clock, ids=self.ids)
        self._concluded: set[str] = set()
        self._review_locks: dict[str, asyncio.Lock] = {}
        self._in_flight: set[str] = set()
        """Intents between their record and their Execution in this process: not crash leftovers."""
        self._operations: dict[str, Operation] = {}
        self._fault = fault
        self._charter: SystemCharter | None = None
        self._ruleset: Ruleset | None = None
        self._ruleset_record: RulesetVersion | None = None

    # --- set-up ---------------------------------------------------------------------------------

    async def install(self, charter: SystemCharter, ruleset: RulesetVersion) -> None:
        """Put the signed charter and ruleset in force, recording them if the ledger lacks them.

        Raises:
            SignatureInvalid, NotAuthorized: the charter or ruleset is not signed by the RI.
            PolicyInvalid: the ruleset does not parse or validate.
        """
        try:
            in_force: SystemCharter | None = charter_of(self.ledger)
        except ConfigError:
            in_force = None
        if in_force is None or in_force.id != charter.id:
            # The charter in force was verified along its chain; a new one must extend it.
            verify_charter(charter, in_force)
        verify_ruleset(ruleset, charter)
        parsed = load_ruleset(ruleset.policies, ruleset.schema_text)
        if parsed.ruleset_hash != ruleset.ruleset_hash or parsed.schema_hash != ruleset.schema_hash:
            raise ConfigError(f"ruleset v{ruleset.version}: its recorded hashes do not match its text")
        missing = [r for r in (charter, ruleset) if not _has(self.ledger, r.id)]
        if missing:
            await self.ledger.append(missing)
        self._charter, self._ruleset, self._ruleset_record = charter, parsed, ruleset

    async def resume_from_ledger(self) -> None:
        """Load the charter and the last ruleset its RI signed from the ledger (a restart)."""
        charter = charter_of(self.ledger)
        signed = []
        for stored in self.ledger.of_kind("RulesetVersion"):
            ruleset = decode_entry(stored.data)
            assert isinstance(ruleset, RulesetVersion)
            try:
                verify_ruleset(ruleset, charter)
            except AnswerableError:
                continue  # not signed by the RI in force: it never took effect
            signed.append(ruleset)
        if not signed:
            raise ConfigError(
                f"ledger {self.ledger.origin} has no RulesetVersion signed by the RI {charter.ri}"
            )
        await self.install(charter, signed[-1])

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
        lookup: Callable[[str], Awaitable[Any | None]] | None = None,
    ) -> Operation:
        """Register an operation; its argument schema comes from ``args`` or from ``call``'s signature."""
        if name in self._operations:
            raise ConfigError(f"operation {name!r} is already registered")
        wants_key = "idempotency_key" in inspect.signature(call).parameters
        op = Operation(
            name=name,
            resource_class=resource_class,
            args=args or args_model(name, call),
            call=call,
            resource=resource or (lambda _a: Resource("Resource", name, {"class": resource_class})),
            context=context or (lambda _a: {}),
            idempotent=idempotent,
            lookup=lookup,
            wants_key=wants_key,
        )
        self._operations[name] = op
        return op

    @property
    def operations(self) -> Mapping[str, Operation]:
        return self._operations

    @property
    def charter(self) -> SystemCharter:
        if self._charter is None:
            raise ConfigError("the gateway has no charter: call install() or resume_from_ledger() first")
        return self._charter

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
        intent_id = self.ids.new()
        return Intent(
            id=intent_id,
            at=rfc3339(self.clock.now_ns()),
            causes=causes,
            agent=agent,
            operation=operation,
            arguments=dict(arguments),
            idempotency_key=idempotency_key or intent_id,
            trace_id=trace_id,
            on_behalf_of=on_behalf_of,
        )

    async def submit(self, intent: Intent) -> Outcome:
        """Govern one intent end to end.

        Raises:
            UnknownAgent, UnknownOperation, ArgumentsInvalid: before anything is recorded.
        """
        charter = self.charter
        if intent.agent not in charter.agent_names():
            raise UnknownAgent(intent.agent)
        op = self._operations.get(intent.operation)
        if op is None:
            raise UnknownOperation(intent.operation, tuple(sorted(self._operations)))
        args = validate_arguments(op, intent.arguments)

        request, verdict = self._judge(op, intent, args)
        stop = self.control.state().blocking(
            agent=intent.agent,
            operation=op.name,
            resource_class=op.resource_class,
            resource_classes=_resource_classes(request.to_json(), request.entities),
        )
        decision = self._decision(intent, request, verdict, stop)
        if decision.effect == "review":
            review = self._review(intent, decision, verdict)
            await self.ledger.append([intent, decision, review])
            return Outcome("review", intent, decision, review=review)
        self._in_flight.add(intent.id)
        try:
            await self.ledger.append([intent, decision])
            if decision.effect == "deny":
                return Outcome("denied", intent, decision)
            if self._fault is not None:
                self._fault("recorded", intent)
            return await self._execute(op, intent, decision, args, recovered=False)
        finally:
            self._in_flight.discard(intent.id)

    def _judge(self, op: Operation, intent: Intent, args: BaseModel) -> tuple[CedarRequest, Verdict]:
        assert self._ruleset is not None
        try:
            res = op.resource(args)
            context = dict(op.context(args))
        except Exception as exc:  # a broken entity builder denies, it does not crash the gateway
            empty = CedarRequest(("Agent", intent.agent), op.name, ("Resource", op.name), {}, ())
            return empty, Verdict("deny", (), (f"building the Cedar request for {op.name} failed: {exc!r}",))
        entities = (
            {"uid": {"type": "Agent", "id": intent.agent}, "attrs": {}, "parents": []},
            {"uid": {"type": res.type, "id": res.id}, "attrs": dict(res.attrs), "parents": []},
        )
        request = CedarRequest(("Agent", intent.agent), op.name, (res.type, res.id), context, entities)
        return request, decide(request, self._ruleset)

    def _decision(
        self, intent: Intent, request: CedarRequest, verdict: Verdict, stop: Control | None
    ) -> Decision:
        assert self._ruleset is not None
        assert self._ruleset_record is not None
        effect, errors = verdict.effect, verdict.errors
        if stop is not None:
            effect = "deny"
            errors = (*errors, f"{stop.action} in force on {stop.scope.label()} by {stop.by}: {stop.reason}")
        return Decision(
            id=self.ids.new(),
            at=rfc3339(self.clock.now_ns()),
            causes=(intent.id,) if stop is None else (intent.id, stop.id),
            intent_id=intent.id,
            effect=effect,
            policy_ids=verdict.policy_ids,
            ruleset_id=self._ruleset_record.id,
            ruleset_hash=self._ruleset.ruleset_hash,
            schema_hash=self._ruleset.schema_hash,
            request=request.to_json(),
            entities=request.entities,
            errors=errors,
            control_id=None if stop is None else stop.id,
        )

    async def _execute(
        self,
        op: Operation,
        intent: Intent,
        decision: Decision,
        args: BaseModel,
        *,
        recovered: bool,
        approvals: tuple[Approval, ...] = (),
        expiry: ReviewClosed | None = None,
    ) -> Outcome:
        approval = approvals[-1] if approvals else None
        stop = self.control.state().blocking(
            agent=intent.agent,
            operation=op.name,
            resource_class=op.resource_class,
            resource_classes=_resource_classes(decision.request, decision.entities),
        )
        if stop is not None and recovered:
            # Whether the crashed call happened is not known yet: record nothing, so the intent stays
            # open and is reconciled again once the stop is lifted.
            return Outcome("not_executed", intent, decision, approval=approval)
        if stop is not None:
            execution = self._execution(
                op.name,
                intent,
                decision,
                "not_executed",
                error=f"{stop.action} {stop.id} by {stop.by}: {stop.reason}",
                causes=(stop.id,),
                recovered=recovered,
                approvals=approvals,
                expiry=expiry,
            )
            await self.ledger.append([execution])
            return Outcome("not_executed", intent, decision, execution, approval=approval)
        # Latency is read from the injected clock like every other time, so a replayed run with a
        # fake clock produces the same bytes; with the system clock it is the real latency.
        started = self.clock.now_ns()
        attempts = 0
        while True:
            attempts += 1
            try:
                result = await invoke(op, args, intent.idempotency_key)
                break
            except TransientError as exc:
                # Safe to try again only where the world deduplicates by key.
                if op.idempotent and attempts <= op.retries:
                    continue
                failure: Exception = exc
                # A lost answer is not a refusal: the effect may have happened. Say so.
                status: Literal["failed", "ambiguous"] = "ambiguous"
            except Exception as exc:  # the world said no: a value to record, not a crash
                failure, status = exc, "failed"
            execution = self._execution(
                op.name,
                intent,
                decision,
                status,
                error=f"{type(failure).__name__}: {failure}",
                latency_us=(self.clock.now_ns() - started) // 1000,
                recovered=recovered,
                approvals=approvals,
                expiry=expiry,
                attempts=attempts,
            )
            await self.ledger.append([execution])
            return Outcome(status, intent, decision, execution, approval=approval)
        latency = (self.clock.now_ns() - started) // 1000
        if self._fault is not None:
            self._fault("executed", intent)
        execution = self._execution(
            op.name,
            intent,
            decision,
            "succeeded",
            response=result,
            latency_us=latency,
            recovered=recovered,
            approvals=approvals,
            expiry=expiry,
            attempts=attempts,
        )
        await self.ledger.append([execution])
        return Outcome("succeeded", intent, decision, execution, result, approval=approval)

    def _execution(
        self,
        operation: str,
        intent: Intent,
        decision: Decision,
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
        if expiry is not None:
            authority = Authority(
                responsible=self.charter.ri,
                via="expiry",
                ids=(expiry.id,),
                ruleset_hash=decision.ruleset_hash,
            )
            causes = (intent.id, decision.id, expiry.id, *causes)
        elif not approvals:
            authority = Authority(
                responsible=self.charter.ri,
                via="policy",
                ids=decision.policy_ids,
                ruleset_hash=decision.ruleset_hash,
            )
            causes = (intent.id, decision.id, *causes)
        else:
            ids = tuple(a.id for a in approvals)
            authority = Authority(
                responsible=self.charter.ri, via="approval", ids=ids, ruleset_hash=decision.ruleset_hash
            )
            causes = (intent.id, decision.id, *ids, *causes)
        return Execution(
            id=self.ids.new(),
            at=rfc3339(self.clock.now_ns()),
            causes=causes,
            intent_id=intent.id,
            decision_id=decision.id,
            operation=operation,
            status=status,
            authority=authority,
            response_digest=_response_digest(response) if status == "succeeded" else None,
            latency_us=latency_us,
            error=error,
            recovered=recovered,
            attempts=attempts,
        )

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
            deadline=rfc3339(now + terms.deadline_minutes * 60_000_000_000),
            escalate_every_seconds=terms.deadline_minutes * 60,
            expires_at=rfc3339(now + terms.expires_minutes * 60_000_000_000),
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
    ) -> Outcome:
        """Answer a review as the key's owner: sign the verdict over the exact intent, then settle it."""
        approval = self.reviews.approval(
            review_id, key=key, verdict=verdict, reason=reason, valid_for_seconds=valid_for_seconds
        )
        return await self.settle(approval)

    async def settle(self, approval: Approval) -> Outcome:
        """Accept a signed answer to a review; once the review is settled, act on it.

        Raises:
            ApprovalRefused: with a stable reason code; nothing is recorded.
        """
        async with self._lock_for(approval.review_id):
            state = await self.reviews.submit(approval)
            return await self._conclude(state)

    def _lock_for(self, review_id: str) -> asyncio.Lock:
        """One review is settled by one coroutine at a time: two answers racing could otherwise both
        pass their checks before either is recorded, and run the intent twice."""
        return self._review_locks.setdefault(review_id, asyncio.Lock())

    async def settle_reviews(self) -> list[Outcome]:
        """Escalate and expire on the clock, then act on reviews settled since the last call.

        Answers given from another process (``answerable approve``) are found here.
        """
        await self.reviews.tick()
        outcomes = []
        for stored in self.ledger.of_kind("Review"):
            if stored.id in self._concluded:
                continue
            async with self._lock_for(stored.id):
                state = self.reviews.state(stored.id)
                if state.resolution is not None and stored.id not in self._concluded:
                    outcomes.append(await self._conclude(state))
        return outcomes

    async def _conclude(self, state: ReviewState) -> Outcome:
        review, intent, decision = state.review, state.intent, state.decision
        last = state.approvals[-1] if state.approvals else None
        resolution = state.resolution
        if resolution is None:
            return Outcome("review", intent, decision, review=review, approval=last)
        self._concluded.add(review.id)
        if resolution in ("denied", "expired:deny"):
            return Outcome("denied", intent, decision, review=review, approval=last)
        done = [
            x
            for x in (decode_entry(e.data) for e in self.ledger.caused_by(intent.id))
            if isinstance(x, Execution)
        ]
        if done:
            return Outcome(done[-1].status, intent, decision, done[-1], review=review, approval=last)
        op = self._operations.get(intent.operation)
        if op is None:
            raise UnknownOperation(intent.operation, tuple(sorted(self._operations)))
        args = validate_arguments(op, intent.arguments)
        approvals = state.live_approvals
        self._in_flight.add(intent.id)
        try:
            outcome = await self._execute(
                op, intent, decision, args, recovered=False, approvals=approvals, expiry=state.closed
            )
        finally:
            self._in_flight.discard(intent.id)
        return Outcome(outcome.status, intent, decision, outcome.execution, outcome.result, review, last)

    def _open_intents(self) -> list[tuple[Intent, Decision, tuple[Approval, ...]]]:
        """Allowed or approved intents with no Execution that this process is not running now:
        what a crash may have left behind. Approvals count only if they verify and are live."""
        out: list[tuple[Intent, Decision, tuple[Approval, ...]]] = []
        for stored in self.ledger.of_kind("Intent"):
            if stored.id in self._in_flight:
                continue
            followers = [decode_entry(e.data) for e in self.ledger.caused_by(stored.id)]
            if any(isinstance(f, Execution) for f in followers):
                continue
            intent = decode_entry(stored.data)
            decision = next(
                (f for f in followers if isinstance(f, Decision) and f.intent_id == stored.id), None
            )
            if not isinstance(intent, Intent) or decision is None:
                continue
            if decision.effect == "allow":
                out.append((intent, decision, ()))
                continue
            review = next((f for f in followers if isinstance(f, Review)), None)
            if review is not None:
                state = self.reviews.state(review.id)
                if state.resolution == "approved":
                    out.append((intent, decision, state.live_approvals))
        return out

    # --- after a crash --------------------------------------------------------------------------

    async def reconcile(self) -> list[Outcome]:
        """Settle every allowed intent that has no Execution, never calling anything twice blindly.

        Run it at start-up, after :meth:`resume_from_ledger`. An idempotent operation is called
        again with the same key (the world deduplicates); else the effect is looked up by key and
        recorded if found, or the call made if it never happened; else the intent is marked
        ambiguous and its operation paused for a person. An intent that cannot be settled at all
        (its operation is no longer registered, its arguments no longer validate) is marked
        ambiguous the same way, and the others are still settled.
        """
        outcomes = []
        for intent, decision, approvals in self._open_intents():
            try:
                outcomes.append(await self._recover(intent, decision, approvals))
            except AnswerableError as exc:
                outcomes.append(
                    await self._ambiguous(intent, decision, approvals, f"could not reconcile: {exc}")
                )
        return outcomes

    async def _recover(self, intent: Intent, decision: Decision, approvals: tuple[Approval, ...]) -> Outcome:
        op = self._operations.get(intent.operation)
        if op is None:
            raise UnknownOperation(intent.operation, tuple(sorted(self._operations)))
        args = validate_arguments(op, intent.arguments)
        if op.idempotent:
            return await self._execute(op, intent, decision, args, recovered=True, approvals=approvals)
        if op.lookup is not None:
            found = await op.lookup(intent.idempotency_key)
            if found is None:
                return await self._execute(op, intent, decision, args, recovered=True, approvals=approvals)
            execution = self._execution(
                op.name, intent, decision, "succeeded", response=found, recovered=True, approvals=approvals
            )
            await self.ledger.append([execution])
            return Outcome(
                "succeeded", intent, decision, execution, found, approval=approvals[-1] if approvals else None
            )
        return await self._ambiguous(
            intent,
            decision,
            approvals,
            "recorded before a crash; the operation honours no idempotency key and has no lookup",
        )

    async def _ambiguous(
        self, intent: Intent, decision: Decision, approvals: tuple[Approval, ...], why: str
    ) -> Outcome:
        execution = self._execution(
            intent.operation, intent, decision, "ambiguous", recovered=True, approvals=approvals, error=why
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
        await self.ledger.append([execution, pause])
        return Outcome("ambiguous", intent, decision, execution)


def _response_digest(response: Any) -> str:
    try:
        data = canonical_bytes(response)
    except (TypeError, ValueError):
        data = repr(response).encode()
    return digest(data)


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
