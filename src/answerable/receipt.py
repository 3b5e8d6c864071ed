"""Receipts: what a caller keeps to prove, offline, that its call is in the RI's one history.

A receipt names the Intent, Decision and (when the call ran) Execution of one governed call and
proves each of them with a C2SP tlog-proof (https://c2sp.org/tlog-proof): the entry's leaf index,
its RFC 9162 inclusion proof and the signed checkpoint it is proven against, all three against the
same checkpoint. Each proof's ``extra`` line carries the entry's exact bytes, so the verifier hashes
them itself, reads the ids and links from them, and trusts nothing the receipt merely says. That is
stronger than a signature over the call alone: a log that showed one caller a receipt and an
auditor another history would have signed two checkpoints that no consistency proof joins.

A receipt exists only once a checkpoint covers the last of its entries; before that,
:func:`build_receipt` returns None and the service answers "not yet".

    doc = build_receipt(ledger, intent_id, result=tool_output)     # the service
    verify_receipt(raw_bytes, vkey)                                # anyone, offline
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from answerable._canonical import canonical_bytes
from answerable.errors import ConfigError, ProofInvalid, RecordInvalid, SignatureInvalid
from answerable.ledger.base import LedgerStore, StoredEntry
from answerable.ledger.merkle import HASH_SIZE, leaf_hash, verify_inclusion
from answerable.ledger.note import Checkpoint, Verifier, open_checkpoint
from answerable.records import Approval, Decision, Execution, Intent, decode_entry, digest

__all__ = ["RECEIPT_FORMAT", "TlogProof", "VerifiedReceipt", "build_receipt", "verify_receipt"]

RECEIPT_FORMAT = "answerable.receipt/v1"
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
_PARTS = ("intent", "decision", "execution")


@dataclass(frozen=True, slots=True)
class TlogProof:
    """One C2SP tlog-proof: an entry's index, its inclusion proof, the checkpoint and extra data."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    """The signed checkpoint note, verbatim."""
    extra: bytes | None = None

    def to_text(self) -> str:
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {base64.b64encode(self.extra).decode()}")
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def parse(cls, text: str) -> TlogProof:
        """Read the text form.

        Raises:
            ProofInvalid: naming the line that is not what the format wants.
        """
        head, sep, checkpoint = text.partition("\n\n")
        if not sep or not checkpoint:
            raise ProofInvalid("tlog-proof: no empty line before the checkpoint")
        lines = head.split("\n")
        if lines[0] != TLOG_PROOF_HEADER:
            raise ProofInvalid(f"tlog-proof: first line is {lines[0][:60]!r}, want {TLOG_PROOF_HEADER!r}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = _b64(rest[0][len("extra ") :], "extra")
            rest = rest[1:]
        if not rest or not rest[0].startswith("index "):
            raise ProofInvalid("tlog-proof: no 'index N' line")
        number = rest[0][len("index ") :]
        if (
            not number.isascii()
            or not number.isdigit()
            or len(number) > 20  # a leaf index is below 2**64
            or (number != "0" and number.startswith("0"))
        ):
            raise ProofInvalid(f"tlog-proof: index {number[:30]!r} is not a decimal without leading zeros")
        hashes = tuple(_b64(line, "proof hash") for line in rest[1:])
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ProofInvalid(f"tlog-proof: a proof hash is not {HASH_SIZE} bytes")
        return cls(int(number), hashes, checkpoint, extra)


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProofInvalid(f"tlog-proof: {what} is not base64: {text[:40]!r}") from exc
    if base64.b64encode(raw).decode() != text:
        raise ProofInvalid(f"tlog-proof: {what} is not canonical base64: {text[:40]!r}")
    return raw


def result_digest(result: Any) -> str:
    """The digest the gateway records for a result (``Execution.response_digest``)."""
    return digest(canonical_bytes(result))


def build_receipt(
    ledger: LedgerStore,
    ids: Mapping[str, str | None],
    *,
    approvals: tuple[str, ...] = (),
    result: Any = None,
) -> dict[str, Any] | None:
    """The receipt of one call against the latest signed checkpoint, or None while no checkpoint
    covers its last entry yet. ``ids``: the ``intent``, ``decision`` and ``execution`` entry ids
    (execution None for a call that did not run); ``approvals``: the approvals its execution's
    authority names; ``result``: the output the caller received, put in the receipt so that a
    verifier checks it against the digest the execution recorded.

    Raises:
        EntryNotFound: an id is not in the ledger.
    """
    entries = {part: ledger.find(entry_id) for part in _PARTS if (entry_id := ids.get(part)) is not None}
    approved = [ledger.find(entry_id) for entry_id in approvals]
    note = ledger.latest_checkpoint()
    if note is None or "intent" not in entries or "decision" not in entries:
        return None
    size = Checkpoint.parse(note.split("\n\n")[0] + "\n").size
    if max(e.index for e in [*entries.values(), *approved]) >= size:
        return None

    def proof(entry: StoredEntry) -> str:
        return TlogProof(
            entry.index, tuple(ledger.inclusion_proof(entry.index, size)), note, entry.data
        ).to_text()

    doc: dict[str, Any] = {"receipt": RECEIPT_FORMAT}
    for part in _PARTS:
        entry = entries.get(part)
        doc[part] = None if entry is None else {"id": entry.id, "index": entry.index}
    doc["approvals"] = [{"id": entry.id, "index": entry.index} for entry in approved]
    doc["proofs"] = {part: proof(entry) for part, entry in entries.items()}
    doc["proofs"]["approvals"] = [proof(entry) for entry in approved]
    if result is not None and "execution" in entries:
        doc["result"] = result
    return doc


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """What a receipt proved: the records themselves, read from the proven bytes."""

    checkpoint: Checkpoint
    intent: Intent
    decision: Decision
    execution: Execution | None
    approvals: tuple[Approval, ...]
    """Every answer proven, approvals and denials (each has its ``verdict``)."""
    result_checked: bool
    """The receipt carried the call's result and it matches the digest the execution recorded."""


class _Proven:
    """Each proof of one receipt checked against the one checkpoint they all must share."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self.note: str | None = None
        self.checkpoint: Checkpoint | None = None

    def entry(self, what: str, text: object, named: object) -> Any:
        if not isinstance(text, str):
            raise ProofInvalid(f"receipt: the {what} proof is not text")
        proof = TlogProof.parse(text)
        if self.note is None:
            self.note = proof.checkpoint
            self.checkpoint = open_checkpoint(proof.checkpoint, self.verifier, self.verifier.name)
        elif proof.checkpoint != self.note:
            raise ProofInvalid(f"receipt: the {what} proof is against another checkpoint")
        checkpoint = self.checkpoint
        if checkpoint is None:  # set above; said for the type checker
            raise ProofInvalid("receipt: no checkpoint")
        if proof.extra is None:
            raise ProofInvalid(f"receipt: the {what} proof carries no entry bytes (extra)")
        verify_inclusion(
            proof.index, checkpoint.size, leaf_hash(proof.extra), proof.hashes, checkpoint.root_hash
        )
        try:
            record = decode_entry(proof.extra)
        except RecordInvalid as exc:
            raise ProofInvalid(f"receipt: the {what} entry does not parse: {exc}") from exc
        if (
            not isinstance(named, Mapping)
            or named.get("id") != record.id
            or named.get("index") != proof.index
        ):
            raise ProofInvalid(f"receipt: the {what} id or index does not match its proven entry")
        return record


def verify_receipt(raw: bytes | str | Mapping[str, Any], vkey: str) -> VerifiedReceipt:
    """Check a receipt offline against the ledger's verifier key (``answerable ledger key``).

    Every proof must verify against one checkpoint signed by ``vkey``; ids and links are read from
    the proven entry bytes, never from the receipt's own words; a ``result`` in the receipt must
    match the digest its execution recorded. (An approval's own signature is checked against the
    charter by ``answerable verify``; offline, the receipt proves it is in the log.)

    Raises:
        ProofInvalid: the receipt is malformed or a proof, id or link does not hold.
        SignatureInvalid: the checkpoint is not signed by ``vkey``, or ``vkey`` is malformed.
    """
    doc = _document(raw)
    try:
        verifier = Verifier.from_key(vkey)
    except SignatureInvalid as exc:
        raise ConfigError(f"--key: not a verifier key (answerable ledger key prints one): {exc}") from exc
    proven = _Proven(verifier)
    proofs = doc.get("proofs")
    if not isinstance(proofs, Mapping) or "intent" not in proofs or "decision" not in proofs:
        raise ProofInvalid("receipt: 'proofs' must hold at least an intent and a decision")
    intent = proven.entry("intent", proofs["intent"], doc.get("intent"))
    decision = proven.entry("decision", proofs["decision"], doc.get("decision"))
    execution = None
    if proofs.get("execution") is not None:
        execution = proven.entry("execution", proofs["execution"], doc.get("execution"))
    texts, named = proofs.get("approvals", []), doc.get("approvals", [])
    if not isinstance(texts, list) or not isinstance(named, list) or len(texts) != len(named):
        raise ProofInvalid("receipt: 'approvals' and their proofs do not pair up")
    approvals = tuple(proven.entry("approval", t, n) for t, n in zip(texts, named, strict=True))
    if not isinstance(intent, Intent) or not isinstance(decision, Decision):
        raise ProofInvalid("receipt: the proven entries are not an Intent and its Decision")
    if decision.intent_id != intent.id:
        raise ProofInvalid(
            f"receipt: decision {decision.id} is of intent {decision.intent_id}, not {intent.id}"
        )
    if execution is not None and (
        not isinstance(execution, Execution)
        or execution.intent_id != intent.id
        or execution.decision_id != decision.id
    ):
        raise ProofInvalid("receipt: the proven execution is not of this intent and decision")
    for approval in approvals:
        if not isinstance(approval, Approval) or approval.intent_id != intent.id:
            raise ProofInvalid("receipt: a proven approval is not an approval of this intent")
    if decision.effect == "allow" and execution is None:
        raise ProofInvalid(
            "receipt: an allowed call's receipt must prove its execution (a final allow has one)"
        )
    if decision.effect != "review" and approvals:
        raise ProofInvalid(f"receipt: approvals of a call the rules decided {decision.effect!r} directly")
    authority = None if execution is None else execution.authority
    if (
        authority is not None
        and authority.via == "approval"
        and sorted(authority.ids) != sorted(a.id for a in approvals if a.verdict == "approve")
    ):
        raise ProofInvalid("receipt: the approvals do not match those the execution names as its authority")
    checked = False
    if "result" in doc:
        if execution is None or execution.response_digest != result_digest(doc["result"]):
            raise ProofInvalid("receipt: the result does not match the digest the execution recorded")
        checked = True
    if proven.checkpoint is None:
        raise ProofInvalid("receipt: no checkpoint")
    return VerifiedReceipt(proven.checkpoint, intent, decision, execution, approvals, checked)


def _document(raw: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        doc = raw
    else:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RecordInvalid(f"receipt: not JSON (UTF-8): {exc}") from exc
    if not isinstance(doc, Mapping) or doc.get("receipt") != RECEIPT_FORMAT:
        raise RecordInvalid(f"receipt: not an {RECEIPT_FORMAT} document")
    return doc
