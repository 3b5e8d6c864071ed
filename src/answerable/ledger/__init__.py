"""Append-only, tamper-evident ledger: RFC 9162 Merkle tree, signed C2SP checkpoints, proofs."""

from answerable.ledger.base import MAX_ENTRY_BYTES, LedgerStore, StoredEntry, VerifyReport, payload_of
from answerable.ledger.merkle import leaf_hash, node_hash, verify_consistency, verify_inclusion
from answerable.ledger.note import Checkpoint, Signer, Verifier, open_checkpoint, sign_checkpoint
from answerable.ledger.sqlite import SQLiteLedger

__all__ = [
    "MAX_ENTRY_BYTES",
    "Checkpoint",
    "LedgerStore",
    "SQLiteLedger",
    "Signer",
    "StoredEntry",
    "Verifier",
    "VerifyReport",
    "leaf_hash",
    "node_hash",
    "open_checkpoint",
    "payload_of",
    "sign_checkpoint",
    "verify_consistency",
    "verify_inclusion",
]
