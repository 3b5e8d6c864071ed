"""What is recorded is what runs: the gateway refuses what has no exact JSON form, before recording."""

from __future__ import annotations

from typing import Any

import pytest

from answerable import ArgumentsInvalid, Gateway, SQLiteLedger
from answerable.operations import MAX_DEPTH
from answerable.records import Intent, decode_entry


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        ("nan", "the text NaN a float field would parse"),
        (2**53, "an integer past the I-JSON range"),
        (-(2**53), "a negative integer past the I-JSON range"),
        (1e20, "a float canonical JSON writes as an integer past the I-JSON range"),
        (-(2.0**60), "a negative one"),
        ("\ud800", "a lone surrogate"),
        (nested(MAX_DEPTH + 1), "nesting past the documented limit"),
    ],
)
async def test_arguments_with_no_exact_json_form_are_refused_and_nothing_is_recorded(
    gateway: Gateway, ledger: SQLiteLedger, value: Any, why: str
):
    """Each is refused with the field named; the ledger is exactly as it was."""
    calls: list[Any] = []

    def record(amount: Any) -> None:
        calls.append(amount)

    def typed(amount: float) -> None:
        calls.append(amount)

    gateway.register("noop.any", record, resource_class="bench")
    gateway.register("noop.float", typed, resource_class="bench")
    size = ledger.size()
    operation = "noop.float" if isinstance(value, str) and value == "nan" else "noop.any"
    with pytest.raises(ArgumentsInvalid) as refused:
        await gateway.submit(gateway.intent("executor", operation, {"amount": value}))
    assert "amount" in str(refused.value), why
    assert ledger.size() == size
    assert calls == []


async def test_the_operation_receives_the_values_the_intent_records(gateway: Gateway, ledger: SQLiteLedger):
    """Coerced and defaulted values are recorded as they run, not as the agent sent them."""
    received: list[tuple[int, str]] = []

    def book(count: int, note: str = "none") -> None:
        received.append((count, note))

    gateway.register("carrier.fail", book, resource_class="bench")
    outcome = await gateway.submit(gateway.intent("executor", "carrier.fail", {"count": "7"}))
    assert outcome.status == "succeeded"
    [stored] = [decode_entry(e.data) for e in ledger.of_kind("Intent")]
    assert isinstance(stored, Intent)
    assert stored.arguments == {"count": 7, "note": "none"}
    assert received == [(7, "none")]


async def test_a_context_builder_returning_something_not_json_is_a_recorded_deny(
    gateway: Gateway, ledger: SQLiteLedger
):
    """The deny names the problem; nothing runs; the gateway goes on with the next intent."""
    calls: list[int] = []
    gateway.register(
        "carrier.http", lambda: calls.append(1), resource_class="bench", context=lambda _a: {"when": {1, 2}}
    )
    outcome = await gateway.submit(gateway.intent("executor", "carrier.http", {}))
    assert outcome.status == "denied"
    assert outcome.decision is not None
    assert "context" in outcome.decision.errors[0]
    assert calls == []
    assert [e.kind for e in ledger.entries()][-2:] == ["Intent", "Decision"]
    assert (await gateway.submit(gateway.intent("executor", "noop", {}))).status == "succeeded"
