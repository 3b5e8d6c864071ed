"""The crash matrix: a gateway killed (kill -9) or frozen (SIGSTOP) at every point of the call path.

A cell is (signal, flow, point, mode). A real child process runs one booking through its flow
and blocks at the point; the test kills it from outside, or stops it and lets a standby take the
lease over. The successor reconciles and finishes what is open; a stopped holder is then
continued. What must hold afterwards, read from the ledger and the carrier's own books, is
:func:`procs.audit`'s list of promises, plus the exact outcome each cell must have.

Every cell runs on each ledger backend (a SQLite file, a PostgreSQL schema): the guarantees live
in the store, so they must hold in both. The normal run takes one seeded cell per point on each;
``ANSWERABLE_SOAK=1`` runs all 192 on each.
"""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from backends import make_backend
from crash_world import FLOWS, MODES, Carrier, ShiftedClock, build_gateway, finish_all, install, notice
from procs import SEED, SOAK, TIMEOUT, Audit, Children, Tally, audit, tally

from answerable.ledger import open_ledger

pytestmark = [pytest.mark.crash, pytest.mark.slow]

POINTS = ("before_record", "recorded", "claimed", "during", "executed", "finished")
SIGNALS = ("kill", "stop")
TTL = 1.0
"""The lease ttl: how long a standby waits for a stopped holder's heartbeat before taking over."""


@dataclass(frozen=True)
class Cell:
    signal: str
    flow: str
    point: str
    mode: str

    def __str__(self) -> str:
        return f"{self.signal}-{self.flow}-{self.point}-{self.mode}"

    @property
    def phase(self) -> str:
        """How far the intent got when the process was killed or stopped."""
        if self.point == "before_record":
            return "nothing recorded"
        if self.point == "recorded" and self.flow != "allowed":
            return "in review"  # a reviewed intent is claimed only once its review is settled
        if self.point in ("recorded", "claimed"):
            return "claimed, not called"
        if self.point in ("during", "executed"):
            return "called, not recorded"
        return "finished"

    def expected(self) -> tuple[str | None, int]:
        """The intent's one Execution status (None: no intent) and the carrier's effects for it."""
        phase = self.phase
        if phase == "nothing recorded":
            return None, 0
        if phase in ("in review", "finished"):
            return "succeeded", 1
        if phase == "claimed, not called":
            # replayed under the new epoch where that is safe; else a person must decide
            return ("succeeded", 1) if self.mode in ("idempotent", "fenced") else ("ambiguous", 0)
        return ("ambiguous", 1) if self.mode == "plain" else ("succeeded", 1)


CELLS = [Cell(s, f, p, m) for s in SIGNALS for f in FLOWS for p in POINTS for m in MODES]


def sample(seed: int) -> list[Cell]:
    """One cell per point, half of them killed and half stopped, flow and mode drawn by the seed."""
    rng = random.Random(seed)
    signals = [s for s in SIGNALS for _ in range(len(POINTS) // len(SIGNALS))]
    rng.shuffle(signals)
    chosen = []
    for point, sig in zip(POINTS, signals, strict=True):
        chosen.append(Cell(sig, rng.choice(FLOWS), point, rng.choice(MODES)))
    return chosen


BACKENDS = ("sqlite", "postgres")


def params() -> list[Any]:
    cells = list(CELLS) if SOAK else sample(SEED)
    return [pytest.param(cell, backend, id=f"{cell}-{backend}") for backend in BACKENDS for cell in cells]


ran = tally("crash matrix")


async def run_cell(
    cell: Cell, tmp_path: Path, seed: int, backend: str = "sqlite"
) -> tuple[Audit, dict[str, Any], list[str]]:
    """Run one cell; returns the audit, the holder's epoch and last report, and what the successor ran."""
    store = make_backend(backend, tmp_path)
    try:
        return await _run_cell(cell, tmp_path, seed, store.target)
    finally:
        store.close()


async def _run_cell(
    cell: Cell, tmp_path: Path, seed: int, ledger_path: str
) -> tuple[Audit, dict[str, Any], list[str]]:
    world_path = tmp_path / "world.db"
    await install(ledger_path)
    key = f"{cell}-{seed}"
    report: dict[str, Any] = {}
    async with Children(tmp_path) as kids:
        holder = await kids.spawn(
            "holder",
            ledger=ledger_path,
            world=str(world_path),
            mode=cell.mode,
            flow=cell.flow,
            key=key,
            point=cell.point,
            ttl=TTL,
            probe=cell.signal == "stop",
        )
        report["epoch"] = (await holder.expect("started"))["started"]
        await holder.expect("at")
        ledger = open_ledger(ledger_path)
        carrier = Carrier(world_path, ledger_path=ledger_path, mode=cell.mode)
        clock = ShiftedClock()
        try:
            if cell.signal == "kill":
                await holder.kill()
                successor = build_gateway(ledger, carrier, clock=clock, lease_ttl=TTL)
                statuses: list[str] = [o.status for o in await successor.start()]
            else:
                holder.signal(signal.SIGSTOP)
                successor = build_gateway(ledger, carrier, clock=clock, standby=True, lease_ttl=TTL)
                statuses = [o.status for o in await successor.start(wait_seconds=TIMEOUT)]
                # A call under the new epoch: from now on the carrier refuses the old one.
                statuses.append((await successor.submit(notice(successor, key + "-notice"))).status)
            statuses += await finish_all(successor, clock, cell.flow)
            if cell.signal == "stop":
                await holder.say("go")
                holder.signal(signal.SIGCONT)
                report.update(await holder.expect("done"))
                assert await successor.reconcile() == [], f"seed {seed} {cell}: the old holder left work"
            successor.close()
        finally:
            carrier.close()
            ledger.close()
    return audit(ledger_path, world_path, seed=seed), report, statuses


def check_cell(cell: Cell, result: Audit, report: dict[str, Any], statuses: list[str]) -> None:
    where = f"seed {result.seed} cell {cell} ({cell.phase}): {result}; holder said {report}"
    status, effects = cell.expected()
    key = f"{cell}-{result.seed}"
    assert len(result.effects_of(key)) == effects, where
    assert not result.problems, where
    assert [x.status for x in result.executions_of(key)] == ([] if status is None else [status]), where
    if cell.phase in ("claimed, not called", "called, not recorded"):
        assert [x.recovered for x in result.executions_of(key)] == [True], where
    assert "stale:succeeded" not in statuses, where
    if cell.signal == "stop":
        # The old holder, continued: nothing it appends counts, and the carrier refuses its call.
        assert report["probe"] == "LeaseLost", where
        if cell.phase in ("nothing recorded", "claimed, not called", "called, not recorded"):
            assert report["error"] == "LeaseLost", where
        # Its claimed call goes out under the old epoch, unless the successor found the outcome
        # unknowable and paused the operation (its control check stops it first), or its own
        # heartbeat saw the takeover first (it refuses itself): refused either way, never an effect.
        replayed = cell.mode in ("idempotent", "fenced")
        stale = 1 if cell.phase == "claimed, not called" and replayed else 0
        refused = [(k, e) for _, k, e, _ in result.refused]
        assert refused in ([], [(key, report["epoch"])] * stale), where
    else:
        assert result.refused == [], where


@pytest.mark.parametrize(("cell", "backend"), params())
async def test_a_crash_at_any_point_leaves_one_outcome_per_intent_and_one_effect_per_key(
    cell: Cell, backend: str, tmp_path: Path, ran: Tally, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed or frozen at any point, every intent ends with one outcome and the world sees each key once."""
    monkeypatch.setenv("ANSWERABLE_KEY_DIR", str(tmp_path / "keys"))
    result, report, statuses = await run_cell(cell, tmp_path, SEED, backend)
    ran.add(f"{cell}-{backend}", result)
    check_cell(cell, result, report, statuses)


async def test_a_fenced_operation_is_not_replayed_after_its_effect_happened(tmp_path: Path) -> None:
    """Killed after a fenced (not idempotent) call returned: recovery finds it by a fenced lookup
    and records it; a fencing token alone never justifies booking a second time."""
    cell = Cell("kill", "allowed", "executed", "fenced")
    result, _report, _statuses = await run_cell(cell, tmp_path, SEED)
    assert len(result.effects_of(f"{cell}-{SEED}")) == 1, f"seed {SEED} cell {cell}: {result}"
