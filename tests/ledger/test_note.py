"""Signed notes and checkpoints against the golang.org/x/mod and C2SP vectors."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from answerable.errors import ConfigError, ProofInvalid, SignatureInvalid
from answerable.ledger.merkle import verify_consistency
from answerable.ledger.note import (
    MAX_SIGNATURES,
    Checkpoint,
    Signer,
    Verifier,
    checkpoint_size,
    open_checkpoint,
    open_note,
    sign_checkpoint,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "merkle" / "signed-note.json").read_text(
        encoding="utf-8"
    )
)
PRIMARY: dict[str, Any] = VECTORS["primary"]
SIGNER_KEYS: dict[str, str] = {k: v for k, v in VECTORS["testOnlySignerKeys"].items() if k != "about"}
FORK: dict[str, Any] = VECTORS["forkConsistency"]
TEXT = PRIMARY["text"]


def _message(vector: dict[str, Any]) -> str | bytes:
    """Vectors that are not valid UTF-8 carry the raw note as base64."""
    if "messageBase64" in vector:
        return base64.b64decode(vector["messageBase64"])
    message: str = vector["message"]
    return message


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vectors]


def _valid_checkpoint(vector_id: str) -> dict[str, Any]:
    return next(v for v in VECTORS["checkpoints"] if v["id"] == vector_id)


def test_primary_verifier_key_parses_to_the_listed_parts() -> None:
    """The PeterNeumann verifier key yields its name, key ID and Ed25519 public key."""
    v = Verifier.from_key(PRIMARY["verifierKey"])
    assert v.name == PRIMARY["keyName"]
    assert v.key_id == int(PRIMARY["keyIdHex"], 16)
    assert v.key() == PRIMARY["verifierKey"]
    assert v.verify(TEXT.encode(), bytes.fromhex(PRIMARY["ed25519SignatureHex"]))
    assert v.public_key == Verifier.from_key(PRIMARY["verifierKey"]).public_key
    assert v.key().endswith(base64.b64encode(b"\x01" + bytes.fromhex(PRIMARY["publicKeyHex"])).decode())


def test_primary_signature_is_reproduced_by_deterministic_signing() -> None:
    """Ed25519 is deterministic: the published test key re-creates the upstream signature line."""
    signer = Signer.from_signer_key(SIGNER_KEYS["PeterNeumann"])
    assert signer.key_id == int(PRIMARY["signatureKeyIdHex"], 16)
    assert signer.verifier_key() == PRIMARY["verifierKey"]
    assert signer.signature_line(TEXT) == PRIMARY["signatureLine"] + "\n"
    assert signer.sign(TEXT) == PRIMARY["message"]


@pytest.mark.parametrize("vector", VECTORS["notes"], ids=_ids(VECTORS["notes"]))
def test_note_vector_is_judged_as_upstream(vector: dict[str, Any]) -> None:
    """A note opens with its verifier key exactly when the vector expects it to."""
    verifier = Verifier.from_key(vector["verifierKey"])
    if vector["expect"] == "valid":
        text, names = open_note(_message(vector), [verifier])
        assert text == vector["expectText"]
        assert names == [verifier.name]
    else:
        with pytest.raises(SignatureInvalid):
            open_note(_message(vector), [verifier])


@pytest.mark.parametrize("vector", VECTORS["checkpoints"], ids=_ids(VECTORS["checkpoints"]))
def test_checkpoint_vector_is_judged_as_upstream(vector: dict[str, Any]) -> None:
    """A checkpoint opens and parses to the listed tree head exactly when the vector expects it to."""
    verifier = Verifier.from_key(vector["verifierKey"])
    if vector["expect"] == "valid":
        want = vector["expectCheckpoint"]
        got = open_checkpoint(vector["message"], verifier, origin=want["origin"])
        assert got == Checkpoint(want["origin"], want["size"], base64.b64decode(want["rootBase64"]))
    else:
        with pytest.raises(SignatureInvalid):
            open_checkpoint(vector["message"], verifier)


@pytest.mark.parametrize("vector_id", ["gosum-tree-5", "gosum-tree-6"])
def test_checkpoint_signature_is_reproduced_by_deterministic_signing(vector_id: str) -> None:
    """The published sumdb test key re-signs the parsed checkpoint into the identical note."""
    vector = _valid_checkpoint(vector_id)
    signer = Signer.from_signer_key(SIGNER_KEYS["localhost.localdev/sumdb"])
    assert signer.verifier_key() == vector["verifierKey"]
    checkpoint = open_checkpoint(vector["message"], signer.verifier())
    assert sign_checkpoint(checkpoint, signer) == vector["message"]


def test_fork_proof_links_the_honest_root_not_the_signed_one() -> None:
    """The forked log's proof verifies with the honest size-5 root and fails with the signed one."""
    proof = [base64.b64decode(p) for p in FORK["proof"]]
    root2 = base64.b64decode(FORK["root2"])
    assert FORK["expect"] == {"honestRoot1": "valid", "signedRoot1": "invalid"}
    verify_consistency(FORK["size1"], FORK["size2"], proof, base64.b64decode(FORK["honestRoot1"]), root2)
    with pytest.raises(ProofInvalid, match="old tree"):
        verify_consistency(FORK["size1"], FORK["size2"], proof, base64.b64decode(FORK["signedRoot1"]), root2)


def test_fork_roots_are_the_signed_checkpoints() -> None:
    """The fork vector's roots are the ones the two signed checkpoints carry, so the fork is signed."""
    verifier = Verifier.from_key(_valid_checkpoint("gosum-tree-5")["verifierKey"])
    old = open_checkpoint(_valid_checkpoint("gosum-tree-5")["message"], verifier)
    new = open_checkpoint(_valid_checkpoint("gosum-tree-6")["message"], verifier)
    assert (old.size, new.size) == (FORK["size1"], FORK["size2"])
    assert old.root_hash == base64.b64decode(FORK["signedRoot1"])
    assert new.root_hash == base64.b64decode(FORK["root2"])


# --- beyond the vectors --------------------------------------------------------------------------------


def test_generated_key_signs_notes_its_verifier_opens() -> None:
    """A fresh signer's note opens with its published verifier key and returns the text."""
    signer = Signer.generate("example.com/log")
    verifier = Verifier.from_key(signer.verifier_key())
    assert open_note(signer.sign("hello\n"), [verifier]) == ("hello\n", ["example.com/log"])


def test_unknown_signatures_are_ignored_but_a_bad_known_one_rejects() -> None:
    """Signatures from untrusted keys are skipped; a failing signature from a trusted key rejects all."""
    log, witness = Signer.generate("log.example/a"), Signer.generate("witness.example/w")
    note = log.sign("tree\n") + witness.signature_line("tree\n")
    assert open_note(note, [log.verifier()])[1] == ["log.example/a"]
    assert open_note(note, [log.verifier(), witness.verifier()])[1] == ["log.example/a", "witness.example/w"]
    forged = note + witness.signature_line("other\n")
    with pytest.raises(SignatureInvalid, match=re.escape("invalid signature for key witness.example/w")):
        open_note(forged, [log.verifier(), witness.verifier()])


def test_note_without_trusted_signature_is_rejected() -> None:
    """A note signed only by keys the caller does not trust is rejected."""
    note = Signer.generate("a").sign("x\n")
    with pytest.raises(SignatureInvalid, match="no verifiable signatures"):
        open_note(note, [Signer.generate("b").verifier()])


def test_too_many_signatures_make_a_note_malformed() -> None:
    """More than MAX_SIGNATURES lines are refused before any verification, as upstream does."""
    signer = Signer.from_signer_key(SIGNER_KEYS["PeterNeumann"])
    line = signer.signature_line(TEXT)
    assert open_note(TEXT + "\n" + line * MAX_SIGNATURES, [signer.verifier()])[1] == ["PeterNeumann"]
    with pytest.raises(SignatureInvalid, match="malformed"):
        open_note(TEXT + "\n" + line * (MAX_SIGNATURES + 1), [signer.verifier()])


def test_text_with_blank_lines_splits_at_the_last_blank_line() -> None:
    """Note text may contain empty lines; the signatures start after the last one."""
    signer = Signer.generate("k")
    text = "a\n\nb\n"
    assert open_note(signer.sign(text), [signer.verifier()])[0] == text


def test_ambiguous_trusted_keys_are_rejected() -> None:
    """Two different trusted keys with the same name and key ID cannot judge a signature."""
    signer = Signer.generate("k")
    twin = Verifier.__new__(Verifier)
    object.__setattr__(twin, "name", "k")
    object.__setattr__(twin, "key_id", signer.key_id)
    object.__setattr__(twin, "public_key", Signer.generate("k").private_key.public_key())
    with pytest.raises(SignatureInvalid, match="ambiguous"):
        open_note(signer.sign("x\n"), [signer.verifier(), twin])


@pytest.mark.parametrize("text", ["no newline", "tab\there\n", "cr\r\n", "nul\x00\n"])
def test_signing_refuses_text_no_verifier_would_open(text: str) -> None:
    """Text must end in newline and hold no control character but newline."""
    with pytest.raises(SignatureInvalid):
        Signer.generate("k").sign(text)


@pytest.mark.parametrize("name", ["", "has space", "a+b", "nbsp\u00a0name", "tab\tname"])
def test_invalid_key_names_are_refused(name: str) -> None:
    """Key names are non-empty, without Unicode spaces and without '+'."""
    with pytest.raises(ConfigError):
        Signer.generate(name)


def test_verifier_key_manglings_are_rejected() -> None:
    """Every proper substring and every one-byte change of a verifier key is refused (upstream test)."""
    vkey = PRIMARY["verifierKey"]
    for i in range(len(vkey) + 1):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)):
                with pytest.raises(SignatureInvalid):
                    Verifier.from_key(vkey[i:j])
    for i in range(len(vkey)):
        with pytest.raises(SignatureInvalid):
            Verifier.from_key(vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :])


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
    ids=["wrong-key-length", "unknown-algorithm"],
)
def test_verifier_key_with_matching_id_but_bad_key_is_rejected(vkey: str) -> None:
    """A key of the wrong length or type is refused even when its key ID is right."""
    with pytest.raises(SignatureInvalid):
        Verifier.from_key(vkey)


def test_signer_key_manglings_are_rejected() -> None:
    """Every proper substring and every one-byte change of a signer key is refused (upstream test)."""
    skey = SIGNER_KEYS["PeterNeumann"]
    for i in range(len(skey) + 1):
        for j in range(i + 1, len(skey) + 1):
            if (i, j) != (0, len(skey)):
                with pytest.raises(ConfigError):
                    Signer.from_signer_key(skey[i:j])
    for i in range(len(skey)):
        with pytest.raises(ConfigError):
            Signer.from_signer_key(skey[:i] + chr(ord(skey[i]) + 1) + skey[i + 1 :])


def test_private_key_round_trips_through_raw_and_pem() -> None:
    """A signer saved as raw seed or PEM loads back to the same key."""
    signer = Signer.generate("k")
    assert len(signer.private_bytes()) == 32
    for saved in (signer.private_bytes(), signer.private_pem()):
        assert Signer.from_private_bytes("k", saved).verifier_key() == signer.verifier_key()
    assert Signer.from_signer_key(signer.signer_key()).private_bytes() == signer.private_bytes()


@pytest.mark.parametrize(
    "data", [b"", b"\x00" * 31, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"]
)
def test_bad_private_key_bytes_are_a_config_error(data: bytes) -> None:
    """Key material that is neither a 32-byte seed nor an Ed25519 PEM is refused."""
    with pytest.raises(ConfigError):
        Signer.from_private_bytes("k", data)


def test_private_key_stays_out_of_repr() -> None:
    """repr of a signer never shows key material, so it cannot leak into logs."""
    signer = Signer.generate("k")
    assert signer.private_bytes().hex() not in repr(signer)
    assert "private_key" not in repr(signer)


def test_checkpoint_round_trips_with_extensions() -> None:
    """to_text and parse are inverse, extension lines included."""
    cp = Checkpoint("example.com/log42", 20852163, bytes(range(32)), ("ext one", "ext two"))
    assert Checkpoint.parse(cp.to_text()) == cp
    signer = Signer.generate("example.com/log42")
    assert open_checkpoint(sign_checkpoint(cp, signer), signer.verifier(), "example.com/log42") == cp


ROOT = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"origin\n007\n{ROOT}\n",
        f"origin\n+7\n{ROOT}\n",
        f"origin\n 7\n{ROOT}\n",
        f"origin\n1_000\n{ROOT}\n",
        f"origin\n\u0667\n{ROOT}\n",
        f"origin\n-1\n{ROOT}\n",
        f"origin\n{1 << 64}\n{ROOT}\n",
        f"\n7\n{ROOT}\n",
        "origin\n7\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "origin\n7\nAAAA\n",
        f"origin\n7\n{ROOT[:-2]}B=\n",
        f"origin\n7\n{ROOT}",
        "origin\n7\n",
        f"origin\n7\n{ROOT}\n\nafter-empty\n",
    ],
    ids=[
        "leading-zero",
        "plus-sign",
        "space",
        "underscore",
        "arabic-digit",
        "negative",
        "over-uint64",
        "empty-origin",
        "short-root",
        "tiny-root",
        "non-canonical-root",
        "no-final-newline",
        "no-root",
        "empty-extension",
    ],
)
def test_malformed_checkpoint_text_is_rejected(text: str) -> None:
    """Size is plain ASCII decimal without leading zeros, root is canonical base64 of 32 bytes."""
    with pytest.raises(SignatureInvalid, match="checkpoint"):
        Checkpoint.parse(text)


def test_zero_size_checkpoint_is_allowed() -> None:
    """The empty tree's size is written '0'."""
    assert Checkpoint.parse(f"o\n0\n{ROOT}\n").size == 0


def test_checkpoint_for_another_origin_is_rejected() -> None:
    """A correctly signed checkpoint of another log is refused when an origin is expected."""
    signer = Signer.generate("k")
    note = sign_checkpoint(Checkpoint("log.example/a", 1, bytes(32)), signer)
    with pytest.raises(SignatureInvalid, match=re.escape("log.example/b")):
        open_checkpoint(note, signer.verifier(), origin="log.example/b")


def test_a_checkpoint_size_is_read_from_a_note_and_anything_else_is_named() -> None:
    """The size a note states, for the service and the command line, which read it from notes
    they signed or published; a note replaced by something else is a SignatureInvalid, never
    a raw ValueError or IndexError (it was ``int(note.split("\\n")[1])`` in five places)."""
    signer = Signer.generate("log.example/a")
    assert checkpoint_size(sign_checkpoint(Checkpoint("log.example/a", 12345, bytes(32)), signer)) == 12345
    for junk in ("", "x", "a\nb\nc\nd\n", "log.example/a\n" + "9" * 5000 + "\nAAAA\n\n— sig\n", "a\n-1\nx\n"):
        with pytest.raises(SignatureInvalid):
            checkpoint_size(junk)
