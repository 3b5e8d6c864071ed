"""Founding documents: the signed SystemCharter and RulesetVersions the RI answers through."""

from __future__ import annotations

import base64
import bisect
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from answerable.clock import Clock, IdSource, SystemClock, rfc3339
from answerable.errors import AnswerableError, ConfigError, NotAuthorized, PolicyInvalid
from answerable.keys import KeyPair, public_key_problem
from answerable.ledger.base import LedgerStore
from answerable.records import Coordination, RulesetVersion, SystemCharter, decode_as, problems
from answerable.signing import sign, verify_charter

__all__ = [
    "CharterHistory",
    "amend_charter",
    "charter_at",
    "charter_of",
    "new_charter",
    "new_ruleset",
    "schema_for",
]


def new_charter(
    system: str,
    ri: KeyPair,
    *,
    agents: Iterable[str],
    reviewers: Iterable[KeyPair] = (),
    operators: Iterable[KeyPair] = (),
    agent_keys: Mapping[str, str] | None = None,
    simulated: Iterable[str] = (),
    coordination: Coordination | Mapping[str, Any] | None = None,
    version: int = 1,
    supersedes: str | None = None,
    handed_over_by: KeyPair | None = None,
    clock: Clock | None = None,
    ids: IdSource | None = None,
) -> SystemCharter:
    """A charter naming ``ri`` as Responsible Individual, signed by them or, when it supersedes
    another, by the RI of that charter (``handed_over_by``). ``agent_keys`` gives agents that
    sign their own requests (to the service) their Ed25519 public key, base64. ``simulated``
    names the reviewers or operators who are modelled people (a scenario's desk), not humans:
    the charter marks them, and every answer they give must say so. ``coordination`` is the
    contract of the channels the agents may use (see :mod:`answerable.contract`); without one,
    agents may talk freely and every message is still recorded.

    Raises:
        ConfigError: a name is empty or holds whitespace, ``version`` is below 1, the
            contract names an unknown agent or holds a bad schema (naming the field), or ``ri``
            is not a KeyPair.
    """
    ri = _key_of(ri, f"charter of {system!r}")
    agents, modelled = _names(agents, "agents"), set(_names(simulated, "simulated"))
    if len(set(agents)) != len(agents):
        raise ConfigError(f"agent {sorted(a for a in agents if agents.count(a) > 1)[0]!r} is named twice")
    for name, key in (agent_keys or {}).items():
        if name not in agents:  # a typo'd name: its key would be dropped, and the agent keyless
            raise ConfigError(f"agent_keys names {name!r}, which is not one of the agents")
        if not isinstance(key, str) or not _is_public_key(key):
            raise ConfigError(
                f"{name}: the key given is not a base64 Ed25519 public key (32 bytes, not of small order)"
            )
    clock = clock or SystemClock()
    ids = ids or IdSource(clock)
    if ri.identity in modelled:
        raise ConfigError(f"the RI {ri.identity} answers for the system: a real person, never simulated")
    roles: dict[str, set[str]] = {ri.identity: {"ri"}}
    keys = {ri.identity: ri}
    for role, people in (("reviewer", reviewers), ("operator", operators)):
        for person in people:
            if not isinstance(person, KeyPair):  # the charter lists their public key, read from it
                raise ConfigError(f"{role}s: give each as a KeyPair, not a {type(person).__name__}")
            roles.setdefault(person.identity, set()).add(role)
            keys[person.identity] = person
    unknown = modelled - set(roles)
    if unknown:
        raise ConfigError(f"simulated {sorted(unknown)[0]!r} is no reviewer or operator of this charter")
    both = set(agents) & set(roles)
    if both:
        raise ConfigError(f"{sorted(both)[0]!r} would be both an agent and a person; give them two names")
    try:
        charter = SystemCharter.model_validate(
            {
                "id": ids.new(),
                "at": rfc3339(clock.now_ns()),
                "system": system,
                "version": version,
                "ri": ri.identity,
                "people": [
                    {
                        "identity": name,
                        "public_key": keys[name].public_b64,
                        "roles": sorted(roles[name]),
                        **({"simulated": True} if name in modelled else {}),
                    }
                    for name in sorted(roles)
                ],
                "agents": [
                    {"name": a, **({"public_key": agent_keys[a]} if agent_keys and a in agent_keys else {})}
                    for a in agents
                ],
                "supersedes": supersedes,
                **_contract(coordination),
            }
        )
    except ValidationError as exc:
        raise ConfigError(f"charter of {system!r}: {'; '.join(problems(exc, 'charter'))}") from exc
    if charter.coordination is not None:
        from answerable.contract import check_contract  # only where a charter is written

        check_contract(charter.coordination, charter.agent_names())
    return sign(charter, handed_over_by or ri)


def _contract(coordination: Coordination | Mapping[str, Any] | None) -> dict[str, Any]:
    if coordination is None:
        return {}
    if isinstance(coordination, Coordination):
        return {"coordination": coordination.model_dump(mode="json")}
    return {"coordination": dict(coordination)}


def amend_charter(
    charter: SystemCharter,
    ri: KeyPair,
    *,
    agents: Mapping[str, str | None] | None = None,
    people: Mapping[str, tuple[str, Iterable[str]]] | None = None,
    revoke: Iterable[str] = (),
    coordination: Coordination | Mapping[str, Any] | None = None,
    clock: Clock | None = None,
    ids: IdSource | None = None,
) -> SystemCharter:
    """The next version of ``charter``, signed by its RI: keys added, rotated or revoked, or a
    new coordination contract (``coordination``; the one in force is kept when None).

    ``agents``: name -> public key (base64), or None for an agent that signs nothing; an agent
    already named gets the new key. ``people``: identity -> (public key, roles), added or
    replaced (roles ``reviewer`` and ``operator``). ``revoke``: agents lose their key (they stay
    in the charter and can no longer sign requests), people leave the charter. Anything signed
    with a removed key after the new version stands in the ledger is refused, as everything is
    judged by the charter in force at its position. The RI's own key changes only by a handover.

    Raises:
        NotAuthorized: ``ri`` is not the charter's RI.
        SignatureInvalid: ``ri`` bears the RI's name but not the RI's key.
        ConfigError: a change would touch the RI, a revoked name is in neither list, a role is
            unknown, a key is not a public key, or a name would be both an agent and a person.
    """
    if ri.identity != charter.ri:
        raise NotAuthorized(
            f"only the RI {charter.ri} amends the charter, not {ri.identity}",
            who=ri.identity,
            reason_code="not_the_ri",
        )
    agent_keys = {a.name: a.public_key for a in charter.agents}
    modelled = {p.identity for p in charter.people if p.simulated}  # a modelled person stays one
    persons: dict[str, tuple[str, tuple[str, ...]]] = {
        p.identity: (p.public_key, tuple(p.roles)) for p in charter.people
    }
    for name in (*(people or {}), *revoke):
        if name == charter.ri:  # the RI asking for what cannot be: input, not a refusal of who asks
            raise ConfigError(f"{name} is the RI: the RI's key changes by a handover, not an amendment")
    for name in revoke:
        if name in persons:
            del persons[name]
        elif name in agent_keys:
            agent_keys[name] = None
        else:
            raise ConfigError(f"cannot revoke {name!r}: it is neither an agent nor a person in the charter")
    agent_keys.update(agents or {})
    for identity, (public_key, roles) in (people or {}).items():
        given = set(roles)
        if not given or not given <= {"reviewer", "operator"}:
            raise ConfigError(f"{identity}: roles must be reviewer and/or operator, not {list(roles)}")
        kept = set(persons.get(identity, ("", ()))[1])  # a rotated key keeps the roles it had
        persons[identity] = (public_key, tuple(sorted(kept | given)))
    for name, key in [*agent_keys.items(), *((n, k) for n, (k, _) in persons.items())]:
        if key is not None and not _is_public_key(key):
            raise ConfigError(
                f"{name}: {key!r} is not a base64 Ed25519 public key (32 bytes, not of small order)"
            )
    both = set(agent_keys) & set(persons)
    if both:
        raise ConfigError(f"{sorted(both)[0]!r} would be both an agent and a person; give them two names")
    clock = clock or SystemClock()
    ids = ids or IdSource(clock)
    try:
        amended = SystemCharter.model_validate(
            {
                **charter.model_dump(mode="json", exclude={"signature"}),
                "id": ids.new(),
                "at": rfc3339(clock.now_ns()),
                "version": charter.version + 1,
                "supersedes": charter.id,
                "people": [
                    {
                        "identity": name,
                        "public_key": key,
                        "roles": list(roles),
                        **({"simulated": True} if name in modelled else {}),
                    }
                    for name, (key, roles) in sorted(persons.items())
                ],
                "agents": [
                    {"name": name, **({"public_key": key} if key else {})} for name, key in agent_keys.items()
                ],
                **_contract(coordination),
            }
        )
    except ValidationError as exc:
        raise ConfigError(f"charter of {charter.system!r}: {'; '.join(problems(exc, 'charter'))}") from exc
    if amended.coordination is not None:
        from answerable.contract import check_contract  # only where a charter is written

        check_contract(amended.coordination, amended.agent_names())
    signed = sign(amended, ri)
    verify_charter(signed, charter)  # a key file that only claims the RI's name is refused here
    return signed


def _names(given: Iterable[str], what: str) -> list[str]:
    """``given`` as a list of names; one string is refused, not read as its characters (agents
    ``b``, ``i``, ``l``, ... for ``agents="billing-bot"``)."""
    if isinstance(given, str | bytes):
        raise ConfigError(f"{what}: give a list of names, not one string ({what}=[{given!r}])")
    if not isinstance(given, Iterable):
        raise ConfigError(f"{what}: give a list of names, not {type(given).__name__}")
    return list(given)


def _key_of(ri: object, what: str) -> KeyPair:
    """The RI's key, or a ConfigError naming what was given instead (its identity and signature
    are read from it: anything else failed deep inside as an AttributeError)."""
    if not isinstance(ri, KeyPair):
        raise ConfigError(
            f"{what}: the RI signs with a KeyPair (KeyPair.load(path)), not {type(ri).__name__}"
        )
    return ri


def _is_public_key(text: str) -> bool:
    """A base64 Ed25519 public key someone can hold the private half of: 32 bytes, a point of
    the curve, not of small order (``keys.public_key_problem``; an audit found a key of zeros
    taken, under which anyone could forge that agent's signatures)."""
    try:
        return public_key_problem(base64.b64decode(text, validate=True)) is None
    except ValueError:
        return False


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
        PolicyInvalid: the policies do not parse or do not validate against the schema, or their
            review terms are out of bounds (see ``ReviewTerms.bounds_problem``).
        ConfigError: ``version`` is below 1, the RI's identity is not a name, or ``ri`` is not
            a KeyPair.
    """
    ri = _key_of(ri, f"ruleset v{version}")
    clock = clock or SystemClock()
    ids = ids or IdSource(clock)
    from answerable.policy import load_ruleset  # Cedar, only where a ruleset is made

    parsed = load_ruleset(policies, schema_text)
    for name, terms in parsed.terms.items():
        problem = terms.bounds_problem(name)
        if problem is not None:
            raise PolicyInvalid(problem, errors=(name,))
    try:
        record = RulesetVersion.model_validate(
            {
                "id": ids.new(),
                "at": rfc3339(clock.now_ns()),
                "version": version,
                "policies": policies,
                "schema_text": schema_text,
                "ruleset_hash": parsed.ruleset_hash,
                "schema_hash": parsed.schema_hash,
                "approved_by": ri.identity,
            }
        )
    except ValidationError as exc:
        raise ConfigError(f"ruleset v{version}: {'; '.join(problems(exc, 'ruleset'))}") from exc
    return sign(record, ri)


def schema_for(operations: Mapping[str, Mapping[str, str]] | Iterable[str]) -> str:
    """A Cedar schema for operations on the default resource (``Resource`` with a ``class``).

    Given names only, rules see who calls what. Given each operation's arguments and their Cedar
    types, ``{"billing.invoice": {"customer": "String", "cents": "Long"}}``, rules also see the
    argument values as the request's context (``when { context.cents > 100000 }``): register the
    operation with ``context=arguments_as_context`` so the gateway hands them over. Enough to
    govern plain functions in a few lines; real systems write their own schema.

    Raises:
        ConfigError: a name or type that would not make a valid schema.
    """
    if isinstance(operations, str | bytes) or not isinstance(operations, Mapping | Iterable):
        # One string would be read as its letters: an action per character.
        raise ConfigError(
            f"schema_for: give the operations' names (a list) or {{name: {{argument: Cedar type}}}}, "
            f"not a {type(operations).__name__}"
        )
    typed = dict(operations) if isinstance(operations, Mapping) else {name: {} for name in operations}
    actions = []
    for name, arguments in typed.items():
        if not isinstance(name, str) or not isinstance(arguments, Mapping) or '"' in name or "\\" in name:
            raise ConfigError(f"schema_for: operation {name!r}: give its arguments as {{name: Cedar type}}")
        fields = []
        for argument, cedar_type in arguments.items():
            if (
                not isinstance(argument, str)
                or not argument.isidentifier()
                or not str(cedar_type).replace("<", "").replace(">", "").isalnum()
            ):
                raise ConfigError(f"schema_for: {name}.{argument}: {cedar_type!r} is not a Cedar type name")
            fields.append(f"{argument}: {cedar_type}")
        context = "{ " + ", ".join(fields) + " }" if fields else "{}"
        actions.append(
            f'action "{name}" appliesTo {{ principal: [Agent], resource: [Resource], context: {context} }};'
        )
    text = "entity Agent;\nentity Resource { class: String };\n" + "\n".join(actions) + "\n"
    import cedarpy  # only where a schema is made: the halt's path imports this module

    try:  # a type Cedar does not know ("Strng") is found now, not when a ruleset is signed
        cedarpy.Schema.from_str(text)
    except ValueError as exc:
        raise ConfigError(f"schema_for: the schema does not parse: {exc}") from exc
    return text


class CharterHistory:
    """The chain of charters of one ledger by ledger position, folded incrementally.

    Whatever depends on who held which role (a resume, an approval, who answers for an entry)
    must be judged by the charter in force where that entry stands in the ledger, not by the one
    in force when someone happens to look: otherwise a process started after a handover reads
    the same ledger differently from one that was running through it. Each SystemCharter entry
    is checked once, against the charter in force just before it; one that does not chain
    (signed by someone else, superseding nothing in force, or not a charter at all) is ignored,
    wherever it came from. Safe to share between threads.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        """Ledger index of each charter that took effect, ascending."""
        self._charters: list[SystemCharter] = []
        self._seen = -1
        self._lock = threading.Lock()

    def advance(self, ledger: LedgerStore) -> CharterHistory:
        """Fold the SystemCharter entries appended since the last call; one indexed query.

        To judge an entry at index ``i``, call this after reading that entry: every charter
        before ``i`` was committed before it, so it is seen.
        """
        with self._lock:
            for stored in ledger.of_kind("SystemCharter", after=self._seen):
                self._seen = stored.index
                record = _charter_in(stored.data)
                if record is None:
                    continue
                try:
                    verify_charter(record, self._charters[-1] if self._charters else None)
                except AnswerableError:
                    continue
                self._starts.append(stored.index)
                self._charters.append(record)
        return self

    def at(self, index: int) -> SystemCharter:
        """The charter in force at ledger position ``index``: the last one that took effect at or
        before it, as far as :meth:`advance` has read.

        Raises:
            ConfigError: no charter had taken effect by then.
        """
        found = self.in_force_at(index)
        if found is None:
            raise ConfigError(
                f"no valid SystemCharter was in force at ledger entry {index}: the ledger was set up "
                "without one, or the entry comes before it"
            )
        return found

    def in_force_at(self, index: int) -> SystemCharter | None:
        """Like :meth:`at`, but None where no charter was in force (nobody answers there)."""
        with self._lock:
            position = bisect.bisect_right(self._starts, index)
            return self._charters[position - 1] if position else None

    def latest(self) -> SystemCharter | None:
        """The charter in force after the last entry :meth:`advance` read, if any."""
        with self._lock:
            return self._charters[-1] if self._charters else None


def _charter_in(data: bytes) -> SystemCharter | None:
    """The charter a SystemCharter entry holds, or None when its bytes are not one (never a link)."""
    return decode_as(data, SystemCharter)


def charter_at(ledger: LedgerStore, index: int) -> SystemCharter:
    """The charter in force at ledger position ``index`` (a one-off read; keep a
    :class:`CharterHistory` to ask often).

    Raises:
        ConfigError: no charter had taken effect by then.
    """
    return CharterHistory().advance(ledger).at(index)


def charter_of(ledger: LedgerStore) -> SystemCharter:
    """The charter in force now: the end of the chain of charters, each signed by the RI before it.

    A SystemCharter entry that does not chain (signed by someone else, superseding nothing in
    force) is ignored, wherever it came from.

    Raises:
        ConfigError: the ledger holds no valid charter.
    """
    in_force = CharterHistory().advance(ledger).latest()
    if in_force is None:
        raise ConfigError(f"ledger {ledger.origin} has no valid SystemCharter: it was never set up with one")
    return in_force
