"""The Merkle tree written naively from RFC 9162's definitions: the oracle the merkle tests check against."""

from __future__ import annotations

from collections.abc import Sequence

from answerable.ledger.merkle import EMPTY_ROOT, new_nodes_after_append, node_hash

__all__ = ["build", "mth"]


def mth(hashes: list[bytes]) -> bytes:
    """RFC 9162 MTH written naively from its definition, as the oracle."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def build(leaves: Sequence[bytes], n: int) -> dict[tuple[int, int], bytes]:
    """The stored nodes after appending the first ``n`` of ``leaves`` one by one."""
    store: dict[tuple[int, int], bytes] = {}
    for i in range(n):
        for level, index, h in new_nodes_after_append(i, leaves[i], lambda lv, ix: store[lv, ix]):
            store[level, index] = h
    return store
