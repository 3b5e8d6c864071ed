"""Append-only, tamper-evident ledger: RFC 9162 Merkle tree, signed C2SP checkpoints, proofs.

The names below are imported when first used (PEP 562), not when the package is: importing one
light module of it (``answerable.ledger.location``, which the command line needs to parse a
ledger's name) must not load the SQL store, the verifier and their dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from answerable._lazy import lazy_names

if TYPE_CHECKING:
    from answerable.ledger._sql import SQLLedger
    from answerable.ledger.base import MAX_ENTRY_BYTES, LedgerStore, StoredEntry, VerifyReport, payload_of
    from answerable.ledger.location import SERVING_PATIENCE, open_ledger
    from answerable.ledger.merkle import leaf_hash, node_hash, verify_consistency, verify_inclusion
    from answerable.ledger.note import Checkpoint, Signer, Verifier, open_checkpoint, sign_checkpoint
    from answerable.ledger.sqlite import SQLiteLedger

_HOME = {
    "MAX_ENTRY_BYTES": "answerable.ledger.base",
    "Checkpoint": "answerable.ledger.note",
    "LedgerStore": "answerable.ledger.base",
    "SQLLedger": "answerable.ledger._sql",
    "SERVING_PATIENCE": "answerable.ledger.location",
    "SQLiteLedger": "answerable.ledger.sqlite",
    "Signer": "answerable.ledger.note",
    "StoredEntry": "answerable.ledger.base",
    "Verifier": "answerable.ledger.note",
    "VerifyReport": "answerable.ledger.base",
    "leaf_hash": "answerable.ledger.merkle",
    "node_hash": "answerable.ledger.merkle",
    "open_checkpoint": "answerable.ledger.note",
    "open_ledger": "answerable.ledger.location",
    "payload_of": "answerable.ledger.base",
    "sign_checkpoint": "answerable.ledger.note",
    "verify_consistency": "answerable.ledger.merkle",
    "verify_inclusion": "answerable.ledger.merkle",
}
"""Where each public name lives."""


__getattr__, __dir__ = lazy_names(__name__, _HOME, globals())


__all__ = [
    "MAX_ENTRY_BYTES",
    "SERVING_PATIENCE",
    "Checkpoint",
    "LedgerStore",
    "SQLLedger",
    "SQLiteLedger",
    "Signer",
    "StoredEntry",
    "Verifier",
    "VerifyReport",
    "leaf_hash",
    "node_hash",
    "open_checkpoint",
    "open_ledger",
    "payload_of",
    "sign_checkpoint",
    "verify_consistency",
    "verify_inclusion",
]
