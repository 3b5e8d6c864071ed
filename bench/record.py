"""Run one benchmark and record what it printed in bench/README.md, with the command and the date.

Run: ``python bench/record.py NAME [--readme FILE] -- COMMAND...``. The output goes to the terminal
as it is printed and, once the command succeeds, replaces the section of the README between
``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` (added under "Recorded figures" the first
time). A failing command records nothing and exits with its status, so a README never shows
figures from a run that did not finish. ``make bench`` records every benchmark this way.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shlex
import subprocess
import sys
from pathlib import Path

HEADING = "## Recorded figures"
README = Path(__file__).with_name("README.md")


def section(name: str, command: list[str], output: str, when: datetime.datetime) -> str:
    shown = " ".join(shlex.quote(Path(a).name if i == 0 else a) for i, a in enumerate(command))
    return (
        f"<!-- figures:{name} -->\n"
        f"### {name}\n\n"
        f"`{shown}`, {when:%Y-%m-%d %H:%M} UTC (recorded by `make bench`):\n\n"
        f"```\n{output.rstrip()}\n```\n"
        f"<!-- /figures:{name} -->"
    )


def record(readme: Path, name: str, text: str) -> None:
    """Replace the section ``name`` in ``readme``, or add it under the heading."""
    current = readme.read_text(encoding="utf-8")
    pattern = re.compile(rf"<!-- figures:{re.escape(name)} -->.*?<!-- /figures:{re.escape(name)} -->", re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text, current)
    elif HEADING in current:
        updated = current.rstrip() + "\n\n" + text + "\n"
    else:
        updated = current.rstrip() + f"\n\n{HEADING}\n\n" + text + "\n"
    readme.write_text(updated, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--" not in args:
        print("usage: record.py NAME [--readme FILE] -- COMMAND...", file=sys.stderr)
        return 2
    cut = args.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--readme", type=Path, default=README)
    opts = parser.parse_args(args[:cut])
    command = args[cut + 1 :]
    if not command or not re.fullmatch(r"[a-z0-9_-]+", opts.name):
        print("record.py: give a NAME of a-z, 0-9, _ and - and a command after --", file=sys.stderr)
        return 2
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as run:
        if run.stdout is None:
            return 2
        for line in run.stdout:
            sys.stdout.write(line)
            lines.append(line)
    if run.returncode != 0:
        print(f"record.py: {command[0]} exited {run.returncode}; nothing recorded", file=sys.stderr)
        return run.returncode
    when = datetime.datetime.now(datetime.UTC)
    record(opts.readme, opts.name, section(opts.name, command, "".join(lines), when))
    return 0


if __name__ == "__main__":
    sys.exit(main())
