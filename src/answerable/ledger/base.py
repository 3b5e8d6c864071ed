"""The ledger contract: an append-only Merkle log of canonical records, with proofs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from answerable.records import Record

__all__ = ["MAX_ENTRY_BYTES", "LedgerStore", "StoredEntry", "VerifyReport"]

MAX_ENTRY_BYTES = 65_535
"""An entry stays under 64 KiB, the C2SP tlog-tiles limit; larger payloads go by digest."""


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


class LedgerStore(Protocol):
    """What the gateway, control and the CLI need from a ledger backend.

    ``append`` returns only once the records are durably committed: that is what makes
    "recorded before executed" true. Reads may be served from the caller's thread.
    """

    origin: str

    async def append(self, records: Sequence[Record]) -> list[int]: ...

    def size(self) -> int: ...

    def entry(self, index: int) -> StoredEntry: ...

    def find(self, entry_id: str) -> StoredEntry: ...

    def entries(self, start: int = 0, stop: int | None = None) -> list[StoredEntry]: ...

    def of_kind(self, kind: str, after: int = -1) -> list[StoredEntry]: ...

    def caused_by(self, entry_id: str) -> list[StoredEntry]: ...

    def put_blob(self, data: bytes) -> str: ...

    def get_blob(self, digest: str) -> bytes: ...

    def root(self, size: int | None = None) -> bytes: ...

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]: ...

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]: ...

    def checkpoint(self) -> str: ...

    def latest_checkpoint(self) -> str | None: ...

    def verifier_key(self) -> str: ...

    def verify(self, checkpoint: str | None = None) -> VerifyReport: ...

    def close(self) -> None: ...
