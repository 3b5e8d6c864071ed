"""Cedar policy edges: review terms, malformed requests, replayed records and policy diffs.

Each test here failed on at least one mutant of ``policy.py`` that the rest of the suite let
through (``python tools/mutate.py src/answerable/policy.py --tests tests/test_policy.py ...``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import pytest
from support import POLICIES, SCHEMA

from answerable.errors import PolicyInvalid, RecordInvalid
from answerable.policy import CedarRequest, ReviewTerms, Ruleset, decide, diff_policies, load_ruleset

ENTITY = {"uid": {"type": "Resource", "id": "R-1"}, "attrs": {"class": "cash"}, "parents": []}


def noop(principal: tuple[Any, ...] = ("Agent", "executor"), **changes: Any) -> CedarRequest:
    """A ``noop`` request on a resource of class ``cash``; keywords replace any other part."""
    parts: dict[str, Any] = {
        "principal": principal,
        "action": "noop",
        "resource": ("Resource", "R-1"),
        "context": {},
        "entities": (ENTITY,),
    }
    parts.update(changes)
    return CedarRequest(**parts)


def review_rules(*annotated: str) -> Ruleset:
    """``noop`` permitted, and each of ``annotated`` a review forbid on class ``cash``."""
    forbids = "\n".join(
        f'{notes}\nforbid(principal, action == Action::"noop", resource) when {{ resource.class == "cash" }};'
        for notes in annotated
    )
    return load_ruleset(
        f'@id("noop-allowed")\npermit(principal, action == Action::"noop", resource);\n{forbids}', SCHEMA
    )


def terms_of(annotations: str) -> ReviewTerms | None:
    return decide(noop(), review_rules(f'@id("r")\n@review("why")\n{annotations}')).review


@pytest.fixture(scope="module")
def rules() -> Ruleset:
    return load_ruleset(POLICIES, SCHEMA)


# --- review terms ---------------------------------------------------------------------------------------


def test_review_terms_default_to_one_approver_an_hour_four_hours_and_deny() -> None:
    """A review policy without terms asks one approver, escalates after 60 minutes, closes denied at 240."""
    documented = ReviewTerms(approvals=1, deadline_minutes=60, expires_minutes=240, on_expiry="deny")
    assert terms_of("") == documented
    assert ReviewTerms() == documented


def test_on_expiry_approve_is_read_from_its_annotation() -> None:
    """``@on_expiry("approve")`` makes proceeding the safe default; "deny" or nothing keeps it deny."""
    approve = terms_of('@on_expiry("approve")')
    assert approve is not None
    assert approve.on_expiry == "approve"
    deny = terms_of('@on_expiry("deny")')
    assert deny is not None
    assert deny.on_expiry == "deny"


@pytest.mark.parametrize(
    "annotations",
    [
        '@approvals("two")',
        '@deadline_minutes("1.5")',
        '@on_expiry("maybe")',
        '@on_expiry("")',
        '@approvals("0")',
        '@deadline_minutes("0")',
        '@deadline_minutes("30")\n@expires_minutes("29")',
    ],
)
def test_review_terms_that_cannot_be_honoured_are_refused(annotations: str) -> None:
    """Not a whole number, an unknown expiry default, no approver, no deadline, or expiry before deadline."""
    with pytest.raises(PolicyInvalid):
        terms_of(annotations)


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ('@deadline_minutes("1")', ReviewTerms(deadline_minutes=1)),
        (
            '@deadline_minutes("30")\n@expires_minutes("30")',
            ReviewTerms(deadline_minutes=30, expires_minutes=30),
        ),
        ('@approvals("1")', ReviewTerms(approvals=1)),
    ],
)
def test_review_terms_at_their_limits_are_accepted(annotations: str, expected: ReviewTerms) -> None:
    """One minute to escalate, and expiry at the deadline itself, are still terms a person can meet."""
    assert terms_of(annotations) == expected


LENIENT = ReviewTerms(approvals=1, deadline_minutes=30, expires_minutes=120, on_expiry="approve")
STRICT = ReviewTerms(approvals=2, deadline_minutes=45, expires_minutes=200, on_expiry="deny")
COMBINED = ReviewTerms(approvals=2, deadline_minutes=30, expires_minutes=120, on_expiry="deny")


@pytest.mark.parametrize(("a", "b"), [(LENIENT, STRICT), (STRICT, LENIENT)])
def test_strictest_takes_the_strictest_of_each_term(a: ReviewTerms, b: ReviewTerms) -> None:
    """Most approvers, earliest deadline and expiry, and deny on expiry if either says deny, in any order."""
    assert a.strictest(b) == COMBINED


def test_strictest_approves_on_expiry_only_when_both_do() -> None:
    """Proceeding unanswered is the default only when every matching policy allows it."""
    assert LENIENT.strictest(LENIENT).on_expiry == "approve"


def test_two_matching_review_policies_combine_their_terms() -> None:
    """Both policies' terms count: the second's two approvers and deny are kept, the first's deadlines too."""
    rules = review_rules(
        '@id("a-lenient")\n@review("first")\n@deadline_minutes("30")\n@expires_minutes("120")\n@on_expiry("approve")',
        '@id("b-strict")\n@review("second")\n@approvals("2")\n@deadline_minutes("45")\n@expires_minutes("200")',
    )
    verdict = decide(noop(), rules)
    assert verdict.effect == "review"
    assert verdict.policy_ids == ("a-lenient", "b-strict", "noop-allowed")
    assert verdict.review_reasons == ("first", "second")
    assert verdict.review == COMBINED


def test_review_without_a_permit_keeps_the_reason_of_the_deny(rules: Ruleset) -> None:
    """A review policy matching where no permit applies denies for want of a permit, and says so."""
    verdict = decide(
        CedarRequest(
            ("Agent", "executor"),
            "carrier.book",
            ("Shipment", "S-1"),
            {"disruption": True},
            (
                {
                    "uid": {"type": "Shipment", "id": "S-1"},
                    "attrs": {"class": "medical", "region": "closed"},
                    "parents": [],
                },
            ),
        ),
        rules,
    )
    assert (verdict.effect, verdict.errors) == ("deny", ("no policy permits this request",))


# --- requests -------------------------------------------------------------------------------------------


def test_a_permit_for_one_principal_allows_only_that_principal() -> None:
    """The principal's id, not only its type, is what Cedar is asked about."""
    rules = load_ruleset(
        'permit(principal == Agent::"executor", action == Action::"noop", resource);', SCHEMA
    )
    assert decide(noop(), rules).effect == "allow"
    assert decide(noop(("Agent", "router")), rules).effect == "deny"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"principal": ("Agent",)}, "principal"),
        ({"principal": ("Agent", 7)}, "principal"),
        ({"principal": "Agent::executor"}, "principal"),
        ({"resource": ("Resource",)}, "resource"),
        ({"resource": ("Resource", "R-1", "extra")}, "resource"),
        ({"action": 5}, "action"),
        ({"action": None}, "action"),
        ({"context": [("k", 1)]}, "context"),
        ({"entities": ENTITY}, "entities"),
    ],
)
def test_a_malformed_request_is_a_deny_naming_the_part_at_fault(
    rules: Ruleset, changes: dict[str, Any], named: str
) -> None:
    """decide never raises on a malformed request; it denies, and the error says which part is wrong."""
    verdict = decide(noop(**changes), rules)
    assert verdict.effect == "deny"
    assert verdict.policy_ids == ()
    assert re.search(rf"\b{named}\b", verdict.errors[0])


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"context": {"weight": float("nan")}}, "context.weight"),
        ({"context": {"tags": {"a", "b"}}}, "context.tags"),
        ({"entities": ({**ENTITY, "attrs": {"class": float("inf")}},)}, "entities.0.attrs.class"),
    ],
)
def test_a_request_that_is_not_json_is_a_deny_naming_where(
    rules: Ruleset, changes: dict[str, Any], path: str
) -> None:
    """A NaN, an infinity or a set has no JSON form: deny, naming the path to the value."""
    verdict = decide(noop(**changes), rules)
    assert verdict.effect == "deny"
    assert path in verdict.errors[0]


@pytest.mark.parametrize(
    "context",
    [{b"bytes key": 1}, {"text": "lone surrogate \ud800"}],
)
def test_a_context_orjson_refuses_is_a_deny(rules: Ruleset, context: Mapping[Any, Any]) -> None:
    """What only the encoder finds (a bytes key, a lone surrogate) is still a deny, never an exception."""
    verdict = decide(noop(context=context), rules)
    assert verdict.effect == "deny"
    assert verdict.errors


def test_a_request_cedar_cannot_take_is_a_deny(rules: Ruleset) -> None:
    """An id Cedar's engine refuses to take at all (a lone surrogate) is a deny carrying the error."""
    verdict = decide(noop(("Agent", "\ud800")), rules)
    assert verdict.effect == "deny"
    assert verdict.errors


def test_an_amount_with_no_exact_json_form_is_never_allowed() -> None:
    """An integer past I-JSON's range would be recorded inexactly: refused, though Cedar would allow it."""
    schema = (
        SCHEMA
        + 'action "pay" appliesTo { principal: [Agent], resource: [Resource], context: { cents: Long } };\n'
    )
    rules = load_ruleset('permit(principal, action == Action::"pay", resource);', schema)
    assert decide(noop(action="pay", context={"cents": 2**53 - 1}), rules).effect == "allow"
    verdict = decide(noop(action="pay", context={"cents": 2**60}), rules)
    assert verdict.effect == "deny"
    assert "context.cents" in verdict.errors[0]


def test_a_request_with_many_bad_values_names_only_the_first_three(rules: Ruleset) -> None:
    """The recorded error stays bounded however much of the request is wrong."""
    verdict = decide(noop(context={f"k{i}": float("nan") for i in range(10)}), rules)
    assert verdict.effect == "deny"
    assert len(re.findall(r"context\.k\d", verdict.errors[0])) == 3


def test_a_recorded_request_missing_a_part_is_an_invalid_decision_record() -> None:
    """Replaying a Decision whose request lacks its action (or is not an object) names the record kind."""
    recorded = noop().to_json()
    del recorded["action"]
    with pytest.raises(RecordInvalid) as caught:
        CedarRequest.from_record(recorded, [ENTITY])
    assert caught.value.record == "Decision"
    with pytest.raises(RecordInvalid):
        CedarRequest.from_record(None, [ENTITY])  # type: ignore[arg-type]


@pytest.mark.parametrize(("policies", "schema"), [(POLICIES.encode(), SCHEMA), (POLICIES, None)])
def test_policies_and_schema_must_be_text(policies: Any, schema: Any) -> None:
    """Bytes or None for either one is a PolicyInvalid, not an error from inside Cedar."""
    with pytest.raises(PolicyInvalid):
        load_ruleset(policies, schema)


def test_decisions_and_rulesets_cannot_be_changed_after_the_fact(rules: Ruleset) -> None:
    """A Verdict, its terms, the request and the ruleset (whose hash names its text) are frozen."""
    verdict = decide(noop(), review_rules('@id("r")\n@review("why")'))
    assert verdict.review is not None
    for record, attribute, value in [
        (verdict, "effect", "allow"),
        (verdict.review, "approvals", 0),
        (noop(), "action", "carrier.book"),
        (rules, "policies", "permit(principal, action, resource);"),
    ]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, attribute, value)


def test_a_ruleset_repr_shows_its_text_and_hashes_not_cedar_handles(rules: Ruleset) -> None:
    """A ruleset in a log line or an error is its policies and hashes, not engine handles or lookup maps."""
    text = repr(rules)
    assert rules.ruleset_hash in text
    hidden = ["policy_set", "without_review", "schema", "names", "review", "terms", "annotations"]
    assert [name for name in hidden if re.search(rf"\b{name}=", text)] == []


# --- diffs ----------------------------------------------------------------------------------------------

OLD = """
@id("keep")
permit(principal, action == Action::"noop", resource);

@id("change")
@review("why")
@approvals("1")
@deadline_minutes("30")
@expires_minutes("60")
forbid(principal, action == Action::"noop", resource);

@id("drop")
forbid(principal, action == Action::"carrier.fail", resource);
"""

NEW = """
@id("keep") permit(principal,   action == Action::"noop",
    resource);

@id("change")
@review("why")
@approvals("1")
@deadline_minutes("45")
@expires_minutes("60")
forbid(principal, action == Action::"noop", resource);

@id("add")
permit(principal, action == Action::"carrier.http", resource);
"""


def test_policy_diff_names_added_removed_and_changed_by_id() -> None:
    """Reformatting is no change; a changed policy carries a unified diff with one line of context."""
    assert diff_policies(OLD, NEW) == {
        "added": [
            {
                "id": "add",
                "text": '@id("add")\npermit(principal, action == Action::"carrier.http", resource);',
            }
        ],
        "removed": [
            {
                "id": "drop",
                "text": '@id("drop")\nforbid(principal, action == Action::"carrier.fail", resource);',
            }
        ],
        "changed": [
            {
                "id": "change",
                "diff": [
                    "@@ -1,3 +1,3 @@",
                    ' @approvals("1")',
                    '-@deadline_minutes("30")',
                    '+@deadline_minutes("45")',
                    ' @expires_minutes("60")',
                ],
            }
        ],
    }


def test_policy_diff_of_text_that_does_not_parse_is_refused() -> None:
    """A diff against broken policies is a PolicyInvalid, not a crash."""
    with pytest.raises(PolicyInvalid):
        diff_policies(POLICIES, "permit(principal, action, resource")


def test_the_policy_values_are_frozen_and_slotted() -> None:
    """One is made per decision: frozen so a recorded verdict cannot change, slotted to stay small."""
    from answerable.policy import Verdict

    for kind in (CedarRequest, ReviewTerms, Verdict, Ruleset):
        assert "__slots__" in vars(kind), kind
        assert getattr(kind, "__dataclass_params__").frozen, kind  # noqa: B009
    verdict = Verdict("allow", ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.effect = "deny"  # type: ignore[misc]


@pytest.mark.parametrize(
    "annotations",
    [
        '@expires_minutes("9999999999")',
        '@deadline_minutes("99999999999999")\n@expires_minutes("99999999999999")',
        '@approvals("99999999999999999999999")',
        '@approvals("1001")',
        '@expires_minutes("5270401")',
    ],
)
def test_a_new_ruleset_is_not_signed_with_review_terms_past_their_bounds(annotations: str) -> None:
    """Signed, such a ruleset made every intent it sent to review fail as its Review was recorded
    (an expiry past the year 9999: a raw ValidationError out of Gateway.submit)."""
    from answerable.charter import new_ruleset, schema_for
    from answerable.keys import KeyPair

    ri = KeyPair.generate("ri@x.example")
    review = f'@id("r")\n@review("why")\n{annotations}\nforbid(principal, action, resource);'
    policies = f"permit(principal, action, resource);\n{review}"
    with pytest.raises(PolicyInvalid, match="ten years"):
        new_ruleset(policies, schema_for(["noop"]), ri)
    at_bounds = policies.replace(annotations, '@approvals("1000")\n@expires_minutes("5270400")')
    assert new_ruleset(at_bounds, schema_for(["noop"]), ri).version == 1


_DEEP = r"""
import sys
from answerable.errors import PolicyInvalid
from answerable.policy import diff_policies, load_ruleset

S = "entity A; entity R; action x appliesTo { principal: A, resource: R };"
def when(body): return "permit(principal, action, resource) when {" + body + "};"
cases = {
    "parentheses": (when("(" * 1000 + "true" + ")" * 1000), S),
    "sets": (when("[" * 1000 + "]" * 1000 + " == []"), S),
    "and": (when(" && ".join(["true"] * 20000)), S),
    "or-100": (when(" || ".join(["true"] * 100)), S),
    "or-200": (when(" || ".join(["true"] * 200)), S),
    "if": (when("if true then " * 5000 + "true" + " else true" * 5000), S),
    "schema": (
        "permit(principal, action, resource);",
        "entity A { a: " + "{ a: " * 10000 + "Long" + " }" * 10000 + " };",
    ),
}
for name, (policies, schema) in cases.items():
    for attempt in (lambda: load_ruleset(policies, schema), lambda: diff_policies(policies, policies)):
        try:
            attempt()
        except PolicyInvalid as exc:
            print(name, "refused:", str(exc)[:60])
            continue
        if name != "schema":
            print(name, "LOADED")
load_ruleset(when(" && ".join(["true"] * 50)), S)
print("fifty loads")
"""


def test_policies_or_a_schema_nested_too_deep_are_refused_not_a_crash() -> None:
    """Found by a sweep of the library: Cedar recurses on the native stack, and policies nested
    1,000 brackets deep, 20,000 ``&&`` or 5,000 ``if``s, or a schema of 10,000 nested records ended
    the process with a segmentation fault. A chain of 100 or 200 ``||`` was a raw ValueError or
    TypeError (Cedar and orjson refusing the depth of the JSON form the ruleset is made from). In a
    process of its own, so a crash fails this test and not the run."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _DEEP], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    lines = done.stdout.splitlines()
    assert "LOADED" not in done.stdout
    assert lines[-1] == "fifty loads"
    assert len([line for line in lines if "refused" in line]) == 13, lines
