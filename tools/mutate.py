"""Mutation testing: does the test suite notice when one operator, constant or raise changes?

Usage::

    python tools/mutate.py src/answerable/ledger/merkle.py --tests tests/ledger [--timeout S]
        [--json OUT] [--only N[,N...]] [--jobs J] [--list] [--in-place]

Each mutant is one AST change: a comparison operator swapped (``==``/``!=``, ``<``/``<=``,
``>``/``>=``, ``<``/``>``, ``in``/``not in``, ``is``/``is not``), ``and``/``or`` swapped, ``not x``
made ``x``, an integer constant ``c`` made ``c + 1`` (and ``0``/``1`` swapped), a string constant
made ``""`` or ``"mutated"``, ``True``/``False`` swapped, a ``raise`` made ``pass``, or a
``return X`` made ``return None``. A mutant is killed when pytest on the given tests fails or times
out, and survives when they pass.

Not mutated, because a change there is noise rather than a question about the tests: docstrings
and other bare string statements, annotations and ``Literal[...]`` arguments, f-strings, ``__all__``
and ``__slots__``, prose string constants among the positional arguments of a raised exception's
constructor (its message; identifier-like codes such as ``"unknown_review"`` and every keyword
argument, say ``reason_code="expired"``, are mutated), and the arguments of logging calls.

By default no real file is ever written: the project (source, tests, data, config; not ``.git``,
virtualenvs, caches or ``out/``) is read once into a snapshot and copied to a temporary directory
per worker; the mutant is written there, and pytest runs in that copy with its ``src/``
first on ``PYTHONPATH`` (the project itself is installed editable, so the copy shadows it). Others
can keep editing the real files, tests included, during a run: it judges the snapshot taken when
it started. ``--in-place`` writes the real file instead, after a backup, restoring it in a
``finally`` and on SIGINT/SIGTERM, and stops if someone else edits it meanwhile.

Exit status: 0 when every mutant was killed, 1 when some survived, 2 when the unmutated module
already fails its tests (or on a usage error).
"""

from __future__ import annotations

import argparse
import ast
import compileall
import contextlib
import copy
import dataclasses
import hashlib
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]

_CMP_SWAPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Lt: (ast.LtE, ast.Gt),
    ast.LtE: (ast.Lt,),
    ast.Gt: (ast.GtE, ast.Lt),
    ast.GtE: (ast.Gt,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
}
_CMP_TEXT: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}
_LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
_SKIPPED_NAMES = {"__all__", "__slots__"}


# --- enumerating mutants -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Mutant:
    """One change to the module: the byte span it replaces and the text that replaces it."""

    number: int
    kind: str
    line: int
    col: int
    original: str
    mutant: str
    start: int
    end: int
    replacement: str


def _descendants(node: ast.AST) -> Iterator[ast.AST]:
    yield from ast.walk(node)


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes whose mutation would be noise (see the module docstring)."""
    skip: set[int] = set()

    def skip_all(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in _descendants(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip_all(node)  # docstrings and attribute docstrings
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            skip_all(node.returns)
            a = node.args
            for parameter in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if parameter is not None:
                    skip_all(parameter.annotation)
        elif isinstance(node, ast.AnnAssign):
            skip_all(node.annotation)
            if isinstance(node.target, ast.Name) and node.target.id in _SKIPPED_NAMES:
                skip_all(node)
        elif isinstance(node, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id in _SKIPPED_NAMES for t in node.targets):
                skip_all(node)
        elif isinstance(node, ast.JoinedStr):
            skip_all(node)
        elif isinstance(node, ast.Subscript):
            base = node.value
            if (isinstance(base, ast.Name) and base.id == "Literal") or (
                isinstance(base, ast.Attribute) and base.attr == "Literal"
            ):
                skip_all(node)
        elif isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            for message in node.exc.args:
                for n in _descendants(message):
                    if (
                        isinstance(n, ast.Constant)
                        and isinstance(n.value, str)
                        and not n.value.isidentifier()
                    ):
                        skip.add(id(n))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _LOG_METHODS
            and isinstance(node.func.value, ast.Name)
            and "log" in node.func.value.id.lower()
        ):
            for logged in [*node.args, *(k.value for k in node.keywords)]:
                skip_all(logged)
    return skip


class _Source:
    """The module's bytes, addressable by the (line, UTF-8 column) pairs the AST gives."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.starts = [0]
        for line in data.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        return start, end

    def text(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.data[start:end].decode()

    def line(self, number: int) -> str:
        return self.data[self.starts[number - 1] : self.starts[number]].decode().rstrip("\n")


def _one_line(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def enumerate_mutants(data: bytes) -> list[Mutant]:
    """Every mutant of the module, in source order, numbered from 1."""
    tree = ast.parse(data)
    src = _Source(data)
    skip = _skipped_nodes(tree)
    found: list[tuple[int, int, str, str, str, int, int, str]] = []

    def add(node: ast.AST, kind: str, original: str, mutant: str, replacement: str) -> None:
        start, end = src.span(node)
        line, col = node.lineno, node.col_offset  # type: ignore[attr-defined]
        found.append((line, col, kind, original, mutant, start, end, replacement))

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                for alt in _CMP_SWAPS[type(op)]:
                    swapped = copy.deepcopy(node)
                    swapped.ops[i] = alt()
                    add(
                        node,
                        "compare",
                        f"{_CMP_TEXT[type(op)]} in `{_one_line(src.text(node))}`",
                        _CMP_TEXT[alt],
                        f"({ast.unparse(swapped)})",
                    )
        elif isinstance(node, ast.BoolOp):
            flipped = copy.deepcopy(node)
            flipped.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            was, now = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            add(node, "boolop", f"{was} in `{_one_line(src.text(node))}`", now, f"({ast.unparse(flipped)})")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            operand = src.text(node.operand)
            add(node, "not", _one_line(src.text(node)), _one_line(operand), f"({operand})")
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                add(node, "constant", repr(value), repr(not value), repr(not value))
            elif isinstance(value, int):
                alternatives = [value + 1]
                if value in (0, 1):
                    alternatives.append(1 - value)
                for number in dict.fromkeys(alternatives):
                    add(node, "constant", src.text(node), repr(number), repr(number))
            elif isinstance(value, str):
                for string in ("", "mutated"):
                    if value != string:
                        add(node, "constant", _one_line(src.text(node)), repr(string), repr(string))
        elif isinstance(node, ast.Raise):
            add(node, "raise", _one_line(src.text(node)), "pass", "pass")
        elif isinstance(node, ast.Return) and node.value is not None:
            returned = node.value
            if not (isinstance(returned, ast.Constant) and returned.value is None):
                start, end = src.span(returned)
                found.append(
                    (
                        node.lineno,
                        node.col_offset,
                        "return",
                        _one_line(src.text(node)),
                        "return None",
                        start,
                        end,
                        "None",
                    )
                )

    found.sort(key=lambda m: (m[0], m[1], m[5], m[2], m[4]))
    original_dump = ast.dump(tree)
    mutants: list[Mutant] = []
    for line, col, kind, original, mutant, start, end, replacement in found:
        mutated = data[:start] + replacement.encode() + data[end:]
        try:
            if ast.dump(ast.parse(mutated)) == original_dump:
                continue
        except SyntaxError:
            print(f"warning: skipped a mutant at {line}:{col} that does not parse", file=sys.stderr)
            continue
        mutants.append(Mutant(len(mutants) + 1, kind, line, col, original, mutant, start, end, replacement))
    return mutants


def apply(data: bytes, mutant: Mutant) -> bytes:
    return data[: mutant.start] + mutant.replacement.encode() + data[mutant.end :]


# --- running the tests ---------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Outcome:
    status: str
    """``killed``, ``timeout`` or ``survived``."""
    seconds: float
    returncode: int | None
    failed: str | None


_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)
_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_pytest(
    tests: Sequence[str], cwd: Path, env: dict[str, str], timeout: float, basetemp: Path
) -> Outcome:
    """pytest in its own process group, so a timeout kills whatever the tests started too."""
    cmd = [sys.executable, "-m", "pytest", *PYTEST_ARGS, f"--basetemp={basetemp}", *tests]
    began = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    with _live_lock:
        _live.add(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.communicate()
        return Outcome("timeout", time.monotonic() - began, None, None)
    finally:
        with _live_lock:
            _live.discard(proc)
    text = out.decode(errors="replace")
    failed = _FAILED.search(text)
    status = "survived" if proc.returncode == 0 else "killed"
    detail = failed.group(1) if failed else (text.strip().splitlines() or [""])[-1][:200]
    return Outcome(
        status, time.monotonic() - began, proc.returncode, None if status == "survived" else detail
    )


def _package_root(module: Path) -> Path:
    """The directory on sys.path that holds the module's top-level package (``src/``)."""
    root = module.parent
    while (root / "__init__.py").exists():
        root = root.parent
    return root


def _project_root(module: Path) -> Path:
    for parent in module.parents:
        if (parent / "pyproject.toml").exists():
            return parent
    raise SystemExit(f"no pyproject.toml above {module}")


class Sandbox:
    """A private copy of the project, its source tree shadowing the installed package for pytest."""

    def __init__(self, snapshot: dict[Path, bytes], package_root: Path, module: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mutate-"))
        self.cwd = self.dir / "project"
        for rel, data in snapshot.items():
            path = self.cwd / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        src = self.cwd / package_root
        # Byte-compile the source once, then drop the target's .pyc and never write bytecode: a
        # mutant of the same size written within the same second would otherwise load a stale .pyc.
        compileall.compile_dir(src, quiet=1)
        self.module = self.cwd / module
        self.original = snapshot[module]
        self._drop_pyc()
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        # Failing examples of mutants must not land in the project's hypothesis database.
        self.env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(self.dir / "hypothesis")
        self.basetemp = self.dir / "pytest"

    def _drop_pyc(self) -> None:
        pyc = Path(importlib.util.cache_from_source(str(self.module)))
        pyc.unlink(missing_ok=True)

    def write(self, data: bytes) -> None:
        self.module.write_bytes(data)
        self._drop_pyc()

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


_NOT_COPIED = {
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".import_linter_cache",
    "node_modules",
    "out",
}


def _snapshot(project: Path) -> dict[Path, bytes]:
    """Every file of the project but caches, virtualenvs and outputs, keyed by relative path.

    Tests and their data are copied too, ignored files included (a fixture database may be
    ignored by git yet read by a test): others may edit tests during a run, and a test that starts
    failing for its own reasons would otherwise count as killing every mutant after it.
    """
    out: dict[Path, bytes] = {}
    for root, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in _NOT_COPIED and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(root) / name
            if name.endswith((".pyc", ".mutate-backup")) or not path.is_file():
                continue
            out[path.relative_to(project)] = path.read_bytes()
    return out


class InPlace:
    """The real module file, backed up first and restored in a finally and on SIGINT/SIGTERM."""

    def __init__(self, project: Path, module: Path) -> None:
        self.cwd = project
        self.module = project / module
        self.original = self.module.read_bytes()
        self.backup = self.module.with_name(self.module.name + ".mutate-backup")
        self.backup.write_bytes(self.original)
        self._last = self.original
        self.env = dict(os.environ)
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.dir = Path(tempfile.mkdtemp(prefix="mutate-"))
        self.env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(self.dir / "hypothesis")
        self.basetemp = self.dir / "pytest"

    def write(self, data: bytes) -> None:
        if self.module.read_bytes() != self._last:
            raise RuntimeError(f"{self.module} was edited by someone else during the run; stopping")
        self.module.write_bytes(data)
        self._last = data
        pyc = Path(importlib.util.cache_from_source(str(self.module)))
        pyc.unlink(missing_ok=True)

    def close(self) -> None:
        self.module.write_bytes(self.original)
        self.backup.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the run -------------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _kill_live() -> None:
    with _live_lock:
        for proc in list(_live):
            _kill(proc)


def run_module(
    module: Path,
    tests: Sequence[str],
    *,
    timeout: float | None,
    only: set[int] | None,
    jobs: int,
    in_place: bool,
) -> dict[str, Any]:
    project = _project_root(module)
    package_root = _package_root(module).relative_to(project)
    module = module.relative_to(project)
    snapshot = _snapshot(project)
    if module not in snapshot:
        raise SystemExit(f"{module} is not a file of the project {project}")
    data = snapshot[module]
    tests = [
        str(Path(t).resolve().relative_to(project)) if Path(t).resolve().is_relative_to(project) else t
        for t in tests
    ]
    mutants = enumerate_mutants(data)
    chosen = [m for m in mutants if only is None or m.number in only]
    shown = str(module)
    print(f"{shown}: {len(mutants)} mutants, running {len(chosen)}", file=sys.stderr)

    workers: list[Sandbox | InPlace] = []
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1 if in_place else max(1, jobs))
    outcomes: dict[int, Outcome] = {}
    try:
        if in_place:
            workers.append(InPlace(project, module))
        else:
            workers.extend(Sandbox(snapshot, package_root, module) for _ in range(max(1, jobs)))
        first = workers[0]
        baseline = run_pytest(tests, first.cwd, first.env, timeout or 600, first.basetemp)
        if baseline.status != "survived":
            raise SystemExit(
                f"{shown}: the tests fail on the unmutated module ({baseline.failed}); fix that first"
            )
        limit = timeout or max(30.0, 5 * baseline.seconds)
        print(f"baseline passes in {baseline.seconds:.1f}s; timeout {limit:.0f}s per mutant", file=sys.stderr)

        free: queue.Queue[Sandbox | InPlace] = queue.Queue()
        for w in workers:
            free.put(w)
        done = 0
        done_lock = threading.Lock()

        def one(m: Mutant) -> None:
            nonlocal done
            if stop.is_set():
                return
            w = free.get()
            try:
                w.write(apply(data, m))
                outcome = run_pytest(tests, w.cwd, w.env, limit, w.basetemp)
            finally:
                if isinstance(w, Sandbox):
                    w.write(w.original)
                free.put(w)
            if stop.is_set():
                return  # killed by the interrupt, not by the tests
            outcomes[m.number] = outcome
            with done_lock:
                done += 1
                print(
                    f"[{done}/{len(chosen)}] #{m.number} {outcome.status:8} {m.line}:{m.col} "
                    f"{m.original} -> {m.mutant}",
                    file=sys.stderr,
                )

        for future in [pool.submit(one, m) for m in chosen]:
            future.result()
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        _kill_live()
        raise
    finally:
        pool.shutdown(wait=True)
        for w in workers:
            w.close()

    src = _Source(data)
    rows = []
    for m in chosen:
        o = outcomes[m.number]
        rows.append(
            {
                "number": m.number,
                "line": m.line,
                "col": m.col,
                "kind": m.kind,
                "original": m.original,
                "mutant": m.mutant,
                "source_line": src.line(m.line).strip(),
                "status": o.status,
                "returncode": o.returncode,
                "killed_by": o.failed,
                "seconds": round(o.seconds, 2),
            }
        )
    killed = sum(r["status"] != "survived" for r in rows)
    return {
        "module": shown,
        "sha256": hashlib.sha256(data).hexdigest(),
        "tests": list(tests),
        "total": len(rows),
        "killed": killed,
        "timeouts": sum(r["status"] == "timeout" for r in rows),
        "survived": len(rows) - killed,
        "score": round(100 * killed / len(rows), 1) if rows else 100.0,
        "mutants": rows,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['module']}: {result['killed']}/{result['total']} mutants killed "
        f"({result['timeouts']} by timeout), {result['survived']} survived: score {result['score']}%"
    ]
    for r in result["mutants"]:
        if r["status"] == "survived":
            lines.append(f"  #{r['number']} {r['line']}:{r['col']} {r['original']} -> {r['mutant']}")
            lines.append(f"      {r['source_line']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="+", type=Path, metavar="MODULE_PATH")
    parser.add_argument("--tests", nargs="+", required=True, metavar="TEST_PATH")
    parser.add_argument("--timeout", type=float, help="seconds per mutant (default: 5x the baseline, >= 30)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every mutant and its outcome here")
    parser.add_argument("--only", help="run only these mutant numbers, comma-separated (see --list)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel, one sandbox each")
    parser.add_argument("--list", action="store_true", help="print the mutants and run nothing")
    parser.add_argument("--in-place", action="store_true", help="mutate the real file (backed up first)")
    args = parser.parse_args(argv)
    only = {int(n) for n in args.only.split(",")} if args.only else None

    if args.list:
        for module in args.modules:
            data = module.read_bytes()
            src = _Source(data)
            for m in enumerate_mutants(data):
                if only is None or m.number in only:
                    print(f"{module}: #{m.number} {m.line}:{m.col} [{m.kind}] {m.original} -> {m.mutant}")
                    print(f"      {src.line(m.line).strip()}")
        return 0

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        results = [
            run_module(
                module.resolve(),
                args.tests,
                timeout=args.timeout,
                only=only,
                jobs=args.jobs,
                in_place=args.in_place,
            )
            for module in args.modules
        ]
    finally:
        signal.signal(signal.SIGTERM, previous)
    for result in results:
        print(report(result))
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")
    return 0 if all(r["survived"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
