"""How long ``answerable halt`` takes, from process start to a committed halt entry.

A person pressing halt from a shell waits for the process to start, import, open the ledger,
commit the Control entry durably (fsync) and exit; the halt is committed before the process exits,
so the time to exit is an upper bound of the time to the commit. Measured here, in one run, as
wall time from ``subprocess`` spawn to exit: ``python -c pass`` (the interpreter alone), ``answerable
--help`` (imports and the command tree) and ``answerable halt`` on a ledger of a governed system,
which the console script's front door (``answerable._entry``) parses and records without typer;
beside it the same halt with a ``--`` before the ledger, which the front door leaves to typer, so
the row shows what typer's parsing costs a halt. The rows are timed in turns. Each halt is
checked in the ledger afterwards. Goal printed: halt under 200 ms.

The commands run the code this script imports (its ``answerable`` package is put first on the
children's ``PYTHONPATH``): an editable install pointing at another checkout would otherwise time
that checkout's code. They run as an installed command does, with its bytecode cached: an untimed
first run of each writes ``__pycache__`` as Python does by default, even when this shell sets
``PYTHONDONTWRITEBYTECODE`` (with it, every run would compile every module of the package first).

Run: ``python bench/cli_latency.py`` (``--runs N``, ``--quick``, ``--json``, ``--dir PATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import describe_machine, emit, filesystem_of, fmt_us, summarize_ns

import answerable
from answerable import Gateway, KeyPair, SQLiteLedger, new_charter, new_ruleset, schema_for

GOAL_MS = 200
TYPER_ROW = "answerable halt -- LEDGER (typer)"
"""The same halt parsed by typer: the front door (answerable._entry) leaves a ``--`` to typer."""
POLICY = '@id("permit-noop")\npermit(principal, action == Action::"noop", resource);\n'


async def _system(path: Path) -> None:
    """A ledger holding a charter and a ruleset, as `answerable halt` finds it in real use."""
    with SQLiteLedger.open(path, create=True, origin="bench.example/cli") as ledger:
        ri = KeyPair.generate("ri@bench.example")
        gateway = Gateway(ledger)
        gateway.register("noop", lambda: None, resource_class="bench")
        await gateway.install(
            new_charter("bench", ri, agents=["a"]), new_ruleset(POLICY, schema_for(["noop"]), ri)
        )
        gateway.close()


def _child_env() -> dict[str, str]:
    """The environment of the timed commands: this script's ``answerable`` first on the path, and
    bytecode written and read as Python does by default (see the module docstring)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    source = str(Path(answerable.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    return env


def _timed(commands: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict[str, list[int]]:
    """Wall time of each command, ``runs`` times, taken in turns (one of each, then again), so a
    machine that slows down meanwhile slows every row alike."""
    for argv in commands.values():
        subprocess.run(argv, capture_output=True, check=False, env=env)  # untimed: writes the bytecode
    samples: dict[str, list[int]] = {what: [] for what in commands}
    for _ in range(runs):
        for what, argv in commands.items():
            started = time.perf_counter_ns()
            done = subprocess.run(argv, capture_output=True, check=False, env=env)
            samples[what].append(time.perf_counter_ns() - started)
            if done.returncode != 0:
                said = done.stderr.decode()[-300:]
                raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {said}")
    return samples


def run(args: argparse.Namespace) -> dict[str, Any]:
    cli = shutil.which("answerable", path=str(Path(sys.executable).parent)) or "answerable"
    with tempfile.TemporaryDirectory(prefix="answerable-cli-", dir=args.dir) as tmp:
        ledger = Path(tmp) / "system.db"
        asyncio.run(_system(ledger))
        halt = [cli, "halt", "--by", "pager@bench.example", "--reason", "bench"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "answerable --help": [cli, "--help"],
            "answerable halt": [*halt, str(ledger)],
            # `--` before the ledger: the same halt, which the front door leaves to typer
            TYPER_ROW: [*halt, "--", str(ledger)],
        }
        rows = _timed(commands, args.runs, _child_env())
        with SQLiteLedger.open(ledger) as store:
            halts = len(store.of_kind("Control")) - 2  # the untimed first runs halted too
        fs = filesystem_of(ledger)
    summary = {what: summarize_ns(samples) for what, samples in rows.items()}
    halt_p50_ms = summary["answerable halt"]["p50_us"] / 1000
    return {
        "benchmark": "cli_latency",
        "machine": describe_machine(),
        "ledger_filesystem": fs,
        "source": str(Path(answerable.__file__).resolve().parent),
        "runs": args.runs,
        "latency": summary,
        "halts_committed": halts,
        "halts_ok": halts == 2 * args.runs,
        "goal_ms": GOAL_MS,
        "halt_p50_ms": halt_p50_ms,
        "meets_goal": halt_p50_ms < GOAL_MS,
    }


def render(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    m = doc["machine"]
    console.print(
        f"[bold]CLI latency[/bold]  {m['cpu']}, Python {m['python']}; ledger on {doc['ledger_filesystem']}"
    )
    console.print(f"code timed: {doc['source']} (bytecode cached)", markup=False)
    table = Table(title=f"process start to exit, {doc['runs']} runs each (not pinned)")
    for col in ("command", "p50", "p99", "max"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for what, s in doc["latency"].items():
        table.add_row(what, fmt_us(s["p50_us"]), fmt_us(s["p99_us"]), fmt_us(s["max_us"]))
    console.print(table)
    verdict = "meets" if doc["meets_goal"] else "MISSES"
    console.print(
        f"goal: halt committed under {doc['goal_ms']} ms from process start; p50 {doc['halt_p50_ms']:.0f} ms "
        f"({verdict} it). {doc['halts_committed']} halts in the ledger for {2 * doc['runs']} timed halts "
        f"({'ok' if doc['halts_ok'] else 'MISMATCH'})."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 runs of each")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dir", default=None, help="where the ledger goes (default: the temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 3
    os.environ.pop("PYTHONPROFILEIMPORTTIME", None)
    doc = run(args)
    if not emit(doc, args.json):
        render(doc)


if __name__ == "__main__":
    main()
