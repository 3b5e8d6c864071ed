"""Cedar policy: load a ruleset once, then decide allow, deny or review for each request.

Review is expressed in Cedar itself: a ``forbid`` policy annotated ``@review("why")`` does not
refuse, it sends the intent to a person. So all rules stay in one language, one file, one hash.
The effect is ``review`` only when review policies alone stand between the request and an Allow
(the request is evaluated again without them); any plain forbid, no matching permit, or any
evaluation error is a ``deny``: a person can lift a review, never a refusal.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cedarpy
import orjson

from answerable._canonical import is_simple_json, json_problems
from answerable._nesting import refuse_too_deep
from answerable.errors import PolicyInvalid, RecordInvalid

__all__ = [
    "CedarRequest",
    "ReviewTerms",
    "Ruleset",
    "Verdict",
    "decide",
    "decide_many",
    "diff_policies",
    "load_ruleset",
]

Effect = Literal["allow", "deny", "review"]


@dataclass(frozen=True, slots=True)
class CedarRequest:
    """One complete Cedar question: who, what, on which resource, in which context, with which entities."""

    principal: tuple[str, str]
    action: str
    resource: tuple[str, str]
    context: Mapping[str, Any]
    entities: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_record(cls, request: Mapping[str, Any], entities: Sequence[Mapping[str, Any]]) -> CedarRequest:
        """Rebuild a request from a recorded Decision, to evaluate it again under other rules.

        Raises:
            RecordInvalid: the recorded request lacks a principal, action, resource or context.
        """
        try:
            return cls(
                principal=(request["principal"]["type"], request["principal"]["id"]),
                action=request["action"]["id"],
                resource=(request["resource"]["type"], request["resource"]["id"]),
                context=request["context"],
                entities=tuple(entities),
            )
        except (KeyError, TypeError) as exc:
            raise RecordInvalid(
                f"a recorded Cedar request needs principal, action and resource (each with type and "
                f"id) and a context; this one has no {exc}",
                record="Decision",
            ) from exc

    def to_json(self) -> dict[str, Any]:
        """The request as recorded in a Decision, enough to evaluate it again later."""
        return {
            "principal": {"type": self.principal[0], "id": self.principal[1]},
            "action": {"type": "Action", "id": self.action},
            "resource": {"type": self.resource[0], "id": self.resource[1]},
            "context": dict(self.context),
        }


MAX_APPROVALS = 1_000
MAX_REVIEW_MINUTES = 10 * 366 * 24 * 60
"""Bounds of the review annotations a new ruleset may be signed with (ten years). A ruleset
signed before them still loads: the gateway holds a deadline past the year 9999 (which has no
RFC 3339 form) at the last instant a record can say."""


@dataclass(frozen=True, slots=True)
class ReviewTerms:
    """What the review policies that matched ask of the people answering.

    Set per policy by annotations next to ``@review``: ``@approvals("2")`` distinct approvers,
    ``@deadline_minutes("30")`` before escalating to the next reviewer (finally the RI),
    ``@expires_minutes("240")`` before the review closes, and ``@on_expiry("approve")`` if the
    safe default is to proceed (deny unless stated). When several match, the strictest wins.
    """

    approvals: int = 1
    deadline_minutes: int = 60
    expires_minutes: int = 240
    on_expiry: Literal["deny", "approve"] = "deny"

    @classmethod
    def from_annotations(cls, name: str, notes: Mapping[str, str]) -> ReviewTerms:
        try:
            terms = cls(
                approvals=int(notes.get("approvals", "1")),
                deadline_minutes=int(notes.get("deadline_minutes", "60")),
                expires_minutes=int(notes.get("expires_minutes", "240")),
                on_expiry="approve" if notes.get("on_expiry") == "approve" else "deny",
            )
        except ValueError as exc:
            raise PolicyInvalid(f"policy {name!r}: a review annotation is not a whole number: {exc}") from exc
        if notes.get("on_expiry", "deny") not in ("deny", "approve"):
            raise PolicyInvalid(f'policy {name!r}: @on_expiry must be "deny" or "approve"')
        if (
            terms.approvals < 1
            or terms.deadline_minutes < 1
            or terms.expires_minutes < terms.deadline_minutes
        ):
            raise PolicyInvalid(
                f"policy {name!r}: needs approvals >= 1, deadline_minutes >= 1 and "
                "expires_minutes >= deadline_minutes"
            )
        return terms

    def bounds_problem(self, name: str) -> str | None:
        """Why a new ruleset may not be signed with these terms, or None: more approvers than any
        review gathers, or a deadline or expiry past ten years (one past the year 9999 has no
        RFC 3339 form). Asked where a ruleset is signed, not where one is loaded."""
        if self.approvals > MAX_APPROVALS or self.expires_minutes > MAX_REVIEW_MINUTES:
            return (
                f"policy {name!r}: needs approvals <= {MAX_APPROVALS:,} and expires_minutes <= "
                f"{MAX_REVIEW_MINUTES:,} (ten years)"
            )
        return None

    def strictest(self, other: ReviewTerms) -> ReviewTerms:
        return ReviewTerms(
            approvals=max(self.approvals, other.approvals),
            deadline_minutes=min(self.deadline_minutes, other.deadline_minutes),
            expires_minutes=min(self.expires_minutes, other.expires_minutes),
            on_expiry="deny" if "deny" in (self.on_expiry, other.on_expiry) else "approve",
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What Cedar decided and why."""

    effect: Effect
    policy_ids: tuple[str, ...]
    errors: tuple[str, ...] = ()
    review_reasons: tuple[str, ...] = ()
    review: ReviewTerms | None = None
    """How the review must be answered, when the effect is ``review``."""


@dataclass(frozen=True, slots=True)
class Ruleset:
    """Policies and schema, parsed and validated once."""

    policies: str
    schema_text: str
    ruleset_hash: str
    schema_hash: str
    policy_set: Any = field(repr=False)
    without_review: Any = field(repr=False)
    """The same policies less the review forbids: would the request be allowed but for review?"""
    schema: Any = field(repr=False)
    names: Mapping[str, str] = field(repr=False)
    """Cedar's internal policy id (``policy3``) to the stable ``@id`` annotation, when given."""
    review: Mapping[str, str] = field(repr=False)
    """Stable policy id to the reason of its ``@review`` annotation."""
    terms: Mapping[str, ReviewTerms] = field(repr=False)
    """Stable policy id of each review policy to how its reviews are answered."""
    annotations: Mapping[str, Mapping[str, str]] = field(repr=False)
    verdicts: dict[tuple[str, tuple[str, ...]], tuple[Verdict | None, tuple[str, ...]]] = field(
        default_factory=dict, repr=False, compare=False
    )
    """Cedar's answers without errors (decision and policies), each turned into its verdict once:
    a gateway decides the same few combinations all day, and the turning costs more than the
    look-up. Bounded by :data:`_VERDICTS_KEPT`."""


def load_ruleset(policies: str, schema_text: str) -> Ruleset:
    """Parse and validate policies against their schema.

    Raises:
        PolicyInvalid: naming each parse or validation error.
    """
    if not isinstance(policies, str) or not isinstance(schema_text, str):
        kinds = f"{type(policies).__name__} and {type(schema_text).__name__}"
        raise PolicyInvalid(f"policies and schema must be text, not {kinds}")
    refuse_too_deep(schema_text, schema=True)
    refuse_too_deep(policies)
    try:
        # Cedar's JSON schema format too: `rules export` writes schema.json for one, and replay
        # and the storm's --rules take it.
        json_schema = schema_text.lstrip().startswith("{")
        schema = (cedarpy.Schema.from_json_str if json_schema else cedarpy.Schema.from_str)(schema_text)
    except ValueError as exc:
        raise PolicyInvalid(f"Cedar schema does not parse: {exc}", errors=(str(exc),)) from exc
    try:
        policy_set = cedarpy.PolicySet.from_str(policies)
        parsed = _json_form(policies)
    except ValueError as exc:
        raise PolicyInvalid(f"Cedar policies do not parse: {exc}", errors=(str(exc),)) from exc
    result = cedarpy.validate_policies(policies, schema)
    if not result.validation_passed:
        errors = tuple(str(e) for e in result.errors)
        raise PolicyInvalid(
            "Cedar policies do not validate against the schema: " + "; ".join(errors), errors=errors
        )
    names: dict[str, str] = {}
    review: dict[str, str] = {}
    terms: dict[str, ReviewTerms] = {}
    annotations: dict[str, dict[str, str]] = {}
    for internal_id, body in parsed.get("staticPolicies", {}).items():
        notes = dict(body.get("annotations") or {})
        name = notes.get("id", internal_id)
        if name in annotations:
            raise PolicyInvalid(
                f"two policies share the id {name!r}; each @id must be unique", errors=(name,)
            )
        names[internal_id] = name
        annotations[name] = notes
        if "review" in notes:
            if body.get("effect") != "forbid":
                raise PolicyInvalid(
                    f"policy {name!r} has @review but is a permit; only a forbid can route to review",
                    errors=(name,),
                )
            review[name] = notes["review"] or name
            terms[name] = ReviewTerms.from_annotations(name, notes)
    plain = dict(parsed)
    plain["staticPolicies"] = {
        k: v for k, v in parsed.get("staticPolicies", {}).items() if names[k] not in review
    }
    return Ruleset(
        policies=policies,
        schema_text=schema_text,
        ruleset_hash=hashlib.sha256(policies.encode()).hexdigest(),
        schema_hash=hashlib.sha256(schema_text.encode()).hexdigest(),
        policy_set=policy_set,
        without_review=_from_json_form(plain),
        schema=schema,
        names=names,
        review=review,
        terms=terms,
        annotations=annotations,
    )


def decide(request: CedarRequest, ruleset: Ruleset) -> Verdict:
    """Decide one request under a ruleset; pure apart from calling Cedar.

    Never raises on a bad request: a request Cedar cannot evaluate, or that is not JSON (a NaN,
    a set, a non-string key), is a deny carrying the error, so the refusal is recorded like any
    other decision, and a request that cannot be recorded is never allowed.
    """
    return decide_many([request], ruleset)[0]


def decide_many(
    requests: Sequence[CedarRequest], ruleset: Ruleset, *, json_checked: bool = False
) -> list[Verdict]:
    """Decide several requests under one ruleset, each exactly as :func:`decide` would.

    Cedar is called once for all requests that carry the same entities (one call costs about
    what four single decisions cost in the bindings' conversions); requests whose entities
    differ never share a call, so no request sees an entity it did not bring. If a shared call
    fails as a whole (an entity the schema refuses, say), each of its requests is decided alone,
    so one bad request cannot deny its neighbours.

    ``json_checked`` says the caller built every context and entity from canonical JSON
    already, so the walk that looks for values with no JSON form is skipped; the shapes are
    still checked, and a value with no JSON form would still fail when its Decision is recorded.
    """
    prepared = [_prepare(r, json_checked) for r in requests]
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, item in enumerate(prepared):
        if not isinstance(item, Verdict):
            groups.setdefault(item[1], []).append((i, item[0]))
    decided: dict[int, Verdict] = {}
    for entities, members in groups.items():
        answers = _evaluate([r for _, r in members], entities, ruleset.policy_set, ruleset)
        for k, (verdict, ids) in enumerate(answers):
            i, cedar_request = members[k]
            decided[i] = _settle(cedar_request, entities, verdict, ids, ruleset)
    return [item if isinstance(item, Verdict) else decided[i] for i, item in enumerate(prepared)]


def _prepare(request: CedarRequest, json_checked: bool) -> Verdict | tuple[dict[str, Any], str]:
    """The request and its entities as Cedar takes them, or the deny for a request it cannot take."""
    malformed = _malformed(request, json_checked)
    if malformed is not None:
        return Verdict("deny", (), (malformed,))
    try:
        cedar_request = {
            "principal": {"type": request.principal[0], "id": request.principal[1]},
            "action": {"type": "Action", "id": request.action},
            "resource": {"type": request.resource[0], "id": request.resource[1]},
            # Cedar's wrapper would json.dumps these; orjson is several times faster.
            "context": orjson.dumps(request.context).decode(),
        }
        entities = orjson.dumps(request.entities).decode()
    except TypeError as exc:  # orjson.JSONEncodeError: a context or entity that is not JSON
        return Verdict("deny", (), (f"the Cedar request is not JSON: {exc}",))
    return cedar_request, entities


def _settle(
    cedar_request: dict[str, Any],
    entities: str,
    verdict: Verdict | None,
    ids: tuple[str, ...],
    ruleset: Ruleset,
) -> Verdict:
    """The final verdict: a plain deny stays one unless review policies alone made it."""
    if verdict is not None or not ids or not all(i in ruleset.review for i in ids):
        return _final(verdict, ids)
    [(plain, permit_ids)] = _evaluate([cedar_request], entities, ruleset.without_review, ruleset)
    if plain is not None and plain.effect == "allow":
        strictest = functools.reduce(ReviewTerms.strictest, (ruleset.terms[i] for i in ids))
        return Verdict(
            "review", ids + permit_ids, review_reasons=tuple(ruleset.review[i] for i in ids), review=strictest
        )
    return _final(plain, ids)


def _final(verdict: Verdict | None, ids: tuple[str, ...]) -> Verdict:
    """A verdict from :func:`_evaluate`, where None stands for a Deny by the forbids ``ids``."""
    return verdict if verdict is not None else Verdict("deny", ids)


def _malformed(request: CedarRequest, json_checked: bool) -> str | None:
    """Why a request cannot be put to Cedar and recorded as it is, or None if it can."""
    if not (_is_uid(request.principal) and _is_uid(request.resource)):
        return "the Cedar request is malformed: principal and resource must each be (type, id) strings"
    if not isinstance(request.action, str):
        return "the Cedar request is malformed: the action must be a string"
    if not isinstance(request.context, Mapping) or not isinstance(request.entities, tuple | list):
        return "the Cedar request is malformed: context must be a mapping and entities a sequence"
    if json_checked:
        return None
    # The exact check only when the cheap one has doubts: this runs before every decision.
    payload = {"context": request.context, "entities": request.entities}
    found = [] if is_simple_json(payload) else json_problems(payload, limit=3)
    if found:
        return f"the Cedar request is not JSON: {'; '.join(found)}"
    return None


def _is_uid(pair: object) -> bool:
    """A Cedar entity uid as a request holds it: (type, id), both strings."""
    return isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)


def _evaluate(
    requests: list[dict[str, Any]], entities: str, policy_set: Any, ruleset: Ruleset
) -> list[tuple[Verdict | None, tuple[str, ...]]]:
    """Per request: allow, an error or no decision as a final Verdict; a plain Deny as None plus
    its policy ids.

    Through cedarpy's public ``is_authorized_batch`` with pre-parsed PolicySet and Schema
    handles, the context and entities handed over already encoded (the wrapper passes strings
    through untouched), so no private module of cedarpy is relied on.
    """
    try:
        answers = cedarpy.is_authorized_batch(requests, policy_set, entities, ruleset.schema)
        if len(answers) != len(requests):
            raise ValueError(f"Cedar answered {len(answers)} of {len(requests)} requests")
        return [_verdict_of_answer(a, ruleset) for a in answers]
    except (ValueError, RuntimeError, TypeError, KeyError, AttributeError) as exc:
        if len(requests) > 1:
            return [_evaluate([r], entities, policy_set, ruleset)[0] for r in requests]
        return [(Verdict("deny", (), (f"Cedar could not evaluate the request: {exc}",)), ())]


_VERDICTS_KEPT = 256
"""How many of Cedar's answers a ruleset keeps turned into verdicts; past it, it starts again."""


def _verdict_of_answer(
    answer: cedarpy.AuthzResult, ruleset: Ruleset
) -> tuple[Verdict | None, tuple[str, ...]]:
    """:func:`_verdict_of` one of Cedar's answers, through the ruleset's memory of the answers
    without errors (an error's text is its own; those are turned every time)."""
    errors = answer.diagnostics.errors
    if errors:
        return _verdict_of(answer.decision.name, answer.diagnostics.reasons, errors, ruleset)
    key = (answer.decision.name, tuple(answer.diagnostics.reasons))
    found = ruleset.verdicts.get(key)
    if found is None:
        found = _verdict_of(key[0], key[1], (), ruleset)
        if len(ruleset.verdicts) >= _VERDICTS_KEPT:
            ruleset.verdicts.clear()
        ruleset.verdicts[key] = found
    return found


def _verdict_of(
    decision: str, reasons: Sequence[str], raw_errors: Sequence[object], ruleset: Ruleset
) -> tuple[Verdict | None, tuple[str, ...]]:
    # Cedar reports reasons in no fixed order; sorted, the same request always records the same bytes.
    ids = tuple(sorted(ruleset.names.get(r, r) for r in reasons))
    errors = tuple(str(e) for e in raw_errors)
    if errors:
        return Verdict("deny", ids, errors), ids
    if decision == "Allow":
        return Verdict("allow", ids), ids
    if decision != "Deny":
        return Verdict("deny", ids, ("Cedar reached no decision",)), ids
    if not ids:
        return Verdict("deny", (), ("no policy permits this request",)), ()
    return None, ids


def diff_policies(old: str, new: str) -> dict[str, list[dict[str, Any]]]:
    """Policies added, removed and changed between two policy texts, matched by their stable id.

    Compares Cedar's own parsed form, so reformatting a policy is not a change; a changed
    policy carries a unified diff of its text.
    """
    before, after = _policies_by_id(old), _policies_by_id(new)
    changed = []
    for name in sorted(before.keys() & after.keys()):
        if before[name][0] != after[name][0]:
            lines = difflib.unified_diff(
                before[name][1].splitlines(), after[name][1].splitlines(), lineterm="", n=1
            )
            changed.append({"id": name, "diff": list(lines)[2:]})  # past the two file-name lines
    return {
        "added": [{"id": n, "text": after[n][1]} for n in sorted(after.keys() - before.keys())],
        "removed": [{"id": n, "text": before[n][1]} for n in sorted(before.keys() - after.keys())],
        "changed": changed,
    }


def _policies_by_id(text: str) -> dict[str, tuple[Any, str]]:
    refuse_too_deep(text)
    try:
        parsed = _json_form(text)
    except ValueError as exc:
        raise PolicyInvalid(f"Cedar policies do not parse: {exc}", errors=(str(exc),)) from exc
    out: dict[str, tuple[Any, str]] = {}
    for internal, body in parsed.get("staticPolicies", {}).items():
        name = (body.get("annotations") or {}).get("id", internal)
        alone = {"staticPolicies": {internal: body}, "templates": {}, "templateLinks": []}
        out[name] = (body, str(_from_json_form(alone)).strip())
    return out


_JSON_DEPTH = 127
"""Levels of JSON that Cedar reads back (its parser's recursion limit is 128): about 60 operators
chained in one condition. The ruleset without its review policies is made from that form."""


def _json_form(policies: str) -> dict[str, Any]:
    """Cedar's JSON form of ``policies``.

    Raises:
        ValueError: the policies do not parse.
        PolicyInvalid: they nest deeper than orjson reads (1,024 levels).
    """
    text = cedarpy.policies_to_json_str(policies)
    try:
        parsed: dict[str, Any] = orjson.loads(text)
    except orjson.JSONDecodeError as exc:  # Cedar's own output: it parses, unless too deep
        raise PolicyInvalid(f"Cedar policies: {_too_deep('over 1,024')}", errors=(str(exc),)) from exc
    return parsed


def _from_json_form(doc: dict[str, Any]) -> Any:
    """The PolicySet of ``doc``, a JSON form :func:`_json_form` gave (or part of one).

    Only what is read back is measured: a review policy, left out of the ruleset made without
    them, may nest deeper, as it always could (a ruleset an earlier version recorded still loads).

    Raises:
        PolicyInvalid: deeper than Cedar reads back, said as that, not as a raw ValueError.
    """
    deepest, stack = 0, [(doc, 1)]
    while stack:  # no recursion: the depth is what is being measured
        value, depth = stack.pop()
        if isinstance(value, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in value)
    if deepest > _JSON_DEPTH:
        raise PolicyInvalid(f"Cedar policies: {_too_deep(str(deepest))}")
    try:
        return cedarpy.PolicySet.from_json_str(orjson.dumps(doc).decode())
    except (ValueError, TypeError) as exc:  # not expected within the depth measured: said, not raw
        raise PolicyInvalid(f"Cedar policies: Cedar cannot read back their JSON form: {exc}") from exc


def _too_deep(levels: str) -> str:
    return (
        f"they nest {levels} levels deep in Cedar's JSON form, which Cedar reads to {_JSON_DEPTH}: "
        "split a long chain of &&, || or if (about 60 operators in one condition) into separate "
        "policies, or list values in a set"
    )
