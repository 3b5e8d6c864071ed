"""What ``answerable halt`` and ``answerable pause`` do once parsed: record the stop, print one line.

Shared by the typer command and by the path that parses these two without typer
(``answerable._entry``), so both commit the same entry and print the same bytes. The ledger,
control and records are imported when the stop is recorded, not when this module is.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from answerable._tty import print_json, say

if TYPE_CHECKING:
    from answerable.records import Control

__all__ = ["DEFAULT_SCOPE", "STOPS", "record", "report"]

STOPS = ("halt", "pause")
"""The two commands anyone may run, unsigned, to stop a scope at once."""
DEFAULT_SCOPE = "system"
"""What a stop stops when no ``--scope`` is given."""


def record(ledger: str, action: str, by: str, reason: str, scope: str) -> tuple[Control, str | None]:
    """Commit a stop of ``scope`` (as the command line spells it) to ``ledger``; it is durable
    when this returns. Appended without an event loop: starting one would cost the halt time.
    With it, what the stop does not reach (see :func:`answerable.control.names_nothing`), judged
    after the commit: a stop is never delayed.

    Raises:
        AnswerableError: the scope, ``by`` or ``reason`` is refused (ConfigError, RecordInvalid),
            or the ledger cannot be opened or written (a LedgerError), each said in one line.
    """
    from answerable.control import Controller, names_nothing, scope_from_text
    from answerable.ledger.location import open_ledger

    parsed = scope_from_text(scope)
    with open_ledger(ledger) as store:
        controller = Controller(store)
        stop = controller.make(action, parsed, by, reason)
        store.append_sync([stop])
        return stop, names_nothing(store, parsed, controller.charters)


def report(control: Control, as_json: bool, warning: str | None = None) -> None:
    """The line a control command prints: the entry's id, action, scope and author; and on
    stderr, a warning when the stop reaches nothing (``"warning"`` in the JSON)."""
    if as_json:
        doc = {"id": control.id, "action": control.action, "scope": control.scope.label(), "by": control.by}
        print_json(doc if warning is None else {**doc, "warning": warning})
    else:
        say(f"{control.action} recorded: {control.id} on {control.scope.label()} by {control.by}")
    if warning is not None:
        sys.stdout.flush()
        sys.stderr.write(f"answerable: warning: {warning}\n")
