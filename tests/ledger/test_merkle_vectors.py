"""The Merkle verifiers against the transparency-dev/merkle vectors and reference tree."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from answerable.errors import ProofInvalid
from answerable.ledger.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    new_nodes_after_append,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "merkle"

# Globbed, not listed, so vectors added to the directories (such as the held-back half) also run.
INCLUSION = sorted((DATA / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((DATA / "consistency").rglob("*.json"))

# transparency-dev/merkle testonly/constants.go, as tabled in tests/data/merkle/README.md.
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
REFERENCE_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _b64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def _proof(vector: dict[str, Any]) -> list[bytes]:
    """A ``null`` proof means the same as ``[]``."""
    return [_b64(p) for p in vector["proof"] or []]


def _case_id(path: Path) -> str:
    return path.relative_to(DATA).as_posix()


def _is_reference(path: Path) -> bool:
    """Vectors in the numbered case directories are taken from the reference tree."""
    return path.relative_to(DATA).parts[1].isdigit()


def _reference_store() -> dict[tuple[int, int], bytes]:
    store: dict[tuple[int, int], bytes] = {}
    for i, data in enumerate(REFERENCE_LEAVES):
        for level, index, h in new_nodes_after_append(i, leaf_hash(data), lambda lv, ix: store[lv, ix]):
            store[level, index] = h
    return store


@pytest.fixture(scope="module")
def reference_store() -> dict[tuple[int, int], bytes]:
    return _reference_store()


def test_vector_directories_are_populated() -> None:
    """The glob finds the copied vectors, so an empty parametrization cannot pass silently."""
    assert len(INCLUSION) >= 49
    assert len(CONSISTENCY) >= 48


@pytest.mark.parametrize("path", INCLUSION, ids=_case_id)
def test_inclusion_vector_is_judged_as_upstream(path: Path) -> None:
    """An inclusion vector verifies exactly when upstream says it does (wantErr)."""
    v = _load(path)
    args = (v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), _proof(v), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofInvalid):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=_case_id)
def test_consistency_vector_is_judged_as_upstream(path: Path) -> None:
    """A consistency vector verifies exactly when upstream says it does (wantErr)."""
    v = _load(path)
    args = (v["size1"], v["size2"], _proof(v), _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(ProofInvalid):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


@pytest.mark.parametrize("size", sorted(REFERENCE_ROOTS))
def test_root_hash_matches_reference_tree(size: int, reference_store: dict[tuple[int, int], bytes]) -> None:
    """root_hash over stored complete subtrees gives the upstream reference root for every size 0..8."""
    assert root_hash(size, lambda lv, ix: reference_store[lv, ix]).hex() == REFERENCE_ROOTS[size]


def test_empty_root_is_sha256_of_nothing() -> None:
    """The empty tree's root is SHA-256 of the empty string."""
    assert EMPTY_ROOT.hex() == REFERENCE_ROOTS[0]


@pytest.mark.parametrize(
    "path", [p for p in INCLUSION if _is_reference(p) and not _load(p)["wantErr"]], ids=_case_id
)
def test_generated_inclusion_proof_equals_upstream_vector(
    path: Path, reference_store: dict[tuple[int, int], bytes]
) -> None:
    """Proofs generated from stored subtrees are byte-identical to upstream's valid reference vectors."""
    v = _load(path)
    got = inclusion_proof(v["leafIdx"], v["treeSize"], lambda lv, ix: reference_store[lv, ix])
    assert got == _proof(v)


@pytest.mark.parametrize(
    "path", [p for p in CONSISTENCY if _is_reference(p) and not _load(p)["wantErr"]], ids=_case_id
)
def test_generated_consistency_proof_equals_upstream_vector(
    path: Path, reference_store: dict[tuple[int, int], bytes]
) -> None:
    """Consistency proofs generated from stored subtrees are byte-identical to upstream's valid vectors."""
    v = _load(path)
    got = consistency_proof(v["size1"], v["size2"], lambda lv, ix: reference_store[lv, ix])
    assert got == _proof(v)


@pytest.mark.parametrize("size1", [3, 5, 6, 7])
def test_consistency_rejects_32_byte_wrong_root1_for_non_power_of_two(
    size1: int, reference_store: dict[tuple[int, int], bytes]
) -> None:
    """A well-formed but wrong old root fails the recomputed-old-root check, not a length check."""
    proof = consistency_proof(size1, 8, lambda lv, ix: reference_store[lv, ix])
    root1 = bytes.fromhex(REFERENCE_ROOTS[size1])
    root2 = bytes.fromhex(REFERENCE_ROOTS[8])
    verify_consistency(size1, 8, proof, root1, root2)
    wrong_root1 = bytes.fromhex(REFERENCE_ROOTS[size1 - 1])
    assert len(wrong_root1) == 32
    with pytest.raises(ProofInvalid, match="old tree"):
        verify_consistency(size1, 8, proof, wrong_root1, root2)


def test_consistency_rejects_empty_tree_even_to_empty_tree() -> None:
    """size1 == 0 is rejected even for 0 -> 0 with an empty proof and equal roots."""
    with pytest.raises(ProofInvalid, match="empty tree"):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)


def test_consistency_equal_sizes_compare_roots_as_opaque_bytes() -> None:
    """For size1 == size2 the roots are compared as bytes without a length check, as upstream does."""
    verify_consistency(1, 1, [], b"don't care 2", b"don't care 2")
    with pytest.raises(ProofInvalid, match="root1"):
        verify_consistency(1, 1, [], b"don't care 1", b"don't care 2")
