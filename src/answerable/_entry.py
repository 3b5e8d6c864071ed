"""The ``answerable`` command's front door: halt and pause without typer, everything else with it.

A halt is pressed when something must stop now, and what it waits for first is start-up. Typer
builds its command from the function's signature and pydantic type adapters, which cost a halt
about a third of its time from process start to committed entry (``bench/cli_latency.py``). So a
command line that is plainly a halt or a pause, in the forms people type, is parsed here with no
library and recorded by the same code the typer command calls (``answerable._stop``). Anything
this parser is not sure of (``--help``, ``--``, an unknown option, a missing one, an option value
that starts with ``-``) goes to typer unchanged, which parses, refuses and helps as it always has:
this path may decline a command line, never read one differently (a property test holds it to
click's reading of the same words).

Two more start-up costs are skipped on this path, both safe in a process that lives for one
commit: the cyclic garbage collector (start-up allocates millions of objects and frees none of
them), and the scan of every installed package for pydantic plugins (``PYDANTIC_DISABLE_PLUGINS``,
unless the caller set it: a halt validates one record). And once the entry is committed and the
line printed and flushed, the process exits without tearing the interpreter down.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn, TextIO, cast

from answerable._stop import DEFAULT_SCOPE, STOPS, record, report
from answerable._tty import Stdout, os_said, said
from answerable.errors import AnswerableError

__all__ = ["StopLine", "main", "parse"]

_VALUED = {"--by": "by", "--reason": "reason", "--scope": "scope"}


@dataclass(frozen=True, slots=True)
class StopLine:
    """A halt or pause command line, as click would read it."""

    action: str
    ledger: str
    by: str
    reason: str
    scope: str = DEFAULT_SCOPE
    as_json: bool = False


def parse(argv: Sequence[str]) -> StopLine | None:
    """``argv`` (without the program name) read as a halt or pause, or None to leave it to typer.

    Accepted: the action first, then in any order one ledger, ``--by``, ``--reason`` and
    optionally ``--scope`` (each ``--name value`` or ``--name=value``, the last one given
    winning, as in click) and ``--json``.
    """
    if not argv or argv[0] not in STOPS:
        return None
    values: dict[str, str] = {}
    ledger: str | None = None
    as_json = False
    words = iter(argv[1:])
    for word in words:
        if word == "--json":
            as_json = True
            continue
        name, eq, value = word.partition("=")
        if name in _VALUED:
            if not eq:
                following = next(words, None)
                if following is None or following.startswith("-"):
                    return None  # click would take it as the value; typer says what it makes of it
                value = following
            values[_VALUED[name]] = value
            continue
        if word.startswith("-") or ledger is not None:
            return None
        ledger = word
    if ledger is None or "by" not in values or "reason" not in values:
        return None
    return StopLine(action=argv[0], ledger=ledger, as_json=as_json, **values)


def main() -> None:
    """The console script ``answerable``."""
    stdout = Stdout(sys.stdout)
    sys.stdout = cast(TextIO, stdout)
    try:
        line = parse(sys.argv[1:])
        if line is None:
            from answerable.cli import main as everything

            try:
                everything()
            finally:  # what is still buffered fails here, not in the interpreter's teardown
                stdout.flush()
            return
        _stop(line)
    except OSError as exc:
        if exc is not stdout.failure:
            raise SystemExit(os_said(exc)) from None
        _output_lost(exc)


def _output_lost(exc: OSError) -> NoReturn:
    """Standard output failed after the command did its work: say so in one line, exit 1.

    A reader that went away (``| head``) is told nothing, as click tells it nothing; the exit code
    is click's too. No teardown: flushing the same output again would only fail again.
    """
    if not isinstance(exc, BrokenPipeError):
        sys.stderr.write(
            f"answerable: error: standard output failed ({exc.strerror or exc}); "
            "the command ran, its output is lost\n"
        )
    sys.stderr.flush()
    os._exit(1)


def _stop(line: StopLine) -> NoReturn:
    gc.disable()
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        control, warning = record(line.ledger, line.action, line.by, line.reason, line.scope)
    except AnswerableError as exc:
        raise SystemExit(said(exc)) from None
    report(control, line.as_json, warning)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # committed, printed and flushed: nothing is left for the teardown to do


if __name__ == "__main__":
    main()
