"""A review's lifecycle is a fold over ledger events, the same in every process and after restarts.

open -> approved -> claimed (for good); denied; expired (its safe default applied once);
reopened (an approval that expired unused no longer counts, and its reviewer may answer again).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import (
    POLICIES,
    People,
    World,
    pending_review,
    register_world,
    reviewing_gateway,
)

from answerable import ApprovalRefused, FakeClock, Gateway, IdSource, SQLiteLedger, new_charter
from answerable.clock import rfc3339
from answerable.records import Claim, Execution, ExternalEvent, Message, decode_entry
from answerable.review import ReviewQueue

MEDICAL = {"cls": "medical", "disruption": True}
APPROVE_ON_EXPIRY = POLICIES.replace(
    '@review("a medical booking during a disruption needs a person")',
    '@review("a medical booking during a disruption needs a person")\n'
    '@deadline_minutes("10")\n@expires_minutes("30")\n@on_expiry("approve")',
)


def records(ledger: SQLiteLedger, kind: str) -> list[object]:
    return [decode_entry(e.data) for e in ledger.of_kind(kind)]


async def test_an_approval_that_expires_unused_reopens_the_review(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
):
    """Validity bounds when an approval may be used; unused, it lapses and its reviewer may answer again."""
    review_id = await pending_review(gateway)
    queue = ReviewQueue(ledger, clock=clock, ids=gateway.ids)
    await queue.submit(
        queue.approval(review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60)
    )
    clock.advance(120)  # the gateway polled only after the approval's validity ended
    assert await gateway.settle_reviews() == []
    assert world.calls == 0
    state = gateway.reviews.state(review_id)
    assert (state.status, state.resolution, len(state.lapsed)) == ("reopened", None, 1)
    assert [s.review.id for s in gateway.reviews.open()] == [review_id]
    done = await gateway.answer(review_id, key=people.reviewer, verdict="approve", reason="still ok")
    assert done.status == "succeeded"
    assert world.calls == 1
    assert done.execution is not None
    assert done.execution.authority is not None
    assert done.execution.authority.ids == (done.approval.id,)  # type: ignore[union-attr]
    assert gateway.reviews.state(review_id).status == "claimed"


def dated(seconds_ahead: int, clock: FakeClock, n: int = 1) -> ExternalEvent:
    return ExternalEvent(
        id=f"01K0000000000000000000000{n}",
        at=rfc3339(clock.now_ns() + seconds_ahead * 1_000_000_000),
        source="elsewhere", type="tick", payload={},
    )  # fmt: skip


async def test_the_review_clock_is_never_behind_the_ledger_by_more_than_the_skew(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
):
    """An entry dated later than this clock (another process's, whose clock is ahead) moves the
    review clock to it, so an approval that lapsed there lapses here; an entry dated a year ahead
    is a clock out of step and moves it not at all, nor stops the next entry from moving it."""
    review_id = await pending_review(gateway)
    queue = ReviewQueue(ledger, clock=clock, ids=gateway.ids)
    await queue.submit(
        queue.approval(review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=600)
    )
    await ledger.append([dated(366 * 24 * 3600, clock)])
    assert gateway.reviews.state(review_id).status == "approved"  # not a year on
    clock.advance(400)
    assert gateway.reviews.state(review_id).status == "approved"  # nor 300 s on: 200 s are left
    await ledger.append([dated(250, clock, n=2)])  # this clock says 200 s are left; the ledger, 50 s past
    assert gateway.reviews.state(review_id).status == "reopened"
    assert await gateway.settle_reviews() == []
    assert world.calls == 0


async def test_a_writer_whose_clock_is_behind_does_not_bring_a_lapsed_approval_back(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
):
    """The review clock is floored at the latest time any runtime clock gave an entry, not at
    the newest entry's: before, a process two minutes behind appending after the lapse let a
    gateway whose clock is behind too count the lapsed approval, and run the call."""
    review_id = await pending_review(gateway)
    queue = ReviewQueue(ledger, clock=clock, ids=gateway.ids)
    await queue.submit(
        queue.approval(review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60)
    )
    await ledger.append([dated(90, clock)])  # a clock 90 s ahead saw the approval lapse
    await ledger.append([dated(-30, clock, n=2)])  # then a writer behind wrote on
    assert gateway.reviews.state(review_id).status == "reopened"
    assert await gateway.settle_reviews() == []
    assert world.calls == 0


def message_ahead(gw: Gateway, clock: FakeClock, seconds: int) -> Message:
    """A router's plan its sender dated ``seconds`` ahead of ``clock``."""
    return Message(
        id=gw.ids.new(),
        at=rfc3339(clock.now_ns() + seconds * 1_000_000_000),
        sender="router",
        topic="plans",
        type="plan",
        payload={},
        trace_id=gw.ids.new(),
    )


async def test_a_message_its_sender_dated_ahead_does_not_close_a_review_early(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
):
    """An agent's message may be dated up to the signed-request skew ahead (the service takes
    it); before, its time moved every review's clock, and a review whose safe default is
    ``approve`` closed, and its call ran, minutes before its expiry. A person's answer dated
    ahead moves it no more. Only times the runtime's own clocks gave count."""
    gw = await reviewing_gateway(ledger, people, clock, world, policies=APPROVE_ON_EXPIRY)
    review_id = await pending_review(gw)
    clock.advance(28 * 60)  # two minutes before the review expires
    message = message_ahead(gw, clock, 299)
    await ledger.append([message])
    assert gw.reviews.state(review_id).resolution is None
    await gw.settle_reviews()
    assert world.calls == 0
    assert gw.reviews.state(review_id).resolution is None
    clock.advance(3 * 60)
    [outcome] = await gw.settle_reviews()
    assert (outcome.status, world.calls) == ("succeeded", 1)


async def test_a_message_dated_ahead_and_refused_does_not_close_a_review_early(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
):
    """The same message refused (its sender paused): its Refusal was dated with the time the
    sender chose, and the Refusal, dated by the runtime, moved every review's clock 299 s ahead
    (found by an independent review). A refusal is dated when it was refused."""
    from answerable import MessageRefused, Scope, System

    gw = await reviewing_gateway(ledger, people, clock, world, policies=APPROVE_ON_EXPIRY)
    review_id = await pending_review(gw)
    system = System(ledger, gw, agents=["router"], clock=clock, ids=gw.ids)
    await gw.control.pause(by=people.ri.identity, reason="x", scope=Scope(kind="agent", value="router"))
    clock.advance(28 * 60)
    message = message_ahead(gw, clock, 299)
    with pytest.raises(MessageRefused):
        await system.publish_message(message, decided=False)
    await gw.settle_reviews()
    assert world.calls == 0
    assert gw.reviews.state(review_id).resolution is None


async def test_a_claimed_review_stays_settled_after_its_approval_expires(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
):
    """Once claimed, nothing reopens it: not the approval's expiry, not a second reviewer, not a poll."""
    review_id = await pending_review(gateway)
    await gateway.answer(review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60)
    clock.advance(3600)
    state = gateway.reviews.state(review_id)
    assert (state.status, state.resolution) == ("claimed", "approved")
    assert gateway.reviews.open() == []
    assert await gateway.settle_reviews() == []
    with pytest.raises(ApprovalRefused) as refused:
        await gateway.answer(review_id, key=people.ri, verdict="approve", reason="me too")
    assert refused.value.reason_code == "already_claimed"
    assert world.calls == 1
    assert len(records(ledger, "Execution")) == 1


async def test_an_approved_claim_left_by_a_crash_is_recovered_not_run_again_on_a_new_approval(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock, world: World
):
    """Crash after the claim, restart after the approval's validity ended: reconcile settles it once."""

    class Crash(BaseException):
        pass

    def crash(point: str, _intent: object) -> None:
        if point == "claimed":
            raise Crash

    gw = await reviewing_gateway(ledger, people, clock, world)
    review_id = await pending_review(gw)
    object.__setattr__(gw, "_fault", crash)
    with pytest.raises(Crash):
        await gw.answer(review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60)
    gw.lease.release()  # the process is gone; its claim of epoch 1 is left without an Execution
    clock.advance(3600)
    with SQLiteLedger.open(ledger_path) as store:
        restarted = Gateway(store, clock=clock, ids=IdSource(clock))
        register_world(restarted, world)
        [outcome] = await restarted.start()
        assert outcome.status == "succeeded"
        assert outcome.execution is not None
        assert outcome.execution.recovered
        assert outcome.execution.authority is not None
        assert outcome.execution.authority.via == "approval"
        with pytest.raises(ApprovalRefused) as refused:
            await restarted.answer(review_id, key=people.ri, verdict="approve", reason="again")
        assert refused.value.reason_code == "already_claimed"
        assert await restarted.settle_reviews() == []
        assert await restarted.reconcile() == []
        restarted.close()
    assert world.calls == 1
    claims = [c for c in records(ledger, "Claim") if isinstance(c, Claim)]
    assert [c.via for c in claims] == ["approval", "recovery"]
    assert claims[1].takes_over == claims[0].id


async def test_approve_on_expiry_runs_exactly_once_across_restarts(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock, world: World
):
    """The safe default 'approve' is claimed once; a restarted gateway polling again runs nothing."""
    gw = await reviewing_gateway(ledger, people, clock, world, APPROVE_ON_EXPIRY)
    review_id = await pending_review(gw)
    clock.advance(31 * 60)
    [outcome] = await gw.settle_reviews()
    assert outcome.status == "succeeded"
    assert outcome.execution is not None
    assert outcome.execution.authority is not None
    assert outcome.execution.authority.via == "expiry"
    gw.close()
    with SQLiteLedger.open(ledger_path) as store:
        again = Gateway(store, clock=clock, ids=IdSource(clock))
        register_world(again, world)
        assert await again.start() == []
        assert await again.settle_reviews() == []
        assert again.reviews.state(review_id).status == "claimed"
        again.close()
    assert world.calls == 1
    executions = [x for x in records(ledger, "Execution") if isinstance(x, Execution)]
    assert len(executions) == 1


async def test_reviews_lists_open_ones_and_all_with_their_state(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
):
    """After approvals ran, `reviews` shows none waiting; --all shows each review's state."""
    approved = await pending_review(gateway)
    denied = await pending_review(gateway)
    waiting = await pending_review(gateway)
    await gateway.answer(approved, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=1)
    await gateway.answer(denied, key=people.reviewer, verdict="deny", reason="no")
    clock.advance(10)
    assert [s.review.id for s in gateway.reviews.open()] == [waiting]
    states = {s.review.id: s.status for s in gateway.reviews.all()}
    assert states == {approved: "claimed", denied: "denied", waiting: "open"}


async def test_an_answer_is_judged_by_the_charter_in_force_where_it_was_written(
    ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock, world: World
):
    """A reviewer dropped by a later charter still approved validly before it; a fresh process agrees."""
    gw = await reviewing_gateway(ledger, people, clock, world)
    review_id = await pending_review(gw)
    queue = ReviewQueue(ledger, clock=clock, ids=gw.ids)
    await queue.submit(queue.approval(review_id, key=people.reviewer, verdict="approve", reason="ok"))
    ruleset = gw._rules()[1]
    without_reviewer = new_charter(
        "logistics",
        people.ri,
        agents=["executor"],
        version=2,
        supersedes=gw.charter.id,
        clock=clock,
        ids=gw.ids,
    )
    await gw.install(without_reviewer, ruleset)
    gw.close()
    with SQLiteLedger.open(ledger_path) as store:
        fresh = Gateway(store, clock=clock, ids=IdSource(clock))
        register_world(fresh, world)
        await fresh.start()
        assert fresh.reviews.state(review_id).resolution == "approved"
        [outcome] = await fresh.settle_reviews()
        assert outcome.status == "succeeded"
        fresh.close()
    assert world.calls == 1


async def test_a_review_executed_before_claims_existed_stays_settled(tmp_path: Path):
    """A format-1 ledger's approved and executed review does not reopen when its approval lapses."""
    import shutil

    from answerable import KeyPair

    source = Path(__file__).with_name("data") / "ledger-v1"
    for name in ("ledger.db", "ledger.db.key"):
        shutil.copy(source / name, tmp_path / name)
    reviewer = KeyPair.from_seed("reviewer@shop.example", b"\x22" * 32)  # as in make.py there
    with SQLiteLedger.open(tmp_path / "ledger.db") as ledger:
        queue = ReviewQueue(ledger, clock=FakeClock(ns=2_000_000_000_000_000_000), ids=IdSource())
        [state] = queue.all()
        assert (state.status, state.resolution) == ("claimed", "approved")
        assert state.executed is not None
        assert queue.open() == []
        with pytest.raises(ApprovalRefused) as refused:
            await queue.submit(queue.approval(state.review.id, key=reviewer, verdict="deny", reason="late"))
        assert refused.value.reason_code == "already_claimed"


async def test_a_lapsed_approval_does_not_come_back_when_the_clock_steps_back(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
):
    """The wall clock jumps backwards after an approval lapsed: the review stays reopened, nothing runs."""
    review_id = await pending_review(gateway)
    await gateway.reviews.submit(
        gateway.reviews.approval(
            review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60
        )
    )
    clock.advance(120)
    assert gateway.reviews.state(review_id).status == "reopened"
    clock.advance(-100)
    assert await gateway.settle_reviews() == []
    assert gateway.reviews.state(review_id).status == "reopened"
    assert world.calls == 0


async def test_a_ledger_written_before_the_store_kept_its_latest_time_floors_at_its_newest_entry(
    gateway: Gateway, ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock, world: World
):
    """An earlier version kept no latest time; until the next append, the newest entry's time
    (if the runtime dated it) floors the review clock, as it did then. Signed answers never do."""
    import sqlite3
    from contextlib import closing

    review_id = await pending_review(gateway)
    queue = ReviewQueue(ledger, clock=clock, ids=gateway.ids)
    await queue.submit(
        queue.approval(review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60)
    )
    await ledger.append([dated(90, clock)])
    with closing(sqlite3.connect(ledger_path)) as db, db:
        db.execute("DELETE FROM meta WHERE key = 'latest_time'")
    with SQLiteLedger.open(ledger_path) as old:
        assert old.latest_time() is None
        assert ReviewQueue(old, clock=clock, ids=gateway.ids).state(review_id).status == "reopened"
    assert world.calls == 0


async def test_the_first_append_to_a_ledger_without_a_latest_time_does_not_take_the_floor_back(
    gateway: Gateway, ledger: SQLiteLedger, ledger_path: Path, people: People, clock: FakeClock, world: World
):
    """The first append by this version to a ledger an earlier one wrote, from a clock behind,
    set the latest time below the newest entry that floored the clock until then: the lapsed
    approval counted again (found by an independent review). The store's latest time starts at
    the newest time the runtime gave an entry already there."""
    import sqlite3
    from contextlib import closing

    review_id = await pending_review(gateway)
    queue = ReviewQueue(ledger, clock=clock, ids=gateway.ids)
    await queue.submit(
        queue.approval(review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60)
    )
    await ledger.append([dated(90, clock)])
    chatter = [  # the last few hundred entries all dated by their senders, as in a busy system
        Message(
            id=gateway.ids.new(),
            at=rfc3339(clock.now_ns()),
            sender="router",
            topic="plans",
            type="plan",
            payload={"n": n},
            trace_id=gateway.ids.new(),
        )
        for n in range(300)
    ]
    await ledger.append(chatter)
    with closing(sqlite3.connect(ledger_path)) as db, db:
        db.execute("DELETE FROM meta WHERE key = 'latest_time'")
    with SQLiteLedger.open(ledger_path) as old:  # this version, opening it afresh
        await old.append([dated(-30, clock, n=2)])  # a writer whose clock is behind
        assert old.latest_time() == clock.now_ns() + 90 * 1_000_000_000
        assert ReviewQueue(old, clock=clock, ids=gateway.ids).state(review_id).status == "reopened"
    assert world.calls == 0


async def test_a_time_in_other_digits_moves_nothing_for_good(ledger: SQLiteLedger, clock: FakeClock):
    """A record's time may be written in any script's digits (the pattern's \\d), or with an hour
    99 or on February 30, or in another shape by a record made without validation; compared as
    text, such a time sorted above the ASCII ones after it and held the latest time, unreadable.
    It is read as the time it says, or moves nothing."""
    arabic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    at = rfc3339(clock.now_ns())
    event = ExternalEvent(
        id="01K00000000000000000000009", at=at.translate(arabic), source="s", type="t", payload={}
    )
    impossible = ExternalEvent(
        id="01K00000000000000000000008", at=at[:11] + "99:99:99.000000Z", source="s", type="t", payload={}
    )
    no_such_day = ExternalEvent(
        id="01K00000000000000000000007", at="2026-02-30" + at[10:], source="s", type="t", payload={}
    )
    # Only the microseconds in other digits, in the second of the latest time to come: the rest
    # is checked once a second, these each time.
    ahead = rfc3339(clock.now_ns() + 5 * 1_000_000_000)
    other_fraction = ExternalEvent(
        id="01K00000000000000000000005",
        at=ahead[:20] + ahead[20:26].translate(arabic) + "Z",
        source="s",
        type="t",
        payload={},
    )
    # Made without validation (model_construct skips the pattern): a tilde for a colon sorted
    # above every real time of its hour (found by an independent review).
    misshapen = ExternalEvent.model_construct(
        id="01K00000000000000000000006", at=at[:13] + "~" + at[14:], source="s", type="t", payload={}
    )
    await ledger.append([event, impossible, no_such_day, misshapen, other_fraction])
    await ledger.append([dated(5, clock)])
    assert ledger.latest_time() == clock.now_ns() + 5 * 1_000_000_000
