"""Records: frozen, validated, with one canonical serialization that matches RFC 8785."""

from __future__ import annotations

import enum
import uuid

import pydantic
import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from answerable import ExternalEvent, IdSource, RecordInvalid, records
from answerable._canonical import canonical_bytes
from answerable.clock import FakeClock, rfc3339
from answerable.records import Decision, Execution, Intent, Record, decode_entry, entry_bytes

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.property
@given(json_values)
def test_canonical_bytes_are_rfc8785(value):
    """The fast path and the reference encoder agree on every JSON value, refusals included."""
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(RecordInvalid, match="no canonical JSON form"):
            canonical_bytes(value)
        return
    assert canonical_bytes(value) == expected


def event(**overrides: object) -> ExternalEvent:
    fields = {
        "id": "e-1",
        "at": rfc3339(0),
        "source": "weather",
        "type": "storm.alert",
        "payload": {"region": "north"},
    }
    return ExternalEvent.model_validate({**fields, **overrides})


def test_records_are_frozen():
    """A record cannot be changed after it is made."""
    record = event()
    with pytest.raises(pydantic.ValidationError):
        record.source = "other"  # type: ignore[misc]


def test_unknown_fields_are_refused():
    """Extra fields are an error, not silently kept."""
    with pytest.raises(pydantic.ValidationError, match="extra"):
        event(colour="red")


def test_decode_round_trips_and_names_bad_fields():
    """Decoding canonical bytes gives the same record; a malformed entry names the field."""
    record = event()
    assert decode_entry(entry_bytes(record)) == record
    with pytest.raises(RecordInvalid, match=r"ExternalEvent\.at"):
        decode_entry(entry_bytes(record).replace(b"1970", b"19x0"))
    with pytest.raises(RecordInvalid, match="kind"):
        decode_entry(b'{"kind": "Gossip", "id": "x"}')


def test_ids_sort_by_time_and_never_repeat():
    """UUIDv7 ids from one source increase strictly, even within one millisecond."""
    clock = FakeClock()
    ids = IdSource(clock)
    made = [ids.new() for _ in range(1000)]
    clock.advance(0.001)
    made += [ids.new() for _ in range(10)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(i[14] == "7" for i in made)
    for made_id in made:  # the text uuid.UUID would print, of a version 7, RFC 9562 variant UUID
        parsed = uuid.UUID(made_id)
        assert (str(parsed), parsed.version, parsed.variant) == (made_id, 7, uuid.RFC_4122)


def test_record_times_parse_back_to_the_nanoseconds_they_were_written_from() -> None:
    import pytest

    from answerable.clock import parse_rfc3339, rfc3339

    for ns in (0, 1_772_431_200_000_000_000, 1_772_431_200_123_456_000):
        assert parse_rfc3339(rfc3339(ns)) == ns
    assert parse_rfc3339("2026-03-02T06:00:00.000000001Z") == 1_772_431_200_000_000_001
    assert parse_rfc3339("2026-03-02T06:00:00Z") == 1_772_431_200_000_000_000
    for bad in ("2026-03-02T06:00:00", "2026-03-02T06:00:00.x1Z", "yesterday"):
        with pytest.raises(ValueError, match="not a UTC record time"):
            parse_rfc3339(bad)


json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


@pytest.mark.property
@given(json_objects, json_objects)
def test_record_bytes_walking_only_free_form_fields_are_rfc8785(arguments, context):
    """A record's bytes walk only its free-form fields; with floats, non-ASCII keys and unsafe
    integers in them, the bytes are still RFC 8785's, or refused as it refuses them."""
    intent = Intent(
        id="i-1", at=rfc3339(0), agent="a", operation="op", arguments=arguments, idempotency_key="k"
    )
    decision = Decision(
        id="d-1",
        at=rfc3339(0),
        intent_id="i-1",
        effect="allow",
        policy_ids=("p",),
        ruleset_id=None,
        ruleset_hash="h",
        schema_hash="s",
        request={"context": context},
        entities=({"attrs": context},),
    )
    for record in (intent, decision):
        body = record.model_dump(mode="json")
        try:
            expected = rfc8785.dumps(body)
        except rfc8785.CanonicalizationError:
            with pytest.raises(RecordInvalid, match="no canonical JSON form"):
                entry_bytes(record)
            continue
        assert entry_bytes(record) == expected


def test_an_unsafe_integer_in_a_typed_field_is_refused_as_before():
    """Typed fields are not walked; orjson itself refuses an integer past I-JSON, and the exact
    path names it."""
    execution = Execution(
        id="x-1",
        at=rfc3339(0),
        intent_id="i-1",
        decision_id=None,
        operation="op",
        status="succeeded",
        authority=None,
        latency_us=2**60,
    )
    with pytest.raises(RecordInvalid, match=r"latency_us: integer .* outside the I-JSON range"):
        entry_bytes(execution)


def _loose(annotation: object) -> bool:
    """Whether an annotation admits a dict, Any or a float anywhere inside it."""
    text = repr(annotation)
    return any(word in text for word in ("dict", "Any", "float", "Coordination"))


def test_free_form_fields_are_every_field_a_person_or_agent_fills_freely():
    """The walk's exemption is derived from the annotations: a record's free-form fields are
    exactly those whose type admits a dict, Any or a float (read here from its text)."""
    kinds = [
        c for c in vars(records).values() if isinstance(c, type) and issubclass(c, Record) and c is not Record
    ]
    assert len(kinds) >= 15
    for kind in kinds:
        loose = {name for name, f in kind.model_fields.items() if _loose(f.annotation)}
        assert kind.free_form == loose, kind.__name__


def test_every_kind_someone_signs_says_whether_its_signer_dated_it():
    """A signed record's time is its signer's word, which the ledger's clock (the review clock's
    floor) must leave out: a kind added with a signature and no ``dated_by_signer`` of its own
    would let its signers move every review's clock by dating ahead. A kind nobody signs is
    dated by the runtime and keeps the default."""
    kinds = [
        c for c in vars(records).values() if isinstance(c, type) and issubclass(c, Record) and c is not Record
    ]
    for kind in kinds:
        signed = "signature" in kind.model_fields
        assert ("dated_by_signer" in vars(kind)) == signed, kind.__name__


def test_a_record_whose_dump_code_could_write_anything_is_walked_whole():
    """A serializer on a typed field, or a computed field, can put a float or NaN into a record's
    dump: such a field, or such a record, is walked, so its bytes stay RFC 8785's or are refused."""
    from typing import Annotated, Literal

    from pydantic import PlainSerializer, computed_field

    class Served(Record):
        kind: Literal["Served"] = "Served"
        amount: Annotated[int, PlainSerializer(lambda v: v / 1.0)]

    class Computed(Record):
        kind: Literal["Computed"] = "Computed"
        amount: int

        @computed_field  # type: ignore[prop-decorator]
        @property
        def ratio(self) -> float:
            return float("nan") if self.amount < 0 else self.amount / 1.0

    assert Served.free_form == {"amount"}
    assert Computed.free_form is None
    big = Served(id="s-1", at=rfc3339(0), amount=10**16)
    assert entry_bytes(big) == rfc8785.dumps(big.model_dump(mode="json"))
    assert b'"amount":10000000000000000' in entry_bytes(big)
    with pytest.raises(RecordInvalid, match="no canonical JSON form"):
        entry_bytes(Computed(id="c-1", at=rfc3339(0), amount=-1))


def test_times_before_the_epoch_are_formatted_whole():
    """The per-second cache of rfc3339 has no second that a real time could collide with."""
    import subprocess
    import sys

    code = "from answerable.clock import rfc3339; print(rfc3339(-1), rfc3339(-1_000_000_000))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.000000Z"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_nan_or_infinity_in_a_payload_is_refused_not_written_as_null(tmp_path, bad: float) -> None:
    """pydantic dumps NaN as null by default; a record holding one must be refused by name, or
    the ledger would hold other bytes than the value it was given. Nothing is appended."""
    from answerable.ledger import SQLiteLedger

    record = event(payload={"readings": [1, bad]})
    with pytest.raises(RecordInvalid, match=r"payload\.readings\.1: .* not a JSON number"):
        entry_bytes(record)
    ledger = SQLiteLedger.open(tmp_path / "l.db", create=True, origin="test.example/nan")
    try:
        with pytest.raises(RecordInvalid, match="not a JSON number"):
            ledger.append_sync([record])
        assert ledger.size() == 0
    finally:
        ledger.close()


def _dumped(record: Record) -> bytes:
    """The reference: the record's dump, walked whole."""
    return canonical_bytes(record.model_dump(mode="json"))


def test_a_ledger_written_by_an_earlier_version_is_written_again_to_its_own_bytes() -> None:
    """Every entry of the format-1 ledger, decoded and written again, gives the bytes stored:
    from its fields where it may be (the records it was made of then), through its dump where a
    field is left out when false (a charter's people, an approval's ``simulated``)."""
    import sqlite3
    from pathlib import Path

    source = Path(__file__).with_name("data") / "ledger-v1" / "ledger.db"
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        rows = [(kind, bytes(data)) for kind, data in conn.execute("SELECT kind, data FROM entries")]
    finally:
        conn.close()
    from_fields = set()
    for kind, data in rows:
        record = decode_entry(data)
        assert entry_bytes(record) == data, kind
        if records._written_from_fields(record) is not None:
            from_fields.add(kind)
    assert from_fields == {"Intent", "Decision", "Execution", "Control", "Review", "RulesetVersion"}


async def test_every_entry_a_gateway_writes_is_the_bytes_its_dump_gives(
    gateway, ledger, people, world
) -> None:
    """Allowed, denied, reviewed and approved, halted and resumed: every entry the gateway and
    its controller append (claims, approvals, the charter) is exactly its record's dump,
    canonical; the kinds on the hot path are written from their fields."""
    from support import booking

    assert (await gateway.submit(gateway.intent("executor", "carrier.book", booking()))).ok
    closed = await gateway.submit(gateway.intent("executor", "carrier.book", booking(region="closed")))
    assert closed.status == "denied"
    medical = booking(shipment="S-2", cls="medical", disruption=True)
    pending = await gateway.submit(gateway.intent("executor", "carrier.book", medical))
    assert pending.review is not None
    approved = await gateway.answer(
        pending.review.id, key=people.reviewer, verdict="approve", reason="clinic"
    )
    assert approved.ok
    halt = await gateway.control.halt(by="pager", reason="storm")
    await gateway.control.resume(key=people.ri, reason="calm", scope=halt.scope)
    for made in (closed.intent, closed.decision, pending.review, approved.execution, approved.approval, halt):
        assert made is not None
        assert entry_bytes(made) == _dumped(made), made.kind
    from_fields = set()
    for stored in ledger.entries():
        record = decode_entry(stored.data)
        assert stored.data == _dumped(record), stored.kind
        if records._written_from_fields(record) is not None:
            from_fields.add(stored.kind)
    assert {"Intent", "Decision", "Claim", "Execution", "Control", "Review"} <= from_fields
    assert "Approval" not in from_fields  # ``simulated`` left out when false
    assert "SystemCharter" not in from_fields


def test_a_model_of_another_class_in_a_typed_field_is_written_as_its_dump_writes_it() -> None:
    """A subclass with a field of its own, where the record declares its base: the dump writes
    the base's fields (pydantic serializes by the declared class), and so do the entry's bytes."""
    import warnings

    class Annotated(records.Authority):
        note: str = "mine"

    authority = Annotated(responsible="ri@x.example", via="policy", ids=("p",), ruleset_hash="h")
    execution = Execution(
        id="x-1",
        at=rfc3339(0),
        intent_id="i-1",
        decision_id="d-1",
        operation="op",
        status="succeeded",
        authority=authority,
    )
    assert records._written_from_fields(execution) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic says it serializes the declared class
        assert entry_bytes(execution) == _dumped(execution)
    assert b"mine" not in entry_bytes(execution)


class _Spelled(enum.IntEnum):
    """An enum whose value is not its integer: its dump writes "one", the integer is 1."""

    def __new__(cls, number: int, spelled: str) -> _Spelled:
        member = int.__new__(cls, number)
        member._value_ = spelled
        return member

    ONE = (1, "one")


class _Hidden(list):  # type: ignore[type-arg]
    """A list that iterates otherwise than it stores: a walk and orjson would read it apart."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([1])


class _Keyed(dict):  # type: ignore[type-arg]
    def keys(self):  # type: ignore[no-untyped-def]
        return {"a": 1}.keys()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(["a"])

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        return 1


@pytest.mark.parametrize(
    "value", [_Spelled.ONE, _Hidden([1.0]), _Keyed(a=1.0)], ids=["enum", "list-subclass", "dict-subclass"]
)
def test_a_subclass_of_a_json_type_in_a_free_form_field_is_written_as_its_dump_writes_it(
    tmp_path, value
) -> None:
    """An enum is written as its value, a list or dict subclass as the dump reads it; the ledger
    stores, and a message is published with, the same bytes."""
    from answerable import SQLiteLedger
    from answerable.records import Message

    intent = Intent(
        id="i-1", at=rfc3339(0), agent="a", operation="op", arguments={"x": value}, idempotency_key="k"
    )
    message = Message(
        id="m-1", at=rfc3339(0), sender="s", topic="t", type="ty", payload={"x": value}, trace_id="t"
    )
    ledger = SQLiteLedger.open(tmp_path / "l.db", create=True)
    try:
        ledger.append_sync([intent, message])
        for record in (intent, message):
            expected = canonical_bytes(record.model_dump(mode="json"), walk=record.free_form)
            assert records._written_from_fields(record) is None
            assert entry_bytes(record) == expected
            assert ledger.find(record.id).data == expected
    finally:
        ledger.close()


def test_a_record_given_a_value_that_is_no_field_is_written_as_its_dump_writes_it() -> None:
    """``model_copy(update=...)`` does not validate: a key that is no field stays out of the bytes."""
    intent = Intent(id="i-1", at=rfc3339(0), agent="a", operation="op", arguments={}, idempotency_key="k")
    copied = intent.model_copy(update={"bogus": 1})
    assert records._written_from_fields(copied) is None
    assert entry_bytes(copied) == entry_bytes(intent) == _dumped(intent)


def _one_of_each() -> list[Record]:
    from answerable.records import Alert, Claim, Control, Escalation, Message, Review, ReviewClosed, Scope

    at = rfc3339(0)
    return [
        Escalation(id="e-1", at=at, review_id="r-1", to="ri@x.example", reason="unanswered é"),
        ReviewClosed(id="c-1", at=at, review_id="r-1", resolution="deny", reason="expired"),
        Alert(
            id="a-1",
            at=at,
            monitor="late-medical",
            invariant="medical within 4h",
            evidence=("x-1",),
            observed={"late_permille": 250, "region": "north"},
            paused="resource_class:medical",
            control_id=None,
            escalated_to="ri@x.example",
        ),
        Message(
            id="m-1",
            at=at,
            sender="planner",
            topic="plans",
            type="route",
            payload={"stops": [{"id": "S-1", "eta": 3}], "note": "ünïcode"},
            trace_id="t-1",
        ),
        Claim(id="k-1", at=at, intent_id="i-1", epoch=3, holder="gw", via="policy"),
        Control(id="h-1", at=at, action="halt", scope=Scope(kind="system"), by="pager", reason="storm"),
        Review(
            id="r-1",
            at=at,
            intent_id="i-1",
            decision_id="d-1",
            operation="carrier.book",
            reasons=("a medical booking",),
            policy_ids=("p",),
            binding="b" * 64,
            assignees=("rev@x.example",),
        ),
    ]


@pytest.mark.parametrize("record", _one_of_each(), ids=lambda r: r.kind)
def test_each_kind_written_from_its_fields_is_the_bytes_its_dump_gives(record: Record) -> None:
    assert records._written_from_fields(record) is not None
    assert entry_bytes(record) == _dumped(record) == rfc8785.dumps(record.model_dump(mode="json"))


def test_a_value_holding_itself_is_refused_in_bounded_time_and_memory():
    """A response that holds itself has no JSON form: the fast walk must give it up, not walk it
    for ever (a dict in itself) or hold a reference per member it met (a list in itself 100
    times: a bound on containers alone still took 800 MB before it gave up)."""
    import tracemalloc

    from answerable._canonical import simple_json_containers

    wide: list[object] = []
    wide.extend([wide] * 100)
    deep: dict[str, object] = {"booking": "B-1"}
    deep["parent"] = deep
    assert simple_json_containers(deep) is None
    tracemalloc.start()
    try:
        assert simple_json_containers(wide) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"
    with pytest.raises(RecordInvalid, match="nested deeper than 254"):
        canonical_bytes(wide)


def test_foreign_text_is_recorded_escaped_and_cut_to_its_limit():
    """A lone surrogate has no UTF-8, so no JSON: it is recorded as its escape. The cut comes
    after the escapes, which are six characters each, so what is kept stays within the limit."""
    from answerable._text import MOST_SAID, recordable

    assert recordable("refused \udcff") == "refused \\udcff"
    kept = recordable("\udcff" * MOST_SAID)
    assert kept.startswith("\\udcff" * 10)
    assert kept.endswith(f"… ({5 * MOST_SAID:,} more characters not recorded)")
    assert len(kept) < MOST_SAID + 60
    assert recordable("ok ✓") == "ok ✓"
