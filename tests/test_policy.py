"""Cedar policy: parsed once, allow / deny / review, and errors that are denies on the record."""

from __future__ import annotations

import pytest
from support import POLICIES, SCHEMA

from answerable import PolicyInvalid, load_ruleset
from answerable.policy import CedarRequest, decide


def request(
    cls: str = "retail", region: str = "north", disruption: bool = False, **context: object
) -> CedarRequest:
    return CedarRequest(
        principal=("Agent", "executor"),
        action="carrier.book",
        resource=("Shipment", "S-1"),
        context={"disruption": disruption, **context},
        entities=(
            {
                "uid": {"type": "Shipment", "id": "S-1"},
                "attrs": {"class": cls, "region": region},
                "parents": [],
            },
        ),
    )


@pytest.fixture(scope="module")
def rules():  # type: ignore[no-untyped-def]
    return load_ruleset(POLICIES, SCHEMA)


def test_routine_request_is_allowed_by_a_named_policy(rules):
    """A permit with an @id decides under that id."""
    verdict = decide(request(), rules)
    assert (verdict.effect, verdict.policy_ids) == ("allow", ("routine-bookings",))


def test_review_forbid_routes_to_review_with_its_reason(rules):
    """A forbid with @review sends the request to a person when it would otherwise be allowed."""
    verdict = decide(request(cls="medical", disruption=True), rules)
    assert verdict.effect == "review"
    assert verdict.review_reasons == ("a medical booking during a disruption needs a person",)


def test_review_never_lifts_a_refusal(rules):
    """If no permit applies, a matching review policy does not turn the deny into a review."""
    verdict = decide(request(cls="medical", region="closed", disruption=True), rules)
    assert verdict.effect == "deny"


def test_no_matching_permit_is_a_deny(rules):
    """Default deny, with the reason recorded."""
    verdict = decide(request(region="closed"), rules)
    assert (verdict.effect, verdict.errors) == ("deny", ("no policy permits this request",))


def test_evaluation_error_is_a_deny_with_the_error(rules):
    """A request Cedar cannot evaluate (context of the wrong type) is a deny carrying Cedar's error."""
    verdict = decide(request(disruption="yes"), rules)  # type: ignore[arg-type]
    assert verdict.effect == "deny"
    assert "disruption" in verdict.errors[0]


def test_entities_that_break_the_schema_are_a_deny(rules):
    """Entities missing a required attribute cannot be evaluated: deny, with Cedar's error."""
    req = CedarRequest(
        ("Agent", "executor"),
        "carrier.book",
        ("Shipment", "S"),
        {"disruption": False},
        ({"uid": {"type": "Shipment", "id": "S"}, "attrs": {"region": "north"}, "parents": []},),
    )
    verdict = decide(req, rules)
    assert verdict.effect == "deny"
    assert "class" in " ".join(verdict.errors)


def test_policies_that_do_not_parse_are_refused():
    """A syntax error names the problem."""
    with pytest.raises(PolicyInvalid, match="do not parse"):
        load_ruleset("permit(principal, action, resource", SCHEMA)


def test_policies_that_do_not_validate_are_refused():
    """A policy that uses an attribute the schema lacks fails validation, naming the attribute."""
    with pytest.raises(PolicyInvalid, match="klass") as caught:
        load_ruleset(POLICIES.replace("resource.class", "resource.klass"), SCHEMA)
    assert caught.value.errors


def test_schema_that_does_not_parse_is_refused():
    """A broken schema is named as the schema."""
    with pytest.raises(PolicyInvalid, match="schema does not parse"):
        load_ruleset(POLICIES, "entity ;")


def test_review_on_a_permit_is_refused():
    """Only a forbid can route to review."""
    with pytest.raises(PolicyInvalid, match="only a forbid"):
        load_ruleset('@id("x") @review("why") permit(principal, action, resource);', SCHEMA)


def test_duplicate_policy_ids_are_refused():
    """Two policies with one @id would make decisions ambiguous."""
    with pytest.raises(PolicyInvalid, match="share the id"):
        load_ruleset(
            '@id("x") permit(principal, action, resource);\n@id("x") permit(principal, action, resource);',
            SCHEMA,
        )


def test_ruleset_hashes_are_of_the_exact_text(rules):
    """The hashes pin the exact policy and schema text in force."""
    import hashlib

    assert rules.ruleset_hash == hashlib.sha256(POLICIES.encode()).hexdigest()
    assert rules.schema_hash == hashlib.sha256(SCHEMA.encode()).hexdigest()


async def test_recorded_decision_replays_under_other_rules(gateway, ledger):
    """A Decision carries the whole Cedar request: same verdict again, a different one under new rules."""
    from support import booking

    from answerable.records import Decision, decode_entry

    await gateway.submit(gateway.intent("executor", "carrier.book", booking(cls="medical", disruption=True)))
    decision = next(decode_entry(e.data) for e in ledger.of_kind("Decision"))
    assert isinstance(decision, Decision)
    replayed = CedarRequest.from_record(decision.request, decision.entities)
    assert decide(replayed, load_ruleset(POLICIES, SCHEMA)).effect == decision.effect == "review"
    stricter = POLICIES.replace('@review("a medical booking during a disruption needs a person")\n', "")
    assert decide(replayed, load_ruleset(stricter, SCHEMA)).effect == "deny"


def test_a_schema_in_cedars_json_format_decides_as_its_text_twin() -> None:
    """`rules export` writes schema.json for a JSON schema and replay says it takes one, but the
    schema was parsed as Cedar text only, so every JSON schema was refused ("unexpected token")."""
    import json

    def record(**attributes: str) -> dict[str, object]:
        return {"type": "Record", "attributes": {k: {"type": v} for k, v in attributes.items()}}

    def action(resource: str, **context: str) -> dict[str, object]:
        return {
            "appliesTo": {
                "principalTypes": ["Agent"],
                "resourceTypes": [resource],
                "context": record(**context),
            }
        }

    twin = {
        "": {
            "entityTypes": {
                "Agent": {},
                "Shipment": {"shape": record(**{"class": "String", "region": "String"})},
                "Resource": {"shape": record(**{"class": "String"})},
            },
            "actions": {
                "carrier.book": action("Shipment", disruption="Boolean"),
                **{name: action("Resource") for name in ("noop", "carrier.fail", "carrier.http")},
            },
        }
    }
    text, json_rules = load_ruleset(POLICIES, SCHEMA), load_ruleset(POLICIES, json.dumps(twin))
    for asked in (request(), request(cls="medical", disruption=True), request(region="closed")):
        assert decide(asked, json_rules) == decide(asked, text)
    with pytest.raises(PolicyInvalid, match="does not parse"):
        load_ruleset(POLICIES, '{"": {"entityTypes": 5}}')
