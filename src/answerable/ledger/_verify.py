"""Full verification of a stored ledger: every leaf, blob, stored node and checkpoint, and whose key.

What verification proves depends on what it is given from outside the database. On its own it
proves self-consistency only: entries, blobs, tree and checkpoints agree with each other. Whoever
can write the database can also rewrite history, rebuild the tree and sign fresh checkpoints with a
fresh key, and that ledger agrees with itself too. A verifier key kept elsewhere (``key``) ties the
ledger to its signer: the key the database records must be it, every stored checkpoint must be
signed with it, and one of them must cover every entry. A checkpoint kept elsewhere
(``external_checkpoint``) ties the entries it covers to what was signed then.

How a changed entry is named. A leaf whose bytes do not hash to its stored leaf hash, or whose bytes
name another id than its row, is named at once. A forger who rewrites an entry *and* its leaf hash
is caught by the stored complete-subtree hashes (table ``nodes``), which pin each pair of leaves:
the lowest mismatching node says which two (level 1) entries hold the change, never more. Inside
that pair:

1. a move is proven, not guessed: if the stored pair hash is the hash of two leaves that stand
   elsewhere now, those entries were swapped or moved, and both are named;
2. a checkpoint signed at the size that ends between the two says which one it still vouches for;
3. the ledger writes only canonical JSON, so non-canonical bytes betray a hand edit.

If none of these applies, the pair hash cannot tell the two apart (SHA-256 cannot be inverted and
no leaf hash is stored twice), and both are named. A stored node that alone disagrees while its
parent still matches the entries is the node's own edit, and no entry is blamed. When the tree was
rebuilt to match, only checkpoints remain: the latest one that still matches and the first that
does not bracket the change, and the same byte and id-order evidence narrows it inside.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import itemgetter
from typing import Any, Protocol

import orjson

from answerable._canonical import canonical_bytes
from answerable.errors import ConfigError, LedgerTampered, RecordInvalid, SignatureInvalid
from answerable.ledger import merkle, note
from answerable.ledger.base import VerifyReport

__all__ = ["altered_blob", "blob_digest", "stored_bytes", "verify"]

_MAX_PAIRS = 16
"""Mismatching leaf pairs searched for a move; more than this is no longer a swap to explain."""
_MAX_SCAN = 65_536
"""Largest range of entries re-read to find a hand-edited one when only checkpoints bracket it."""

_loads = orjson.loads
_DIGEST = type(hashlib.sha256()).digest
"""``HASH.digest`` unbound, to map over hash objects without a Python frame per entry."""
_ID = itemgetter("id")
_KIND = itemgetter("kind")


class RawView(Protocol):
    """The rows a backend exposes for verification, in index order, from one snapshot."""

    verifier: str
    """The verifier key the database records."""
    origin: str

    def leaves(self) -> Iterator[list[tuple[int, str, str, bytes, bytes]]]:
        """Every entry row (index, id, kind, data, leaf hash) in index order, in batches (one
        query: the batches are what is checked at a time)."""
        ...

    def rows(self, start: int, stop: int) -> Iterator[tuple[int, str, bytes]]: ...

    def level(self, level: int) -> list[tuple[int, bytes]]: ...

    def nodes(self, level: int) -> Iterator[list[tuple[int, bytes]]]:
        """The stored nodes (index, hash) of one level, in index order, in batches."""
        ...

    def max_level(self) -> int: ...

    def checkpoints(self) -> list[tuple[int, str]]: ...

    def id_at(self, index: int) -> str | None: ...

    def causes(self) -> Iterator[list[tuple[str, int]]]:
        """Every (cause, index) row of the causes index, in batches, in any order."""
        ...

    def causes_by_index(self) -> Iterator[tuple[int, str]]: ...

    def blobs(self) -> Iterator[tuple[str, bytes]]: ...


def stored_bytes(value: str | bytes) -> bytes:
    """The bytes of an entry's or blob's stored value. Rewritten as TEXT by hand in SQL (SQLite keeps
    what it is given), it counts as its UTF-8 bytes: it cannot match a hash unless those are the bytes
    written, and no reader crashes on it."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)


def blob_digest(data: bytes) -> str:
    """The name a blob is stored and cited under: ``sha256:`` and the hex digest of its bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def altered_blob(digest: str, data: bytes, citing: tuple[int, str] | None) -> LedgerTampered:
    """The fault for a blob whose stored bytes no longer hash to the digest it is stored under."""
    by = "" if citing is None else f"; ledger entry {citing[0]} (id {citing[1]}) cites it"
    return LedgerTampered(
        f"blob {digest} was altered: its stored bytes hash to {blob_digest(data)}{by}",
        index=None if citing is None else citing[0],
        entry_id=None if citing is None else citing[1],
    )


def verify(view: RawView, external_checkpoint: str | None = None, *, key: str | None = None) -> VerifyReport:
    """Recompute the ledger from its stored bytes and compare with everything stored about it.

    Args:
        external_checkpoint: a checkpoint kept outside the ledger; the ledger must extend it.
        key: the verifier key pinned from outside; the database's own key must be it, every
            checkpoint must verify with it, and one must cover every entry.

    Raises:
        ConfigError: ``key`` is not a verifier key, or ``external_checkpoint`` is not a checkpoint.
        LedgerTampered: at the first fault, naming the entry by index and id as precisely as the
            stored evidence allows (see the module docstring).
    """
    pinned = _pinned(key)
    recorded, key_fault = _recorded(view, pinned)
    trusted = pinned or recorded
    opened, signature_faults = _open_all(view, external_checkpoint, trusted, pinned is not None)
    evidence = [cp for _, _, cp in opened]
    blobs = _Blobs.read(view)
    leaves, cited = _leaves(view, blobs)
    levels = _tree(view, leaves, evidence)
    blobs.check_uncited()
    _check_causes(view, cited)
    if key_fault is not None:
        raise key_fault
    if signature_faults:
        raise signature_faults[0]
    size = len(leaves)
    for what, filed, cp in opened:
        _check_against(view, levels, what, filed, cp, evidence)
    if pinned is not None:
        _check_covered(view, pinned, size, max((cp.size for cp in evidence), default=0))
    return VerifyReport(
        size=size,
        root=merkle.root_hash(size, _node_of(levels)),
        checkpoints_checked=sum(1 for _, filed, _ in opened if filed is not None),
    )


# --- keys and checkpoints ---------------------------------------------------------------------------


def _pinned(key: str | None) -> note.Verifier | None:
    if key is None:
        return None
    if not isinstance(key, str):
        raise ConfigError(
            f"the pinned key is text, not {type(key).__name__}; give the line `answerable ledger key` printed"
        )
    try:
        return note.Verifier.from_key(key.strip())
    except SignatureInvalid as exc:
        raise ConfigError(
            f"the pinned key is not a verifier key ({exc}); give the line `answerable ledger key` printed"
        ) from exc


def _recorded(
    view: RawView, pinned: note.Verifier | None
) -> tuple[note.Verifier | None, LedgerTampered | None]:
    """The key the database records, and the fault to raise once the entries are checked, if any."""
    try:
        recorded = note.Verifier.from_key(view.verifier)
    except SignatureInvalid as exc:
        return None, LedgerTampered(f"the ledger's verifier key is malformed: {exc}")
    if pinned is not None and recorded.key() != pinned.key():
        return recorded, LedgerTampered(
            f"the ledger records verifier key {recorded.key()}, not the pinned key {pinned.key()}: "
            "its key was replaced (a rewritten history comes with a fresh key) or this is another ledger"
        )
    return recorded, None


def _open_all(
    view: RawView, external: str | None, trusted: note.Verifier | None, is_pinned: bool
) -> tuple[list[tuple[str, int | None, note.Checkpoint]], list[LedgerTampered]]:
    """Every checkpoint that verifies with the trusted key, and a fault for each that does not.

    Faults are raised only after the entries are checked, so a tampered entry is named first; the
    checkpoints that do verify serve meanwhile as evidence of where a change lies.
    """
    if external is not None and (not isinstance(external, str) or not _is_checkpoint_note(external)):
        raise ConfigError(
            "the given checkpoint is not a signed checkpoint note (origin, size and root lines, a blank "
            "line, signature lines); give a file `answerable ledger checkpoint --out` wrote"
        )
    opened: list[tuple[str, int | None, note.Checkpoint]] = []
    faults: list[LedgerTampered] = []
    if trusted is None:
        return opened, faults
    whose = f"the pinned key {trusted.key()}" if is_pinned else "the ledger's key"
    texts: list[tuple[str, int | None, str]] = [
        (f"stored checkpoint at size {filed}", filed, text) for filed, text in view.checkpoints()
    ]
    if external is not None:
        texts.append(("the given checkpoint", None, external))
    for what, filed, text in texts:
        try:
            opened.append((what, filed, note.open_checkpoint(text, trusted, origin=view.origin)))
        except SignatureInvalid as exc:
            faults.append(LedgerTampered(f"{what} does not verify with {whose}: {exc}"))
    return opened, faults


def _is_checkpoint_note(text: str) -> bool:
    split = text.rfind("\n\n")  # -1 when absent: the empty text before it is no checkpoint
    try:
        note.Checkpoint.parse(text[: split + 1])
    except SignatureInvalid:
        return False
    return True


def _check_against(
    view: RawView,
    levels: list[list[bytes]],
    what: str,
    filed: int | None,
    cp: note.Checkpoint,
    evidence: Sequence[note.Checkpoint],
) -> None:
    size = len(levels[0])
    if filed is not None and cp.size != filed:
        raise LedgerTampered(f"stored checkpoint filed under size {filed} says size {cp.size}")
    if cp.size > size:
        raise LedgerTampered(
            f"{what} commits to {cp.size} entries but the ledger holds {size}: "
            "entries were removed (truncation or rollback)",
            index=size,
        )
    if merkle.root_hash(cp.size, _node_of(levels)) == cp.root_hash:
        return
    suspect = _locate(view, levels, 0, cp.size, evidence)
    if not suspect.exact and cp.size == size and size % 2 == 1:
        suspect = _Suspect(
            size - 1,
            size - 1,
            "it is the one entry no stored tree node covers, so the only one that could change without "
            "the tree noticing (unless the tree was rebuilt as well)",
        )
    named = what if filed is not None else f"{what} at size {cp.size}"
    raise LedgerTampered(
        f"{named} does not match the ledger: its history was rewritten since (and the stored tree "
        f"agrees with the rewrite); {_describe(view, suspect)}",
        index=suspect.first,
        entry_id=view.id_at(suspect.first),
    )


def _check_covered(view: RawView, pinned: note.Verifier, size: int, covered: int) -> None:
    """With a pinned key, every entry must lie under a checkpoint that key signed."""
    if covered >= size:
        return
    missing = size - covered
    noun = "entry" if missing == 1 else "entries"
    raise LedgerTampered(
        f"{missing} trailing {noun} ({covered}..{size - 1}) are covered by no checkpoint signed with the "
        f"pinned key {pinned.key()}: nothing outside the database vouches for them yet; if they are "
        "what you expect, sign one with `answerable ledger checkpoint` and verify again",
        index=covered,
        entry_id=view.id_at(covered),
    )


# --- leaves, blobs and the causes index ---------------------------------------------------------


class _Blobs:
    """Every stored blob hashed once, then each ``$blob`` reference checked against the result."""

    __slots__ = ("altered", "cited", "sizes")

    def __init__(self, sizes: dict[str, int], altered: dict[str, str]) -> None:
        self.sizes = sizes
        """Length of each blob whose bytes hash to its digest."""
        self.altered = altered
        """What each other blob's bytes hash to now."""
        self.cited: set[str] = set()

    @classmethod
    def read(cls, view: RawView) -> _Blobs:
        sizes: dict[str, int] = {}
        altered: dict[str, str] = {}
        for digest, data in view.blobs():
            raw = stored_bytes(data)
            actual = blob_digest(raw)
            if actual == digest:
                sizes[digest] = len(raw)
            else:
                altered[digest] = actual
        return cls(sizes, altered)

    def check(self, index: int, entry_id: str, body: dict[str, Any]) -> None:
        """Each field an entry moved to a blob must name a stored blob that still hashes to it."""
        for field, value in body.items():
            ref = _blob_ref(value)
            if ref is None:
                continue
            digest, length = ref
            where = f"ledger entry {index} (id {entry_id}): its {field} is stored as blob {digest}"
            if digest in self.altered:
                raise LedgerTampered(
                    f"{where}, which was altered: the stored bytes hash to {self.altered[digest]}",
                    index=index,
                    entry_id=entry_id,
                )
            if digest not in self.sizes:
                raise LedgerTampered(
                    f"{where}, which the ledger no longer holds", index=index, entry_id=entry_id
                )
            if self.sizes[digest] != length:
                raise LedgerTampered(
                    f"{where} of {length} bytes, but that blob holds {self.sizes[digest]}",
                    index=index,
                    entry_id=entry_id,
                )
            self.cited.add(digest)

    def check_uncited(self) -> None:
        for digest, actual in sorted(self.altered.items()):
            if digest not in self.cited:
                raise LedgerTampered(
                    f"stored blob {digest} was altered: its bytes hash to {actual} (no entry cites it)"
                )


def _blob_ref(value: object) -> tuple[str, int] | None:
    """``(digest, bytes)`` when ``value`` is the reference the ledger writes for an offloaded field."""
    if type(value) is not dict or "$blob" not in value or len(value) != 2:
        return None
    digest, length = value.get("$blob"), value.get("bytes")
    if not isinstance(digest, str) or type(length) is not int:
        return None
    return digest, length


def _leaves(view: RawView, blobs: _Blobs) -> tuple[list[bytes], _Multiset]:
    """The stored leaf hashes, checked against the entries' bytes, and the causes the entries cite.

    A batch at a time, in passes that run in C (``map`` over C functions, tuple comparisons): leaf
    hashes straight from the stored bytes, indexes, JSON, and the id and kind of the index rows.
    Nearly all Python code runs per batch, not per entry, so what a batch costs is mostly reading
    its rows, hashing and parsing. Only a batch where a pass fails is walked row by row, to name
    the first faulty entry exactly as before.
    """
    hashes: list[bytes] = []
    cited = _Multiset()
    expected = 0
    for batch in view.leaves():
        indexes, ids, kinds, datas, stored = zip(*batch, strict=True)
        size = len(batch)
        try:
            bodies = list(map(_loads, datas))
            sound = (
                # Every index, not the ends alone: a hand-made table can hold 1.5 or a duplicate.
                indexes == tuple(range(expected, expected + size))
                and _leaf_hashes(datas) == stored
                # A string subscript takes only a dict (orjson's one mapping): a list, string, number
                # or null raises TypeError, a record without its id or kind KeyError.
                and tuple(map(_ID, bodies)) == ids
                and tuple(map(_KIND, bodies)) == kinds
            )
        except (orjson.JSONDecodeError, TypeError, KeyError):  # TypeError too: data rewritten as TEXT
            sound = False
        if sound:
            # A blob reference holds a "$": one memchr over the batch spares the field walk on
            # nearly all (joined, since a method called per entry costs more than the copy).
            if b"$" in b"".join(datas):
                for index, entry_id, data, body in zip(indexes, ids, datas, bodies, strict=True):
                    if b'"$blob"' in data:
                        blobs.check(index, entry_id, body)
        else:  # row by row, each row's checks in order, to name the first fault
            bodies = [_check_leaf(expected + offset, row, blobs) for offset, row in enumerate(batch)]
        cited.add_all(*_cites(bodies, indexes))
        hashes.extend(stored)
        expected += size
    return hashes, cited


def _leaf_hashes(datas: Sequence[bytes]) -> tuple[bytes, ...]:
    """Each entry's leaf hash (see ``merkle.leaf_hash``), in one pass of C calls, no Python frame."""
    return tuple(map(_DIGEST, map(hashlib.sha256, map(b"\x00".__add__, datas))))


def _cites(bodies: list[dict[str, Any]], indexes: Sequence[int]) -> tuple[Iterable[tuple[Any, int]], int]:
    """Each ``(cause, index)`` pair the entries write, each cause once per entry (as the index holds
    it), and how many there are.

    Most entries cite one cause or none: when no entry cites more, each entry's index is paired
    with its one cause in C (``compress`` keeps the indexes of the entries that cite one), with no
    set to drop a cause cited twice and no list of pairs, since they are only hashed. Anything else
    (two causes, ``causes`` null, a number in a hand-edited entry) takes the general path, which
    reads ``causes`` as it always has.
    """
    causes: list[Any] = list(map(dict.get, bodies, repeat("causes")))
    try:
        lengths = list(map(len, causes))
    except TypeError:  # null, or not a list at all
        lengths = [2]
    if max(lengths, default=0) < 2:
        return zip(chain.from_iterable(causes), compress(indexes, lengths), strict=True), sum(lengths)
    pairs = [
        (cause, index) for listed, index in zip(causes, indexes, strict=True) for cause in set(listed or ())
    ]
    return pairs, len(pairs)


def _check_leaf(expected: int, row: tuple[int, str, str, bytes, bytes], blobs: _Blobs) -> Any:
    """Raise naming the fault of the entry row expected at index ``expected``, if it has one
    (its blobs included); else return its decoded body."""
    index, entry_id, kind, stored, stored_hash = row
    data = stored_bytes(stored)
    if index > expected:
        raise LedgerTampered(
            f"ledger entry {expected} is missing (the next stored entry is {index}, id {entry_id})",
            index=expected,
        )
    if index < expected:
        raise LedgerTampered(
            f"an entry row is filed under index {index}, outside the ledger (id {entry_id}): "
            "entry rows were renumbered",
            index=expected,
            entry_id=entry_id,
        )
    if hashlib.sha256(b"\x00" + data).digest() != stored_hash:
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
    if b'"$blob"' in data:
        blobs.check(index, entry_id, body)
    return body


def _check_causes(view: RawView, cited: _Multiset) -> None:
    """The causes index must hold exactly the links the entries write; name the first entry it misstates."""
    stored = _Multiset()
    for batch in view.causes():
        stored.add_all(batch, len(batch))
    if stored == cited:
        return
    # Only now, with a fault to explain, is the index grouped per entry to find which one.
    index: dict[int, set[str]] = {}
    for idx, cause in view.causes_by_index():
        index.setdefault(idx, set()).add(cause)
    for idx, entry_id, data in view.rows(0, 1 << 62):
        written = set(orjson.loads(data).get("causes") or ())
        listed = index.pop(idx, set())
        if listed != written:
            raise LedgerTampered(
                f"the causes index does not match ledger entry {idx} (id {entry_id}): it lists "
                f"{sorted(listed)} as its causes, the entry cites {sorted(written)}; the index was edited, "
                "and provenance and recovery would read it wrong",
                index=idx,
                entry_id=entry_id,
            )
    stray = min(index, default=None)
    raise LedgerTampered(
        f"the causes index ({stored.count} links) does not match the causes written in the entries "
        f"({cited.count} links): it lists causes for entry {stray}, which the ledger does not hold",
        index=stray,
    )


class _Multiset:
    """An order-free fingerprint of a set of pairs: count plus a sum of per-process keyed hashes.

    Python's string hash is keyed per process (SipHash), so no one can craft a forged index that
    sums to the same fingerprint; and summing needs no sort of millions of pairs.
    """

    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add_all(self, pairs: Iterable[tuple[Any, int]], count: int) -> None:
        """Add ``count`` pairs (an iterator is hashed as it goes: no list of pairs is built)."""
        self.count += count
        self.total = (self.total + sum(map(hash, pairs))) & 0xFFFFFFFFFFFFFFFF

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Multiset) and (self.count, self.total) == (other.count, other.total)

    __hash__ = None  # type: ignore[assignment]


# --- the tree -------------------------------------------------------------------------------------


def _tree(view: RawView, leaves: list[bytes], evidence: Sequence[note.Checkpoint]) -> list[list[bytes]]:
    """Every complete subtree hash recomputed from the leaves, compared level by level, lowest first."""
    levels = [leaves]
    while len(levels[-1]) >= 2:
        levels.append(merkle.parent_level(levels[-1]))
    for level in range(1, len(levels)):
        if _level_in_place(view, level, levels[level]):
            continue
        rows = view.level(level)
        stored = dict(rows)
        bad = _compare_level(view, level, levels[level], stored)
        if bad:
            raise _tree_fault(view, levels, level, bad, stored, evidence)
    top = view.max_level()
    if top >= len(levels) and view.level(top):
        raise LedgerTampered(
            f"the stored tree has nodes at level {top}, more than {len(leaves)} entries need: "
            "entries were removed from the end"
        )
    return levels


def _level_in_place(view: RawView, level: int, computed: list[bytes]) -> bool:
    """True when the stored level is exactly the computed one, every node at its index, read in
    batches; on False the caller reads the level whole to say what is wrong."""
    start = 0
    for rows in view.nodes(level):
        stop = start + len(rows)
        if rows != list(zip(range(start, stop), computed[start:stop], strict=False)):
            return False
        start = stop
    return start == len(computed)


def _compare_level(view: RawView, level: int, computed: list[bytes], stored: dict[int, bytes]) -> list[int]:
    """The indexes of stored nodes that differ from the recomputed ones (raises for missing or extra)."""
    bad: list[int] = []
    for k, node in enumerate(computed):
        got = stored.get(k)
        if got is None:
            raise LedgerTampered(
                f"the stored tree node (level {level}, index {k}) is missing: the tree was edited",
                index=k << level,
                entry_id=view.id_at(k << level),
            )
        if got != node:
            bad.append(k)
    extra = [k for k in stored if k >= len(computed)]
    if extra:
        first = min(extra) << level
        raise LedgerTampered(
            f"the stored tree covers entries from {first} that the ledger no longer holds: "
            "entries were removed from the end",
            index=first,
        )
    return bad


def _tree_fault(
    view: RawView,
    levels: list[list[bytes]],
    level: int,
    bad: list[int],
    stored: dict[int, bytes],
    evidence: Sequence[note.Checkpoint],
) -> LedgerTampered:
    k = bad[0]
    first, last = k << level, ((k + 1) << level) - 1
    node = f"the stored tree node (level {level}, index {k})"
    if _node_alone_edited(view, levels, level, k):
        return LedgerTampered(
            f"{node} was edited: it no longer hashes entries {first}..{last}, which still match the node "
            "above it; the entries are intact, the tree is not"
        )
    if level == 1:
        return _pair_fault(view, levels, bad, stored, evidence)
    suspect = _locate(view, levels, first, last + 1, evidence)
    return LedgerTampered(
        f"{node} does not match entries {first}..{last}, though the nodes below it do (they were rebuilt "
        f"to match); {_describe(view, suspect)}",
        index=suspect.first,
        entry_id=view.id_at(suspect.first),
    )


def _node_alone_edited(view: RawView, levels: list[list[bytes]], level: int, k: int) -> bool:
    """True when the stored parent still hashes the recomputed children: only this node changed."""
    if level + 1 >= len(levels) or k // 2 >= len(levels[level + 1]):
        return False
    parent = dict(view.level(level + 1)).get(k // 2)
    return parent is not None and parent == levels[level + 1][k // 2]


def _pair_fault(
    view: RawView,
    levels: list[list[bytes]],
    bad: list[int],
    stored: dict[int, bytes],
    evidence: Sequence[note.Checkpoint],
) -> LedgerTampered:
    """Name the entry behind the first mismatching pair hash: moved (proven) or edited (narrowed)."""
    leaves = levels[0]
    pairs = bad[:_MAX_PAIRS]
    candidates = [i for k in pairs for i in (2 * k, 2 * k + 1)]
    if len(leaves) % 2:
        candidates.append(len(leaves) - 1)  # the last leaf of an odd tree is under no pair node
    k = pairs[0]
    a, b = 2 * k, 2 * k + 1
    found = _explain(leaves, stored[k], candidates)
    if found is not None:
        x, y = found
        p, q = (a, x) if x != a else (b, y)
        back = _explain(leaves, stored[q // 2], candidates) if q // 2 in stored else None
        swapped = back is not None and back[q % 2] == p
        id_p, id_q = view.id_at(p), view.id_at(q)
        hashed = f"the stored tree node over entries {a}..{b} is the hash of the entries now at {x} and {y}"
        if swapped:
            text = f"ledger entries {p} (id {id_p}) and {q} (id {id_q}) were swapped: {hashed}"
        else:
            text = (
                f"ledger entry {p} (id {id_p}) is out of place: {hashed}, "
                f"so entry {q} (id {id_q}) stood at {p}"
            )
        return LedgerTampered(text, index=p, entry_id=id_p)
    suspect = _locate(view, levels, a, b + 1, evidence)
    if suspect.exact:
        entry_id = view.id_at(suspect.first)
        return LedgerTampered(
            f"ledger entry {suspect.first} (id {entry_id}) was changed and its leaf hash recomputed to "
            f"match: the stored tree node over entries {a}..{b} no longer matches them, and {suspect.why}",
            index=suspect.first,
            entry_id=entry_id,
        )
    id_a, id_b = view.id_at(a), view.id_at(b)
    return LedgerTampered(
        f"ledger entry {a} (id {id_a}) or {b} (id {id_b}) was changed and its leaf hash recomputed to "
        f"match (or the stored node itself was edited): the stored tree node over the two (level 1, index "
        f"{k}) no longer matches them, and nothing stored tells which (no checkpoint ends between them, "
        "both are canonical JSON)",
        index=a,
        entry_id=id_a,
    )


def _explain(leaves: list[bytes], target: bytes, candidates: list[int]) -> tuple[int, int] | None:
    """Two leaves, as they stand now, whose pair hash is ``target``: where a moved pair went."""
    for x in candidates:
        for y in candidates:
            if x != y and merkle.node_hash(leaves[x], leaves[y]) == target:
                return x, y
    return None


# --- narrowing a range ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Suspect:
    """Where the evidence puts a change: entries ``first..last``, and why."""

    first: int
    last: int
    why: str

    @property
    def exact(self) -> bool:
        return self.first == self.last


def _locate(
    view: RawView, levels: list[list[bytes]], lo: int, hi: int, evidence: Sequence[note.Checkpoint]
) -> _Suspect:
    """Narrow ``[lo, hi)``, known to hold a changed entry, as far as the stored evidence allows.

    First by trusted checkpoints whose size falls inside: the root at that size, recomputed from the
    entries as they stand, still matches (everything before it is as signed) or does not (the
    change is before it). Then by bytes the ledger would never write (it writes canonical JSON
    only). Last, as a hint only, by ids: they are UUIDv7 and sort by time, so an entry whose id sorts
    outside its two neighbours, themselves in order, was likely moved there (concurrent writers
    can interleave ids, which is why this ranks last and says "likely").
    """
    get = _node_of(levels)
    why: list[str] = []
    for cp in sorted(evidence, key=lambda c: c.size):
        if not lo < cp.size < hi:
            continue
        if merkle.root_hash(cp.size, get) == cp.root_hash:
            lo = cp.size
            why.append(f"the checkpoint at size {cp.size} still matches every entry before it")
        else:
            hi = cp.size
            why.append(f"the checkpoint at size {cp.size} no longer matches")
            break
    if hi - lo == 1:
        return _Suspect(lo, lo, "; ".join(why) or "it is the only entry the evidence leaves")
    if hi - lo <= _MAX_SCAN:
        rows = list(view.rows(max(lo - 1, 0), hi + 1))
        for idx, _, data in rows:
            if lo <= idx < hi and not _is_canonical(data):
                return _Suspect(
                    idx, idx, "its bytes are not the canonical JSON the ledger writes: it was edited by hand"
                )
        ids = {idx: entry_id for idx, entry_id, _ in rows}
        for p in range(lo, hi):
            before, here, after = ids.get(p - 1), ids.get(p), ids.get(p + 1)
            if before and here and after and before < after and not before < here < after:
                return _Suspect(
                    p, p, "its id sorts out of time order with its neighbours: it was likely moved here"
                )
    return _Suspect(lo, hi - 1, "; ".join(why) or "nothing stored tells which")


def _is_canonical(data: bytes) -> bool:
    try:
        return canonical_bytes(orjson.loads(data)) == data
    except (orjson.JSONDecodeError, RecordInvalid):
        return False


def _describe(view: RawView, suspect: _Suspect) -> str:
    if suspect.exact:
        return f"the change is ledger entry {suspect.first} (id {view.id_at(suspect.first)}): {suspect.why}"
    return (
        f"the change lies in entries {suspect.first}..{suspect.last} ({suspect.why}); nothing stored "
        f"narrows it further, the first of them is entry {suspect.first} (id {view.id_at(suspect.first)})"
    )


def _node_of(levels: list[list[bytes]]) -> merkle.GetNode:
    def get_node(level: int, index: int) -> bytes:
        return levels[level][index]

    return get_node
