"""Verification edges: which entry each fault names (index and id), and faults a weaker check would miss."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from support import order_events
from tampering import fault, filled, forge, rebuild_tree, sql

from answerable import SQLiteLedger
from answerable.clock import IdSource
from answerable.errors import ConfigError
from answerable.ledger import merkle

ORIGIN = "test.example/verify-edges"


# --- deleted rows -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "i"), [(1, 3), (2, 1), (3, 0)])
def test_a_deleted_tree_node_names_the_first_entry_it_covered(
    store: SQLiteLedger, ids: IdSource, path: Path, level: int, i: int
) -> None:
    written = filled(store, ids, 13)
    sql(path, "DELETE FROM nodes WHERE level = ? AND i = ?", level, i)
    caught = fault(store)
    first = i << level
    assert (caught.index, caught.entry_id) == (first, written[first])
    assert f"(level {level}, index {i}) is missing" in str(caught)


def test_a_deleted_entry_in_the_middle_is_named_by_its_index(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    filled(store, ids, 13)
    sql(path, "DELETE FROM entries WHERE idx = 6")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (6, None)
    assert "ledger entry 6 is missing" in str(caught)


def test_a_renumbered_entry_row_is_named(store: SQLiteLedger, ids: IdSource, path: Path) -> None:
    """A row filed under a negative index sorts first: it is named by the position it took and its id."""
    written = filled(store, ids, 5)
    sql(path, "UPDATE entries SET idx = -1 WHERE idx = 3")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (0, written[3])


def test_a_tree_node_moved_to_a_fractional_index_is_missing_where_it_was(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """A node filed under 1.5 still sorts between 1 and 2: the level is compared index by index,
    not by its ends, so the node at 1 is missing (proofs would need it)."""
    written = filled(store, ids, 8)
    sql(path, "UPDATE nodes SET i = 1.5 WHERE level = 1 AND i = 1")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (2, written[2])
    assert "(level 1, index 1) is missing" in str(caught)


def test_an_entry_row_moved_to_a_fractional_index_is_named(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Entries whose table was rebuilt without an integer key, one row filed under 2.5: every
    index of a batch is checked, not its first and last alone."""
    written = filled(store, ids, 5)
    sql(path, "CREATE TABLE e2 (idx REAL, id TEXT, kind TEXT, data BLOB, leaf_hash BLOB)")
    sql(path, "INSERT INTO e2 SELECT * FROM entries ORDER BY idx")
    sql(path, "DROP TABLE entries")
    sql(path, "ALTER TABLE e2 RENAME TO entries")
    sql(path, "UPDATE entries SET idx = 2.5 WHERE idx = 3")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (3, written[3])
    assert "renumbered" in str(caught) or "is missing" in str(caught)


def test_tree_nodes_beyond_the_entries_mean_entries_were_removed(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Entries and their own nodes removed from the end: the higher nodes left behind give it away."""
    filled(store, ids, 16)
    sql(path, "DELETE FROM entries WHERE idx >= 12")
    sql(path, "DELETE FROM nodes WHERE level = 1 AND i >= 6")
    sql(path, "DELETE FROM nodes WHERE level = 2 AND i >= 3")
    sql(path, "DELETE FROM nodes WHERE level = 3 AND i >= 1")
    sql(path, "DELETE FROM checkpoints")
    caught = fault(store)  # every level 12 entries need still matches; the old root at level 4 is left
    assert "removed from the end" in str(caught)
    assert caught.index is None


# --- checkpoints ------------------------------------------------------------------------------------


def test_a_stored_checkpoint_that_no_longer_matches_is_a_rewritten_history(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """The only checkpoint disagrees with entries and a tree rebuilt to match them: that is a fault."""
    written = filled(store, ids, 8)
    forge(path, 2, lambda data: data.replace(b"O-2", b"O-9"))
    rebuild_tree(path)
    caught = fault(store)
    assert "stored checkpoint at size 8 does not match" in str(caught)
    assert caught.index is not None
    assert caught.index <= 2
    assert caught.entry_id == written[caught.index]


def test_a_given_checkpoint_that_no_longer_matches_names_its_size(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    written = filled(store, ids, 6)
    saved = store.checkpoint()
    forge(path, 5, lambda data: data.replace(b"O-5", b"O-9"))
    rebuild_tree(path)
    sql(path, "DELETE FROM checkpoints")
    store.verify()  # alone, the rewritten ledger agrees with itself
    caught = fault(store, saved)
    assert "the given checkpoint at size 6 does not match" in str(caught)
    assert "entries 0..5" in str(caught)  # an even ledger: nothing stored narrows it
    assert (caught.index, caught.entry_id) == (0, written[0])


def test_an_odd_ledger_whose_last_entry_changed_names_it(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """The last entry of an odd ledger is under no stored node: a checkpoint over it names it alone."""
    for n in (5, 7):
        written = filled(store, ids, n)
        last = len(written) - 1
        forge(path, last, lambda data: data.replace(b'"order":"O-', b'"order":"X-'))
        caught = fault(store)
        assert (caught.index, caught.entry_id) == (last, written[last])
        assert f"the change is ledger entry {last} (id {written[last]})" in str(caught)
        store.close()
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        store = SQLiteLedger.open(path, create=True, origin=ORIGIN)
    store.close()


def test_a_checkpoint_filed_under_another_size_is_caught(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    filled(store, ids, 4)
    sql(path, "UPDATE checkpoints SET size = 3")
    assert "filed under size 3 says size 4" in str(fault(store))


# --- the causes index -------------------------------------------------------------------------------


def test_a_causes_link_moved_to_another_entry_is_caught_though_the_count_is_the_same(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Same number of links, one pointing elsewhere: the fingerprint is more than a count."""
    first, second, third, fourth = order_events(4, ids)
    store.append_sync([first, second.model_copy(update={"causes": (first.id,)}), third, fourth])
    store.verify()
    sql(path, "UPDATE causes SET idx = 3 WHERE idx = 1")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (1, second.id)
    assert "causes index" in str(caught)


def test_a_causes_link_renamed_is_caught_though_the_count_is_the_same(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    first, second, third = order_events(3, ids)
    store.append_sync([first, second.model_copy(update={"causes": (first.id,)}), third])
    sql(path, "UPDATE causes SET cause = ? WHERE idx = 1", third.id)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (1, second.id)


def test_causes_listed_for_an_entry_the_ledger_does_not_hold_name_that_index(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    first, second = order_events(2, ids)
    store.append_sync([first, second.model_copy(update={"causes": (first.id,)})])
    sql(path, "INSERT INTO causes VALUES (?, ?)", first.id, 7)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (7, None)
    assert "entry 7, which the ledger does not hold" in str(caught)


# --- the report -------------------------------------------------------------------------------------


def test_the_report_counts_the_stored_checkpoints_it_checked(store: SQLiteLedger, ids: IdSource) -> None:
    """Each stored checkpoint counts once; a given one is checked too but is not a stored one."""
    assert store.verify().checkpoints_checked == 0
    filled(store, ids, 5, 8)
    report = store.verify()
    assert (report.size, report.checkpoints_checked, report.root) == (13, 2, store.root())
    given = store.checkpoint()
    assert store.verify(given).checkpoints_checked == 2
    assert store.verify(given, key=store.verifier_key()).checkpoints_checked == 2


def test_causes_listed_for_the_first_entry_name_it(store: SQLiteLedger, ids: IdSource, path: Path) -> None:
    first, second = order_events(2, ids)
    store.append_sync([first, second.model_copy(update={"causes": (first.id,)})])
    sql(path, "INSERT INTO causes VALUES (?, ?)", second.id, 0)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (0, first.id)


def test_every_same_count_edit_of_the_causes_index_is_caught(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Two dozen edits that keep the number of links: a fingerprint of little more than a count
    would let about half of them through."""
    events = order_events(26, ids)
    linked = [events[0], *(e.model_copy(update={"causes": (events[0].id,)}) for e in events[1:])]
    store.append_sync(linked)
    store.verify()
    for k in range(1, 25):
        sql(path, "UPDATE causes SET idx = ? WHERE idx = ?", 1000 + k, k)
        caught = fault(store)
        assert (caught.index, caught.entry_id) == (k, linked[k].id)
        sql(path, "UPDATE causes SET idx = ? WHERE idx = ?", k, 1000 + k)
    store.verify()


# --- the index row against the bytes -----------------------------------------------------------------


def rebuild_levels(path: Path, *levels: int) -> None:
    """Recompute the stored subtree hashes of the given levels only; the others keep what they hold."""
    leaves = [bytes(h) for (h,) in sql(path, "SELECT leaf_hash FROM entries ORDER BY idx")]  # type: ignore[call-overload]
    nodes = merkle.append_leaves(0, leaves, lambda level, index: b"")
    conn = sqlite3.connect(path, isolation_level=None)
    for level in levels:
        conn.execute("DELETE FROM nodes WHERE level = ?", (level,))
        conn.executemany("INSERT INTO nodes VALUES (?, ?, ?)", [n for n in nodes if n[0] == level])
    conn.close()


@pytest.mark.parametrize(("column", "value"), [("kind", "intent"), ("id", "forged-id")])
def test_an_index_row_whose_kind_or_id_disagrees_with_its_bytes_is_named(
    store: SQLiteLedger, ids: IdSource, path: Path, column: str, value: str
) -> None:
    """Only the row changed, not the bytes, leaf hash or tree: the row/bytes comparison alone sees it,
    and either field disagreeing is enough."""
    written = filled(store, ids, 5)
    sql(path, f"UPDATE entries SET {column} = ? WHERE idx = 3", value)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (3, value if column == "id" else written[3])


@pytest.mark.parametrize("forged", [b"not json", b"[1, 2]", b'{"kind": "event"}', b'{"id": "x"}'])
def test_a_first_entry_that_is_no_json_record_with_id_and_kind_is_named(
    store: SQLiteLedger, ids: IdSource, path: Path, forged: bytes
) -> None:
    written = filled(store, ids, 3)
    forge(path, 0, lambda data: forged)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (0, written[0])


# --- blobs --------------------------------------------------------------------------------------------


def with_blob(store: SQLiteLedger, ids: IdSource) -> tuple[str, str]:
    """Entries 0..4 with entry 3 offloading its payload to a blob; return its id and the blob digest."""
    [big] = order_events(1, ids, size=100_000)
    store.append_sync([*order_events(3, ids), big, *order_events(1, ids)])
    [(data,)] = sql(store.path, "SELECT data FROM entries WHERE idx = 3")
    digest = json.loads(data)["payload"]["$blob"]  # type: ignore[arg-type]
    store.verify()
    return big.id, digest


def test_an_altered_cited_blob_is_reported_as_altered_not_missing(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    big, digest = with_blob(store, ids)
    [(data,)] = sql(path, "SELECT data FROM blobs WHERE digest = ?", digest)
    sql(path, "UPDATE blobs SET data = ? WHERE digest = ?", bytes(data) + b" ", digest)  # type: ignore[arg-type]
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (3, big)
    assert "which was altered" in str(caught)  # the blob is still held: it is not "no longer held"


def test_a_blob_reference_whose_length_was_changed_is_named(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """The entry's bytes, leaf hash and tree all rewritten to claim another length: still caught."""
    big, _ = with_blob(store, ids)
    forge(path, 3, lambda data: re.sub(rb'"bytes":(\d+)', lambda m: b'"bytes":%d' % (int(m[1]) + 1), data))
    rebuild_tree(path)
    sql(path, "DELETE FROM checkpoints")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (3, big)


def test_an_altered_blob_no_entry_cites_is_caught(store: SQLiteLedger, ids: IdSource, path: Path) -> None:
    filled(store, ids, 3)
    sql(path, "INSERT INTO blobs VALUES (?, ?)", "sha256:" + "ab" * 32, b"not these bytes")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (None, None)


@pytest.mark.parametrize(
    "payload",
    [
        {"$blob": "sha256:" + "0" * 64, "bytes": 3, "note": "a third key"},
        {"$blob": 5, "bytes": 3},
        {"$blob": "sha256:" + "0" * 64, "bytes": "3"},
    ],
)
def test_a_payload_that_only_resembles_a_blob_reference_is_not_one(
    store: SQLiteLedger, ids: IdSource, payload: dict[str, object]
) -> None:
    """Only ``{"$blob": <str>, "bytes": <int>}`` is a reference; anything else is the event's own data."""
    [event] = order_events(1, ids)
    store.append_sync([*order_events(2, ids), event.model_copy(update={"payload": payload})])
    assert store.verify().size == 3


# --- the verifier key and the given checkpoint --------------------------------------------------------


def test_a_malformed_recorded_verifier_key_is_a_fault(store: SQLiteLedger, ids: IdSource, path: Path) -> None:
    filled(store, ids, 3)
    sql(path, "UPDATE meta SET value = 'not a key' WHERE key = 'verifier_key'")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (None, None)


def test_a_given_text_with_a_blank_line_that_is_no_checkpoint_is_a_config_error(
    store: SQLiteLedger, ids: IdSource
) -> None:
    filled(store, ids, 3)
    with pytest.raises(ConfigError):
        store.verify("not a checkpoint\n\n— someone sig\n")


# --- tree nodes above the pairs -----------------------------------------------------------------------


def test_a_stray_tree_node_just_past_the_entries_names_where_they_end(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    filled(store, ids, 13)  # level 1 holds nodes 0..5
    sql(path, "INSERT INTO nodes VALUES (1, 6, ?)", b"\x00" * 32)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (12, None)


def test_a_level_two_mismatch_is_narrowed_inside_the_four_entries_it_covers(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Entry 7 hand-edited, level 1 rebuilt to match: node (2, 1) over 4..7 is the first to disagree,
    and entry 7, the last it covers, is the one whose bytes are not canonical."""
    written = filled(store, ids, 13)
    forge(path, 7, lambda data: data + b" ")
    rebuild_levels(path, 1)
    caught = fault(store)
    assert "(level 2, index 1) does not match entries 4..7" in str(caught)
    assert (caught.index, caught.entry_id) == (7, written[7])


def test_a_level_two_mismatch_looks_no_further_than_the_entries_it_covers(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Entries 5 (canonically) and 8 (by hand) edited: node (2, 1) is narrowed within 4..7 only, so
    the non-canonical entry 8 just past it must not be blamed for it."""
    written = filled(store, ids, 13)
    forge(path, 5, lambda data: data.replace(b"O-5", b"O-9"))
    forge(path, 8, lambda data: data + b" ")
    rebuild_levels(path, 1)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (4, written[4])


def test_an_edited_root_node_of_a_full_tree_names_the_range_it_covers(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """The top node has no parent to show it alone was edited: the entries under it are suspects."""
    written = filled(store, ids, 8)
    sql(path, "UPDATE nodes SET hash = ? WHERE level = 3 AND i = 0", b"\x00" * 32)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (0, written[0])


def test_an_edited_node_just_below_the_root_blames_no_entry(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    filled(store, ids, 8)
    sql(path, "UPDATE nodes SET hash = ? WHERE level = 2 AND i = 0", b"\x00" * 32)
    caught = fault(store)
    assert "(level 2, index 0) was edited" in str(caught)
    assert (caught.index, caught.entry_id) == (None, None)


def test_an_edited_node_with_no_parent_is_not_compared_with_a_stray_one(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """12 entries: node (2, 2) over 8..11 has no parent. A stray stored node where one would be must
    not be read as its parent; the node's entries are the suspects."""
    written = filled(store, ids, 12)
    sql(path, "UPDATE nodes SET hash = ? WHERE level = 2 AND i = 2", b"\x00" * 32)
    sql(path, "INSERT INTO nodes VALUES (3, 1, ?)", b"\x00" * 32)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (8, written[8])


def swap_rows(path: Path, i: int, j: int) -> None:
    """Exchange two entries wholesale (bytes, leaf hash, id, kind), leaving the tree as it was."""
    rows = {idx: rest for idx, *rest in sql(path, "SELECT idx, id, kind, data, leaf_hash FROM entries")}
    sql(path, "UPDATE entries SET idx = -1 - idx WHERE idx IN (?, ?)", i, j)
    for idx, other in ((i, j), (j, i)):
        sql(path, "UPDATE entries SET idx = ? WHERE idx = ?", idx, -1 - other)
    assert rows[i] != rows[j]


def test_a_move_from_the_unpaired_last_entry_of_an_odd_ledger_is_proven(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """9 entries: entry 8 is under no pair node, yet the pair (0, 1) hashes the entry now at 8."""
    written = filled(store, ids, 9)
    swap_rows(path, 0, 8)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (0, written[8])
    assert "out of place" in str(caught)


def test_a_checkpoint_at_the_start_of_a_range_does_not_narrow_it(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Entry 1 changed with the nodes over 0..3 rebuilt, entry 6 hand-edited with level 1 rebuilt: the
    range 4..7 of node (2, 1) is narrowed to 6, not cut short by the (failing) checkpoint at size 4."""
    written = filled(store, ids, 4, 9)
    [(old,)] = sql(path, "SELECT hash FROM nodes WHERE level = 2 AND i = 1")
    forge(path, 1, lambda data: data.replace(b"O-1", b"O-9"))
    forge(path, 6, lambda data: data + b" ")
    rebuild_levels(path, 1, 2)
    sql(path, "UPDATE nodes SET hash = ? WHERE level = 2 AND i = 1", old)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (6, written[6])


def test_a_checkpoint_at_the_end_of_a_range_does_not_narrow_it(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Nodes (2, 1) and (3, 0) edited: node (2, 1) is not alone, and the checkpoint at size 8, which
    ends the range 4..7 and still matches, does not push the suspect past it."""
    written = filled(store, ids, 8, 5)
    sql(path, "UPDATE nodes SET hash = ? WHERE (level, i) IN ((2, 1), (3, 0))", b"\x00" * 32)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (4, written[4])


# --- narrowing a pair by bytes and by id order --------------------------------------------------------


def forge_id(path: Path, index: int, new: str) -> None:
    """Give an entry another id in its row and its bytes, leaf hash recomputed: a forged move."""
    [(old,)] = sql(path, "SELECT id FROM entries WHERE idx = ?", index)
    assert isinstance(old, str)
    forge(path, index, lambda data: data.replace(old.encode(), new.encode()))
    sql(path, "UPDATE entries SET id = ? WHERE idx = ?", new, index)


def test_the_second_of_a_pair_whose_id_sorts_out_of_order_is_named(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Entry 3 given an id older than every other: its neighbours 2 and 4, in order, do not bracket it."""
    filled(store, ids, 8)
    forge_id(path, 3, "00000000-0000-7000-8000-000000000000")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (3, "00000000-0000-7000-8000-000000000000")


def test_an_id_is_judged_by_its_next_neighbour_not_the_one_after(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Entry 3's id made to sort just after entry 4's: out of order with 2 and 4, though not with 2 and 5."""
    written = filled(store, ids, 8)
    forge_id(path, 3, written[4] + "0")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (3, written[4] + "0")


def test_an_id_at_the_start_of_a_pair_is_judged_by_the_entry_before_it(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Entry 2's id made to sort just after entry 0's: out of order with 1 and 3 (not with 0 and 3), so
    entry 2 alone is named, not the pair."""
    written = filled(store, ids, 8)
    forge_id(path, 2, written[0] + "0")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (2, written[0] + "0")
    assert f"ledger entry 2 (id {written[0]}0) was changed" in str(caught)


def test_a_hand_edit_of_the_first_entry_is_named_alone(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    written = filled(store, ids, 8)
    forge(path, 0, lambda data: data + b" ")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (0, written[0])
    assert f"ledger entry 0 (id {written[0]}) was changed" in str(caught)


def test_a_hand_edit_just_past_a_pair_is_not_blamed_for_it(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Entry 2 changed canonically, entry 4 by hand: the pair (2, 3) is the first fault, and nothing
    inside it is non-canonical, so the pair is named from its first entry, not entry 4."""
    written = filled(store, ids, 8)
    forge(path, 2, lambda data: data.replace(b"O-2", b"O-9"))
    forge(path, 4, lambda data: data + b" ")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (2, written[2])


def test_bytes_with_no_canonical_form_are_a_hand_edit(store: SQLiteLedger, ids: IdSource, path: Path) -> None:
    """An integer past the I-JSON range parses but has no canonical form: only a hand could write it."""
    written = filled(store, ids, 8)
    forge(path, 1, lambda data: data.replace(b'{"order":', b'{"n":9007199254740993,"order":'))
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (1, written[1])


def test_the_first_faulty_entry_is_named_when_a_later_one_is_faulty_too(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Entry 3's blob deleted and entry 4's bytes changed: the first fault in ledger order is
    named, as the row-by-row check always did, though the batch first fails on entry 4's hash."""
    entry_id, _ = with_blob(store, ids)
    sql(path, "DELETE FROM blobs")
    sql(path, "UPDATE entries SET data = CAST(data || x'20' AS BLOB) WHERE idx = 4")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (3, entry_id)
    assert "no longer holds" in str(caught)


def test_entry_bytes_rewritten_as_text_are_named_not_a_crash(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """SQL that turns an entry's bytes into TEXT (concatenation does) gets the entry named."""
    written = filled(store, ids, 5)
    sql(path, "UPDATE entries SET data = data || ' ' WHERE idx = 2")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (2, written[2])
    assert "do not hash to its leaf hash" in str(caught)


def test_entry_bytes_stored_as_text_but_unchanged_verify(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """Judged as their UTF-8 bytes, as blobs are: the same bytes as TEXT are the same entry."""
    filled(store, ids, 5)
    sql(path, "UPDATE entries SET data = CAST(data AS TEXT) WHERE idx = 2")
    assert store.verify().size == 5
