"""Founding documents: the signed SystemCharter and RulesetVersions the RI answers through."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from answerable.clock import Clock, IdSource, SystemClock, rfc3339
from answerable.errors import AnswerableError, ConfigError
from answerable.keys import KeyPair
from answerable.ledger.base import LedgerStore
from answerable.policy import load_ruleset
from answerable.records import AgentIdentity, Person, RulesetVersion, SystemCharter, decode_entry
from answerable.signing import sign, verify_charter

__all__ = ["charter_of", "new_charter", "new_ruleset", "schema_for"]


def new_charter(
    system: str,
    ri: KeyPair,
    *,
    agents: Iterable[str],
    reviewers: Iterable[KeyPair] = (),
    operators: Iterable[KeyPair] = (),
    version: int = 1,
    supersedes: str | None = None,
    handed_over_by: KeyPair | None = None,
    clock: Clock | None = None,
    ids: IdSource | None = None,
) -> SystemCharter:
    """A charter naming ``ri`` as Responsible Individual, signed by them or, when it supersedes
    another, by the RI of that charter (``handed_over_by``)."""
    clock = clock or SystemClock()
    ids = ids or IdSource(clock)
    roles: dict[str, set[str]] = {ri.identity: {"ri"}}
    keys = {ri.identity: ri}
    for role, people in (("reviewer", reviewers), ("operator", operators)):
        for person in people:
            roles.setdefault(person.identity, set()).add(role)
            keys[person.identity] = person
    people_records = tuple(
        Person.model_validate(
            {"identity": name, "public_key": keys[name].public_b64, "roles": sorted(roles[name])}
        )
        for name in sorted(roles)
    )
    charter = SystemCharter(
        id=ids.new(),
        at=rfc3339(clock.now_ns()),
        system=system,
        version=version,
        ri=ri.identity,
        people=people_records,
        agents=tuple(AgentIdentity(name=a) for a in agents),
        supersedes=supersedes,
    )
    return sign(charter, handed_over_by or ri)


def new_ruleset(
    policies: str,
    schema_text: str,
    ri: KeyPair,
    *,
    version: int = 1,
    clock: Clock | None = None,
    ids: IdSource | None = None,
) -> RulesetVersion:
    """A RulesetVersion approved and signed by the RI; validated before it is signed.

    Raises:
        PolicyInvalid: the policies do not parse or do not validate against the schema.
    """
    clock = clock or SystemClock()
    ids = ids or IdSource(clock)
    parsed = load_ruleset(policies, schema_text)
    record = RulesetVersion(
        id=ids.new(),
        at=rfc3339(clock.now_ns()),
        version=version,
        policies=policies,
        schema_text=schema_text,
        ruleset_hash=parsed.ruleset_hash,
        schema_hash=parsed.schema_hash,
        approved_by=ri.identity,
    )
    return sign(record, ri)


def schema_for(operations: Mapping[str, str] | Iterable[str]) -> str:
    """A Cedar schema for operations on the default resource (``Resource`` with a ``class``).

    Enough to govern plain functions with a few lines; real systems write their own schema with
    typed resources and context.
    """
    names = list(operations)
    actions = "\n".join(
        f'action "{name}" appliesTo {{ principal: [Agent], resource: [Resource], context: {{}} }};'
        for name in names
    )
    return f"entity Agent;\nentity Resource {{ class: String }};\n{actions}\n"


def charter_of(ledger: LedgerStore) -> SystemCharter:
    """The charter in force: the end of the chain of charters, each signed by the RI before it.

    A SystemCharter entry that does not chain (signed by someone else, superseding nothing in
    force) is ignored, wherever it came from.
    """
    in_force: SystemCharter | None = None
    for stored in ledger.of_kind("SystemCharter"):
        record = decode_entry(stored.data)
        assert isinstance(record, SystemCharter)
        try:
            verify_charter(record, in_force)
        except AnswerableError:
            continue
        in_force = record
    if in_force is None:
        raise ConfigError(f"ledger {ledger.origin} has no valid SystemCharter: it was never set up with one")
    return in_force
