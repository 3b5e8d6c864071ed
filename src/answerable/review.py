"""Human review: the queue of intents waiting for a person, and every reason an answer is refused.

An approval is valid for exactly one intent (its operation, canonical arguments, idempotency key
and the ruleset it was judged under), once, until it expires, from a person the charter names as
a reviewer, signed with their key, and not from the person who asked for the intent when the
charter separates duties. A rule may ask for several approvers; the intent runs once enough
distinct people approved, and any one denial refuses it. Unanswered reviews escalate along their
assignees (finally to the RI) and, when they expire, close with the safe default their rule
names. Each refusal carries a stable reason code. The queue lives in the ledger, so a person can
answer from another process (the CLI) and the running gateway finds the answer there.

A review's lifecycle is a fold over ledger events, the same in every process: open; approved
(enough approvals still valid now); approved-and-claimed (the gateway's Claim, written while
those approvals were valid, after which nothing changes it); denied; expired (closed with its
safe default, which is claimed once if it is ``approve``); reopened (approvals that expired
before anyone used them no longer count, and their reviewers may answer again). Every entry
that changes a review is appended under a guard on the review's head (``review:ID``), so two
answers racing from two processes cannot both count: the loser reads again and gets a reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from answerable._canonical import canonical_bytes
from answerable._reason import says_something
from answerable.charter import CharterHistory, charter_of
from answerable.clock import Clock, IdSource, parse_rfc3339, rfc3339
from answerable.errors import (
    ApprovalRefused,
    Conflict,
    EntryNotFound,
    NotAuthorized,
    RecordInvalid,
    SignatureInvalid,
)
from answerable.httpsig import SKEW
from answerable.keys import KeyPair
from answerable.ledger.base import Guard, LedgerStore
from answerable.records import (
    Approval,
    Claim,
    Decision,
    Escalation,
    Execution,
    Intent,
    Review,
    ReviewClosed,
    SystemCharter,
    decode_entry,
    digest,
    problems,
)
from answerable.signing import sign, verify_signed_by

__all__ = [
    "ReviewQueue",
    "ReviewState",
    "authenticate",
    "binding_of",
    "check_approval",
    "review_key",
    "unsigned_approval",
]

_RACE_RETRIES = 50
"""How often an answer is re-checked after losing a race on the review's head."""


def review_key(review_id: str) -> str:
    """The guarded head every entry that changes a review is appended under."""
    return f"review:{review_id}"


def binding_of(intent: Intent, ruleset_hash: str) -> str:
    """The digest an approval signs: the exact intent, under the exact rules."""
    return digest(
        canonical_bytes(
            {
                "operation": intent.operation,
                "arguments": intent.arguments,
                "idempotency_key": intent.idempotency_key,
                "ruleset_hash": ruleset_hash,
                "intent_id": intent.id,
            }
        )
    )


@dataclass(frozen=True, slots=True)
class ReviewState:
    """A review and everything recorded about it so far."""

    review: Review
    intent: Intent
    decision: Decision
    approvals: tuple[Approval, ...]
    """The answers that count: every valid denial, and per person their latest approval that is
    still valid now, or, once claimed, the approvals the claim used. An answer that does not
    verify (signature, role, binding, separation of duties) never counts."""
    escalations: tuple[Escalation, ...]
    closed: ReviewClosed | None
    now: str
    """When this state was read: an approval can be used (claimed) only until it expires."""
    claim: Claim | None = None
    """The gateway's claim to run the intent: once there, the review is settled for good."""
    head: int | None = None
    """The review's guarded head when this state was read: a write about it must expect this."""
    lapsed: tuple[Approval, ...] = ()
    """Approvals that expired before anyone used them: they reopened the review."""
    executed: Execution | None = None
    """In a ledger written before claims existed: the Execution that settled the review instead."""

    @property
    def final(self) -> bool:
        """Acted on for good: claimed (or, before claims existed, executed). Nothing changes it."""
        return self.claim is not None or self.executed is not None

    @property
    def live_approvals(self) -> tuple[Approval, ...]:
        if self.final:
            return tuple(a for a in self.approvals if a.verdict == "approve")
        return tuple(a for a in self.approvals if a.verdict == "approve" and a.expires_at > self.now)

    @property
    def resolution(self) -> str | None:
        """``approved``, ``denied``, ``expired:deny``, ``expired:approve`` or None while open."""
        if self.closed is not None:
            return f"expired:{self.closed.resolution}"
        if self.final:  # acted on: an answer written after that (bypassing the guards) changes nothing
            return "approved"
        if any(a.verdict == "deny" for a in self.approvals):
            return "denied"
        if len(self.live_approvals) >= self.review.approvals_required:
            return "approved"
        return None

    @property
    def status(self) -> str:
        """``open``, ``reopened``, ``approved`` (not yet claimed), ``claimed``, ``denied`` or ``expired``."""
        if self.final:
            return "claimed"
        resolution = self.resolution
        if resolution is None:
            return "reopened" if self.lapsed else "open"
        return "expired" if resolution.startswith("expired") else resolution

    @property
    def assignee(self) -> str | None:
        """Who is asked now: the first assignee, or whoever it was last escalated to."""
        if self.escalations:
            return self.escalations[-1].to
        return self.review.assignees[0] if self.review.assignees else None

    def to_json(self) -> dict[str, Any]:
        """The review as the CLI (``reviews --json``) and the service (``/v1/reviews``) show it."""
        review, intent = self.review, self.intent
        return {
            "review_id": review.id,
            "intent_id": intent.id,
            "binding": review.binding,
            "operation": review.operation,
            "arguments": intent.arguments,
            "agent": intent.agent,
            "reasons": list(review.reasons),
            "policy_ids": list(review.policy_ids),
            "assignee": self.assignee,
            "approvals": f"{sum(a.verdict == 'approve' for a in self.approvals)}/{review.approvals_required}",
            "answers": [
                {"by": a.by, "verdict": a.verdict, "reason": a.reason, "at": a.at, "simulated": a.simulated}
                for a in self.approvals
            ],
            "expires_at": review.expires_at,
            "resolution": self.resolution,
            "state": self.status,
            "claim_id": None if self.claim is None else self.claim.id,
        }


def authenticate(
    approval: Approval, review: Review, intent: Intent, decision: Decision, charter: SystemCharter
) -> None:
    """Raise ApprovalRefused unless ``approval`` is a chartered reviewer's signed answer to this intent."""

    def refuse(code: str, message: str) -> ApprovalRefused:
        return ApprovalRefused(
            f"review {review.id}: {message}", reason_code=code, review_id=review.id, who=approval.by
        )

    if approval.review_id != review.id:
        raise refuse("unknown_review", f"the approval is for review {approval.review_id}")
    if not approval.reason.strip():
        raise refuse("missing_reason", "an answer needs a reason")
    person = charter.person(approval.by)
    if person is None or not {"reviewer", "ri"} & set(person.roles):
        raise refuse(
            "not_a_reviewer", f"{approval.by!r} is not a reviewer in the charter of {charter.system!r}"
        )
    if approval.simulated != person.simulated:
        raise refuse(
            "simulated_mark",
            f"{approval.by!r} is {'a modelled' if person.simulated else 'a real'} person in the charter: "
            f"their answers must say simulated={str(person.simulated).lower()}",
        )
    try:
        verify_signed_by(approval, charter, approval.by)
    except (SignatureInvalid, NotAuthorized) as exc:
        raise refuse("bad_signature", str(exc)) from exc
    if approval.intent_id != intent.id or approval.binding != binding_of(intent, decision.ruleset_hash):
        raise refuse(
            "args_mismatch",
            "it was signed for another intent or other arguments; a changed intent needs a new review",
        )
    if review.binding != approval.binding:
        raise refuse("args_mismatch", "the approval does not bind to what was sent to review")
    if charter.separation_of_duties and intent.on_behalf_of == approval.by:
        raise refuse("own_proposal", f"{approval.by!r} asked for this intent and may not approve it")


def check_approval(approval: Approval, state: ReviewState, charter: SystemCharter, *, now: str) -> None:
    """Raise ApprovalRefused unless ``approval`` may be added to ``state`` now."""
    review = state.review

    def refuse(code: str, message: str) -> ApprovalRefused:
        return ApprovalRefused(
            f"review {review.id}: {message}", reason_code=code, review_id=review.id, who=approval.by
        )

    authenticate(approval, review, state.intent, state.decision, charter)
    # Checked when an answer is given, not when one is read: answers recorded before these
    # checks count as they did.
    if not says_something(approval.reason):
        raise refuse("missing_reason", "an answer needs a reason, with at least one visible sign")
    if tuple(approval.causes) != (review.id,):
        # The review finds its answers by what cites it: one that does not would be recorded
        # and never counted.
        raise refuse(
            "bad_causes",
            f"an answer cites the review it answers and nothing else, not {list(approval.causes)}",
        )
    _check_validity(approval, refuse, now)
    if any(a.id == approval.id for a in (*state.approvals, *state.lapsed)):
        raise refuse("already_used", "this approval was already used; an approval is valid once")
    if state.final:
        done = state.claim.id if state.claim is not None else state.executed.id if state.executed else ""
        raise refuse(
            "already_claimed",
            f"the intent was already claimed for execution ({done}); nothing can change that",
        )
    if state.resolution is not None:
        raise refuse("already_answered", f"the review is already settled ({state.resolution})")
    if any(a.by == approval.by for a in state.approvals):
        raise refuse(
            "already_used", f"{approval.by!r} already answered this review; a stage needs another person"
        )
    if approval.expires_at <= now:
        raise refuse("expired", f"the approval expired at {approval.expires_at}")
    if review.expires_at is not None and review.expires_at <= now:
        raise refuse("expired", f"the review expired at {review.expires_at}")


def _check_validity(approval: Approval, refuse: Callable[[str, str], ApprovalRefused], now: str) -> None:
    """An answer's window is real dates, at most a year long, as ``unsigned_approval`` makes it:
    one signed elsewhere, by another client, is held to the same. It may not be dated ahead of
    ``now`` by more than a signed request may be: an answer from the future would stand before
    the review it answers in every timeline drawn from the ledger (the service refused one; the
    library took it, and ran the call)."""
    try:
        signed, expires = parse_rfc3339(approval.at), parse_rfc3339(approval.expires_at)
    except ValueError as exc:
        raise refuse("bad_expiry", f"its time or expiry is no date ({exc})") from exc
    ahead = (signed - parse_rfc3339(now)) // 1_000_000_000
    if ahead > _AHEAD:
        raise refuse(
            "from_the_future",
            f"it is dated {approval.at}, {ahead:,} s ahead of this clock (at most {_AHEAD} s)",
        )
    if not 0 < expires - signed <= _MAX_VALID_FOR * 1_000_000_000:
        raise refuse(
            "bad_expiry",
            f"it is valid from {approval.at} to {approval.expires_at}; an approval is valid for one "
            f"second to {_MAX_VALID_FOR:,} (a year)",
        )


class ReviewQueue:
    """Reviews as the ledger holds them: read, answer, escalate and expire on the given clock."""

    def __init__(
        self, ledger: LedgerStore, *, clock: Clock, ids: IdSource, charters: CharterHistory | None = None
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.ids = ids
        self.charters = charters or CharterHistory()
        self._latest_ns = 0
        """Each answer is judged by the charter in force where it stands in the ledger, so every
        process and every restart count the same answers."""
        self._dated: tuple[int, int | None, int | None] = (0, None, _UNREAD)
        """The ledger's size when last read, its latest time then, and its newest entry's
        time (``_UNREAD`` until needed)."""

    def state(self, review_id: str) -> ReviewState:
        """Everything recorded about one review.

        Raises:
            ApprovalRefused: ``unknown_review`` when the id is not a review in this ledger.
        """
        head = self.ledger.head(review_key(review_id))  # read first: a later write moves it
        try:
            review = decode_entry(self.ledger.find(review_id).data)
        except EntryNotFound as exc:
            raise ApprovalRefused(
                f"there is no review {review_id!r} in this ledger",
                reason_code="unknown_review",
                review_id=review_id,
            ) from exc
        if not isinstance(review, Review):
            raise ApprovalRefused(
                f"entry {review_id} is a {review.kind}, not a Review",
                reason_code="unknown_review",
                review_id=review_id,
            )
        intent = decode_entry(self.ledger.find(review.intent_id).data)
        decision = decode_entry(self.ledger.find(review.decision_id).data)
        if not isinstance(intent, Intent) or not isinstance(decision, Decision):
            raise RecordInvalid(f"review {review_id} does not point at an Intent and its Decision")
        now = rfc3339(self._now_ns())
        stored = self.ledger.caused_by(review.id)
        history = self.charters.advance(self.ledger)
        followers = [decode_entry(e.data) for e in stored]
        claim = next((f for f in followers if isinstance(f, Claim) and f.intent_id == intent.id), None)
        executed = None if claim is not None else _executed_before_claims(self.ledger, intent.id)
        valid: list[Approval] = []
        for entry, follower in zip(stored, followers, strict=True):
            if isinstance(follower, Approval):
                charter = history.in_force_at(entry.index)
                if charter is None:
                    continue
                try:
                    authenticate(follower, review, intent, decision, charter)
                except ApprovalRefused:
                    continue  # appended by someone who could not have given it: it does not count
                valid.append(follower)
        denials = [a for a in valid if a.verdict == "deny"]
        if claim is not None or executed is not None:
            used = set(claim.causes if claim is not None else executed.causes if executed is not None else ())
            counted = [a for a in valid if a.id in used or a.verdict == "deny"]
            lapsed = [a for a in valid if a.verdict == "approve" and a.id not in used]
        else:
            latest: dict[str, Approval] = {}
            for a in valid:
                if a.verdict == "approve" and a.expires_at > now:
                    latest.setdefault(a.by, a)
            counted = [*denials, *(a for a in latest.values() if not any(d.by == a.by for d in denials))]
            lapsed = [a for a in valid if a.verdict == "approve" and a.expires_at <= now]
        return ReviewState(
            review=review,
            intent=intent,
            decision=decision,
            approvals=tuple(counted),
            escalations=tuple(f for f in followers if isinstance(f, Escalation)),
            closed=next((f for f in followers if isinstance(f, ReviewClosed)), None),
            now=now,
            claim=claim,
            executed=executed,
            head=head,
            lapsed=tuple(lapsed),
        )

    def all(self) -> list[ReviewState]:
        return [self.state(e.id) for e in self.ledger.of_kind("Review")]

    def open(self) -> list[ReviewState]:
        return [s for s in self.all() if s.resolution is None]

    def approval(
        self,
        review_id: str,
        *,
        key: KeyPair,
        verdict: str,
        reason: str,
        valid_for_seconds: int = 3600,
        simulated: bool = False,
    ) -> Approval:
        """A signed answer by the key's owner, bound to the exact intent under review
        (``simulated``: given by a modelled person, as the charter marks them)."""
        state = self.state(review_id)
        record = unsigned_approval(
            review_id=state.review.id,
            intent_id=state.intent.id,
            binding=state.review.binding,
            by=key.identity,
            verdict=verdict,
            reason=reason,
            approval_id=self.ids.new(),
            at_ns=self._now_ns(),
            valid_for_seconds=valid_for_seconds,
            simulated=simulated,
        )
        return sign(record, key)

    async def submit(self, approval: Approval) -> ReviewState:
        """Record a signed answer after checking it; nothing is written if it is refused.

        The answer is appended only if nothing about the review was written since it was
        checked; when another answer won that race, it is checked again against the new state,
        which then refuses it with a precise reason (or accepts it, for a second stage).
        """
        for _ in range(_RACE_RETRIES):
            state = self.state(approval.review_id)
            check_approval(approval, state, self._charter_now(), now=rfc3339(self._now_ns()))
            try:
                await self.ledger.append([approval], guards=[Guard(review_key(state.review.id), state.head)])
            except Conflict:
                continue
            return self.state(approval.review_id)
        raise ApprovalRefused(
            f"review {approval.review_id}: it kept changing while this answer was checked; try again",
            reason_code="busy",
            review_id=approval.review_id,
            who=approval.by,
        )

    def _now_ns(self) -> int:
        """The clock, never earlier than it already said in this process, nor than the latest
        time any runtime clock gave an entry of the ledger (``LedgerStore.latest_time``): an
        approval that lapsed does not come back when the wall clock steps backwards, nor count
        again in another process whose clock is behind (a standby 100 s behind saw "approved"
        and ran the call after the first gateway had seen the approval lapse and written on),
        even after a third process, behind too, wrote on.

        Times their signers chose (a message, an answer) do not count: an agent dating its
        message 299 s ahead moved every review's clock, and closed reviews with ``approve`` as
        their safe default five minutes early. A latest time more than ``SKEW`` ahead of this
        clock is ignored, not trusted in part: it is kept as a maximum, so a writer once a year
        off would have kept every review clock ``SKEW`` ahead for a year; the newest entry's
        time stands in for it then, as it did before the store kept one. Clocks further apart
        than ``SKEW`` are out of step, and it is this machine's clock that is trusted; keep the
        gateways' clocks in step (NTP)."""
        now = self.clock.now_ns()
        latest = self._ledger_ns(now + _AHEAD * 1_000_000_000)
        if latest is not None:
            now = max(now, latest)
        self._latest_ns = max(self._latest_ns, now)
        return self._latest_ns

    def _ledger_ns(self, trusted_to: int) -> int | None:
        """The ledger's latest time if it is no later than ``trusted_to``; else (a writer's
        clock was far ahead once, or the ledger was written before the store kept a latest
        time) its newest entry's time, if the runtime dated it and it is no later. Read again
        only when the ledger grew."""
        size = self.ledger.size()
        if size != self._dated[0]:
            self._dated = (size, self.ledger.latest_time(), _UNREAD)
        _, latest, newest = self._dated
        if latest is not None and latest <= trusted_to:
            return latest
        if newest == _UNREAD:
            newest = None
            if size:
                with contextlib.suppress(RecordInvalid, ValueError):  # verify names a bad entry
                    entry = decode_entry(self.ledger.entry(size - 1).data)
                    newest = None if entry.dated_by_signer else parse_rfc3339(entry.at)
            self._dated = (size, latest, newest)
        return newest if newest is not None and newest <= trusted_to else None

    def _charter_now(self) -> SystemCharter:
        in_force = self.charters.advance(self.ledger).latest()
        if in_force is None:
            return charter_of(self.ledger)  # raises the precise ConfigError
        return in_force

    async def tick(self, *, fence: int | None = None) -> list[Escalation | ReviewClosed]:
        """Escalate overdue reviews one step, and close expired ones with their safe default.

        Each write is guarded by its review's head: one that lost a race to an answer is dropped
        (the next tick sees the answer). ``fence`` is the gateway's lease epoch.
        """
        now_ns = self._now_ns()
        now = rfc3339(now_ns)
        planned: list[tuple[ReviewState, Escalation | ReviewClosed]] = []
        for state in self.open():
            review = state.review
            if review.expires_at is not None and review.expires_at <= now:
                closed = ReviewClosed(
                    id=self.ids.new(),
                    at=now,
                    causes=(review.id,),
                    review_id=review.id,
                    resolution=review.on_expiry,
                    reason=f"unanswered at {review.expires_at}; the safe default is {review.on_expiry}",
                )
                planned.append((state, closed))
                continue
            if review.deadline is None or not review.assignees:
                continue
            due = _add_seconds(review.deadline, review.escalate_every_seconds * len(state.escalations))
            position = review.assignees.index(state.assignee) if state.assignee in review.assignees else 0
            if due <= now and position + 1 < len(review.assignees):
                planned.append(
                    (
                        state,
                        Escalation(
                            id=self.ids.new(),
                            at=now,
                            causes=(review.id,),
                            review_id=review.id,
                            to=review.assignees[position + 1],
                            reason=f"{state.assignee} did not answer by {due}",
                        ),
                    )
                )
        written: list[Escalation | ReviewClosed] = []
        for state, record in planned:
            try:
                await self.ledger.append(
                    [record], fence=fence, guards=[Guard(review_key(state.review.id), state.head)]
                )
            except Conflict:
                continue
            written.append(record)
        return written


def _executed_before_claims(ledger: LedgerStore, intent_id: str) -> Execution | None:
    """The Execution of an intent that has no claim: only a ledger written before claims has one."""
    for stored in ledger.caused_by(intent_id):
        if stored.kind == "Execution":
            record = decode_entry(stored.data)
            if isinstance(record, Execution) and record.intent_id == intent_id:
                return record
    return None


def _add_seconds(stamp: str, seconds: int) -> str:
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) + timedelta(
        seconds=seconds
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_MAX_VALID_FOR = 366 * 24 * 3600
"""The longest an approval stays valid: one valid past the year 9999 has no RFC 3339 form (it
was an OverflowError from the clock); a year is more than any approval waits for the others."""
_AHEAD = SKEW
"""Seconds an answer may be dated ahead of the clock it is checked by: the clock skew a signed
request may have."""
_UNREAD = -1
"""The newest entry's time not read yet (see ``ReviewQueue._ledger_ns``)."""


def unsigned_approval(
    *,
    review_id: str,
    intent_id: str,
    binding: str,
    by: str,
    verdict: str,
    reason: str,
    approval_id: str,
    at_ns: int,
    valid_for_seconds: int,
    simulated: bool = False,
) -> Approval:
    """An answer to a review, ready for its author to sign: the CLI, the service's clients and the
    console all make answers here, so they are signed over exactly the same bytes (``simulated``:
    its author is a modelled person, as the charter marks them).

    Raises:
        ApprovalRefused: no reason, a verdict that is not approve or deny, or a validity under
            one second (``missing_reason``, ``bad_verdict``, ``expired``).
        RecordInvalid: a field does not validate (a name with spaces, say).
    """
    if not says_something(reason):
        raise ApprovalRefused(
            f"review {review_id}: an answer needs a reason, with at least one visible sign",
            reason_code="missing_reason",
            review_id=review_id,
        )
    if verdict not in ("approve", "deny"):
        raise ApprovalRefused(
            f"review {review_id}: the verdict must be approve or deny, not {verdict!r}",
            reason_code="bad_verdict",
            review_id=review_id,
        )
    if not isinstance(valid_for_seconds, int) or not 1 <= valid_for_seconds <= _MAX_VALID_FOR:
        raise ApprovalRefused(
            f"review {review_id}: an approval is valid for one whole second to {_MAX_VALID_FOR:,} (a year)",
            reason_code="expired",
            review_id=review_id,
        )
    try:
        return Approval.model_validate(
            {
                "id": approval_id,
                "at": rfc3339(at_ns),
                "causes": [review_id],
                "review_id": review_id,
                "intent_id": intent_id,
                "verdict": verdict,
                "by": by,
                "reason": reason,
                "binding": binding,
                "expires_at": rfc3339(at_ns + valid_for_seconds * 1_000_000_000),
                "simulated": simulated,
            }
        )
    except ValidationError as exc:
        raise RecordInvalid(f"approval: {'; '.join(problems(exc, 'approval'))}", record="Approval") from exc
