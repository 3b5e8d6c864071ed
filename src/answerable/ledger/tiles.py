"""The ledger published as a C2SP tlog-tiles tree: static files any tlog client can audit.

Layout (c2sp.org/tlog-tiles), under one folder:

- ``checkpoint``: the signed checkpoint the tiles belong to, written last;
- ``tile/<L>/<N>[.p/<W>]``: hash tiles of height 8, the 256 (or, at the right edge, ``W``)
  hashes of the complete subtrees of ``2**(8L)`` leaves numbered ``256N`` on;
- ``tile/entries/<N>[.p/<W>]``: the entries themselves, each a big-endian uint16 length then
  the exact leaf bytes (which is why an entry stays under 64 KiB).

``N`` is written in groups of three digits, all but the last prefixed with ``x``
(``1234067`` is ``x001/x234/067``). A full tile never changes, so publishing again writes only
the new right edge; the partial tiles of earlier checkpoints stay until their full tile exists
(the spec requires them for every checkpoint produced), then they are removed. Every
file is written to a temporary name and renamed, so a reader never sees half a tile.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from answerable._files import read_capped, written_whole
from answerable.errors import ConfigError, SignatureInvalid
from answerable.ledger.base import LedgerStore
from answerable.ledger.note import Checkpoint, Verifier, checkpoint_size, merge_signatures, open_checkpoint

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Publication",
    "entry_bundle",
    "parse_tile_path",
    "publish",
    "published_size",
    "republish_checkpoint",
    "tile_path",
    "write_atomically",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT


def tile_path(level: int | str, index: int, width: int = TILE_WIDTH) -> str:
    """The path of a tile (``level`` ``"entries"`` for an entry bundle), relative to the log's root."""
    groups = []
    n = index
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    name = "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])
    partial = f".p/{width}" if width < TILE_WIDTH else ""
    return f"tile/{level}/{name}{partial}"


def parse_tile_path(path: str) -> tuple[str, int, int] | None:
    """``(level, index, width)`` of a tile path as :func:`tile_path` writes it, or None when
    ``path`` is not one (``tile/entries/x001/234.p/7`` is ``("entries", 1234, 7)``)."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        return None
    level, rest = parts[1], parts[2:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not rest[-1].isdigit() or not 1 <= int(rest[-1]) < TILE_WIDTH:
            return None
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2].removesuffix(".p")]
    groups = [g.removeprefix("x") for g in rest[:-1]] + [rest[-1]]
    if any(len(g) != 3 or not g.isdigit() for g in groups) or any(not g.startswith("x") for g in rest[:-1]):
        return None
    index = int("".join(groups))
    if tile_path(level, index, width) != path:
        return None  # not the one spelling the standard allows (leading zero groups, say)
    return level, index, width


def entry_bundle(entries: list[bytes]) -> bytes:
    """Entries as a tlog-tiles entry bundle: each a big-endian uint16 length, then its bytes."""
    out = bytearray()
    for data in entries:
        if len(data) > 0xFFFF:
            raise ConfigError(f"an entry of {len(data)} bytes does not fit a tlog-tiles entry bundle")
        out += len(data).to_bytes(2, "big") + data
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Publication:
    """What one publication wrote."""

    size: int
    root: bytes
    written: int
    """Files written now (full tiles already there are left as they are)."""
    removed: int
    """Partial tiles removed because their full tile now exists."""
    entries: bool
    """Whether entry bundles were published (not with ``hashes_only``)."""
    note: str = ""
    """The checkpoint this call signed and published (another publisher may since have published
    a larger one in the folder)."""


def publish(store: LedgerStore, out_dir: Path, *, hashes_only: bool = False) -> Publication:
    """Sign a checkpoint of the ledger now and publish it with every tile it needs.

    Raises:
        ConfigError: ``out_dir`` cannot be written, or the ledger cannot sign (no key).
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with _publishing(out_dir):
            # Signed under the folder's lock: publishers take turns, so the checkpoint file only
            # grows. Two processes publishing one folder (`ledger publish` beside `serve`) made it
            # go back (35 then 28) and one failed removing a partial tile the other had removed.
            signed = store.checkpoint()
            checkpoint = open_checkpoint(signed, Verifier.from_key(store.verifier_key()), store.origin)
            written, removed = _tiles(store, out_dir, checkpoint, hashes_only)
            write_atomically(out_dir / "checkpoint", signed.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot publish into {out_dir}: {exc.strerror or exc}") from exc
    return Publication(checkpoint.size, checkpoint.root_hash, written + 1, removed, not hashes_only, signed)


def republish_checkpoint(out_dir: Path, signed: str) -> bool:
    """Put ``signed``, a checkpoint :func:`publish` wrote here and a witness has since cosigned,
    back in its place; False (nothing written) when a publisher published a larger tree
    meanwhile. Under the folder's lock, as ``publish`` writes it, so the checkpoint file only
    grows: written after the witness's round trip, outside the lock, it once went back. The
    same tree published there with cosignatures of other witnesses keeps them.

    Raises:
        ConfigError: ``signed`` is not a checkpoint note, or ``out_dir`` cannot be written.
    """
    size = _note_size(signed)
    if size is None:
        raise ConfigError("not a checkpoint note: its second line is no tree size")
    try:
        with _publishing(out_dir):
            there = _published_note(out_dir)  # none, or none that reads as one: ours takes its place
            if (_note_size(there) or -1) > size:
                return False
            write_atomically(out_dir / "checkpoint", merge_signatures(signed, there).encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot publish into {out_dir}: {exc.strerror or exc}") from exc
    return True


_MOST_NOTE = 1 << 16
"""Bytes of a published checkpoint read at most: a note of 100 signature lines is a few KiB."""


def published_size(out_dir: Path, log: LedgerStore) -> int:
    """The tree size of the checkpoint published in ``out_dir`` if ``log``'s key signed it for
    its origin; 0 when there is none, or the file cannot be read or holds no such note (replaced
    by hand, or another log's): nothing of ``log`` counts as published then. (A note the key did
    sign may still state more than the ledger holds, restored from an older copy say: a caller
    serving entries checks it has them.)"""
    return _signed_size(_published_note(out_dir), log.verifier_key(), log.origin)


@functools.lru_cache(maxsize=8)
def _signed_size(signed: str, key: str, origin: str) -> int:
    """The size ``signed`` states if ``key`` signed it for ``origin``, else 0: kept for the few
    notes a folder holds in turn, as a service asks once per request of an entries tile."""
    try:
        return open_checkpoint(signed, Verifier.from_key(key), origin).size
    except SignatureInvalid:
        return 0


def _published_note(out_dir: Path) -> str:
    """The checkpoint file of ``out_dir``, or "" when there is none that reads as text. Read
    capped and without waiting: a FIFO put there would have held the caller (a service's event
    loop, and every request with it)."""
    try:
        return read_capped(out_dir / "checkpoint", _MOST_NOTE).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _note_size(signed: str) -> int | None:
    """The tree size a checkpoint note states, or None when it is no checkpoint note."""
    try:
        return checkpoint_size(signed)
    except SignatureInvalid:
        return None


@contextlib.contextmanager
def _publishing(out_dir: Path) -> Iterator[None]:
    """An exclusive lock on the folder itself (no lock file to be served with the tiles)."""
    fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing lets go of the lock


def _tiles(store: LedgerStore, out_dir: Path, checkpoint: Checkpoint, hashes_only: bool) -> tuple[int, int]:
    written = removed = 0
    size = checkpoint.size
    level = 0
    while True:
        height = TILE_HEIGHT * level
        count = size >> height  # complete subtrees of 2**height leaves
        if count == 0:
            break
        for index in range((count + TILE_WIDTH - 1) // TILE_WIDTH):
            start = index * TILE_WIDTH
            width = min(TILE_WIDTH, count - start)
            kinds = [str(level)] if level or hashes_only else [str(level), "entries"]
            for kind in kinds:
                target = out_dir / tile_path(kind, index, width)
                if width < TILE_WIDTH or not target.exists():  # a full tile never changes
                    if kind == "entries":
                        data = entry_bundle([e.data for e in store.entries(start, start + width)])
                    else:
                        data = b"".join(store.hashes(height, start, start + width))
                    write_atomically(target, data)
                    written += 1
                if width == TILE_WIDTH:
                    # Every partial tile of a published checkpoint stays servable until the full
                    # tile exists (c2sp.org/tlog-tiles): a client holding an older checkpoint asks for it.
                    removed += _drop_narrower(out_dir, kind, index, width)
        level += 1
    return written, removed


def _drop_narrower(out_dir: Path, kind: str, index: int, width: int) -> int:
    """Remove the partial tiles of ``index``, once its full tile is written."""
    folder = (out_dir / tile_path(kind, index, 1)).parent
    if not folder.is_dir():
        return 0
    gone = 0
    for old in folder.iterdir():
        if old.name.isdigit() and int(old.name) < width:
            old.unlink()
            gone += 1
    if width == TILE_WIDTH and not any(folder.iterdir()):
        folder.rmdir()
    return gone


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the old file or the new, never half),
    readable by all: a published log is served as it is. See ``answerable._files.written_whole``
    for what is written through instead (a link, a device: ``--out /dev/null --force``, run as
    root, once replaced the machine's /dev/null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_whole(path, mode=0o644) as handle:
        handle.write(data)
