"""What the command line prints: one line, one JSON document, or one error line and its exit code.

Kept apart from ``answerable.cli`` so that the path that halts without typer (``answerable._entry``)
prints exactly what the typer commands print, from the same code. Rich is imported only when a
line needs it: importing it costs a halt more than its whole commit.
"""

from __future__ import annotations

import errno
import re
import sys
from typing import TYPE_CHECKING, Any

import orjson

from answerable.errors import AnswerableError, LedgerTampered, NotAuthorized, ProofInvalid, SignatureInvalid

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["CONSOLES", "Stdout", "err", "os_said", "out", "print_json", "printable", "said", "say"]

CONSOLES: dict[bool, Console] = {}
"""The Rich console for stdout (False) and stderr (True), made on first use; the CLI's root
command clears it, so each invocation's consoles read that invocation's environment."""

_NO = (LedgerTampered, ProofInvalid, NotAuthorized, SignatureInvalid)
"""Errors that mean "it ran and the answer is no" (exit 1); every other AnswerableError exits 2."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0 and C1 control characters: ESC, CSI and OSC start the sequences a terminal obeys."""


def _console(stderr: bool) -> Console:
    console = CONSOLES.get(stderr)
    if console is None:
        from rich.console import Console

        # No emoji codes: ":smile:" in a name someone chose is printed as typed, not as a picture.
        console = CONSOLES[stderr] = Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)
    return console


def out() -> Console:
    return _console(stderr=False)


def err() -> Console:
    return _console(stderr=True)


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\n``).

    What the ledger holds is anyone's text (an agent's message, a reason someone typed), and a
    terminal obeys what starts with ESC: colours, a window title, a link, a write to the clipboard.
    Escaped, a line stays one line and says what it holds.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def say(line: str) -> None:
    """Print ``line`` as it is, its control characters escaped: no markup, no emoji codes (a
    bracket or ``:word:`` in a name someone chose is printed as typed), and no Rich to import."""
    sys.stdout.write(printable(line) + "\n")
    sys.stdout.flush()


def said(exc: AnswerableError) -> int:
    """Say ``exc`` in one line on stderr; the exit code it means."""
    code = getattr(exc, "reason_code", "")  # stable for scripts: printed where a script can grep it
    err().print(printable(f"answerable: error: {f'[{code}] ' if code else ''}{exc}"), markup=False)
    # A review id that names none is what the user typed, as for `reviews --id`: input, not a "no".
    return 1 if isinstance(exc, _NO) and code != "unknown_review" else 2


_NAME_WRONG = frozenset(
    {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT}
)
"""What a system call says of a path no file system would take as given: the user's input (exit
2). Anything else (no permission, a full disk, an I/O error) is the machine's state (exit 1)."""
_SHOWN = 80
"""Characters of a file name shown: a name refused for its length is not printed whole."""


def os_said(exc: OSError) -> int:
    """Say in one line on stderr what the operating system refused and of which file; the exit code.

    The last resort, so that no command ends in a traceback: a fault a command can name in its own
    terms is raised where it is found. What reaches here is mostly a path refused where it was first
    probed (``pathlib``'s ``exists()`` on this Python raises for a name over the file system's limit,
    where ``os.path.exists`` says False), which a command does before its work.
    """
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    shown = [n if len(n) <= _SHOWN else f"{n[:_SHOWN]}... ({len(n):,} characters)" for n in names]
    what = exc.strerror or type(exc).__name__
    err().print(printable(f"answerable: error: {' -> '.join(shown) or 'a file'}: {what}"), markup=False)
    return 2 if exc.errno in _NAME_WRONG else 1


def print_json(value: Any) -> None:
    """One JSON document on one line of stdout, keys sorted."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() + "\n")


class Stdout:
    """Standard output, remembering the write that failed; everything else is the stream's own.

    A command's output comes after its work: a halt is committed before it says so. When the line
    cannot be written (``> /dev/full``, standard output closed with ``>&-``, the reader of a pipe
    gone) the work stands, and the console script says that in one line instead of a traceback.
    It must tell that failure from any other ``OSError``, hence this wrapper: it records the
    exception it passes on, and ``main`` compares. A closed standard output (Python makes it None)
    fails on first use, as a closed descriptor does in any program.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.failure: OSError | None = None

    def _stream_or_fail(self) -> Any:
        if self._stream is None:
            self.failure = OSError(errno.EBADF, "standard output is closed")
            raise self.failure
        return self._stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream_or_fail().write(text))
        except OSError as exc:
            self.failure = exc
            raise

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            self.failure = exc
            raise

    def isatty(self) -> bool:
        return self._stream is not None and bool(self._stream.isatty())

    def fileno(self) -> int:
        return int(self._stream_or_fail().fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream_or_fail(), name)
