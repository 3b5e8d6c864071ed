"""Full verification of a stored ledger: every leaf, every stored node, every checkpoint."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Protocol

import orjson

from answerable.errors import LedgerTampered, SignatureInvalid
from answerable.ledger import merkle, note
from answerable.ledger.base import VerifyReport

__all__ = ["verify"]


class RawView(Protocol):
    """The rows a backend exposes for verification, in index order."""

    verifier: str
    origin: str

    def leaves(self) -> Iterator[tuple[int, str, str, bytes, bytes]]: ...

    def level(self, level: int) -> list[tuple[int, bytes]]: ...

    def max_level(self) -> int: ...

    def checkpoints(self) -> list[tuple[int, str]]: ...

    def id_at(self, index: int) -> str | None: ...

    def causes(self) -> Iterator[tuple[str, int]]: ...


def verify(view: RawView, external_checkpoint: str | None = None) -> VerifyReport:
    """Recompute the ledger from its stored bytes and compare with everything stored about it.

    Raises:
        LedgerTampered: naming the first bad entry by index and id where the damage is in one
            entry, or the checkpoint that no longer matches.
    """
    tree = [_leaves(view)]
    size = len(tree[0])
    level = 1
    while len(tree[-1]) >= 2:
        below = tree[-1]
        sha256 = hashlib.sha256
        computed = [sha256(b"\x01" + below[k] + below[k + 1]).digest() for k in range(0, len(below) - 1, 2)]
        _compare_level(view, level, computed)
        tree.append(computed)
        level += 1
    if view.max_level() >= level and view.level(view.max_level()):
        raise LedgerTampered(
            f"the stored tree has nodes at level {view.max_level()}, more than {size} entries need: "
            "entries were removed from the end"
        )

    def get_node(lvl: int, index: int) -> bytes:
        return tree[lvl][index]

    verifier = _verifier(view)
    stored = view.checkpoints()
    for cp_size, text in stored:
        cp = _open(text, verifier, view.origin, f"stored checkpoint at size {cp_size}")
        if cp.size != cp_size:
            raise LedgerTampered(f"stored checkpoint filed under size {cp_size} says size {cp.size}")
        _check_against(cp, size, get_node, "stored checkpoint")
    if external_checkpoint is not None:
        # Recomputing the root at the checkpoint's size from the verified leaves is the consistency
        # check: the first cp.size leaves of this ledger hash to the root that was signed then.
        cp = _open(external_checkpoint, verifier, view.origin, "the given checkpoint")
        _check_against(cp, size, get_node, "the given checkpoint")
    return VerifyReport(size=size, root=merkle.root_hash(size, get_node), checkpoints_checked=len(stored))


def _leaves(view: RawView) -> list[bytes]:
    hashes: list[bytes] = []
    sha256 = hashlib.sha256
    cited = _Multiset()
    for expected, (index, entry_id, kind, data, stored_hash) in enumerate(view.leaves()):
        if index != expected:
            raise LedgerTampered(
                f"ledger entry {expected} is missing (the next stored entry is {index}, id {entry_id})",
                index=expected,
            )
        if sha256(b"\x00" + data).digest() != stored_hash:
            raise LedgerTampered(
                f"ledger entry {index} (id {entry_id}): its stored bytes do not hash to its leaf hash",
                index=index,
                entry_id=entry_id,
            )
        try:
            body = orjson.loads(data)
            body_id, body_kind = body["id"], body["kind"]
        except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
            raise LedgerTampered(
                f"ledger entry {index} (id {entry_id}) is not a JSON record with id and kind",
                index=index,
                entry_id=entry_id,
            ) from exc
        if body_id != entry_id or body_kind != kind:
            raise LedgerTampered(
                f"ledger entry {index}: its index row says {kind} {entry_id} but its bytes say "
                f"{body_kind} {body_id}",
                index=index,
                entry_id=entry_id,
            )
        for cause in set(body.get("causes") or ()):
            cited.add((cause, index))
        hashes.append(stored_hash)
    stored = _Multiset()
    for pair in view.causes():
        stored.add(pair)
    if stored != cited:
        raise LedgerTampered(
            f"the causes index ({stored.count} links) does not match the causes written in the entries "
            f"({cited.count} links): it was edited, and provenance and recovery would read it wrong"
        )
    return hashes


class _Multiset:
    """An order-free fingerprint of a set of pairs: count plus a sum of per-process keyed hashes.

    Python's string hash is keyed per process (SipHash), so no one can craft a forged index that
    sums to the same fingerprint; and summing needs no sort of millions of pairs.
    """

    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, pair: tuple[str, int]) -> None:
        self.count += 1
        self.total = (self.total + hash(pair)) & 0xFFFFFFFFFFFFFFFF

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Multiset) and (self.count, self.total) == (other.count, other.total)

    __hash__ = None  # type: ignore[assignment]


def _compare_level(view: RawView, level: int, computed: list[bytes]) -> None:
    stored = view.level(level)
    for k, node in enumerate(computed):
        if k >= len(stored) or stored[k][0] != k:
            raise LedgerTampered(
                f"the stored tree node (level {level}, index {k}) is missing: the tree was edited",
                index=k << level,
                entry_id=view.id_at(k << level),
            )
        if stored[k][1] != node:
            first = k << level
            raise LedgerTampered(
                f"ledger entries {first}..{first + (1 << level) - 1} do not match the stored tree node "
                f"(level {level}, index {k}): an entry in that range was changed or reordered; "
                f"the first is {first} (id {view.id_at(first)})",
                index=first,
                entry_id=view.id_at(first),
            )
    if len(stored) > len(computed):
        first = len(computed) << level
        raise LedgerTampered(
            f"the stored tree covers entries from {first} that the ledger no longer holds: "
            "entries were removed from the end",
            index=first,
        )


def _verifier(view: RawView) -> note.Verifier:
    try:
        return note.Verifier.from_key(view.verifier)
    except SignatureInvalid as exc:
        raise LedgerTampered(f"the ledger's verifier key is malformed: {exc}") from exc


def _open(text: str, verifier: note.Verifier, origin: str, what: str) -> note.Checkpoint:
    try:
        return note.open_checkpoint(text, verifier, origin=origin)
    except SignatureInvalid as exc:
        raise LedgerTampered(f"{what} does not verify with the ledger's key: {exc}") from exc


def _check_against(cp: note.Checkpoint, size: int, get_node: merkle.GetNode, what: str) -> None:
    if cp.size > size:
        raise LedgerTampered(
            f"{what} commits to {cp.size} entries but the ledger holds {size}: "
            "entries were removed (truncation or rollback)",
            index=size,
        )
    if merkle.root_hash(cp.size, get_node) != cp.root_hash:
        raise LedgerTampered(f"{what} at size {cp.size} does not match the ledger: its history was rewritten")
