"""A small governed system, end to end: what ``make demo`` runs until the storm scenario lands."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from answerable.charter import new_charter, new_ruleset
from answerable.errors import ConfigError
from answerable.gateway import Gateway, Outcome, Resource
from answerable.keys import KeyPair
from answerable.ledger import SQLiteLedger

__all__ = ["run"]

SCHEMA = """
entity Agent;
entity Order { cents: Long };
action "payments.refund" appliesTo { principal: [Agent], resource: [Order], context: {} };
"""

POLICIES = """
@id("refunds-up-to-1000")
permit(principal, action == Action::"payments.refund", resource) when { resource.cents <= 100000 };

@id("large-refunds-need-a-person")
@review("a refund over 100 needs a person")
forbid(principal, action == Action::"payments.refund", resource) when { resource.cents > 10000 };
"""


MARK = ".answerable-quickstart"
"""Left in the folder the quickstart made: only a folder holding it is ever emptied again."""


def _fresh(out_dir: Path) -> None:
    """An empty ``out_dir``: made now, or made by an earlier quickstart and emptied.

    Raises:
        ConfigError: ``out_dir`` is a file, or a folder with files that no quickstart made.
    """
    try:
        if out_dir.is_dir() and (out_dir / MARK).is_file():
            shutil.rmtree(out_dir)
        elif out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise ConfigError(f"--out {out_dir} exists and was not made by the quickstart; give a new folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MARK).write_text("made by `answerable demo quickstart`; emptied when it runs again\n")
    except OSError as exc:
        raise ConfigError(f"--out {out_dir}: {exc.strerror}") from exc


def run(out_dir: Path, console: Console) -> None:
    """Write ``out_dir/ledger.db`` and the RI's key, govern a few refunds, halt, resume, verify."""
    _fresh(out_dir)
    ri = KeyPair.generate("ri@shop.example")
    ri.save(out_dir / "ri.key")
    with SQLiteLedger.open(out_dir / "ledger.db", create=True, origin="shop.example/refunds") as ledger:
        outcomes = asyncio.run(_scenario(ledger, ri))
        checkpoint = ledger.checkpoint()
        (out_dir / "checkpoint.txt").write_text(checkpoint, encoding="utf-8")
        report = ledger.verify(checkpoint)

    table = Table(title="governed refunds")
    for column in ("step", "amount", "outcome", "decided by"):
        table.add_column(column)
    for step, cents, outcome in outcomes:
        decision = outcome.decision
        if decision is None:  # the gateway always decides; only the ungoverned baseline does not
            by = "nobody"
        elif decision.effect == "deny" and decision.errors:
            by = "; ".join(decision.errors)
        else:
            by = ", ".join(decision.policy_ids)
        table.add_row(step, f"{cents / 100:.2f}", outcome.status, by)
    console.print(table)
    console.print(f"ledger: {out_dir / 'ledger.db'} ({report.size} entries, verified)")
    console.print(
        f"try:    answerable verify {out_dir / 'ledger.db'} --checkpoint {out_dir / 'checkpoint.txt'}"
    )
    console.print(
        f"        answerable ledger export {out_dir / 'ledger.db'} --out {out_dir / 'ledger.jsonl'}"
    )


async def _scenario(ledger: SQLiteLedger, ri: KeyPair) -> list[tuple[str, int, Outcome]]:
    refunds: dict[str, int] = {}

    def refund(order: str, cents: int, idempotency_key: str) -> dict[str, object]:
        refunds.setdefault(idempotency_key, cents)  # the payment API deduplicates by key
        return {"order": order, "refunded": refunds[idempotency_key]}

    gateway = Gateway(ledger)
    gateway.register(
        "payments.refund",
        refund,
        resource_class="payments",
        resource=lambda a: Resource("Order", a.order, {"cents": a.cents}),  # type: ignore[attr-defined]
        idempotent=True,
    )
    await gateway.install(new_charter("shop", ri, agents=["support-bot"]), new_ruleset(POLICIES, SCHEMA, ri))

    async def ask(step: str, order: str, cents: int) -> tuple[str, int, Outcome]:
        intent = gateway.intent("support-bot", "payments.refund", {"order": order, "cents": cents})
        return step, cents, await gateway.submit(intent)

    results = [
        await ask("routine refund", "A-1", 2_500),
        await ask("large refund", "A-2", 45_000),
        await ask("beyond the rules", "A-3", 900_000),
    ]
    await gateway.control.halt(by="on-call@shop.example", reason="refunds look wrong")
    results.append(await ask("after halt", "A-4", 1_000))
    await gateway.control.resume(key=ri, reason="checked, all fine")
    results.append(await ask("after resume", "A-5", 1_000))
    return results
