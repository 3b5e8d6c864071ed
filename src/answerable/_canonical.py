"""Canonical JSON (RFC 8785), the only bytes answerable ever hashes or signs."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

import orjson
import rfc8785

from answerable.errors import RecordInvalid

__all__ = [
    "MAX_NESTING",
    "SAFE_INT",
    "canonical_bytes",
    "is_simple_json",
    "json_problems",
    "simple_json_containers",
    "sorted_bytes",
]

SAFE_INT = 2**53 - 1
"""The I-JSON (RFC 7493) integer range: every JSON reader, JavaScript included, holds it exactly."""
_EXPONENT_FROM = 1e21
"""The magnitude from which RFC 8785 (ECMAScript's number format) writes a number with an
exponent; below it, a number with no fraction is written in whole digits."""

MAX_NESTING = 254
"""The deepest nesting of objects and arrays canonical JSON accepts: orjson's own limit, applied
to the exact path too, so a value never has canonical bytes on one path and none on the other."""


_MOST_MEMBERS = 4_000_000
"""Members of objects and arrays the fast walk takes before it leaves a value to the exact path.
A value that holds itself (a dict in its own values, a list in itself many times over) would keep
the walk going for ever, or fill memory, after a call whose response it was; bounding what the
walk takes bounds both (at most this many references held, 32 MB). Four million members is
megabytes of JSON: such a value is written by the exact path, the same bytes, more slowly."""


def _simple_containers(value: Any, exact: bool = False) -> int:
    """-1 when orjson's sorted output could differ from RFC 8785, or orjson would accept a value
    that has no JSON form; otherwise how many objects and arrays ``value`` holds (itself
    included), an upper bound of its nesting depth that costs nothing extra to count.

    The two agree on every document whose numbers are integers in the I-JSON safe range and whose
    object keys are ASCII strings (ASCII sorts the same by UTF-16 code unit and by code point).
    Floats (ECMAScript number formatting, and NaN, which orjson writes as ``null``), non-ASCII or
    non-string keys, unsafe integers and anything that is not a JSON value at all (orjson would
    write a datetime, a dataclass or an enum its own way) take the slow, exact path, which names
    the problem. A hypothesis test pins the agreement. Iterative, with exact type checks first:
    this runs on every record the ledger writes.
    """
    stack = [value]
    containers = walked = 0
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            containers += 1
            walked += len(item)
            if walked > _MOST_MEMBERS:  # or a cycle: the exact path's depth limit names it
                return -1
            try:
                for key, child in item.items():
                    if not key.isascii() or (exact and type(key) is not str):  # a str subclass may lie
                        return -1
                    if type(child) is not str:  # most values are text: no trip through the stack
                        stack.append(child)
            except AttributeError:  # a key that is not a string (bytes keys orjson refuses itself)
                return -1
        elif kind is str or kind is bool or item is None:
            continue
        elif kind is list or kind is tuple:
            containers += 1
            walked += len(item)
            if walked > _MOST_MEMBERS:
                return -1
            stack.extend(item)
        elif kind is int:
            if not -SAFE_INT <= item <= SAFE_INT:
                return -1
        elif kind is float or exact:  # ``exact``: no subclass either (an enum, a list that
            return -1  # iterates otherwise than it stores), read as orjson would not read it
        elif isinstance(item, str):
            continue
        elif isinstance(item, dict):
            stack.append(dict(item))
        elif isinstance(item, list | tuple):
            stack.append(list(item))
        elif isinstance(item, int) and not isinstance(item, bool):
            stack.append(int(item))
        else:  # a float subclass, or not a JSON value at all
            return -1
    return containers


def _needs_full_jcs(value: Any) -> bool:
    return _simple_containers(value) < 0


def simple_json_containers(value: Any, *, exact: bool = False) -> int | None:
    """How many objects and arrays a value that :func:`is_simple_json` holds (an upper bound of
    its depth: a caller with a depth limit above it need not measure the depth); None when the
    value is not simple JSON. ``exact``: None too for any subclass of a JSON type (a str or int
    enum, a dict or list subclass), which orjson reads from its storage, not as the walk does."""
    found = _simple_containers(value, exact)
    return None if found < 0 else found


def is_simple_json(value: Any) -> bool:
    """True when ``value`` is JSON beyond doubt and cheap to check: objects with ASCII string keys,
    arrays, strings, booleans, null and I-JSON integers. Not looked for, because orjson refuses
    them itself: lone surrogates, bytes keys, nesting past :data:`MAX_NESTING`. False means look
    closer with :func:`json_problems`; floats, for one, are JSON unless NaN or infinite."""
    return not _needs_full_jcs(value)


def json_problems(
    value: Any, *, max_depth: int = MAX_NESTING, strict: bool = True, limit: int = 10, read_back: bool = False
) -> list[str]:
    """Why ``value`` has no canonical JSON form, each as ``path: what is wrong`` (empty if it has one).

    Checked: NaN and infinities (JSON has neither; orjson would write ``null``), strings and keys
    holding a lone surrogate (no UTF-8 form), nesting deeper than ``max_depth`` objects and
    arrays, and with ``strict`` also integers outside the I-JSON range, keys that are not strings
    and values that are not JSON (sets, bytes, datetimes, objects). ``strict=False`` looks only
    at what no JSON form can carry, for Python values still to be converted by a schema. Paths
    are dotted like pydantic's (``items.3.weight``); the value itself is ``(root)``.

    ``read_back``: also floats that canonical JSON writes as integers outside the I-JSON range
    (whole numbers past it and below 1e21, written in whole digits), which read back as such
    integers: for values that are recorded and read back as what runs (an operation's arguments,
    Cedar's inputs), not for values that are only written or hashed (a payload, a response), whose
    bytes earlier versions wrote and digested as they are. Stops after
    ``limit`` problems. Iterative, so a deep value cannot exhaust the stack.
    """
    found: list[str] = []
    stack: list[tuple[Any, tuple[str, ...], int]] = [(value, (), 0)]
    while stack and len(found) < limit:
        item, path, depth = stack.pop()
        problem: str | None = None
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, str):
            problem = _surrogate(item, "string")
        elif isinstance(item, float):
            if not math.isfinite(item):
                problem = f"{item!r} is not a JSON number; JSON has no NaN or Infinity"
            elif read_back and SAFE_INT < abs(item) < _EXPONENT_FROM:
                # Canonical JSON writes such a number in whole digits, no fraction, no exponent:
                # read back, it is an integer past the I-JSON range, which is refused above.
                problem = (
                    f"{item!r} is written in canonical JSON as an integer outside the I-JSON range "
                    "±(2**53-1), and read back as one; send it as a string"
                )
        elif isinstance(item, int):
            if strict and not -SAFE_INT <= item <= SAFE_INT:
                # Python writes no integer of more than 4,300 digits (a ValueError): a long one is
                # named by its size, and nobody reads a hundred digits anyway.
                said = str(item) if item.bit_length() <= 128 else f"of {item.bit_length():,} bits"
                problem = f"integer {said} is outside the I-JSON range ±(2**53-1); send it as a string"
        elif isinstance(item, dict | list | tuple):
            if depth + 1 > max_depth:
                problem = f"nested deeper than {max_depth} objects and arrays"
            elif isinstance(item, dict):
                for key, child in reversed(item.items()):
                    if not isinstance(key, str):
                        if strict:
                            found.append(f"{_path(path)}: key {key!r} is not a string")
                        continue
                    bad_key = _surrogate(key, f"key {key!r}")
                    if bad_key is not None:
                        found.append(f"{_path(path)}: {bad_key}")
                        continue
                    stack.append((child, (*path, key), depth + 1))
            else:
                stack.extend(
                    (child, (*path, str(i)), depth + 1) for i, child in reversed(list(enumerate(item)))
                )
        elif strict:
            name = type(item).__name__
            problem = f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name} is not a JSON value"
        if problem is not None:
            found.append(f"{_path(path)}: {problem}")
    return found[:limit]


def _surrogate(text: str, what: str) -> str | None:
    """The complaint about a lone surrogate in ``text``, which has no UTF-8 (so no JSON) form."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{what} holds a lone surrogate at position {exc.start}, which has no UTF-8 form"
    return None


def _path(path: tuple[str, ...]) -> str:
    if len(path) > 8:  # a deep path: its ends say where, the middle only how deep
        return ".".join((*path[:3], f"…{len(path) - 6} levels…", *path[-3:]))
    return ".".join(path) or "(root)"


_FAST = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
"""Sorted keys, and integers outside the I-JSON range refused (sent to the exact path, which
names them) by orjson itself, so no walk needs to look at integers."""


_EXACT = (
    _FAST
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
"""orjson writing only what it writes as JSON would: a subclass of a JSON type, a datetime or a
dataclass (which it writes its own way, a dataclass's keys unsorted) goes to ``default``."""


def sorted_bytes(value: Any, *, default: Callable[[Any], Any]) -> bytes | None:
    """orjson's sorted bytes of ``value``, each object that is not exactly a JSON type handed to
    ``default`` for what it dumps as (TypeError: it is none of those). When the caller knows
    the whole of it is simple JSON (see :func:`is_simple_json`), these are its canonical bytes,
    made in one pass with no copy of the value. None where orjson refuses: an unsafe integer, a
    lone surrogate, nesting too deep, an object ``default`` does not take."""
    try:
        return orjson.dumps(value, default=default, option=_EXACT)
    except orjson.JSONEncodeError:
        return None


def canonical_bytes(value: Any, *, walk: Collection[str] | None = None) -> bytes:
    """Serialize a JSON value to its RFC 8785 canonical form.

    orjson is about fifty times faster than the pure-Python encoder and yields the same bytes on
    the common case, so it is the fast path; anything else is checked (naming where it is not
    JSON) and goes through ``rfc8785`` itself.

    ``walk``: ``value`` is an object whose members other than these are simple JSON by
    construction (a record's typed fields: strings, integers, booleans, null and arrays and
    objects of them with ASCII keys), so only these members are looked at for floats, non-ASCII
    keys and non-JSON values. The walk is the costly part of a record's bytes; the typed fields
    are most of a record.

    Raises:
        RecordInvalid: the value has no canonical JSON form (NaN, a lone surrogate, a set ...).
    """
    if walk is None:
        doubtful = _needs_full_jcs(value)
    else:
        doubtful = any(_simple_containers(value[name]) < 0 for name in walk if name in value)
    if not doubtful:
        try:
            return orjson.dumps(value, option=_FAST)
        except orjson.JSONEncodeError:  # an unsafe integer, a lone surrogate, nesting too deep
            pass
    problems = json_problems(value, limit=3)
    if problems:
        raise RecordInvalid(f"value has no canonical JSON form: {'; '.join(problems)}")
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, ValueError, TypeError, RecursionError) as exc:
        raise RecordInvalid(f"value has no canonical JSON form (RFC 8785): {exc}") from exc
