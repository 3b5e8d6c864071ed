"""The records answerable writes to its ledger: frozen, validated, canonically serialized.

Every record is a ledger entry with an ``id`` that sorts by time, a ``kind`` naming its type, the
time it was made (``at``, UTC RFC 3339) and ``causes``, the ids of the entries it was derived from.
``causes`` is what provenance walks, so every record that reacts to something cites it.
Hashed fields hold no floats: money is integer cents, durations integer microseconds.
"""

from __future__ import annotations

import functools
import hashlib
import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    WrapSerializer,
)
from pydantic.fields import FieldInfo

from answerable._canonical import canonical_bytes, simple_json_containers, sorted_bytes
from answerable.errors import RecordInvalid

__all__ = [
    "AgentIdentity",
    "Alert",
    "Approval",
    "Authority",
    "Channel",
    "Claim",
    "Control",
    "Coordination",
    "Decision",
    "Entry",
    "Escalation",
    "Execution",
    "ExternalEvent",
    "Intent",
    "Message",
    "MessageKind",
    "Person",
    "Record",
    "Refusal",
    "Review",
    "ReviewClosed",
    "RulesetVersion",
    "Scope",
    "SystemCharter",
    "canonical_bytes",
    "decode_as",
    "decode_entry",
    "digest",
    "entry_bytes",
    "problems",
    "summary",
    "validated",
]

_R = TypeVar("_R", bound="Record")
_M = TypeVar("_M", bound=BaseModel)
_ID = Annotated[str, Field(min_length=1, max_length=128)]
_TIME = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")]
_NAME = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s]+$")]
_B64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]*={0,2}$")]


def _typed_json(annotation: Any) -> bool:
    """True when every value a field so annotated holds dumps (``mode="json"``) as simple JSON
    by construction: strings, integers, booleans, null, and arrays and models of them. False
    for what a person or an agent fills in freely (``dict``, ``Any``), for floats, and for
    anything whose dump code could change (a serializer, a computed field, extra fields)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner, *metadata = typing.get_args(annotation)
        return _plain(metadata) and _typed_json(inner)
    if origin is Literal:
        return all(type(v) in (str, int, bool) or v is None for v in typing.get_args(annotation))
    if origin in (tuple, list, typing.Union, types.UnionType):
        return all(a is Ellipsis or _typed_json(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _typed_model(annotation) and all(
            _typed_field(name, f) for name, f in annotation.model_fields.items()
        )
    return annotation in (str, int, bool, type(None))


def _typed_field(name: str, field: FieldInfo) -> bool:
    """A field that dumps as simple JSON under an ASCII key (see :func:`_typed_json`)."""
    return name.isascii() and _plain(field.metadata) and _typed_json(field.annotation)


def _plain(metadata: Iterable[object]) -> bool:
    """No serializer among a field's metadata: its dump is its value's."""
    return not any(isinstance(m, PlainSerializer | WrapSerializer) for m in metadata)


def _typed_model(model: type[BaseModel]) -> bool:
    """A model whose dump is its fields' values: no serializers, no computed fields, no extras."""
    decorators = model.__pydantic_decorators__
    return (
        model.model_config.get("extra") == "forbid"
        and not model.model_computed_fields
        and not decorators.field_serializers
        and not decorators.model_serializers
    )


class Record(BaseModel):
    """Base of every ledger entry."""

    # A NaN or an infinity in a free-form field stays a float when dumped, so the canonical
    # encoder refuses the record by name; pydantic's default would write it as null, and the
    # entry would hold other bytes than the value it was given.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True, ser_json_inf_nan="constants")

    free_form: ClassVar[frozenset[str] | None] = frozenset()
    """The fields whose values are not simple JSON by their type (payloads, arguments, Cedar
    inputs): the only ones the canonical encoder walks; None (walk it all) for a record whose
    dump code could produce anything. Derived from the annotations, so a new field cannot be
    forgotten."""

    id: _ID
    at: _TIME
    causes: tuple[_ID, ...] = ()

    @property
    def dated_by_signer(self) -> bool:
        """Its ``at`` is the word of whoever signed it (an agent's message, a person's answer or
        resume, the RI's charter or rules), not a clock the runtime read: the ledger's clock
        (``LedgerStore.latest_time``) leaves it out, so nobody moves every review's clock by
        dating what they sign ahead."""
        return False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.model_fields.items()
        typed = _typed_model(cls)
        cls.free_form = frozenset(n for n, f in fields if not _typed_field(n, f)) if typed else None


class Person(BaseModel):
    """Someone the charter names, with the key that proves it is them."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    identity: _NAME
    public_key: _B64
    """Raw Ed25519 public key, base64."""
    roles: tuple[Literal["ri", "reviewer", "operator"], ...]
    """``ri`` answers for the system; ``reviewer`` may approve; ``operator`` may resume."""
    simulated: bool = Field(default=False, exclude_if=lambda v: v is False)
    """A modelled person (a scenario's reviewer), not a human: every answer they give says so.
    Left out of the bytes when false, so charters written before it keep their signatures."""


class AgentIdentity(BaseModel):
    """An agent the system runs."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: _NAME
    public_key: _B64 | None = None


class MessageKind(BaseModel):
    """One type of message a channel carries, and the JSON Schema its payload must meet."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    type: _NAME
    payload_schema: dict[str, Any]
    """A JSON Schema (2020-12); only local ``$ref`` (``#...``), so a check never fetches anything."""
    decide: bool = Field(default=False, exclude_if=lambda v: v is False)
    """The RI's Cedar rules decide each message of this type as they decide a tool call (action
    ``send:TOPIC/TYPE``): allowed, refused, or held for review and delivered once if approved."""


class Channel(BaseModel):
    """A topic, the agents that may publish and subscribe on it, and the messages it carries."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    topic: _NAME
    publishers: tuple[_NAME, ...] = Field(min_length=1)
    subscribers: tuple[_NAME, ...] = ()
    messages: tuple[MessageKind, ...] = Field(min_length=1)


class Coordination(BaseModel):
    """How the agents may talk: every channel there is. A message outside it is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    channels: tuple[Channel, ...] = Field(min_length=1)


class SystemCharter(Record):
    """Who the system is, who answers for it, who may review and resume; signed by the RI."""

    kind: Literal["SystemCharter"] = "SystemCharter"
    system: _NAME
    version: int = Field(ge=1)
    ri: _NAME
    """Identity of the Responsible Individual; must be one of ``people`` with role ``ri``."""
    people: tuple[Person, ...]
    agents: tuple[AgentIdentity, ...]
    separation_of_duties: bool = True
    supersedes: _ID | None = None
    coordination: Coordination | None = Field(default=None, exclude_if=lambda v: v is None)
    """The coordination contract the RI signs with the charter; None: agents may talk freely
    (every message is still recorded). Left out of the bytes when None, so charters written
    before it keep their signatures."""
    signature: _B64 = ""
    """The RI's Ed25519 signature over the canonical charter without this field."""

    def person(self, identity: str) -> Person | None:
        return next((p for p in self.people if p.identity == identity), None)

    def agent_names(self) -> frozenset[str]:
        return frozenset(a.name for a in self.agents)

    @property
    def dated_by_signer(self) -> bool:
        return True


class RulesetVersion(Record):
    """The Cedar policies and schema in force, approved and signed by the RI."""

    kind: Literal["RulesetVersion"] = "RulesetVersion"
    version: int = Field(ge=1)
    policies: str
    schema_text: str
    ruleset_hash: str
    """SHA-256 hex of the policy text."""
    schema_hash: str
    approved_by: _NAME
    signature: _B64 = ""

    @property
    def dated_by_signer(self) -> bool:
        return True


class Message(Record):
    """One agent telling others something; ``causes`` says what it was derived from."""

    kind: Literal["Message"] = "Message"
    sender: _NAME
    topic: _NAME
    recipients: tuple[_NAME, ...] = ()
    type: _NAME
    payload: dict[str, Any]
    trace_id: _ID
    signature: _B64 | None = None

    @property
    def dated_by_signer(self) -> bool:
        return True


class ExternalEvent(Record):
    """Something that came from outside the system: an order, a weather alert, a webhook."""

    kind: Literal["ExternalEvent"] = "ExternalEvent"
    source: _NAME
    type: _NAME
    payload: dict[str, Any]
    topic: _NAME | None = Field(default=None, exclude_if=lambda v: v is None)
    """The topic it was published on, when it came in through the service: a delivery of it on
    another topic is refused. (Events recorded in process carry none; older ledgers neither.)"""
    brought_by: _NAME | None = Field(default=None, exclude_if=lambda v: v is None)
    """The chartered agent that brought it in over the service's API, whose signed request it was."""


class Intent(Record):
    """An agent's request to call an operation that changes the world."""

    kind: Literal["Intent"] = "Intent"
    agent: _NAME
    operation: _NAME
    arguments: dict[str, Any]
    idempotency_key: _ID
    trace_id: _ID | None = None
    on_behalf_of: _NAME | None = None
    """The person who asked the agent for this, if one did: they may not approve it themselves."""


class Decision(Record):
    """The gateway's verdict on an intent and everything needed to reach it again.

    ``request`` and ``entities`` are the exact Cedar inputs, so a recorded run can be replayed
    under another ruleset. A control that blocked the intent is named in ``control_id``; then
    ``policy_ids`` are still what Cedar said (a permit, often), which the stop overruled: read
    :attr:`stop` before naming a rule as the reason for a deny.
    """

    kind: Literal["Decision"] = "Decision"
    intent_id: _ID
    effect: Literal["allow", "deny", "review"]
    policy_ids: tuple[str, ...]
    ruleset_id: _ID | None
    ruleset_hash: str
    schema_hash: str
    request: dict[str, Any]
    entities: tuple[dict[str, Any], ...]
    errors: tuple[str, ...] = ()
    control_id: _ID | None = None

    @property
    def stop(self) -> str | None:
        """What the halt or pause that denied the intent says (in force on what, by whom, why), or
        None when the rules alone decided. The gateway writes it as the last error."""
        return self.errors[-1] if self.control_id is not None and self.errors else None


class Claim(Record):
    """The gateway's durable promise to make the one call an intent was allowed: committed before it.

    The store lets one claim per intent through (a guarded head, ``claim:INTENT``), so an intent
    with a claim is never started again, by this process, another, or a restart. Only the
    recovery of a dead epoch's claim writes a second one, which names the claim it takes over.
    ``epoch`` is the lease the claiming gateway held: claims of earlier epochs with no Execution
    are what a crash or a takeover left behind.
    """

    kind: Literal["Claim"] = "Claim"
    intent_id: _ID
    epoch: int = Field(ge=0)
    holder: _NAME
    via: Literal["policy", "approval", "expiry", "recovery"]
    takes_over: _ID | None = None


class Authority(BaseModel):
    """What allowed an execution: approved rules or a human approval, and the RI behind them."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    responsible: _NAME
    """The Responsible Individual who answers for this execution."""
    via: Literal["policy", "approval", "expiry"]
    ids: tuple[str, ...]
    """Policy ids; the approvals' entry ids; or the ReviewClosed entry whose rule said proceed."""
    ruleset_hash: str


class Execution(Record):
    """What happened when the gateway called (or declined to call) an operation."""

    kind: Literal["Execution"] = "Execution"
    intent_id: _ID
    decision_id: _ID | None
    """None only where no governance decided anything (the ungoverned baseline)."""
    operation: _NAME
    status: Literal["succeeded", "failed", "not_executed", "ambiguous"]
    """``not_executed``: stopped by a control after it was recorded; ``ambiguous``: a crash left
    its effect unknown and a person must reconcile it."""
    authority: Authority | None
    response_digest: str | None = None
    latency_us: int = Field(ge=0, default=0)
    error: str | None = None
    recovered: bool = False
    """Written while reconciling after a crash rather than right after the call."""
    attempts: int = Field(ge=1, default=1)
    """Calls made with the same idempotency key (transient failures are retried)."""


class Scope(BaseModel):
    """What a control applies to."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    kind: Literal["system", "agent", "operation", "resource_class", "channel"]
    value: str | None = None
    """The agent, operation, resource class, or channel (a topic of the coordination contract:
    its messages stop, no tool call does)."""

    def model_post_init(self, _context: Any) -> None:
        if (self.kind == "system") != (self.value is None):
            raise ValueError("scope 'system' takes no value; every other scope needs one")

    def label(self) -> str:
        return self.kind if self.value is None else f"{self.kind}:{self.value}"


class Control(Record):
    """Halt, pause or resume: who, when, why; resumes carry the resumer's signature."""

    kind: Literal["Control"] = "Control"
    action: Literal["halt", "pause", "resume"]
    scope: Scope
    by: _NAME
    reason: Annotated[str, Field(min_length=1)]
    signature: _B64 | None = None

    @property
    def dated_by_signer(self) -> bool:
        return self.signature is not None  # a resume; halts and pauses are dated by the runtime


class Review(Record):
    """An intent waiting for a person: why it was sent to review and what an answer must bind to."""

    kind: Literal["Review"] = "Review"
    intent_id: _ID
    decision_id: _ID
    operation: _NAME
    reasons: tuple[str, ...]
    policy_ids: tuple[str, ...]
    binding: str
    """SHA-256 hex over the exact intent (operation, canonical arguments, idempotency key, ruleset
    hash). An approval signs this, so it is valid for this intent and nothing else."""
    approvals_required: int = Field(ge=1, default=1)
    assignees: tuple[_NAME, ...] = ()
    """Who is asked, in escalation order: the reviewers, and last the RI."""
    deadline: _TIME | None = None
    """When an unanswered review escalates to the next assignee (and again each period after)."""
    escalate_every_seconds: int = Field(ge=1, default=3600)
    expires_at: _TIME | None = None
    """When an unanswered review closes with ``on_expiry``."""
    on_expiry: Literal["deny", "approve"] = "deny"


class Escalation(Record):
    """An unanswered review handed to the next person in line."""

    kind: Literal["Escalation"] = "Escalation"
    review_id: _ID
    to: _NAME
    reason: str


class ReviewClosed(Record):
    """A review that expired unanswered, resolved to the safe default its rule names."""

    kind: Literal["ReviewClosed"] = "ReviewClosed"
    review_id: _ID
    resolution: Literal["deny", "approve"]
    reason: str


class Approval(Record):
    """A person's signed verdict on a review: who, when, why, for exactly which intent, until when."""

    kind: Literal["Approval"] = "Approval"
    review_id: _ID
    intent_id: _ID
    verdict: Literal["approve", "deny"]
    by: _NAME
    reason: Annotated[str, Field(min_length=1)]
    binding: str
    expires_at: _TIME
    signature: _B64 = ""
    simulated: bool = Field(default=False, exclude_if=lambda v: v is False)
    """Given by a modelled person, not a human (it must match the charter's mark on them); left
    out of the bytes when false, so answers written before it keep their signatures."""

    @property
    def dated_by_signer(self) -> bool:
        return True


class Alert(Record):
    """A monitor's finding: which invariant broke, the evidence, and what was done about it."""

    kind: Literal["Alert"] = "Alert"
    monitor: _NAME
    invariant: str
    evidence: tuple[_ID, ...]
    """The entries that show the breach (the latest samples in the window)."""
    observed: dict[str, int | str]
    """What the monitor measured; rates in permille, so no floats are hashed."""
    paused: str | None
    """The scope paused in response (``resource_class:NAME``), if any."""
    control_id: _ID | None
    escalated_to: _NAME | None
    """The person called: the RI, from the charter in force."""


class Refusal(Record):
    """A request refused at the door that claimed to come from someone the charter names, or a
    message refused because the coordination contract does not allow it.

    Kept so a forged, replayed or malformed call in someone's name, or a side channel between
    agents, is seen, not only answered. Over HTTP only claims of chartered identities are
    recorded, at most one per identity per interval (``suppressed`` counts the ones folded into
    the next), so nobody grows the ledger by sending garbage. ``verified``: the claim was proven
    by its signature (a bad body from a real agent), or not (a forged or replayed request in its
    name). On the bus (``channel`` ``bus``) every refused message is one entry, from a chartered
    agent of this system, with its ``topic`` and ``type``.
    """

    kind: Literal["Refusal"] = "Refusal"
    claimed: _NAME
    verified: bool
    channel: Literal["http", "bus"]
    """``http``: a request to the service; ``bus``: a message outside the coordination contract."""
    target: Annotated[str, Field(max_length=300)]
    """What was asked: ``POST /v1/intents``, or ``publish TOPIC TYPE``."""
    reason_code: Annotated[str, Field(min_length=1, max_length=64)]
    detail: Annotated[str, Field(max_length=500)]
    body_digest: str | None = None
    """SHA-256 hex of the refused body, when it was read: matches a copy the sender kept."""
    suppressed: int = Field(ge=0, default=0)
    topic: _NAME | None = Field(default=None, exclude_if=lambda v: v is None)
    type: _NAME | None = Field(default=None, exclude_if=lambda v: v is None)
    """For a refused message: its topic and type (the edge it tried), beside ``claimed``, its sender."""


Entry = Annotated[
    SystemCharter
    | RulesetVersion
    | Message
    | ExternalEvent
    | Intent
    | Decision
    | Review
    | Approval
    | Escalation
    | ReviewClosed
    | Claim
    | Execution
    | Control
    | Alert
    | Refusal,
    Field(discriminator="kind"),
]


@functools.cache
def _entries() -> TypeAdapter[Entry]:
    """The decoder of every kind, built on first use: building it builds every record's
    validator, which a short command (``answerable halt``) never needs. Models build on first
    use too (``defer_build``)."""
    return TypeAdapter(Entry)


def validated(kind: type[_M], values: dict[str, Any]) -> _M:
    """``kind(**values)``: the same validation and the same model, through the model's own
    validator called directly, without the keyword arguments and checks of ``__init__`` and
    ``model_validate`` around it: about 1 µs less a record, and the gateway makes five records
    an action.

    Raises:
        pydantic.ValidationError: as ``kind(**values)`` would.
    """
    made: _M = kind.__pydantic_validator__.validate_python(values)
    return made


def assembled(kind: type[_M], values: dict[str, Any]) -> _M:
    """The ``kind`` record holding ``values`` as given, not validated: for a record its maker
    assembles from parts it has checked already (the gateway's Intent, Decision, Claim and
    Execution of a governed action, and an Execution's Authority).

    ``values`` must be what validation would make of them, the record as decoding its bytes
    gives it back: every field, in the model's order, each of the type validation makes (tuples,
    not lists; nested models, not dicts) and within the field's constraints. Nothing here checks
    that: a maker that cannot be sure of a value validates instead (:func:`validated`). Tests
    hold every kind made this way equal to the validated record and to its decoded bytes, field
    for field and in order, so a change of pydantic's instance layout fails them. The instance is
    laid out as pydantic's own ``model_construct`` lays it out (``__dict__``, the fields set,
    no extra, no private values), without the per-field default and alias handling that made
    that call cost more than validation.
    """
    made = kind.__new__(kind)
    _set_attribute(made, "__dict__", values)
    _set_attribute(made, "__pydantic_fields_set__", set(values))
    _set_attribute(made, "__pydantic_extra__", None)
    _set_attribute(made, "__pydantic_private__", None)
    return made


_set_attribute = object.__setattr__
"""How a frozen model's attributes are set once, when it is made (pydantic's own way)."""


def is_id(value: object) -> bool:
    """Whether ``value`` is what a record's id field holds as validated: text of 1 to 128
    characters (a subclass of ``str`` is not: validation makes it plain text) that UTF-8 can
    carry (validation refuses a lone surrogate; text that is not ASCII is validated)."""
    return type(value) is str and 0 < len(value) <= 128 and (value.isascii() or _validates(_ids(), value))


def is_rfc3339_in_range(value: object) -> bool:
    """Whether a time :func:`answerable.clock.rfc3339` wrote is one a record's ``at`` holds:
    its format pads the year to four digits, so only a clock off the calendar's four-digit years
    writes one that is not (a fifth digit, or a sign). Only for what that function wrote: the
    shape of other text is not checked here."""
    return type(value) is str and len(value) == 27 and value[0] != "-"


def is_name(value: object) -> bool:
    """Whether ``value`` is what a name field (an agent, an operation, a lease's holder) holds as
    validated, by the field's own validation, once per name."""
    return type(value) is str and _a_name(value)


@functools.lru_cache(maxsize=1024)
def _a_name(value: str) -> bool:
    return _validates(_names(), value)


def _validates(adapter: TypeAdapter[str], value: str) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


@functools.cache
def _names() -> TypeAdapter[str]:
    return TypeAdapter(_NAME)


@functools.cache
def _ids() -> TypeAdapter[str]:
    return TypeAdapter(_ID)


def entry_bytes(record: Record) -> bytes:
    """The canonical bytes of a record: the exact bytes hashed as its ledger leaf.

    A record whose free-form fields hold simple JSON is written straight from its fields (see
    :func:`_written_from_fields`); any other goes through its dump, which costs a governed
    action more than the writing does.
    """
    written = _written_from_fields(record)
    if written is not None:
        return written
    return canonical_bytes(record.model_dump(mode="json"), walk=record.free_form)


def _written_from_fields(record: Record) -> bytes | None:
    """The record's canonical bytes from its fields, without a dump, or None.

    Only for the models of this module whose dump is every field's value (no serializer,
    computed field, extra, field left out or renamed: ``_dumps_every_field``). Their typed
    fields hold simple JSON by construction (``_typed_json``), as values pydantic has made
    exact: ``str``, ``int``, ``bool``, None, tuples, and models of this module. The free-form
    fields are walked, and a float, a key that is not ASCII, anything that is not JSON or is a
    subclass of a JSON type (an enum, whose dump is its value) sends the record to its dump; so
    does anything orjson would write its own way wherever it is (a subclass, a datetime, a
    dataclass set without validation), and a model of another class where one is declared (a
    subclass with fields of its own, which the dump leaves out). Tests hold these bytes to the
    dump's for each kind written this way.
    """
    walk = record.free_form
    if walk is None:
        return None
    try:  # the record's own fields handed over, not the record: one call of ``default`` less
        fields = _fields_of(record)
    except TypeError:
        return None
    if _VOUCHED.pop(id(record), None) is not record:
        for name in walk:
            if simple_json_containers(getattr(record, name), exact=True) is None:
                return None
    return sorted_bytes(fields, default=_fields_of)


_VOUCHED: dict[int, Record] = {}
"""Records whose maker vouched for their free-form fields (:func:`vouched_simple`), by id, each
held until its bytes are written once: an id cannot be reused while its object is held."""

_MOST_VOUCHED = 4096
"""Vouches kept at most: one whose record was never written (its append failed before it was
encoded) is dropped with the rest past this, and that record is walked, as any other is."""


def vouched_simple(record: _R) -> _R:
    """``record``, marked as one whose free-form fields its maker built of simple JSON (see
    ``is_simple_json``: no float, no key that is not ASCII, nothing but dicts, lists, strings,
    integers, booleans and null) it has walked already: its bytes are then written without
    walking them again, once. The gateway vouches for a Decision whose Cedar context and
    attributes took the fast path of ``cedar_inputs``; the rest of a Decision's request is
    strings it made itself. orjson still refuses, and sends to the exact path, what it would
    write otherwise than the walk reads it: a subclass of a JSON type, a datetime, a dataclass,
    an unsafe integer (``sorted_bytes``). A vouch that is wrong about a float or a key writes
    bytes that are not canonical, so vouch only for values the walk has seen."""
    if len(_VOUCHED) >= _MOST_VOUCHED:
        _VOUCHED.clear()
    _VOUCHED[id(record)] = record
    return record


def whole_fields(record: Record) -> dict[str, Any] | None:
    """The dict a record holds its fields in, when it holds exactly its model's fields and is of
    a model of this module (see :func:`_fields_of`); None for any other (a subclass, one made by
    ``model_construct`` without a field): a copy of it is then pydantic's to make."""
    try:
        return _fields_of(record)
    except TypeError:
        return None


def _fields_of(value: object) -> dict[str, Any]:
    """What a model of this module dumps as: its fields (see :func:`_written_from_fields`).

    A model holding more or fewer values than it has fields (``model_copy(update=...)`` with a
    key that is no field, ``model_construct`` without one) is not taken: the dump knows what to
    write of it."""
    count = _WRITTEN_AS_FIELDS.get(type(value))
    if count is not None:
        fields: dict[str, Any] = vars(value)
        if len(fields) == count:
            return fields
    raise TypeError(f"{type(value).__name__} is not written from its fields")


def signing_bytes(record: Record) -> bytes:
    """The bytes a signature on ``record`` covers: the record without its signature."""
    return canonical_bytes(record.model_dump(mode="json", exclude={"signature"}), walk=record.free_form)


def decode_entry(data: bytes) -> Entry:
    """Parse canonical bytes back into the record they encode."""
    try:
        return _entries().validate_json(data)
    except ValidationError as exc:
        raise RecordInvalid(f"not a valid ledger entry: {problems(exc, 'entry')[0]}") from exc


def decode_as(data: bytes, kind: type[_R]) -> _R | None:
    """The ``kind`` record these bytes hold, or None when they hold anything else (decode them
    with :func:`decode_entry` to say what). Builds only that kind's validator: a short command
    reading its controls need not build every record's."""
    try:
        return kind.model_validate_json(data)
    except ValidationError:
        return None


def problems(exc: ValidationError, whole: str) -> tuple[str, ...]:
    """Each validation failure as ``field.path: what is wrong``; ``whole`` names a top-level one."""
    return tuple(f"{'.'.join(str(p) for p in e['loc']) or whole}: {e['msg']}" for e in exc.errors())


def summary(exc: ValidationError, whole: str = "the document") -> str:
    """The first three of :func:`problems` in one line, and how many more: what is wrong with a
    record read from a file, where pydantic's own first line says only how many errors there are."""
    found = problems(exc, whole)
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return "; ".join(found[:3]) + more


def digest(data: bytes) -> str:
    """SHA-256 hex, used for response digests and rule hashes."""
    return hashlib.sha256(data).hexdigest()


def _dumps_every_field(model: type[BaseModel]) -> bool:
    """A typed model whose dump holds every field under its own name: none left out when it
    holds its default (``simulated``, ``coordination``: ``exclude_if``), none renamed."""
    return (
        _typed_model(model)
        and not model.model_config.get("serialize_by_alias")
        and not any(
            f.exclude or f.exclude_if is not None or f.serialization_alias is not None
            for f in model.model_fields.values()
        )
    )


_WRITTEN_AS_FIELDS: dict[type[object], int] = {
    model: len(model.model_fields)
    for model in list(globals().values())
    if isinstance(model, type)
    and issubclass(model, BaseModel)
    and model.__module__ == __name__
    and _dumps_every_field(model)
}
"""The models of this module whose dump is every field's value (see :func:`_written_from_fields`),
and how many fields each has: read per record written, where pydantic's ``model_fields`` is a
descriptor that costs a third of a microsecond."""
