"""Move a ledger between places and backends (a file, a PostgreSQL schema) with identical roots.

The copy holds the very bytes of every entry, so its leaves, tree and roots are the source's and
every checkpoint the source signed verifies on the copy with the same key. Nothing is copied from
a source that does not verify: a copy must not launder a tampered history into a fresh store.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from answerable.errors import ConfigError, LedgerError, NotALedger
from answerable.ledger import merkle
from answerable.ledger._sql import Row, SideTables, SQLLedger, check_key_place, file_path, write_key
from answerable.ledger.location import is_postgres_url, open_ledger

__all__ = ["CopyReport", "copy_ledger"]

_BATCH = 4096
_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class CopyReport:
    size: int
    root: bytes
    checkpoints: int
    target: str
    key_path: str | None
    """Where the copy's signing key is (None when the source had none to carry over)."""


def copy_ledger(
    source: SQLLedger, target: str | os.PathLike[str], *, signing_key: str | os.PathLike[str] | None = None
) -> CopyReport:
    """Copy ``source`` as it is now into ``target``, a place that holds no ledger yet.

    The source's signing key, when present, is written for the copy (mode 0600) at ``signing_key``
    or the target backend's default place, so the copy can go on signing as the same log.

    A copy either completes or leaves nothing at ``target``: a part of the source under its
    origin, beside its key, would verify, take appends and sign another tree as the same log (a
    fork). So a file is built under a name of its own beside ``target`` and moved into place
    once it verifies, and a schema's tables are dropped if the copy fails. From the commit that
    makes its tables until it is whole, the copy's metadata names it an unfinished copy, which no
    command opens; the key is written just before the copy is named a ledger (and removed again
    if this call wrote it and the copy fails). So kill -9 leaves an unfinished copy (under the
    file's temporary name, or in the schema, where the next copy is refused until its tables are
    dropped), perhaps with the key beside it, which the next copy takes as its own; or, killed
    after the mark, a schema that is the whole copy with its key, or a file's whole copy under
    its temporary name (the kill came before the move; the next copy goes on beside it). Never a
    part of the source that opens as a ledger, and never the copy at ``target`` without its key.

    Raises:
        LedgerTampered: the source does not verify (nothing is written).
        ConfigError: the target holds a ledger already, is the source's own file, is in a folder
            that does not exist, or its key's place is taken (nothing is written).
        LedgerError: the copy came out with another root, or the source kept growing (nothing is
            left at the target).
    """
    where = os.fspath(target)  # a URL names no password: it may be shown as it is
    _refuse_the_source(source, where)
    _refuse_a_ledger(where)
    final = None if is_postgres_url(where) else _new_file(where)
    size = source.verify().size
    signer, verifier = source.identity()
    key = signing_key if signing_key or final is None else final.with_name(final.name + ".key")
    staged = where if final is None else final.with_name(f"{final.name}.copying-{uuid.uuid4().hex[:12]}")
    # Made an unfinished copy, without a key (signer None): nothing can sign as the source beside
    # a part of it, nor open it as a ledger.
    copy = open_ledger(staged, create=True, origin=source.origin, signing_key=key, identity=(None, verifier))
    moved = wrote = False
    try:
        try:
            if signer is not None:
                check_key_place(copy.key_path, signer, folder=final is None)
            size, root, side = _fill(source, copy, size, where)
            if signer is not None:  # while the copy is unfinished: its key never stands beside
                # a ledger that cannot sign (killed after the mark and before the key, a whole
                # copy refused the key's writing and the next copy alike), nor beside a part
                wrote = write_key(copy.key_path, signer, copied=True, folder=final is None)
            copy.mark_copied()
        finally:
            copy.close()
        if final is not None:
            _link(Path(staged), final)
            moved = True
            Path(staged).unlink()
    except BaseException:
        if moved and final is not None:
            final.unlink(missing_ok=True)
        with contextlib.suppress(LedgerError, OSError):  # the first failure is the one to tell
            copy.discard()
        if wrote:  # this call's alone (the same key found there, the source's say, is kept)
            with contextlib.suppress(OSError):
                copy.key_path.unlink()
        raise
    return CopyReport(
        size=size,
        root=root,
        checkpoints=len(side.checkpoints),
        target=where,
        key_path=None if signer is None else str(copy.key_path),
    )


def _refuse_the_source(source: SQLLedger, where: str) -> None:
    """Opened a second time under another name, SQLite would leave that name a -wal.

    Raises:
        ConfigError: ``where`` is the source's own file (a link to it, say).
    """
    mine = getattr(source, "path", None)  # an SQLite file: a link to it is the source itself
    try:
        same = mine is not None and os.path.samefile(mine, where)
    except (OSError, ValueError):  # no such file (the usual case), a URL, a NUL in the name
        same = False
    if same:
        raise ConfigError(f"{where} is the source's own file ({mine}); copy into a new file")


def _refuse_a_ledger(where: str) -> None:
    """Raises: ConfigError: ``where`` holds a ledger already."""
    try:
        open_ledger(where).close()
    except NotALedger:
        return
    raise ConfigError(f"{where} holds a ledger already; copy into a new file or an empty schema")


def _new_file(where: str) -> Path:
    """The file a copy goes to, refused now if it cannot be made there: the copy is built beside it.

    Raises:
        ConfigError: a file is there already (one that is no ledger), or its folder does not exist.
    """
    final = file_path(where, "the copy's path")
    if os.path.lexists(final):
        raise ConfigError(f"{where} exists already (it is no ledger); copy into a new file")
    if not final.absolute().parent.is_dir():
        raise ConfigError(f"cannot create the copy {where}: its folder does not exist")
    return final


def _fill(source: SQLLedger, copy: SQLLedger, size: int, where: str) -> tuple[int, bytes, SideTables]:
    """Append the source's entries, then what sits beside them, and check the copy's root.

    Raises:
        LedgerError: the source kept growing, or the copy has another root.
    """
    copied = 0
    for _ in range(_ATTEMPTS):
        for start in range(copied, size, _BATCH):
            stop = min(size, start + _BATCH)
            copy.append_rows([_row_of(e.id, e.kind, e.data) for e in source.entries(start, stop)])
        copied = size
        # Guards move only in a commit that appends, so side tables read while the size stands
        # still are those of exactly these entries; a live gateway may append meanwhile.
        side = source.side_tables(size)
        if source.size() == size:
            break
        size = source.verify().size  # what was appended since must verify before it is copied
    else:
        raise LedgerError(
            f"{source.name} kept growing while it was copied ({_ATTEMPTS} tries): stop its gateway "
            f"and copy again (nothing was left at {where})"
        )
    root = source.root(size)
    copy.put_side_tables(side)
    if copy.root(size) != root:
        raise LedgerError(
            f"the copy at {where} came out with another root than the source; nothing was left there. "
            "Run `answerable verify` on the source and copy again"
        )
    copy.verify()
    return size, root, side


def _link(staged: Path, final: Path) -> None:
    """Give the whole copy its name, never over a file another process put there meanwhile
    (a hard link fails where a name is taken; a rename would replace it).

    Raises:
        ConfigError: a file took the name meanwhile.
        LedgerError: the file system refused.
    """
    try:
        os.link(staged, final)
    except FileExistsError as exc:
        raise ConfigError(f"{final} was made by something else while the copy ran; copy again") from exc
    except OSError as exc:
        raise LedgerError(f"cannot name the copy {final}: {exc.strerror or exc}") from exc


def _row_of(entry_id: str, kind: str, data: bytes) -> Row:
    causes = orjson.loads(data).get("causes") or ()
    return entry_id, kind, data, merkle.leaf_hash(data), tuple(causes)
