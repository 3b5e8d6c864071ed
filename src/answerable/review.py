"""Human review: what an approval binds to, and every reason one is refused.

An approval is valid for exactly one intent (its operation, canonical arguments, idempotency key
and the ruleset it was judged under), once, until it expires, from a person the charter names as
a reviewer, signed with their key. Each refusal carries a stable reason code.
"""

from __future__ import annotations

from answerable._canonical import canonical_bytes
from answerable.errors import ApprovalRefused, NotAuthorized, SignatureInvalid
from answerable.records import Approval, Intent, Review, SystemCharter, digest
from answerable.signing import verify_signed_by

__all__ = ["binding_of", "check_approval"]


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


def check_approval(
    approval: Approval,
    review: Review,
    intent: Intent,
    ruleset_hash: str,
    charter: SystemCharter,
    *,
    now: str,
    answered: bool,
) -> None:
    """Raise ApprovalRefused unless ``approval`` may settle ``review`` for ``intent`` now.

    Args:
        now: the current time, RFC 3339 UTC (comparable as text).
        answered: the review already has an accepted answer (an approval is used once).
    """

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
    if approval.intent_id != intent.id or approval.binding != binding_of(intent, ruleset_hash):
        raise refuse(
            "args_mismatch",
            "it was signed for another intent or other arguments; a changed intent needs a new review",
        )
    if review.binding != approval.binding:
        raise refuse("args_mismatch", "the approval does not bind to what was sent to review")
    if answered:
        raise refuse("already_used", "it was already answered; an approval is valid once")
    if approval.expires_at <= now:
        raise refuse("expired", f"the approval expired at {approval.expires_at}")
