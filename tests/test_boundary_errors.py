"""Errors at the boundary: bad input gets a typed AnswerableError saying what to do, never a raw one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

import pytest
from support import People

from answerable import (
    ConfigError,
    Controller,
    ExternalEvent,
    FakeClock,
    Gateway,
    IdSource,
    KeyPair,
    PolicyInvalid,
    RecordInvalid,
    SQLiteLedger,
    System,
)
from answerable._canonical import canonical_bytes
from answerable.charter import new_charter, new_ruleset, schema_for
from answerable.clock import rfc3339
from answerable.gateway import Outcome
from answerable.logistics.desk import DEFAULT_DESK, ModelledDesk
from answerable.monitors import Monitors, load_monitors
from answerable.operations import args_model
from answerable.policy import CedarRequest, decide, load_ruleset
from answerable.provenance import why
from answerable.records import Intent
from answerable.report import write

# --- canonical JSON ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Reading:
    value: float


def test_canonical_bytes_refuse_nan_hidden_where_orjson_would_write_null():
    """A NaN inside a value orjson serializes natively (a dataclass) is refused, not written as null."""
    with pytest.raises(RecordInvalid, match="no canonical JSON form"):
        canonical_bytes({"reading": Reading(math.nan)})


def test_canonical_bytes_refuse_values_that_are_not_json():
    """A datetime is not JSON: hashing orjson's own rendering of it would not be RFC 8785."""
    with pytest.raises(RecordInvalid, match="at: a datetime is not a JSON value"):
        canonical_bytes({"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})


def test_canonical_bytes_refuse_keys_that_are_not_strings():
    """A non-string key is RecordInvalid naming it, not an AttributeError."""
    with pytest.raises(RecordInvalid, match="key 1 is not a string"):
        canonical_bytes({"a": {1: "x"}})


def test_canonical_bytes_refuse_a_lone_surrogate_in_a_non_ascii_key():
    """The exact path names the key instead of leaking a UnicodeEncodeError."""
    with pytest.raises(RecordInvalid, match="holds a lone surrogate"):
        canonical_bytes({"é\ud800": 1})


def test_canonical_bytes_refuse_deep_nesting_on_the_exact_path_too():
    """Past orjson's nesting limit a value with a float is refused, not a RecursionError."""
    value: Any = 1.5
    for _ in range(2_000):
        value = [value]
    with pytest.raises(RecordInvalid, match="nested deeper than 254"):
        canonical_bytes(value)


# --- policy -------------------------------------------------------------------------------------------

SCHEMA = """
entity Agent;
entity Resource { class: String };
action "op" appliesTo { principal: [Agent], resource: [Resource], context: { since: String, n: Long } };
"""


def request(**overrides: Any) -> CedarRequest:
    fields: dict[str, Any] = {
        "principal": ("Agent", "a"),
        "action": "op",
        "resource": ("Resource", "r"),
        "context": {"since": "2026-01-01", "n": 1},
        "entities": ({"uid": {"type": "Resource", "id": "r"}, "attrs": {"class": "x"}, "parents": []},),
    }
    return CedarRequest(**{**fields, **overrides})


@pytest.fixture(scope="module")
def permissive() -> Any:
    return load_ruleset("permit(principal, action, resource);", SCHEMA)


@pytest.mark.parametrize(
    ("context", "complaint"),
    [
        ({"since": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "n": 1}, "context.since: a datetime"),
        ({"since": "x", "n": 2**60}, "context.n: integer 1152921504606846976 is outside the I-JSON"),
        ({"since": "x", "n": math.nan}, "context.n: nan is not a JSON number"),
    ],
)
def test_decide_denies_a_request_that_cannot_be_recorded(permissive, context, complaint):
    """orjson would hand Cedar a string for the datetime, a Long for 2**60 and null for NaN; Cedar
    would allow the first two, and none could be recorded. Each is a deny naming the field."""
    assert decide(request(), permissive).effect == "allow", "the request itself is fine"
    verdict = decide(request(context=context), permissive)
    assert verdict.effect == "deny"
    assert complaint in verdict.errors[0]


@pytest.mark.parametrize("overrides", [{"principal": ("Agent", 5)}, {"principal": ("Agent",)}, {"action": 5}])
def test_decide_denies_malformed_requests_instead_of_raising(permissive, overrides):
    """A request Cedar cannot take is a recorded deny with a reason, never a TypeError or IndexError."""
    verdict = decide(request(**overrides), permissive)
    assert verdict.effect == "deny"
    assert verdict.errors[0].startswith("the Cedar request is malformed")


def test_a_recorded_request_missing_a_part_is_record_invalid():
    """Rebuilding a request from a damaged Decision names what is missing, not a KeyError."""
    with pytest.raises(RecordInvalid, match="'principal'"):
        CedarRequest.from_record({"action": {"id": "op"}}, [])


def test_load_ruleset_refuses_policies_that_are_not_text():
    """load_ruleset's errors are PolicyInvalid, even for a wrong type."""
    with pytest.raises(PolicyInvalid, match="must be text"):
        load_ruleset(None, SCHEMA)  # type: ignore[arg-type]


# --- charter, control, keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"agents": "billing-bot"}, "give a list of names, not one string"),
        ({"agents": ["a", "a"]}, "'a' is named twice"),
        ({"agents": ["a"], "agent_keys": {"b": "AAAA"}}, "agent_keys names 'b'"),
        ({"agents": ["a"], "agent_keys": {"a": "notakey"}}, "not a base64 Ed25519 public key"),
        ({"agents": ["reviewer@logistics.example"]}, "both an agent and a person"),
        ({"agents": ["a"], "reviewers": ["bob@example.org"]}, "give each as a KeyPair"),
        ({"agents": ["a"], "simulated": "reviewer@logistics.example"}, "not one string"),
    ],
    ids=[
        "one-string",
        "twice",
        "key-of-no-agent",
        "bad-key",
        "agent-and-person",
        "name-not-key",
        "simulated",
    ],
)
def test_new_charter_refuses_what_amend_charter_refuses(people: People, given: dict[str, Any], said: str):
    """A string for agents became one agent per character; a key for a misspelt agent was
    dropped (the agent left keyless) and a key that is no key was signed; an agent named like a
    person, or twice, was accepted where amend_charter refuses it; a reviewer given by name
    failed as an AttributeError."""
    reviewers = given.pop("reviewers", [people.reviewer])
    with pytest.raises(ConfigError, match=said):
        new_charter("logistics", people.ri, reviewers=reviewers, **given)


def test_new_charter_with_a_bad_agent_name_is_config_error(people: People):
    """A name with whitespace is named as a config problem, not a pydantic ValidationError."""
    with pytest.raises(ConfigError, match=r"agents\.0\.name"):
        new_charter("logistics", people.ri, agents=["two words"])


def test_a_charter_or_ruleset_signed_by_no_key_pair_is_config_error(people: People):
    """``ri=None`` (a key file not loaded, say) failed as an AttributeError ('NoneType' object
    has no attribute 'identity'), and ``agents=None`` as a TypeError; new_ruleset with no key
    was said to be policies that do not validate."""
    with pytest.raises(ConfigError, match="KeyPair"):
        new_charter("logistics", None, agents=["executor"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="list of names, not NoneType"):
        new_charter("logistics", people.ri, agents=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="KeyPair"):
        new_ruleset("permit(principal, action, resource);", schema_for(["op"]), "ri@example.com")  # type: ignore[arg-type]


def test_new_ruleset_with_version_zero_is_config_error(people: People):
    """Versions start at 1."""
    with pytest.raises(ConfigError, match="version"):
        new_ruleset("permit(principal, action, resource);", schema_for(["op"]), people.ri, version=0)


async def test_a_halt_without_a_reason_is_record_invalid(ledger: SQLiteLedger):
    """Every stop records why; an empty reason is RecordInvalid naming the field."""
    with pytest.raises(RecordInvalid, match="reason"):
        await Controller(ledger).halt(by="driver-42", reason="")


def test_a_key_seed_of_the_wrong_length_is_config_error():
    """Ed25519 seeds are 32 bytes."""
    with pytest.raises(ConfigError, match="32 raw bytes"):
        KeyPair.from_seed("ri@example", b"short")


def test_loading_a_directory_as_a_key_file_is_config_error(tmp_path: Path):
    """Any unreadable key file is ConfigError, not IsADirectoryError."""
    with pytest.raises(ConfigError, match="cannot read key file"):
        KeyPair.load(tmp_path)


def test_saving_a_key_where_it_cannot_be_written_is_config_error(tmp_path: Path):
    """A missing directory is ConfigError, not FileNotFoundError."""
    with pytest.raises(ConfigError, match="cannot write key file"):
        KeyPair.generate("ri@example").save(tmp_path / "no" / "such" / "dir" / "ri.key")


@pytest.mark.parametrize("identity", ["Alice Smith", "a\nb", "", "a\ud800", None, "x" * 201])
def test_a_key_for_a_name_its_file_cannot_hold_is_refused_before_it_is_saved(
    tmp_path: Path, identity: Any
) -> None:
    """A key file is its identity and the key, split by whitespace: a key made for "Alice Smith"
    was saved, then refused by load as no key file; one with a lone surrogate left an empty file
    behind and raised UnicodeEncodeError; None failed later as a TypeError."""
    with pytest.raises(ConfigError, match="key identity"):
        KeyPair.generate(identity).save(tmp_path / "k.key")
    assert list(tmp_path.iterdir()) == []
    made = KeyPair.generate("alice@example.org")
    made.save(tmp_path / "k.key")
    assert KeyPair.load(tmp_path / "k.key").identity == "alice@example.org"
    # A name the charter takes is a name a key takes: a soft hyphen or a joiner is no control.
    assert KeyPair.generate("caf\u00e9\u00ad@example.org").identity == "caf\u00e9\u00ad@example.org"
    # A file holding a name no key may have says which file it is.
    seed = (tmp_path / "k.key").read_text().split()[1]
    (tmp_path / "bad.key").write_text(f"a\x1bb\n{seed}\n")
    with pytest.raises(ConfigError, match=r"key file .*bad\.key: key identity 'a.x1bb' holds"):
        KeyPair.load(tmp_path / "bad.key")


# --- operations -----------------------------------------------------------------------------------------


class Opaque:
    """A type pydantic cannot build a schema for."""


def test_an_operation_whose_parameters_pydantic_cannot_check_is_config_error():
    """Registering such a callable says how to fix it instead of raising pydantic's own error."""

    def call(thing: Opaque) -> None: ...

    with pytest.raises(ConfigError, match="pass args=<a pydantic model>"):
        args_model("odd", call)


# --- monitors -------------------------------------------------------------------------------------------

COUNT = {
    "monitors": [
        {
            "name": "storms",
            "shape": "count",
            "invariant": "at most one storm alert a minute",
            "source": {"kind": "ExternalEvent"},
            "max": 1,
            "window_seconds": 60,
        }
    ]
}


def watch(config: dict[str, Any]) -> Monitors:
    return Monitors(load_monitors(config, known_scopes=()), None, clock=FakeClock(), ids=IdSource())  # type: ignore[arg-type]


def event(at: str) -> dict[str, Any]:
    return ExternalEvent(
        id=IdSource().new(), at=at, source="weather", type="storm.alert", payload={}
    ).model_dump(mode="json")


def test_a_count_monitor_reads_times_without_a_fraction():
    """Record times may omit the fraction (or carry nine digits); both count, neither raises."""
    monitors = watch(COUNT)
    assert monitors.observe(event("2026-01-01T00:00:00Z")) == []
    [breach] = monitors.observe(event("2026-01-01T00:00:01.123456789Z"))
    assert breach.observed == {"count": 2, "max": 1}


def test_observing_a_control_that_does_not_validate_changes_nothing():
    """A malformed Control entry is skipped by the monitors, not a pydantic ValidationError."""
    assert watch(COUNT).observe({"kind": "Control", "id": "c-1", "action": "resume"}) == []


def test_a_budget_does_not_count_booleans_as_amounts():
    """True is not one unit of money."""
    config = {
        "monitors": [
            {
                "name": "spend",
                "shape": "budget",
                "invariant": "spend at most 0",
                "source": {"kind": "ExternalEvent"},
                "amount": "payload.cents",
                "limit": 0,
            }
        ]
    }
    entry = event("2026-01-01T00:00:00Z") | {"payload": {"cents": True}}
    assert watch(config).observe(entry) == []


def test_a_monitor_configuration_nested_absurdly_deep_is_config_error():
    """Even JSON too deep for the parser is a ConfigError."""
    with pytest.raises(ConfigError):
        load_monitors("[" * 100_000, known_scopes=())


# --- provenance, report, runtime, logistics ---------------------------------------------------------


async def test_why_with_max_nodes_below_one_is_config_error(ledger: SQLiteLedger):
    """A useless limit is a ConfigError saying what is allowed."""
    [stored] = await ledger.append([ExternalEvent.model_validate(event("2026-01-01T00:00:00Z"))])
    with pytest.raises(ConfigError, match="at least 1"):
        why(ledger, ledger.entry(stored).id, max_nodes=0)


async def test_why_names_the_ri_of_the_charter_chain_not_a_usurper(
    ledger: SQLiteLedger, people: People, clock: FakeClock
):
    """A SystemCharter entry that does not chain names nobody, in provenance as in control."""
    ids = IdSource(clock)
    await ledger.append([new_charter("logistics", people.ri, agents=["executor"], clock=clock, ids=ids)])
    await ledger.append(
        [new_charter("logistics", people.stranger, agents=["executor"], clock=clock, ids=ids)]
    )
    outside = ExternalEvent(
        id=ids.new(), at=rfc3339(clock.now_ns()), source="weather", type="storm", payload={}
    )
    await ledger.append([outside])
    assert why(ledger, outside.id).accountable.ri == people.ri.identity


def test_writing_a_report_where_it_cannot_be_written_is_config_error(
    ledger: SQLiteLedger, ledger_path: Path, tmp_path: Path
):
    """An output path that is a directory is ConfigError, not IsADirectoryError."""
    pytest.importorskip("matplotlib")
    ledger.close()
    with pytest.raises(ConfigError, match="cannot write the report"):
        write(ledger_path, tmp_path)


class NoActuator:
    def intent(self, *args: Any, **kwargs: Any) -> Intent:
        raise AssertionError("not used")

    async def submit(self, intent: Intent) -> Outcome:
        raise AssertionError("not used")


async def test_ingesting_an_event_that_does_not_validate_is_record_invalid(ledger: SQLiteLedger):
    """An outside event with a bad source is RecordInvalid naming the field; nothing is recorded."""
    system = System(ledger, NoActuator(), agents=["router"])
    with pytest.raises(RecordInvalid, match="source"):
        await system.ingest([("weather", "two words", "storm", {})])
    assert ledger.size() == 0


@pytest.mark.parametrize(
    ("event", "said"),
    [
        (("weather", "station-7", "storm", {"cells": {1, 2}}), "a set is not a JSON value"),
        (("weather", "station-7", "storm", {"raw": b"ab"}), "a bytes is not a JSON value"),
        (("weather", "station-7", "storm"), "give (topic, source, type, payload)"),
    ],
    ids=["set", "bytes", "three-parts"],
)
async def test_an_event_whose_payload_is_no_json_is_refused_not_delivered_as_given(
    ledger: SQLiteLedger, event: tuple[Any, ...], said: str
):
    """A set was recorded as a list and bytes as text, while the bus carried the set and the
    bytes themselves: what was delivered was not what was recorded. Three parts for four was a
    ValueError from the unpacking."""
    system = System(ledger, NoActuator(), agents=["router"])
    with pytest.raises(RecordInvalid, match=re.escape(said)):
        await system.ingest([event])  # type: ignore[list-item]
    assert ledger.size() == 0


async def test_sending_a_payload_that_is_not_a_mapping_is_record_invalid(ledger: SQLiteLedger):
    """A message payload must be a mapping; anything else is RecordInvalid, not a TypeError."""
    system = System(ledger, NoActuator(), agents=["router"])
    with pytest.raises(RecordInvalid, match="message from router"):
        await system.send("router", "plans", "plan", 5, (), (), "t-1")  # type: ignore[arg-type]


async def test_the_storm_desk_handed_a_non_review_is_config_error():
    """The modelled desk says it was wired to the wrong hook instead of failing an assert."""
    intent = Intent(
        id="i-1",
        at="2026-01-01T00:00:00Z",
        agent="executor",
        operation="noop",
        arguments={},
        idempotency_key="k",
    )
    desk = ModelledDesk(gateway=None, clock=None, config=DEFAULT_DESK, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="answers reviews only"):
        await desk(Outcome("denied", intent, None))


async def test_the_gateway_refuses_the_wrong_kind_of_value_and_records_nothing(
    gateway: Gateway, ledger: SQLiteLedger, people: People
) -> None:
    """Arguments of None, a list or a string (dict() took a list of pairs, or failed oddly), a
    dict where an Intent belongs, None where a charter belongs, an approval valid past the year
    9999: each was a TypeError, ValueError, AttributeError or OverflowError from inside."""
    from support import booking

    from answerable import ApprovalRefused

    before = ledger.size()
    for arguments in (None, [("shipment", "S-1")], "S-1"):
        with pytest.raises(RecordInvalid, match="a JSON object"):
            gateway.intent("executor", "carrier.book", arguments)  # type: ignore[arg-type]
    with pytest.raises(RecordInvalid, match="submit takes an Intent"):
        await gateway.submit({"agent": "executor"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="install takes a signed SystemCharter"):
        await gateway.install(None, None)  # type: ignore[arg-type]
    assert ledger.size() == before
    medical = booking(cls="medical", disruption=True)  # the test rules send it to a person
    review = (await gateway.submit(gateway.intent("executor", "carrier.book", medical))).review
    assert review is not None
    with pytest.raises(ApprovalRefused, match="one whole second to"):
        await gateway.answer(
            review.id, key=people.reviewer, verdict="approve", reason="ok", valid_for_seconds=10**20
        )


@pytest.mark.parametrize(
    ("operations", "said"),
    [
        ("billing.invoice", "give the operations' names (a list)"),
        (None, "not a NoneType"),
        ([1], "operation 1"),
        ({"billing.invoice": {1: "Long"}}, "is not a Cedar type name"),
        ({"billing.invoice": {"cents": "Strng"}}, "failed to resolve type: Strng"),
    ],
    ids=["one-string", "none", "not-a-name", "argument-not-a-name", "unknown-type"],
)
def test_schema_for_refuses_what_makes_no_schema(operations: Any, said: str) -> None:
    """One string made an action per letter; an unknown type ("Strng") passed, to fail only when
    a ruleset was signed with it; None, a number as a name or an argument failed as TypeError or
    AttributeError. The docstring promised ConfigError for each."""
    with pytest.raises(ConfigError, match=re.escape(said)):
        schema_for(operations)
    assert 'action "billing.invoice"' in schema_for({"billing.invoice": {"cents": "Long"}})


@pytest.mark.parametrize("ttl", [float("nan"), float("inf"), "5", 0, -1, True])
def test_a_lease_ttl_that_is_no_positive_number_is_refused(ledger: SQLiteLedger, ttl: Any) -> None:
    """NaN passed the ``ttl <= 0`` check (a lease no standby could ever judge lost), "5" failed
    as a TypeError."""
    with pytest.raises(ConfigError, match="a lease ttl must be a positive number"):
        Gateway(ledger, lease_ttl=ttl)


async def test_waiting_for_an_outcome_without_a_pause_is_refused(gateway: Gateway) -> None:
    """``every=0`` or less polled the ledger in a tight loop, holding a core; a string was a
    TypeError after the first round."""
    intent = gateway.intent(
        "executor", "carrier.book", {"shipment": "S-1", "cls": "retail", "region": "north"}
    )
    for every in (0, -1, "1", float("nan")):
        with pytest.raises(ConfigError, match="every must be a positive number"):
            await gateway.outcome(intent.id, every=every)  # type: ignore[arg-type]


async def test_a_ruleset_signed_before_review_terms_were_bounded_still_loads_and_reviews(
    gateway: Gateway, ledger: SQLiteLedger, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ruleset already in a ledger with "never" as its expiry (a hundred years, or a number past
    the year 9999) keeps loading: the gateway holds the deadline at the last instant a record can
    say, where a submit failed with a raw ValidationError."""
    from support import POLICIES, SCHEMA, booking

    from answerable.policy import ReviewTerms

    forever = POLICIES.replace(
        '@review("a medical booking during a disruption needs a person")',
        '@review("a medical booking during a disruption needs a person")\n@expires_minutes("9999999999")',
    )
    assert forever != POLICIES
    with monkeypatch.context() as before_bounds:  # as a version of answerable without them signed it
        before_bounds.setattr(ReviewTerms, "bounds_problem", lambda self, name: None)
        old = new_ruleset(forever, SCHEMA, people.ri, version=2)
    await gateway.install(gateway.charter, old)
    medical = booking(cls="medical", disruption=True)
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book", medical))
    assert outcome.review is not None
    assert outcome.review.expires_at == "9999-12-31T23:59:59.000000Z"


async def test_what_a_sweep_of_the_library_found_at_its_doors_is_a_config_error(gateway: Gateway) -> None:
    """Each was a raw TypeError, ValueError or AttributeError from inside the library, most of
    them only at the first call: a path given for the gateway's ledger, an operation registered
    with no function or with ``dict`` for ``args``, a client with no key, a timeout of "x" or a CA
    file's path as ``verify``. Each is now a ConfigError naming the setting, where it is given."""
    from answerable.client import AsyncClient, Client

    key = KeyPair.generate("agent@example.org")
    before = set(gateway.operations)
    doors = [
        lambda: Gateway("ledger.db"),  # type: ignore[arg-type]
        lambda: Gateway(None),  # type: ignore[arg-type]
        lambda: gateway.register("", print, resource_class="x"),
        lambda: gateway.register("a b", print, resource_class="x"),
        lambda: gateway.register(None, print, resource_class="x"),  # type: ignore[arg-type]
        lambda: gateway.register("x.none", None, resource_class="x"),  # type: ignore[arg-type]
        lambda: gateway.register("x.lookup", print, resource_class="x", lookup=5),  # type: ignore[arg-type]
        lambda: gateway.register("x.args", print, resource_class="x", args=dict),  # type: ignore[arg-type]
        lambda: Client("http://127.0.0.1:1", None),  # type: ignore[arg-type]
        lambda: Client("http://127.0.0.1:1", key, timeout="x"),  # type: ignore[arg-type]
        lambda: Client("http://127.0.0.1:1", key, timeout=float("nan")),
        lambda: Client("http://127.0.0.1:1", key, timeout=-1),
        lambda: AsyncClient("http://127.0.0.1:1", key, verify="/etc/ssl/ca.pem"),  # type: ignore[arg-type]
    ]
    for door in doors:
        with pytest.raises(ConfigError):
            door()
    assert set(gateway.operations) == before


def test_a_key_file_named_by_nothing_a_file_can_be_named_is_a_config_error(tmp_path: Path) -> None:
    """None, a number, a NUL or a lone surrogate as a key file's path were TypeError, ValueError
    and UnicodeEncodeError (whose own message could not be printed); bytes are a path, as for open."""
    key = KeyPair.generate("agent@example.org")
    for name in (None, 5, str(tmp_path / "a\x00b"), str(tmp_path / "a\ud800b")):
        with pytest.raises(ConfigError):
            key.save(name)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            KeyPair.load(name)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    key.save(str(tmp_path / "k").encode())  # type: ignore[arg-type]
    assert KeyPair.load(str(tmp_path / "k").encode()).identity == "agent@example.org"  # type: ignore[arg-type]


def test_an_agent_failure_whose_message_cannot_be_read_is_still_an_agent_failure():
    """AgentFailed names the agent, the record and what it raised. A handler's exception whose
    message cannot be read made building it raise that exception's own error instead, so the
    in-process runtime let a raw RuntimeError out of run_until_idle."""
    from answerable.errors import AgentFailed

    class Unreadable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no message for you")

    failed = AgentFailed("router", "event-1", "order.created", Unreadable())
    assert "agent 'router' failed while handling order.created event-1" in str(failed)
    assert "Unreadable: (its message could not be read: RuntimeError)" in str(failed)
