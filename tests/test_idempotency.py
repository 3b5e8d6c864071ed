"""An idempotency key names one request of its agent: the gateway runs it once, across processes.

Before, the library gateway recorded a second intent for a key it had seen and called the
partner again with that key (only the service remembered keys, in its own memory): a retry
after a crash ran the tool twice at a partner that does not deduplicate, and a key reused for
other arguments was answered, at a partner that does, with the first request's result.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from backends import make_backend
from crash_world import CRASH_EXIT, RI, Carrier, ShiftedClock, booking, build_gateway, install
from procs import Children, cli
from support import People, World
from support import booking as world_booking

from answerable import Gateway, IdempotencyConflict, SQLiteLedger
from answerable.gateway import key_head
from answerable.ledger import SQLLedger
from answerable.records import Intent, decode_entry


def intents(ledger: SQLLedger) -> list[Intent]:
    return [r for r in (decode_entry(e.data) for e in ledger.of_kind("Intent")) if isinstance(r, Intent)]


async def test_a_key_used_again_with_the_same_arguments_is_the_same_request(
    gateway: Gateway, ledger: SQLiteLedger, world: World
) -> None:
    first = await gateway.submit(
        gateway.intent("executor", "carrier.book", world_booking(), idempotency_key="k-1")
    )
    size = ledger.size()
    again = await gateway.submit(
        gateway.intent("executor", "carrier.book", world_booking(), idempotency_key="k-1")
    )

    assert (first.status, again.status) == ("succeeded", "succeeded")
    assert again.intent.id == first.intent.id
    assert again.execution == first.execution
    assert again.result is None  # the ledger keeps the result's digest, and this call ran nothing
    assert world.calls == 1
    assert ledger.size() == size  # nothing recorded for the repeat


async def test_a_key_used_again_for_other_arguments_or_another_operation_is_refused(
    gateway: Gateway, ledger: SQLiteLedger, world: World
) -> None:
    first = await gateway.submit(
        gateway.intent("executor", "carrier.book", world_booking("S-1"), idempotency_key="k")
    )
    size = ledger.size()
    for operation, arguments in (("carrier.book", world_booking("S-2")), ("noop", {})):
        with pytest.raises(IdempotencyConflict) as refused:
            await gateway.submit(gateway.intent("executor", operation, arguments, idempotency_key="k"))
        assert refused.value.reason_code == "idempotency_conflict"
        assert refused.value.intent_id == first.intent.id
        assert first.intent.id in str(refused.value)
        assert "'k'" in str(refused.value)
    assert ledger.size() == size
    assert world.calls == 1


async def test_each_agent_has_its_own_keys(gateway: Gateway, ledger: SQLiteLedger, world: World) -> None:
    outcomes = [
        await gateway.submit(gateway.intent(agent, "carrier.book", world_booking(), idempotency_key="k"))
        for agent in ("executor", "router")
    ]
    assert [o.status for o in outcomes] == ["succeeded", "succeeded"]
    assert len({o.intent.id for o in outcomes}) == 2
    assert len(intents(ledger)) == 2
    assert key_head("executor", "k") != key_head("router", "k")
    assert key_head("a:b", "c") != key_head("a", "b:c")  # a name cannot run into its key


async def test_a_denied_or_reviewed_intent_met_again_keeps_its_outcome(
    gateway: Gateway, ledger: SQLiteLedger, world: World, people: People
) -> None:
    closed = world_booking(region="closed")
    denied = await gateway.submit(gateway.intent("executor", "carrier.book", closed, idempotency_key="d"))
    again = await gateway.submit(gateway.intent("executor", "carrier.book", closed, idempotency_key="d"))
    assert (denied.status, again.status) == ("denied", "denied")
    assert again.intent.id == denied.intent.id

    medical = world_booking("S-9", cls="medical", disruption=True)
    held = await gateway.submit(gateway.intent("executor", "carrier.book", medical, idempotency_key="r"))
    assert held.status == "review"
    assert held.review is not None
    still = await gateway.submit(gateway.intent("executor", "carrier.book", medical, idempotency_key="r"))
    assert still.status == "review"
    assert still.review is not None
    assert still.review.id == held.review.id
    done = await gateway.answer(held.review.id, key=people.reviewer, verdict="approve", reason="checked")
    assert done.status == "succeeded"
    after = await gateway.submit(gateway.intent("executor", "carrier.book", medical, idempotency_key="r"))
    assert after.status == "succeeded"
    assert after.execution == done.execution
    assert world.calls == 1
    assert len(intents(ledger)) == 2


async def test_concurrent_submits_of_one_key_run_it_once(
    gateway: Gateway, ledger: SQLiteLedger, world: World
) -> None:
    outcomes = await asyncio.gather(
        *(
            gateway.submit(
                gateway.intent("executor", "carrier.book", world_booking(), idempotency_key="same")
            )
            for _ in range(8)
        )
    )
    assert {o.status for o in outcomes} == {"succeeded"}
    assert len({o.intent.id for o in outcomes}) == 1
    assert world.calls == 1
    assert len(intents(ledger)) == 1
    assert len(gateway._key_locks) == 0  # no lock kept per key once nobody waits


async def test_the_store_refuses_a_key_recorded_by_another_writer_after_the_check(
    gateway: Gateway, ledger: SQLiteLedger, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check before recording is a courtesy; the store's guard on the key is what holds. The
    repeat is made to miss the first intent in its check (as a process whose check ran before
    another's commit would), and the store still refuses its append; it then meets the first."""
    first = await gateway.submit(
        gateway.intent("executor", "carrier.book", world_booking(), idempotency_key="g")
    )
    real = Gateway._keyed
    missed: list[bool] = []

    def late(self: Gateway, head: str, intent: Intent):  # type: ignore[no-untyped-def]
        if not missed:
            missed.append(True)
            return None
        return real(self, head, intent)

    monkeypatch.setattr(Gateway, "_keyed", late)
    size = ledger.size()
    again = await gateway.submit(
        gateway.intent("executor", "carrier.book", world_booking(), idempotency_key="g")
    )
    assert missed == [True]
    assert again.intent.id == first.intent.id
    assert again.status == "succeeded"
    assert ledger.size() == size
    assert world.calls == 1


@pytest.mark.crash
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize("crashed", [False, True], ids=["exited", "killed_after_the_call"])
async def test_a_key_is_met_by_the_next_process_and_the_partner_books_once(
    tmp_path: Path, crashed: bool, backend: str
) -> None:
    """A real process books with a key at a partner that books every call (no deduplication,
    only a lookup by key), and exits or dies by ``os._exit`` right after the call; a new process
    on the same ledger submits the same key again and gets the recorded outcome."""
    store = make_backend(backend, tmp_path)
    world_path = tmp_path / "world.db"
    try:
        await install(store.target)
        async with Children(tmp_path) as kids:
            first = await kids.spawn(
                "holder", ledger=store.target, world=str(world_path), mode="lookup", flow="allowed", key="K",
                point="executed" if crashed else None, exit=crashed,
            )  # fmt: skip
            if crashed:
                assert await first.wait() == CRASH_EXIT, first
            else:
                assert (await first.expect("done"))["statuses"] == ["succeeded"], first
                assert await first.wait() == 0, first

        carrier = Carrier(world_path, ledger_path=store.target, mode="lookup")
        ledger = store.open()
        gateway = build_gateway(ledger, carrier, clock=ShiftedClock())
        await gateway.start()  # after a kill: reconcile finds the booking by key and records it
        again = await gateway.submit(booking(gateway, "K"))
        other = booking(gateway, "K")
        other = other.model_copy(update={"arguments": {**other.arguments, "shipment": "K-2"}})
        with pytest.raises(IdempotencyConflict):
            await gateway.submit(other)
        gateway.close()
        assert again.status == "succeeded"
        assert carrier.count("K") == 1
        assert len(intents(ledger)) == 1
        carrier.close()
    finally:
        store.close()


@pytest.mark.parametrize("flow", ["allowed", "denied", "review"])
async def test_the_same_intent_submitted_twice_is_one_request(
    gateway: Gateway, ledger: SQLiteLedger, world: World, flow: str
) -> None:
    """An Intent keyed by its own id (the default) has no head to check; sent again, its id is
    taken in the store, and it meets itself there (it was a Conflict on its claim, or an id
    "used once", that named no intent)."""
    arguments = {
        "allowed": world_booking(),
        "denied": world_booking(region="closed"),
        "review": world_booking(cls="medical", disruption=True),
    }[flow]
    intent = gateway.intent("executor", "carrier.book", arguments)
    first = await gateway.submit(intent)
    size = ledger.size()
    again = await gateway.submit(intent)
    assert (
        again.status == first.status == {"allowed": "succeeded", "denied": "denied", "review": "review"}[flow]
    )
    assert again.intent.id == first.intent.id
    assert again.execution == first.execution
    assert ledger.size() == size
    assert world.calls == (flow == "allowed")
    forged = intent.model_copy(update={"arguments": world_booking("S-2")})  # its id, other arguments
    with pytest.raises(IdempotencyConflict) as refused:
        await gateway.submit(forged)
    assert refused.value.intent_id == intent.id
    assert ledger.size() == size


async def test_an_id_reused_by_hand_for_another_agent_meets_a_conflict_not_the_first_outcome(
    gateway: Gateway, ledger: SQLiteLedger, world: World
) -> None:
    """An Intent built by hand with the router's name and the id of the executor's intent is not
    the executor's request: it is refused, and the executor's outcome is not handed to it."""
    first = await gateway.submit(gateway.intent("executor", "carrier.book", world_booking()))
    size = ledger.size()
    borrowed = first.intent.model_copy(update={"agent": "router"})
    with pytest.raises(IdempotencyConflict) as refused:
        await gateway.submit(borrowed)
    assert refused.value.reason_code == "idempotency_conflict"
    assert ledger.size() == size
    assert world.calls == 1


@pytest.mark.crash
async def test_a_claim_a_stop_held_at_start_is_settled_once_the_stop_is_lifted(tmp_path: Path) -> None:
    """A process dies (``os._exit``) right after its claim; the CLI halts the ledger; the next
    gateway's reconcile leaves the claim open (whether the call happened is unknown, and the halt
    is in force), so the key answers ``idempotency_in_flight``. The RI resumes with the CLI: the
    running gateway reconciles again and the call is made once. Before, the claim stayed open, and
    the key in flight, until the next start."""
    ledger_path, world_path = tmp_path / "ledger.db", tmp_path / "world.db"
    await install(ledger_path)
    async with Children(tmp_path) as kids:
        first = await kids.spawn(
            "holder", ledger=str(ledger_path), world=str(world_path), flow="allowed", key="H",
            point="claimed", exit=True,
        )  # fmt: skip
        assert await first.wait() == CRASH_EXIT, first
    halted = await cli("halt", str(ledger_path), "--by", "pager@ops.example", "--reason", "storm")
    assert halted.code == 0, halted
    carrier = Carrier(world_path, ledger_path=ledger_path)
    ledger = SQLiteLedger.open(ledger_path)
    gateway = build_gateway(ledger, carrier, clock=ShiftedClock())
    try:
        [held] = await gateway.start()
        assert (held.status, held.execution) == ("not_executed", None)
        assert await gateway.reconcile_held() == []  # nothing changed: no scan, nothing done
        with pytest.raises(IdempotencyConflict) as in_flight:
            await gateway.submit(booking(gateway, "H"))
        assert in_flight.value.reason_code == "idempotency_in_flight"
        RI.save(tmp_path / "ri.key")
        resumed = await cli(
            "resume", str(ledger_path), "--by", RI.identity, "--reason", "storm over",
            "--key", str(tmp_path / "ri.key"),
        )  # fmt: skip
        assert resumed.code == 0, resumed
        [settled] = await gateway.reconcile_held()
        assert settled.status == "succeeded"
        assert await gateway.reconcile_held() == []
        again = await gateway.submit(booking(gateway, "H"))
        assert again.status == "succeeded"
        assert carrier.count("H") == 1
    finally:
        gateway.close()
        ledger.close()
        carrier.close()
