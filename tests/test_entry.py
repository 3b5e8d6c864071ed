"""The front door: halt and pause parsed without typer must mean what typer would make of them.

``answerable._entry`` reads a plain halt or pause itself, for start-up time, and hands every
other command line to typer. It may decline a line typer accepts; it must never accept a line
that typer would read differently or refuse.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import booking

from answerable import Gateway, SQLiteLedger
from answerable._entry import StopLine, parse
from answerable.cli import command

WORDS = st.sampled_from(
    [
        "--by", "--reason", "--scope", "--json", "--by=", "--reason=x", "--scope=agent:a", "--json=1",
        "--help", "-h", "--", "-", "-x", "--bye", "--by=-x", "ledger.db", "other.db", "pager",
        "", "system", "agent:router", "x=y", "--verbose",
    ]
)  # fmt: skip


def click_reading(argv: list[str]) -> dict[str, Any] | None:
    """The parameters click gives the command ``argv[0]`` for the rest, or None if it refuses."""
    group = command(argv[0])
    sub = group.get_command(click.Context(group), argv[0])
    try:
        with sub.make_context(argv[0], list(argv[1:])) as ctx:
            return dict(ctx.params)
    except (click.exceptions.Exit, click.ClickException):
        return None


VALUES = st.sampled_from(["pager", "", "-x", "--json", "--by", "a=b", "agent:router", "two words", "é"])


@st.composite
def lines(draw: st.DrawFn) -> list[str]:
    """Mostly well-formed halts and pauses (options in any order, joined by ``=`` or not, given
    twice or left out), with stray words mixed in: the cases where the two readings could part."""
    parts: list[list[str]] = [[draw(st.sampled_from(["l.db", "", "x=y", "-"]))]]
    extra = draw(st.lists(st.sampled_from(["--by", "--reason", "--scope"]), max_size=3))
    for name in ["--by", "--reason", *extra][draw(st.integers(0, 2)) // 2 :]:
        value = draw(VALUES)
        parts.append([f"{name}={value}"] if draw(st.booleans()) else [name, value])
    parts += [["--json"]] * draw(st.integers(0, 2))
    if draw(st.integers(0, 3)) == 0:
        parts += [[word] for word in draw(st.lists(WORDS, min_size=1, max_size=2))]
    order = draw(st.permutations(parts))
    return [draw(st.sampled_from(["halt", "pause"])), *(word for part in order for word in part)]


@settings(max_examples=300)
@given(
    argv=st.one_of(
        lines(),
        st.builds(lambda a, r: [a, *r], st.sampled_from(["halt", "pause"]), st.lists(WORDS, max_size=8)),
    )
)
def test_a_line_the_front_door_reads_is_read_the_same_by_click(argv: list[str]) -> None:
    action, rest = argv[0], argv[1:]
    line = parse([action, *rest])
    if line is None:
        return  # typer reads it, as it always did
    params = click_reading([action, *rest])
    assert params is not None, f"{[action, *rest]} accepted here, refused by click"
    assert params == {
        "ledger": line.ledger,
        "by": line.by,
        "reason": line.reason,
        "scope": line.scope,
        "as_json": line.as_json,
    }


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["halt", "l.db", "--by", "pager", "--reason", "storm"],
            StopLine("halt", "l.db", "pager", "storm"),
        ),
        (
            ["pause", "--by=ops", "--reason=x", "--scope", "agent:router", "--json", "l.db"],
            StopLine("pause", "l.db", "ops", "x", "agent:router", True),
        ),
        (
            ["halt", "postgresql://127.0.0.1/test?schema=s", "--reason", "a b", "--by", "p", "--by", "q"],
            StopLine("halt", "postgresql://127.0.0.1/test?schema=s", "q", "a b"),
        ),
    ],
)
def test_the_lines_people_type_take_the_front_door(argv: list[str], expected: StopLine) -> None:
    assert parse(argv) == expected
    assert click_reading(argv) == {
        "ledger": expected.ledger,
        "by": expected.by,
        "reason": expected.reason,
        "scope": expected.scope,
        "as_json": expected.as_json,
    }


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["resume", "l.db", "--by", "ri", "--reason", "x", "--key", "k"],
        ["halt", "--help"],
        ["halt", "l.db", "--by", "pager"],  # no reason: typer says so
        ["halt", "l.db", "--by", "--reason", "x"],  # click would record a halt by "--reason"
        ["halt", "a.db", "b.db", "--by", "p", "--reason", "x"],
        ["--version"],
        ["verify", "l.db"],
    ],
)
def test_anything_else_goes_to_typer(argv: list[str]) -> None:
    assert parse(argv) is None


def _front_door(*args: str) -> subprocess.CompletedProcess[str]:
    """``answerable ARGS`` through the console script's entry point, as its own process."""
    return subprocess.run(
        [sys.executable, "-m", "answerable._entry", *args], capture_output=True, text=True, timeout=120
    )


def _controls(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT id FROM entries WHERE kind = 'Control' ORDER BY idx")]
    finally:
        conn.close()


@pytest.fixture
async def used(gateway: Gateway, ledger: SQLiteLedger, ledger_path: Path) -> Path:
    await gateway.submit(gateway.intent("executor", "carrier.book", booking(shipment="S-1")))
    ledger.close()
    return ledger_path


def test_a_halt_through_the_front_door_is_committed_and_prints_what_typer_prints(used: Path) -> None:
    """The same entry, the same line and the same JSON as the typer command, with no typer loaded;
    and the ledger still verifies."""
    halted = _front_door("halt", str(used), "--by", "pager", "--reason", "storm")
    assert halted.returncode == 0, halted.stderr
    [halt_id] = _controls(used)
    assert halted.stdout == f"halt recorded: {halt_id} on system by pager\n"
    typer_said = subprocess.run(
        [
            sys.executable,
            "-m",
            "answerable.cli",
            "pause",
            str(used),
            "--by",
            "ops",
            "--reason",
            "x",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    door_said = _front_door("pause", str(used), "--by", "ops", "--reason", "x", "--json")
    first, second = _controls(used)[1:]
    assert typer_said.stdout.replace(first, "ID") == door_said.stdout.replace(second, "ID")
    assert '"action":"pause"' in door_said.stdout
    with SQLiteLedger.open(used) as store:
        store.verify()
        [last] = store.entries(store.size() - 1, store.size())
        assert last.id == second


def test_the_front_door_loads_no_typer_and_no_rich(used: Path) -> None:
    probe = (
        "import os, sys\n"
        "real_exit = os._exit\n"
        "def exiting(code):\n"
        "    sys.stdout.write(' '.join(sys.modules) + '\\n'); sys.stdout.flush(); real_exit(code)\n"
        "os._exit = exiting\n"
        f"sys.argv = ['answerable', 'halt', {str(used)!r}, '--by', 'pager', '--reason', 'probe']\n"
        "from answerable._entry import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed, modules = done.stdout.splitlines()
    assert printed.startswith("halt recorded: ")
    loaded = {m.split(".")[0] for m in modules.split()}
    assert {"answerable", "pydantic"} <= loaded  # the probe sees the record being made
    assert not {"typer", "click", "rich", "asyncio", "cedarpy"} & loaded, sorted(loaded)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--by", "", "--reason", "x"], "by"),
        (["--by", "p", "--reason", " "], "reason"),
        (["--by", "p", "--reason", "x", "--scope", "bogus"], "scope 'bogus'"),
    ],
)
def test_bad_input_at_the_front_door_is_one_line_exit_2_and_records_nothing(
    used: Path, args: list[str], says: str
) -> None:
    before = _controls(used)
    done = _front_door("halt", str(used), *args)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("answerable: error: ")
    assert says in line
    assert _controls(used) == before


def test_a_missing_ledger_at_the_front_door_is_one_line_exit_2(tmp_path: Path) -> None:
    done = _front_door("halt", str(tmp_path / "none.db"), "--by", "p", "--reason", "x")
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "is not an answerable ledger" in line
    assert not (tmp_path / "none.db").exists()


def _with_stdout(stdout: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``answerable ARGS`` as its own process, its standard output ``full`` (/dev/full),
    ``closed`` (no descriptor 1 at all, as ``>&-`` leaves it) or ``gone`` (a pipe whose reader
    closed before the command wrote)."""
    command = [sys.executable, "-m", "answerable._entry", *args]
    if stdout == "full":
        with open("/dev/full", "w") as full:
            return subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    if stdout == "closed":
        return subprocess.run(
            command, stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=lambda: os.close(1)
        )
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(command, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(writer)


@pytest.mark.parametrize("stdout", ["full", "closed", "gone"])
@pytest.mark.parametrize("door", ["front door", "typer"])
def test_a_halt_whose_output_cannot_be_written_stands_and_says_so_in_one_line(
    used: Path, stdout: str, door: str
) -> None:
    """The halt is committed before it is reported, so an output that fails loses the line, not
    the halt: exit 1, one line on stderr (none for a reader that went away, as click does), never
    a traceback."""
    where = [str(used)] if door == "front door" else ["--", str(used)]
    done = _with_stdout(stdout, "halt", "--by", "pager", "--reason", "storm", *where)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    if stdout == "gone":
        assert done.stderr == ""
    else:
        [line] = done.stderr.splitlines()
        assert line.startswith("answerable: error: standard output failed (")
        assert line.endswith("the command ran, its output is lost")
    assert len(_controls(used)) == 1


@pytest.mark.parametrize("stdout", ["full", "closed"])
def test_a_command_through_rich_whose_output_cannot_be_written_is_one_line(used: Path, stdout: str) -> None:
    done = _with_stdout(stdout, "verify", str(used))
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("answerable: error: standard output failed (")
