"""What counts as a reason: the one rule for every reason a person writes into the ledger.

A halt, a pause, a resume and an answer to a review each carry a reason, because the ledger must
say why, not only who. Text of spaces, zero-width marks or control characters passes a
``strip()`` and says nothing, so a reason needs a visible sign (Unicode categories L, N, P, S),
whichever door it comes in by: the command line, the service, the console or the library.

Checked where a record is made, never where one is read: a record written before this rule
still reads and counts as it did.
"""

from __future__ import annotations

import unicodedata

__all__ = ["says_something"]


def says_something(reason: object) -> bool:
    """True when ``reason`` is text holding at least one visible sign: a letter, digit,
    punctuation or symbol ("🛑" or "!!!" may stop a system in a hurry; a zero-width space may not)."""
    return isinstance(reason, str) and any(unicodedata.category(c)[0] in "LNPS" for c in reason)
