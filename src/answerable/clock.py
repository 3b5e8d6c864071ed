"""Time and identity as inputs, so that runs can be replayed and tests need no sleeps."""

from __future__ import annotations

import calendar
import functools
import hashlib
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Clock", "FakeClock", "IdSource", "SystemClock", "on_the_calendar", "parse_rfc3339", "rfc3339"]


class Clock(Protocol):
    """Where answerable reads the time: nanoseconds since the Unix epoch, UTC."""

    def now_ns(self) -> int: ...


class SystemClock:
    """The real wall clock."""

    def now_ns(self) -> int:
        return time.time_ns()


@dataclass
class FakeClock:
    """A clock that moves only when a test or a simulator says so."""

    ns: int = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

    def now_ns(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1_000_000_000)


_SECOND: tuple[int | None, str] = (None, "")
"""The last whole second formatted, and its text: records made within one second share it."""


def rfc3339(ns: int) -> str:
    """UTC RFC 3339 with microseconds, the one time format in hashed records.

    Integer arithmetic throughout: no float rounding of nanoseconds, and several times faster
    than formatting a datetime, which matters at four records per governed action; the date and
    time of day are formatted once per second.
    """
    global _SECOND
    seconds, rest = divmod(ns, 1_000_000_000)
    second = _SECOND
    if second[0] != seconds:
        t = time.gmtime(seconds)
        text = "%04d-%02d-%02dT%02d:%02d:%02d" % (  # noqa: UP031 - measurably faster than f-strings here
            t.tm_year,
            t.tm_mon,
            t.tm_mday,
            t.tm_hour,
            t.tm_min,
            t.tm_sec,
        )
        second = _SECOND = (seconds, text)
    return f"{second[1]}.{rest // 1000:06d}Z"


def on_the_calendar(at: str) -> bool:
    """Whether a time of a record's shape (``YYYY-MM-DDTHH:MM:SS...Z``, which the record pattern
    holds it to) is one the calendar has: the pattern admits a 13th month. Checked by the hour,
    which entries share by the thousand, so a gateway can ask it of every intent it is handed."""
    return _hour_exists(at[:13]) and at[14:16] < "60" and at[17:19] < "60"


@functools.lru_cache(maxsize=4096)
def _hour_exists(prefix: str) -> bool:
    try:
        parse_rfc3339(prefix + ":00:00Z")
    except ValueError:
        return False
    return True


def parse_rfc3339(at: str) -> int:
    """Nanoseconds since the epoch of a record time (``…Z``, up to nine fractional digits): the
    inverse of :func:`rfc3339`, in integers, so no nanosecond is rounded away. Read by slicing,
    not ``strptime``: monitors call it for every entry a time window reads.

    Raises:
        ValueError: ``at`` is not such a time.
    """
    head, fraction = at[:19], at[20:-1]
    if (
        len(at) < 20
        or at[-1] != "Z"
        or (len(at) > 20 and at[19] != ".")
        or (head[4], head[7], head[10], head[13], head[16]) != ("-", "-", "T", ":", ":")
    ):
        raise ValueError(f"{at!r} is not a UTC record time")
    digits = head[:4] + head[5:7] + head[8:10] + head[11:13] + head[14:16] + head[17:19] + fraction
    if len(digits) != 14 + len(fraction) or not (digits.isascii() and digits.isdigit()) or len(fraction) > 9:
        raise ValueError(f"{at!r} is not a UTC record time")
    year, month, day = int(head[:4]), int(head[5:7]), int(head[8:10])
    hour, minute, second = int(head[11:13]), int(head[14:16]), int(head[17:19])
    if not (year >= 1 and 1 <= month <= 12 and hour < 24 and minute < 60 and second < 60):
        raise ValueError(f"{at!r} is not a UTC record time")
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise ValueError(f"{at!r} is not a UTC record time")
    whole = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    return whole * 1_000_000_000 + int((fraction + "000000000")[:9])


@dataclass
class IdSource:
    """UUIDv7 ids (RFC 9562) that sort by time and stay strictly increasing within one source.

    Python 3.11 has no ``uuid7``; the layout is 48 bits of milliseconds, the version, then 74
    random bits. Within one millisecond the random tail is incremented instead of redrawn, as
    RFC 9562 §6.2 method 2 allows, so ids from one process never go backwards.
    """

    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=lambda: random.Random(os.urandom(16)))
    _last_ms: int = -1
    _last_tail: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new(self) -> str:
        with self._lock:
            ms = self.clock.now_ns() // 1_000_000
            if ms > self._last_ms:
                # 73 random bits, the top one of 74 kept clear: room to increment within a millisecond.
                tail = self.rng.getrandbits(73)
                self._last_ms = ms
            else:  # the same millisecond, or the clock stepped back: never an id that sorts lower
                ms, tail = self._last_ms, self._last_tail + 1
            self._last_tail = tail
        return _uuid7(ms, tail)

    @staticmethod
    def derived(ns: int, key: str) -> str:
        """A UUIDv7 id for a record that must come out the same when it is made again: the time
        ``ns``, and 73 bits of SHA-256 of ``key`` in place of random ones (an agent's message,
        made again by its handler run again after a crash, is then the message already sent)."""
        tail = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:10], "big") >> 7
        return _uuid7(ns // 1_000_000, tail)


_MS_TEXT: tuple[int, str] = (-1, "")
"""The last millisecond's part of an id, as text: ids made within one millisecond share it."""
_LOW_62 = (1 << 62) - 1


def _uuid7(ms: int, tail: int) -> str:
    """``str(uuid.UUID(int=...))`` of the UUIDv7 of ``ms`` and the 74-bit ``tail``, spelled out:
    the millisecond's part formatted once per millisecond, the tail's 19 hex digits at once."""
    global _MS_TEXT
    if not (0 <= ms < 1 << 48 and 0 <= tail < 1 << 74):  # a clock off the UUID's range: as it was
        return _uuid7_whole(ms, tail)
    known = _MS_TEXT
    if known[0] != ms:
        h = "%012x" % ms  # noqa: UP031 - measurably faster than f-strings here
        known = _MS_TEXT = (ms, f"{h[:8]}-{h[8:]}-7")
    # rand_a (12 bits), the variant (0b10), rand_b (62 bits): 76 bits, 19 hex digits.
    t = "%019x" % (((tail >> 62) << 64) | (0b10 << 62) | (tail & _LOW_62))
    return f"{known[1]}{t[:3]}-{t[3:7]}-{t[7:]}"


def _uuid7_whole(ms: int, tail: int) -> str:
    rand_a = (tail >> 62) & 0xFFF
    rand_b = tail & _LOW_62
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
