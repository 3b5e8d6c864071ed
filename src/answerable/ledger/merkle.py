"""RFC 9162 Merkle tree hashing, proof generation and proof verification.

Everything here is a pure function over ``bytes``. Storage is abstracted as ``get_node(level, index)``,
which returns the stored hash of the *complete* subtree covering leaves
``[index * 2**level, (index + 1) * 2**level)``. A ledger that stores every complete subtree can then
answer any root, inclusion or consistency question with O(log n) lookups: subtrees on the right edge
of a tree that are not complete are never stored, they are recomputed from the maximal complete
subtrees that cover them.

The verifiers follow transparency-dev/merkle ``proof/verify.go`` (RFC 9162 §2.1.3.2 and §2.1.4.2)
including its edge rules, so that the upstream test vectors are judged exactly as upstream judges
them; see ``tests/data/merkle/README.md``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

from answerable.errors import ProofInvalid, ProofRequestInvalid

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "GetNode",
    "append_leaves",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "new_nodes_after_append",
    "node_hash",
    "parent_level",
    "range_hash",
    "root_hash",
    "roots_for_size",
    "subtree_nodes_for_range",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length of every SHA-256 leaf, node and root hash."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root of the tree with no leaves: SHA-256 of the empty string (RFC 9162 §2.1.1)."""

GetNode: TypeAlias = Callable[[int, int], bytes]
"""Returns the stored hash of the complete subtree at ``(level, index)``."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """Hash leaf data with the 0x00 domain prefix, so a leaf can never pose as an interior node."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two children with the 0x01 domain prefix (RFC 9162 §2.1.1)."""
    return _sha256(b"\x01" + left + right).digest()


_NODE_PREFIX = _sha256(b"\x01")


def parent_level(level: Sequence[bytes]) -> list[bytes]:
    """The node hash of each complete pair of ``level`` (an odd last hash has no parent here).

    ``node_hash`` of every pair, computed as verification recomputes a whole tree: the prefix is
    hashed once and its state copied, so no 65-byte input is built per node.
    """
    parents: list[bytes] = []
    append = parents.append
    prefix = _NODE_PREFIX
    pairs = iter(level)
    for left, right in zip(pairs, pairs, strict=False):
        state = prefix.copy()
        state.update(left)
        state.update(right)
        append(state.digest())
    return parents


# --- decomposition of leaf ranges into complete subtrees -------------------------------------------


def subtree_nodes_for_range(begin: int, end: int) -> list[tuple[int, int]]:
    """Split the leaf range ``[begin, end)`` into maximal complete subtrees, left to right.

    This is the compact range of the interval: each ``(level, index)`` is a subtree a ledger stores,
    and there are at most two per level, so at most ``2 * log2(end - begin) + 2`` of them.

    Raises:
        ProofRequestInvalid: when ``0 <= begin <= end`` does not hold.
    """
    if begin < 0 or end < begin:
        raise ProofRequestInvalid(f"leaf range [{begin}, {end}) is not a range of leaves")
    nodes: list[tuple[int, int]] = []
    while begin < end:
        # The largest aligned subtree starting at `begin`, shrunk until it fits before `end`.
        # (From 0, any level will do: the loop below shrinks it to the largest that fits.)
        level = (begin & -begin).bit_length() - 1 if begin else end.bit_length()
        while begin + (1 << level) > end:
            level -= 1
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Combine the hashes of a right-edge decomposition into the RFC 9162 hash of the whole range.

    MTH splits at the largest power of two, so the bigger left subtrees are hashed with everything to
    their right: the fold runs right to left.
    """
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = _sha256(b"\x01" + h + acc).digest()
    return acc


def range_hash(begin: int, end: int, get_node: GetNode) -> bytes:
    """Hash of the RFC 9162 subtree over leaves ``[begin, end)``, from stored complete subtrees.

    The range must be a node of some tree: ``begin`` aligned to a power of two at least as large as
    ``end - begin`` (``begin == 0`` always is). Only then is the right fold of its compact range the
    value MTH gives.

    Raises:
        ProofRequestInvalid: when the range is empty or is not a subtree of any tree.
    """
    if end <= begin:
        raise ProofRequestInvalid(f"leaf range [{begin}, {end}) is empty; an empty range has no subtree hash")
    if begin and (begin & -begin) < end - begin:
        raise ProofRequestInvalid(
            f"leaf range [{begin}, {end}) is not a subtree: {begin} is not aligned to {end - begin} leaves"
        )
    return _fold([get_node(level, index) for level, index in subtree_nodes_for_range(begin, end)])


def _subtree_hash(level: int, index: int, tree_size: int, get_node: GetNode) -> bytes:
    """Hash of node ``(level, index)`` in a tree of ``tree_size`` leaves, complete or on the right edge."""
    begin = index << level
    # A complete node's compact range is the node itself: range_hash asks get_node for it.
    return range_hash(begin, min(begin + (1 << level), tree_size), get_node)


def roots_for_size(tree_size: int, get_node: GetNode) -> list[tuple[int, int, bytes]]:
    """The maximal complete subtrees of a tree of ``tree_size`` leaves, left to right, with hashes.

    These are the tree's "frontier": one per set bit of ``tree_size``. Appending needs nothing else,
    and folding them gives the root.

    Raises:
        ProofRequestInvalid: when ``tree_size`` is negative.
    """
    return [(level, index, get_node(level, index)) for level, index in subtree_nodes_for_range(0, tree_size)]


def root_hash(tree_size: int, get_node: GetNode) -> bytes:
    """Root hash of the tree of the first ``tree_size`` leaves, with at most log2(n)+1 lookups.

    Raises:
        ProofRequestInvalid: when ``tree_size`` is negative.
    """
    if tree_size < 0:
        raise ProofRequestInvalid(f"tree size {tree_size} is negative")
    if tree_size == 0:
        return EMPTY_ROOT
    return range_hash(0, tree_size, get_node)


# --- appending ----------------------------------------------------------------------------------------


def new_nodes_after_append(index: int, leaf: bytes, get_node: GetNode) -> list[tuple[int, int, bytes]]:
    """The complete subtrees that appending leaf number ``index`` creates, lowest level first.

    Level 0 is the leaf hash itself; each further node is a level that becomes complete. The left
    sibling of each new node is already stored, so this asks ``get_node`` once per new node above the
    leaf: on average one lookup and two writes per append, never more than log2(n)+1 writes.

    Args:
        index: position of the new leaf, which is the tree size before the append.
        leaf: the leaf **hash** (``leaf_hash(data)``), not the leaf data.
        get_node: lookup of stored complete subtrees of the tree before the append.

    Raises:
        ProofRequestInvalid: when ``index`` is negative or ``leaf`` is not 32 bytes.
    """
    if index < 0:
        raise ProofRequestInvalid(f"leaf index {index} is negative")
    if len(leaf) != HASH_SIZE:
        raise ProofRequestInvalid(f"leaf hash for index {index} is {len(leaf)} bytes, want {HASH_SIZE}")
    nodes = [(0, index, leaf)]
    level = 0
    h = leaf
    while index & 1:
        h = _sha256(b"\x01" + get_node(level, index - 1) + h).digest()
        level += 1
        index >>= 1
        nodes.append((level, index, h))
    return nodes


def append_leaves(tree_size: int, leaves: Iterable[bytes], get_node: GetNode) -> list[tuple[int, int, bytes]]:
    """The complete subtrees that appending a batch of leaf hashes creates, in creation order.

    Equivalent to calling :func:`new_nodes_after_append` for each leaf, but the frontier of the tree
    (popcount(tree_size) lookups) is read once and kept in a local stack, so a batch costs no lookups
    beyond that and a store can write all returned nodes in one transaction.

    Args:
        tree_size: number of leaves before the batch; the first new leaf gets this index.
        leaves: the new leaf **hashes**, in order.
        get_node: lookup of stored complete subtrees of the tree before the batch.

    Raises:
        ProofRequestInvalid: when ``tree_size`` is negative or a leaf hash is not 32 bytes.
    """
    stack = [h for _, _, h in roots_for_size(tree_size, get_node)]
    out: list[tuple[int, int, bytes]] = []
    index = tree_size
    sha256 = _sha256
    for leaf in leaves:
        if len(leaf) != HASH_SIZE:
            raise ProofRequestInvalid(f"leaf hash for index {index} is {len(leaf)} bytes, want {HASH_SIZE}")
        out.append((0, index, leaf))
        h = leaf
        level = 0
        i = index
        while i & 1:
            h = sha256(b"\x01" + stack.pop() + h).digest()
            level += 1
            i >>= 1
            out.append((level, i, h))
        stack.append(h)
        index += 1
    return out


# --- proof generation ---------------------------------------------------------------------------------


def _node_path(level: int, index: int, tree_size: int, get_node: GetNode) -> list[bytes]:
    """Audit path of the complete node ``(level, index)`` up to the root of a tree of ``tree_size``.

    For level 0 this is the RFC 9162 inclusion proof of a leaf. The ``inner`` part holds siblings
    below the point where the node's path leaves the right edge of the tree; only the topmost of them
    can be incomplete, so it alone is recomputed. The ``border`` part holds the complete left siblings
    above that point.
    """
    last = (tree_size - 1) >> level
    inner = (index ^ last).bit_length()
    path = [_subtree_hash(level + i, (index >> i) ^ 1, tree_size, get_node) for i in range(inner)]
    i = index >> inner
    lvl = level + inner
    while i:
        if i & 1:
            path.append(get_node(lvl, i - 1))
        i >>= 1
        lvl += 1
    return path


def inclusion_proof(leaf_index: int, tree_size: int, get_node: GetNode) -> list[bytes]:
    """RFC 9162 inclusion proof of a leaf, listed from the leaf level upward.

    Needs at most about ``2 * log2(tree_size)`` lookups.

    Raises:
        ProofRequestInvalid: when ``0 <= leaf_index < tree_size`` does not hold.
    """
    if not 0 <= leaf_index < tree_size:
        raise ProofRequestInvalid(
            f"inclusion proof asked for leaf {leaf_index} in a tree of size {tree_size}; "
            f"the leaf index must be at least 0 and below the tree size"
        )
    return _node_path(0, leaf_index, tree_size, get_node)


def consistency_proof(size1: int, size2: int, get_node: GetNode) -> list[bytes]:
    """RFC 9162 consistency proof that the tree of ``size1`` leaves is a prefix of the one of ``size2``.

    The proof is the inclusion path of the largest complete subtree ending at ``size1`` into the tree
    of ``size2``, preceded by that subtree's hash unless it is the whole old tree (the verifier has
    it as ``root1``). Equal sizes give an empty proof.

    Raises:
        ProofRequestInvalid: when ``0 < size1 <= size2`` does not hold. A proof from the empty tree is
            refused because it proves nothing, and the verifier rejects it.
    """
    if size1 <= 0 or size2 < size1:
        raise ProofRequestInvalid(
            f"consistency proof asked from size {size1} to size {size2}; "
            f"it needs 0 < size1 <= size2 (a proof from the empty tree proves nothing)"
        )
    if size1 == size2:
        return []
    shift = (size1 & -size1).bit_length() - 1
    index = (size1 - 1) >> shift
    path = _node_path(shift, index, size2, get_node)
    if index == 0:
        return path
    return [get_node(shift, index), *path]


# --- verification -------------------------------------------------------------------------------------


def _check_hashes(what: str, proof: Sequence[bytes]) -> None:
    """Reject proof elements that are not 32 bytes, naming the first bad one."""
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise ProofInvalid(f"{what} proof element {i} is {len(h)} bytes, want {HASH_SIZE}")


def _check_root(what: str, computed: bytes, claimed: bytes) -> None:
    """Compare a recomputed root with the claimed one byte for byte."""
    if computed != claimed:
        raise ProofInvalid(f"{what}: computed root {computed.hex()} does not match claimed {claimed.hex()}")


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an RFC 9162 §2.1.3.2 inclusion proof of ``leaf_hash`` at ``leaf_index``.

    The proof must have exactly the length ``(leaf_index, tree_size)`` implies; extra or missing
    elements are rejected rather than ignored, so one tree has one valid proof per leaf.

    Raises:
        ProofInvalid: naming why, when the proof does not show the leaf in the tree with ``root``.
    """
    if not 0 <= leaf_index < tree_size:
        raise ProofInvalid(f"inclusion: leaf index {leaf_index} is not inside a tree of size {tree_size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofInvalid(f"inclusion: leaf hash is {len(leaf_hash)} bytes, want {HASH_SIZE}")
    inner = (leaf_index ^ (tree_size - 1)).bit_length()
    border = (leaf_index >> inner).bit_count()
    if len(proof) != inner + border:
        raise ProofInvalid(
            f"inclusion: proof for leaf {leaf_index} in a tree of size {tree_size} has "
            f"{len(proof)} elements, want {inner + border}"
        )
    _check_hashes("inclusion", proof)
    h = leaf_hash
    for i in range(inner):
        h = node_hash(proof[i], h) if (leaf_index >> i) & 1 else node_hash(h, proof[i])
    for sibling in proof[inner:]:
        h = node_hash(sibling, h)
    _check_root(f"inclusion of leaf {leaf_index} in tree of size {tree_size}", h, root)


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check an RFC 9162 §2.1.4.2 consistency proof between two tree heads.

    Both the old root and the new root are recomputed from the proof, so a proof cannot link a forged
    old head to a genuine new one. Edge rules follow upstream: ``size1 == 0`` is rejected even for
    ``0 -> 0``; for ``size1 == size2`` the proof must be empty and the roots are compared as opaque
    bytes (no length check, as upstream).

    Raises:
        ProofInvalid: naming why, when the proof does not show ``root1`` is a prefix of ``root2``.
    """
    if size1 > size2:
        raise ProofInvalid(f"consistency: size1 {size1} is larger than size2 {size2}")
    if size1 <= 0:
        raise ProofInvalid(
            f"consistency: size1 is {size1}; a consistency proof from an empty tree proves nothing"
        )
    if size1 == size2:
        if proof:
            raise ProofInvalid(
                f"consistency: sizes are equal ({size1}) but the proof has {len(proof)} elements, want 0"
            )
        if root1 != root2:
            raise ProofInvalid(
                f"consistency: sizes are equal ({size1}) but root1 {root1.hex()} != root2 {root2.hex()}"
            )
        return
    if not proof:
        raise ProofInvalid(f"consistency: proof from size {size1} to {size2} is empty")
    for name, r in (("root1", root1), ("root2", root2)):
        if len(r) != HASH_SIZE:
            raise ProofInvalid(f"consistency: {name} is {len(r)} bytes, want {HASH_SIZE}")
    _check_hashes("consistency", proof)

    # The last leaf of the old tree sits under the largest complete subtree ending at size1, at level
    # `shift`; the proof is that subtree's hash (the seed) and its audit path in the new tree.
    shift = (size1 & -size1).bit_length() - 1
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length() - shift
    # (transparency-dev shifts size1 - 1; the bits at inner + shift and up are the same in size1,
    # whose lowest set bit is `shift`.)
    border = (size1 >> (inner + shift)).bit_count()
    if size1 == 1 << shift:
        seed, rest = root1, proof
    else:
        seed, rest = proof[0], proof[1:]
    if len(rest) != inner + border:
        want = inner + border + (len(proof) - len(rest))
        raise ProofInvalid(
            f"consistency: proof from size {size1} to {size2} has {len(proof)} elements, want {want}"
        )

    mask = (size1 - 1) >> shift
    hash1 = seed
    hash2 = seed
    for i in range(inner):
        if (mask >> i) & 1:
            hash1 = node_hash(rest[i], hash1)
            hash2 = node_hash(rest[i], hash2)
        else:
            hash2 = node_hash(hash2, rest[i])
    for sibling in rest[inner:]:
        hash1 = node_hash(sibling, hash1)
        hash2 = node_hash(sibling, hash2)
    _check_root(f"consistency from size {size1}: old tree", hash1, root1)
    _check_root(f"consistency to size {size2}: new tree", hash2, root2)
