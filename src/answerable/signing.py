"""Signatures of people named in the charter over records: charters, rulesets, resumes."""

from __future__ import annotations

from typing import TypeVar

from answerable.errors import NotAuthorized, SignatureInvalid
from answerable.keys import KeyPair, verify_signature
from answerable.records import Record, RulesetVersion, SystemCharter, signing_bytes

__all__ = ["require_role", "sign", "verify_charter", "verify_ruleset", "verify_signed_by"]

R = TypeVar("R", bound=Record)


def sign(record: R, key: KeyPair) -> R:
    """Return ``record`` with ``signature`` set to ``key``'s signature over the rest of it."""
    return record.model_copy(update={"signature": key.sign(signing_bytes(record))})


def verify_signed_by(record: Record, charter: SystemCharter, identity: str) -> None:
    """Raise unless ``record`` carries a valid signature by ``identity`` as the charter knows them."""
    person = charter.person(identity)
    if person is None:
        raise NotAuthorized(
            f"{identity!r} is not a person in the charter of {charter.system!r}",
            who=identity,
            reason_code="unknown_person",
        )
    verify_signature(
        person.public_key, getattr(record, "signature", None), signing_bytes(record), who=identity
    )


def require_role(charter: SystemCharter, identity: str, *roles: str) -> None:
    """Raise NotAuthorized unless ``identity`` holds one of ``roles`` in the charter."""
    person = charter.person(identity)
    if person is None or not set(roles) & set(person.roles):
        raise NotAuthorized(
            f"{identity!r} may not do this: the charter of {charter.system!r} requires the role "
            f"{' or '.join(roles)}",
            who=identity,
            reason_code="not_authorized",
        )


def verify_charter(charter: SystemCharter, in_force: SystemCharter | None = None) -> None:
    """A first charter is valid when its RI holds the ``ri`` role and signed it; a later one only
    when it supersedes the charter in force and that charter's RI signed it (a handover).

    Without the second rule, anyone able to append to the ledger could name themselves RI.
    """
    require_role(charter, charter.ri, "ri")
    signer = charter if in_force is None else in_force
    if in_force is not None and charter.supersedes != in_force.id:
        raise NotAuthorized(
            f"charter {charter.id} does not supersede the charter in force {in_force.id}",
            who=charter.ri,
            reason_code="not_in_chain",
        )
    try:
        verify_signed_by(charter, signer, signer.ri)
    except SignatureInvalid as exc:
        raise SignatureInvalid(
            f"charter {charter.id} of {charter.system!r} must be signed by the RI in force, "
            f"{signer.ri}: {exc}"
        ) from exc


def verify_ruleset(ruleset: RulesetVersion, charter: SystemCharter) -> None:
    """A ruleset takes effect only when the charter's RI approved and signed it."""
    if ruleset.approved_by != charter.ri:
        raise NotAuthorized(
            f"ruleset v{ruleset.version} was approved by {ruleset.approved_by!r}, not the RI {charter.ri!r}",
            who=ruleset.approved_by,
            reason_code="not_the_ri",
        )
    verify_signed_by(ruleset, charter, charter.ri)
