"""Properties of Merkle proofs generated from stored complete subtrees."""

from __future__ import annotations

import math
from collections.abc import Callable

import merkle_oracle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from answerable.errors import ProofInvalid, ProofRequestInvalid
from answerable.ledger.merkle import (
    append_leaves,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    new_nodes_after_append,
    root_hash,
    subtree_nodes_for_range,
    verify_consistency,
    verify_inclusion,
)

pytestmark = pytest.mark.property

MAX_LEAVES = 300
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_LEAVES)]


def _mth(hashes: list[bytes]) -> bytes:
    return merkle_oracle.mth(hashes)


def _build(n: int) -> dict[tuple[int, int], bytes]:
    return merkle_oracle.build(LEAVES, n)


STORE = _build(MAX_LEAVES)


def _get(level: int, index: int) -> bytes:
    return STORE[level, index]


class Counter:
    """A get_node over the store that counts lookups and refuses nodes a tree of `size` lacks."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls = 0

    def __call__(self, level: int, index: int) -> bytes:
        self.calls += 1
        assert (index + 1) << level <= self.size, f"asked for incomplete node ({level}, {index})"
        return STORE[level, index]


def _bound(n: int) -> int:
    return 2 * math.ceil(math.log2(n)) + 2 if n > 1 else 2


def _flip(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def sizes_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_LEAVES))
    return size, draw(st.integers(0, size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(1, MAX_LEAVES))
    return draw(st.integers(1, size2)), size2


def test_stored_nodes_are_the_subtree_hashes() -> None:
    """Every node the appends store is the MTH of exactly the leaves it covers."""
    for (level, index), h in STORE.items():
        assert h == _mth(LEAVES[index << level : (index + 1) << level])


def test_appends_store_at_most_log_n_plus_one_nodes_each() -> None:
    """Appending leaf i writes the leaf and one node per level that becomes complete."""
    for i in range(MAX_LEAVES):
        nodes = new_nodes_after_append(i, LEAVES[i], _get)
        assert len(nodes) == 1 + (i ^ (i + 1)).bit_length() - 1
        assert len(nodes) <= math.floor(math.log2(i + 1)) + 1


@given(st.integers(0, MAX_LEAVES), st.integers(0, 40))
def test_batch_append_equals_single_appends(start: int, count: int) -> None:
    """append_leaves creates the same nodes, in order, as one new_nodes_after_append per leaf."""
    count = min(count, MAX_LEAVES - start)
    single = [
        node for i in range(start, start + count) for node in new_nodes_after_append(i, LEAVES[i], _get)
    ]
    get = Counter(start)
    assert append_leaves(start, LEAVES[start : start + count], get) == single
    assert get.calls == start.bit_count()


@given(st.integers(0, MAX_LEAVES))
def test_root_hash_equals_naive_mth(size: int) -> None:
    """root_hash from stored subtrees equals the recursive definition, with popcount(n) lookups."""
    get = Counter(size)
    assert root_hash(size, get) == _mth(LEAVES[:size])
    assert get.calls == size.bit_count()


@given(sizes_and_index(), st.integers(0, 1 << 16))
def test_inclusion_proof_verifies_and_any_bit_flip_fails(case: tuple[int, int], bit: int) -> None:
    """Every generated inclusion proof verifies; flipping one bit of any element, leaf or root fails."""
    size, index = case
    get = Counter(size)
    proof = inclusion_proof(index, size, get)
    assert get.calls <= _bound(size)
    root = _mth(LEAVES[:size])
    verify_inclusion(index, size, LEAVES[index], proof, root)
    for k in range(len(proof)):
        bad = [*proof[:k], _flip(proof[k], bit), *proof[k + 1 :]]
        with pytest.raises(ProofInvalid):
            verify_inclusion(index, size, LEAVES[index], bad, root)
    with pytest.raises(ProofInvalid):
        verify_inclusion(index, size, _flip(LEAVES[index], bit), proof, root)
    with pytest.raises(ProofInvalid):
        verify_inclusion(index, size, LEAVES[index], proof, _flip(root, bit))


@given(two_sizes(), st.integers(0, 1 << 16))
def test_consistency_proof_verifies_and_any_bit_flip_fails(sizes: tuple[int, int], bit: int) -> None:
    """Every generated consistency proof verifies; flipping one bit of any element or root fails."""
    size1, size2 = sizes
    get = Counter(size2)
    proof = consistency_proof(size1, size2, get)
    assert get.calls <= _bound(size2)
    root1, root2 = _mth(LEAVES[:size1]), _mth(LEAVES[:size2])
    verify_consistency(size1, size2, proof, root1, root2)
    for k in range(len(proof)):
        bad = [*proof[:k], _flip(proof[k], bit), *proof[k + 1 :]]
        with pytest.raises(ProofInvalid):
            verify_consistency(size1, size2, bad, root1, root2)
    with pytest.raises(ProofInvalid):
        verify_consistency(size1, size2, proof, _flip(root1, bit), root2)
    with pytest.raises(ProofInvalid):
        verify_consistency(size1, size2, proof, root1, _flip(root2, bit))


@given(st.integers(0, 2 * MAX_LEAVES), st.integers(0, 2 * MAX_LEAVES))
def test_range_decomposition_covers_range_with_complete_aligned_subtrees(a: int, b: int) -> None:
    """subtree_nodes_for_range tiles [begin, end) with aligned subtrees, at most two per level."""
    begin, end = min(a, b), max(a, b)
    nodes = subtree_nodes_for_range(begin, end)
    pos = begin
    for level, index in nodes:
        assert index << level == pos
        pos += 1 << level
    assert pos == end
    levels = [level for level, _ in nodes]
    assert all(levels.count(lv) <= 2 for lv in set(levels))


@pytest.mark.parametrize(
    ("ask", "numbers"),
    [
        (lambda: inclusion_proof(5, 5, _get), "5"),
        (lambda: inclusion_proof(0, 0, _get), "0"),
        (lambda: inclusion_proof(-1, 3, _get), "-1"),
        (lambda: consistency_proof(0, 4, _get), "0"),
        (lambda: consistency_proof(0, 0, _get), "0"),
        (lambda: consistency_proof(5, 4, _get), "5"),
        (lambda: root_hash(-1, _get), "-1"),
        (lambda: subtree_nodes_for_range(4, 3), "4"),
    ],
)
def test_impossible_proof_request_is_refused(ask: Callable[[], object], numbers: str) -> None:
    """A proof for an index or size the tree does not have raises ProofRequestInvalid naming it."""
    with pytest.raises(ProofRequestInvalid, match=numbers):
        ask()


def test_equal_sizes_give_empty_consistency_proof() -> None:
    """A tree is consistent with itself through the empty proof, which the verifier accepts."""
    assert consistency_proof(7, 7, _get) == []
    verify_consistency(7, 7, [], _mth(LEAVES[:7]), _mth(LEAVES[:7]))


@settings(max_examples=50)
@given(sizes_and_index())
def test_inclusion_proof_names_wrong_length(case: tuple[int, int]) -> None:
    """An inclusion proof with an element added or removed is rejected for its length."""
    size, index = case
    proof = inclusion_proof(index, size, Counter(size))
    root = _mth(LEAVES[:size])
    with pytest.raises(ProofInvalid, match="elements"):
        verify_inclusion(index, size, LEAVES[index], [*proof, root], root)
    if proof:
        with pytest.raises(ProofInvalid, match="elements"):
            verify_inclusion(index, size, LEAVES[index], proof[:-1], root)
