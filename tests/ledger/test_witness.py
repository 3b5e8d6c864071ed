"""A C2SP tlog-witness in its own process: it cosigns only a checkpoint that extends the one it
cosigned last, and what it kept catches a rewritten history, whoever holds the signing key."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import order_events, witness_process

from answerable import KeyPair, SQLiteLedger
from answerable.clock import IdSource
from answerable.errors import SignatureInvalid
from answerable.ledger import merkle
from answerable.ledger.note import Checkpoint, Signer, Verifier, sign_checkpoint
from answerable.ledger.witness import CosignatureVerifier, Cosigner, Witness

ORIGIN = "witnessed.example/log"
CLI = [sys.executable, "-m", "answerable.cli"]


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def witness_key(tmp_path: Path) -> Path:
    path = tmp_path / "witness.key"
    KeyPair.generate("witness.example/w1").save(path)
    return path


@pytest.fixture
def witness(tmp_path: Path, witness_key: Path, store: SQLiteLedger) -> Iterator[tuple[str, str, Path]]:
    """A witness process for the test ledger's log: (url, its verifier key, its state folder)."""
    state = tmp_path / "state"
    with witness_process(witness_key, state, store.verifier_key()) as (url, vkey):
        yield url, vkey, state


async def test_a_witness_cosigns_a_growing_log_and_refuses_a_rewritten_one(
    store: SQLiteLedger, ids: IdSource, path: Path, tmp_path: Path, witness: tuple[str, str, Path]
) -> None:
    url, vkey, state = witness
    await store.append(order_events(10, ids))
    first = cli("ledger", "witness", path, "--url", url, "--witness", vkey)
    assert first.returncode == 0, first.stderr
    assert CosignatureVerifier.from_key(vkey).timestamp(first.stdout) is not None
    fork = tmp_path / "fork.db"
    store.backup(fork)  # the history so far, kept to be rewritten later
    shutil.copy(path.with_name(path.name + ".key"), fork.with_name(fork.name + ".key"))  # same signing key

    await store.append(order_events(5, ids))
    second = cli("ledger", "witness", path, "--url", url, "--witness", vkey)  # old size 0 -> 409 -> proof
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in state.glob("*/cosigned/*")) == ["10", "15"]

    with SQLiteLedger.open(fork) as rewritten:  # another history from entry 10 on, longer than 15
        await rewritten.append(order_events(8, IdSource()))
    refused = cli("ledger", "witness", fork, "--url", url, "--witness", vkey)
    assert refused.returncode == 1
    assert "refused the checkpoint" in refused.stderr
    assert sorted(p.name for p in state.glob("*/cosigned/*")) == ["10", "15"]

    held = cli("verify", path, "--witness", state, "--json")
    assert held.returncode == 0, held.stderr
    assert '"witnessed":2' in held.stdout
    caught = cli("verify", fork, "--witness", state)
    assert caught.returncode == 1
    assert "history was rewritten" in caught.stderr
    assert cli("verify", fork).returncode == 0  # on its own, the rewritten ledger is self-consistent

    # A witness record emptied (or overwritten) was skipped as "another log's": verify said the
    # witnessed checkpoints hold, with one fewer. It is named now, and verify answers no.
    (record,) = [p for p in state.glob("*/cosigned/*") if p.name == "10"]
    record.write_bytes(b"")
    damaged = cli("verify", path, "--witness", state)
    assert damaged.returncode == 1, damaged.stderr
    assert f"witness record {record} of this log is damaged" in damaged.stderr


def test_the_witness_process_refuses_a_host_beyond_loopback(witness_key: Path, tmp_path: Path) -> None:
    done = cli(
        "witness",
        "--key",
        witness_key,
        "--state",
        tmp_path / "s",
        "--log",
        "x+00000000+AA==",
        "--host",
        "0.0.0.0",
    )
    assert done.returncode == 2
    assert "loopback" in done.stderr


def signed(signer: Signer, size: int, root: bytes) -> str:
    return sign_checkpoint(Checkpoint(origin=signer.name, size=size, root_hash=root), signer)


def body(old: int, proof: list[bytes], checkpoint: str) -> bytes:
    import base64

    return (
        f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + checkpoint
    ).encode()


def tree(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"entry {i}".encode()) for i in range(n)]


def root_of(leaves: list[bytes]) -> bytes:
    return merkle.root_hash(len(leaves), lambda level, i: _node(leaves, level, i))


def _node(leaves: list[bytes], level: int, index: int) -> bytes:
    if level == 0:
        return leaves[index]
    return merkle.node_hash(_node(leaves, level - 1, 2 * index), _node(leaves, level - 1, 2 * index + 1))


def proof(leaves: list[bytes], old: int) -> list[bytes]:
    return merkle.consistency_proof(old, len(leaves), lambda level, i: _node(leaves, level, i))


@pytest.fixture
def log() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def w(log: Signer, tmp_path: Path) -> Witness:
    key = KeyPair.generate("witness.example/w2")
    return Witness(Cosigner(key.identity, key.private), [log.verifier()], tmp_path / "state")


def test_the_witness_answers_each_case_of_the_spec_with_its_status(log: Signer, w: Witness) -> None:
    leaves = tree(9)
    assert w.add_checkpoint(b"nonsense", 1).status == 400
    stranger = Signer.generate("stranger.example/log")
    assert w.add_checkpoint(body(0, [], signed(stranger, 9, root_of(leaves))), 1).status == 404
    forged = signed(Signer.generate(ORIGIN), 9, root_of(leaves))  # right name, another key
    assert w.add_checkpoint(body(0, [], forged), 1).status == 403
    assert w.add_checkpoint(body(10, [], signed(log, 9, root_of(leaves))), 1).status == 400
    assert w.add_checkpoint(body(0, [], signed(log, 0, b"\x01" * 32)), 1).status == 422
    assert w.add_checkpoint(body(0, [b"\x00" * 32], signed(log, 9, root_of(leaves))), 1).status == 422

    first = w.add_checkpoint(body(0, [], signed(log, 5, root_of(leaves[:5]))), 1_700_000_000)
    assert first.status == 200
    stamp = CosignatureVerifier.from_key(w.cosigner.vkey()).timestamp(
        signed(log, 5, root_of(leaves[:5])) + first.body
    )
    assert stamp == 1_700_000_000

    stale = w.add_checkpoint(body(0, [], signed(log, 9, root_of(leaves))), 2)
    assert (stale.status, stale.body, stale.content_type) == (409, "5\n", "text/x.tlog.size")
    other = tree(9)
    other[2] = merkle.leaf_hash(b"rewritten")
    assert w.add_checkpoint(body(5, proof(other, 5), signed(log, 9, root_of(other))), 2).status == 422
    assert w.add_checkpoint(body(5, [], signed(log, 5, root_of(other[:5]))), 2).status == 422  # same size
    grown = w.add_checkpoint(body(5, proof(leaves, 5), signed(log, 9, root_of(leaves))), 3)
    assert grown.status == 200
    assert w.add_checkpoint(body(5, proof(leaves, 5), signed(log, 9, root_of(leaves))), 4).status == 409


def test_a_cosignature_does_not_verify_for_another_checkpoint(log: Signer, w: Witness) -> None:
    leaves = tree(4)
    reply = w.add_checkpoint(body(0, [], signed(log, 4, root_of(leaves))), 7)
    other = signed(log, 4, root_of([*tree(3), merkle.leaf_hash(b"x")]))
    assert CosignatureVerifier.from_key(w.cosigner.vkey()).timestamp(other + reply.body) is None
    with pytest.raises(SignatureInvalid, match="cosignature/v1"):
        CosignatureVerifier.from_key(log.verifier_key())
    assert isinstance(Verifier.from_key(log.verifier_key()), Verifier)
