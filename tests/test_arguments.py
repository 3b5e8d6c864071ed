"""What is recorded is what runs: arguments and Cedar inputs reduced to canonical JSON, or refused."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, field_validator

from answerable import ArgumentsInvalid
from answerable._canonical import canonical_bytes, is_simple_json
from answerable.errors import RequestBuildFailed
from answerable.operations import (
    MAX_DEPTH,
    Operation,
    Resource,
    args_model,
    canonical_arguments,
    cedar_inputs,
    cedar_inputs_simple,
)


def book(shipment: str, weight_kg: float = 1.0, stops: tuple[str, ...] = (), extra: Any = None) -> None:
    """The test operation: a typed schema plus one untyped field."""


def operation(
    call: Any = book,
    *,
    args: type[BaseModel] | None = None,
    resource: Any = None,
    context: Any = None,
) -> Operation:
    return Operation(
        name="carrier.book",
        resource_class="shipment",
        args=args or args_model("carrier.book", call),
        call=call,
        resource=resource or (lambda a: Resource("Shipment", a.shipment, {"class": "retail"})),
        context=context or (lambda _a: {"disruption": False}),
    )


def refused(arguments: Mapping[str, Any], op: Operation | None = None) -> ArgumentsInvalid:
    with pytest.raises(ArgumentsInvalid) as caught:
        canonical_arguments(op or operation(), arguments)
    assert caught.value.operation == "carrier.book"
    return caught.value


# --- what is recorded is what runs --------------------------------------------------------------


def test_recorded_arguments_are_the_canonical_json_of_what_runs():
    """The recorded dict and the model the operation gets encode to the same canonical bytes."""
    recorded, args = canonical_arguments(operation(), {"shipment": "S-1", "weight_kg": 2, "stops": ["a"]})
    assert recorded == {"shipment": "S-1", "weight_kg": 2, "stops": ["a"], "extra": None}
    assert canonical_bytes(recorded) == canonical_bytes(args.model_dump(mode="json"))
    assert args.weight_kg == 2.0  # type: ignore[attr-defined]
    assert args.stops == ("a",)  # type: ignore[attr-defined]


def test_the_operation_receives_values_validated_from_the_recorded_json():
    """A value whose Python form differs from its JSON form runs as the JSON says (tuple -> list)."""
    recorded, args = canonical_arguments(operation(), {"shipment": "S-1", "extra": ("x", 1.50)})
    assert recorded["extra"] == ["x", 1.5]
    assert args.extra == ["x", 1.5]  # type: ignore[attr-defined]


def test_typed_values_round_trip_through_their_json_form():
    """A datetime is recorded as its RFC 3339 text and the operation still receives a datetime."""

    class Timed(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        shipment: str
        when: dt.datetime

    moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    recorded, args = canonical_arguments(operation(args=Timed), {"shipment": "S-1", "when": moment})
    assert recorded["when"] == "2026-01-02T03:04:05Z"
    assert args.when == moment  # type: ignore[attr-defined]


def test_recorded_bytes_are_canonical():
    """The recorded dict re-encodes to exactly the bytes that were validated."""
    recorded, _ = canonical_arguments(operation(), {"shipment": "é", "extra": {"b": 1, "a": [1e21, 0.1]}})
    assert orjson.loads(canonical_bytes(recorded)) == recorded
    assert canonical_bytes(recorded) == canonical_bytes(orjson.loads(canonical_bytes(recorded)))


def test_schema_mismatches_still_name_the_field():
    """A value the schema refuses is ArgumentsInvalid naming the field, as before."""
    error = refused({"shipment": "S-1", "weight_kg": "heavy"})
    assert any(p.startswith("weight_kg:") for p in error.problems)


def test_a_schema_that_changes_values_on_each_pass_is_refused():
    """If validating the recorded JSON again gives other values, what ran would not be what was recorded."""

    class Drifting(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        shipment: str

        @field_validator("shipment")
        @classmethod
        def stamp(cls, value: str) -> str:
            return value + "!"

    error = refused({"shipment": "S-1"}, operation(args=Drifting))
    assert "idempotent" in str(error)


def test_a_schema_that_makes_of_its_own_json_what_json_cannot_hold_is_arguments_invalid():
    """Validated again from the recorded bytes, a validator that doubles an integer each pass makes
    one past the I-JSON range: refused as the arguments' fault, naming the pass, not a raw
    RecordInvalid from inside the check (as it was)."""

    class Doubling(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        shipment: str
        n: int

        @field_validator("n")
        @classmethod
        def double(cls, value: int) -> int:
            return value * 2

    error = refused({"shipment": "S-1", "n": 2**51}, operation(args=Doubling))
    assert error.problems == (
        "(root): validated again from its JSON form, value has no canonical JSON form: n: integer "
        f"{2**53} is outside the I-JSON range ±(2**53-1); send it as a string",
    )


# --- refused rather than changed ----------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused_naming_the_field(value: float):
    """NaN and infinities have no JSON form; JSON writers would record them as null."""
    error = refused({"shipment": "S-1", "weight_kg": value})
    assert error.problems == (f"weight_kg: {value!r} is not a JSON number; JSON has no NaN or Infinity",)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-inf"])
def test_non_finite_floats_pydantic_parses_from_text_are_refused(text: str):
    """pydantic turns the text "NaN" into a float NaN; it is refused all the same."""
    error = refused({"shipment": "S-1", "weight_kg": text})
    assert error.problems[0].startswith("weight_kg: ")
    assert "not a JSON number" in error.problems[0]


def test_non_finite_floats_deep_in_an_untyped_field_are_refused_with_their_path():
    """The path names the exact place: extra.k.1."""
    error = refused({"shipment": "S-1", "extra": {"k": [1, math.nan]}})
    assert error.problems[0].startswith("extra.k.1: nan")


def test_lone_surrogates_are_refused_in_strings_and_in_keys():
    """A lone surrogate has no UTF-8 form, so no canonical JSON form."""
    assert refused({"shipment": "S-\ud800"}).problems[0].startswith("shipment: string holds a lone surrogate")
    error = refused({"shipment": "S-1", "extra": {"a\udfff": 1}})
    assert error.problems[0].startswith("extra: key 'a\\udfff' holds a lone surrogate")


@pytest.mark.parametrize("number", [2**53, -(2**53), 2**64])
def test_integers_outside_the_i_json_range_are_refused(number: int):
    """Integers past ±(2**53-1) are not read back exactly by every JSON reader."""
    error = refused({"shipment": "S-1", "extra": {"n": number}})
    assert error.problems[0].startswith(f"extra.n: integer {number} is outside the I-JSON range")


@pytest.mark.parametrize("number", [2.0**53, -(2.0**53), 1e20, -1e20, 2.0**60, 9.999999999999999e20])
def test_floats_canonical_json_writes_as_integers_outside_the_i_json_range_are_refused(number: float):
    """Below 1e21, canonical JSON writes a number with no fraction in whole digits: such a float
    past ±(2**53-1) reads back as an integer outside the I-JSON range, which the ledger refuses to
    write. It was taken, then refused as a RecordInvalid after Cedar had decided it (2**60), or
    recorded as bytes that read back as an integer no record may hold (1e20)."""
    for field in ("weight_kg", "extra"):  # a typed float and an untyped value
        error = refused({"shipment": "S-1", field: number})
        assert error.problems == (
            f"{field}: {number!r} is written in canonical JSON as an integer outside the I-JSON range "
            "±(2**53-1), and read back as one; send it as a string",
        )


@pytest.mark.parametrize("number", [2.0**53 - 1, 1e21, -1e21, 1.5e300, 123.25])
def test_floats_canonical_json_reads_back_as_themselves_pass(number: float):
    """At ±(2**53-1), from 1e21 on (written with an exponent) and with a fraction, a float's
    canonical JSON reads back as the same number."""
    recorded, args = canonical_arguments(operation(), {"shipment": "S-1", "weight_kg": number})
    assert float(recorded["weight_kg"]) == number
    assert args.weight_kg == number  # type: ignore[attr-defined]


@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["weight_kg", "extra"]))
def test_a_float_argument_is_refused_or_recorded_as_json_that_reads_back_as_what_writes_it_again(
    number: float, field: str
):
    """The recorded arguments, their canonical JSON read back by a reader that keeps integers
    whole (as the ledger's decoder does), write the same bytes again; or the float is refused,
    naming its field, as one whose canonical JSON is an integer past the I-JSON range."""
    import json

    refusal: ArgumentsInvalid | None = None
    try:
        recorded, _ = canonical_arguments(operation(), {"shipment": "S-1", field: number})
    except ArgumentsInvalid as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.problems == (
            f"{field}: {number!r} is written in canonical JSON as an integer outside the I-JSON range "
            "±(2**53-1), and read back as one; send it as a string",
        )
        assert 2**53 - 1 < abs(number) < 1e21
        return
    data = canonical_bytes(recorded)
    assert canonical_bytes(json.loads(data)) == data


def test_a_float_only_written_or_hashed_is_written_as_before():
    """A value that is not read back as what runs (an event's payload, a response's digest) keeps
    the bytes earlier versions wrote and digested: receipts and digests made before still match."""
    assert canonical_bytes({"got": 1e20}) == b'{"got":100000000000000000000}'


def test_an_integer_python_will_not_write_is_named_by_its_size():
    """Python writes no integer of more than 4,300 digits: quoting one in the refusal raised a
    raw ValueError from inside the check that was refusing it."""
    error = refused({"shipment": "S-1", "extra": {"n": 10**5000}})
    assert (
        error.problems[0]
        == "extra.n: integer of 16,610 bits is outside the I-JSON range ±(2**53-1); send it as a string"
    )


def test_integers_at_the_edge_of_the_i_json_range_pass():
    """±(2**53-1) is still exact everywhere."""
    recorded, _ = canonical_arguments(operation(), {"shipment": "S-1", "extra": [2**53 - 1, -(2**53 - 1)]})
    assert recorded["extra"] == [2**53 - 1, -(2**53 - 1)]


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def test_nesting_up_to_the_limit_passes_and_one_more_is_refused():
    """The arguments object counts as one level; MAX_DEPTH levels in all are allowed."""
    recorded, _ = canonical_arguments(operation(), {"shipment": "S-1", "extra": nested(MAX_DEPTH - 1)})
    assert recorded["extra"] == nested(MAX_DEPTH - 1)
    error = refused({"shipment": "S-1", "extra": nested(MAX_DEPTH)})
    assert f"nested deeper than {MAX_DEPTH}" in error.problems[0]


def test_very_deep_arguments_are_refused_without_exhausting_the_stack():
    """Ten thousand levels are refused as cheaply as thirty-three."""
    error = refused({"shipment": "S-1", "extra": nested(10_000)})
    assert f"nested deeper than {MAX_DEPTH}" in error.problems[0]


def test_values_with_no_json_form_are_refused():
    """An untyped field holding an arbitrary object cannot be recorded, so it cannot run."""
    error = refused({"shipment": "S-1", "extra": object()})
    assert "no JSON form" in error.problems[0]


# --- Cedar inputs ---------------------------------------------------------------------------------


def validated(op: Operation) -> BaseModel:
    return canonical_arguments(op, {"shipment": "S-1"})[1]


def test_cedar_inputs_are_plain_json_decoded_from_their_canonical_form():
    """Attributes and context come back as plain JSON: tuples as lists, keys sorted."""
    op = operation(
        resource=lambda a: Resource("Shipment", a.shipment, {"region": "north", "tags": ("a", "b")}),
        context=lambda _a: {"disruption": True, "delay": 30},
    )
    resource, context = cedar_inputs(op, validated(op))
    assert resource == Resource("Shipment", "S-1", {"region": "north", "tags": ["a", "b"]})
    assert context == {"delay": 30, "disruption": True}
    assert type(context) is dict


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


@pytest.mark.property
@given(
    st.dictionaries(st.text(max_size=4), _json, max_size=3),
    st.dictionaries(st.text(max_size=4), _json, max_size=3),
)
def test_cedar_inputs_are_called_simple_only_when_both_are_simple_json(attrs: Any, context: Any):
    """The gateway writes a Decision's bytes without walking its Cedar inputs again when this
    says they are simple: it must never say so of a float, a key that is not ASCII or an
    unsafe integer, whose orjson bytes are not RFC 8785's."""
    op = operation(resource=lambda a: Resource("Shipment", a.shipment, attrs), context=lambda _a: context)
    try:
        resource, built, simple = cedar_inputs_simple(op, validated(op))
    except RequestBuildFailed:
        return  # refused (an unsafe integer): nothing is recorded of it
    assert (resource, built) == cedar_inputs(op, validated(op))
    assert simple == (is_simple_json(attrs) and is_simple_json(context))
    if simple:
        assert is_simple_json(resource.attrs)
        assert is_simple_json(built)


def broken_builder(_a: Any) -> Any:
    raise KeyError("region")


@pytest.mark.parametrize("which", ["resource", "context"])
def test_a_builder_that_raises_is_request_build_failed(which: str):
    """The builder's error is named, with the operation, never raised as a bare KeyError."""
    op = operation(**{which: broken_builder})
    with pytest.raises(RequestBuildFailed, match=f"the {which} builder raised KeyError: 'region'") as caught:
        cedar_inputs(op, validated(op))
    assert caught.value.operation == "carrier.book"
    assert "carrier.book" in str(caught.value)


@pytest.mark.parametrize(
    ("context", "complaint"),
    [
        ({"delay": math.nan}, "delay: nan is not a JSON number"),
        ({"delay": math.inf}, "delay: inf is not a JSON number"),
        ({1: True}, "key 1 is not a string"),
        ({"since": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}, "since: a datetime is not a JSON value"),
        ({"regions": {"north"}}, "regions: a set is not a JSON value"),
        ({"who": object()}, "who: an object is not a JSON value"),
        ({"big": 2**60}, "big: integer 1152921504606846976 is outside the I-JSON range"),
        ({"big": 1e20}, "big: 1e+20 is written in canonical JSON as an integer outside the I-JSON range"),
        ({"text": "\ud800"}, "text: string holds a lone surrogate"),
        (["not", "a", "mapping"], "the context are a list, not a mapping"),
    ],
)
def test_a_context_that_is_not_json_is_request_build_failed(context: Any, complaint: str):
    """Whatever the context builder returns must be recordable exactly as Cedar sees it."""
    op = operation(context=lambda _a: context)
    with pytest.raises(RequestBuildFailed) as caught:
        cedar_inputs(op, validated(op))
    assert complaint in caught.value.reason


def test_a_list_that_hides_such_a_float_from_its_own_iteration_is_request_build_failed():
    """A subclass of list iterating otherwise than it stores: orjson writes what it stores (1e20),
    so the decoded copy Cedar judges and the Decision records is checked, not the walk's view of
    it (found in review: it reached the ledger)."""

    class Hiding(list[Any]):
        def __iter__(self) -> Any:
            return iter([1])

    op = operation(context=lambda _a: {"w": Hiding([1e20])})
    with pytest.raises(RequestBuildFailed, match=r"w\.0: 1e\+20 is written in canonical JSON"):
        cedar_inputs(op, validated(op))


def test_arguments_recorded_already_are_taken_as_they_were_decided():
    """Recovered or reviewed, an intent's recorded arguments are not judged again by the read-back
    rule: a float field recorded as 1e20 (read back as the integer 10**20) runs as 1e20."""
    arguments = {"shipment": "S-1", "weight_kg": 10**20}
    refused(arguments)
    recorded, args = canonical_arguments(operation(), arguments, read_back=False)
    assert args.weight_kg == 1e20  # type: ignore[attr-defined]
    assert recorded["weight_kg"] == 1e20


def test_resource_attributes_that_are_not_json_are_request_build_failed():
    """Resource attributes are checked like the context."""
    op = operation(resource=lambda a: Resource("Shipment", a.shipment, {"weight": math.nan}))
    with pytest.raises(RequestBuildFailed, match="resource attributes are not JSON: weight: nan"):
        cedar_inputs(op, validated(op))


@pytest.mark.parametrize(
    ("built", "complaint"),
    [
        ({"type": "Shipment", "id": "S-1"}, "returned a dict, not a Resource"),
        (None, "returned a NoneType, not a Resource"),
        (Resource("Shipment", 7, {}), "type and id must be strings"),  # type: ignore[arg-type]
    ],
)
def test_a_resource_builder_that_returns_something_else_is_request_build_failed(built: Any, complaint: str):
    """Only a Resource with string type and id can become a Cedar entity."""
    op = operation(resource=lambda _a: built)
    with pytest.raises(RequestBuildFailed, match=complaint):
        cedar_inputs(op, validated(op))
