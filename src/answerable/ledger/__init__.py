"""Append-only, tamper-evident ledger: RFC 9162 Merkle tree, signed C2SP checkpoints, proofs."""

from answerable.ledger._sql import SQLLedger
from answerable.ledger.base import MAX_ENTRY_BYTES, LedgerStore, StoredEntry, VerifyReport, payload_of
from answerable.ledger.location import open_ledger
from answerable.ledger.merkle import leaf_hash, node_hash, verify_consistency, verify_inclusion
from answerable.ledger.note import Checkpoint, Signer, Verifier, open_checkpoint, sign_checkpoint
from answerable.ledger.sqlite import SQLiteLedger

__all__ = [
    "MAX_ENTRY_BYTES",
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
