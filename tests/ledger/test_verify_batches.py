"""Full verify checks entries and stored nodes a batch at a time, in passes that run in C.

A fault is named as precisely on either side of a batch boundary as anywhere else, and what those
passes accept is what the row-by-row checks accept: causes cited once, twice, not at all or as
null, a "$" that is no blob reference, a blob cited past the first batch. Every backend reads in
batches of its own, so the boundaries are crossed on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from backends import Backend
from support import order_events
from tampering import fault, forge, rebuild_tree, sql

from answerable import LedgerTampered, SQLiteLedger
from answerable.clock import IdSource
from answerable.ledger import merkle
from answerable.ledger._sql import SQLLedger
from answerable.ledger._verify import _cites

ORIGIN = "test.example/verify-batches"
ENTRIES = 600
"""More than two batches of entry rows (256 each)."""


def backend_sql(backend: Backend, statement: str, *args: object) -> None:
    """Change the store behind the ledger's back, as whoever can write the database could."""
    if backend.name == "sqlite":
        sql(backend.target, statement, *args)  # type: ignore[arg-type]
        return
    import psycopg

    with psycopg.connect(backend.target, autocommit=True) as conn:
        conn.execute(statement.replace("?", "%s"), args)


@pytest.fixture
def big(backend: Backend) -> SQLLedger:
    store = backend.open(create=True, origin=ORIGIN)
    events = order_events(ENTRIES)
    linked = [
        events[0],
        *(e.model_copy(update={"causes": (events[k].id,)}) for k, e in enumerate(events[1:])),
    ]
    linked[300] = linked[300].model_copy(update={"causes": (events[1].id, events[2].id)})
    linked[301] = linked[301].model_copy(update={"causes": (events[3].id, events[3].id)})
    linked[302] = linked[302].model_copy(update={"causes": ()})
    store.append_sync(linked)
    store.checkpoint()
    return store


def test_a_ledger_of_several_batches_verifies(big: SQLLedger) -> None:
    """One cause, two, one cited twice (the index holds it once) and none, past the first batch."""
    report = big.verify()
    assert report.size == ENTRIES
    assert report.checkpoints_checked == 1


@pytest.mark.parametrize("index", [0, 255, 256, 511, 512, ENTRIES - 1])
def test_an_index_row_id_edited_is_named_on_either_side_of_a_batch_boundary(
    backend: Backend, big: SQLLedger, index: int
) -> None:
    backend_sql(backend, "UPDATE entries SET id = ? WHERE idx = ?", f"forged-{index}", index)
    with pytest.raises(LedgerTampered) as caught:
        big.verify()
    assert (caught.value.index, caught.value.entry_id) == (index, f"forged-{index}")
    assert "its index row says ExternalEvent forged-" in str(caught.value)


@pytest.mark.parametrize("index", [255, 256])
def test_an_index_row_kind_edited_is_named(backend: Backend, big: SQLLedger, index: int) -> None:
    backend_sql(backend, "UPDATE entries SET kind = 'Intent' WHERE idx = ?", index)
    with pytest.raises(LedgerTampered) as caught:
        big.verify()
    assert caught.value.index == index
    assert "its index row says Intent" in str(caught.value)


@pytest.mark.parametrize("index", [256, 513])
def test_a_changed_byte_past_the_first_batch_is_named(backend: Backend, big: SQLLedger, index: int) -> None:
    target = big.entry(index)
    changed = target.data.replace(f'"O-{index}"'.encode(), f'"X-{index}"'.encode())
    backend_sql(backend, "UPDATE entries SET data = ? WHERE idx = ?", changed, index)
    with pytest.raises(LedgerTampered) as caught:
        big.verify()
    assert (caught.value.index, caught.value.entry_id) == (index, target.id)
    assert "do not hash to its leaf hash" in str(caught.value)


@pytest.mark.parametrize("index", [1, 300, 301, 599])
def test_a_causes_link_moved_past_the_first_batch_is_named(
    backend: Backend, big: SQLLedger, index: int
) -> None:
    """The same number of links, one filed under entry 302 (which cites none)."""
    [cause, *_] = orjson.loads(big.entry(index).data)["causes"]
    backend_sql(backend, "UPDATE causes SET idx = 302 WHERE idx = ? AND cause = ?", index, cause)
    with pytest.raises(LedgerTampered) as caught:
        big.verify()
    assert caught.value.index == min(index, 302)  # the first entry, in index order, the index misstates
    assert "causes index does not match" in str(caught.value)


def test_a_stored_node_edited_at_a_batch_boundary_of_its_level_is_named(backend: Backend) -> None:
    """Stored nodes are compared 1,024 to a batch: the node just past the first batch is named."""
    store = backend.open(create=True, origin=ORIGIN)
    store.append_sync(order_events(2100))
    backend_sql(backend, "UPDATE nodes SET hash = ? WHERE level = 1 AND i = 1024", bytes(32))
    with pytest.raises(LedgerTampered, match=r"\(level 1, index 1024\) was edited"):
        store.verify()


def test_a_stored_node_missing_from_a_later_batch_is_named(backend: Backend) -> None:
    store = backend.open(create=True, origin=ORIGIN)
    events = order_events(2100)
    store.append_sync(events)
    backend_sql(backend, "DELETE FROM nodes WHERE level = 1 AND i = 1030")
    with pytest.raises(LedgerTampered, match=r"\(level 1, index 1030\) is missing") as caught:
        store.verify()
    assert (caught.value.index, caught.value.entry_id) == (2060, events[2060].id)


# --- what the fast passes accept is what the row-by-row checks accept ------------------------------


def test_a_dollar_that_is_no_blob_reference_verifies(store: SQLiteLedger, ids: IdSource) -> None:
    events = order_events(300, ids)
    events[260] = events[260].model_copy(update={"payload": {"price": "$12", "$ref": {"$blob": 1}}})
    store.append_sync(events)
    assert store.verify().size == 300


def test_a_blob_cited_past_the_first_batch_is_checked(store: SQLiteLedger, ids: IdSource, path: Path) -> None:
    events = order_events(300, ids)
    events[270] = events[270].model_copy(update={"payload": order_events(1, ids, size=100_000)[0].payload})
    store.append_sync(events)
    assert store.verify().size == 300
    [(digest,)] = sql(path, "SELECT digest FROM blobs")
    sql(path, "UPDATE blobs SET data = ? WHERE digest = ?", b"changed", digest)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (270, events[270].id)
    assert "was altered" in str(caught)


@pytest.mark.parametrize(
    "causes", [None, "absent", [], ["a", "a"], ["a", "b"], "", "ab", {}, {"a": 1}], ids=repr
)
def test_causes_written_by_hand_are_read_as_they_always_were(
    store: SQLiteLedger, ids: IdSource, path: Path, causes: object
) -> None:
    """An entry forged with causes no record writes (the tree rebuilt to match, no checkpoint):
    the causes index must hold what ``set(causes or ())`` makes of them, on the fast path too."""
    store.append_sync(order_events(300, ids))
    sql(path, "DELETE FROM checkpoints")

    def edit(data: bytes) -> bytes:
        body = orjson.loads(data)
        if causes == "absent":
            del body["causes"]
        else:
            body["causes"] = causes
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

    forge(path, 280, edit)
    rebuild_tree(path)
    [(entry_id,)] = sql(path, "SELECT id FROM entries WHERE idx = 280")
    sql(path, "DELETE FROM causes WHERE idx = 280")
    listed = set(causes or ()) if causes != "absent" else set()  # type: ignore[call-overload]
    for cause in listed:
        sql(path, "INSERT INTO causes VALUES (?, 280)", cause)
    assert store.verify().size == 300
    sql(path, "INSERT INTO causes VALUES ('stray', 280)")
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (280, entry_id)
    assert "causes index does not match" in str(caught)


@pytest.mark.parametrize(
    "causes",
    [[], ["a"], ["a", "a"], ["a", "b", "a"], "", "a", "ab", {}, {"k": 1}, {"k": 1, "j": 2}, None],
    ids=repr,
)
def test_cites_pairs_each_cause_once_per_entry(causes: object) -> None:
    """The pairs zipped in C for entries citing one cause at most are those ``set`` would give."""
    bodies = [{"causes": ["x"]}, {"causes": causes}, {}, {"causes": ["y"]}]
    indexes = [7, 8, 9, 10]
    expected = [
        (cause, index)
        for body, index in zip(bodies, indexes, strict=True)
        for cause in set(body.get("causes") or ())  # type: ignore[call-overload]
    ]
    pairs, count = _cites(bodies, indexes)
    got = list(pairs)
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    assert count == len(got)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8, 9, 1025])
def test_parent_level_is_node_hash_of_each_pair(size: int) -> None:
    level = [hashlib.sha256(str(k).encode()).digest() for k in range(size)]
    assert merkle.parent_level(level) == [
        merkle.node_hash(level[k], level[k + 1]) for k in range(0, size - 1, 2)
    ]
