"""Driving real child processes from a test, and auditing what they left in the ledger and the world.

Seeds: ``ANSWERABLE_SEED`` picks the seed (default :data:`DEFAULT_SEED`); every assertion message
names it, so a failure replays with ``ANSWERABLE_SEED=N``. ``ANSWERABLE_SOAK=1`` runs the whole
crash matrix and every scenario under :data:`SOAK_SEEDS` more seeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from crash_world import Carrier, Effect, ShiftedClock

from answerable import IdSource
from answerable.ledger import open_ledger
from answerable.records import (
    Approval,
    Claim,
    Control,
    Decision,
    Execution,
    Intent,
    Review,
    decode_entry,
)
from answerable.review import ReviewQueue

SCRIPT = Path(__file__).with_name("crash_world.py")
CLI = Path(sys.executable).with_name("answerable")

DEFAULT_SEED = 1729
SEED = int(os.environ.get("ANSWERABLE_SEED") or DEFAULT_SEED)
SOAK = os.environ.get("ANSWERABLE_SOAK", "") not in ("", "0")
SOAK_SEEDS = 4
"""How many seeds after SEED a soak run adds to every scenario."""

TIMEOUT = 60.0
"""A guard on every wait for a child: long enough for a loaded machine, never a pacing device."""


def seeds() -> list[int]:
    """The seeds a scenario runs under: SEED, and under soak SOAK_SEEDS more."""
    return [SEED + i for i in range(1 + (SOAK_SEEDS if SOAK else 0))]


class Child:
    """A ``crash_world.py`` process the test talks to over its stdin and stdout."""

    def __init__(self, role: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.role = role
        self.proc = proc
        self.log = log
        self.messages: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def __repr__(self) -> str:
        return f"<{self.role} pid {self.pid}: said {self.messages}; stderr: {self.stderr()}>"

    async def expect(self, key: str, within: float = TIMEOUT) -> dict[str, Any]:
        """The next message that has ``key`` (earlier ones are kept in ``messages``).

        Raises:
            AssertionError: the child ended or stayed silent for ``within`` seconds first.
        """
        assert self.proc.stdout is not None
        while True:
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), within)
            except TimeoutError:
                raise AssertionError(f"no {key!r} from {self!r} within {within} s") from None
            if not line:
                await self.proc.wait()
                raise AssertionError(f"{self!r} exited ({self.proc.returncode}) before saying {key!r}")
            message: dict[str, Any] = json.loads(line)
            self.messages.append(message)
            if key in message:
                return message

    async def say(self, line: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    async def kill(self) -> None:
        """kill -9, and reap it, so the lease sees a dead process."""
        self.signal(signal.SIGKILL)
        await self.wait()

    async def wait(self, within: float = TIMEOUT) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            raise AssertionError(f"{self!r} did not exit within {within} s") from None


class Children:
    """Spawns children for one test and makes sure none outlives it (stopped ones included)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.spawned: list[Child] = []

    async def spawn(self, role: str, **config: Any) -> Child:
        log = self.tmp_path / f"{role}-{len(self.spawned)}.stderr"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-u",
                str(SCRIPT),
                role,
                json.dumps(config),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        child = Child(role, proc, log)
        self.spawned.append(child)
        return child

    async def __aenter__(self) -> Children:
        return self

    async def __aexit__(self, *_: object) -> None:
        for child in self.spawned:
            if child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.signal(signal.SIGCONT)
                    child.signal(signal.SIGKILL)
                await child.proc.wait()
            if child.proc.stdin is not None:
                child.proc.stdin.close()


@dataclass(frozen=True)
class Ran:
    """What a finished command printed."""

    code: int
    out: str
    err: str


async def cli(*args: str, within: float = TIMEOUT) -> Ran:
    """Run ``answerable ARGS`` as its own process, as a person at a shell would."""
    proc = await asyncio.create_subprocess_exec(
        str(CLI), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    return Ran(proc.returncode if proc.returncode is not None else -1, out.decode(), err.decode())


class Tally:
    """What each run of a module left behind, for one summary line with the seed."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.runs: list[tuple[str, Audit]] = []

    def add(self, name: str, result: Audit) -> None:
        self.runs.append((name, result))

    def line(self) -> str:
        totals: dict[str, int] = {}
        for _, result in self.runs:
            for name, n in result.counts().items():
                totals[name] = totals.get(name, 0) + n
        return (
            f"{self.title}: seed {SEED}{' (soak)' if SOAK else ''}, {len(self.runs)} runs: "
            f"{', '.join(name for name, _ in self.runs)}; totals {totals}"
        )


def tally(title: str) -> Any:
    """A module fixture collecting a Tally and printing its line when the module is done."""

    @pytest.fixture(scope="module")
    def fixture(request: pytest.FixtureRequest) -> Iterator[Tally]:
        counted = Tally(title)
        yield counted
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or capture is None or not counted.runs:
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + counted.line())

    return fixture


# --- the audit ---------------------------------------------------------------------------------------


@dataclass
class Audit:
    """The ledger and the carrier's books after a run, and every broken promise found in them."""

    seed: int
    entries: list[tuple[int, Any]]
    intents: dict[str, tuple[int, Intent]]
    executions: dict[str, list[tuple[int, Execution]]]
    claims: list[tuple[int, Claim]]
    controls: list[tuple[int, Control]]
    effects: list[Effect]
    notices: list[Effect]
    refused: list[tuple[str, str, int, int]]
    problems: list[str] = field(default_factory=list)

    def intent_of(self, key: str) -> Intent | None:
        found = [i for _, i in self.intents.values() if i.idempotency_key == key]
        return found[0] if found else None

    def executions_of(self, key: str) -> list[Execution]:
        intent = self.intent_of(key)
        return [] if intent is None else [x for _, x in self.executions.get(intent.id, [])]

    def effects_of(self, key: str) -> list[Effect]:
        return [e for e in self.effects if e.key == key]

    def counts(self) -> dict[str, int]:
        statuses: dict[str, int] = {}
        for runs in self.executions.values():
            for _, x in runs:
                statuses[x.status] = statuses.get(x.status, 0) + 1
        return {
            "entries": len(self.entries),
            "intents": len(self.intents),
            **{f"executions_{k}": v for k, v in sorted(statuses.items())},
            "recovered": sum(x.recovered for runs in self.executions.values() for _, x in runs),
            "effects": len(self.effects),
            "notices": len(self.notices),
            "refused_stale_calls": len(self.refused),
        }

    def __str__(self) -> str:
        return f"seed {self.seed}: counts {self.counts()}; problems: {self.problems}"


def audit(ledger_path: Path | str, world_path: Path, *, seed: int = SEED) -> Audit:
    """Read back a ledger and the carrier's books and check the promises that must survive any crash.

    * the ledger verifies;
    * at most one effect per idempotency key;
    * no effect without its Intent, and a Claim under the call's epoch, in the ledger before it;
    * no effect under a stale epoch (older than the lease in force at the time);
    * every intent has exactly one final outcome: one Execution, or a deny, or a denied review;
    * a succeeded Execution has its effect in the carrier's books;
    * a claim made under approvals made it while every one of them was still valid;
    * an ambiguous Execution pauses its operation.
    """
    ledger = open_ledger(ledger_path)
    carrier = Carrier(world_path)
    problems: list[str] = []
    try:
        try:
            ledger.verify()
        except Exception as exc:
            problems.append(f"the ledger does not verify: {exc}")
        entries = [(e.index, decode_entry(e.data)) for e in ledger.entries()]
        clock = ShiftedClock()
        queue = ReviewQueue(ledger, clock=clock, ids=IdSource(clock))
        intents = {r.id: (i, r) for i, r in entries if isinstance(r, Intent)}
        claims = [(i, r) for i, r in entries if isinstance(r, Claim)]
        controls = [(i, r) for i, r in entries if isinstance(r, Control)]
        executions: dict[str, list[tuple[int, Execution]]] = {}
        for i, r in entries:
            if isinstance(r, Execution):
                executions.setdefault(r.intent_id, []).append((i, r))
        effects, notices, refused = carrier.effects("book"), carrier.effects("notify"), carrier.refused()
        problems += _promises(queue, entries, intents, executions, claims, controls, effects, notices)
    finally:
        carrier.close()
        ledger.close()
    return Audit(seed, entries, intents, executions, claims, controls, effects, notices, refused, problems)


def _promises(
    queue: ReviewQueue,
    entries: list[tuple[int, Any]],
    intents: dict[str, tuple[int, Intent]],
    executions: dict[str, list[tuple[int, Execution]]],
    claims: list[tuple[int, Claim]],
    controls: list[tuple[int, Control]],
    effects: list[Effect],
    notices: list[Effect],
) -> list[str]:
    problems: list[str] = []
    decisions = {r.intent_id: r for _, r in entries if isinstance(r, Decision)}
    reviews = {r.intent_id: r for _, r in entries if isinstance(r, Review)}
    approvals = {r.id: r for _, r in entries if isinstance(r, Approval)}

    for kind, made in (("booking", effects), ("notice", notices)):
        per_key: dict[str, int] = {}
        for effect in made:
            per_key[effect.key] = per_key.get(effect.key, 0) + 1
            if effect.intent_index is None:
                problems.append(f"{kind} {effect.key}: an effect with no Intent in the ledger before it")
            if effect.claim_index is None:
                problems.append(f"{kind} {effect.key}: an effect with no Claim under epoch {effect.epoch}")
            if effect.lease_epoch != effect.epoch:
                problems.append(
                    f"{kind} {effect.key}: an effect under stale epoch {effect.epoch} "
                    f"while epoch {effect.lease_epoch} held the lease"
                )
        problems += [f"{kind} {k}: {n} effects for one idempotency key" for k, n in per_key.items() if n > 1]

    keys_done = {e.key for e in effects} | {e.key for e in notices}
    for intent_id, (_, intent) in intents.items():
        runs = [x for _, x in executions.get(intent_id, [])]
        decision = decisions.get(intent_id)
        name = f"intent {intent.idempotency_key}"
        if len(runs) > 1:
            problems.append(f"{name}: {len(runs)} Executions {[x.status for x in runs]}")
        if decision is None:
            problems.append(f"{name}: no Decision")
            continue
        if decision.effect == "deny":
            if runs:
                problems.append(f"{name}: denied, yet executed ({[x.status for x in runs]})")
            continue
        if decision.effect == "review":
            state = queue.state(reviews[intent_id].id)
            if not runs and state.claim is None and state.resolution in ("denied", "expired:deny"):
                continue
            if not runs:
                problems.append(f"{name}: review {state.status}, and no Execution: no final outcome")
                continue
        elif not runs:
            problems.append(f"{name}: allowed, and no Execution: no final outcome")
            continue
        for run in runs:
            if run.status == "succeeded" and intent.idempotency_key not in keys_done:
                problems.append(f"{name}: Execution succeeded, but the carrier has no effect for it")
            if run.status == "ambiguous" and not any(
                c.action == "pause" and c.scope.value == intent.operation and run.id in c.causes
                for _, c in controls
            ):
                problems.append(f"{name}: ambiguous, and its operation was not paused")

    for _, claim in claims:
        for cause in claim.causes:
            approval = approvals.get(cause)
            if approval is not None and approval.expires_at <= claim.at:
                problems.append(
                    f"claim {claim.id} ({claim.via}) used approval {approval.id}, "
                    f"which expired at {approval.expires_at}, at {claim.at}"
                )
    return problems


async def rest(child: Child) -> str:
    """Whatever the child printed on stdout after its last message, once it has exited."""
    assert child.proc.stdout is not None
    await child.wait()
    return (await child.proc.stdout.read()).decode(errors="replace")
