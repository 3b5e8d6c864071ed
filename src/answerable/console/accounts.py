"""The console's accounts file: argon2id password hashes and signing keys sealed under the password.

One JSON file, mode 0600, beside the config (``[console] users``). For each identity it holds
an argon2id PHC hash of the password and, for a charter person who signs in the console
(answers reviews, resumes), their Ed25519 private key encrypted with AES-256-GCM under a key
derived by argon2id from the same password, with its own random salt. The server can use the
key only while the person is logged in: it is unlocked by the password at log-in and kept in
that session's memory, never written in plain. Nothing here goes into the ledger or a log.
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import HashingError, InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from answerable.errors import ConfigError
from answerable.keys import KeyPair

__all__ = [
    "MIN_PASSWORD",
    "Account",
    "SealedKey",
    "load_accounts",
    "set_password",
    "unlock",
    "verify_password",
]

MIN_PASSWORD = 12
"""Shortest password accepted, in characters."""

_HASHER = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters
_DUMMY = _HASHER.hash("not a password anyone has: spends the same time for an unknown name")
_KDF = {"time_cost": 3, "memory_cost": 65_536, "parallelism": 4}
"""argon2id parameters of the key-encryption key (memory in KiB), stored beside each sealed key."""


@dataclass(frozen=True, slots=True)
class SealedKey:
    """A private key encrypted under a key derived from the password."""

    salt: bytes
    nonce: bytes
    ciphertext: bytes
    time_cost: int
    memory_cost: int
    parallelism: int
    public_key: str
    """The key's public half (base64), to tell a rotated charter key without the password."""


@dataclass(frozen=True, slots=True)
class Account:
    """One identity's password hash and, if stored, its sealed signing key."""

    identity: str
    password_hash: str
    key: SealedKey | None = None


def verify_password(account: Account | None, password: str) -> bool:
    """Whether ``password`` is the account's; an unknown account (None) costs the same time."""
    try:
        if account is None:
            _HASHER.verify(_DUMMY, password)
            return False
        return _HASHER.verify(account.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def unlock(account: Account, password: str) -> KeyPair | None:
    """The account's signing key, decrypted with ``password``; None when it has none stored or
    the password does not open it (a file edited by hand: the hash and the seal disagree)."""
    sealed = account.key
    if sealed is None:
        return None
    try:
        # HashingError, OverflowError: argon2 parameters out of its range (a file damaged or
        # edited by hand: a cost of 0, or one past 32 bits)
        kek = _derive(password, sealed.salt, sealed.time_cost, sealed.memory_cost, sealed.parallelism)
        raw = AESGCM(kek).decrypt(sealed.nonce, sealed.ciphertext, account.identity.encode("utf-8"))
        return KeyPair(account.identity, Ed25519PrivateKey.from_private_bytes(raw))
    except (InvalidTag, ValueError, ConfigError, HashingError, OverflowError):
        return None  # ConfigError: an identity no key can be made for


def set_password(path: Path, identity: str, password: str, key: KeyPair | None) -> Account:
    """Store ``identity``'s new password (and ``key`` sealed under it) in the accounts file,
    written whole to a temporary file of mode 0600 and renamed over the old one.

    A password set without a key drops a key stored before: it was sealed under the old
    password, which is not known here.

    Raises:
        ConfigError: a password under :data:`MIN_PASSWORD` characters, a key of another
            identity, or a file that cannot be read (see :func:`load_accounts`) or written.
    """
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD} characters")
    if key is not None and key.identity != identity:
        raise ConfigError(f"the key file belongs to {key.identity!r}, not {identity!r}")
    accounts = load_accounts(path) if path.exists() else {}
    sealed = None if key is None else _seal(identity, password, key)
    account = Account(identity, _HASHER.hash(password), sealed)
    accounts[identity] = account
    _write(path, accounts)
    return account


def load_accounts(path: Path) -> dict[str, Account]:
    """The accounts in ``path``; an absent file holds none.

    Raises:
        ConfigError: group or others may read the file, or it is not an accounts file.
    """
    try:
        found = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read accounts file {path}: {exc.strerror}") from exc
    if found.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"accounts file {path} is open to group or others (mode {stat.S_IMODE(found.st_mode):04o}); "
            f"run chmod 600 {path}"
        )
    try:
        doc = orjson.loads(path.read_bytes())
        return {name: _account(name, entry) for name, entry in doc["users"].items()}
    except OSError as exc:
        raise ConfigError(f"cannot read accounts file {path}: {exc.strerror}") from exc
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"{path} is not an answerable accounts file; set the passwords again with "
            "answerable users set-password"
        ) from exc


def _account(identity: str, entry: dict[str, Any]) -> Account:
    key = entry.get("key")
    sealed = None
    if key is not None:
        sealed = SealedKey(
            salt=base64.b64decode(key["salt"], validate=True),
            nonce=base64.b64decode(key["nonce"], validate=True),
            ciphertext=base64.b64decode(key["ciphertext"], validate=True),
            time_cost=int(key["time_cost"]),
            memory_cost=int(key["memory_cost"]),
            parallelism=int(key["parallelism"]),
            public_key=str(key["public_key"]),
        )
    password = entry["password"]
    if not isinstance(password, str) or not password.startswith("$argon2id$"):
        raise ValueError("not an argon2id hash")
    return Account(identity, password, sealed)


def _derive(password: str, salt: bytes, time_cost: int, memory_cost: int, parallelism: int) -> bytes:
    return hash_secret_raw(
        password.encode("utf-8"),
        salt,
        time_cost=time_cost,
        memory_cost=memory_cost,
        parallelism=parallelism,
        hash_len=32,
        type=Type.ID,
    )


def _seal(identity: str, password: str, key: KeyPair) -> SealedKey:
    salt, nonce = os.urandom(16), os.urandom(12)
    kek = _derive(password, salt, **_KDF)
    # The identity is the associated data: a sealed key copied under another name does not open.
    ciphertext = AESGCM(kek).encrypt(nonce, key.private.private_bytes_raw(), identity.encode("utf-8"))
    return SealedKey(salt, nonce, ciphertext, public_key=key.public_b64, **_KDF)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write(path: Path, accounts: dict[str, Account]) -> None:
    doc = {
        "version": 1,
        "users": {
            a.identity: {
                "password": a.password_hash,
                "key": None
                if a.key is None
                else {
                    "kdf": "argon2id",
                    "cipher": "AES-256-GCM",
                    "salt": _b64(a.key.salt),
                    "nonce": _b64(a.key.nonce),
                    "ciphertext": _b64(a.key.ciphertext),
                    "time_cost": a.key.time_cost,
                    "memory_cost": a.key.memory_cost,
                    "parallelism": a.key.parallelism,
                    "public_key": a.key.public_key,
                },
            }
            for a in sorted(accounts.values(), key=lambda a: a.identity)
        },
    }
    if path.exists() and not path.is_file():  # renamed over, a device would become this file
        raise ConfigError(f"accounts file {path} is not a regular file")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"cannot write accounts file {path}: {exc.strerror}") from exc
