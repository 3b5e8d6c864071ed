"""A PostgreSQL instance of a test's own, for what the shared server must not suffer: being
stopped or killed. PostgreSQL refuses to run as root, so it runs as the ``postgres`` user (the
test runs as root and hands it a folder); only this instance's processes are ever signalled."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

import psycopg
from natsd import free_port

BIN = Path(sorted(glob("/usr/lib/postgresql/*/bin"))[-1])


def _as_postgres(*cmd: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=120)


@dataclass
class PgServer:
    port: int = field(default_factory=free_port)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="answerable-pg-")))

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, schema: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?options=-csearch_path%3D{schema}"

    def start(self) -> PgServer:
        """initdb the first time, then start (again, on the same data: crash recovery) and wait."""
        shutil.chown(self.folder, "postgres", "postgres")
        if not self.data.exists():
            _as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        _as_postgres(
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.folder / "log"),
            "start",
        )
        return self

    def pids(self) -> list[int]:
        """The postmaster and every process it started."""
        first = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(first)], capture_output=True, text=True).stdout.split()
        return [first, *map(int, children)]

    def signal_all(self, sig: signal.Signals) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill(self) -> None:
        """kill -9 of the postmaster and its backends: a crash of the database server. Returns
        once they are gone; the lock file they leave is stale (a zombie keeps its pid here, where
        nothing reaps orphans, so PostgreSQL would take it for a live postmaster): removed."""
        pids = self.pids()
        self.signal_all(signal.SIGKILL)
        while any(_alive(pid) for pid in pids):
            os.sched_yield()
        (self.data / "postmaster.pid").unlink()
        for lock in self.folder.glob(".s.PGSQL.*"):  # the socket and its lock file, as stale
            lock.unlink()

    def kill_backend(self, pick: Callable[[list[int]], int]) -> int:
        """kill -9 of one backend serving a client named ``answerable...``, the one ``pick``
        chooses among their pids (sorted); the postmaster then ends every other backend and
        recovers by itself, as it does when one of its processes crashes. The pid killed."""
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres") as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND application_name LIKE 'answerable%' AND pid <> pg_backend_pid()"
            ).fetchall()
        pid = pick(sorted(int(r[0]) for r in rows))
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.signal_all(signal.SIGCONT)
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
