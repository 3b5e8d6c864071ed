"""Signed notes and checkpoints (C2SP signed-note and tlog-checkpoint) with Ed25519.

A checkpoint is the ledger's signed tree head. It uses the same text format as Go's sumdb and the
transparency-dev tools, so their verifiers and witnesses can check an answerable ledger and we can
check theirs. Parsing follows golang.org/x/mod ``sumdb/note`` ``Open`` rule for rule; anything
wrong with a note, a key string or a checkpoint raises :class:`SignatureInvalid` naming the problem.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from answerable.errors import ConfigError, SignatureInvalid

__all__ = [
    "MAX_SIGNATURES",
    "Checkpoint",
    "Signer",
    "Verifier",
    "check_origin",
    "checkpoint_size",
    "merge_signatures",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
]

ALG_ED25519 = 0x01
"""Signature type byte of Ed25519 in C2SP signed-note."""

MAX_SIGNATURES = 100
"""More signature lines than this make a note malformed; the spec requires accepting 16, Go caps at 100."""

_SIG_PREFIX = "\u2014 "
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")
_MAX_TREE_SIZE = (1 << 64) - 1
_ROOT_SIZE = 32


def _b64decode(s: str) -> bytes | None:
    """Strict standard base64 (RFC 4648 §4, padded), or None when ``s`` is not that."""
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64(data: bytes) -> str:
    """Standard padded base64 as text."""
    return base64.b64encode(data).decode("ascii")


def _valid_name(name: str) -> bool:
    """A key name is non-empty UTF-8 (as Go's ``isValidName`` wants: a lone surrogate cannot be
    hashed into a key ID) and has no Unicode space and no ``+`` (it delimits key strings)."""
    if not name or "+" in name or any(c.isspace() for c in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_name(name: str, what: str) -> None:
    if not _valid_name(name):
        raise SignatureInvalid(
            f"{what} key name {name!r} is invalid: it must be non-empty, without spaces or '+'"
        )


def check_origin(origin: object) -> str:
    """``origin`` itself, when a ledger can be made with it; refused before anything is made.

    The origin is line 1 of every checkpoint and the name of the key that signs them: one that a
    checkpoint cannot carry (a control character) or UTF-8 cannot encode (a lone surrogate) would
    make a ledger that is created, and then fails every checkpoint and every open after it.

    Raises:
        ConfigError: naming what is wrong with it.
    """
    if not isinstance(origin, str):
        raise ConfigError(f"a ledger origin is text (such as example.com/log), not {type(origin).__name__}")
    problem = _origin_problem(origin)
    if problem:
        raise ConfigError(
            f"ledger origin {origin!r} is invalid: {problem}; it names the log on every checkpoint "
            "(give a schema-less URL such as example.com/log)"
        )
    return origin


def _origin_problem(origin: str) -> str:
    """What keeps ``origin`` from naming a log, or "" when nothing does."""
    try:
        origin.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"it is not valid text ({exc.reason})"
    if not _valid_name(origin):
        return "it must be non-empty, without spaces or '+'"
    match = _CONTROL.search(origin)
    return f"it holds the control character {match.group()!r}" if match else ""


def _key_id(name: str, typed_key: bytes) -> int:
    """``SHA-256(name || 0x0A || type byte || public key)[:4]`` read big-endian.

    It covers the type byte, so a key string for an algorithm we do not support still has its ID
    checked before the type is refused.
    """
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + typed_key).digest()
    return int.from_bytes(digest[:4], "big")


def _typed_public(public_key: Ed25519PublicKey) -> bytes:
    """``0x01 || public key``: the form key IDs and verifier key strings use."""
    raw = public_key.public_bytes_raw()
    return bytes([ALG_ED25519]) + raw


def _check_text(text: str) -> None:
    """Reject note text a verifier would refuse, so we never sign what cannot be opened."""
    if not text.endswith("\n"):
        raise SignatureInvalid("note text must end with a newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SignatureInvalid(f"note text is not valid UTF-8: {exc.reason}") from exc
    match = _CONTROL.search(text)
    if match:
        raise SignatureInvalid(
            f"note text has control character {match.group()!r} at offset {match.start()}; "
            f"only newline is allowed"
        )


@dataclass(frozen=True, slots=True)
class Verifier:
    """A trusted Ed25519 note key, as given by a verifier key string."""

    name: str
    """Key name; by convention the log origin or a schema-less URL."""
    key_id: int
    """The 32-bit key ID, ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``."""
    public_key: Ed25519PublicKey
    """The Ed25519 public key."""

    def __post_init__(self) -> None:
        _check_name(self.name, "verifier")
        want = _key_id(self.name, _typed_public(self.public_key))
        if self.key_id != want:
            raise SignatureInvalid(
                f"verifier {self.name}: key ID {self.key_id:08x} does not match its public key ({want:08x})"
            )

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> Verifier:
        """Build a verifier from a key name and public key, deriving the key ID."""
        _check_name(name, "verifier")
        return cls(name, _key_id(name, _typed_public(public_key)), public_key)

    @classmethod
    def from_key(cls, vkey: str) -> Verifier:
        """Parse a verifier key string ``<name>+<key ID hex>+base64(0x01 || public key)``.

        The base64 part may itself contain ``+``, so only the first two ``+`` split the string.

        Raises:
            SignatureInvalid: when the string is malformed, the key type is not Ed25519, or the key ID
                does not match the name and key.
        """
        name, _, rest = vkey.partition("+")
        id_hex, _, key64 = rest.partition("+")
        key = _b64decode(key64)
        if not _valid_name(name) or not _HEX8.fullmatch(id_hex) or not key:
            # Not echoed: what was given where a public key belongs is often the private one.
            raise SignatureInvalid(
                f"malformed verifier key ({len(vkey)} characters, not shown: it may be a private key): "
                "want <name>+<8 hex digits>+<base64 key>"
            )
        key_id = int(id_hex, 16)
        if _key_id(name, key) != key_id:
            raise SignatureInvalid(f"verifier key {vkey!r}: key ID {id_hex} does not match the name and key")
        if key[0] != ALG_ED25519:
            raise SignatureInvalid(f"verifier key {vkey!r}: unsupported signature type 0x{key[0]:02x}")
        if len(key) != 1 + 32:
            raise SignatureInvalid(f"verifier key {vkey!r}: Ed25519 key is {len(key) - 1} bytes, want 32")
        return cls(name, key_id, Ed25519PublicKey.from_public_bytes(key[1:]))

    def key(self) -> str:
        """The verifier key string, to publish or put in configuration."""
        return f"{self.name}+{self.key_id:08x}+{_b64(_typed_public(self.public_key))}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != 64:
            return False
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Signer:
    """An Ed25519 note signing key with its key name."""

    name: str
    """Key name written in each signature line."""
    private_key: Ed25519PrivateKey = field(repr=False)
    """The private key; kept out of ``repr`` so it never reaches a log."""

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise ConfigError(
                f"signer key name {self.name!r} is invalid: it must be non-empty, without spaces or '+'"
            )

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A fresh random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, name: str, data: bytes) -> Signer:
        """Load a key from its raw 32-byte seed or from an unencrypted PKCS#8 PEM.

        Raises:
            ConfigError: when the bytes are neither, or the PEM holds a key that is not Ed25519.
        """
        if data.lstrip().startswith(b"-----BEGIN"):
            from cryptography.hazmat.primitives import serialization  # see private_pem

            try:
                key = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"signer {name}: PEM private key does not load: {exc}") from exc
            if not isinstance(key, Ed25519PrivateKey):
                raise ConfigError(f"signer {name}: PEM private key is {type(key).__name__}, want Ed25519")
            return cls(name, key)
        if len(data) != 32:
            raise ConfigError(
                f"signer {name}: raw private key is {len(data)} bytes, want a 32-byte Ed25519 seed"
            )
        return cls(name, Ed25519PrivateKey.from_private_bytes(data))

    @classmethod
    def from_signer_key(cls, skey: str) -> Signer:
        """Parse a Go note signer key ``PRIVATE+KEY+<name>+<key ID hex>+base64(0x01 || seed)``.

        Raises:
            ConfigError: when the string is malformed or its key ID does not match.
        """
        parts = skey.split("+", 4)
        key = _b64decode(parts[4]) if len(parts) == 5 else None
        if (
            key is None
            or parts[0] != "PRIVATE"
            or parts[1] != "KEY"
            or not _valid_name(parts[2])
            or not _HEX8.fullmatch(parts[3])
            or len(key) != 33
            or key[0] != ALG_ED25519
        ):
            raise ConfigError("malformed signer key: want PRIVATE+KEY+<name>+<8 hex digits>+<base64 seed>")
        signer = cls(parts[2], Ed25519PrivateKey.from_private_bytes(key[1:]))
        if signer.key_id != int(parts[3], 16):
            raise ConfigError(f"signer key for {parts[2]}: key ID {parts[3]} does not match the key")
        return signer

    @property
    def key_id(self) -> int:
        """The 32-bit key ID written at the start of each signature."""
        return _key_id(self.name, _typed_public(self.private_key.public_key()))

    def private_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 seed, for a key file."""
        return self.private_key.private_bytes_raw()

    def private_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM, for a key file other tools can read.

        ``serialization`` is imported here and where a PEM is read, not with the module: it loads
        every cipher and key format cryptography knows, which every command opening a ledger
        (``answerable halt`` first) would pay for a raw key it reads without it.
        """
        from cryptography.hazmat.primitives import serialization

        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def signer_key(self) -> str:
        """The Go note signer key string for this key."""
        return (
            f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{_b64(bytes([ALG_ED25519]) + self.private_bytes())}"
        )

    def verifier(self) -> Verifier:
        """The matching verifier."""
        return Verifier.from_public_key(self.name, self.private_key.public_key())

    def verifier_key(self) -> str:
        """The verifier key string ``<name>+<key ID hex>+base64(0x01 || public key)``."""
        return self.verifier().key()

    def signature_line(self, text: str) -> str:
        """One ``— <name> <base64(key ID || signature)>`` line over ``text``, newline included."""
        _check_text(text)
        sig = self.key_id.to_bytes(4, "big") + self.private_key.sign(text.encode("utf-8"))
        return f"{_SIG_PREFIX}{self.name} {_b64(sig)}\n"

    def sign(self, text: str) -> str:
        """The signed note: ``text``, a blank line, and this key's signature line.

        Raises:
            SignatureInvalid: when ``text`` does not end in a newline or has control characters, since
                no verifier would open the result.
        """
        return f"{text}\n{self.signature_line(text)}"


def _parse_note(note: str | bytes) -> tuple[str, list[tuple[str, int, bytes]]]:
    """Split a note into its text and ``(name, key ID, signature)`` triples, checking only syntax."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignatureInvalid(f"malformed note: not valid UTF-8 at byte {exc.start}") from exc
    else:
        try:
            note.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SignatureInvalid(f"malformed note: not valid UTF-8 at offset {exc.start}") from exc
    match = _CONTROL.search(note)
    if match:
        raise SignatureInvalid(
            f"malformed note: control character {match.group()!r} at offset {match.start()}; "
            f"only newline is allowed"
        )
    split = note.rfind("\n\n")
    if split < 0:
        raise SignatureInvalid("malformed note: no blank line separates the text from signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise SignatureInvalid("malformed note: the signature block is empty or lacks its final newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise SignatureInvalid(f"malformed note: {len(lines)} signature lines, at most {MAX_SIGNATURES}")
    sigs: list[tuple[str, int, bytes]] = []
    for n, line in enumerate(lines, start=1):
        if not line.startswith(_SIG_PREFIX):
            raise SignatureInvalid(
                f"malformed note: signature line {n} does not start with an em dash and space"
            )
        name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        raw = _b64decode(b64)
        if not _valid_name(name):
            raise SignatureInvalid(f"malformed note: signature line {n} has invalid key name {name!r}")
        if raw is None or len(raw) < 5:
            raise SignatureInvalid(
                f"malformed note: signature line {n} ({name}) is not base64 of key ID and signature"
            )
        sigs.append((name, int.from_bytes(raw[:4], "big"), raw[4:]))
    return text, sigs


def merge_signatures(ours: str, theirs: str) -> str:
    """``ours`` with the signatures of ``theirs`` by keys (name and key ID) it lacks, when both
    sign the same text, up to :data:`MAX_SIGNATURES` in all; ``ours`` as it is when either is
    malformed or their texts differ. Nothing is verified: a line kept is as good as the folder
    it came from, and verifiers ignore signatures by keys they do not know."""
    try:
        text, signed = _parse_note(ours)
        their_text, their_signed = _parse_note(theirs)
    except SignatureInvalid:
        return ours
    if text != their_text:
        return ours
    have = {(name, key_id) for name, key_id, _ in signed}
    kept = [
        f"{_SIG_PREFIX}{name} {_b64(key_id.to_bytes(4, 'big') + sig)}\n"
        for name, key_id, sig in their_signed
        if (name, key_id) not in have
    ]
    return ours + "".join(kept[: MAX_SIGNATURES - len(signed)])


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> tuple[str, list[str]]:
    """Verify a signed note and return its text and the names of the keys that signed it.

    Signatures from keys not in ``verifiers`` (by name *and* key ID) are ignored, which is what lets
    witnesses add cosignatures. A bad signature from a known key rejects the whole note.

    Args:
        note: the whole note; ``bytes`` are decoded as strict UTF-8.
        verifiers: the trusted keys.

    Returns:
        The note text (with its final newline) and the verified key names, in note order, once each.

    Raises:
        SignatureInvalid: when the note is malformed, a known key's signature fails, no known key
            signed it, or two different trusted keys share the name and key ID of a signature.
    """
    text, sigs = _parse_note(note)
    known: dict[tuple[str, int], list[Verifier]] = {}
    for v in verifiers:
        same = known.setdefault((v.name, v.key_id), [])
        if all(_typed_public(o.public_key) != _typed_public(v.public_key) for o in same):
            same.append(v)
    message = text.encode("utf-8")
    names: list[str] = []
    for name, key_id, sig in sigs:
        candidates = known.get((name, key_id))
        if not candidates:
            continue
        if len(candidates) > 1:
            raise SignatureInvalid(f"ambiguous key {name}+{key_id:08x}: several trusted keys share it")
        if not candidates[0].verify(message, sig):
            raise SignatureInvalid(f"invalid signature for key {name}+{key_id:08x}")
        if name not in names:
            names.append(name)
    if not names:
        listed = ", ".join(f"{n}+{k:08x}" for n, k, _ in sigs)
        raise SignatureInvalid(f"note has no verifiable signatures: signed by {listed}, none of them trusted")
    return text, names


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head in tlog-checkpoint form: origin, tree size, root hash and extension lines."""

    origin: str
    """The log's identity, line 1; never empty."""
    size: int
    """Number of leaves in the tree."""
    root_hash: bytes
    """RFC 9162 root hash of the tree at ``size``; 32 bytes."""
    extensions: tuple[str, ...] = ()
    """Opaque extra lines, each non-empty; not recommended, as monitors cannot audit them."""

    def __post_init__(self) -> None:
        if not self.origin:
            raise SignatureInvalid("checkpoint origin is empty")
        for what, line in (("origin", self.origin), *(("extension line", e) for e in self.extensions)):
            if not line:
                raise SignatureInvalid(f"checkpoint {what} is empty")
            if "\n" in line or _CONTROL.search(line):
                raise SignatureInvalid(f"checkpoint {what} {line!r} contains a newline or control character")
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise SignatureInvalid(f"checkpoint tree size {self.size} is outside 0..2**64-1")
        if len(self.root_hash) != _ROOT_SIZE:
            raise SignatureInvalid(f"checkpoint root hash is {len(self.root_hash)} bytes, want {_ROOT_SIZE}")

    def to_text(self) -> str:
        """The note text: origin, size, base64 root, then extension lines, each ending in newline."""
        lines = [self.origin, str(self.size), _b64(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text (already separated from its signatures).

        Raises:
            SignatureInvalid: naming the line that is not a valid origin, size, root or extension.
        """
        if not text.endswith("\n"):
            raise SignatureInvalid("malformed checkpoint: text does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise SignatureInvalid(
                f"malformed checkpoint: {len(lines)} lines, want origin, size and root hash"
            )
        origin, size, root, *extensions = lines
        if len(size) > 20 or not _TREE_SIZE.fullmatch(size) or int(size) > _MAX_TREE_SIZE:
            raise SignatureInvalid(
                f"malformed checkpoint: tree size {size!r} is not a decimal without leading zeros below 2**64"
            )
        raw = _b64decode(root)
        if raw is None or len(raw) != _ROOT_SIZE or _b64(raw) != root:
            raise SignatureInvalid(f"malformed checkpoint: root hash {root!r} is not base64 of 32 bytes")
        return cls(origin, int(size), raw, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The signed note of ``checkpoint``."""
    return signer.sign(checkpoint.to_text())


def checkpoint_size(signed: str) -> int:
    """The tree size a signed checkpoint note states, its signatures unchecked: for a note this
    process signed or stored, or to compare two notes before verifying either.

    Raises:
        SignatureInvalid: ``signed`` is no checkpoint note (a file that was replaced, a row that
            was altered), named as :meth:`Checkpoint.parse` names it.
    """
    return Checkpoint.parse(signed[: signed.rfind("\n\n") + 1]).size


def open_checkpoint(note: str | bytes, verifier: Verifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint with ``verifier`` and parse it.

    Args:
        note: the signed checkpoint note.
        verifier: the log's key; other signatures (witness cosignatures) are ignored.
        origin: the log identity expected on line 1, or None to accept any.

    Raises:
        SignatureInvalid: when the note does not verify, is not a checkpoint, or names another log.
    """
    text, _ = open_note(note, [verifier])
    checkpoint = Checkpoint.parse(text)
    if origin is not None and checkpoint.origin != origin:
        raise SignatureInvalid(f"checkpoint is for log {checkpoint.origin!r}, want {origin!r}")
    return checkpoint
