"""How deep a Cedar text nests, measured before Cedar reads it.

Cedar's parser and validator recurse on the native stack: policies nested some 700 brackets deep,
a chain of 20,000 ``&&`` or 5,000 ``if``s, or a schema of 10,000 nested records end the whole
process with a segmentation fault, not an error (cedarpy 4.12, on a thread of 8 MiB). Policies
and schemas are files people write and sign, so such a text is refused here, with a line saying
why, before Cedar is asked. The limits are far above what rules need and far below the crash.
An earlier version could sign nothing past the operator limit (orjson refused the JSON form of
a ruleset that deep); past the bracket limit, only parentheses 200 to 700 deep, which no rule
has: a recorded ruleset that deep would now be refused where the gateway reads it back.
"""

from __future__ import annotations

import re

from answerable.errors import PolicyInvalid

__all__ = ["MAX_DEPTH", "MAX_OPERATORS", "refuse_too_deep"]

MAX_DEPTH = 200
"""Brackets (``(``, ``[``, ``{``; and ``<`` in a schema's ``Set<...>``) open at once: parentheses
crashed Cedar from about 700."""
MAX_OPERATORS = 1_000
"""Operators in a row within one statement (``&&``, ``||``, ``if``, ``+``, ``.``, ...): each is a
level of Cedar's tree, and 5,000 ``if``s crashed it. A comma starts the count again from where
its bracket opened: the values of a set, or a call's arguments, lie side by side, not one below
the other."""

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|//[^\n]*|&&|\|\||[-+*!.<>;,()\[\]{}]|\bif\b', re.DOTALL)
_OPEN = frozenset("([{")
_CLOSE = frozenset(")]}")


def refuse_too_deep(text: str, *, schema: bool = False) -> None:
    """Refuse a policy (or, with ``schema``, a schema) text Cedar must not be given.

    Raises:
        PolicyInvalid: naming the line and what is too deep there.
    """
    why = _nesting_problem(text, schema=schema)
    if why is not None:
        raise PolicyInvalid(f"Cedar {'schema' if schema else 'policies'}: {why}", errors=(why,))


def _nesting_problem(text: str, *, schema: bool) -> str | None:
    """Why Cedar must not be given ``text``, or None. ``schema``: ``<`` and ``>`` open and close
    (``Set<Set<Long>>``); in policies they compare, and count as operators."""
    if sum(text.count(c) for c in "([{<") <= MAX_DEPTH and len(text) < MAX_OPERATORS:
        return None  # cannot nest too deep or hold too many operators: not worth a scan
    opening, closing = (_OPEN | {"<"}, _CLOSE | {">"}) if schema else (_OPEN, _CLOSE)
    operators = 0
    entered: list[int] = []  # the operator count where each open bracket began
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] in '"/':
            continue  # a string or a comment: nothing in it nests
        if token in opening:
            entered.append(operators)
            if len(entered) > MAX_DEPTH:
                return _said(text, match.start(), f"brackets nest more than {MAX_DEPTH} deep")
        elif token in closing:
            if entered:
                entered.pop()
        elif token == ",":
            operators = entered[-1] if entered else 0
        elif token == ";" and not entered:
            operators = 0
        elif not schema:
            operators += 1
            if operators > MAX_OPERATORS:
                return _said(
                    text,
                    match.start(),
                    f"more than {MAX_OPERATORS:,} operators in a row in one policy (a set, "
                    "[a, b, ...], holds many values side by side)",
                )
    return None


def _said(text: str, at: int, what: str) -> str:
    return f"line {text.count(chr(10), 0, at) + 1}: {what}; Cedar would run out of stack"
