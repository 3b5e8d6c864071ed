"""Human review: the queue of intents waiting for a person, and every reason an answer is refused.

An approval is valid for exactly one intent (its operation, canonical arguments, idempotency key
and the ruleset it was judged under), once, until it expires, from a person the charter names as
a reviewer, signed with their key, and not from the person who asked for the intent when the
charter separates duties. A rule may ask for several approvers; the intent runs once enough
distinct people approved, and any one denial refuses it. Unanswered reviews escalate along their
assignees (finally to the RI) and, when they expire, close with the safe default their rule
names. Each refusal carries a stable reason code. The queue lives in the ledger, so a person can
answer from another process (the CLI) and the running gateway finds the answer there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from answerable._canonical import canonical_bytes
from answerable.charter import charter_of
from answerable.clock import Clock, IdSource, rfc3339
from answerable.errors import ApprovalRefused, EntryNotFound, NotAuthorized, SignatureInvalid
from answerable.keys import KeyPair
from answerable.ledger.base import LedgerStore
from answerable.records import (
    Approval,
    Decision,
    Escalation,
    Intent,
    Review,
    ReviewClosed,
    SystemCharter,
    decode_entry,
    digest,
)
from answerable.signing import sign, verify_signed_by

__all__ = ["ReviewQueue", "ReviewState", "authenticate", "binding_of", "check_approval"]


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
    """The answers that verify (signature, role, binding, separation of duties), one per person;
    anything else appended to the ledger under this review is ignored."""
    escalations: tuple[Escalation, ...]
    closed: ReviewClosed | None
    now: str
    """When this state was read: approvals count only until they expire."""

    @property
    def live_approvals(self) -> tuple[Approval, ...]:
        return tuple(a for a in self.approvals if a.verdict == "approve" and a.expires_at > self.now)

    @property
    def resolution(self) -> str | None:
        """``approved``, ``denied``, ``expired:deny``, ``expired:approve`` or None while open."""
        if self.closed is not None:
            return f"expired:{self.closed.resolution}"
        if any(a.verdict == "deny" for a in self.approvals):
            return "denied"
        if len(self.live_approvals) >= self.review.approvals_required:
            return "approved"
        return None

    @property
    def assignee(self) -> str | None:
        """Who is asked now: the first assignee, or whoever it was last escalated to."""
        if self.escalations:
            return self.escalations[-1].to
        return self.review.assignees[0] if self.review.assignees else None


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
    if any(a.id == approval.id for a in state.approvals):
        raise refuse("already_used", "this approval was already used; an approval is valid once")
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


class ReviewQueue:
    """Reviews as the ledger holds them: read, answer, escalate and expire on the given clock."""

    def __init__(self, ledger: LedgerStore, *, clock: Clock, ids: IdSource) -> None:
        self.ledger = ledger
        self.clock = clock
        self.ids = ids

    def state(self, review_id: str) -> ReviewState:
        """Everything recorded about one review.

        Raises:
            ApprovalRefused: ``unknown_review`` when the id is not a review in this ledger.
        """
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
        assert isinstance(intent, Intent)
        assert isinstance(decision, Decision)
        followers = [decode_entry(e.data) for e in self.ledger.caused_by(review.id)]
        charter = charter_of(self.ledger)
        approvals: dict[str, Approval] = {}
        for follower in followers:
            if isinstance(follower, Approval) and follower.by not in approvals:
                try:
                    authenticate(follower, review, intent, decision, charter)
                except ApprovalRefused:
                    continue  # appended by someone who could not have given it: it does not count
                approvals[follower.by] = follower
        return ReviewState(
            review=review,
            intent=intent,
            decision=decision,
            approvals=tuple(approvals.values()),
            escalations=tuple(f for f in followers if isinstance(f, Escalation)),
            closed=next((f for f in followers if isinstance(f, ReviewClosed)), None),
            now=rfc3339(self.clock.now_ns()),
        )

    def all(self) -> list[ReviewState]:
        return [self.state(e.id) for e in self.ledger.of_kind("Review")]

    def open(self) -> list[ReviewState]:
        return [s for s in self.all() if s.resolution is None]

    def approval(
        self, review_id: str, *, key: KeyPair, verdict: str, reason: str, valid_for_seconds: int = 3600
    ) -> Approval:
        """A signed answer by the key's owner, bound to the exact intent under review."""
        state = self.state(review_id)
        if not reason.strip():
            raise ApprovalRefused(
                f"review {review_id}: an answer needs a reason",
                reason_code="missing_reason",
                review_id=review_id,
            )
        now = self.clock.now_ns()
        return sign(
            Approval.model_validate(
                {
                    "id": self.ids.new(),
                    "at": rfc3339(now),
                    "causes": [state.review.id],
                    "review_id": state.review.id,
                    "intent_id": state.intent.id,
                    "verdict": verdict,
                    "by": key.identity,
                    "reason": reason,
                    "binding": state.review.binding,
                    "expires_at": rfc3339(now + valid_for_seconds * 1_000_000_000),
                }
            ),
            key,
        )

    async def submit(self, approval: Approval) -> ReviewState:
        """Record a signed answer after checking it; nothing is written if it is refused."""
        state = self.state(approval.review_id)
        check_approval(approval, state, charter_of(self.ledger), now=rfc3339(self.clock.now_ns()))
        await self.ledger.append([approval])
        return self.state(approval.review_id)

    async def tick(self) -> list[Escalation | ReviewClosed]:
        """Escalate overdue reviews one step, and close expired ones with their safe default."""
        now_ns = self.clock.now_ns()
        now = rfc3339(now_ns)
        written: list[Escalation | ReviewClosed] = []
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
                written.append(closed)
                continue
            if review.deadline is None or not review.assignees:
                continue
            due = _add_seconds(review.deadline, review.escalate_every_seconds * len(state.escalations))
            position = review.assignees.index(state.assignee) if state.assignee in review.assignees else 0
            if due <= now and position + 1 < len(review.assignees):
                written.append(
                    Escalation(
                        id=self.ids.new(),
                        at=now,
                        causes=(review.id,),
                        review_id=review.id,
                        to=review.assignees[position + 1],
                        reason=f"{state.assignee} did not answer by {due}",
                    )
                )
        if written:
            await self.ledger.append(written)
        return written


def _add_seconds(stamp: str, seconds: int) -> str:
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) + timedelta(
        seconds=seconds
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
