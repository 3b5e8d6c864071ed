"""The records the gateway assembles without validation are the records validation would make.

The gateway makes its Decision, Claim and Execution of a governed action from parts it has
checked itself (``records.assembled``), not through pydantic's validation. These tests hold every
record it appends, on every path they reach, to the record its stored bytes decode to: equal,
field for field, in the same order, each value of the same type. A change of pydantic's
instance layout, or a part the gateway forgot to check, fails them.
"""

from __future__ import annotations

import asyncio
import types
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from support import People, World, booking

from answerable import Gateway, RecordInvalid, Scope, SQLiteLedger
from answerable.clock import FakeClock, _uuid7, parse_rfc3339, rfc3339
from answerable.ledger import _sql
from answerable.records import Intent, Record, decode_entry, entry_bytes, validated


def _layout(record: Record) -> list[tuple[str, type[Any]]]:
    """Each field's name and the type of its value, in the instance's own order, nested models too."""
    out: list[tuple[str, type[Any]]] = []
    for name, value in vars(record).items():
        out.append((name, type(value)))
        if isinstance(value, BaseModel):  # an Execution's Authority
            out.extend((f"{name}.{k}", type(v)) for k, v in vars(value).items())
    return out


def _appended(gateway: Gateway) -> list[Record]:
    """Every record the gateway hands its ledger from now on."""
    seen: list[Record] = []
    ledger = gateway.ledger
    append = ledger.append

    async def keeping(records: Iterable[Record], **kwargs: Any) -> list[int]:
        listed = list(records)
        seen.extend(listed)
        return await append(listed, **kwargs)

    ledger.append = keeping  # type: ignore[method-assign]
    return seen


_ASSEMBLED = ("Intent", "Decision", "Claim", "Execution")


def _as_stored(records: list[Record], ledger: SQLiteLedger) -> None:
    for record in records:
        stored = ledger.find(record.id)
        decoded = decode_entry(stored.data)
        assert entry_bytes(record) == stored.data
        assert record == decoded
        assert decoded == record
        assert _layout(record) == _layout(decoded), type(record).__name__
        authority = getattr(record, "authority", None)
        if authority is not None:
            assert type(authority) is type(decoded.authority)  # type: ignore[attr-defined]
            assert vars(authority) == vars(decoded.authority)  # type: ignore[attr-defined]
        if type(record).__name__ in _ASSEMBLED:  # validation leaves defaults out of the fields set
            assert record.model_fields_set == decoded.model_fields_set


async def test_the_records_of_every_outcome_are_the_records_their_bytes_decode_to(
    gateway: Gateway, ledger: SQLiteLedger, people: People, world: World
) -> None:
    """Succeeded, failed, denied, held for review and approved, and stopped by a halt."""
    appended = _appended(gateway)

    def refuse() -> None:
        raise RuntimeError("carrier capacity exhausted")

    gateway.register("carrier.fail", refuse, resource_class="shipment")
    done = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    failed = await gateway.submit(gateway.intent("executor", "carrier.fail", {}))
    denied = await gateway.submit(gateway.intent("executor", "carrier.book", booking(region="closed")))
    held = await gateway.submit(
        gateway.intent("executor", "carrier.book", booking(cls="medical", disruption=True))
    )
    assert held.review is not None
    approved = await gateway.answer(held.review.id, key=people.reviewer, verdict="approve", reason="clinic")
    await gateway.control.halt(by="ops@logistics.example", reason="storm")
    halted = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    statuses = [o.status for o in (done, failed, denied, held, approved, halted)]
    assert statuses == ["succeeded", "failed", "denied", "review", "succeeded", "denied"]

    kinds = {type(r).__name__ for r in appended}
    assert {"Decision", "Claim", "Execution"} <= kinds
    _as_stored(appended, ledger)
    for outcome in (done, failed, denied, held, approved, halted):
        made = [r for r in (outcome.decision, outcome.execution) if r is not None]
        _as_stored(made, ledger)


async def test_a_claim_and_execution_of_a_call_stopped_after_its_claim_are_what_validation_makes(
    gateway: Gateway, ledger: SQLiteLedger
) -> None:
    """A halt committed between the Claim and the call: the Execution cites the stop."""
    appended = _appended(gateway)

    def halt_now(point: str, _intent: object) -> None:
        if point == "claimed":
            gateway.ledger.append_sync([gateway.control.make("halt", Scope(kind="system"), "ops", "now")])

    gateway._fault = halt_now
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    assert outcome.status == "not_executed"
    _as_stored([r for r in appended if type(r).__name__ != "Control"], ledger)


@pytest.mark.parametrize(
    ("part", "value"),
    [("id", "x" * 129), ("id", ""), ("time", 253_402_300_800 * 10**9)],  # 253402300800 s: year 10000
)
async def test_a_part_no_record_can_hold_is_refused_by_name_and_records_nothing(
    gateway: Gateway, ledger: SQLiteLedger, clock: FakeClock, part: str, value: Any
) -> None:
    """An id source or a clock of the caller's that gives what no record holds: validated, and
    refused as RecordInvalid (not pydantic's own error) before anything is recorded."""
    intent = gateway.intent("executor", "carrier.book", booking())
    size = ledger.size()
    if part == "id":
        gateway.ids.new = lambda: value  # type: ignore[method-assign]
    else:
        clock.ns = value
    with pytest.raises(RecordInvalid, match="the gateway's Decision cannot be recorded"):
        await gateway.submit(intent)
    assert ledger.size() == size


def _dated_by_each(records: list[Any]) -> str | None:
    """The latest time as the ledger worked it out before it looked at the newest first."""
    latest = None
    for record in records:
        if not record.dated_by_signer:
            at = record.at
            if not _sql._written(at):
                try:
                    at = rfc3339(parse_rfc3339(at))
                except ValueError:
                    continue
            if latest is None or at > latest:
                latest = at
    return latest


_SECONDS = st.integers(min_value=0, max_value=4_102_444_800)  # to 2100
_times = st.one_of(
    st.builds(lambda s, us: rfc3339(s * 10**9 + us * 1000), _SECONDS, st.integers(0, 999_999)),
    # other shapes a record's time may take when built by hand
    st.builds(
        lambda s, frac: rfc3339(s * 10**9)[:19] + (f".{frac}" if frac else "") + "Z",
        _SECONDS,
        st.text("0123456789", max_size=9),
    ),
    st.builds(lambda s: rfc3339(s * 10**9)[:11] + "99" + rfc3339(s * 10**9)[13:], _SECONDS),
    st.text(max_size=30),
)


@pytest.mark.property
@given(st.lists(st.tuples(_times, st.booleans()), min_size=1, max_size=6))
def test_the_latest_time_read_newest_first_is_the_latest_time_read_one_by_one(
    made: list[tuple[str, bool]],
) -> None:
    records = [types.SimpleNamespace(at=at, dated_by_signer=signed) for at, signed in made]
    assert _sql._dated(records) == _dated_by_each(records)  # type: ignore[arg-type]


@pytest.mark.property
@given(st.integers(min_value=-(2**50), max_value=2**50), st.integers(min_value=0, max_value=2**75))
def test_an_id_is_the_text_of_its_uuid(ms: int, tail: int) -> None:
    rand_a, rand_b = (tail >> 62) & 0xFFF, tail & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    assert _uuid7(ms, tail) == f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if 0 <= ms < 1 << 48 and tail < 1 << 74:
        assert _uuid7(ms, tail) == str(uuid.UUID(int=value))


@pytest.fixture(scope="module")
def bare_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose intents are all that is asked of it, one for every example."""
    ledger = SQLiteLedger.open(
        tmp_path_factory.mktemp("bare") / "bare.db", create=True, origin="test.example/bare"
    )
    gateway = Gateway(ledger, clock=FakeClock())
    yield gateway
    gateway.close()
    ledger.close()


_LONE = "k\ud800"
"""Text UTF-8 cannot carry: validation refuses it in an id or a name."""
_names = st.one_of(
    st.sampled_from(["executor", "carrier.book", "a" * 200, "a" * 201, "two words", _LONE, "é"]),
    st.text(max_size=6),
)
_keys = st.one_of(
    st.none(), st.sampled_from(["k", "", "k" * 128, "k" * 129, _LONE, "é" * 128]), st.text(max_size=4)
)


@pytest.mark.property
@given(
    agent=_names,
    operation=_names,
    arguments=st.dictionaries(
        st.text(max_size=3) | st.integers(0, 3), st.integers() | st.text(max_size=3), max_size=3
    ),
    key=_keys,
    trace=_keys,
    behalf=st.one_of(st.none(), _names),
)
@example(agent="executor", operation="carrier.book", arguments={}, key=_LONE, trace=None, behalf=None)
@example(agent="executor", operation="carrier.book", arguments={}, key=None, trace=_LONE, behalf=None)
@example(agent="executor", operation="carrier.book", arguments={}, key="é" * 128, trace=None, behalf=_LONE)
@example(agent="executor", operation="carrier.book", arguments={0: 1}, key=None, trace=None, behalf=None)
def test_an_intent_is_what_validation_makes_of_its_fields_or_refused_as_validation_refuses(
    bare_gateway: Gateway,
    agent: str,
    operation: str,
    arguments: dict[str, Any],
    key: str | None,
    trace: str | None,
    behalf: str | None,
) -> None:
    gateway = bare_gateway
    fields = {"agent": agent, "operation": operation, "arguments": arguments, "trace_id": trace}
    try:
        made = gateway.intent(
            agent, operation, arguments, idempotency_key=key, trace_id=trace, on_behalf_of=behalf
        )
    except RecordInvalid:
        values = {
            "id": "i",
            "at": rfc3339(0),
            "idempotency_key": "i" if key is None else key,
            "on_behalf_of": behalf,
            **fields,
        }
        with pytest.raises(ValidationError):
            Intent.model_validate(values)
        return
    again = validated(Intent, dict(vars(made)))
    assert made == again
    assert _layout(made) == _layout(again)
    assert entry_bytes(made) == entry_bytes(again)


async def test_what_is_recorded_is_what_was_judged_though_the_caller_changes_its_arguments_meanwhile(
    gateway: Gateway, ledger: SQLiteLedger
) -> None:
    """The Intent's arguments are the canonical copy Cedar judged and the operation received, not
    the caller's nested lists, which its other task changes while the intent awaits its decision."""
    received: list[list[str]] = []
    gateway.register("carrier.fail", lambda items: received.append(list(items)), resource_class="shipment")
    nested = ["judged"]
    intent = gateway.intent("executor", "carrier.fail", {"items": nested})

    async def meddle() -> None:
        await asyncio.sleep(0)
        nested.append("later")

    meddling = asyncio.create_task(meddle())
    outcome = await gateway.submit(intent)
    await meddling
    assert outcome.status == "succeeded"
    assert received == [["judged"]]
    assert decode_entry(ledger.find(intent.id).data).arguments == {"items": ["judged"]}
    assert outcome.intent.arguments == {"items": ["judged"]}
