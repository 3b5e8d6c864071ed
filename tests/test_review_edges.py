"""Review edges: each refusal's reason code, answers that never count, escalation's end, expiry."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from pydantic import field_validator
from support import (
    POLICIES,
    People,
    World,
    pending_review,
    reviewing_gateway,
)

from answerable import (
    ApprovalRefused,
    ConfigError,
    Conflict,
    FakeClock,
    Gateway,
    IdSource,
    KeyPair,
    RecordInvalid,
    SQLiteLedger,
)
from answerable.clock import rfc3339
from answerable.records import (
    Approval,
    Claim,
    Escalation,
    Execution,
    ReviewClosed,
    SystemCharter,
    decode_entry,
)
from answerable.review import ReviewQueue, authenticate, binding_of, check_approval
from answerable.signing import sign

SLOW_EXPIRY = POLICIES.replace(
    '@review("a medical booking during a disruption needs a person")',
    '@review("a medical booking during a disruption needs a person")\n'
    '@deadline_minutes("10")\n@expires_minutes("60")',
)


def resigned(approval: Approval, key, **changes: object) -> Approval:  # type: ignore[no-untyped-def]
    """The approval with ``changes``, signed again by ``key`` as its (honest) author would."""
    return sign(approval.model_copy(update={**changes, "signature": ""}), key)


async def test_a_signed_answer_without_a_reason_is_refused_and_never_counts(
    gateway: Gateway, ledger: SQLiteLedger, people: People, world: World
) -> None:
    """A blank reason is missing_reason even when the approval is well signed, and one written to
    the ledger anyway does not settle the review."""
    review_id = await pending_review(gateway)
    good = gateway.reviews.approval(review_id, key=people.reviewer, verdict="approve", reason="ok")
    blank = resigned(good, people.reviewer, reason="   ")
    before = ledger.size()
    with pytest.raises(ApprovalRefused) as caught:
        await gateway.settle(blank)
    assert caught.value.reason_code == "missing_reason"
    assert ledger.size() == before
    ledger.append_sync([blank])
    state = gateway.reviews.state(review_id)
    assert (state.status, state.approvals) == ("open", ())
    assert await gateway.settle_reviews() == []
    assert world.calls == 0


async def test_escalation_stops_at_the_last_assignee_until_the_review_expires(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> None:
    """After the RI nobody is left to escalate to: later ticks write nothing until expiry closes it."""
    gw = await reviewing_gateway(ledger, people, clock, world, SLOW_EXPIRY)
    review_id = await pending_review(gw)
    clock.advance(10 * 60)
    [escalated] = await gw.reviews.tick()
    assert isinstance(escalated, Escalation)
    assert escalated.to == people.ri.identity
    for _ in range(4):  # 20, 30, 40 and 50 minutes: each period is overdue, and nobody is next
        clock.advance(10 * 60)
        assert await gw.reviews.tick() == []
        assert gw.reviews.state(review_id).assignee == people.ri.identity
    clock.advance(10 * 60)
    [closed] = await gw.reviews.tick()
    assert isinstance(closed, ReviewClosed)
    assert [e.to for e in (decode_entry(s.data) for s in ledger.of_kind("Escalation"))] == [  # type: ignore[union-attr]
        people.ri.identity
    ]


async def test_a_review_escalates_only_once_its_period_is_due(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> None:
    gw = await reviewing_gateway(ledger, people, clock, world, SLOW_EXPIRY)
    review_id = await pending_review(gw)
    clock.advance(10 * 60 - 1)
    assert await gw.reviews.tick() == []
    assert gw.reviews.state(review_id).assignee == people.reviewer.identity
    clock.advance(1)
    [escalation] = await gw.reviews.tick()
    assert isinstance(escalation, Escalation)
    assert escalation.causes == (review_id,)
    assert escalation.review_id == review_id
    assert gw.reviews.state(review_id).escalations == (escalation,)


async def test_an_answer_after_the_review_expired_is_expired_even_before_it_is_closed(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> None:
    """Between the review's expiry and the tick that closes it, a fresh approval is refused as expired."""
    gw = await reviewing_gateway(ledger, people, clock, world, SLOW_EXPIRY)
    review_id = await pending_review(gw)
    clock.advance(60 * 60)
    assert gw.reviews.state(review_id).status == "open"  # nobody closed it yet
    before = ledger.size()
    with pytest.raises(ApprovalRefused) as caught:
        await gw.answer(review_id, key=people.reviewer, verdict="approve", reason="ok")
    assert caught.value.reason_code == "expired"
    assert ledger.size() == before
    assert world.calls == 0


async def test_an_answer_one_second_before_the_review_expires_counts(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> None:
    gw = await reviewing_gateway(ledger, people, clock, world, SLOW_EXPIRY)
    review_id = await pending_review(gw)
    clock.advance(60 * 60 - 1)
    done = await gw.answer(review_id, key=people.reviewer, verdict="approve", reason="ok")
    assert done.status == "succeeded"


@pytest.mark.parametrize("seconds", [0, -5, 1.5])
async def test_an_approval_must_be_valid_for_a_whole_second(
    gateway: Gateway, people: People, seconds: object
) -> None:
    review_id = await pending_review(gateway)
    with pytest.raises(ApprovalRefused) as caught:
        gateway.reviews.approval(
            review_id,
            key=people.reviewer,
            verdict="approve",
            reason="ok",
            valid_for_seconds=seconds,  # type: ignore[arg-type]
        )
    assert caught.value.reason_code == "expired"
    one = gateway.reviews.approval(
        review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=1
    )
    assert one.expires_at > one.at
    hour = gateway.reviews.approval(review_id, key=people.reviewer, verdict="approve", reason="ok")
    assert hour.expires_at == rfc3339(gateway.clock.now_ns() + 3600 * 1_000_000_000)


async def test_a_verdict_other_than_approve_or_deny_is_refused(gateway: Gateway, people: People) -> None:
    review_id = await pending_review(gateway)
    with pytest.raises(ApprovalRefused) as caught:
        gateway.reviews.approval(review_id, key=people.reviewer, verdict="maybe", reason="ok")
    assert caught.value.reason_code == "bad_verdict"


async def test_an_id_that_is_not_a_review_is_unknown_review(gateway: Gateway, people: People) -> None:
    """The id of another entry (here the intent under review) is not a review: unknown_review."""
    review_id = await pending_review(gateway)
    intent_id = gateway.reviews.state(review_id).intent.id
    for missing in (intent_id, "no-such-review"):
        with pytest.raises(ApprovalRefused) as caught:
            gateway.reviews.state(missing)
        assert (caught.value.reason_code, caught.value.review_id) == ("unknown_review", missing)


async def test_an_approval_for_another_review_is_unknown_review(gateway: Gateway, people: People) -> None:
    """Authenticated against a review it does not name, an approval is unknown_review, however valid."""
    first = await pending_review(gateway, "S-1")
    second = await pending_review(gateway, "S-2")
    approval = gateway.reviews.approval(second, key=people.reviewer, verdict="approve", reason="ok")
    state = gateway.reviews.state(first)
    charter = gateway.charters.latest()
    assert charter is not None
    with pytest.raises(ApprovalRefused) as caught:
        authenticate(approval, state.review, state.intent, state.decision, charter)
    assert caught.value.reason_code == "unknown_review"
    with pytest.raises(ApprovalRefused) as checked:
        check_approval(approval, state, charter, now=state.now)
    assert checked.value.reason_code == "unknown_review"
    other = gateway.reviews.state(second)
    authenticate(approval, other.review, other.intent, other.decision, charter)  # its own review: fine


async def test_a_lapsed_approval_presented_again_is_already_used(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock
) -> None:
    """An approval that lapsed unused is still spent: presenting it again is already_used, not expired."""
    review_id = await pending_review(gateway)
    queue = ReviewQueue(ledger, clock=clock, ids=gateway.ids)
    approval = queue.approval(
        review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60
    )
    await queue.submit(approval)
    clock.advance(120)
    with pytest.raises(ApprovalRefused) as caught:
        await queue.submit(approval)
    assert caught.value.reason_code == "already_used"


async def test_an_approval_lapses_at_the_instant_it_expires(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock
) -> None:
    """Valid for 60 seconds means usable before second 60 and not at it: the review reopens then."""
    review_id = await pending_review(gateway)
    queue = ReviewQueue(ledger, clock=clock, ids=gateway.ids)
    approval = queue.approval(
        review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60
    )
    assert approval.expires_at == rfc3339(clock.ns + 60 * 1_000_000_000)
    await queue.submit(approval)  # recorded, not acted on: nobody claimed it
    clock.advance(59)
    just_before = queue.state(review_id)
    assert (just_before.status, just_before.resolution, just_before.live_approvals) == (
        "approved",
        "approved",
        (approval,),
    )
    clock.advance(1)
    at_expiry = queue.state(review_id)
    assert (at_expiry.status, at_expiry.resolution, at_expiry.approvals) == ("reopened", None, ())
    assert at_expiry.lapsed == (approval,)
    assert at_expiry.live_approvals == ()


async def test_an_approval_presented_at_the_instant_it_expires_is_expired(
    gateway: Gateway, people: People, clock: FakeClock, world: World
) -> None:
    review_id = await pending_review(gateway)
    approval = gateway.reviews.approval(
        review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60
    )
    clock.advance(60)
    with pytest.raises(ApprovalRefused) as caught:
        await gateway.settle(approval)
    assert caught.value.reason_code == "expired"
    assert world.calls == 0


class _AlwaysRaced:
    """A ledger on which every guarded append loses the race to another writer."""

    def __init__(self, ledger: SQLiteLedger) -> None:
        self._ledger = ledger
        self.attempts = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._ledger, name)

    async def append(self, records, *, fence=None, guards=()):  # type: ignore[no-untyped-def]
        self.attempts += 1
        raise Conflict(guards[0].key, guards[0].expect, None)


async def test_an_answer_that_keeps_losing_the_race_is_busy_and_writes_nothing(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock
) -> None:
    review_id = await pending_review(gateway)
    raced = _AlwaysRaced(ledger)
    queue = ReviewQueue(raced, clock=clock, ids=gateway.ids)  # type: ignore[arg-type]
    approval = queue.approval(review_id, key=people.reviewer, verdict="approve", reason="ok")
    before = ledger.size()
    with pytest.raises(ApprovalRefused) as caught:
        await queue.submit(approval)
    assert (caught.value.reason_code, caught.value.review_id) == ("busy", review_id)
    assert raced.attempts > 1
    assert ledger.size() == before
    assert queue.state(review_id).status == "open"


async def test_a_tick_that_loses_the_race_writes_nothing_and_returns_nothing(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> None:
    gw = await reviewing_gateway(ledger, people, clock, world, SLOW_EXPIRY)
    review_id = await pending_review(gw)
    clock.advance(10 * 60)
    queue = ReviewQueue(_AlwaysRaced(ledger), clock=clock, ids=gw.ids)  # type: ignore[arg-type]
    assert await queue.tick() == []
    assert gw.reviews.state(review_id).escalations == ()


# --- What a review's state counts, pinned for each branch of the fold ------------------------


def charter_of_gateway(gw: Gateway) -> SystemCharter:
    charter = gw.charters.latest()
    assert charter is not None
    return charter


async def test_a_claimed_review_counts_its_claims_approvals_and_any_denial_after_they_expire(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> None:
    """Once claimed: the approvals the claim used count for good, a denial written after the claim
    is still counted (but is never a live approval), and nothing is lapsed; the claim is the
    gateway's Claim, not a pre-claims Execution."""
    review_id = await pending_review(gateway)
    approval = gateway.reviews.approval(
        review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60
    )
    late_denial = gateway.reviews.approval(review_id, key=people.reviewer, verdict="deny", reason="no")
    assert (await gateway.settle(approval)).status == "succeeded"
    ledger.append_sync([late_denial])  # straight to the ledger: submit would refuse it
    clock.advance(3600)  # both answers expired
    state = gateway.reviews.state(review_id)
    assert state.status == "claimed"
    assert state.resolution == "approved"  # what ran stays what was decided
    assert isinstance(state.claim, Claim)
    assert state.claim.intent_id == state.intent.id
    assert state.executed is None
    assert state.approvals == (approval, late_denial)
    assert state.live_approvals == (approval,)
    assert state.lapsed == ()
    assert world.calls == 1


async def test_an_approval_that_lapsed_before_the_claim_stays_lapsed_and_the_used_one_counts(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> None:
    review_id = await pending_review(gateway)
    queue = ReviewQueue(ledger, clock=clock, ids=gateway.ids)
    first = queue.approval(
        review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60
    )
    await queue.submit(first)
    clock.advance(120)
    second = gateway.reviews.approval(review_id, key=people.reviewer, verdict="approve", reason="again")
    assert (await gateway.settle(second)).status == "succeeded"
    state = gateway.reviews.state(review_id)
    assert (state.status, state.approvals, state.lapsed) == ("claimed", (second,), (first,))
    assert world.calls == 1


async def test_a_review_executed_before_claims_counts_the_approval_its_execution_used(tmp_path: Path) -> None:
    source = Path(__file__).with_name("data") / "ledger-v1"
    for name in ("ledger.db", "ledger.db.key"):
        shutil.copy(source / name, tmp_path / name)
    with SQLiteLedger.open(tmp_path / "ledger.db") as ledger:
        queue = ReviewQueue(ledger, clock=FakeClock(ns=2_000_000_000_000_000_000), ids=IdSource())
        [state] = queue.all()
        assert state.claim is None
        assert state.executed is not None
        [approval] = state.approvals
        assert approval.verdict == "approve"
        assert approval.id in state.executed.causes
        assert state.lapsed == ()
        assert state.live_approvals == (approval,)


async def test_an_execution_of_another_intent_does_not_settle_a_review(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock
) -> None:
    """Only an Execution of the very intent under review settles it, though another names it as a cause."""
    review_id = await pending_review(gateway)
    intent = gateway.reviews.state(review_id).intent
    stray = Execution(
        id=gateway.ids.new(),
        at=rfc3339(clock.ns),
        causes=(intent.id,),
        intent_id="some-other-intent",
        decision_id=None,
        operation="carrier.book",
        status="succeeded",
        authority=None,
    )
    ledger.append_sync([stray])
    state = gateway.reviews.state(review_id)
    assert (state.status, state.executed, state.claim) == ("open", None, None)


async def test_a_denial_overrides_the_same_persons_earlier_approval(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> None:
    """Per person, a denial wins over their approval: only the denial counts, and it is no live approval."""
    review_id = await pending_review(gateway)
    queue = ReviewQueue(ledger, clock=clock, ids=gateway.ids)
    approval = queue.approval(review_id, key=people.reviewer, verdict="approve", reason="ok")
    await queue.submit(approval)
    denial = queue.approval(review_id, key=people.reviewer, verdict="deny", reason="changed my mind")
    ledger.append_sync([denial])  # submit would refuse it: the review is already answered
    state = queue.state(review_id)
    assert (state.status, state.resolution) == ("denied", "denied")
    assert state.approvals == (denial,)
    assert state.live_approvals == ()
    assert state.lapsed == ()
    await gateway.settle_reviews()
    assert world.calls == 0


async def test_a_denial_that_expired_still_counts_and_never_lapses(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock
) -> None:
    review_id = await pending_review(gateway)
    queue = ReviewQueue(ledger, clock=clock, ids=gateway.ids)
    denial = queue.approval(review_id, key=people.reviewer, verdict="deny", reason="no", valid_for_seconds=60)
    await queue.submit(denial)
    clock.advance(120)
    state = queue.state(review_id)
    assert (state.status, state.approvals, state.lapsed, state.live_approvals) == (
        "denied",
        (denial,),
        (),
        (),
    )


async def test_a_state_seen_at_the_instant_its_approval_expires_has_no_live_approval(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock
) -> None:
    """live_approvals is judged at the state's own ``now``, strictly before expiry; a state is immutable."""
    review_id = await pending_review(gateway)
    queue = ReviewQueue(ledger, clock=clock, ids=gateway.ids)
    approval = queue.approval(
        review_id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60
    )
    state = await queue.submit(approval)
    assert (state.live_approvals, state.resolution) == ((approval,), "approved")
    at_expiry = dataclasses.replace(state, now=approval.expires_at)
    assert (at_expiry.live_approvals, at_expiry.resolution, at_expiry.status) == ((), None, "open")
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.now = approval.expires_at  # type: ignore[misc]


async def test_a_closed_review_is_expired(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> None:
    gw = await reviewing_gateway(ledger, people, clock, world, SLOW_EXPIRY)
    review_id = await pending_review(gw)
    clock.advance(60 * 60)
    [closed] = await gw.reviews.tick()
    assert isinstance(closed, ReviewClosed)
    state = gw.reviews.state(review_id)
    assert (state.status, state.resolution) == ("expired", "expired:deny")


# --- authenticate: each binding check on its own --------------------------------------------


async def test_an_approval_naming_another_intent_is_args_mismatch_even_with_the_right_binding(
    gateway: Gateway, people: People, world: World
) -> None:
    review_id = await pending_review(gateway)
    good = gateway.reviews.approval(review_id, key=people.reviewer, verdict="approve", reason="ok")
    other = resigned(good, people.reviewer, intent_id="some-other-intent")
    state = gateway.reviews.state(review_id)
    assert other.binding == state.review.binding == binding_of(state.intent, state.decision.ruleset_hash)
    with pytest.raises(ApprovalRefused) as caught:
        authenticate(other, state.review, state.intent, state.decision, charter_of_gateway(gateway))
    assert caught.value.reason_code == "args_mismatch"
    with pytest.raises(ApprovalRefused) as settled:
        await gateway.settle(other)
    assert settled.value.reason_code == "args_mismatch"
    assert world.calls == 0


async def test_an_approval_is_refused_for_a_review_whose_binding_is_not_the_intents(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> None:
    """A Review written straight to the ledger with a binding of its own: an approval that binds the
    intent exactly still does not bind to what was sent to review, so it is args_mismatch."""
    review_id = await pending_review(gateway)
    real = gateway.reviews.state(review_id)
    forged = real.review.model_copy(
        update={"id": gateway.ids.new(), "binding": binding_of(real.intent, "another-ruleset")}
    )
    ledger.append_sync([forged])
    good = gateway.reviews.approval(review_id, key=people.reviewer, verdict="approve", reason="ok")
    redirected = resigned(good, people.reviewer, review_id=forged.id, causes=(forged.id,))
    assert redirected.binding == binding_of(real.intent, real.decision.ruleset_hash)
    with pytest.raises(ApprovalRefused) as caught:
        authenticate(redirected, forged, real.intent, real.decision, charter_of_gateway(gateway))
    assert caught.value.reason_code == "args_mismatch"
    before = ledger.size()
    with pytest.raises(ApprovalRefused) as settled:
        await gateway.settle(redirected)
    assert settled.value.reason_code == "args_mismatch"
    assert ledger.size() == before
    assert world.calls == 0


async def test_a_review_that_does_not_point_at_an_intent_and_its_decision_is_record_invalid(
    gateway: Gateway, ledger: SQLiteLedger
) -> None:
    review_id = await pending_review(gateway)
    real = gateway.reviews.state(review_id)
    wrong_intent = real.review.model_copy(update={"id": gateway.ids.new(), "intent_id": real.decision.id})
    wrong_decision = real.review.model_copy(update={"id": gateway.ids.new(), "decision_id": real.intent.id})
    ledger.append_sync([wrong_intent, wrong_decision])
    for forged in (wrong_intent, wrong_decision):
        with pytest.raises(RecordInvalid):
            gateway.reviews.state(forged.id)


# --- ReviewQueue.approval refusals ----------------------------------------------------------


async def test_building_an_answer_without_a_reason_is_missing_reason(
    gateway: Gateway, people: People
) -> None:
    review_id = await pending_review(gateway)
    for blank in ("", "   "):
        with pytest.raises(ApprovalRefused) as caught:
            gateway.reviews.approval(review_id, key=people.reviewer, verdict="approve", reason=blank)
        assert (caught.value.reason_code, caught.value.review_id) == ("missing_reason", review_id)


def test_a_key_whose_identity_is_not_a_name_answers_nothing() -> None:
    """Such a key cannot be made (its file could not be read back), so no answer is signed by it."""
    with pytest.raises(ConfigError, match="key identity 'not a name' holds whitespace"):
        KeyPair.from_seed("not a name", b"\x09" * 32)


async def test_an_answer_in_a_ledger_without_a_charter_is_a_config_error(
    gateway: Gateway, ledger: SQLiteLedger, people: People, clock: FakeClock, tmp_path: Path
) -> None:
    """Submitting needs the charter in force; a ledger that never had one says so precisely."""
    review_id = await pending_review(gateway)
    real = gateway.reviews.state(review_id)
    with SQLiteLedger.open(tmp_path / "bare.db", create=True, origin="test.example/bare") as bare:
        bare.append_sync([real.intent, real.decision, real.review])
        queue = ReviewQueue(bare, clock=clock, ids=gateway.ids)
        approval = queue.approval(review_id, key=people.reviewer, verdict="approve", reason="ok")
        with pytest.raises(ConfigError):
            await queue.submit(approval)
        assert bare.size() == 3


# --- tick -----------------------------------------------------------------------------------


async def test_tick_skips_a_review_without_a_deadline(
    gateway: Gateway, ledger: SQLiteLedger, clock: FakeClock
) -> None:
    review_id = await pending_review(gateway)
    real = gateway.reviews.state(review_id).review
    undated = real.model_copy(update={"id": gateway.ids.new(), "deadline": None, "expires_at": None})
    ledger.append_sync([undated])
    assert await gateway.reviews.tick() == []
    assert gateway.reviews.state(undated.id).escalations == ()


async def test_an_escalation_to_someone_off_the_list_escalates_next_from_the_first_assignee(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> None:
    """A review escalated (by an entry written straight to the ledger) to someone who is not an
    assignee is treated as still with the first one: the next due tick hands it to the second."""
    gw = await reviewing_gateway(ledger, people, clock, world, SLOW_EXPIRY)
    review_id = await pending_review(gw)
    review = gw.reviews.state(review_id).review
    assert review.assignees == (people.reviewer.identity, people.ri.identity)
    stray = Escalation(
        id=gw.ids.new(),
        at=rfc3339(clock.ns),
        causes=(review_id,),
        review_id=review_id,
        to="someone@elsewhere.example",
        reason="written by hand",
    )
    ledger.append_sync([stray])
    clock.advance(20 * 60)  # the deadline plus one period: due again after one escalation
    [escalation] = await gw.reviews.tick()
    assert isinstance(escalation, Escalation)
    assert escalation.to == people.ri.identity


def test_the_review_state_is_frozen_and_slotted() -> None:
    from answerable.review import ReviewState

    assert "__slots__" in vars(ReviewState)
    assert getattr(ReviewState, "__dataclass_params__").frozen  # noqa: B009


async def test_an_answer_dated_ahead_of_the_clock_is_refused_and_nothing_runs(
    gateway: Gateway, ledger: SQLiteLedger, people: People, world: World
) -> None:
    """Found by a sweep of the library: an approval dated in 2030 (valid to mid-2030) was taken by
    ``Gateway.settle``, and the call ran; the service refused it as from_the_future. Five minutes
    ahead (a skewed clock) is still taken."""
    review_id = await pending_review(gateway)
    good = gateway.reviews.approval(review_id, key=people.reviewer, verdict="approve", reason="ok")
    before = ledger.size()
    future = resigned(
        good, people.reviewer, at="2030-01-01T00:00:00.000000Z", expires_at="2030-06-01T00:00:00.000000Z"
    )
    with pytest.raises(ApprovalRefused) as caught:
        await gateway.settle(future)
    assert caught.value.reason_code == "from_the_future"
    assert ledger.size() == before
    assert world.calls == 0
    now = gateway.clock.now_ns()
    skewed = resigned(
        good,
        people.reviewer,
        at=rfc3339(now + 290 * 10**9),
        expires_at=rfc3339(now + 3_600 * 10**9),
    )
    assert (await gateway.settle(skewed)).status == "succeeded"


async def test_an_approved_review_whose_arguments_the_schema_now_refuses_fails_and_the_others_run(
    gateway: Gateway, ledger: SQLiteLedger, people: People, world: World
) -> None:
    """Approved, but its recorded arguments no longer pass the operation's schema (it changed
    since): raised out of ``settle_reviews``, it came up again at every round and stopped every
    later review of it (found in review). It can never run as approved: claimed, with a failed
    Execution in the same append (nothing called), and the next review still runs."""
    stuck = await pending_review(gateway, shipment="S-1")
    runs = await pending_review(gateway, shipment="S-2")
    for review_id in (stuck, runs):
        approval = gateway.reviews.approval(review_id, key=people.reviewer, verdict="approve", reason="ok")
        ledger.append_sync([approval])  # answered from another process: found by the next round
    op = gateway.operations["carrier.book"]

    class Stricter(op.args):  # type: ignore[misc,name-defined]
        @field_validator("shipment")
        @classmethod
        def known(cls, value: str) -> str:
            if value == "S-1":
                raise ValueError("no such shipment any more")
            return value

    gateway._operations["carrier.book"] = dataclasses.replace(op, args=Stricter)
    outcomes = {o.review.id: o for o in await gateway.settle_reviews() if o.review is not None}
    assert outcomes[stuck].status == "failed"
    execution = outcomes[stuck].execution
    assert execution is not None
    assert (execution.error or "").startswith(
        "not run as approved: arguments for 'carrier.book' do not match its schema: shipment:"
    )
    assert outcomes[runs].status == "succeeded"
    assert world.calls == 1
    assert await gateway.settle_reviews() == []  # claimed: settled for good


async def test_a_review_that_cannot_be_acted_on_now_claims_nothing_and_holds_back_no_other(
    gateway: Gateway, ledger: SQLiteLedger, people: People, world: World
) -> None:
    """A validator's own error (a look-up that fails for now) is no verdict on the arguments:
    nothing is claimed for that review and a later round tries it again. Raised at once, it
    kept every review after it from running, round after round (found in review): they run
    first, and the error is raised in the next round, which has nothing else to give."""
    later = await pending_review(gateway, shipment="S-1")
    runs = await pending_review(gateway, shipment="S-2")
    for review_id in (later, runs):
        approval = gateway.reviews.approval(review_id, key=people.reviewer, verdict="approve", reason="ok")
        ledger.append_sync([approval])
    op = gateway.operations["carrier.book"]
    down = [True]

    class LooksUp(op.args):  # type: ignore[misc,name-defined]
        @field_validator("shipment")
        @classmethod
        def known(cls, value: str) -> str:
            if down[0] and value == "S-1":
                raise LookupError("no rate for S-1 yet")
            return value

    gateway._operations["carrier.book"] = dataclasses.replace(op, args=LooksUp)
    [ran] = await gateway.settle_reviews()
    assert (ran.review is not None and ran.review.id, ran.status) == (runs, "succeeded")
    size = ledger.size()
    with pytest.raises(LookupError):
        await gateway.settle_reviews()
    assert ledger.size() == size  # nothing claimed for it
    down[0] = False
    [outcome] = await gateway.settle_reviews()
    assert (outcome.review is not None and outcome.review.id, outcome.status) == (later, "succeeded")
    assert world.calls == 2
