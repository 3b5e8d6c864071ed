"""The simulated clock of a storm, shared with the gateway's process through a mapped file.

The scenario driver moves the clock (a day's morning, each modelled reviewer's answer, the
evening) and the gateway, in a process of its own, stamps what it records with it, so the
gateway in its own process stamps each record with the time the run in one process would. Two
8-byte slots: the time in nanoseconds, and the simulated day the world is on (what a rule's
context reads as "today"). Only the driver writes; an aligned 8-byte store is read whole.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from answerable.clock import FakeClock

__all__ = ["SharedClock"]

_SLOTS = struct.Struct("<qq")


class SharedClock(FakeClock):
    """A :class:`FakeClock` whose time (and day) live in a file another process maps too."""

    def __init__(self, path: Path, ns: int | None = None) -> None:
        """Map ``path``; with ``ns``, make the file (the driver) and set the time, else attach to
        one the driver made (the gateway's process).

        Raises:
            OSError: the file cannot be made or opened.
        """
        if ns is not None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            os.ftruncate(fd, _SLOTS.size)
        else:
            fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, _SLOTS.size)
        finally:
            os.close(fd)
        self.path = path
        if ns is not None:
            self.ns = ns

    @property
    def ns(self) -> int:
        return int(_SLOTS.unpack_from(self._map)[0])

    @ns.setter
    def ns(self, value: int) -> None:
        struct.pack_into("<q", self._map, 0, value)

    @property
    def today(self) -> int:
        """The simulated day the world is on."""
        return int(_SLOTS.unpack_from(self._map)[1])

    @today.setter
    def today(self, day: int) -> None:
        struct.pack_into("<q", self._map, 8, day)

    def now_ns(self) -> int:
        return self.ns

    def close(self) -> None:
        self._map.close()
