"""Writing and reading the files a user names, without harm to what is already there.

An output is written whole or not at all: a finished temporary file is renamed over a regular
file, so a failure halfway leaves the old one. Only a regular file, named directly, is replaced
so. Anything else is written through, as ``open`` would: a link (its target is the file meant),
a device or a pipe (``/dev/null``, ``/dev/stdout``, ``<(...)``), which a rename would replace with a
regular file for the whole machine. A FIFO nobody reads or writes never blocks: it is refused at
once (written) or reads as empty (read).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["read_capped", "written_whole"]


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


def read_capped(path: Path, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``path``, or OSError(EFBIG) when it holds more (/dev/zero never
    ends). A FIFO nobody writes to opens at once and reads as empty; a pipe is read to its end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        os.set_blocking(fd, True)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit:,} bytes", str(path))
    return data
