"""What verify says, word for word where a person reads it to decide what to do next."""

from __future__ import annotations

from pathlib import Path

from support import order_events
from tampering import fault, filled, forge, sql

from answerable import SQLiteLedger
from answerable.clock import IdSource
from answerable.ledger._verify import altered_blob, blob_digest
from answerable.ledger.note import Signer

ORIGIN = "messages.example/ledger"


def test_a_stored_checkpoint_signed_by_another_key_names_the_ledgers_key(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    filled(store, ids, 3)
    [(note,)] = sql(path, "SELECT note FROM checkpoints")
    assert isinstance(note, str)
    stranger = Signer.generate(ORIGIN)
    text = note.split("\n\n")[0] + "\n"
    sql(path, "UPDATE checkpoints SET note = ?", stranger.sign(text))
    assert "stored checkpoint at size 3 does not verify with the ledger's key:" in str(fault(store))


def test_a_given_checkpoint_that_does_not_verify_is_called_the_given_checkpoint(
    store: SQLiteLedger, ids: IdSource
) -> None:
    filled(store, ids, 2)
    other = Signer.generate(ORIGIN)
    text = f"{ORIGIN}\n2\n{'A' * 43}=\n"
    assert "the given checkpoint does not verify with the ledger's key:" in str(
        fault(store, other.sign(text))
    )


def test_the_unpaired_last_entry_of_an_odd_ledger_is_explained(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    """With one checkpoint over an odd ledger, its last entry is the only one the tree cannot see."""
    written = filled(store, ids, 5)
    forge(path, 4, lambda data: data.replace(b'"order":"O-', b'"order":"Y-'))
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (4, written[4])
    assert str(caught).endswith(
        "it is the one entry no stored tree node covers, so the only one that could change without the tree "
        "noticing (unless the tree was rebuilt as well)"
    )


def test_one_trailing_entry_is_called_an_entry(store: SQLiteLedger, ids: IdSource) -> None:
    filled(store, ids, 3)
    store.append_sync(order_events(1, ids))
    message = str(fault(store, key=store.verifier_key()))
    assert "1 trailing entry (3..3) are covered by no checkpoint" in message
    store.append_sync(order_events(1, ids))
    assert "2 trailing entries (3..4)" in str(fault(store, key=store.verifier_key()))


def test_an_altered_blob_no_entry_cites_says_only_that() -> None:
    fault_ = altered_blob("sha256:abc", b"bytes", None)
    assert str(fault_) == f"blob sha256:abc was altered: its stored bytes hash to {blob_digest(b'bytes')}"
    assert (fault_.index, fault_.entry_id) == (None, None)
    cited = altered_blob("sha256:abc", b"bytes", (7, "id-7"))
    assert str(cited).endswith("; ledger entry 7 (id id-7) cites it")
    assert blob_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_only_a_signed_checkpoint_note_counts_as_one() -> None:
    from answerable.ledger._verify import _is_checkpoint_note

    signer = Signer.generate(ORIGIN)
    good = signer.sign(f"{ORIGIN}\n3\n{'A' * 43}=\n")
    assert _is_checkpoint_note(good) is True
    assert _is_checkpoint_note("no blank line") is False
    assert _is_checkpoint_note("not a checkpoint\n\n— sig AAAA\n") is False


def _reencode(data: bytes, **changes: object) -> bytes:
    """The entry with ``changes`` in its payload, still canonical JSON: an edit by a careful forger."""
    import orjson

    from answerable._canonical import canonical_bytes

    body = orjson.loads(data)
    body["payload"].update(changes)
    return canonical_bytes(body)


def test_one_entry_left_by_the_checkpoints_is_named_with_each_checkpoint_that_narrowed_it(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    from tampering import rebuild_tree

    written = filled(store, ids, 2, 1, 1, 1)  # checkpoints at sizes 2, 3, 4 and 5
    forge(path, 3, lambda data: _reencode(data, order="X-3"))
    rebuild_tree(path)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (3, written[3])
    assert str(caught).endswith(
        f"the change is ledger entry 3 (id {written[3]}): the checkpoint at size 2 still matches every "
        "entry before it; the checkpoint at size 3 still matches every entry before it"
    )


def test_a_lone_entry_under_its_checkpoint_is_the_only_one_the_evidence_leaves(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    from tampering import rebuild_tree

    written = filled(store, ids, 1, 1)
    forge(path, 0, lambda data: _reencode(data, order="X-0"))
    rebuild_tree(path)
    assert str(fault(store)).endswith(
        f"the change is ledger entry 0 (id {written[0]}): it is the only entry the evidence leaves"
    )


def test_a_careful_edit_no_evidence_can_single_out_says_so(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    from tampering import rebuild_tree

    written = filled(store, ids, 4)
    forge(path, 1, lambda data: _reencode(data, order="X-1"))
    rebuild_tree(path)
    assert str(fault(store)).endswith(
        "the change lies in entries 0..3 (nothing stored tells which); nothing stored narrows it further, "
        f"the first of them is entry 0 (id {written[0]})"
    )


def test_checkpoints_that_narrow_a_range_are_all_named(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    from tampering import rebuild_tree

    written = filled(store, ids, 1, 1, 4)  # checkpoints at 1, 2 and 6
    forge(path, 4, lambda data: _reencode(data, order="X-4"))
    rebuild_tree(path)
    assert str(fault(store)).endswith(
        "the change lies in entries 2..5 (the checkpoint at size 1 still matches every entry before it; "
        "the checkpoint at size 2 still matches every entry before it); nothing stored narrows it further, "
        f"the first of them is entry 2 (id {written[2]})"
    )


def test_an_entry_whose_id_sorts_out_of_order_was_likely_moved(
    store: SQLiteLedger, ids: IdSource, path: Path
) -> None:
    import orjson
    from tampering import rebuild_tree

    from answerable._canonical import canonical_bytes
    from answerable.ledger import leaf_hash

    written = filled(store, ids, 6)
    moved = written[3] + "-moved"  # sorts after its right-hand neighbour
    [(data,)] = sql(path, "SELECT data FROM entries WHERE idx = 2")
    assert isinstance(data, bytes)
    body = orjson.loads(data)
    body["id"] = moved
    forged = canonical_bytes(body)
    sql(
        path,
        "UPDATE entries SET id = ?, data = ?, leaf_hash = ? WHERE idx = 2",
        moved,
        forged,
        leaf_hash(forged),
    )
    rebuild_tree(path)
    caught = fault(store)
    assert (caught.index, caught.entry_id) == (2, moved)
    assert str(caught).endswith(
        "its id sorts out of time order with its neighbours: it was likely moved here"
    )


def test_only_canonical_json_is_what_the_ledger_writes() -> None:
    from answerable.ledger._verify import _is_canonical, _Suspect

    assert _is_canonical(b'{"a":1}') is True
    assert _is_canonical(b'{ "a": 1 }') is False
    assert _is_canonical(b"{") is False
    assert "__slots__" in vars(_Suspect)
    assert getattr(_Suspect, "__dataclass_params__").frozen  # noqa: B009
