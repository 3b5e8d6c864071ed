"""Human review: approvals bound to one intent, once, in time, by the right people; escalation on a clock."""

from __future__ import annotations

import asyncio

import pytest
from support import POLICIES, SCHEMA, booking

from answerable import ApprovalRefused, FakeClock, Gateway, KeyPair, SQLiteLedger
from answerable.records import Approval, Escalation, Execution, ReviewClosed, decode_entry

MEDICAL = {"cls": "medical", "disruption": True}


async def reviewed(gateway: Gateway, shipment: str = "S-1"):  # type: ignore[no-untyped-def]
    outcome = await gateway.submit(
        gateway.intent("executor", "carrier.book", booking(shipment=shipment, **MEDICAL))
    )
    assert outcome.status == "review"
    assert outcome.review is not None
    return outcome


def kinds(ledger: SQLiteLedger) -> list[str]:
    return [e.kind for e in ledger.entries()]


async def test_approval_executes_the_intent_attributed_to_the_ri_through_the_approval(
    gateway, ledger, people, world
):
    """An approval by a chartered reviewer runs the intent; the Execution answers through that approval."""
    pending = await reviewed(gateway)
    done = await gateway.answer(
        pending.review.id, key=people.reviewer, verdict="approve", reason="clinic needs it"
    )
    assert done.status == "succeeded"
    assert world.calls == 1
    assert done.execution is not None
    assert done.execution.authority is not None
    assert done.execution.authority.via == "approval"
    assert done.execution.authority.ids == (done.approval.id,)  # type: ignore[union-attr]
    assert done.execution.authority.responsible == people.ri.identity


async def test_denial_records_who_and_why_and_runs_nothing(gateway, ledger, people, world):
    """A denial is recorded with reviewer, reason and signature; the world sees nothing."""
    pending = await reviewed(gateway)
    done = await gateway.answer(
        pending.review.id, key=people.reviewer, verdict="deny", reason="not during the storm"
    )
    assert done.status == "denied"
    assert world.calls == 0
    [approval] = [decode_entry(e.data) for e in ledger.of_kind("Approval")]
    assert isinstance(approval, Approval)
    assert (approval.by, approval.reason, approval.verdict) == (
        people.reviewer.identity,
        "not during the storm",
        "deny",
    )
    assert approval.signature


async def test_approval_replayed_onto_a_second_intent_is_refused(gateway, ledger, people, world):
    """An approval is bound to one intent: presented for another review it is args_mismatch."""
    first = await reviewed(gateway, "S-1")
    second = await reviewed(gateway, "S-2")
    approval = gateway.reviews.approval(first.review.id, key=people.reviewer, verdict="approve", reason="ok")
    await gateway.settle(approval)
    replayed = approval.model_copy(update={"review_id": second.review.id})
    with pytest.raises(ApprovalRefused) as caught:
        await gateway.settle(replayed)
    assert caught.value.reason_code in ("args_mismatch", "bad_signature")
    assert world.calls == 1


async def test_approval_is_used_once(gateway, people, world):
    """The same signed approval presented twice is already_used; the intent ran once."""
    pending = await reviewed(gateway)
    approval = gateway.reviews.approval(
        pending.review.id, key=people.reviewer, verdict="approve", reason="ok"
    )
    await gateway.settle(approval)
    with pytest.raises(ApprovalRefused) as caught:
        await gateway.settle(approval)
    assert caught.value.reason_code == "already_used"
    assert world.calls == 1


async def test_approval_for_changed_arguments_is_refused(gateway, ledger, people, world):
    """Any change of argument needs a new review: a binding for other arguments is args_mismatch."""
    pending = await reviewed(gateway)
    approval = gateway.reviews.approval(
        pending.review.id, key=people.reviewer, verdict="approve", reason="ok"
    )
    other = approval.model_copy(update={"binding": "0" * 64})
    from answerable.signing import sign

    with pytest.raises(ApprovalRefused) as caught:
        await gateway.settle(sign(other.model_copy(update={"signature": ""}), people.reviewer))
    assert caught.value.reason_code == "args_mismatch"
    assert world.calls == 0
    assert "Approval" not in kinds(ledger)


async def test_expired_approval_is_refused(gateway, clock: FakeClock, people, world):
    """An approval used after its own expiry is refused as expired."""
    pending = await reviewed(gateway)
    approval = gateway.reviews.approval(
        pending.review.id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=60
    )
    clock.advance(61)
    with pytest.raises(ApprovalRefused) as caught:
        await gateway.settle(approval)
    assert caught.value.reason_code == "expired"
    assert world.calls == 0


async def test_reviewer_outside_the_charter_is_refused(gateway, people, world):
    """A stranger, even with a well-formed signature, is not_a_reviewer; an operator neither."""
    pending = await reviewed(gateway)
    for key in (people.stranger, people.operator):
        with pytest.raises(ApprovalRefused) as caught:
            await gateway.answer(pending.review.id, key=key, verdict="approve", reason="trust me")
        assert caught.value.reason_code == "not_a_reviewer"
    assert world.calls == 0


async def test_bad_signature_unknown_review_and_missing_reason_are_refused(gateway, ledger, people):
    """Each refusal has its own stable code and writes nothing."""
    pending = await reviewed(gateway)
    before = ledger.size()
    impostor = KeyPair.generate(people.reviewer.identity)
    with pytest.raises(ApprovalRefused) as bad:
        await gateway.answer(pending.review.id, key=impostor, verdict="approve", reason="ok")
    with pytest.raises(ApprovalRefused) as unknown:
        await gateway.answer("no-such-review", key=people.reviewer, verdict="approve", reason="ok")
    with pytest.raises(ApprovalRefused) as reasonless:
        await gateway.answer(pending.review.id, key=people.reviewer, verdict="approve", reason="  ")
    assert (bad.value.reason_code, unknown.value.reason_code, reasonless.value.reason_code) == (
        "bad_signature",
        "unknown_review",
        "missing_reason",
    )
    assert ledger.size() == before


async def test_reviewer_cannot_approve_their_own_proposal(gateway, people, world):
    """With separation of duties, the person an intent was made for may not approve it."""
    intent = gateway.intent(
        "executor", "carrier.book", booking(**MEDICAL), on_behalf_of=people.reviewer.identity
    )
    pending = await gateway.submit(intent)
    with pytest.raises(ApprovalRefused) as caught:
        await gateway.answer(pending.review.id, key=people.reviewer, verdict="approve", reason="mine")  # type: ignore[union-attr]
    assert caught.value.reason_code == "own_proposal"
    done = await gateway.answer(pending.review.id, key=people.ri, verdict="approve", reason="checked")  # type: ignore[union-attr]
    assert done.status == "succeeded"


TWO_STAGE = POLICIES.replace(
    '@review("a medical booking during a disruption needs a person")',
    '@review("a medical booking during a disruption needs two people")\n@approvals("2")\n'
    '@deadline_minutes("10")\n@expires_minutes("30")',
)


async def staged(ledger, people, clock, world):  # type: ignore[no-untyped-def]
    from support import register_world

    from answerable import IdSource, new_charter, new_ruleset

    ids = IdSource(clock)
    gw = Gateway(ledger, clock=clock, ids=ids)
    register_world(gw, world)
    second = KeyPair.from_seed("second-reviewer@logistics.example", b"\x09" * 32)
    charter = new_charter(
        "logistics", people.ri, agents=["executor"], reviewers=[people.reviewer, second], clock=clock, ids=ids
    )
    await gw.install(charter, new_ruleset(TWO_STAGE, SCHEMA, people.ri, clock=clock, ids=ids))
    return gw, second


async def test_a_rule_can_require_two_approvers(ledger, people, clock, world):
    """With @approvals("2") the intent waits after one approval and runs after a second person's."""
    gw, second = await staged(ledger, people, clock, world)
    pending = await reviewed(gw)
    first = await gw.answer(pending.review.id, key=people.reviewer, verdict="approve", reason="ok by me")
    assert first.status == "review"
    with pytest.raises(ApprovalRefused) as again:
        await gw.answer(pending.review.id, key=people.reviewer, verdict="approve", reason="still ok")
    assert again.value.reason_code == "already_used"
    assert world.calls == 0
    done = await gw.answer(pending.review.id, key=second, verdict="approve", reason="ok by me too")
    assert done.status == "succeeded"
    assert done.execution is not None
    assert done.execution.authority.ids == tuple(a.id for a in gw.reviews.state(pending.review.id).approvals)  # type: ignore[union-attr]


async def test_unanswered_review_escalates_then_expires_to_the_safe_default(ledger, people, clock, world):
    """On a clock the test controls: escalation to the next reviewer, then the RI, then expiry denies."""
    gw, _second = await staged(ledger, people, clock, world)
    pending = await reviewed(gw)
    state = gw.reviews.state(pending.review.id)
    assert state.assignee == "reviewer@logistics.example"
    clock.advance(9 * 60)
    assert await gw.settle_reviews() == []
    clock.advance(60)
    await gw.settle_reviews()
    assert gw.reviews.state(pending.review.id).assignee == "second-reviewer@logistics.example"
    clock.advance(10 * 60)
    await gw.settle_reviews()
    assert gw.reviews.state(pending.review.id).assignee == people.ri.identity
    clock.advance(10 * 60)
    [outcome] = await gw.settle_reviews()
    assert outcome.status == "denied"
    escalations = [decode_entry(e.data) for e in ledger.of_kind("Escalation")]
    assert [e.to for e in escalations if isinstance(e, Escalation)] == [
        "second-reviewer@logistics.example",
        people.ri.identity,
    ]
    [closed] = [decode_entry(e.data) for e in ledger.of_kind("ReviewClosed")]
    assert isinstance(closed, ReviewClosed)
    assert closed.resolution == "deny"
    assert world.calls == 0
    with pytest.raises(ApprovalRefused) as late:
        await gw.answer(pending.review.id, key=people.ri, verdict="approve", reason="too late")
    assert late.value.reason_code == "already_answered"


async def test_answer_from_another_process_is_picked_up(gateway, ledger_path, people, world):
    """An approval recorded through a second connection (the CLI) is executed by the running gateway."""
    from answerable.review import ReviewQueue

    pending = await reviewed(gateway)
    with SQLiteLedger.open(ledger_path) as other:
        queue = ReviewQueue(other, clock=gateway.clock, ids=gateway.ids)
        await queue.submit(
            queue.approval(pending.review.id, key=people.reviewer, verdict="approve", reason="ok")
        )
    [outcome] = await gateway.settle_reviews()
    assert outcome.status == "succeeded"
    assert world.calls == 1
    executions = [decode_entry(e.data) for e in gateway.ledger.of_kind("Execution")]
    assert [x.authority.via for x in executions if isinstance(x, Execution)] == ["approval"]  # type: ignore[union-attr]


async def test_cli_lists_reviews_and_records_signed_answers(
    gateway, ledger_path, people, tmp_path, world, clock
):
    """reviews --json lists the open review; approve with a reviewer key settles it; a stranger exits 1."""
    import json
    import time

    clock.ns = time.time_ns()  # the CLI answers on the real clock: the review must not have expired

    from typer.testing import CliRunner

    from answerable.cli import app

    runner = CliRunner()
    pending = await reviewed(gateway)
    listed = json.loads(runner.invoke(app, ["reviews", str(ledger_path), "--json"]).stdout)
    assert [r["review_id"] for r in listed] == [pending.review.id]
    assert listed[0]["assignee"] == people.reviewer.identity
    stranger, reviewer = tmp_path / "m.key", tmp_path / "r.key"
    people.stranger.save(stranger)
    people.reviewer.save(reviewer)
    refused = await asyncio.to_thread(
        runner.invoke,
        app,
        [
            "approve",
            str(ledger_path),
            pending.review.id,
            "--by",
            people.stranger.identity,
            "--reason",
            "x",
            "--key",
            str(stranger),
        ],
    )
    assert refused.exit_code == 1
    assert "not a reviewer" in refused.stderr
    done = await asyncio.to_thread(
        runner.invoke,
        app,
        [
            "approve",
            str(ledger_path),
            pending.review.id,
            "--by",
            people.reviewer.identity,
            "--reason",
            "ok",
            "--key",
            str(reviewer),
        ],
    )
    assert done.exit_code == 0, done.stderr
    assert "review is approved" in done.stdout
    [outcome] = await gateway.settle_reviews()
    assert outcome.status == "succeeded"
    assert world.calls == 1
    assert json.loads(runner.invoke(app, ["reviews", str(ledger_path), "--json"]).stdout) == []


def test_rules_diff_shows_added_removed_and_changed_policies(tmp_path):
    """rules diff matches policies by @id: a new rule, a dropped rule and a reworded condition."""
    import json

    from typer.testing import CliRunner

    from answerable.cli import app

    old, new = tmp_path / "old.cedar", tmp_path / "new.cedar"
    old.write_text(POLICIES)
    new.write_text(
        POLICIES.replace('resource.region != "closed"', 'resource.region != "flooded"').replace(
            '@id("noop-allowed")', '@id("noop-permitted")'
        )
    )
    result = CliRunner().invoke(app, ["rules", "diff", str(old), str(new), "--json"])
    assert result.exit_code == 0, result.stderr
    changes = json.loads(result.stdout)
    assert [c["id"] for c in changes["added"]] == ["noop-permitted"]
    assert [c["id"] for c in changes["removed"]] == ["noop-allowed"]
    assert [c["id"] for c in changes["changed"]] == ["routine-bookings"]
    assert any("flooded" in line for line in changes["changed"][0]["diff"])


async def test_a_program_awaits_a_reviewed_intent_answered_from_another_process(
    ledger, ledger_path, people, world, tmp_path
):
    """``await gateway.outcome(id)``: no loop in user code; the CLI's answer (another OS process)
    is settled by the wait itself, and the intent runs once."""
    import sys

    from support import make_gateway

    from answerable import SystemClock

    gateway = await make_gateway(ledger, people, SystemClock(), world)  # the CLI answers on real time
    pending = await reviewed(gateway)
    waiting = asyncio.create_task(gateway.outcome(pending.intent.id, every=0.05))
    people.reviewer.save(tmp_path / "reviewer.key")
    answer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "answerable.cli", "approve", str(ledger_path), pending.review.id,
        "--by", people.reviewer.identity, "--reason", "clinic needs it",
        "--key", str(tmp_path / "reviewer.key"),
    )  # fmt: skip
    assert await answer.wait() == 0
    async with asyncio.timeout(30):
        done = await waiting
    assert (done.status, world.calls) == ("succeeded", 1)
    assert done.execution is not None
    assert done.execution.authority.via == "approval"  # type: ignore[union-attr]
    again = await gateway.outcome(pending.intent.id)  # final already: at once, and nothing runs again
    assert (again.status, again.execution, world.calls) == ("succeeded", done.execution, 1)
    with pytest.raises(TimeoutError):  # one still waiting for a person: bounded by the caller
        async with asyncio.timeout(0.2):
            await gateway.outcome((await reviewed(gateway, "S-2")).intent.id, every=0.05)
    gateway.close()


async def test_a_modelled_reviewer_must_say_so_on_every_answer_and_a_person_may_not_pretend(
    ledger, people, clock, world
):
    """The charter marks a modelled reviewer simulated; their answers must carry the mark, and a
    real reviewer's may not (so no reader of the ledger mistakes one for the other)."""
    from support import POLICIES, SCHEMA, register_world

    from answerable import IdSource, new_charter, new_ruleset

    ids = IdSource(clock)
    gw = Gateway(ledger, clock=clock, ids=ids)
    register_world(gw, world)
    charter = new_charter(
        "logistics", people.ri, agents=["executor"], reviewers=[people.reviewer, people.operator],
        simulated=[people.reviewer.identity], clock=clock, ids=ids,
    )  # fmt: skip
    await gw.install(charter, new_ruleset(POLICIES, SCHEMA, people.ri, clock=clock, ids=ids))
    first, second = await reviewed(gw, "S-1"), await reviewed(gw, "S-2")
    with pytest.raises(ApprovalRefused) as unmarked:
        await gw.answer(first.review.id, key=people.reviewer, verdict="approve", reason="ok")
    assert unmarked.value.reason_code == "simulated_mark"
    with pytest.raises(ApprovalRefused) as pretending:
        await gw.answer(first.review.id, key=people.operator, verdict="approve", reason="ok", simulated=True)
    assert pretending.value.reason_code == "simulated_mark"
    done = await gw.answer(
        first.review.id, key=people.reviewer, verdict="approve", reason="ok", simulated=True
    )
    assert done.status == "succeeded"
    assert done.approval is not None
    assert done.approval.simulated
    real = await gw.answer(second.review.id, key=people.operator, verdict="deny", reason="no")
    assert real.approval is not None
    assert not real.approval.simulated
    assert b'"simulated"' not in ledger.find(real.approval.id).data  # a real answer's bytes are as before
    gw.close()
