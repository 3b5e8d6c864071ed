"""The ``answerable`` command: parse, call the public API, render. Nothing else lives here.

It starts on every command, and ``answerable halt`` is pressed when something must stop now, so
it imports only what parsing needs; each command imports what it uses (the ledger, control,
keys, Rich) when it runs, and the writers (halt, pause, resume, approve, deny) print their one
line without loading Rich at all when Rich would print it unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import re
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import orjson
import typer
from typer.core import TyperArgument, TyperOption

from answerable import _stop as stops
from answerable._files import MAX_INPUT, never_written_over, read_capped, written_whole
from answerable._reason import says_something
from answerable._tty import CONSOLES as _consoles
from answerable._tty import err as _err
from answerable._tty import out as _out
from answerable._tty import print_json as _json
from answerable._tty import printable as _printable
from answerable._tty import said as _said
from answerable._tty import say as _say
from answerable._urls import shown
from answerable.errors import (
    AnswerableError,
    ConfigError,
    LedgerTampered,
    NotAuthorized,
    SignatureInvalid,
)
from answerable.ledger.location import is_postgres_url, open_ledger

if TYPE_CHECKING:
    from typer.models import CommandInfo

    from answerable.keys import KeyPair
    from answerable.ledger import SQLLedger
    from answerable.records import Control, SystemCharter

__all__ = ["app", "main"]  # noqa: F822 (app is served by the module's __getattr__, plugins loaded)

_app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
    add_completion=False,
    help="Run multi-agent systems that stay attributable, observable and interruptible: "
    "verify and prove the ledger, halt, pause and resume, answer reviews, ask why.",
)
ledger_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="Inspect, export and prove a ledger."
)
demo_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="Run the demonstrations.")
rules_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="Check Cedar rulesets.")
keys_app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Make and inspect the key files people and agents sign with.",
)
_app.add_typer(ledger_app, name="ledger")
_app.add_typer(rules_app, name="rules")
_app.add_typer(demo_app, name="demo")
_app.add_typer(keys_app, name="keys")
charter_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="Amend the charter: add, rotate or revoke keys."
)
_app.add_typer(charter_app, name="charter")
receipt_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="Check the receipts governed calls carry."
)
_app.add_typer(receipt_app, name="receipt")
users_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="Accounts of the web console ([console] users)."
)
_app.add_typer(users_app, name="users")

T = TypeVar("T")

LedgerArg = typer.Argument(
    ..., help="The ledger: an SQLite file, or a postgresql:// URL naming its schema (no password)."
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout.")
ForceOpt = typer.Option(False, "--force", help="Replace the --out file if it exists.")


def _fail(exc: AnswerableError) -> NoReturn:
    raise typer.Exit(_said(exc))


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except AnswerableError as exc:
        _fail(exc)


def _key_given(flag: str, parse: Callable[[str], T], text: str) -> T:
    """A public key typed on the command line, parsed. A malformed one (or one of another kind) is
    a usage error, exit 2, not the "no" of a signature that does not verify (exit 1)."""
    try:
        return parse(text)
    except SignatureInvalid as exc:
        _fail(ConfigError(f"{flag}: {exc}"))


def _async(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end; asyncio is imported here, not at start-up, which a halt pays."""
    import asyncio

    return asyncio.run(work)


@contextlib.contextmanager
def _open(target: str) -> Iterator[SQLLedger]:
    """The ledger a user named: a file or a postgresql:// URL, open for the ``with`` body; every
    failure is one line, in opening it or in any read of it there (a page of a corrupt file
    is found only when it is read: that was a traceback from ``ledger prove`` and others)."""
    store = _run(lambda: open_ledger(target))
    with store:
        try:
            yield store
        except AnswerableError as exc:
            _fail(exc)


def _announced(say: Callable[[int], str], config: Any) -> Any:
    """A uvicorn server that prints ``say(port)`` once it listens, and not before: the line
    scripts and tests wait for (with ``--port 0``, the port the system gave)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                bound = [s.getsockname()[1] for server in self.servers for s in server.sockets]
                _err().print(say(bound[0] if bound else config.port), markup=False)

    return Server(config)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@_app.command()
def verify(
    ledger: str = LedgerArg,
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="An earlier checkpoint the ledger must still be consistent with."
    ),
    key: str | None = typer.Option(
        None,
        "--key",
        metavar="VKEY",
        help="The verifier key `answerable ledger key` printed, kept outside the ledger: the ledger's "
        "key must be it, and a checkpoint it signed must cover every entry.",
    ),
    witness: Path | None = typer.Option(
        None,
        "--witness",
        metavar="DIR",
        help="A folder of witnessed checkpoints (a witness's --state): the ledger must still have "
        "the root each one witnessed, which catches a rewrite even by whoever holds the signing key.",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Recompute every entry, blob, tree node and checkpoint; exit 1 naming the first bad entry.

    Without --key or --checkpoint the answer is self-consistency only: a history rewritten with a
    rebuilt tree and a fresh key passes too.
    """
    cp_text = _read_checkpoint(checkpoint) if checkpoint else None
    trust, note = _trust(key, checkpoint)
    witnessed = 0
    with _open(ledger) as store:
        try:
            report = store.verify(cp_text, key=key)
            if witness is not None:
                from answerable.ledger.note import Verifier
                from answerable.ledger.witness import check_witnessed

                witnessed = check_witnessed(store, witness, Verifier.from_key(key or store.verifier_key()))
        except LedgerTampered as exc:
            if as_json:
                _json(
                    {"ok": False, "error": str(exc), "index": exc.index, "id": exc.entry_id, "trust": trust}
                )
            _fail(exc)
        except AnswerableError as exc:
            _fail(exc)
    if as_json:
        _json(
            {
                "ok": True,
                "size": report.size,
                "root": _b64(report.root),
                "checkpoints": report.checkpoints_checked,
                "trust": trust,
                "trust_note": note,
                "key": key.strip() if key else None,
                "witnessed": witnessed,
            }
        )
    else:
        _out().print(
            f"ok: {report.size} entries, root {_b64(report.root)}, "
            f"{report.checkpoints_checked} stored checkpoint(s) verified"
            + (f", consistent with {checkpoint}" if checkpoint else "")
            + (f", {witnessed} witnessed checkpoint(s) in {witness} hold" if witness is not None else "")
        )
        _out().print(f"trust: {note}", markup=False)


def _trust(key: str | None, checkpoint: Path | None) -> tuple[str, str]:
    """What a passing verify vouches for, given what came from outside the ledger: label and sentence."""
    if key:
        return "pinned-key", "every entry is covered by a checkpoint signed with the pinned key"
    if checkpoint:
        return (
            "checkpoint",
            f"the entries {checkpoint} covers are the ones signed then; later entries are "
            "self-consistent only (pin the key with --key to cover them)",
        )
    return (
        "self-consistency-only",
        "self-consistency only: nothing outside the database vouches for it, and a history rewritten "
        "with a rebuilt tree and a fresh key would pass too; pin the key with --key VKEY (as "
        "`answerable ledger key` printed it, kept elsewhere) or give an earlier --checkpoint",
    )


def _read_checkpoint(path: Path) -> str:
    try:
        return _input(path).decode("utf-8")
    except OSError as exc:
        _fail(ConfigError(f"cannot read checkpoint {path}: {exc.strerror}"))
    except UnicodeDecodeError:
        _fail(ConfigError(f"checkpoint {path} is not text: give a file `answerable ledger checkpoint` wrote"))


@ledger_app.command("checkpoint")
def ledger_checkpoint(
    ledger: str = LedgerArg,
    out_file: Path | None = typer.Option(None, "--out", help="Also write the checkpoint to this file."),
    force: bool = ForceOpt,
) -> None:
    """Sign a checkpoint of the ledger as it is now and print it (C2SP tlog-checkpoint)."""
    if out_file:
        _out_file(out_file, force)  # before signing: a refused --out stores no checkpoint
    with _open(ledger) as store:
        note = _run(store.checkpoint)
    if out_file:
        _write(out_file, note.encode("utf-8"))
    sys.stdout.write(note)


@ledger_app.command("key")
def ledger_key(ledger: str = LedgerArg, as_json: bool = JsonOpt) -> None:
    """Print the ledger's verifier key (name+hash+base64) for checking its checkpoints."""
    with _open(ledger) as store:
        key, origin = store.verifier_key(), store.origin
    if as_json:
        _json({"verifier_key": key, "origin": origin})
    else:
        sys.stdout.write(key + "\n")


@ledger_app.command("export")
def ledger_export(
    ledger: str = LedgerArg,
    out_file: Path = typer.Option(..., "--out", help="Where to write the JSON Lines."),
    force: bool = ForceOpt,
) -> None:
    """Write every entry, in index order, as the exact canonical bytes hashed as its leaf."""
    _out_file(out_file, force)
    with _open(ledger) as store:
        try:
            with written_whole(out_file) as handle:
                size, batch = store.size(), 10_000
                for start in range(0, size, batch):
                    for entry in store.entries(start, min(size, start + batch)):
                        handle.write(entry.data + b"\n")
        except OSError as exc:
            _fail(ConfigError(f"cannot write {out_file}: {exc.strerror}"))
        except AnswerableError as exc:  # a damaged page met halfway: the --out file is as it was
            _fail(exc)
    _err().print(f"wrote {size} entries to {out_file}")


@ledger_app.command("publish")
def ledger_publish(
    ledger: str = LedgerArg,
    out_dir: Path = typer.Option(
        ..., "--out", metavar="DIR", help="The folder of the published log (made if absent)."
    ),
    hashes_only: bool = typer.Option(
        False, "--hashes-only", help="Publish the checkpoint and hash tiles only, not the entries."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Sign a checkpoint and publish the log as a static C2SP tlog-tiles tree any tlog client audits.

    Entry bundles carry every call's arguments: with --hashes-only only the checkpoint and
    the hash tiles are written, which prove inclusion of entries held elsewhere.
    """
    from answerable.ledger.tiles import publish

    if out_dir.exists() and not out_dir.is_dir():
        _fail(ConfigError(f"--out {out_dir} is a file; give a folder"))
    with _open(ledger) as store:
        done = _run(lambda: publish(store, out_dir, hashes_only=hashes_only))
        key = store.verifier_key()
    doc = {
        "size": done.size,
        "root": _b64(done.root),
        "written": done.written,
        "removed": done.removed,
        "entries": done.entries,
        "verifier_key": key,
        "out": str(out_dir),
    }
    if as_json:
        _json(doc)
    else:
        what = "checkpoint, hash tiles and entry bundles" if done.entries else "checkpoint and hash tiles"
        _out().print(f"published {done.size} entries to {out_dir} ({what}; {done.written} files written)")
        _out().print(f"audit with the verifier key {key}", markup=False)


@ledger_app.command("witness")
def ledger_witness(
    ledger: str = LedgerArg,
    url: str = typer.Option(..., "--url", help="The witness's submission prefix (http://127.0.0.1:7380)."),
    witness_key: str = typer.Option(..., "--witness", metavar="VKEY", help="The witness's verifier key."),
    out_file: Path | None = typer.Option(None, "--out", help="Also write the cosigned checkpoint here."),
    force: bool = ForceOpt,
) -> None:
    """Sign a checkpoint and have a C2SP tlog-witness cosign it; print the cosigned checkpoint.

    The witness cosigns only if the ledger extends the last checkpoint it cosigned for this log,
    so a rewritten history is refused (exit 1) whoever holds the ledger's signing key.
    """
    from answerable._urls import problem as url_problem
    from answerable.ledger.note import checkpoint_size
    from answerable.ledger.witness import CosignatureVerifier, request_cosignature

    if out_file:
        _out_file(out_file, force)
    verifier = _key_given("--witness", CosignatureVerifier.from_key, witness_key)
    problem = url_problem(url)  # before a checkpoint is signed for it: a typo changes nothing
    if problem is not None:
        _fail(ConfigError(f"--url (the witness): {problem}"))
    with _open(ledger) as store:
        signed = _run(store.checkpoint)
        size = _run(lambda: checkpoint_size(signed))
        cosigned = _run(
            lambda: request_cosignature(signed, url, verifier, lambda old: store.consistency_proof(old, size))
        )
    if out_file:
        _write(out_file, cosigned.encode("utf-8"))
    sys.stdout.write(cosigned)


@ledger_app.command("backup")
def ledger_backup(
    ledger: str = LedgerArg,
    out_file: Path = typer.Option(..., "--out", help="The copy to create (a new file)."),
) -> None:
    """Copy a live ledger consistently (SQLite's backup API); the copy verifies with the same root."""
    from answerable.ledger import SQLiteLedger

    _out_file(out_file, force=False)
    with _open(ledger) as store:
        if not isinstance(store, SQLiteLedger):
            _fail(ConfigError("ledger backup copies an SQLite file; use `answerable ledger copy SRC DST`"))
        size = _run(lambda: store.backup(out_file))
        root = _b64(store.root(size))
    _err().print(f"copied {size} entries to {out_file} (root {root}); its signing key stays where it is")


@ledger_app.command("copy")
def ledger_copy(
    source: str = typer.Argument(..., help="The ledger to copy: a file or a postgresql:// URL."),
    target: str = typer.Argument(
        ..., help="Where the copy goes: a new file, or a postgresql:// URL whose schema holds no ledger."
    ),
    signing_key: Path | None = typer.Option(
        None, "--signing-key", help="Where to keep the copy's signing key (default: the backend's place)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Move a ledger between backends: the same bytes, roots, checkpoints and verifier key."""
    from answerable.ledger.copy import copy_ledger

    with _open(source) as store:
        report = _run(lambda: copy_ledger(store, target, signing_key=signing_key))
    doc = {
        "size": report.size,
        "root": _b64(report.root),
        "checkpoints": report.checkpoints,
        "target": report.target,
        "signing_key": report.key_path,
    }
    if as_json:
        _json(doc)
        return
    key = (
        f"its signing key is {report.key_path}"
        if report.key_path
        else "the source had no signing key to carry"
    )
    _err().print(
        f"copied {report.size} entries and {report.checkpoints} checkpoints to {report.target}; "
        f"root {doc['root']} on both; {key}"
    )


@ledger_app.command("prove")
def ledger_prove(
    ledger: str = LedgerArg,
    index: int = typer.Option(..., "--index", help="Leaf index to prove."),
    size: int | None = typer.Option(None, "--size", help="Tree size (default: the current size)."),
    as_json: bool = JsonOpt,
) -> None:
    """Print an inclusion proof of entry INDEX in the tree of SIZE entries."""
    with _open(ledger) as store:
        n = size if size is not None else store.size()
        proof = _run(lambda: store.inclusion_proof(index, n))
        leaf = _run(lambda: store.entry(index))
        doc = {
            "leaf_index": index,
            "tree_size": n,
            "leaf_hash": _b64(_leaf_hash(leaf.data)),
            "proof": [_b64(p) for p in proof],
            "root": _b64(store.root(n)),
        }
    _print_doc(doc, as_json)


@ledger_app.command("prove-consistency")
def ledger_prove_consistency(
    ledger: str = LedgerArg,
    size1: int = typer.Option(..., "--from", help="The older tree size."),
    size2: int = typer.Option(..., "--to", help="The newer tree size."),
    as_json: bool = JsonOpt,
) -> None:
    """Print a consistency proof that the first SIZE1 entries are a prefix of the first SIZE2."""
    with _open(ledger) as store:
        proof = _run(lambda: store.consistency_proof(size1, size2))
        doc = {
            "size1": size1,
            "size2": size2,
            "proof": [_b64(p) for p in proof],
            "root1": _b64(_run(lambda: store.root(size1))),
            "root2": _b64(_run(lambda: store.root(size2))),
        }
    _print_doc(doc, as_json)


def _print_doc(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _json(doc)
        return
    for key, value in doc.items():
        _out().print(f"{key}: {value}")


def _leaf_hash(data: bytes) -> bytes:
    from answerable.ledger import leaf_hash

    return leaf_hash(data)


ByOpt = typer.Option(..., "--by", help="Who you are (recorded as given).")
ReasonOpt = typer.Option(..., "--reason", help="Why (recorded).")
ScopeOpt = typer.Option(
    stops.DEFAULT_SCOPE,
    "--scope",
    help="system, agent:NAME, operation:NAME, resource_class:NAME or channel:TOPIC (its messages).",
)


@_app.command()
def halt(
    ledger: str = LedgerArg,
    by: str = ByOpt,
    reason: str = ReasonOpt,
    scope: str = ScopeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Halt at once; no intent recorded after this runs. Only the RI can resume a halt."""
    _control(ledger, "halt", by, reason, scope, None, as_json)


@_app.command()
def pause(
    ledger: str = LedgerArg,
    by: str = ByOpt,
    reason: str = ReasonOpt,
    scope: str = ScopeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Pause at once; an operator or the RI can resume."""
    _control(ledger, "pause", by, reason, scope, None, as_json)


@_app.command()
def resume(
    ledger: str = LedgerArg,
    by: str = ByOpt,
    reason: str = ReasonOpt,
    scope: str = ScopeOpt,
    key: Path = typer.Option(..., "--key", help="Your key file: resuming must be proven."),
    as_json: bool = JsonOpt,
) -> None:
    """Resume a scope; needs a person the charter authorizes, signing with their key."""
    _control(ledger, "resume", by, reason, scope, key, as_json)


def _control(
    ledger: str, action: str, by: str, reason: str, scope_text: str, key_file: Path | None, as_json: bool
) -> None:
    if action in stops.STOPS:  # the same code as the halt parsed without typer (answerable._entry)
        control, warning = _run(lambda: stops.record(ledger, action, by, reason, scope_text))
        stops.report(control, as_json, warning)
        return
    from answerable.control import Controller, scope_from_text

    scope = _run(lambda: scope_from_text(scope_text))
    with _open(ledger) as store:
        controller = Controller(store)

        def act() -> Control:
            if key_file is None:
                raise ConfigError("resume needs --key: starting again must be proven")
            from answerable.keys import KeyPair

            key = KeyPair.load(key_file)
            if key.identity != by:
                raise NotAuthorized(f"--by {by!r} but the key file belongs to {key.identity!r}", who=by)
            return _async(controller.resume(key=key, reason=reason, scope=scope))

        control = _run(act)
    stops.report(control, as_json)


@_app.command()
def reviews(
    ledger: str = LedgerArg,
    everything: bool = typer.Option(False, "--all", help="Also list settled reviews."),
    review_id: str | None = typer.Option(None, "--id", help="Show this one review whole."),
    as_json: bool = JsonOpt,
) -> None:
    """List open reviews (waiting for a person): what, why, who is asked, until when.

    --all lists every review with its state: open, reopened (an approval expired unused),
    approved (not yet claimed), claimed, denied or expired. Ids and arguments are printed
    whole, whatever the width of the terminal.
    """
    from answerable.clock import IdSource, SystemClock
    from answerable.review import ReviewQueue

    with _open(ledger) as store:
        queue = ReviewQueue(store, clock=SystemClock(), ids=IdSource())
        states = _run(queue.all if everything or review_id else queue.open)
    rows: list[dict[str, Any]] = [s.to_json() for s in states]
    if review_id is not None:
        rows = [r for r in rows if r["review_id"] == review_id]
        if not rows:
            _fail(ConfigError(f"[unknown_review] the ledger holds no review {review_id}"))
    if as_json:
        _json(rows[0] if review_id is not None else rows)
        return
    if review_id is None:
        _out().print(f"{len(rows)} review(s)")

    def line(text: str) -> None:  # recorded text, anyone's: printed escaped, never as markup
        _out().print(_printable(text), markup=False)

    for row in rows:
        line(f"review {row['review_id']} [{row['state']}]")
        line(f"  {row['agent']} proposes {row['operation']} {_compact(row['arguments'])}")
        line(f"  why: {_text(row['reasons'])} (policies: {_text(row['policy_ids'])})")
        line(f"  asked: {row['assignee']}; approvals {row['approvals']}; expires {row['expires_at']}")
        if review_id is not None:
            line(f"  intent: {row['intent_id']}; resolution: {row['resolution']}")
            for answer in row["answers"]:
                line(f"  {answer['verdict']} by {answer['by']} at {answer['at']}: {answer['reason']}")


def _compact(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _text(value: Any) -> str:
    """A recorded value as one printable line (see ``_tty.printable``): the ledger holds anyone's text."""
    return _printable("; ".join(map(str, value)) if isinstance(value, list) else str(value))


SimulatedOpt = typer.Option(
    False, "--simulated", help="The answer is a modelled person's, as the charter marks them (a scenario)."
)


@_app.command()
def approve(
    ledger: str = LedgerArg,
    review_id: str = typer.Argument(..., help="The review to answer."),
    by: str = ByOpt,
    reason: str = ReasonOpt,
    key: Path = typer.Option(..., "--key", help="Your key file: the answer is signed with it."),
    simulated: bool = SimulatedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Approve a review, signed; the running system executes the intent once the review is settled."""
    _answer(ledger, review_id, "approve", by, reason, key, as_json, simulated=simulated)


@_app.command()
def deny(
    ledger: str = LedgerArg,
    review_id: str = typer.Argument(..., help="The review to answer."),
    by: str = ByOpt,
    reason: str = ReasonOpt,
    key: Path = typer.Option(..., "--key", help="Your key file: the answer is signed with it."),
    simulated: bool = SimulatedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Deny a review, signed; the intent will not run."""
    _answer(ledger, review_id, "deny", by, reason, key, as_json, simulated=simulated)


def _answer(
    ledger: str,
    review_id: str,
    verdict: str,
    by: str,
    reason: str,
    key_file: Path,
    as_json: bool,
    *,
    simulated: bool = False,
) -> None:
    from answerable.clock import IdSource, SystemClock
    from answerable.keys import KeyPair
    from answerable.review import ReviewQueue

    if not says_something(reason):  # a usage error, as for halt and resume: exit 2, before anything is read
        _fail(ConfigError("--reason is blank: an answer to a review needs a reason, with a visible sign"))
    key = _run(lambda: KeyPair.load(key_file))
    if key.identity != by:
        _fail(NotAuthorized(f"--by {by!r} but the key file belongs to {key.identity!r}", who=by))
    with _open(ledger) as store:
        queue = ReviewQueue(store, clock=SystemClock(), ids=IdSource())
        approval = _run(
            lambda: queue.approval(review_id, key=key, verdict=verdict, reason=reason, simulated=simulated)
        )
        state = _run(lambda: _async(queue.submit(approval)))
    status = state.status
    if as_json:
        _json({"id": approval.id, "verdict": verdict, "review_id": review_id, "by": by, "state": status})
        return
    _say(f"{verdict} recorded: {approval.id} on review {review_id} by {by}; review is {status}")


@rules_app.command("diff")
def rules_diff(
    old: str = typer.Argument(..., help="Old policies file, or a ruleset version number with --ledger."),
    new: str = typer.Argument(..., help="New policies file, or a ruleset version number with --ledger."),
    ledger: str | None = typer.Option(
        None, "--ledger", help="Read the two versions from this ledger (a file or a postgresql:// URL)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Show which policies were added, removed or changed between two ruleset versions."""
    if ledger is not None:
        from answerable.records import RulesetVersion, decode_entry

        with _open(ledger) as store:
            versions = {}
            for stored in store.of_kind("RulesetVersion"):
                record = decode_entry(stored.data)
                if isinstance(record, RulesetVersion):
                    versions[str(record.version)] = record.policies
        missing = [v for v in (old, new) if v not in versions]
        if missing:
            _fail(ConfigError(f"ledger has no ruleset version {missing[0]}; it has {sorted(versions)}"))
        before, after = versions[old], versions[new]
    else:
        before, after = _read(Path(old)), _read(Path(new))
    from answerable.policy import diff_policies  # Cedar: imported by the commands that use it

    changes = _run(lambda: diff_policies(before, after))
    if as_json:
        _json(changes)
        return
    for kind in ("added", "removed", "changed"):
        for item in changes[kind]:
            _out().print(f"[bold]{kind}[/bold] {item['id']}", markup=True)
            for line in item.get("diff", []):
                _out().print(f"  {line}", markup=False)
    if not any(changes.values()):
        _out().print("no change")


@rules_app.command("export")
def rules_export(
    ledger: str = LedgerArg,
    version: int | None = typer.Option(
        None,
        "--version",
        min=1,
        help="The recorded version number (default: the one in force at the end, the last the RI signed).",
    ),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write policies.cedar and the schema into."),
    force: bool = typer.Option(False, "--force", help="Replace the files if the folder holds them."),
) -> None:
    """Write a ruleset the ledger records, byte for byte as the RI signed it: policies.cedar and
    schema.cedarschema (schema.json for a JSON schema), to edit and judge with `answerable replay`."""
    from answerable.replay import recorded_ruleset, write_ruleset

    with _open(ledger) as store:
        record = _run(lambda: recorded_ruleset(store, version))
    if out_dir.exists() and not out_dir.is_dir():
        _fail(ConfigError(f"--out {out_dir} is a file; name a folder"))
    there = [
        p.name for p in (out_dir / "policies.cedar", out_dir / "schema.cedarschema", out_dir / "schema.json")
    ]
    held = [name for name in there if (out_dir / name).exists()]
    if held and not force:
        _fail(ConfigError(f"{out_dir} already holds {', '.join(held)}; pass --force to replace"))
    for name in there:
        _never_over_a_ledger(out_dir / name, named=f"--out {out_dir}: its")
    policies, schema = _run(lambda: write_ruleset(record, out_dir))
    _out().print(
        f"wrote ruleset version {record.version}, signed by {record.approved_by}, to {policies} and {schema}",
        markup=False,
    )


@rules_app.command("check")
def rules_check(
    policies: Path = typer.Argument(..., help="Cedar policies file."),
    schema: Path = typer.Option(
        ..., "--schema", help="Cedar schema file (Cedar schema text, or its JSON format)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Parse the policies and validate them against the schema; exit 2 naming each error."""
    from answerable.policy import load_ruleset

    ruleset = _run(lambda: load_ruleset(_read(policies), _read(schema)))
    if as_json:
        _json(
            {
                "ok": True,
                "policies": sorted(ruleset.annotations),
                "review": sorted(ruleset.review),
                "ruleset_hash": ruleset.ruleset_hash,
                "schema_hash": ruleset.schema_hash,
            }
        )
        return
    _out().print(
        f"ok: {len(ruleset.annotations)} policies ({len(ruleset.review)} route to review), "
        f"ruleset hash {ruleset.ruleset_hash}"
    )


@rules_app.command("sign")
def rules_sign(
    config_file: Path = typer.Argument(..., help="The system's answerable.toml: its [rules] files."),
    key_file: Path = typer.Option(..., "--key", help="The RI's key file."),
) -> None:
    """Sign the config's Cedar policies and schema as the RI: the next version of [rules] signed,
    which answerable serve puts in force when it starts (and records in the ledger)."""
    from answerable.charter import new_ruleset
    from answerable.config import load_config
    from answerable.keys import KeyPair

    config = _run(lambda: load_config(config_file))
    key = _run(lambda: KeyPair.load(key_file))
    charter_doc = _run(lambda: _json_file(config.charter))
    if charter_doc.get("ri") != key.identity:
        _fail(
            ConfigError(
                f"--key: {key.identity!r} is not the RI the charter names ({charter_doc.get('ri')!r})"
            )
        )
    version = 1
    if config.ruleset.exists():
        before = _run(lambda: _json_file(config.ruleset))
        if before.get("kind") != "RulesetVersion":  # it is written over: never another kind of file
            _fail(
                ConfigError(
                    f"{config.ruleset.name}: [rules] signed holds no signed ruleset; not written over"
                )
            )
        old = before.get("version")
        if not isinstance(old, int) or isinstance(old, bool) or old < 1:
            _fail(ConfigError(f"{config.ruleset.name}: its version is {old!r}, not a number from 1"))
        version = old + 1
    signed = _run(lambda: new_ruleset(_read(config.policies), _read(config.schema), key, version=version))
    _write(config.ruleset, orjson.dumps(signed.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n")
    _out().print(
        f"signed ruleset v{version} as {key.identity}: {config.ruleset.name} "
        f"(restart answerable serve to put it in force)",
        markup=False,
    )


def _json_file(path: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(_input(path))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: want a JSON object")
    return doc


def _read(path: Path) -> str:
    try:
        return _input(path).decode("utf-8")
    except OSError as exc:
        _fail(ConfigError(f"cannot read {path}: {exc.strerror}"))
    except UnicodeDecodeError as exc:
        _fail(ConfigError(f"{path} is not UTF-8 text (byte {exc.start}): give a text file"))


def _input(path: Path) -> bytes:
    """The bytes of a file a command was given (see ``_files.read_capped``): OSError with its
    reason, which each caller says in its own words."""
    return read_capped(path, MAX_INPUT)


def _out_file(path: Path, force: bool, *, makes_folder: bool = False) -> Path:
    """``path`` as a file to write, checked before anything is done: its folder exists (unless
    the command makes it), and it is not there already unless ``force`` says to replace it."""
    if path.is_dir():
        _fail(ConfigError(f"--out {path} is a folder; give a file name"))
    nearest = next((p for p in path.parents if p.exists()), None)
    if nearest is not None and not nearest.is_dir():  # making folders under it said "File exists"
        _fail(ConfigError(f"--out {path}: {nearest} is a file, not a folder"))
    if not makes_folder and not path.parent.is_dir():
        _fail(ConfigError(f"--out {path}: the folder {path.parent} does not exist"))
    if path.exists() and not force:
        _fail(ConfigError(f"--out {path} exists already; pass --force to replace it"))
    _never_over_a_ledger(path)
    if path.parent.is_dir():
        _can_write(path)
    return path


def _can_write(path: Path) -> None:
    """Fail now, not after the command stored something (a checkpoint signed, a witness's
    cosignature), when ``path`` cannot be written: a read-only folder, an immutable file, a
    read-only mount. Asks the file system itself, which ``os.access`` does not for root."""
    import os
    import tempfile

    try:
        if path.exists():
            with path.open("ab"):  # opened for writing, nothing written: the file is unchanged
                pass
        else:
            handle, probe = tempfile.mkstemp(dir=path.parent, prefix=".answerable-probe-")
            os.close(handle)
            os.unlink(probe)
    except OSError as exc:
        _fail(ConfigError(f"cannot write --out {path}: {exc.strerror}"))


def _never_over_a_ledger(path: Path, named: str = "--out") -> None:
    """Refuse, even with --force, to write over evidence or a key (see ``_files.never_written_over``)."""
    problem = never_written_over(path)
    if problem is not None:
        _fail(
            ConfigError(
                f"{named} {problem}; output is never written over a ledger or a key: give another file"
            )
        )


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        _fail(ConfigError(f"cannot write {path}: {exc.strerror}"))


@_app.command("init")
def init_command(folder: Path = typer.Argument(..., help="A new (or empty) folder for the system.")) -> None:
    """Write a small working system to edit: config, keys (mode 0600), a charter and ruleset
    signed by the RI, Cedar rules and schema, and an operations module; then serve it."""
    from answerable.scaffold import init

    written = _run(lambda: init(folder))
    _out().print(f"wrote {len(written)} files to {folder}", markup=False)
    _out().print(f"next:  answerable serve {folder / 'answerable.toml'}", markup=False)


@_app.command("serve")
def serve_command(
    config_file: Path = typer.Argument(..., help="The system's answerable.toml."),
    host: str | None = typer.Option(None, "--host", help="Listen here instead of [server] host."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Listen on this port instead of [server] port."
    ),
    wait_for_store: float = typer.Option(
        0.0,
        "--wait-for-store",
        min=0.0,
        help="Seconds to wait at start for a ledger database server that does not answer yet "
        "(a supervisor starting the service again after exit 75); by default say so at once.",
    ),
) -> None:
    """Run the gateway as a service: the HTTP API under /v1, reviews settled as they are
    answered (from the CLI too), checkpoints signed on an interval and at SIGTERM. Exits 75
    when it loses the ledger's lease (the database away for longer than the lease's ttl, or
    another gateway took over), to be started again."""
    import dataclasses
    import signal
    import socket

    import uvicorn

    from answerable.config import LOOPBACK, load_config, otlp_headers_problem
    from answerable.lease import exit_when_lost
    from answerable.service import Service, build_app

    config = _run(lambda: load_config(config_file))
    headers_problem = None if config.otel_endpoint is None else otlp_headers_problem()
    if headers_problem is not None:
        _fail(ConfigError(f"[otel] endpoint is set, but {headers_problem}"))
    if host is not None or port is not None:
        config = dataclasses.replace(
            config, host=host or config.host, port=config.port if port is None else port
        )
    if config.host not in LOOPBACK and (config.tls_cert is None or config.tls_key is None):
        _fail(
            ConfigError(
                f"--host {config.host}: listening beyond loopback needs [server] tls_cert and tls_key"
            )
        )
    try:
        probe = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((config.host, config.port))
        probe.close()
    except OSError as exc:
        _fail(ConfigError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}"))
    service = Service(config, wait_for_store=wait_for_store)

    served = build_app(service, lifespan=False)
    if config.console is not None:
        from answerable.console import mount_console

        mount_console(served, service)
    server = _announced(
        lambda port: f"answerable ready on {config.host}:{port}",
        uvicorn.Config(
            served,
            host=config.host,
            port=config.port,
            log_level="warning",
            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
            ssl_keyfile=str(config.tls_key) if config.tls_key else None,
            lifespan="off",
            timeout_graceful_shutdown=30,
        ),
    )

    async def main() -> None:
        # Started before uvicorn: a ledger held by another gateway or a charter that does not
        # match is one line and exit 2, with nothing listening yet.
        try:
            await service.start()
        except BaseException:
            await service.stop()
            raise
        server.config.ssl_keyfile_password = service.tls_password  # asked once, at start
        # Said once the system is loaded: a refused config is one line, not this and the error.
        _err().print(f"answerable serving {config.source} on {config.host}:{config.port}", markup=False)
        if service.gateway is not None:
            exit_when_lost(service.gateway.lease, "answerable serve")
        try:
            await server.serve()
        finally:
            await service.stop()

    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler it
    # found installed: this one, so a clean shutdown exits 0 instead of dying of the signal.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    _run(lambda: _async(main()))


@users_app.command("set-password")
def users_set_password(
    config_file: Path = typer.Argument(..., help="The system's answerable.toml: its [console] users file."),
    identity: str = typer.Argument(..., help="A person of the charter, or a [console] viewer."),
    key_file: Path | None = typer.Option(
        None, "--key", help="Their key file: stored sealed under the password, to sign in the console."
    ),
) -> None:
    """Set a console password, read from the first line of standard input (never an argument).
    With --key, the person's signing key is stored encrypted under it: they can answer reviews
    and resume in the console. The accounts file is written with mode 0600."""
    from pydantic import ValidationError

    from answerable.config import ConsoleConfig, load_config
    from answerable.console.accounts import MIN_PASSWORD, set_password
    from answerable.keys import KeyPair
    from answerable.records import SystemCharter, summary

    config = _run(lambda: load_config(config_file))
    console = config.console or ConsoleConfig(users=config.folder / "console-users.json")
    text = _read(config.charter)
    try:
        charter = SystemCharter.model_validate_json(text)
    except ValidationError as exc:
        _fail(ConfigError(f"{config.charter.name} is not a signed SystemCharter: {summary(exc)}"))
    person = charter.person(identity)
    if person is None and identity not in console.viewers:
        _fail(
            ConfigError(
                f"{identity!r} is neither a person of the charter "
                f"nor a [console] viewer of {config_file.name}"
            )
        )
    key = None
    if key_file is not None:
        key = _run(lambda: KeyPair.load(key_file))
        if key.identity != identity:
            _fail(ConfigError(f"--key: the key file belongs to {key.identity!r}, not {identity!r}"))
        if person is None or person.public_key != key.public_b64:
            _fail(ConfigError(f"--key: the charter holds another key for {identity!r} (or none)"))
    if sys.stdin.isatty():  # typed at a terminal: not echoed
        import getpass

        line = getpass.getpass("password: ")
    else:
        try:
            line = sys.stdin.readline(1026).rstrip("\r\n")  # no further: /dev/zero has no line end
        except UnicodeDecodeError:
            line = "\udcff"  # said below, as for undecodable bytes passed through
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        _fail(ConfigError("the password is not UTF-8 text"))
    if not line:
        _fail(ConfigError("give the password on the first line of standard input"))
    if len(line) < MIN_PASSWORD:
        _fail(ConfigError(f"the password must have at least {MIN_PASSWORD} characters"))
    if len(line) > 1024:  # the log-in takes no longer ones
        _fail(ConfigError("the password must have at most 1024 characters"))
    _run(lambda: set_password(console.users, identity, line, key))
    held = "and their signing key, sealed under it" if key is not None else "(no signing key: reads only)"
    _say(f"password set for {identity} {held} in {console.users.name}")


@_app.command("agent")
def agent_command(
    config_file: Path = typer.Argument(..., help="The system's answerable.toml."),
    name: str = typer.Argument(..., help="The agent to run: its [agents.NAME] table."),
) -> None:
    """Run one agent as its own process: it hears its topics on NATS ([nats] url) and speaks
    through the service (answerable serve) with its own key. Several may run with one NAME:
    they share the work. SIGTERM stops it; what it was handling comes again elsewhere."""
    from answerable.config import load_config
    from answerable.remote import run_agent

    config = _run(lambda: load_config(config_file))
    _run(lambda: _async(run_agent(config, name)))


@_app.command("nats-config")
def nats_config_command(
    config_file: Path = typer.Argument(..., help="The system's answerable.toml, with [nats] key set."),
    out_file: Path | None = typer.Option(None, "--out", help="Also write the block to this file."),
    force: bool = ForceOpt,
) -> None:
    """Print the nats-server authorization block for this system: the service and each agent log
    in with their own keys (NKEY); an agent may pull only the topics the charter's coordination
    contract lets it hear, and publish on none. Creates the service's key ([nats] key) if absent."""
    from pydantic import ValidationError

    from answerable.bus.auth import authorization
    from answerable.config import load_config
    from answerable.keys import KeyPair
    from answerable.records import SystemCharter, summary

    config = _run(lambda: load_config(config_file))
    if config.nats_key is None:
        _fail(ConfigError(f"{config.source.name}: set [nats] key (the service's key file) first"))
    key_file = config.nats_key
    # The key is made only once everything else is known to be fine: a refusal leaves no file.
    made = None if key_file.exists() else KeyPair.generate("answerable-service")
    service = made or _run(lambda: KeyPair.load(key_file))
    try:
        charter = SystemCharter.model_validate_json(_input(config.charter))
    except OSError as exc:
        _fail(ConfigError(f"cannot read {config.charter}: {exc.strerror or exc}"))
    except ValidationError as exc:
        _fail(ConfigError(f"{config.charter}: not a charter: {summary(exc)}"))
    text = _run(lambda: authorization(charter, service.public_b64))
    if out_file is not None:
        _out_file(out_file, force)
        if out_file.resolve() == key_file.resolve():
            _fail(ConfigError(f"--out {out_file} is the service's NATS key ([nats] key): give another file"))
    if made is not None:
        _run(lambda: made.save(key_file, replace=False))
        _err().print(f"made the service's NATS key {key_file} (mode 0600)", markup=False)
    if out_file is not None:
        _write(out_file, text.encode("utf-8"))
    sys.stdout.write(text)


@_app.command("witness")
def witness_command(
    key_file: Path = typer.Option(..., "--key", help="The witness's key file (`answerable keys new`)."),
    state: Path = typer.Option(
        ..., "--state", metavar="DIR", help="Folder where the witness keeps what it cosigned."
    ),
    logs: list[str] = typer.Option(..., "--log", metavar="VKEY", help="Verifier key of a log it witnesses."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback only)."),
    port: int = typer.Option(7380, "--port", min=0, max=65535, help="Port to listen on."),
) -> None:
    """Run a C2SP tlog-witness: POST /add-checkpoint cosigns a checkpoint of a known log only
    after a valid consistency proof from the last one it cosigned for that log."""
    import signal
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from answerable.keys import KeyPair
    from answerable.ledger.note import Verifier
    from answerable.ledger.witness import Cosigner, Witness

    if host not in ("127.0.0.1", "::1", "localhost"):
        _fail(ConfigError(f"--host {host}: the witness listens on loopback only (put a TLS proxy in front)"))
    key = _run(lambda: KeyPair.load(key_file))
    verifiers = [_key_given("--log", Verifier.from_key, v) for v in logs]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/add-checkpoint":
                self._reply(404, "text/plain; charset=utf-8", "POST /add-checkpoint\n")
                return
            declared = self.headers.get("Content-Length") or ""
            if not declared.isdigit() or int(declared) > 1 << 16:
                self._reply(411, "text/plain; charset=utf-8", "want a Content-Length from 0 to 65536\n")
                return
            try:
                reply = witness.add_checkpoint(self.rfile.read(int(declared)), int(time.time()))
            except Exception as exc:  # answer, never drop the connection with a traceback
                self._reply(500, "text/plain; charset=utf-8", f"{type(exc).__name__}\n")
                return
            self._reply(reply.status, reply.content_type, reply.body)

        def _reply(self, status: int, content_type: str, body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            _err().print(f"witness: {self.address_string()} {format % args}", markup=False)

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        _fail(ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}"))
    try:  # its state folder is made once it can listen: a refusal leaves none behind
        witness = _run(lambda: Witness(Cosigner(key.identity, key.private), verifiers, state))
    except BaseException:
        server.server_close()
        raise
    _err().print(
        f"witness {key.identity} listening on http://{host}:{server.server_address[1]}/ for "
        f"{len(verifiers)} log(s); its key: {witness.cosigner.vkey()}",
        markup=False,
    )

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@keys_app.command("new")
def keys_new(
    identity: str = typer.Argument(
        ..., help="Who the key is for, as the charter names them (ri@example.com)."
    ),
    out_file: Path = typer.Option(
        ..., "--out", help="The key file to create (mode 0600; never written over)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Make a new Ed25519 key file and print its public key, which the charter lists."""
    from answerable.keys import KeyPair, identity_problem

    problem = identity_problem(identity)
    if problem is not None:
        _fail(ConfigError(f"identity {identity!r} {problem}"))
    if out_file.exists():
        _fail(ConfigError(f"--out {out_file} exists already; a key file is never written over"))
    _out_file(out_file, force=False)
    key = KeyPair.generate(identity)
    _run(lambda: key.save(out_file, replace=False))
    _print_key(key, out_file, as_json)


@keys_app.command("show")
def keys_show(
    key_file: Path = typer.Argument(..., help="A key file made by `answerable keys new`."),
    as_json: bool = JsonOpt,
) -> None:
    """Print whose key a file holds and its public key (never the private key)."""
    from answerable.keys import KeyPair

    _print_key(_run(lambda: KeyPair.load(key_file)), key_file, as_json)


def _print_key(key: KeyPair, path: Path, as_json: bool) -> None:
    if as_json:
        _json({"identity": key.identity, "public_key": key.public_b64, "file": str(path)})
    else:
        _out().print(_printable(f"{key.identity} {key.public_b64} ({path})"), markup=False)


def _public_key(text: str, where: str) -> str:
    """A public key given as base64, or as a key file of which only the public half is read."""
    from answerable.keys import KeyPair

    candidate = Path(text)
    try:
        is_file = candidate.is_file()
    except OSError:  # a name no file system takes (too long): not a file; then it may be a key
        is_file = False
    if is_file:
        return _run(lambda: KeyPair.load(candidate)).public_b64
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        _fail(  # the text is not echoed: given where a public key belongs, it is often the private one
            ConfigError(
                f"{where}: the value given ({len(text)} characters, not shown) is neither a key file nor a "
                "base64 Ed25519 public key"
            )
        )
    return text


def _pairs(values: list[str], option: str) -> dict[str, str]:
    found = {}
    for value in values:
        name, sep, key = value.partition("=")
        if not sep or not name or not key:
            _fail(  # not echoed: a private key pasted alone ends in "=", and would be printed back
                ConfigError(
                    f"{option}: the value given ({len(value)} characters, not shown) is not NAME=KEY "
                    "(a key file or a base64 public key)"
                )
            )
        found[name] = _public_key(key, f"{option} {name}")
    return found


def _signed_with(charter: SystemCharter, ri: KeyPair, path: Path) -> None:
    """Refuse to amend a charter file the RI's key did not sign as it stands: the amendment's
    signature would vouch for whatever was changed in it since (a key swapped in, say).

    Raises:
        SignatureInvalid: the file's signature does not verify with ``ri``'s key.
    """
    from answerable.errors import SignatureInvalid
    from answerable.keys import verify_signature
    from answerable.records import signing_bytes

    if ri.identity != charter.ri:
        return  # amend_charter names who may amend
    try:
        verify_signature(ri.public_b64, charter.signature, signing_bytes(charter), who=ri.identity)
    except SignatureInvalid as exc:
        raise SignatureInvalid(
            f"{path} was not signed with {ri.identity}'s key as it stands: it was changed since it was "
            f"signed (or signed by the RI before a handover); nothing is amended ({exc})"
        ) from exc


@charter_app.command("amend")
def charter_amend(
    charter_file: Path = typer.Argument(
        ..., metavar="CHARTER", help="The signed charter in force (charter.json)."
    ),
    key_file: Path = typer.Option(..., "--key", help="The RI's key file: the RI signs the new version."),
    out_file: Path = typer.Option(..., "--out", help="Where to write the new version."),
    agent: list[str] = typer.Option(
        [], "--agent", metavar="NAME=KEY", help="Add an agent or give it a new key (repeatable)."
    ),
    reviewer: list[str] = typer.Option(
        [], "--reviewer", metavar="IDENTITY=KEY", help="Add a reviewer or rotate their key (repeatable)."
    ),
    operator: list[str] = typer.Option(
        [], "--operator", metavar="IDENTITY=KEY", help="Add an operator or rotate their key (repeatable)."
    ),
    revoke: list[str] = typer.Option(
        [], "--revoke", metavar="NAME", help="Revoke an agent's key or remove a person (repeatable)."
    ),
    force: bool = ForceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write the charter's next version, signed by the RI. KEY is a key file (only its public
    key is read) or a base64 public key. A running service puts it in force within a second
    when --out is its [charter] file; from then on, whatever a revoked key signs is refused."""
    from pydantic import ValidationError

    from answerable.charter import amend_charter
    from answerable.keys import KeyPair
    from answerable.ledger.tiles import write_atomically
    from answerable.records import SystemCharter, summary

    _out_file(out_file, force)
    text = _read(charter_file)
    try:
        charter = SystemCharter.model_validate_json(text)
    except ValidationError as exc:
        _fail(ConfigError(f"{charter_file} is not a signed SystemCharter: {summary(exc)}"))
    ri = _run(lambda: KeyPair.load(key_file))
    _run(lambda: _signed_with(charter, ri, charter_file))
    people: dict[str, tuple[str, list[str]]] = {}
    for role, values, option in (("reviewer", reviewer, "--reviewer"), ("operator", operator, "--operator")):
        for identity, key in _pairs(values, option).items():
            roles = people.get(identity, (key, []))[1]
            people[identity] = (key, [*roles, role])
    amended = _run(
        lambda: amend_charter(charter, ri, agents=_pairs(agent, "--agent"), people=people, revoke=revoke)
    )
    try:  # whole or not at all: a running service reads this file as soon as it changes
        write_atomically(out_file, orjson.dumps(amended.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    except OSError as exc:
        _fail(ConfigError(f"cannot write {out_file}: {exc.strerror}"))
    if as_json:
        _json(
            {
                "id": amended.id,
                "version": amended.version,
                "supersedes": amended.supersedes,
                "file": str(out_file),
            }
        )
        return
    _out().print(
        f"charter v{amended.version} ({amended.id}) written to {out_file}, superseding {amended.supersedes}",
        markup=False,
    )


@demo_app.command("quickstart")
def demo_quickstart(
    out_dir: Path = typer.Option(Path("out/quickstart"), "--out", help="Output folder."),
) -> None:
    """A small governed system end to end: allow, review, deny, halt, resume, verify."""
    from answerable.quickstart import run

    _run(lambda: run(out_dir, _out()))


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _instant(text: str | None, flag: str) -> int | None:
    """An RFC 3339 time a person typed, with its offset, as nanoseconds since the epoch."""
    import calendar
    from datetime import datetime

    if text is None:
        return None
    shape = _RFC3339.fullmatch(text.strip())
    if shape is None:
        _fail(
            ConfigError(f"{flag} {text!r} is not an RFC 3339 time with its offset, like 2026-12-01T09:30:00Z")
        )
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
        return calendar.timegm(moment.utctimetuple()) * 1_000_000_000 + moment.microsecond * 1000
    except (ValueError, OverflowError):
        _fail(ConfigError(f"{flag} {text!r} is not a time this can read (out of range)"))


@_app.command("coordination")
def coordination_command(
    ledger: str = LedgerArg,
    since: str | None = typer.Option(
        None, "--since", metavar="T", help="Only messages sent at or after T (RFC 3339)."
    ),
    until: str | None = typer.Option(
        None, "--until", metavar="T", help="Only messages sent at or before T (RFC 3339)."
    ),
    as_json: bool = JsonOpt,
    as_dot: bool = typer.Option(False, "--dot", help="Print the graph as Graphviz DOT text."),
) -> None:
    """How the agents actually coordinated: one edge per (sender, topic, type) with its receivers,
    message count, first and last time, and the intents and executions its messages caused;
    undeclared channels and refused messages beside them."""
    from answerable.coordination import observe, to_dot

    if as_json and as_dot:
        _fail(ConfigError("--json and --dot are exclusive: pick one"))
    start, stop = _instant(since, "--since"), _instant(until, "--until")
    if start is not None and stop is not None and stop < start:
        _fail(ConfigError(f"--until {until} is before --since {since}"))
    with _open(ledger) as store:
        graph = _run(lambda: observe(store, since=start, until=stop))
    if as_json:
        _json(graph.as_json())
        return
    if as_dot:
        sys.stdout.write(to_dot(graph))
        return
    for e in graph.edges:
        mark = "  UNDECLARED" if e.declared is False else ""
        _out().print(
            f"{e.sender} -> {', '.join(sorted(e.receivers)) or '?'}  {e.topic} / {e.type}{mark}: "
            f"{e.messages} messages, {e.caused_intents} intents, {e.caused_executions} executions "
            f"({e.first} .. {e.last})",
            markup=False,
        )
    for (sender, topic, type_, code), count in sorted(graph.refusals.items()):
        _out().print(f"refused: {count} from {sender} on {topic} / {type_} ({code})", markup=False)
    if not graph.contract:
        _out().print("no coordination contract in this ledger: every channel was open, none is undeclared")


@_app.command("why")
def why_command(
    ledger: str = LedgerArg,
    entry_id: str = typer.Argument(..., help="Id of the entry to explain."),
    as_json: bool = JsonOpt,
    as_dot: bool = typer.Option(False, "--dot", help="Print the graph as Graphviz DOT text."),
    max_nodes: int = typer.Option(10_000, "--max-nodes", min=1, help="Stop the walk after this many nodes."),
) -> None:
    """Why an entry is in the ledger: what led to it, back to outside events, and who answers for it."""
    from rich.text import Text
    from rich.tree import Tree

    from answerable.provenance import Provenance, why

    if as_json and as_dot:
        _fail(ConfigError("--json and --dot are exclusive: pick one"))
    with _open(ledger) as store:
        graph = _run(lambda: why(store, entry_id, max_nodes=max_nodes))
    if graph.truncated:
        _err().print(
            f"answerable: warning: stopped after {max_nodes} nodes; raise --max-nodes to see them all"
        )
    if as_json:
        _json(graph.to_json())
        return
    if as_dot:
        sys.stdout.write(graph.to_dot())
        return

    def tree_of(p: Provenance) -> Tree:
        # A DAG shown as a tree: each node is expanded once, later mentions point back to it.
        nodes = {n.id: n for n in p.nodes}
        out_edges: dict[str, list[tuple[str, str]]] = {}
        for e in p.edges:
            out_edges.setdefault(e.source, []).append((e.target, e.relation))

        def label(node_id: str, relation: str, seen: bool) -> Text:
            n = nodes[node_id]
            text = Text()
            if relation != "caused_by":
                text.append(f"{relation} → ", style="cyan")
            shown = _printable(n.summary)  # recorded text, anyone's: no terminal sequence gets through
            text.append(shown, style="dim" if seen else "bold" if n.kind == "ExternalEvent" else "")
            text.append(f"  {_printable(node_id)}" + ("  (shown above)" if seen else ""), style="dim")
            return text

        root = Tree(label(p.root, "caused_by", False))
        shown = {p.root}
        stack = [(root, p.root)]
        while stack:
            branch, node_id = stack.pop()
            children = []
            for target, relation in out_edges.get(node_id, []):
                child = branch.add(label(target, relation, target in shown))
                if target not in shown:
                    shown.add(target)
                    children.append((child, target))
            stack.extend(reversed(children))
        return root

    _out().print(tree_of(graph), soft_wrap=False)  # wrap long lines rather than crop them
    _out().print(Text(_printable(f"accountable: {graph.accountable.line()}")))


@_app.command("replay")
def replay_command(
    ledger: str = LedgerArg,
    policies: Path = typer.Option(
        ..., "--policies", help="Cedar policies to decide every recorded intent under."
    ),
    schema: Path = typer.Option(..., "--schema", help="Their Cedar schema (Cedar schema text or JSON)."),
    as_json: bool = JsonOpt,
) -> None:
    """Decide every recorded intent again under other rules, from the Cedar request its Decision
    holds, and list each whose decision would change: judge a rule before the RI signs it.
    Nothing runs and nothing is written; a halted intent stays denied."""
    from answerable.policy import load_ruleset
    from answerable.replay import replay, summary

    text = _read(policies), _read(schema)
    ruleset = _run(lambda: load_ruleset(*text))
    with _open(ledger) as store:
        report = _run(lambda: replay(store, ruleset))
    if as_json:
        _json(report.to_json())
        return
    for line in summary(report):
        _out().print(line, markup=False)


@_app.command("otel-export")
def otel_export(
    ledger: str = LedgerArg,
    endpoint: str = typer.Option(
        ..., "--endpoint", metavar="URL", help="OTLP/HTTP traces URL, like http://127.0.0.1:4318/v1/traces."
    ),
    start: int = typer.Option(
        0, "--start", min=0, help="First entry to export (a failed export says where)."
    ),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to keep retrying each batch."),
) -> None:
    """Export the ledger as OpenTelemetry spans over OTLP/HTTP: one span per entry, its causes as
    links, GenAI names (execute_tool, invoke_agent) where they apply. Credentials go in
    OTEL_EXPORTER_OTLP_HEADERS, never in the URL."""
    from answerable.config import endpoint_problem, otlp_headers_problem
    from answerable.otel import export_ledger

    problem = endpoint_problem(endpoint)
    if problem is not None:
        _fail(ConfigError(f"--endpoint: {problem}"))
    problem = otlp_headers_problem()
    if problem is not None:
        _fail(ConfigError(problem))
    import logging

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The exporter logs each failed attempt; the one line below says what failed and where to go on.
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    with _open(ledger) as store:
        size = store.size()
        if start >= size:
            _fail(
                ConfigError(
                    f"--start {start}: the ledger holds {size} entries (0 to {size - 1}); nothing to export"
                )
            )
        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
        try:
            count = _run(lambda: export_ledger(store, exporter, start=start, where=shown(endpoint)))
        finally:
            exporter.shutdown()  # type: ignore[no-untyped-call]
    _out().print(f"exported {count} spans (entries {start} to {size - 1}) to {shown(endpoint)}", markup=False)


@_app.command("mcp-proxy")
def mcp_proxy_command(
    config_file: Path = typer.Argument(..., help="The system's answerable.toml, with an [mcp] table."),
    http: bool = typer.Option(False, "--http", help="Serve streamable HTTP instead of stdio."),
    port: int = typer.Option(8471, "--port", min=1, max=65535, help="With --http: the port (on 127.0.0.1)."),
) -> None:
    """Stand between an MCP client and the governed tools: every tools/call becomes an intent the
    service (answerable serve) decides, records and runs once; results carry receipts. Speaks
    MCP on stdio (a client launches it), or on streamable HTTP at /mcp with --http."""
    from answerable.config import load_config
    from answerable.mcp_proxy import McpProxy

    config = _run(lambda: load_config(config_file))
    proxy = _run(lambda: McpProxy(config))
    server = proxy.server()
    if http:
        import uvicorn

        app_ = server.streamable_http_app(host="127.0.0.1")
        # Said once listening (it was said before, and a client that read it could find no one there).
        listening = _announced(
            lambda bound: f"answerable mcp-proxy on http://127.0.0.1:{bound}/mcp -> {proxy.url}",
            uvicorn.Config(app_, host="127.0.0.1", port=port, log_level="warning"),
        )
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C is a clean stop
            listening.run()  # (a port it cannot take: uvicorn exits 3 itself)
        return
    from mcp.server.stdio import stdio_server

    async def main() -> None:
        try:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
        finally:
            await proxy.aclose()

    _run(lambda: _async(main()))


@_app.command("mcp-schema")
def mcp_schema_command(
    config_file: Path = typer.Argument(..., help="The system's answerable.toml, with [mcp.servers.*]."),
) -> None:
    """Print the Cedar declaration of every tool the [mcp.servers.*] list now, each pinned to its
    name, description and input schema, for the RI to review, add to the schema and sign; a
    tool whose schema the rules cannot see is named with the reason instead."""
    from answerable.config import load_config
    from answerable.upstream import Upstreams

    config = _run(lambda: load_config(config_file))
    mcp = config.mcp
    if mcp is None or not mcp.servers:
        _fail(ConfigError(f"{config_file.name}: no [mcp.servers.NAME] table"))

    async def listed() -> list[str]:
        async def nothing() -> None:
            return None

        extra = {p.operation: {"prerequisites": "Set<String>"} for p in config.prerequisites}
        upstreams = Upstreams(mcp, {}, nothing, extra_context=extra)
        try:
            await upstreams.start()
            lines = []
            for _, offer in sorted(upstreams.offers().items()):
                if offer.unsupported is not None:
                    lines.append(f"// {offer.operation}: not declared: {offer.unsupported}\n")
                    continue
                lines.append(offer.declaration())
                for p in config.prerequisites:
                    if p.operation == offer.operation:
                        lines.append(
                            f"// [[prerequisites]]: a policy that holds {p.operation} to its prerequisite:\n"
                            f'// forbid(principal, action == Action::"{p.operation}", resource)\n'
                            f'//   unless {{ context.prerequisites.contains("{p.after}") }};\n'
                        )
            return lines
        finally:
            await upstreams.stop()

    for text in _run(lambda: _async(listed())):
        _out().print(text, markup=False, end="\n")


@receipt_app.command("verify")
def receipt_verify(
    receipt_file: Path = typer.Argument(..., help="A receipt (JSON), as a governed call returned it."),
    key: str = typer.Option(
        ..., "--key", metavar="VKEY", help="The ledger's key, as answerable ledger key prints it."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Check a receipt offline: each entry's inclusion proof against the one checkpoint, that
    checkpoint's signature by KEY, the links between intent, decision, approvals and execution,
    and the result against the digest the execution recorded."""
    from answerable.receipt import verify_receipt

    try:
        raw = _input(receipt_file)
    except OSError as exc:
        _fail(ConfigError(f"cannot read {receipt_file}: {exc.strerror}"))
    proven = _run(lambda: verify_receipt(raw, key))
    doc = {
        "ok": True,
        "origin": proven.checkpoint.origin,
        "tree_size": proven.checkpoint.size,
        "intent": proven.intent.id,
        "agent": proven.intent.agent,
        "operation": proven.intent.operation,
        "decision": proven.decision.effect,
        "approvals": [
            {"id": a.id, "by": a.by, "verdict": a.verdict, "reason": a.reason} for a in proven.approvals
        ],
        "execution": None if proven.execution is None else proven.execution.status,
        "result_checked": proven.result_checked,
    }
    if as_json:
        _json(doc)
        return
    denied = proven.decision.effect == "deny" or any(a.verdict == "deny" for a in proven.approvals)
    ran = proven.execution.status if proven.execution else "did not run" if denied else "execution not shown"
    by = "".join(
        f"; {'approved' if a.verdict == 'approve' else 'denied'} by {a.by}" for a in proven.approvals
    )
    _out().print(
        f"receipt ok: {proven.intent.operation} by {proven.intent.agent}, "
        f"{proven.decision.effect}{by}, {ran}; "
        f"in {proven.checkpoint.origin} at size {proven.checkpoint.size}"
        + ("; result matches" if proven.result_checked else ""),
        markup=False,
    )


@_app.command("report")
def report_command(
    ledger: str = LedgerArg,
    out_file: Path | None = typer.Option(
        None, "--out", help="Where to write the HTML page (default: the ledger's path with .html)."
    ),
    force: bool = ForceOpt,
) -> None:
    """Write the incident report of a run: one self-contained HTML page made from the ledger alone."""
    from answerable.report import write

    if out_file is None and is_postgres_url(ledger):
        _fail(ConfigError("a ledger in PostgreSQL has no path to put the report beside: give --out FILE"))
    if out_file is None:
        target = Path(ledger).with_suffix(".html")
        _never_over_a_ledger(target, "the report's path")  # a ledger named run.html would be its own report
    else:
        target = _out_file(out_file, force, makes_folder=True)
    try:
        written = _run(lambda: write(ledger, target))
    except OSError as exc:
        _fail(ConfigError(f"cannot write the report to {target}: {exc.strerror}"))
    _err().print(f"wrote {written}")


@_app.command("report-compare")
def report_compare_command(
    ledgers: list[Path] = typer.Argument(..., help="Ledgers of the runs to compare."),
    out_file: Path = typer.Option(..., "--out", help="Where to write the HTML page."),
    force: bool = ForceOpt,
) -> None:
    """Write one page comparing runs: outcome tables side by side, on-time rates overlaid."""
    from answerable.report import compare

    _out_file(out_file, force, makes_folder=True)
    try:
        written = _run(lambda: compare(ledgers, out_file))
    except OSError as exc:
        _fail(ConfigError(f"cannot write the comparison to {out_file}: {exc.strerror}"))
    _err().print(f"wrote {written}")


def _guarded(command: Callable[..., None]) -> Callable[..., None]:
    """A plugin's command with the CLI's error contract: one line, exit 1 or 2, no traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except AnswerableError as exc:
            _fail(exc)

    return run


_plugged: list[ConfigError | None] = []


def _load_plugins() -> None:
    """Domains plug in through entry points (a reference system adds its demo); the core names
    none. Loaded once, and only for a command line that may need them: a command of the core
    (``answerable halt``) starts without reading every installed package's entry points. A
    plugin that failed to load fails every later use the same way, never leaving a command
    tree without it (or with another plugin's commands registered twice).

    Raises:
        ConfigError: an installed plugin failed to load (named, with what it raised).
    """
    if _plugged:
        if _plugged[0] is not None:
            raise ConfigError(str(_plugged[0]))
        return
    from importlib.metadata import entry_points

    for plugin in entry_points(group="answerable.plugins"):
        try:
            register = getattr(plugin.load(), "register_cli", None)
            if callable(register):
                register(demo_app, _guarded)
        except Exception as exc:  # a broken install: said in one line, on every use alike
            failed = ConfigError(
                f"the plugin {plugin.name} ({plugin.value}) failed to load: {type(exc).__name__}: {exc}"
            )
            _plugged.append(failed)
            raise failed from exc
    _plugged.append(None)


def __getattr__(name: str) -> Any:
    """``app``: the whole command line, the plugins' commands included, for a caller that runs
    it itself (a test's CliRunner, say)."""
    if name == "app":
        _load_plugins()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            sys.stdout.write(f"answerable {version('answerable')}\n")
        except PackageNotFoundError:
            sys.stdout.write("answerable (not installed: running from a source tree)\n")
        raise typer.Exit(0)


@_app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    """Run multi-agent systems that stay attributable, observable and interruptible."""
    _consoles.clear()  # made again from this invocation's environment (an in-process runner sets it)


class _PlainArgument(TyperArgument):
    """An argument shown by its name alone (``LEDGER``), without typer's ``<path>`` beside it."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _plain_metavars(command: Any) -> None:
    """Name every value in help as users write it (``LEDGER``, ``--out FILE``), never by its
    Python type (``<path>``, ``<list[Path]>``), in every subcommand."""
    for param in command.params:
        if isinstance(param, TyperArgument):
            param.metavar = param.metavar or (param.name or "value").upper()
            param.__class__ = _PlainArgument
        elif isinstance(param, TyperOption) and not param.is_flag and param.metavar is None:
            plain = {"int": "N", "float": "SECONDS", "path": "FILE", "list[path]": "FILE"}
            param.metavar = plain.get(param.bare_type().lower(), (param.name or "value").upper())
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)


def command(first: str | None = None) -> Any:
    """The CLI as click runs it, its help written for people.

    ``first``: the first word of the command line. When it names a top-level command or group,
    the tree holds that one alone: typer makes each click command by reading its function's
    signature and type hints, which for all of them costs a halt about a tenth of its start-up,
    and nothing a command parses, prints or refuses depends on its siblings. Any other word
    (an option, a typo, nothing) gets the whole tree, so ``--help`` lists every command and a
    misspelt one is suggested as before. Only the whole tree and ``demo`` load the plugins.
    """
    source = _app
    commands = [c for c in _app.registered_commands if _name_of(c) == first]
    groups = [g for g in _app.registered_groups if g.name == first]
    if not commands and not any(g.typer_instance is not demo_app for g in groups):
        _load_plugins()  # the whole tree (help, a typo) or the demos: the plugins' commands too
    if commands or groups:
        source = copy.copy(_app)  # _app itself stays whole: tests and plugins build it again
        source.registered_commands, source.registered_groups = commands, groups
    built = typer.main.get_command(source)
    _plain_metavars(built)
    return built


def _name_of(info: CommandInfo) -> str:
    """A command's name as typer gives it: the one declared, else its function's, dashed."""
    return info.name or typer.main.get_command_name(info.callback.__name__ if info.callback else "")


def _path_options(command: Any) -> set[str]:
    """Every option of ``command``'s tree that takes a path (``--out``, ``--witness`` ...)."""
    found = {
        opt
        for param in command.params
        if isinstance(param, TyperOption) and not param.is_flag and "path" in param.bare_type().lower()
        for opt in param.opts
    }
    for sub in getattr(command, "commands", {}).values():
        found |= _path_options(sub)
    return found


def _empty_path(cli: Any, argv: Sequence[str]) -> str | None:
    """The path option given an empty value, or None. A path becomes ``Path("")``, which is the
    current folder: ``--out ''`` (an unset variable in a script) published the log, exported the
    rules or wrote the storm's results into wherever the command ran."""
    options = _path_options(cli)
    for i, arg in enumerate(argv):
        if arg == "--":
            return None
        name, equals, value = arg.partition("=")
        if name in options and (
            (equals and not value) or (not equals and i + 1 < len(argv) and argv[i + 1] == "")
        ):
            return name
    return None


def main() -> None:
    try:
        cli = command(sys.argv[1] if len(sys.argv) > 1 else None)
    except AnswerableError as exc:  # a plugin that failed to load: one line, like every error
        raise SystemExit(_said(exc)) from None
    empty = _empty_path(cli, sys.argv[1:])
    if empty is not None:
        error = ConfigError(f"{empty}: an empty path names nothing (for the current folder, write '.')")
        raise SystemExit(_said(error))
    try:
        code = cli.main(standalone_mode=False)
    except typer.TyperException as exc:  # the base of click's errors, which typer vendors
        raise SystemExit(_click_said(exc)) from None
    except typer.Abort:
        sys.stderr.write("Aborted!\n")
        raise SystemExit(1) from None
    # Not standalone, click hands back an explicit exit's code (typer.Exit, Ctrl-C's 130) or what
    # the command returned; the commands return None, so an int is such a code, all else success.
    raise SystemExit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


def _click_said(exc: typer.TyperException) -> int:
    """A command line click refused, in one line like every other error; its exit code (2).

    Click's own report is four lines (usage, a hint, a blank, the error): a script reading the
    last line of stderr read part of it. The help is named, not printed, unless nothing was
    given at all (``answerable ledger``), where the help is the answer.
    """
    code = getattr(exc, "exit_code", 1)
    if type(exc).__name__ == "NoArgsIsHelpError":  # typer's click keeps its classes private
        exc.show()  # type: ignore[attr-defined]
        return int(code)
    message = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None)
    hint = f" (see '{path} --help')" if code == 2 and path else ""
    sys.stderr.write(_printable(f"answerable: error: {message}{hint}") + "\n")
    return int(code)


if __name__ == "__main__":
    main()
