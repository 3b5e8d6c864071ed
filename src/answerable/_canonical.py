"""Canonical JSON (RFC 8785), the only bytes answerable ever hashes or signs."""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

from answerable.errors import RecordInvalid

__all__ = ["canonical_bytes"]

_SAFE_INT = 2**53 - 1


def _needs_full_jcs(value: Any) -> bool:
    """True when orjson's sorted output could differ from RFC 8785.

    The two agree on every document whose numbers are integers in the I-JSON safe range and whose
    object keys are ASCII (ASCII sorts the same by UTF-16 code unit and by code point). Floats
    (ECMAScript number formatting), non-ASCII keys and unsafe integers take the slow, exact path.
    A hypothesis test pins the agreement. Iterative, with exact type checks first: this runs on
    every record the ledger writes.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is dict:
            for key, child in item.items():
                if not key.isascii():
                    return True
                stack.append(child)
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is int:
            if not -_SAFE_INT <= item <= _SAFE_INT:
                return True
        elif kind is float:
            return True
        elif isinstance(item, dict):
            stack.append(dict(item))
        elif isinstance(item, list | tuple):
            stack.append(list(item))
        elif isinstance(item, int) and not isinstance(item, bool):
            stack.append(int(item))
        elif isinstance(item, float):
            return True
    return False


def canonical_bytes(value: Any) -> bytes:
    """Serialize a JSON-compatible value to its RFC 8785 canonical form.

    orjson is about fifty times faster than the pure-Python encoder and yields the same bytes on
    the common case, so it is the fast path; anything else goes through ``rfc8785`` itself.
    """
    if _needs_full_jcs(value):
        try:
            return bytes(rfc8785.dumps(value))
        except rfc8785.CanonicalizationError as exc:
            raise RecordInvalid(f"value has no canonical JSON form (RFC 8785): {exc}") from exc
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # e.g. a lone surrogate in a string
        raise RecordInvalid(f"value has no canonical JSON form: {exc}") from exc
