"""What the benchmark scripts share: pinning, percentiles, the machine line and output."""

from __future__ import annotations

import gc
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "describe_machine",
    "emit",
    "filesystem_of",
    "fmt_rate",
    "fmt_us",
    "pin_to_one_core",
    "summarize_ns",
    "thread_cpu",
    "tree_of",
]


def pin_to_one_core(cpu: int = 0) -> dict[str, Any]:
    """Pin this process to one CPU before any thread starts, so every later thread inherits it.

    One core is the honest setting for a throughput figure: the ledger writer thread and the
    event loop then compete for the same CPU, as they would on a small VM.
    """
    if not hasattr(os, "sched_setaffinity"):
        return {"pinned": False, "cpus": None, "note": "os.sched_setaffinity is not available here"}
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        return {"pinned": False, "cpus": None, "note": f"sched_setaffinity failed: {exc}"}
    return {"pinned": True, "cpus": sorted(os.sched_getaffinity(0)), "note": f"pinned to CPU {cpu}"}


def summarize_ns(samples: Sequence[int]) -> dict[str, float]:
    """p50, p99, max and mean of latency samples in nanoseconds, reported in microseconds."""
    if not samples:
        return {"n": 0, "p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0, "mean_us": 0.0}
    ordered = sorted(samples)
    n = len(ordered)
    return {
        "n": n,
        "p50_us": ordered[n // 2] / 1000,
        "p99_us": ordered[min(n - 1, int(n * 0.99))] / 1000,
        "max_us": ordered[-1] / 1000,
        "mean_us": sum(ordered) / n / 1000,
    }


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) each live thread of this process has used, by thread name,
    read from each thread's own CPU clock (nanoseconds, not the scheduler's 10 ms ticks); empty
    where the platform has no per-thread clock."""
    import threading

    out: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (AttributeError, OSError):  # no per-thread clock here, or the thread just ended
            continue
        out[thread.name] = out.get(thread.name, 0.0) + seconds
    return out


def cpu_per_action(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU µs per action by the threads that did the work: the event loop (the gateway, Cedar,
    the records and their bytes), the ledger's writer (SQLite inserts, Merkle nodes, commit) and
    the rest; with everything on one core, their sum is what one action costs."""
    out = {"event_loop": 0.0, "ledger_writer": 0.0, "other": 0.0}
    for name, seconds in after.items():
        used = (seconds - before.get(name, 0.0)) * 1e6 / max(n, 1)
        if name == "MainThread":
            out["event_loop"] += used
        else:
            out["ledger_writer" if name.startswith("ledger-writer") else "other"] += used
    out["total"] = out["event_loop"] + out["ledger_writer"] + out["other"]
    return out


class GcTime:
    """The CPU time CPython's cyclic garbage collector takes while a block runs, by generation,
    read from ``gc.callbacks``: each collection's start and stop, on the CPU clock of the thread
    that runs it (a collection starts and stops on one thread, and two never overlap), so a
    collection preempted by another thread or process is not charged for their time. How many
    collections of each generation, their CPU µs per action, and how many objects they freed:
    part of what an action costs that no line of its code shows.

    Use as ``with GcTime() as gc_time: ...``, then ``gc_time.per_action(n)``. A collection under
    way when the block begins is not counted (its stop has no start).
    """

    def __init__(self) -> None:
        self.ns = [0, 0, 0]
        self.collections = [0, 0, 0]
        self.collected = 0
        self._started: int | None = None

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time_ns()
            return
        started, self._started = self._started, None
        if started is None:  # entered while this collection ran: its start was not seen
            return
        generation = info["generation"]
        self.ns[generation] += time.thread_time_ns() - started
        self.collections[generation] += 1
        self.collected += info["collected"]

    def __enter__(self) -> GcTime:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def per_action(self, n: int) -> dict[str, Any]:
        n = max(n, 1)
        return {
            "cpu_us_per_action": sum(self.ns) / 1000 / n,
            "cpu_us_per_action_by_generation": [ns / 1000 / n for ns in self.ns],
            "collections_by_generation": list(self.collections),
            "collected": self.collected,
        }


def filesystem_of(path: Path) -> str:
    """The filesystem type under ``path`` (tmpfs would make fsync free and the figures lie)."""
    best, kind = "", "unknown"
    try:
        resolved = str(path.resolve())
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) >= 3 and resolved.startswith(parts[1]) and len(parts[1]) > len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def describe_machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus_online": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
    }


def fmt_us(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:,.1f} ms"
    return f"{value:,.1f} µs" if value >= 10 else f"{value:,.2f} µs"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def emit(doc: dict[str, Any], as_json: bool) -> bool:
    """Print ``doc`` as one JSON document when asked; True when it did, so the caller skips tables."""
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        return True
    return False


def tree_of(rev: str, directory: Path) -> Path:
    """The ``src`` holding ``src/answerable`` of git revision ``rev``, extracted under ``directory``.

    Raises:
        RuntimeError: git could not give that revision's tree.
        OSError: the tree could not be written.
    """
    root = Path(__file__).resolve().parent.parent
    tree = directory / f"tree-{rev}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(root), "archive", rev, "src/answerable"], capture_output=True)
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {rev}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree / "src"
