"""Regressions for attacks and races found in review: each pins a promise the RI relies on."""

from __future__ import annotations

import asyncio

import pytest
from support import booking

from answerable import Gateway, KeyPair, NotAuthorized, SignatureInvalid, SQLiteLedger, new_charter
from answerable.charter import charter_of
from answerable.records import Approval, Execution, decode_entry

MEDICAL = {"cls": "medical", "disruption": True}


async def test_a_charter_the_ri_in_force_did_not_sign_cannot_take_over(
    gateway: Gateway, ledger: SQLiteLedger, people
):
    """Naming yourself RI needs the RI in force to hand over; a forged charter appended anyway is ignored."""
    await gateway.control.halt(by="pager", reason="stop")
    mallory = people.stranger
    usurper = new_charter("logistics", mallory, agents=["executor"], supersedes=gateway.charter.id)
    with pytest.raises((NotAuthorized, SignatureInvalid)):
        await gateway.install(usurper, gateway._ruleset_record)  # type: ignore[arg-type]
    ledger.append_sync([usurper])
    assert charter_of(ledger).ri == people.ri.identity
    with pytest.raises(NotAuthorized):
        await gateway.control.resume(key=mallory, reason="mine now")
    assert gateway.control.state().stops


async def test_the_ri_in_force_can_hand_over(gateway: Gateway, ledger: SQLiteLedger, people):
    """A successor charter signed by the RI in force takes effect and names the new RI."""
    successor = KeyPair.from_seed("new-ri@logistics.example", b"\x21" * 32)
    handover = new_charter(
        "logistics",
        successor,
        agents=["executor"],
        version=2,
        supersedes=gateway.charter.id,
        handed_over_by=people.ri,
    )
    ledger.append_sync([handover])
    assert charter_of(ledger).ri == successor.identity


async def test_two_answers_racing_run_the_intent_once(gateway: Gateway, people, world):
    """Two approvals arriving together: one settles the review, the other is refused; one call."""
    pending = await gateway.submit(gateway.intent("executor", "carrier.book", booking(**MEDICAL)))
    results = await asyncio.gather(
        gateway.answer(pending.review.id, key=people.reviewer, verdict="approve", reason="yes"),  # type: ignore[union-attr]
        gateway.answer(pending.review.id, key=people.ri, verdict="approve", reason="yes"),  # type: ignore[union-attr]
        return_exceptions=True,
    )
    assert sum(1 for r in results if not isinstance(r, BaseException) and r.status == "succeeded") == 1
    assert world.calls == 1


async def test_an_approval_without_a_valid_signature_does_not_count(
    gateway: Gateway, ledger: SQLiteLedger, world
):
    """An Approval appended straight to the ledger by someone else is neither settled nor recovered."""
    pending = await gateway.submit(gateway.intent("executor", "carrier.book", booking(**MEDICAL)))
    review = pending.review
    assert review is not None
    forged = Approval(
        id="forged-1",
        at="2026-01-01T00:00:00.000000Z",
        causes=(review.id,),
        review_id=review.id,
        intent_id=review.intent_id,
        verdict="approve",
        by="mallory@elsewhere.example",
        reason="trust me",
        binding=review.binding,
        expires_at="2099-01-01T00:00:00.000000Z",
    )
    ledger.append_sync([forged])
    assert await gateway.settle_reviews() == []
    assert await gateway.reconcile() == []
    assert world.calls == 0


async def test_an_approval_that_expired_before_it_was_acted_on_does_not_run(
    gateway: Gateway, clock, people, world
):
    """An approval recorded in time but acted on after its expiry no longer counts."""
    pending = await gateway.submit(gateway.intent("executor", "carrier.book", booking(**MEDICAL)))
    approval = gateway.reviews.approval(
        pending.review.id,  # type: ignore[union-attr]
        key=people.reviewer,
        verdict="approve",
        reason="ok",
        valid_for_seconds=60,
    )
    await gateway.reviews.submit(approval)  # as the CLI does, from another process
    clock.advance(120)
    assert [o.status for o in await gateway.settle_reviews()] == []
    assert world.calls == 0


async def test_reconcile_leaves_intents_in_flight_alone(gateway: Gateway, ledger: SQLiteLedger, world):
    """A reconcile while a call is under way neither repeats it nor marks it ambiguous."""
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        started.set()
        await release.wait()

    object.__setattr__(gateway.operations["noop"], "call", slow)
    live = asyncio.create_task(gateway.submit(gateway.intent("executor", "noop", {})))
    await started.wait()
    assert await gateway.reconcile() == []
    release.set()
    assert (await live).status == "succeeded"
    executions = [decode_entry(e.data) for e in ledger.of_kind("Execution")]
    assert [x.status for x in executions if isinstance(x, Execution)] == ["succeeded"]
    assert gateway.control.state().stops == ()


async def test_after_a_handover_the_system_restarts_under_the_new_ri(
    gateway: Gateway, ledger: SQLiteLedger, people
):
    """A successor charter signed by the outgoing RI, with rules the new RI signed, loads on restart."""
    from support import POLICIES, SCHEMA

    from answerable import new_ruleset

    successor = KeyPair.from_seed("new-ri@logistics.example", b"\x21" * 32)
    handover = new_charter(
        "logistics",
        successor,
        agents=["executor"],
        version=2,
        supersedes=gateway.charter.id,
        handed_over_by=people.ri,
    )
    await gateway.install(handover, new_ruleset(POLICIES, SCHEMA, successor, version=2))
    gateway.close()  # the process stops: its lease is released
    restarted = Gateway(ledger)
    restarted.register("carrier.book", lambda **_: None, resource_class="shipment")
    await restarted.resume_from_ledger()
    assert restarted.charter.ri == successor.identity
