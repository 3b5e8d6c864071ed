"""Ledger trust: blobs checked by digest, a pinned verifier key, and naming exactly what changed."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from support import order_events
from tampering import filled, forge, rebuild_tree, sql
from typer.testing import CliRunner

from answerable import LedgerTampered, RecordInvalid, SQLiteLedger
from answerable.cli import app
from answerable.clock import FakeClock, IdSource
from answerable.records import decode_entry

ORIGIN = "test.example/trust"
runner = CliRunner()


def swap(path: Path, i: int, j: int) -> None:
    sql(path, "UPDATE entries SET idx = -1 WHERE idx = ?", i)
    sql(path, "UPDATE entries SET idx = ? WHERE idx = ?", i, j)
    sql(path, "UPDATE entries SET idx = ? WHERE idx = -1", j)


def cli(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


# --- blobs ------------------------------------------------------------------------------------------


def test_an_edited_blob_names_its_entry_and_is_refused_on_read(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Bytes moved to the blobs table are as bound as the entry: verify names the citing entry."""
    store.append_sync(order_events(3, ids))
    [big] = order_events(1, ids, size=100_000)
    [index] = store.append_sync([big])
    store.append_sync(order_events(2, ids))
    ref = decode_entry(store.entry(index).data).payload  # type: ignore[union-attr]
    digest = ref["$blob"]
    original = store.get_blob(digest)
    store.verify()

    sql(path, "UPDATE blobs SET data = ? WHERE digest = ?", original.replace(b"O-0", b"O-9"), digest)
    with pytest.raises(LedgerTampered, match=f"ledger entry 3 \\(id {big.id}\\).*blob {digest}") as caught:
        store.verify()
    assert (caught.value.index, caught.value.entry_id) == (3, big.id)
    with pytest.raises(LedgerTampered, match=f"blob {digest} was altered") as read:
        store.get_blob(digest)
    assert (read.value.index, read.value.entry_id) == (3, big.id)
    with pytest.raises(LedgerTampered, match="was altered"):
        store.put_blob(original)  # a new entry must not come to cite the altered blob


def test_a_deleted_blob_names_its_entry(store: SQLiteLedger, ids: IdSource, path: Path) -> None:
    """A reference to a blob the ledger no longer holds is named by the entry that makes it."""
    [big] = order_events(1, ids, size=100_000)
    store.append_sync([*order_events(2, ids), big])
    sql(path, "DELETE FROM blobs")
    with pytest.raises(LedgerTampered, match="no longer holds") as caught:
        store.verify()
    assert (caught.value.index, caught.value.entry_id) == (2, big.id)


# --- the pinned key ---------------------------------------------------------------------------------


def test_the_right_pinned_key_passes(store: SQLiteLedger, ids: IdSource, path: Path) -> None:
    """Pinned to the key `ledger key` prints, with a checkpoint over everything, verify says yes."""
    filled(store, ids, 5, 8)
    key = cli("ledger", "key", path).stdout.strip()
    assert store.verify(key=key).size == 13
    result = cli("verify", path, "--key", key, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["ok"], doc["size"], doc["trust"], doc["key"]) == (True, 13, "pinned-key", key)


def test_a_wrong_key_fails_naming_both_keys(
    store: SQLiteLedger, ids: IdSource, path: Path, tmp_path: Path
) -> None:
    """A pinned key that is not the ledger's own is a no (exit 1), and both keys are printed."""
    filled(store, ids, 4)
    with SQLiteLedger.open(tmp_path / "other.db", create=True, origin=ORIGIN) as other:
        wrong = other.verifier_key()
    result = cli("verify", path, "--key", wrong)
    assert result.exit_code == 1
    assert wrong in result.stderr
    assert store.verifier_key() in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_trailing_entries_no_checkpoint_covers_fail_with_their_count(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """With a pinned key, entries appended after the last checkpoint are not yet vouched for."""
    written = filled(store, ids, 13)
    later = order_events(4, ids)
    store.append_sync(later)
    store.verify()  # self-consistent
    with pytest.raises(LedgerTampered, match=r"4 trailing entries \(13\.\.16\)") as caught:
        store.verify(key=store.verifier_key())
    assert (caught.value.index, caught.value.entry_id) == (13, later[0].id)
    result = cli("verify", path, "--key", store.verifier_key())
    assert result.exit_code == 1
    assert "4 trailing entries" in result.stderr
    store.checkpoint()
    assert store.verify(key=store.verifier_key()).size == len(written) + 4


def test_a_rewritten_history_with_a_fresh_key_passes_alone_but_not_with_the_pinned_key(path: Path) -> None:
    """Rebuilt tree, fresh key, fresh checkpoint: self-consistent, and refused once the key is pinned."""
    ids = IdSource(FakeClock())
    with SQLiteLedger.open(path, create=True, origin=ORIGIN) as honest:
        honest.append_sync(order_events(9, ids))
        honest.checkpoint()
        pinned = honest.verifier_key()
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    with SQLiteLedger.open(path, create=True, origin=ORIGIN) as forged:
        forged.append_sync(order_events(9))
        forged.checkpoint()
        fresh = forged.verifier_key()

    alone = cli("verify", path)
    assert alone.exit_code == 0
    assert "self-consistency only" in alone.stdout
    result = cli("verify", path, "--key", pinned)
    assert result.exit_code == 1
    assert pinned in result.stderr
    assert fresh in result.stderr

    # Writing the pinned key into the database does not help: the checkpoint is not signed with it.
    sql(path, "UPDATE meta SET value = ? WHERE key = 'verifier_key'", pinned)
    with pytest.raises(LedgerTampered, match="does not verify with the pinned key"):
        SQLiteLedger.open(path).verify(key=pinned)
    # Nor does dropping the checkpoints: then nothing signed with the pinned key covers the entries.
    sql(path, "DELETE FROM checkpoints")
    with pytest.raises(LedgerTampered, match=r"9 trailing entries \(0\.\.8\)"):
        SQLiteLedger.open(path).verify(key=pinned)


def test_verify_says_plainly_when_it_proves_self_consistency_only(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Without --key or --checkpoint, human and JSON output both say self-consistency only."""
    filled(store, ids, 3)
    human = cli("verify", path)
    assert human.exit_code == 0
    assert "self-consistency only" in human.stdout
    doc = json.loads(cli("verify", path, "--json").stdout)
    assert doc["ok"] is True
    assert doc["trust"] == "self-consistency-only"
    assert "self-consistency only" in doc["trust_note"]
    pinned = json.loads(cli("verify", path, "--json", "--key", store.verifier_key()).stdout)
    assert pinned["trust"] == "pinned-key"
    assert "self-consistency" not in pinned["trust_note"]


def test_bad_input_exits_2_on_one_line(
    store: SQLiteLedger, ids: IdSource, path: Path, tmp_path: Path
) -> None:
    """A malformed key, an unreadable checkpoint or one that is not a checkpoint are usage errors."""
    filled(store, ids, 3)
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("hello\n")
    for args in (
        ("--key", "not-a-key"),
        ("--checkpoint", tmp_path / "missing.txt"),
        ("--checkpoint", garbage),
    ):
        result = cli("verify", path, *args)
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output


# --- naming what changed ----------------------------------------------------------------------------


def test_an_edit_with_its_leaf_hash_recomputed_is_named_by_a_checkpoint_between(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """The tree pins entries 4 and 5 together; the checkpoint signed at size 5 says it was 5."""
    written = filled(store, ids, 5, 8)
    forge(path, 5, lambda data: data.replace(b"O-0", b"O-9"))
    with pytest.raises(LedgerTampered, match="ledger entry 5") as caught:
        store.verify()
    assert (caught.value.index, caught.value.entry_id) == (5, written[5])


def test_a_hand_edit_with_its_leaf_hash_recomputed_is_named_by_its_bytes(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """The ledger writes canonical JSON only: an entry that is not was edited by hand."""
    written = filled(store, ids, 13)

    def by_hand(data: bytes) -> bytes:
        body = json.loads(data)
        body["payload"]["order"] = "O-999"
        return json.dumps(body, indent=1).encode()

    forge(path, 7, by_hand)
    with pytest.raises(LedgerTampered, match="not the canonical JSON") as caught:
        store.verify()
    assert (caught.value.index, caught.value.entry_id) == (7, written[7])


def test_an_edit_nothing_can_single_out_names_both_of_its_pair(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Without other evidence the pair hash cannot tell its two entries apart: both are named."""
    written = filled(store, ids, 13)
    forge(path, 5, lambda data: data.replace(b"O-5", b"O-9"))
    with pytest.raises(LedgerTampered) as caught:
        store.verify()
    text = str(caught.value)
    assert f"ledger entry 4 (id {written[4]}) or 5 (id {written[5]})" in text
    assert "nothing stored tells which" in text


@pytest.mark.parametrize(("i", "j"), [(3, 9), (4, 5)])
def test_two_swapped_entries_are_named_precisely(
    store: SQLiteLedger, ids: IdSource, path: Path, i: int, j: int
) -> None:
    """Each stored pair hash is proven to be the hash of leaves that now stand elsewhere."""
    written = filled(store, ids, 13)
    swap(path, i, j)
    with pytest.raises(LedgerTampered, match=f"ledger entries {i} .* and {j} .* were swapped") as caught:
        store.verify()
    assert (caught.value.index, caught.value.entry_id) == (i, written[j])


def test_an_entry_swapped_with_the_last_is_named(store: SQLiteLedger, ids: IdSource, path: Path) -> None:
    """The last entry of an odd ledger is under no pair hash, yet the pair it left names both."""
    written = filled(store, ids, 13)
    swap(path, 2, 12)
    with pytest.raises(
        LedgerTampered, match=r"ledger entry 2 .* is out of place.* entry 12 .* stood at 2"
    ) as caught:
        store.verify()
    assert (caught.value.index, caught.value.entry_id) == (2, written[12])


def test_a_rewrite_with_the_tree_rebuilt_is_named_by_the_checkpoints_around_it(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """With the tree rebuilt only checkpoints remain: the last that matches and the first that fails."""
    written = filled(store, ids, 6, 1, 6)
    forge(path, 6, lambda data: data.replace(b"O-0", b"O-9"))
    rebuild_tree(path)
    with pytest.raises(LedgerTampered, match="stored checkpoint at size 7 does not match") as caught:
        store.verify()
    assert (caught.value.index, caught.value.entry_id) == (6, written[6])


def test_an_edited_tree_node_alone_blames_no_entry(store: SQLiteLedger, ids: IdSource, path: Path) -> None:
    """A node whose parent still matches the entries is the node's own edit, not an entry's."""
    filled(store, ids, 13)
    sql(path, "UPDATE nodes SET hash = ? WHERE level = 1 AND i = 2", b"\x00" * 32)
    with pytest.raises(LedgerTampered, match=r"node \(level 1, index 2\) was edited") as caught:
        store.verify()
    assert caught.value.index is None


def test_an_edited_causes_index_names_the_entry(store: SQLiteLedger, ids: IdSource, path: Path) -> None:
    """The causes index is compared entry by entry once it is known not to match."""
    first, second, third = order_events(3, ids)
    store.append_sync([first, second.model_copy(update={"causes": (first.id,)}), third])
    sql(path, "INSERT INTO causes VALUES (?, ?)", second.id, 2)
    with pytest.raises(LedgerTampered, match="causes index") as caught:
        store.verify()
    assert (caught.value.index, caught.value.entry_id) == (2, third.id)


def test_a_ledger_of_the_first_format_verifies_with_its_key(tmp_path: Path) -> None:
    """The v1 fixture, with its blob and its closing checkpoint, passes with its key pinned."""
    source = Path(__file__).parent.parent / "data" / "ledger-v1"
    shutil.copy(source / "ledger.db", tmp_path / "ledger.db")
    shutil.copy(source / "ledger.db.key", tmp_path / "ledger.db.key")
    with SQLiteLedger.open(tmp_path / "ledger.db") as old:
        report = old.verify(key=old.verifier_key())
        assert report.size > 0
        [(data,)] = [(e.data,) for e in old.entries() if b'"$blob"' in e.data]
        digest = json.loads(data)["payload"]["$blob"]
        assert old.get_blob(digest)


def test_a_payload_shaped_like_a_blob_reference_is_refused_not_misread(path: Path):
    """The ledger's own reference shape is reserved: written, it would read as a missing blob."""
    with SQLiteLedger.open(path, create=True, origin=ORIGIN) as ledger:
        lookalike = order_events(1)[0].model_copy(update={"payload": {"$blob": "sha256:00", "bytes": 2}})
        with pytest.raises(RecordInvalid):
            ledger.append_sync([lookalike])
        assert ledger.size() == 0
        ledger.verify()


def test_a_blob_rewritten_as_text_is_named_not_a_crash(path: Path):
    """A blob's bytes turned into TEXT by hand are an altered blob, reported like any other."""
    with SQLiteLedger.open(path, create=True, origin=ORIGIN) as ledger:
        ledger.append_sync(order_events(2, size=100_000))
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE blobs SET data = CAST(data AS TEXT) || ' '")
    conn.close()
    with SQLiteLedger.open(path) as ledger, pytest.raises(LedgerTampered) as found:
        ledger.verify()
    assert found.value.index == 0
