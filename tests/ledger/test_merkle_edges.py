"""Edges of the Merkle functions that the round-trip properties never reach.

Each test here failed on at least one mutant of ``ledger/merkle.py`` that the rest of the suite let
through (``python tools/mutate.py src/answerable/ledger/merkle.py --tests tests/ledger``).
"""

from __future__ import annotations

import merkle_oracle
import pytest

from answerable.errors import ProofInvalid, ProofRequestInvalid
from answerable.ledger.merkle import (
    append_leaves,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    new_nodes_after_append,
    range_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(300)]


def _mth(hashes: list[bytes]) -> bytes:
    return merkle_oracle.mth(hashes)


def _store(n: int) -> dict[tuple[int, int], bytes]:
    return merkle_oracle.build(LEAVES, n)


STORE = _store(len(LEAVES))


def _get(level: int, index: int) -> bytes:
    return STORE[level, index]


@pytest.mark.parametrize(("begin", "end"), [(0, 1), (0, 5), (4, 8), (8, 11), (16, 32), (6, 8), (64, 100)])
def test_range_hash_of_an_aligned_range_is_its_mth(begin: int, end: int) -> None:
    """A range starting at a boundary at least as large as itself hashes to the MTH of its leaves.

    (4, 8) and (16, 32) are aligned to exactly their own size: the largest such ranges, still valid.
    """
    assert range_hash(begin, end, _get) == _mth(LEAVES[begin:end])


@pytest.mark.parametrize("at", [0, 3, 8])
def test_range_hash_of_an_empty_range_is_refused(at: int) -> None:
    """An empty range has no subtree hash: a ProofRequestInvalid, not an IndexError."""
    with pytest.raises(ProofRequestInvalid):
        range_hash(at, at, _get)


@pytest.mark.parametrize(("begin", "end"), [(1, 3), (2, 5), (4, 9), (6, 10)])
def test_range_hash_refuses_a_range_that_is_no_subtree(begin: int, end: int) -> None:
    """A range not aligned to its size is no node of any tree, so its right fold means nothing."""
    with pytest.raises(ProofRequestInvalid):
        range_hash(begin, end, _get)


def test_append_at_a_negative_index_is_refused() -> None:
    """A negative leaf index is refused before any lookup."""

    def no_lookups(level: int, index: int) -> bytes:
        raise AssertionError(f"looked up ({level}, {index})")

    with pytest.raises(ProofRequestInvalid):
        new_nodes_after_append(-1, LEAVES[0], no_lookups)


@pytest.mark.parametrize("leaf", [b"", LEAVES[0][:31], LEAVES[0] + b"\x00", b"leaf data, not its hash"])
def test_appending_something_that_is_no_leaf_hash_is_refused(leaf: bytes) -> None:
    """Both append paths take leaf hashes only: anything not 32 bytes is refused, nothing is stored."""
    with pytest.raises(ProofRequestInvalid):
        new_nodes_after_append(3, leaf, _get)
    with pytest.raises(ProofRequestInvalid):
        append_leaves(3, [LEAVES[3], leaf], _get)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 64, 128])
def test_inclusion_of_leaf_n_in_a_tree_of_size_n_is_refused(n: int) -> None:
    """Leaf n is not in a tree of n leaves, even with the path that shows it in a tree of 2n.

    With the index guard gone the path checks out: at index n the verifier walks exactly the shape
    of the bigger tree, and the bigger root would pass as the root of the smaller one.
    """
    proof = inclusion_proof(n, 2 * n, _get)
    root = _mth(LEAVES[: 2 * n])
    verify_inclusion(n, 2 * n, LEAVES[n], proof, root)
    with pytest.raises(ProofInvalid):
        verify_inclusion(n, n, LEAVES[n], proof, root)


def test_malformed_inclusion_proof_element_is_named() -> None:
    """The first proof element that is not 32 bytes is named by its position."""
    proof = inclusion_proof(0, 8, _get)
    bad = [proof[0], proof[1][:31], proof[2] + b"\x00"]
    with pytest.raises(ProofInvalid, match=r"\belement 1\b"):
        verify_inclusion(0, 8, LEAVES[0], bad, _mth(LEAVES[:8]))


def test_malformed_consistency_proof_element_is_named() -> None:
    """A consistency proof with a short element is refused for that element, by position."""
    proof = consistency_proof(3, 8, _get)
    assert len(proof) >= 3
    bad = [proof[0], proof[1], proof[2][:16], *proof[3:]]
    with pytest.raises(ProofInvalid, match=r"\belement 2\b"):
        verify_consistency(3, 8, bad, _mth(LEAVES[:3]), _mth(LEAVES[:8]))


def test_consistency_from_a_larger_tree_to_a_smaller_one_is_refused() -> None:
    """No proof shows a tree a prefix of a smaller one, not even a real proof to a bigger tree.

    Without the size check the proof from 3 to 4 leaves also passes as one "from 3 to 2": the path
    for size2 = 2 has the same shape, so a rollback would look like an extension.
    """
    proof = consistency_proof(3, 4, _get)
    root3, root4 = _mth(LEAVES[:3]), _mth(LEAVES[:4])
    verify_consistency(3, 4, proof, root3, root4)
    for size2 in (1, 2):
        with pytest.raises(ProofInvalid):
            verify_consistency(3, size2, proof, root3, root4)
    for size1 in range(2, 17):
        for size2 in range(size1 + 1, 33):
            proof = consistency_proof(size1, size2, _get)
            for smaller in range(1, size1):
                with pytest.raises(ProofInvalid):
                    verify_consistency(size1, smaller, proof, _mth(LEAVES[:size1]), _mth(LEAVES[:size2]))


def test_equal_sizes_take_only_the_empty_proof() -> None:
    """Between equal sizes the one valid proof is empty, so one tree has one proof of each fact."""
    root = _mth(LEAVES[:5])
    verify_consistency(5, 5, [], root, root)
    with pytest.raises(ProofInvalid):
        verify_consistency(5, 5, [root], root, root)


@pytest.mark.parametrize(("size1", "size2"), [(3, 4), (4, 8), (5, 7)])
def test_empty_proof_between_different_sizes_is_refused(size1: int, size2: int) -> None:
    """An empty proof between different sizes is a ProofInvalid, never an IndexError."""
    with pytest.raises(ProofInvalid):
        verify_consistency(size1, size2, [], _mth(LEAVES[:size1]), _mth(LEAVES[:size2]))


@pytest.mark.parametrize("which", ["root1", "root2"])
def test_consistency_names_the_root_that_is_not_a_hash(which: str) -> None:
    """A root of the wrong length is refused as such, naming which of the two roots it is."""
    proof = consistency_proof(4, 8, _get)
    roots = {"root1": _mth(LEAVES[:4]), "root2": _mth(LEAVES[:8])}
    roots[which] = roots[which][:31]
    with pytest.raises(ProofInvalid, match=rf"\b{which}\b"):
        verify_consistency(4, 8, proof, roots["root1"], roots["root2"])


def test_a_negative_tree_size_is_named_as_negative() -> None:
    """The root of a tree of -1 leaves is refused as such, before the empty tree is considered."""
    with pytest.raises(ProofRequestInvalid, match="tree size -1 is negative"):
        root_hash(-1, lambda level, index: b"")


def test_a_proof_element_of_the_wrong_length_is_named_by_its_proof_and_place() -> None:
    """Which proof and which element: the first thing a person checking a proof by hand needs."""
    root = LEAVES[0]
    with pytest.raises(ProofInvalid, match=r"^inclusion proof element 1 is 3 bytes, want 32$"):
        verify_inclusion(0, 4, LEAVES[0], [LEAVES[1], b"abc"], root)
    with pytest.raises(ProofInvalid, match=r"^consistency proof element 0 is 2 bytes, want 32$"):
        verify_consistency(3, 4, [b"ab"], root, root)
