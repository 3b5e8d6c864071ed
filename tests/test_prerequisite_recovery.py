"""A prerequisite call that a crash cut off and the next start's reconcile settled counts at once.

The service learned which prerequisite calls succeeded before its reconcile ran and dropped what
reconcile settled: the lookup a crash cut off, replayed and recorded as succeeded at start, did
not count, and the refund that needs it was denied (its idempotency key keeping that deny) until
the next restart.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import orjson

from answerable import Gateway, KeyPair, new_ruleset
from answerable.config import load_config, resolve_target
from answerable.ledger.location import open_ledger
from answerable.operations import arguments_as_context
from answerable.records import Execution, decode_entry
from answerable.scaffold import init
from answerable.service import Service, SubmitBody

SCHEMA = """entity Agent;
entity Resource { class: String };
action "refund" appliesTo { principal: [Agent], resource: [Resource],
  context: { order: String, amount_cents: Long, prerequisites: Set<String> } };
action "lookup" appliesTo { principal: [Agent], resource: [Resource], context: { order: String } };
"""
POLICIES = """@id("lookups") permit(principal, action == Action::"lookup", resource);
@id("refund-after-lookup") permit(principal, action == Action::"refund", resource)
  when { context.prerequisites.contains("lookup") };
"""
OPERATIONS = """
def refund(order: str, amount_cents: int, idempotency_key: str) -> dict:
    return {"refunded": amount_cents}


def lookup(order: str, idempotency_key: str) -> dict:
    return {"order": order, "found": True}
"""


class Cut(Exception):
    """The process ends here, its claim committed and its call not made."""


def shop(folder: Path) -> Path:
    init(folder)
    (folder / "policies.cedar").write_text(POLICIES)
    (folder / "schema.cedarschema").write_text(SCHEMA)
    # A module name no other test's folder uses: one process imports a name once.
    (folder / "prerequisite_operations.py").write_text(OPERATIONS)
    ri = KeyPair.load(folder / "ri.key")
    (folder / "ruleset.json").write_bytes(
        orjson.dumps(new_ruleset(POLICIES, SCHEMA, ri).model_dump(mode="json"))
    )
    toml = folder / "answerable.toml"
    text = toml.read_text().replace('[monitors]\nfile = "monitors.json"', "")
    text = text.replace(
        "[[operations]]",
        '[[operations]]\nname = "lookup"\ntarget = "operations:lookup"\nidempotent = true\n\n[[operations]]',
        1,
    )
    text = text.replace('target = "operations:', 'target = "prerequisite_operations:')
    toml.write_text(text + '\n[[prerequisites]]\noperation = "refund"\nafter = "lookup"\nsame = ["order"]\n')
    return toml


async def test_a_lookup_reconcile_settled_at_start_lets_the_refund_through(tmp_path: Path) -> None:
    toml = shop(tmp_path / "shop")
    config = load_config(toml)
    first = Service(config)
    await first.start()  # records the charter and the rules
    await first.stop()

    def cut(point: str, _intent: object) -> None:
        if point == "claimed":
            raise Cut

    ledger = open_ledger(config.ledger, origin=config.origin)
    gateway = Gateway(ledger, fault=cut)
    folder = toml.parent
    gateway.register(
        "lookup",
        resolve_target("prerequisite_operations:lookup", folder, "lookup"),
        resource_class="lookup",
        idempotent=True,
        context=arguments_as_context,
    )
    await gateway.resume_from_ledger()
    with contextlib.suppress(Cut):
        await gateway.submit(gateway.intent("refunds-agent", "lookup", {"order": "O-1"}))
    gateway.close()  # its epoch is over: the next start reconciles the open claim
    ledger.close()

    second = Service(load_config(toml))
    await second.start()
    try:
        assert second.ledger is not None
        settled = [decode_entry(e.data) for e in second.ledger.of_kind("Execution")]
        assert [(x.operation, x.status, x.recovered) for x in settled if isinstance(x, Execution)] == [
            ("lookup", "succeeded", True)
        ]
        _, doc = await second.submit(
            "refunds-agent", SubmitBody(operation="refund", arguments={"order": "O-1", "amount_cents": 5})
        )
        assert doc["status"] == "succeeded", doc
    finally:
        await second.stop()
