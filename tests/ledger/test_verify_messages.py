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
