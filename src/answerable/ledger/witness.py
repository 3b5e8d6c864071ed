"""A C2SP tlog-witness: cosigns a log's checkpoint only if it extends the one it cosigned last.

A witness keeps, per log, the latest checkpoint it cosigned. Shown a new checkpoint with a
consistency proof from that one, it checks the log's signature and the proof, then returns an
Ed25519 ``cosignature/v1`` (c2sp.org/tlog-cosignature) and remembers the new checkpoint. So a
log that rewrote its history cannot get a second witness signature for the rewritten tree, even
when whoever rewrote it holds the log's signing key; and the cosigned checkpoints the witness
keeps catch the rewrite later (``answerable verify LEDGER --witness DIR``).

The check of the old size and the update of the stored checkpoint happen under one file lock,
so two requests racing cannot roll the witness's view back (c2sp.org/tlog-witness).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from answerable._urls import shown
from answerable.errors import ConfigError, LedgerTampered, ProofInvalid, SignatureInvalid
from answerable.ledger import merkle
from answerable.ledger.base import LedgerStore
from answerable.ledger.note import Checkpoint, Verifier, open_checkpoint

__all__ = [
    "ALG_COSIGNATURE",
    "CosignatureVerifier",
    "Cosigner",
    "Reply",
    "Witness",
    "check_witnessed",
    "cosigned_checkpoints",
    "request_cosignature",
]

ALG_COSIGNATURE = 0x04
"""Signature type byte of an Ed25519 cosignature/v1 key."""

_MAX_PROOF_LINES = 63
_SIG_PREFIX = "\u2014 "


def _key_id(name: str, public: bytes) -> int:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE]) + public).digest()
    return int.from_bytes(digest[:4], "big")


def _message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


@dataclass(frozen=True, slots=True)
class Cosigner:
    """A witness's name and Ed25519 key."""

    name: str
    private: Ed25519PrivateKey

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def vkey(self) -> str:
        """The witness's verifier key, ``name+keyid+base64(0x04 || public key)``."""
        typed = bytes([ALG_COSIGNATURE]) + self.public
        return f"{self.name}+{_key_id(self.name, self.public):08x}+{base64.b64encode(typed).decode()}"

    def cosign(self, body: str, timestamp: int) -> str:
        """The signature line cosigning a checkpoint ``body`` (its text, no signatures) at ``timestamp``."""
        signature = self.private.sign(_message(body, timestamp))
        raw = _key_id(self.name, self.public).to_bytes(4, "big") + timestamp.to_bytes(8, "big") + signature
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(raw).decode()}\n"


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """A witness's public key, to check its cosignatures."""

    name: str
    key_id: int
    public_key: Ed25519PublicKey

    @classmethod
    def from_key(cls, vkey: str) -> CosignatureVerifier:
        """Parse ``name+keyid+base64(0x04 || key)``.

        Raises:
            SignatureInvalid: malformed, not a cosignature/v1 key, or a key ID that does not match.
        """
        name, _, rest = vkey.partition("+")
        id_hex, _, key64 = rest.partition("+")
        try:
            typed = base64.b64decode(key64, validate=True)
            key_id = int(id_hex, 16)
        except ValueError as exc:
            # Not echoed: what was given where a public key belongs is often the private one.
            raise SignatureInvalid(
                f"malformed witness key ({len(vkey)} characters, not shown: it may be a private key): "
                "want <name>+<8 hex>+<base64>"
            ) from exc
        if not name or len(id_hex) != 8 or len(typed) != 33 or typed[0] != ALG_COSIGNATURE:
            raise SignatureInvalid(
                f"witness key {name}+{id_hex} is not an Ed25519 cosignature/v1 key (type 0x04)"
            )
        if _key_id(name, typed[1:]) != key_id:
            raise SignatureInvalid(f"witness key {vkey!r}: key ID {id_hex} does not match the name and key")
        return cls(name, key_id, Ed25519PublicKey.from_public_bytes(typed[1:]))

    def timestamp(self, note_text: str) -> int | None:
        """When this witness cosigned the checkpoint ``note_text`` (text, blank line, signatures),
        or None when no valid cosignature of it is there."""
        body, sep, block = note_text.partition("\n\n")
        if not sep:
            return None
        for line in block.splitlines():
            if not line.startswith(f"{_SIG_PREFIX}{self.name} "):
                continue
            try:
                raw = base64.b64decode(line.rsplit(" ", 1)[1], validate=True)
            except ValueError:
                continue
            if len(raw) != 4 + 8 + 64 or int.from_bytes(raw[:4], "big") != self.key_id:
                continue
            stamp = int.from_bytes(raw[4:12], "big")
            try:
                self.public_key.verify(raw[12:], _message(body + "\n", stamp))
            except InvalidSignature:
                continue
            return stamp
        return None


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer of the add-checkpoint call."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


class Witness:
    """Cosigns checkpoints of the logs it knows, keeping its state in ``state``.

    Per log (a folder named by the hash of its origin): ``latest`` (the last cosigned checkpoint
    with its cosignature) and ``cosigned/<size>`` for each one ever cosigned.
    """

    def __init__(self, cosigner: Cosigner, logs: Iterable[Verifier], state: Path) -> None:
        self.cosigner = cosigner
        self.logs = {v.name: v for v in logs}
        self.state = state
        try:
            state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"witness state {state}: {exc.strerror}") from exc

    def add_checkpoint(self, request: bytes, now: int) -> Reply:
        """Handle one ``POST /add-checkpoint`` body at POSIX time ``now``."""
        try:
            text = request.decode("utf-8")
            head, sep, note = text.partition("\n\n")
            lines = head.split("\n")
            if not sep or not lines[0].startswith("old "):
                return Reply(400, "want an old size line, proof lines, a blank line, then the checkpoint\n")
            old_text = lines[0][4:]
            if not old_text.isdigit() or (old_text != "0" and old_text.startswith("0")):
                return Reply(400, f"old size {old_text!r} is not a decimal without leading zeros\n")
            old = int(old_text)
            if len(lines) - 1 > _MAX_PROOF_LINES:
                return Reply(400, f"{len(lines) - 1} proof lines, at most {_MAX_PROOF_LINES}\n")
            proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
        except ValueError as exc:  # not UTF-8, a proof line that is not base64
            return Reply(400, f"malformed request: {exc}\n")
        origin = note.split("\n", 1)[0]
        log = self.logs.get(origin)
        if log is None:
            return Reply(404, f"unknown log {origin!r}\n")
        try:
            checkpoint = open_checkpoint(note, log, origin)
        except SignatureInvalid as exc:
            return Reply(403, f"{exc}\n")
        if old > checkpoint.size:
            return Reply(400, f"old size {old} is past the checkpoint's size {checkpoint.size}\n")
        if checkpoint.size == 0 and checkpoint.root_hash != merkle.EMPTY_ROOT:
            return Reply(422, "a checkpoint of size 0 must have the empty tree's root\n")
        folder = self.state / _log_folder(origin)
        folder.mkdir(exist_ok=True)
        with _locked(folder / "lock"):
            latest = _read_latest(folder / "latest", log)
            if old != (0 if latest is None else latest.size):
                return Reply(409, f"{0 if latest is None else latest.size}\n", "text/x.tlog.size")
            problem = _inconsistent(latest, old, proof, checkpoint)
            if problem is not None:
                return Reply(422, problem + "\n")
            body = checkpoint.to_text()
            line = self.cosigner.cosign(body, now)
            cosigned = f"{body}\n{note.split(chr(10) + chr(10), 1)[1]}{line}"
            _write(folder / "cosigned" / str(checkpoint.size), cosigned)
            _write(folder / "latest", cosigned)
        return Reply(200, line)


def _inconsistent(latest: Checkpoint | None, old: int, proof: list[bytes], new: Checkpoint) -> str | None:
    if latest is None or old == 0:
        return None if not proof else "a proof from size 0 must be empty"
    if old == new.size:
        return None if new.root_hash == latest.root_hash and not proof else "same size, another root"
    try:
        merkle.verify_consistency(old, new.size, proof, latest.root_hash, new.root_hash)
    except ProofInvalid as exc:
        return f"not consistent with the checkpoint of size {old} cosigned before: {exc}"
    return None


def _read_latest(path: Path, log: Verifier) -> Checkpoint | None:
    if not path.exists():
        return None
    return open_checkpoint(path.read_text(encoding="utf-8"), log, log.name)


class _locked:
    """An exclusive lock on a file, across processes, for the ``with`` block."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())  # persisted before the cosignature is returned
    os.replace(temp, path)


def _log_folder(origin: str) -> str:
    """The name of a log's folder in a witness's state: a hash of its origin (any text)."""
    return hashlib.sha256(origin.encode()).hexdigest()[:32]


def cosigned_checkpoints(folder: Path) -> Iterator[tuple[Path, str]]:
    """Every checkpoint a witness state folder (or any folder of kept checkpoints) holds:
    the files under ``cosigned/`` folders, or else every file directly inside ``folder``."""
    found = sorted(folder.glob("*/cosigned/*")) or sorted(p for p in folder.iterdir() if p.is_file())
    for path in found:
        if path.is_file() and not path.name.startswith("."):
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                yield path, ""  # overwritten with bytes: a damaged record
            except OSError as exc:  # not readable by whoever verifies: say so, never "tampered"
                raise ConfigError(f"cannot read witness record {path}: {exc.strerror or exc}") from exc


def request_cosignature(
    checkpoint: str, url: str, witness: CosignatureVerifier, proof_from: Callable[[int], list[bytes]]
) -> str:
    """Ask the witness at ``url`` to cosign ``checkpoint`` (a signed note); the note with its
    cosignature added.

    The first request claims an old size of 0; a witness that cosigned this log before answers
    409 with the size it holds, and the request is made again with ``proof_from(size)``.

    Raises:
        ProofInvalid: the witness refused the checkpoint (it does not extend what it cosigned).
        ConfigError: the witness cannot be reached or does not know the log.
        SignatureInvalid: its answer carries no valid cosignature by ``witness``.
    """
    old, proof = 0, list[bytes]()
    for _ in range(3):
        body = (
            f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + checkpoint
        )
        try:
            answer = httpx.post(url.rstrip("/") + "/add-checkpoint", content=body.encode(), timeout=30)
        except httpx.TransportError as exc:  # what the socket said ("Connection refused"), no URL
            raise ConfigError(f"witness {shown(url)}: {exc}") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # these quote the URL, which is not shown
            raise ConfigError(f"witness {shown(url)}: not a URL to reach ({type(exc).__name__})") from exc
        if answer.status_code == 409 and answer.text.strip().isdigit():
            old = int(answer.text.strip())
            proof = proof_from(old)
            continue
        if answer.status_code == 422:
            raise ProofInvalid(f"witness {witness.name} refused the checkpoint: {answer.text.strip()}")
        if answer.status_code != 200:
            raise ConfigError(f"witness {shown(url)} answered {answer.status_code}: {answer.text.strip()}")
        # Only this witness's verified line is kept: a faulty one cannot add others to the note.
        for line in answer.text.splitlines(keepends=True):
            if witness.timestamp(checkpoint + line) is not None:
                return checkpoint + line
        raise SignatureInvalid(f"witness {shown(url)} answered without a valid cosignature by {witness.name}")
    raise ConfigError(f"witness {shown(url)} keeps changing its size; try again")


def check_witnessed(store: LedgerStore, folder: Path, log: Verifier) -> int:
    """Hold the ledger against every checkpoint of its log kept in ``folder`` (a witness's
    state, or copies of cosigned checkpoints); return how many were checked.

    Catches a history rewritten even by someone with the log's signing key: the root the
    ledger computes now at each witnessed size must be the root witnessed then.

    Raises:
        LedgerTampered: the ledger is shorter than a witnessed checkpoint, its root at a
            witnessed size differs, or a checkpoint of this log was signed with another key.
        ConfigError: ``folder`` is not a folder.
    """
    if not folder.is_dir():
        raise ConfigError(f"--witness {folder} is not a folder")
    size, checked = store.size(), 0
    own = _log_folder(log.name)
    for path, text in cosigned_checkpoints(folder):
        if text.split("\n", 1)[0] != log.name:
            if path.parent.name == "cosigned" and path.parent.parent.name == own:
                raise LedgerTampered(  # emptied or overwritten: the root it kept cannot be held up
                    f"witness record {path} of this log is damaged (not a checkpoint of {log.name}): the "
                    "root it witnessed cannot be held against the ledger; restore it from the witness"
                )
            continue  # another log's checkpoint
        try:
            checkpoint = open_checkpoint(text, log, log.name)
        except SignatureInvalid as exc:
            raise LedgerTampered(
                f"checkpoint {path} of this log does not verify with the ledger's key ({exc}): "
                "the ledger's key was replaced, or the file was"
            ) from exc
        if checkpoint.size > size:
            raise LedgerTampered(
                f"history was cut: {path} witnessed {checkpoint.size} entries, the ledger has {size}"
            )
        if store.root(checkpoint.size) != checkpoint.root_hash:
            raise LedgerTampered(
                f"history was rewritten: the root at size {checkpoint.size} is not the one {path} witnessed"
            )
        checked += 1
    return checked
