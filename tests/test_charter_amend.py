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


_FORGED = b"\x01" + bytes(31) + bytes(32)  # R the neutral point, S zero: signed by nobody
_SMALL = [  # the seven encodings of points of small order (libsodium's list), each with x's sign
    bytes.fromhex(h)
    for h in (
        "00" * 32,
        "01" + "00" * 31,
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ec" + "ff" * 30 + "7f",
        "ed" + "ff" * 30 + "7f",
        "ee" + "ff" * 30 + "7f",
    )
]


@pytest.mark.parametrize("raw", [k[:31] + bytes([k[31] | sign]) for k in _SMALL for sign in (0, 0x80)])
def test_a_key_of_small_order_is_no_ones_key(raw: bytes) -> None:
    """Found in this stop's audit: a charter took a public key of zeros. Under such a key a
    signature nobody made verifies for a share of all messages (checked here with cryptography
    itself), so anyone could speak as that agent. It is refused in a charter, and a signature
    under one (a charter written before) never verifies."""
    import base64

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from answerable.keys import public_key_problem, verify_signature

    forged = 0
    for n in range(64):  # the forgery is real: why such a key must be refused
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(_FORGED, b"message %d" % n)
            forged += 1
        except InvalidSignature:
            pass
    assert forged > 0
    assert public_key_problem(raw) == "is a point of small order, under which anyone can forge signatures"
    b64 = base64.b64encode(raw).decode()
    with pytest.raises(ConfigError, match="not of small order"):
        amend_charter(charter(), RI, agents={"bot": b64})
    with pytest.raises(ConfigError, match="not of small order"):
        new_charter("shop", RI, agents=["bot"], agent_keys={"bot": b64})
    for n in range(64):
        with pytest.raises(SignatureInvalid):
            verify_signature(b64, base64.b64encode(_FORGED).decode(), b"message %d" % n, who="bot")


def test_a_real_key_is_still_a_key() -> None:
    from answerable.keys import public_key_problem

    assert public_key_problem(CLERK.private.public_key().public_bytes_raw()) is None
    assert public_key_problem(b"\x01" * 31) == "is 31 bytes, not 32"
    # cryptography decodes a key only when it verifies with it: a mistyped key is caught here.
    assert public_key_problem(b"\x02" + bytes(31)) == "is no point of the curve (mistyped?)"
    assert public_key_problem(bytes(31) + b"\x80") is not None  # x = 0 with its sign bit set
    for _ in range(500):
        real = KeyPair.generate("x@shop.example").private.public_key().public_bytes_raw()
        assert public_key_problem(real) is None
    amended = amend_charter(charter(), RI, agents={"bot": CLERK.public_b64})
    assert [a.public_key for a in amended.agents if a.name == "bot"] == [CLERK.public_b64]


def test_a_request_signed_by_nobody_under_a_charters_key_of_small_order_is_refused() -> None:
    """A charter written before such keys were refused may still hold one: the service's
    signature check refuses it too, for a forgery that cryptography alone would take."""
    import base64

    from answerable.httpsig import LABEL, sign_request, verify_request

    key = base64.b64encode(_SMALL[1]).decode()  # the neutral point: every forgery verifies under it
    headers = sign_request(CLERK, "POST", "https://svc.example/v1/intents", b"{}", created=1_000)
    headers["Signature"] = f"{LABEL}=:{base64.b64encode(_FORGED).decode()}:"
    with pytest.raises(NotAuthorized) as refused:
        verify_request(
            "POST", "https://svc.example/v1/intents", headers, b"{}", {CLERK.identity: key}, now=1_000
        )
    assert refused.value.reason_code == "bad_signature"
