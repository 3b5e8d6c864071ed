"""Move a ledger between places and backends (a file, a PostgreSQL schema) with identical roots.

The copy holds the very bytes of every entry, so its leaves, tree and roots are the source's and
every checkpoint the source signed verifies on the copy with the same key. Nothing is copied from
a source that does not verify: a copy must not launder a tampered history into a fresh store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import orjson

from answerable.errors import ConfigError, LedgerError, NotALedger
from answerable.ledger import merkle
from answerable.ledger._sql import Row, SQLLedger
from answerable.ledger.location import open_ledger

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

    Raises:
        LedgerTampered: the source does not verify (nothing is written).
        ConfigError: the target holds a ledger already, or is the source's own file.
        LedgerError: the copy came out with another root (it is left for inspection).
    """
    where = os.fspath(target)  # a URL names no password: it may be shown as it is
    mine = getattr(source, "path", None)  # an SQLite file: a link to it is the source itself
    try:
        same = mine is not None and os.path.samefile(mine, where)
    except (OSError, ValueError):  # no such file (the usual case), a URL, a NUL in the name
        same = False
    if same:  # opened a second time under another name, SQLite would leave that name a -wal
        raise ConfigError(f"{where} is the source's own file ({mine}); copy into a new file")
    try:
        open_ledger(target).close()
    except NotALedger:
        pass
    else:
        raise ConfigError(f"{where} holds a ledger already; copy into a new file or an empty schema")
    size = source.verify().size
    copy = open_ledger(
        target, create=True, origin=source.origin, signing_key=signing_key, identity=source.identity()
    )
    try:
        copied = 0
        for _ in range(_ATTEMPTS):
            for start in range(copied, size, _BATCH):
                stop = min(size, start + _BATCH)
                copy.append_rows([_row_of(e.id, e.kind, e.data) for e in source.entries(start, stop)])
            copied = size
            # Guards move only in a commit that appends, so side tables read while the size stands
            # still are those of exactly these entries; a live gateway may append meanwhile.
            side = source.side_tables(size)
            grown = source.size()
            if grown == size:
                break
            size = source.verify().size  # what was appended since must verify before it is copied
        else:
            raise LedgerError(
                f"{source.name} kept growing while it was copied ({_ATTEMPTS} tries): stop its gateway "
                f"and copy into a new place (the partial copy at {where} is not for use)"
            )
        root = source.root(size)
        copy.put_side_tables(side)
        if copy.root(size) != root:
            raise LedgerError(
                f"the copy at {where} has another root than the source; it was left there to inspect"
            )
        copy.verify()
        key_path = copy.key_path if copy.identity()[0] is not None else None
    finally:
        copy.close()
    return CopyReport(
        size=size,
        root=root,
        checkpoints=len(side.checkpoints),
        target=where,
        key_path=None if key_path is None else str(key_path),
    )


def _row_of(entry_id: str, kind: str, data: bytes) -> Row:
    causes = orjson.loads(data).get("causes") or ()
    return entry_id, kind, data, merkle.leaf_hash(data), tuple(causes)
