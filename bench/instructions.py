"""Instructions per governed action, counted by valgrind's callgrind: a figure drift cannot move.

Run: ``python bench/instructions.py`` (``--quick`` for a smoke run, ``--json`` for one JSON
document, ``--rev REV`` to count the gateway of another git revision beside this tree's).

Why: on the VMs this project is measured on, one process's speed swings by a third within
minutes (AGT's own ``govern()`` rate halved between two runs sixteen minutes apart), so a change
worth a few percent cannot be told from noise by wall or CPU time. Instruction counts repeat
within 0.2% from run to run. Each variant runs in its own process under ``valgrind
--tool=callgrind`` with collection switched on (``callgrind_control -z``) only after its setup
and warm-up, and the count dumped (``callgrind_control -d``) right after its measured actions:
start-up, imports and compilation are not in it.

Variants, each the same loop as ``governed_call.py``'s: the gateway, 64 concurrent submitters of
a governed no-op on a fresh SQLite ledger (every thread counted: the event loop and the ledger
writer); the lean reference (``_lean_action.py``, the same four entries with nothing checked), and
the same with its entries made as the gateway's records (what the records cost, apart from the
gateway's checks and glue);
AGT's ``govern()`` with its in-memory audit log, one call at a time (its ceiling); and with
``--rev``, the gateway of that revision's ``src/answerable`` on the same loop.

What it does not say: instructions are not time. The kernel's work (fsync, the WAL's writes,
locks, wake-ups) is not counted, and an instruction of SQLite's B-tree code and one of Python's
interpreter take different time. So the ratio to AGT is a proxy, steadier but not truer than
``governed_call.py``'s; the count is for telling a change of this code from its parent's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common as common

GATEWAY, LEAN, RECORDS, AGT = "gateway", "lean", "lean-records", "agt"
TASKS = 64


# --- the child: one variant, run under callgrind ---------------------------------------------------


def _counting(on: bool) -> None:
    """Zero callgrind's counters (``on``) or dump them: this process runs under it."""
    flag = "-z" if on else "-d"
    subprocess.run(["callgrind_control", flag, str(os.getpid())], check=True, capture_output=True)


async def _gateway(directory: Path, actions: int, warmup: int) -> dict[str, Any]:
    import governed_call as bench

    ledger, gateway = await bench._setup(directory)
    try:
        await bench._concurrent(gateway, warmup, TASKS)
        start = ledger.size()
        _counting(True)
        _, _, failed = await bench._concurrent(gateway, actions, TASKS)
        _counting(False)
        written = ledger.size() - start
    finally:
        gateway.close()
        ledger.close()
    return {"failed": failed, "entries_written": written, "entries_expected": 4 * actions}


async def _lean(directory: Path, actions: int, warmup: int, *, records: bool = False) -> dict[str, Any]:
    import _lean_action as lean
    import governed_call as bench

    found = await lean.measure(
        bench._setup,
        directory,
        bench.AGENT,
        bench.OPERATION,
        actions,
        TASKS,
        warmup,
        records=records,
        on_timed=_counting,
    )
    return {
        "failed": 0,
        "entries_written": found["entries_written"],
        "entries_expected": found["entries_expected"],
    }


def _agt(actions: int, warmup: int) -> dict[str, Any]:
    import _agt_peer as peer

    call = peer.make_agt_governed_noop()
    for _ in range(warmup):
        call()
    before = peer.agt_audit_entries(call)
    _counting(True)
    for _ in range(actions):
        call()
    _counting(False)
    counted = peer.agt_audit_entries(call) - before
    return {"failed": 0, "entries_written": counted, "entries_expected": actions}


def child(what: str, actions: int, warmup: int, directory: Path) -> None:
    import answerable

    if what == AGT:
        found = _agt(actions, warmup)
    elif what == GATEWAY:
        found = asyncio.run(_gateway(directory, actions, warmup))
    else:
        found = asyncio.run(_lean(directory, actions, warmup, records=what == RECORDS))
    found["answerable"] = str(Path(answerable.__file__).parent)
    print(json.dumps(found))


# --- the parent ------------------------------------------------------------------------------------


def count(what: str, actions: int, warmup: int, directory: Path, src: Path | None = None) -> dict[str, Any]:
    """Run one variant under callgrind; its instructions per action, read from the one dump."""
    work = Path(tempfile.mkdtemp(dir=directory, prefix=f"{what}-"))
    out = work / "callgrind.out.%p"
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*([str(src)] if src else []), str(here)])}
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--child",
        what,
        f"--actions={actions}",
        f"--warmup={warmup}",
        f"--dir={work}",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what}: {done.stderr.strip()[-600:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    dumps = sorted(work.glob("callgrind.out.*.1"))
    if len(dumps) != 1:
        raise RuntimeError(f"{what}: expected one callgrind dump, found {len(dumps)}")
    total = _total(dumps[0])
    found.update(actions=actions, warmup=warmup, instructions=total, per_action=total / actions)
    shutil.rmtree(work, ignore_errors=True)
    return found


def _total(dump: Path) -> int:
    with dump.open() as lines:
        for line in lines:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"{dump}: no totals line")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return {"available": False, "reason": "valgrind is not installed (Debian: apt-get install valgrind)"}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        variants: dict[str, Any] = {}
        for what in (GATEWAY, LEAN, RECORDS):
            variants[what] = count(what, args.actions, args.warmup, directory)
        try:
            import _agt_peer as peer

            peer._import_agt()
        except ImportError:
            variants[AGT] = {"available": False, "reason": "AGT is not installed: pip install -e '.[bench]'"}
        else:
            variants[AGT] = count(AGT, args.agt, args.agt_warmup, directory)
        if args.rev:
            tree = common.tree_of(args.rev, directory)
            variants["rev"] = count(GATEWAY, args.actions, args.warmup, directory, tree)
            variants["rev"]["rev"] = args.rev
    doc: dict[str, Any] = {"available": True, "machine": common.describe_machine(), "variants": variants}
    doc["comparison"] = _compare(variants)
    return doc


def _compare(variants: dict[str, Any]) -> dict[str, Any]:
    ours = variants[GATEWAY]["per_action"]
    lean, records = variants[LEAN]["per_action"], variants[RECORDS]["per_action"]
    out: dict[str, Any] = {
        "gateway_over_lean": ours / lean,
        # What the gateway's records (assembled models, bytes from their fields) cost over plain
        # dicts in the same loop, and what its checks and glue cost beyond them.
        "records_per_action": records - lean,
        "checks_and_glue_per_action": ours - records,
    }
    if "per_action" in variants[AGT]:
        out["gateway_over_agt"] = ours / variants[AGT]["per_action"]
        out["lean_over_agt"] = variants[LEAN]["per_action"] / variants[AGT]["per_action"]
    if "rev" in variants:
        then = variants["rev"]["per_action"]
        out["change_since_rev"] = (ours - then) / then
    return out


def report(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not doc["available"]:
        console.print(f"instructions: not measured: {doc['reason']}")
        return
    variants, comparison = doc["variants"], doc["comparison"]
    table = Table(title="instructions per action, user space, counted by callgrind after warm-up")
    for column in ("what", "actions counted", "instructions per action", "entries written / expected"):
        table.add_column(column, justify="left" if column == "what" else "right")
    names = {
        GATEWAY: "answerable gateway, 64 concurrent submitters (this tree)",
        LEAN: "lean reference, same loop, nothing checked",
        RECORDS: "lean reference, its entries made as the gateway's records",
        AGT: "AGT govern(), in-memory audit log, sequential",
        "rev": f"answerable gateway at {variants.get('rev', {}).get('rev')}",
    }
    for key, found in variants.items():
        if "per_action" not in found:
            table.add_row(names[key], "-", found.get("reason", "-"), "-")
            continue
        written = f"{found['entries_written']:,} / {found['entries_expected']:,}"
        table.add_row(names[key], f"{found['actions']:,}", f"{found['per_action']:,.0f}", written)
    console.print(table)
    console.print(f"gateway over lean: {comparison['gateway_over_lean']:.2f}x the instructions")
    console.print(
        f"of the gateway's excess over lean: its records {comparison['records_per_action']:,.0f} per action, "
        f"its checks and glue {comparison['checks_and_glue_per_action']:,.0f}"
    )
    if "gateway_over_agt" in comparison:
        console.print(
            f"gateway over AGT in memory: {comparison['gateway_over_agt']:.2f}x the instructions "
            f"(lean {comparison['lean_over_agt']:.2f}x); the kernel's part (fsync, locks, wake-ups) "
            "is not counted, and an instruction is not a unit of time: a proxy, not the ratio of rates"
        )
    if "change_since_rev" in comparison:
        change = comparison["change_since_rev"]
        console.print(f"gateway, this tree against {variants['rev']['rev']}: {change:+.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few actions")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--actions", type=int, default=1000, help="governed actions counted per variant")
    parser.add_argument("--warmup", type=int, default=500, help="actions before counting starts")
    parser.add_argument("--agt", type=int, default=5000, help="AGT govern() calls counted")
    parser.add_argument("--agt-warmup", type=int, default=1000)
    parser.add_argument("--rev", default="", help="also count the gateway of this git revision")
    parser.add_argument("--dir", type=Path, default=None, help="where the ledgers go (default: a temp dir)")
    parser.add_argument("--child", choices=(GATEWAY, LEAN, RECORDS, AGT), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.actions, args.warmup, args.dir)
        return 0
    if args.quick:
        args.actions, args.warmup, args.agt, args.agt_warmup = 64, 64, 200, 50
    common.pin_to_one_core()
    doc = run(args)
    if not common.emit(doc, args.json):
        report(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
