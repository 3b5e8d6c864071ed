"""Text that code outside answerable hands over (a partner's exception, a builder's error) as the
ledger can hold it, whatever that code does.

Such text is recorded after the world may have changed: a call's error goes into its Execution.
Reading it must not fail (an exception whose ``__str__`` raises), and what is read must have a
JSON form (a lone surrogate, from bytes decoded with ``surrogateescape`` or a partner's
``"\\udcff"``, has none): otherwise the call's outcome goes unrecorded and its claim stays open.
"""

from __future__ import annotations

__all__ = ["MOST_SAID", "exception_text", "message_of", "recordable"]

MOST_SAID = 4_096
"""Characters of an error the ledger keeps: a partner's error page or an exception carrying a
whole payload would make an entry too big to record, and the call's outcome would go unrecorded."""


def exception_text(exc: BaseException) -> str:
    """``Type: message`` of an exception, never failing (see :func:`message_of`)."""
    return f"{type(exc).__name__}: {message_of(exc)}"


def message_of(exc: BaseException) -> str:
    """``str(exc)``, never failing: an exception whose message cannot be read says so, and what
    reading it raised."""
    try:
        return str(exc)
    except Exception as unreadable:  # foreign code: its __str__ may raise anything
        return f"(its message could not be read: {type(unreadable).__name__})"


def recordable(text: str) -> str:
    """``text`` as recorded: its first :data:`MOST_SAID` characters (and how many more there
    were), with any lone surrogate written as its escape (``\\udcff``), which JSON can hold."""
    if not text.isascii():  # escaped first, so the cut holds whatever the escapes add
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MOST_SAID:
        text = f"{text[:MOST_SAID]}… ({len(text) - MOST_SAID:,} more characters not recorded)"
    return text
