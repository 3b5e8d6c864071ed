"""The ledger contract: an append-only Merkle log of canonical records, with proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from answerable._canonical import canonical_bytes
from answerable.errors import EntryNotFound, RecordInvalid
from answerable.records import Record

__all__ = [
    "CONTROL_HEAD",
    "MAX_ENTRY_BYTES",
    "Guard",
    "LeaseRow",
    "LedgerStore",
    "StoredEntry",
    "VerifyReport",
    "holds",
    "payload_of",
]

MAX_ENTRY_BYTES = 65_535
"""An entry stays under 64 KiB, the C2SP tlog-tiles limit; larger payloads go by digest."""

CONTROL_HEAD = "control"
"""The head the store itself moves to every Control entry it appends, with no guard asked for,
so a halt never waits on or fails for anyone; a guard on it is checked, never moves it (two
messages guarded on one head both land). A writer whose record must not land after a stop
(a message) reads the head, then the control state, and appends guarded on the head as read: a
halt committed in between, by any process, refuses the append with Conflict, and the writer
judges again under the halt. A ledger written before the head existed has none (None) until its
next Control entry: the head only has to move when a stop lands, not name the last one before."""


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One leaf as stored: its position, id, kind and the exact bytes that were hashed."""

    index: int
    id: str
    kind: str
    data: bytes


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a full verification checked."""

    size: int
    root: bytes
    checkpoints_checked: int


@dataclass(frozen=True, slots=True)
class Guard:
    """A compare-and-set on a named head, checked inside the append's own transaction.

    The append commits only if the head ``key`` still points where the writer last saw it
    (``expect``: the index of the last entry written under that key, None if none was); it then
    points at the append's last entry. Two processes answering one review, or claiming one
    intent, cannot both pass: that uniqueness lives in the store, not in any process.
    :data:`CONTROL_HEAD` is the one head the store moves unasked (to every Control entry), and
    the one a guard only checks.
    """

    key: str
    expect: int | None


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """Who may sequence the ledger now: the one active gateway, fenced by its epoch.

    ``beat`` is a counter the holder advances; a standby judges it dead when the counter stops
    moving for long enough on the standby's own monotonic clock, so no wall clock is trusted.
    """

    holder: str
    epoch: int
    beat: int
    pid: int
    host: str
    since: str
    process: str
    """Identifies the holder process beyond its pid (boot id and start time), so a reused pid
    is not mistaken for the holder."""
    released: bool = False


class LedgerStore(Protocol):
    """What the gateway, control and the CLI need from a ledger backend.

    ``append`` returns only once the records are durably committed: that is what makes
    "recorded before executed" true. Reads may be served from the caller's thread.
    """

    origin: str

    async def append(
        self, records: Iterable[Record], *, fence: int | None = None, guards: Sequence[Guard] = ()
    ) -> list[int]:
        """Commit ``records`` durably, or none of them: a list, or any iterable of records (a
        generator is read once); a record alone is refused with RecordInvalid.

        ``fence``: the writer's lease epoch; refused with LeaseLost unless it is the epoch in force
        (writers that are not gateways, such as the CLI, pass None). ``guards``: refused with
        Conflict unless every head is where the writer expects it.
        """
        ...

    def head(self, key: str) -> int | None:
        """Where a guarded head points: the index of the last entry appended under ``key``."""
        ...

    def lease(self) -> LeaseRow | None: ...

    def take_lease(self, row: LeaseRow, *, expect: tuple[int, int] | None) -> int | None:
        """Atomically take the lease when it is still as seen (``expect`` = (epoch, beat), None
        when there was none); returns the new epoch, or None when someone else changed it first."""
        ...

    def beat_lease(self, epoch: int) -> bool:
        """Advance the heartbeat; False when ``epoch`` is no longer the lease in force."""
        ...

    def release_lease(self, epoch: int) -> None: ...

    def use_nonce(self, key: str, created: int, *, forget_before: int | None = None) -> bool:
        """Record a signed request's nonce durably; False when it was seen before (a replay).
        Nonces created before ``forget_before`` may be dropped: requests that old are refused."""
        ...

    def mark_nonces(self, keys: Sequence[str], created: int) -> None:
        """Record many nonces in one durable commit (a subscriber group's handled marks)."""
        ...

    def put_note(self, key: str, value: str) -> None:
        """Keep a small durable note beside the entries (neither hashed nor signed)."""
        ...

    def get_note(self, key: str) -> str | None:
        """The note kept under ``key``, or None."""
        ...

    def nonce_seen(self, key: str) -> bool:
        """Whether ``use_nonce`` recorded ``key``: a subscriber group's handled marks are nonces."""
        ...

    def size(self) -> int: ...

    def data_version(self) -> int:
        """A number that two calls return alike only if nothing was committed to the ledger in
        between, by this process or any other: what lets a reader keep a fold of the ledger in
        memory and re-read only after a change. A store that cannot tell cheaply returns a new
        number on every call."""
        ...

    def latest_time(self) -> int | None:
        """The latest time (ns since the epoch) the runtime's clock gave an entry appended here,
        kept as a maximum in each append's own transaction; records their signers date
        (``Record.dated_by_signer``) are left out. None if nothing was appended since the store
        began keeping it (a ledger an earlier version wrote)."""
        ...

    def entry(self, index: int) -> StoredEntry: ...

    def find(self, entry_id: str) -> StoredEntry: ...

    def unknown(self, entry_ids: Sequence[str]) -> list[str]:
        """Those of ``entry_ids`` no entry has, in one read (an intent's causes, checked)."""
        ...

    def entries(self, start: int = 0, stop: int | None = None) -> list[StoredEntry]: ...

    def of_kind(self, kind: str, after: int = -1) -> list[StoredEntry]: ...

    def caused_by(self, entry_id: str) -> list[StoredEntry]: ...

    def put_blob(self, data: bytes) -> str: ...

    def get_blob(self, digest: str) -> bytes: ...

    def root(self, size: int | None = None) -> bytes: ...

    def hashes(self, height: int, start: int, stop: int) -> list[bytes]:
        """The hashes of the complete subtrees of ``2**height`` leaves numbered ``start`` to
        ``stop - 1`` (height 0: the leaf hashes), as a tlog tile holds them."""
        ...

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]: ...

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]: ...

    def checkpoint(self) -> str: ...

    def latest_checkpoint(self) -> str | None: ...

    def verifier_key(self) -> str: ...

    def verify(self, checkpoint: str | None = None, *, key: str | None = None) -> VerifyReport:
        """Recompute everything; with ``key`` pinned, also require checkpoints by that key to
        cover the whole ledger."""
        ...

    def close(self) -> None: ...


def holds(stored: bytes, data: bytes) -> bool:
    """Whether an entry the ledger stored is the record whose bytes are ``data``: the same bytes,
    or the same with the payload moved to a blob, as the ledger stores an entry over 64 KiB (a
    bus carries such a record whole)."""
    if stored == data:
        return True
    if b'"$blob"' not in stored:
        return False
    try:
        body = orjson.loads(data)
        if not isinstance(body, dict) or not isinstance(body.get("payload"), dict):
            return False
        if canonical_bytes(body) != data:  # the very bytes the ledger wrote, not an equal value
            return False
        blob = canonical_bytes(body["payload"])
        body["payload"] = {"$blob": "sha256:" + hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
        return canonical_bytes(body) == stored
    except (orjson.JSONDecodeError, RecordInvalid, TypeError, ValueError, OverflowError):
        return False  # bytes no ledger could have written: not what it holds


def payload_of(ledger: LedgerStore, payload: dict[str, Any]) -> dict[str, Any]:
    """An event's or message's payload as written: fetched from its blob when it was too big to
    stay in the entry; empty when the blob is missing or is not a JSON object."""
    ref = payload.get("$blob")
    if isinstance(ref, str) and set(payload) == {"$blob", "bytes"}:
        try:
            loaded = orjson.loads(ledger.get_blob(ref))
        except (EntryNotFound, orjson.JSONDecodeError):
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return payload
