"""Writing and reading the files a user names, without harm to what is already there.

An output is written whole or not at all: a finished temporary file is renamed over a regular
file, so a failure halfway leaves the old one. Only a regular file, named directly, is replaced
so. Anything else is written through, as ``open`` would: a link (its target is the file meant),
a device or a pipe (``/dev/null``, ``/dev/stdout``, ``<(...)``), which a rename would replace with a
regular file for the whole machine. A FIFO nobody reads or writes never blocks: it is refused at
once (written) or reads as empty (read).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["MAX_INPUT", "never_written_over", "read_capped", "written_whole"]

MAX_INPUT = 64 << 20
"""Bytes of a file a user names (a config, rules, a charter, a scenario, a receipt) read at most:
far above any real one, and a device that never ends (``/dev/zero``) is refused, not read forever."""


@contextlib.contextmanager
def written_whole(path: Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """A handle whose bytes appear at ``path`` once the block ends without an error.

    ``mode``: the new file's permissions; by default those of the file it replaces, else 0600
    (what a command writes may hold a call's arguments; a published file says 0644).

    Raises:
        OSError: the file cannot be written (a FIFO nobody reads: ENXIO, at once).
    """
    try:
        held = path.lstat()
    except FileNotFoundError:
        held = None
    if held is not None and not stat.S_ISREG(held.st_mode):  # a link, a device, a pipe: through
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | (os.O_TRUNC if path.is_file() else 0), 0o600
        )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as handle:
            yield handle
        return
    import tempfile  # here: the halt's path reads key files through this module, and pays imports

    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".answerable-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.chmod(temp, mode if mode is not None else stat.S_IMODE(held.st_mode) if held else 0o600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_capped(path: Path, limit: int = MAX_INPUT) -> bytes:
    """Up to ``limit`` bytes of ``path``, or OSError(EFBIG) when it holds more (/dev/zero never
    ends). A FIFO nobody writes to opens at once and reads as empty; a pipe is read to its end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        os.set_blocking(fd, True)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit:,} bytes", str(path))
    return data


_COMPANIONS = (".key", "-wal", "-shm", "-journal")
"""What SQLite and the ledger keep beside a database file: its key, its log, its shared memory."""


def never_written_over(path: Path) -> str | None:
    """What ``path`` is, when it must never be written over (``PATH is a database``), or None.

    A database (a ledger, say), the key or log kept beside one, or a private key file: an output
    aimed at the ledger it is made from, or at a key (the RI's, the ledger's), would destroy
    evidence or a key that cannot be made again, whoever asked (``--force`` included). A symbolic
    link is judged by what it points at, as the write would follow it.
    """
    for candidate in _and_its_target(path):
        database = candidate.is_file() and _starts_with(candidate, b"SQLite format 3\x00")
        companion = next(
            (
                c
                for c in _COMPANIONS
                if candidate.name.endswith(c) and candidate.with_name(candidate.name[: -len(c)]).is_file()
            ),
            None,
        )
        if database or companion is not None:
            what = (
                "a database"
                if companion is None
                else f"the {companion.lstrip('.-')} file of the database beside it"
            )
        elif _holds_a_private_key(candidate):
            what = "a private key file"
        else:
            continue
        shown = path if candidate == path else f"{path} (a link to {candidate})"
        return f"{shown} is {what}"
    return None


def _and_its_target(path: Path) -> list[Path]:
    """``path`` and, when it is (or passes through) a symbolic link, the file it stands for."""
    try:
        target = path.resolve()
    except (OSError, RuntimeError):  # a loop of links: the write will fail on its own, changing nothing
        return [path]
    return [path] if target == path.absolute() else [path, target]


def _holds_a_private_key(path: Path) -> bool:
    """An answerable key file (identity, then base64 of 32 bytes) or a ledger's signing key (64
    hex digits), read no further than a key file's size."""
    try:
        if not path.is_file() or path.stat().st_size > 4096:
            return False
        words = path.read_bytes().split()
    except OSError:
        return False
    if len(words) == 1 and len(words[0]) == 64:
        return all(c in b"0123456789abcdefABCDEF" for c in words[0])
    if len(words) == 2:
        try:
            return len(base64.b64decode(words[1], validate=True)) == 32
        except (binascii.Error, ValueError):
            return False
    return False


def _starts_with(path: Path, header: bytes) -> bool:
    try:
        with path.open("rb") as opened:
            return opened.read(len(header)) == header
    except OSError:
        return False
