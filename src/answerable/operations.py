"""Operations: what the gateway may call, how their arguments are checked, and how they are called.

An operation is a Python callable or an HTTP endpoint. Its argument schema comes from a pydantic
model or from the callable's signature; its Cedar resource and context come from one builder
function each. Calling one is :func:`invoke`; recording and governing the call is the gateway's.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, PydanticUserError, ValidationError, create_model

from answerable._canonical import canonical_bytes, json_problems, simple_json_containers
from answerable._text import exception_text
from answerable._urls import problem as url_problem
from answerable._urls import shown
from answerable.errors import (
    ArgumentsInvalid,
    ConfigError,
    ExecutionError,
    RecordInvalid,
    RequestBuildFailed,
    TransientError,
)
from answerable.records import problems

if TYPE_CHECKING:  # httpx costs a tenth of a second to import; only HTTP operations need it
    import httpx

__all__ = [
    "MAX_DEPTH",
    "FencingToken",
    "Operation",
    "Resource",
    "args_model",
    "arguments_as_context",
    "canonical_arguments",
    "cedar_inputs",
    "cedar_inputs_simple",
    "http_operation",
    "invoke",
    "validate_arguments",
]


@dataclass(frozen=True, slots=True)
class Resource:
    """The Cedar resource an operation changes: its entity type, id and attributes."""

    type: str
    id: str
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Operation:
    """A registered world-changing operation and everything the gateway needs to govern it.

    Attributes:
        call: receives the validated arguments as keywords, plus ``idempotency_key`` when its
            signature names it. May be sync or async; a sync call runs on the event loop.
        resource: builds the Cedar resource from the arguments (one function per operation).
        context: builds the Cedar context from the arguments.
        idempotent: the operation honours idempotency keys, so after a crash it is safe to call
            again with the same key.
        lookup: finds the effect of an earlier call by idempotency key (None if there was none);
            used after a crash when the operation is not idempotent.
    """

    name: str
    resource_class: str
    args: type[BaseModel]
    call: Callable[..., Any]
    resource: Callable[[BaseModel], Resource]
    context: Callable[[BaseModel], Mapping[str, Any]]
    idempotent: bool = False
    lookup: Callable[[str], Awaitable[Any | None]] | None = None
    wants_key: bool = False
    fenced: bool = False
    """The partner checks fencing tokens: it refuses a call (and a lookup) whose lease epoch is
    older than one it has already seen. That stops a deposed gateway's later calls; it cannot undo
    one that already landed, so it makes a replay safe only together with a lookup that carries
    the new token: once the partner has seen the new epoch, "not found" is proof."""
    wants_token: bool = False
    lookup_wants_token: bool = False
    """``lookup`` takes ``fencing_token`` too (a fenced partner learns the new epoch from it)."""
    retries: int = 2
    """How often a transient failure is retried, with the same key; only for idempotent operations."""


def http_operation(
    url: str, *, client: httpx.AsyncClient, method: str = "POST", headers: Mapping[str, str] | None = None
) -> Callable[..., Awaitable[Any]]:
    """An operation that is an HTTP endpoint: JSON arguments in, JSON out, the key as a header.

    The credentials live in ``headers`` inside the gateway; agents never see them. What a failure
    records names the endpoint without the user information or query of ``url`` (a token there
    would be in the ledger for good). A request that may have reached the partner (a timeout, a
    connection cut after it was sent) is ambiguous, so it is retried only where the partner
    deduplicates; one that never left (no connection made) failed.
    """

    import httpx

    # A path is joined to the client's base_url, as httpx joins it on each call.
    try:
        target = str(client.base_url.join(url)) if str(client.base_url) else url
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ConfigError(f"http_operation: {shown(str(url))}: not a URL ({type(exc).__name__})") from None
    where = shown(target)
    wrong = url_problem(target)
    if wrong is not None:  # a typo here would fail every call, each recorded as a failure
        raise ConfigError(f"http_operation: {where}: {wrong}")
    fixed = _headers(where, headers)
    # The request never left (no connection made, or it could not be formed): such a call
    # failed. Anything else that goes wrong may have happened after the partner acted (a
    # timeout, a connection cut, a body that would not decode): ambiguous, retried only where
    # the partner deduplicates by key.
    not_sent = (httpx.ConnectError, httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError)

    async def call(idempotency_key: str, fencing_token: FencingToken | None = None, **arguments: Any) -> Any:
        fence = {} if fencing_token is None else {"Fencing-Token": fencing_token.header()}
        try:
            response = await client.request(
                method,
                url,
                content=orjson.dumps(arguments, default=_jsonable),
                headers={
                    **fixed,
                    **fence,
                    "Idempotency-Key": idempotency_key,
                    "Content-Type": "application/json",
                },
            )
        except httpx.TimeoutException as exc:
            raise TransientError(f"{method} {where} timed out: {exc}") from exc
        except httpx.LocalProtocolError as exc:  # its text may quote a header's value: a credential
            raise ExecutionError(f"{method} {where} could not be sent: {type(exc).__name__}") from exc
        except not_sent as exc:
            raise ExecutionError(f"{method} {where} could not be reached: {exc}") from exc
        except httpx.RequestError as exc:  # sent, or may have been: not known to have failed
            raise TransientError(f"{method} {where} was cut off: {type(exc).__name__}: {exc}") from exc
        try:
            return _answer_of(response, f"{method} {where}")
        except httpx.RequestError as exc:  # a body that will not decode: it answered, so it may have acted
            raise TransientError(f"{method} {where} was cut off: {type(exc).__name__}: {exc}") from exc

    return call


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP header name (RFC 9110 5.1)."""
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?")
"""An HTTP header value httpx sends (RFC 9110 5.5, ASCII only): printable, spaces and tabs
inside, none at either end."""


def _headers(where: str, headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers every call sends, copied once and checked now: a value HTTP cannot carry (a
    token read from a file keeps its line end) failed every call, and the client's error quoted
    the value, credential and all, into each Execution. Never quoted here either.

    Raises:
        ConfigError: a name that is no header name, or a value that is not printable ASCII
            without whitespace at either end.
    """
    fixed = dict(headers or {})
    for name, value in fixed.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            said = repr(str(name)[:60])
            raise ConfigError(f"http_operation: {where}: a header name must be an HTTP token, not {said}")
        if not isinstance(value, str):
            kind = type(value).__name__
            raise ConfigError(f"http_operation: {where}: header {name}: its value is a {kind}, not text")
        if not _FIELD_VALUE.fullmatch(value):
            raise ConfigError(
                f"http_operation: {where}: header {name}: its value (not shown) holds a line break, a "
                "control character other than a tab, whitespace at an end or a character outside "
                "ASCII; a secret read from a file keeps its line end: strip it"
            )
    return fixed


def _answer_of(response: httpx.Response, call: str) -> Any:
    """What an HTTP operation's answer says it did: its JSON (or its words) when it succeeded."""
    status = response.status_code
    if status in _TRANSIENT_STATUS:
        raise TransientError(f"{call} answered {status}: {response.text[:200]}")
    if status >= 400:
        raise ExecutionError(f"{call} answered {status}: {response.text[:200]}")
    if status >= 300:  # not followed; a 303 after a POST says it acted, others not
        raise TransientError(
            f"{call} answered {status}, a redirect (not followed): whether it acted is not known; is "
            "the operation's URL current?"
        )
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:  # done, and said so in words: what it said is the result
        return response.text


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_TRANSIENT_STATUS = frozenset({502, 503, 504})
"""Answers after which the same request with the same key may succeed."""


def arguments_as_context(args: BaseModel) -> dict[str, Any]:
    """An operation's validated arguments as its Cedar context, so rules can read their values
    (``register(..., context=arguments_as_context)``, with a schema that types them:
    :func:`answerable.charter.schema_for` with argument types, or your own)."""
    dumped: dict[str, Any] = args.model_dump(mode="json")
    return dumped


def args_model(name: str, call: Callable[..., Any]) -> type[BaseModel]:
    """An argument schema from ``call``'s signature: one field per parameter, extras refused.

    Raises:
        ConfigError: ``call`` has no signature to read, or a parameter's annotation is not a type
            pydantic can check.
    """
    try:
        # eval_str: a module with ``from __future__ import annotations`` annotates with text,
        # which only the callable's own globals can resolve.
        parameters = inspect.signature(call, eval_str=True).parameters.values()
    except NameError as exc:
        raise ConfigError(
            f"operation {name!r}: an annotation of its callable names something undefined: {exc}"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"operation {name!r}: cannot read the signature of its callable: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in parameters:
        if param.name in ("idempotency_key", "fencing_token") or param.kind in (
            param.VAR_KEYWORD,
            param.VAR_POSITIONAL,
        ):
            continue
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    try:
        model: type[BaseModel] = create_model(
            f"{name}.args", __config__=ConfigDict(extra="forbid", frozen=True), **fields
        )
    except (PydanticUserError, TypeError, ValueError, NameError) as exc:  # a type pydantic cannot check
        raise ConfigError(
            f"operation {name!r}: its parameters cannot make an argument schema: {exc}; "
            "annotate them with JSON-able types or pass args=<a pydantic model>"
        ) from exc
    return model


def validate_arguments(op: Operation, arguments: Mapping[str, Any]) -> BaseModel:
    """Arguments checked against the operation's schema (not yet canonical: see
    :func:`canonical_arguments`, which the gateway uses).

    Raises:
        ArgumentsInvalid: naming each field that does not match.
        ConfigError: the operation's schema itself is broken.
    """
    try:
        return op.args.model_validate(arguments)
    except ValidationError as exc:
        raise ArgumentsInvalid(op.name, problems(exc, "arguments")) from exc
    except PydanticUserError as exc:  # e.g. a model naming a type that was never defined
        raise ConfigError(f"operation {op.name!r}: its argument schema cannot be used: {exc}") from exc


MAX_DEPTH = 32
"""The deepest nesting of objects and arrays allowed in arguments, the arguments object itself
counting as one, and in a Cedar context or resource's attributes. Real arguments are a few levels
deep; this bounds the work of validating, hashing and storing what an agent sends."""


def canonical_arguments(
    op: Operation, arguments: Mapping[str, Any], *, read_back: bool = True
) -> tuple[dict[str, Any], BaseModel]:
    """The arguments as they will be recorded, and the same arguments as the operation receives them.

    Validated by the operation's schema, then reduced to canonical JSON (RFC 8785), and the
    schema's model validated again *from those bytes*: so what Cedar judges, what the Intent
    records and what the operation is called with are the same values, and a replay of the ledger
    sees what ran. Refused rather than silently changed: NaN and infinities (which JSON writers
    turn into ``null``), strings or keys with a lone surrogate, integers outside the I-JSON range
    ±(2**53-1) and floats that canonical JSON writes as such integers (whole numbers past it and
    below 1e21, which read back as integers), nesting deeper than :data:`MAX_DEPTH`, and a schema
    whose values do not survive their own JSON form.

    ``read_back=False`` for arguments the ledger holds already (a claimed intent recovered, a
    reviewed one run): a float that canonical JSON writes as an integer past the I-JSON range was
    recordable before this check, and an intent recorded so must still run as it was decided.

    Returns:
        ``(recorded, args)``: the dict decoded from the canonical bytes, for the Intent, and the
        model the operation's fields are read from.

    Raises:
        ArgumentsInvalid: naming each field path that is wrong.
    """
    fast = _already_canonical(op, arguments)
    if fast is not None:
        return fast
    found = _json_problems(arguments, max_depth=MAX_DEPTH, strict=False)
    if found:
        raise ArgumentsInvalid(op.name, found)
    model = validate_arguments(op, arguments)
    try:
        dumped = model.model_dump(mode="json", by_alias=True)
        # The JSON dump writes a non-finite float in an untyped field as null: look before it does.
        found = _json_problems(model.model_dump(by_alias=True), max_depth=MAX_DEPTH, strict=False)
    except (ValueError, TypeError) as exc:  # pydantic's PydanticSerializationError is a ValueError
        raise ArgumentsInvalid(op.name, (f"(root): the arguments have no JSON form: {exc}",)) from exc
    found = found or _json_problems(dumped, max_depth=MAX_DEPTH, strict=True, read_back=read_back)
    if found:
        raise ArgumentsInvalid(op.name, found)
    try:
        data = canonical_bytes(dumped)
    except RecordInvalid as exc:
        raise ArgumentsInvalid(op.name, (f"(root): {exc}",)) from exc
    try:
        args = op.args.model_validate_json(data)
    except ValidationError as exc:
        raise ArgumentsInvalid(
            op.name, tuple(f"{p} (after reducing the arguments to JSON)" for p in problems(exc, "arguments"))
        ) from exc
    try:
        again = canonical_bytes(args.model_dump(mode="json", by_alias=True))
    except RecordInvalid as exc:  # a validator that makes, of JSON it was given, what JSON cannot hold
        raise ArgumentsInvalid(op.name, (f"(root): validated again from its JSON form, {exc}",)) from exc
    if again != data:
        raise ArgumentsInvalid(
            op.name,
            (
                "(root): the schema does not give back what it was given when its JSON form is "
                "validated again (a validator that changes values on each pass?); make it idempotent",
            ),
        )
    recorded: dict[str, Any] = orjson.loads(data)
    return recorded, args


def _already_canonical(
    op: Operation, arguments: Mapping[str, Any]
) -> tuple[dict[str, Any], BaseModel] | None:
    """The common case, at a fraction of the cost: arguments that are plain JSON already (so
    orjson's sorted bytes are their canonical bytes), validated from a copy decoded from those
    bytes, which the schema gives back byte for byte. None means: take the exact path."""
    if type(arguments) is not dict or not _simple_within(arguments, MAX_DEPTH):
        return None
    try:
        data = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)  # refuses lone surrogates
    except orjson.JSONEncodeError:
        return None
    recorded: dict[str, Any] = orjson.loads(data)
    try:
        args = op.args.model_validate(recorded)
        again = orjson.dumps(args.model_dump(mode="json", by_alias=True), option=orjson.OPT_SORT_KEYS)
    except (ValidationError, ValueError, TypeError):
        return None  # the exact path says precisely what is wrong
    return (recorded, args) if again == data else None


def _simple_within(value: Any, limit: int, *, exact: bool = False) -> bool:
    """Simple JSON (see ``is_simple_json``) nested at most ``limit`` deep; the depth is walked
    only when the value holds more objects and arrays than ``limit``. ``exact``: and nothing in
    it a subclass of a JSON type (see ``simple_json_containers``)."""
    containers = simple_json_containers(value, exact=exact)
    return containers is not None and (containers <= limit or not _deeper_than(value, limit))


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels (flat arguments cost one pass)."""
    level: list[Any] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        nested: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            for child in children:
                kind = type(child)
                if kind is dict or kind is list:
                    nested.append(child)
        level = nested
    return False


def _json_problems(value: Any, *, max_depth: int, strict: bool, read_back: bool = False) -> tuple[str, ...]:
    return tuple(dict.fromkeys(json_problems(value, max_depth=max_depth, strict=strict, read_back=read_back)))


def cedar_inputs(op: Operation, args: BaseModel) -> tuple[Resource, dict[str, Any]]:
    """The Cedar resource and context an operation's builders make from its arguments, as JSON.

    The returned attributes and context are decoded from their canonical JSON, so Cedar sees
    exactly what the Decision records (tuples become lists, subclasses plain values).

    Raises:
        RequestBuildFailed: a builder raised, or returned something that is not a Resource with
            string type and id, or not JSON (a NaN, a set, a non-string key, an object ...).
    """
    resource, context, _ = cedar_inputs_simple(op, args)
    return resource, context


def cedar_inputs_simple(op: Operation, args: BaseModel) -> tuple[Resource, dict[str, Any], bool]:
    """:func:`cedar_inputs`, and whether the attributes and context are both simple JSON (see
    ``is_simple_json``: no float, only ASCII keys), as the fast path found them: a Decision
    made of them and of plain strings may have its bytes written without a second walk.

    Raises:
        RequestBuildFailed: as :func:`cedar_inputs`.
    """
    try:
        resource = op.resource(args)
    except Exception as exc:  # a builder is the operation author's code: any failure refuses
        raise RequestBuildFailed(op.name, f"the resource builder raised {exception_text(exc)}") from exc
    try:
        context = op.context(args)
    except Exception as exc:
        raise RequestBuildFailed(op.name, f"the context builder raised {exception_text(exc)}") from exc
    if not isinstance(resource, Resource):
        raise RequestBuildFailed(
            op.name, f"the resource builder returned a {type(resource).__name__}, not a Resource"
        )
    if not isinstance(resource.type, str) or not isinstance(resource.id, str):
        raise RequestBuildFailed(op.name, "the resource's type and id must be strings")
    attrs, plain_attrs = _json_object(op.name, "resource attributes", resource.attrs)
    context, plain_context = _json_object(op.name, "context", context)
    return Resource(resource.type, resource.id, attrs), context, plain_attrs and plain_context


def _json_object(operation: str, what: str, value: object) -> tuple[dict[str, Any], bool]:
    """``value`` as a plain JSON object decoded from its canonical bytes, and whether it is
    simple JSON (taken by the fast path)."""
    if not isinstance(value, Mapping):
        raise RequestBuildFailed(operation, f"the {what} are a {type(value).__name__}, not a mapping")
    plain = dict(value)
    # Simple only if nothing in it is a subclass of a JSON type: the walk reads a list or dict
    # subclass through its own iteration, orjson through what it stores, and a subclass could
    # show the one no float and hand the other one (found in review), so only an exact walk
    # may vouch for what orjson then decodes. One walk either way, unless a subclass is there.
    exact = _simple_within(plain, MAX_DEPTH, exact=True)
    if exact or _simple_within(plain, MAX_DEPTH):
        # Plain JSON already: orjson's bytes are canonical, and a decoded copy is what is recorded.
        try:
            simple: dict[str, Any] = orjson.loads(orjson.dumps(plain))
        except orjson.JSONEncodeError:  # a lone surrogate: the exact path below names it
            pass
        else:
            if exact:
                return simple, True
            # A subclass's own iteration may have hidden from the loose walk what orjson wrote:
            # the decoded copy, plain values only, is what Cedar would judge: checked below.
            plain = simple
    found = json_problems(plain, max_depth=MAX_DEPTH, limit=3, read_back=True)
    if found:
        raise RequestBuildFailed(operation, f"the {what} are not JSON: {'; '.join(found)}")
    try:
        decoded: dict[str, Any] = orjson.loads(canonical_bytes(plain))
    except RecordInvalid as exc:
        raise RequestBuildFailed(operation, f"the {what} are not JSON: {exc}") from exc
    return decoded, False


@dataclass(frozen=True, slots=True)
class FencingToken:
    """(lease epoch, idempotency key): what a partner needs to refuse a deposed gateway's call.

    A partner that checks fencing keeps the highest epoch it has seen and refuses anything
    older, so a gateway that was paused past its lease and woke up cannot make an effect.
    """

    epoch: int
    key: str

    def header(self) -> str:
        return f"{self.epoch}"


@functools.lru_cache(maxsize=1024)
def _parameters(model: type[BaseModel]) -> tuple[tuple[str, ...], bool]:
    """An arguments model's field names, and whether its extra fields are passed on too: read
    once per model, not on every call (pydantic's class attributes are slow to reach)."""
    return tuple(model.model_fields), bool(getattr(model, "passes_extra", False))


async def invoke(op: Operation, args: BaseModel, key: str, token: FencingToken | None = None) -> Any:
    """Call an operation with validated arguments and its idempotency key; nothing is recorded."""
    names, extra = _parameters(type(args))
    kwargs = {name: getattr(args, name) for name in names}
    if extra:  # a tool's JSON Schema: the names are the tool's
        kwargs.update(args.model_extra or {})
    if op.wants_key:
        kwargs["idempotency_key"] = key
    if op.wants_token:
        kwargs["fencing_token"] = token
    result = op.call(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
