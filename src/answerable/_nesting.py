"""How deep a Cedar text nests, measured before Cedar reads it.

Cedar's parser and validator recurse on the native stack: policies nested some 700 brackets deep,
a chain of 20,000 ``&&`` or 5,000 ``if``s, or a schema of 10,000 nested records end the whole
process with a segmentation fault, not an error (cedarpy 4.12, on a thread of 8 MiB). Policies
and schemas are files people write and sign, so such a text is refused here, with a line saying
why, before Cedar is asked. The limits are far above what rules need (and above what the ruleset's
own JSON form could hold: orjson refuses more than 1,024 levels) and far below the crash.
"""

from __future__ import annotations

import re

__all__ = ["MAX_DEPTH", "MAX_OPERATORS", "nesting_problem"]

MAX_DEPTH = 100
"""Brackets (``(``, ``[``, ``{``; and ``<`` in a schema's ``Set<...>``) open at once."""
MAX_OPERATORS = 1_000
"""Operators in one statement (up to a ``;`` outside brackets): each is a level of Cedar's tree."""

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|//[^\n]*|&&|\|\||[-+*!.<>;()\[\]{}]|\bif\b', re.DOTALL)
_OPEN = frozenset("([{")
_CLOSE = frozenset(")]}")


def nesting_problem(text: str, *, schema: bool = False) -> str | None:
    """Why Cedar must not be given ``text``, or None. ``schema``: ``<`` and ``>`` open and close
    (``Set<Set<Long>>``); in policies they compare, and count as operators."""
    if sum(text.count(c) for c in "([{<") <= MAX_DEPTH and len(text) < MAX_OPERATORS:
        return None  # cannot nest too deep or hold too many operators: not worth a scan
    depth = operators = line = 0
    opening, closing = (_OPEN | {"<"}, _CLOSE | {">"}) if schema else (_OPEN, _CLOSE)
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] in '"/':
            continue  # a string or a comment: nothing in it nests
        if token in opening:
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                return f"line {line}: brackets nest more than {MAX_DEPTH} deep; Cedar would run out of stack"
        elif token in closing:
            depth = max(depth - 1, 0)
        elif token == ";" and depth == 0:
            operators = 0
        elif not schema:
            operators += 1
            if operators > MAX_OPERATORS:
                line = text.count("\n", 0, match.start()) + 1
                return (
                    f"line {line}: more than {MAX_OPERATORS:,} operators in one policy; Cedar would run "
                    "out of stack (a set, [a, b, ...], holds many values without nesting)"
                )
    return None
