"""``amend_charter``: the RI's next charter version adds, rotates and revokes keys, and nothing else."""

from __future__ import annotations

import pytest

from answerable import KeyPair, amend_charter, new_charter
from answerable.errors import ConfigError, NotAuthorized, SignatureInvalid
from answerable.signing import verify_charter

RI = KeyPair.from_seed("ri@shop.example", b"\x01" * 32)
CLERK = KeyPair.from_seed("clerk@shop.example", b"\x02" * 32)
BOT = KeyPair.from_seed("bot", b"\x03" * 32)


def charter():  # type: ignore[no-untyped-def]
    return new_charter(
        "shop", RI, agents=["bot"], reviewers=[CLERK], operators=[CLERK], agent_keys={"bot": BOT.public_b64}
    )


def test_a_rotated_key_keeps_its_roles_and_the_new_version_chains() -> None:
    first = charter()
    fresh = KeyPair.generate("clerk@shop.example")
    second = amend_charter(first, RI, people={"clerk@shop.example": (fresh.public_b64, ["reviewer"])})
    verify_charter(second, first)
    clerk = second.person("clerk@shop.example")
    assert clerk is not None
    assert (clerk.public_key, clerk.roles) == (fresh.public_b64, ("operator", "reviewer"))
    assert (second.version, second.supersedes) == (2, first.id)


def test_revoking_an_agent_keeps_it_named_without_a_key_and_a_person_leaves() -> None:
    second = amend_charter(charter(), RI, revoke=["bot", "clerk@shop.example"])
    assert [(a.name, a.public_key) for a in second.agents] == [("bot", None)]
    assert second.person("clerk@shop.example") is None


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"revoke": ["ri@shop.example"]}, ConfigError),  # the RI changes by a handover: input, exit 2
        ({"revoke": ["nobody"]}, ConfigError),
        ({"agents": {"bot": "AAAA"}}, ConfigError),  # three bytes are no public key
        ({"people": {"bot": (CLERK.public_b64, ["reviewer"])}}, ConfigError),  # agent and person at once
        ({"people": {"x@shop.example": (CLERK.public_b64, ["ri"])}}, ConfigError),
    ],
)
def test_what_an_amendment_may_not_do(change: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        amend_charter(charter(), RI, **change)  # type: ignore[arg-type]


def test_only_the_ri_key_signs_an_amendment_not_a_key_that_bears_the_ris_name() -> None:
    with pytest.raises(NotAuthorized):
        amend_charter(charter(), CLERK, revoke=["bot"])
    with pytest.raises(SignatureInvalid):
        amend_charter(charter(), KeyPair.generate(RI.identity), revoke=["bot"])


def test_only_a_reviewer_or_operator_can_be_marked_simulated_and_never_the_ri() -> None:
    with pytest.raises(ConfigError, match="no reviewer or operator"):
        new_charter("shop", RI, agents=["bot"], reviewers=[CLERK], simulated=["nobody@shop.example"])
    with pytest.raises(ConfigError, match="never simulated"):
        new_charter("shop", RI, agents=["bot"], simulated=[RI.identity])
    marked = new_charter("shop", RI, agents=["bot"], reviewers=[CLERK], simulated=[CLERK.identity])
    amended = amend_charter(
        marked, RI, people={CLERK.identity: (KeyPair.generate("x").public_b64, ["reviewer"])}
    )
    clerk = amended.person(CLERK.identity)
    assert clerk is not None
    assert clerk.simulated  # an amendment keeps the mark
