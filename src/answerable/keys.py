"""Ed25519 keys of people and systems: generate, store, sign, verify.

Raw bytes come from the keys' own ``*_bytes_raw`` methods, not from ``serialization``'s encoders:
importing that package loads every cipher and key format cryptography knows, which doubles the
cost of importing cryptography for a command (``answerable halt``) that only verifies Ed25519.
"""

from __future__ import annotations

import base64
import os
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from answerable._files import read_capped
from answerable.errors import ConfigError, SignatureInvalid

__all__ = ["KeyPair", "identity_problem", "public_key_of", "public_key_problem", "verify_signature"]

_MAX_KEY_FILE = 4096
"""Bytes read of a key file at most: one holds an identity and 44 characters of base64."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A named Ed25519 key pair. The key file holds ``identity`` and the raw private key."""

    identity: str
    private: Ed25519PrivateKey

    def __post_init__(self) -> None:
        """Refuse what :meth:`save` would write and :meth:`load` could not read back: a key file
        is its identity and the key separated by whitespace, in UTF-8. A key made for such a name
        was saved, and its owner was then told the file is no key file."""
        problem = identity_problem(self.identity)
        if problem is not None:
            named = f" {self.identity!r:.80}" if isinstance(self.identity, str) else ""
            raise ConfigError(f"key identity{named} {problem}")
        if not isinstance(self.private, Ed25519PrivateKey):
            raise ConfigError(f"a key pair holds an Ed25519 private key, not a {type(self.private).__name__}")

    @classmethod
    def generate(cls, identity: str) -> KeyPair:
        """A new key for ``identity``.

        Raises:
            ConfigError: ``identity`` is empty, longer than 200 characters, holds whitespace or a
                control character, or has no UTF-8 form.
        """
        return cls(identity, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, identity: str, seed: bytes) -> KeyPair:
        """A deterministic key, for reproducible demos and tests only.

        Raises:
            ConfigError: ``seed`` is not 32 bytes.
        """
        try:
            return cls(identity, Ed25519PrivateKey.from_private_bytes(seed))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"key seed for {identity!r} must be 32 raw bytes: {exc}") from exc

    @property
    def public_b64(self) -> str:
        raw = self.private.public_key().public_bytes_raw()
        return base64.b64encode(raw).decode("ascii")

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode("ascii")

    def save(self, path: str | os.PathLike[str], *, replace: bool = True) -> None:
        """Write the key file, readable by its owner only.

        ``replace=False`` refuses a file that exists: a private key written over is gone for good.

        Raises:
            ConfigError: the file cannot be written (no such directory, no permission), or it
                exists and ``replace`` is false.
        """
        path = _key_path(path)
        raw = self.private.private_bytes_raw()
        text = f"{self.identity}\n{base64.b64encode(raw).decode('ascii')}\n"
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o600)
            os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: set it
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        except FileExistsError as exc:
            raise ConfigError(f"key file {path} exists already; a key is never written over") from exc
        except OSError as exc:
            raise ConfigError(f"cannot write key file {path}: {exc.strerror or exc}") from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeyPair:
        """Read a key file written by :meth:`save`.

        Raises:
            ConfigError: the file is missing, unreadable or not an answerable key file.
        """
        path = _key_path(path)
        try:
            # A pipe is read (a key kept off the disk: --key <(...)); /dev/zero and a FIFO nobody
            # writes to are no key file, said at once.
            text = read_capped(path, _MAX_KEY_FILE)
            identity, encoded = text.decode("utf-8").split()
            raw = base64.b64decode(encoded, validate=True)
            try:
                return cls(identity, Ed25519PrivateKey.from_private_bytes(raw))
            except ConfigError as exc:  # an identity no key may have: say which file holds it
                raise ConfigError(f"key file {path}: {exc}") from exc
        except FileNotFoundError as exc:
            raise ConfigError(f"key file {path} does not exist") from exc
        except OSError as exc:  # a directory, no permission
            raise ConfigError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise ConfigError(
                f"key file {path} is not an answerable key file (expected two lines: identity, "
                "base64 of a 32-byte Ed25519 private key)"
            ) from exc


_MAX_IDENTITY = 200
"""As the charter's names: the longest identity a person or agent may have."""


def identity_problem(identity: object) -> str | None:
    """Why ``identity`` cannot name a key (``'' is empty``), or None."""
    if not isinstance(identity, str):
        return f"must be text, not {type(identity).__name__}"
    if not identity:
        return "is empty"
    if len(identity) > _MAX_IDENTITY:
        return f"is {len(identity)} characters; at most {_MAX_IDENTITY}"
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in identity):
        # The charter's names have no whitespace either; a control character no name needs
        return "holds whitespace or a control character (a key file is identity and key, split by whitespace)"
    try:
        identity.encode("utf-8")
    except UnicodeEncodeError:
        return "has no UTF-8 form (a lone surrogate)"
    return None


_SMALL_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
        "0100000000000000000000000000000000000000000000000000000000000000",  # order 1
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p - 1: order 2
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p: 0 again, order 4
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p + 1: 1 again
    )
)
"""The Ed25519 public keys of small order, as libsodium lists them (``ge25519_has_small_order``),
the sign bit of x cleared. Under such a key a signature made by nobody verifies for a share of all
messages (R the neutral point, S zero: for the key 0x01 00..00 every message), so a charter that
held one would let anyone speak as that agent or person; cryptography takes them as keys."""


def public_key_problem(raw: bytes) -> str | None:
    """Why ``raw`` cannot be someone's Ed25519 public key, or None: not 32 bytes, no point of the
    curve, or a point of small order, under which anyone forges signatures (see ``_SMALL_ORDER``)."""
    if len(raw) != 32:
        return f"is {len(raw)} bytes, not 32"
    if raw[:31] + bytes([raw[31] & 0x7F]) in _SMALL_ORDER:
        return "is a point of small order, under which anyone can forge signatures"
    if not _on_the_curve(raw):
        return "is no point of the curve (mistyped?)"
    return None


_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P


def _on_the_curve(raw: bytes) -> bool:
    """Whether ``raw`` decodes to a point as RFC 8032 (5.1.3) decodes one: y below p, and
    x^2 = (y^2 - 1) / (d y^2 + 1) a square (x = 0 with its sign bit set is no point).
    cryptography decodes a key only when it verifies with it, so a mistyped key was taken."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y >= _P:
        return False
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    if x2 == 0:
        return not raw[31] >> 7
    return pow(x2, (_P - 1) // 2, _P) == 1


def public_key_of(public_b64: str) -> Ed25519PublicKey:
    """The key a charter holds (base64), to verify with: never one of small order or off the
    curve, whatever an older charter holds (see :func:`public_key_problem`).

    Raises:
        ValueError: not base64, or no key anyone signs with alone.
    """
    raw = base64.b64decode(public_b64, validate=True)
    problem = public_key_problem(raw)
    if problem is not None:
        raise ValueError(f"the public key {problem}")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_signature(public_b64: str, signature_b64: str | None, data: bytes, *, who: str) -> None:
    """Raise SignatureInvalid unless ``signature_b64`` is ``who``'s Ed25519 signature over ``data``
    (never under a key of small order, whatever an older charter holds)."""
    if not signature_b64:
        raise SignatureInvalid(f"missing signature by {who}")
    try:
        public_key_of(public_b64).verify(base64.b64decode(signature_b64, validate=True), data)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise SignatureInvalid(
            f"signature by {who} does not verify against their key in the charter"
        ) from exc


def _key_path(path: object) -> Path:
    """``path`` as a Path, or ConfigError: None or a number was a raw TypeError, a NUL a
    ValueError, a lone surrogate a UnicodeEncodeError, each with a message about something else.
    Bytes are a path as ``open`` reads them."""
    if not isinstance(path, str | bytes | os.PathLike):
        raise ConfigError(f"a key file is named by a path, not {type(path).__name__}")
    text = os.fsdecode(path)
    if "\x00" in text:
        raise ConfigError("a key file's path holds a NUL character, which no file name has")
    try:
        text.encode(sys.getfilesystemencoding(), "surrogateescape")
    except UnicodeEncodeError:
        raise ConfigError("a key file's path holds a character no file name can hold") from None
    return Path(text)
