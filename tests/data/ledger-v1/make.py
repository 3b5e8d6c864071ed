"""How ledger.db here was made: run once at commit 1eddc26 (ledger format version 1), kept as is.

A ledger written by an earlier version must still open and verify; this file is that earlier
version's output. It holds a charter, a ruleset, allowed, denied and reviewed intents, an approval
and its execution, a halt and a signed resume, a payload moved to the blobs table, and a checkpoint.
Re-running it with a newer answerable would not reproduce the old format, so do not.
"""

import asyncio
from pathlib import Path

from answerable import FakeClock, Gateway, IdSource, KeyPair, Resource, SQLiteLedger, new_charter, new_ruleset
from answerable.quickstart import POLICIES, SCHEMA
from answerable.records import ExternalEvent

HERE = Path(__file__).parent
RI = KeyPair.from_seed("ri@shop.example", b"\x11" * 32)
REVIEWER = KeyPair.from_seed("reviewer@shop.example", b"\x22" * 32)


async def main() -> None:
    clock = FakeClock()
    ids = IdSource(clock)
    ledger = SQLiteLedger.open(HERE / "ledger.db", create=True, origin="shop.example/v1")
    gateway = Gateway(ledger, clock=clock, ids=ids)
    gateway.register(
        "payments.refund",
        lambda order, cents, idempotency_key: {"order": order, "refunded": cents},
        resource_class="payments",
        resource=lambda a: Resource("Order", a.order, {"cents": a.cents}),
        idempotent=True,
    )
    await gateway.install(
        new_charter("shop", RI, agents=["support-bot"], reviewers=[REVIEWER], clock=clock, ids=ids),
        new_ruleset(POLICIES, SCHEMA, RI, clock=clock, ids=ids),
    )
    event = ExternalEvent(
        id=ids.new(),
        at="2026-11-30T10:00:00Z",
        source="crm",
        type="bulk",
        payload={"rows": ["x" * 100] * 1000},
    )
    await ledger.append([event])
    for order, cents in (("A-1", 2_500), ("A-2", 45_000), ("A-3", 900_000)):
        out = await gateway.submit(
            gateway.intent(
                "support-bot", "payments.refund", {"order": order, "cents": cents}, causes=(event.id,)
            )
        )
        if out.review is not None:
            await gateway.answer(out.review.id, key=REVIEWER, verdict="approve", reason="known customer")
    await gateway.control.halt(by="on-call@shop.example", reason="refunds look wrong")
    await gateway.submit(gateway.intent("support-bot", "payments.refund", {"order": "A-4", "cents": 100}))
    await gateway.control.resume(key=RI, reason="checked")
    ledger.checkpoint()
    ledger.close()


asyncio.run(main())
