"""Several real processes on one ledger: a holder, a standby, a contender, reviewers and the CLI.

Every scenario runs under the seed from ``ANSWERABLE_SEED`` (under ``ANSWERABLE_SOAK=1``, under
more seeds); the seed picks the choices a scenario makes and is named in every failure.
"""

from __future__ import annotations

import asyncio
import fcntl
import random
import signal
from pathlib import Path

import pytest
from crash_world import (
    REVIEWER,
    REVIEWER2,
    Carrier,
    booking,
    build_gateway,
    install,
)
from procs import Children, Tally, audit, cli, rest, seeds, tally
from typer.testing import CliRunner

from answerable import KeyPair, SQLiteLedger
from answerable.cli import app

pytestmark = [pytest.mark.crash, pytest.mark.slow]

ran = tally("multiprocess")


def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "ledger.db", tmp_path / "world.db"


def approve_argv(ledger_path: Path, review_id: str, tmp_path: Path, who: KeyPair = REVIEWER) -> list[str]:
    """``answerable approve`` as a reviewer types it, with their key saved to a file."""
    key = tmp_path / f"{who.identity}.key"
    who.save(key)
    return ["approve", str(ledger_path), review_id, "--by", who.identity, "--reason", "ok", "--key", str(key)]


async def reviewed_booking(ledger_path: Path, world_path: Path, key: str) -> str:
    """A booking sent to review by a gateway that then stops; returns the review id."""
    with SQLiteLedger.open(ledger_path) as ledger:
        carrier = Carrier(world_path, ledger_path=ledger_path)
        gateway = build_gateway(ledger, carrier)
        await gateway.start()
        outcome = await gateway.submit(booking(gateway, key, "approved"))
        gateway.close()
        carrier.close()
    assert outcome.review is not None
    return outcome.review.id


@pytest.mark.parametrize("seed", seeds())
async def test_a_holder_stopped_past_its_lease_can_neither_append_nor_call_when_it_wakes(
    tmp_path: Path, seed: int, ran: Tally
) -> None:
    """SIGSTOP past the lease, a standby takes over and calls; SIGCONT: LeaseLost, the partner refuses."""
    ledger_path, world_path = paths(tmp_path)
    await install(ledger_path)
    mode = random.Random(seed).choice(["idempotent", "fenced"])
    x, y = f"x-{seed}", f"y-{seed}"
    common = {"ledger": str(ledger_path), "world": str(world_path), "mode": mode, "ttl": 1.0}
    async with Children(tmp_path) as kids:
        holder = await kids.spawn("holder", **common, flow="allowed", key=x, point="claimed", probe=True)
        old = (await holder.expect("started"))["started"]
        await holder.expect("at")  # x is claimed under the old epoch, its call not yet made
        holder.signal(signal.SIGSTOP)
        standby = await kids.spawn("standby", **common, key=y)
        new = (await standby.expect("took_over"))["took_over"]
        called = await standby.expect("called")
        await holder.say("go")
        holder.signal(signal.SIGCONT)
        woke = await holder.expect("done")
        await standby.say("exit")
        await standby.expect("done")
    result = audit(ledger_path, world_path, seed=seed)
    ran.add(f"stopped holder {seed}", result)
    where = f"seed {seed} mode {mode}: {result}; holder said {woke}; standby said {standby.messages}"
    assert new == old + 1, where
    assert called["called"] == ["succeeded", "succeeded"], where
    assert woke["error"] == "LeaseLost", where  # its Execution for x was refused by the ledger
    assert woke["probe"] == "LeaseLost", where  # and so is anything new it tries
    # Its call was refused by the carrier, or never left: its heartbeat may see the takeover first.
    assert result.refused in ([], [("book", x, old, new)]), where
    assert [e.epoch for e in result.effects_of(x)] == [new], where
    assert [(x.status, x.recovered) for x in result.executions_of(x)] == [("succeeded", True)], where
    assert [e.epoch for e in result.effects_of(f"{y}-after")] == [new], where
    assert not result.problems, where


@pytest.mark.parametrize("seed", seeds())
async def test_reviews_approved_from_the_cli_run_once_each_across_a_kill_of_the_holder(
    tmp_path: Path, seed: int, ran: Tally
) -> None:
    """Holder, contender and standby on one ledger; CLI approvals; kill -9 mid-call: each runs once."""
    ledger_path, world_path = paths(tmp_path)
    await install(ledger_path)
    rng = random.Random(seed)
    n = 4
    keys = [f"r{i}-{seed}" for i in range(n)]
    victim, point = rng.randrange(n), rng.choice(["claimed", "during", "executed"])
    common = {"ledger": str(ledger_path), "world": str(world_path), "mode": "idempotent", "ttl": 10.0}
    async with Children(tmp_path) as kids:
        holder = await kids.spawn(
            "service", **common, keys=keys, flow="approved", pause_key=keys[victim], point=point
        )
        await holder.expect("started")
        reviews = [(await holder.expect("submitted"))["review"] for _ in keys]
        contender = await kids.spawn("contender", **common)
        standby = await kids.spawn("service", **common, standby=True, until=n)
        refused = await contender.expect("done")
        for i, review_id in enumerate(reviews):
            answer = await cli(*approve_argv(ledger_path, review_id, tmp_path))
            assert answer.code == 0, f"seed {seed}: {answer}"
            if i == victim:
                await holder.expect("at")
                await holder.kill()
        await standby.expect("done")
    result = audit(ledger_path, world_path, seed=seed)
    ran.add(f"kill during CLI reviews {seed}", result)
    where = f"seed {seed} victim {victim} at {point}: {result}; contender said {refused}"
    held = refused.get("lease_held")
    assert held is not None, where
    assert (held["pid"], held["holder"]) == (holder.pid, f"gateway@{held['host']}:{holder.pid}"), where
    assert refused["reconcile_error"] == "LeaseLost", where  # no lease, no reconcile
    for i, key in enumerate(keys):
        assert len(result.effects_of(key)) == 1, where
        assert [x.status for x in result.executions_of(key)] == ["succeeded"], where
        assert [x.recovered for x in result.executions_of(key)] == [i == victim], where
    assert not result.problems, where


@pytest.mark.parametrize("seed", seeds())
async def test_a_second_process_cannot_reconcile_while_the_holder_has_a_call_in_flight(
    tmp_path: Path, seed: int, ran: Tally
) -> None:
    """While a claimed call is in flight, another process gets LeaseHeld and cannot reconcile it."""
    ledger_path, world_path = paths(tmp_path)
    await install(ledger_path)
    mode = random.Random(seed).choice(["idempotent", "fenced", "lookup", "plain"])
    x = f"x-{seed}"
    common = {"ledger": str(ledger_path), "world": str(world_path), "mode": mode}
    async with Children(tmp_path) as kids:
        holder = await kids.spawn("holder", **common, flow="allowed", key=x, point="claimed")
        await holder.expect("at")
        contender = await kids.spawn("contender", **common)
        refused = await contender.expect("done")
        await holder.say("go")
        finished = await holder.expect("done")
    with SQLiteLedger.open(ledger_path) as ledger:
        carrier = Carrier(world_path, ledger_path=ledger_path, mode=mode)
        later = build_gateway(ledger, carrier)
        assert await later.start() == [], f"seed {seed}: a finished call was reconciled again"
        later.close()
        carrier.close()
    result = audit(ledger_path, world_path, seed=seed)
    ran.add(f"contender while in flight {seed}", result)
    where = f"seed {seed} mode {mode}: {result}; contender said {refused}; holder said {finished}"
    assert refused.get("lease_held", {}).get("pid") == holder.pid, where
    assert refused["reconcile_error"] == "LeaseLost", where
    assert finished["statuses"] == ["succeeded"], where
    assert len(result.effects_of(x)) == 1, where
    assert [(x.status, x.recovered) for x in result.executions_of(x)] == [("succeeded", False)], where
    assert result.controls == [], where
    assert not result.problems, where


@pytest.mark.parametrize("seed", seeds())
async def test_reconcile_settles_a_dead_claim_and_touches_none_of_its_own_calls_in_flight(
    tmp_path: Path, seed: int, ran: Tally
) -> None:
    """In one process, reconcile() with its own calls held in flight recovers only the dead epoch's claim."""
    ledger_path, world_path = paths(tmp_path)
    await install(ledger_path)
    dead, live = f"dead-{seed}", f"live-{seed}"
    hold = 2 + random.Random(seed).randrange(3)
    common = {"ledger": str(ledger_path), "world": str(world_path), "mode": "idempotent"}
    async with Children(tmp_path) as kids:
        crashed = await kids.spawn("holder", **common, flow="allowed", key=dead, point="claimed")
        await crashed.expect("at")
        await crashed.kill()
        survivor = await kids.spawn("inflight", **common, key=live, hold=hold)
        report = await survivor.expect("done")
    result = audit(ledger_path, world_path, seed=seed)
    ran.add(f"reconcile with own calls in flight {seed}", result)
    where = f"seed {seed} hold {hold}: {result}; survivor said {report}"
    assert report["reconciled"] == [[dead, "succeeded"]], where
    assert report["statuses"] == ["succeeded"] * hold, where
    assert [(x.status, x.recovered) for x in result.executions_of(dead)] == [("succeeded", True)], where
    for i in range(hold):
        key = f"{live}-{i}"
        assert len(result.effects_of(key)) == 1, where
        assert [(x.status, x.recovered) for x in result.executions_of(key)] == [("succeeded", False)], where
    assert not result.problems, where


@pytest.mark.parametrize("seed", seeds())
async def test_two_reviewers_answering_at_once_from_the_cli_count_once(
    tmp_path: Path, seed: int, ran: Tally
) -> None:
    """Two CLI processes released together on one review: one answer counts, the other exits 1; one run."""
    ledger_path, world_path = paths(tmp_path)
    await install(ledger_path)
    review_id = await reviewed_booking(ledger_path, world_path, f"r-{seed}")
    go = tmp_path / "go"
    people = [REVIEWER, REVIEWER2]
    random.Random(seed).shuffle(people)  # which of them starts first
    gate = go.open("w")
    fcntl.flock(gate, fcntl.LOCK_EX)  # both children block on this lock, then start together
    async with Children(tmp_path) as kids:
        answering = [
            await kids.spawn("cli", go=str(go), argv=approve_argv(ledger_path, review_id, tmp_path, who))
            for who in people
        ]
        for child in answering:
            await child.expect("ready")
        fcntl.flock(gate, fcntl.LOCK_UN)
        gate.close()
        printed = [await rest(child) for child in answering]
    codes = [child.proc.returncode or 0 for child in answering]
    where = f"seed {seed}: codes {codes}, stdout {printed}, stderr {[c.stderr() for c in answering]}"
    assert sorted(codes) == [0, 1], where  # 1: it ran, and the answer is no
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert "review is approved" in printed[winner], where
    assert "already settled (approved)" in answering[loser].stderr(), where
    with SQLiteLedger.open(ledger_path) as ledger:
        assert len(ledger.of_kind("Approval")) == 1, where
        carrier = Carrier(world_path, ledger_path=ledger_path)
        gateway = build_gateway(ledger, carrier)
        await gateway.start()
        assert [o.status for o in await gateway.settle_reviews()] == ["succeeded"], where
        gateway.close()
        carrier.close()
    result = audit(ledger_path, world_path, seed=seed)
    ran.add(f"racing CLI reviewers {seed}", result)
    assert len(result.effects_of(f"r-{seed}")) == 1, f"{where}; {result}"
    assert not result.problems, f"{where}; {result}"


def test_a_refused_cli_answer_names_its_reason_code(tmp_path: Path) -> None:
    """A second answer to a settled review exits 1 and names the stable reason code already_answered."""
    ledger_path, world_path = paths(tmp_path)
    asyncio.run(install(ledger_path))
    review_id = asyncio.run(reviewed_booking(ledger_path, world_path, "r-1"))
    runner, people = CliRunner(), (REVIEWER, REVIEWER2)
    answers = [runner.invoke(app, approve_argv(ledger_path, review_id, tmp_path, w)) for w in people]
    assert [a.exit_code for a in answers] == [0, 1], [a.output for a in answers]
    assert "already_answered" in answers[1].output


@pytest.mark.parametrize("seed", seeds())
async def test_a_halt_from_the_cli_stops_every_call_claimed_after_it(
    tmp_path: Path, seed: int, ran: Tally
) -> None:
    """Under a stream of intents, `answerable halt`: no call whose Claim comes after the halt runs.

    Calls that passed their control check before the halt was committed may finish; a claim
    committed after the halt is checked after it, so it must end not_executed with no effect,
    and an approval given after the halt is claimed but not run.
    """
    ledger_path, world_path = paths(tmp_path)
    await install(ledger_path)
    before = random.Random(seed).randint(3, 8)
    common = {"ledger": str(ledger_path), "world": str(world_path), "mode": "idempotent"}
    async with Children(tmp_path) as kids:
        stream = await kids.spawn("stream", **common, key=f"s-{seed}", workers=3)
        review_id = (await stream.expect("review"))["review"]
        while sum(m.get("status") == "succeeded" for m in stream.messages) < before:  # booked, each
            await stream.expect("outcome")
        halted = await cli("halt", str(ledger_path), "--by", "pager@ops.example", "--reason", "storm")
        assert halted.code == 0, f"seed {seed}: {halted}"
        answer = await cli(*approve_argv(ledger_path, review_id, tmp_path))
        assert answer.code == 0, f"seed {seed}: {answer}"
        settled = await stream.expect("reviewed")
        while sum(m.get("status") == "denied" for m in stream.messages) < 3:
            await stream.expect("outcome")
        await stream.say("stop")
        await stream.expect("done")
    result = audit(ledger_path, world_path, seed=seed)
    ran.add(f"halt from the CLI {seed}", result)
    [halt] = [i for i, c in result.controls if c.action == "halt"]
    late_claims = [c for i, c in result.claims if i > halt]
    by_id = {intent.id: intent for _, intent in result.intents.values()}
    where = f"seed {seed} halt at {halt} after {before} bookings: {result}"
    assert settled["status"] == "not_executed", where
    assert late_claims, where  # at least the approval given after the halt was claimed
    for claim in late_claims:
        key = by_id[claim.intent_id].idempotency_key
        assert result.effects_of(key) == [], f"{where}: {key} claimed after the halt, and called"
        assert [x.status for x in result.executions_of(key)] == ["not_executed"], where
    assert all(e.claim_index is not None and e.claim_index < halt for e in result.effects), where
    assert any(i > halt for i, _ in result.intents.values()), where  # the stream went on
    assert not result.problems, where


async def test_an_approval_that_lapsed_does_not_count_again_in_a_process_whose_clock_is_behind(
    tmp_path: Path,
) -> None:
    """One process sees a sixty-second approval lapse, and records more after it; the next
    gateway's clock is two minutes behind (each process has its own clock, as machines do). It
    judges the approval by the ledger's newest time, not only its own clock, so the approval stays
    lapsed and nothing is booked (before, it saw "approved" and ran the call)."""
    ledger_path, world_path = paths(tmp_path)
    await install(ledger_path)
    common = {"ledger": str(ledger_path), "world": str(world_path), "key": "lapse"}
    async with Children(tmp_path) as kids:
        first = await kids.spawn("lapse", **common, phase="approve")
        approved = await first.expect("done")
        assert await first.wait() == 0, first
        assert approved["later"] == "succeeded", approved
        assert approved["status"] == "reopened", approved
        behind = await kids.spawn("lapse", **common, phase="settle", review=approved["review"])
        settled = await behind.expect("done")
        assert await behind.wait() == 0, behind
    assert settled["settled"] == [], settled
    assert settled["status"] == "reopened", settled
    carrier = Carrier(world_path)
    assert carrier.count("lapse") == 0
    assert carrier.count("lapse-later") == 1
    carrier.close()
