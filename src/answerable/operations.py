"""Operations: what the gateway may call, how their arguments are checked, and how they are called.

An operation is a Python callable or an HTTP endpoint. Its argument schema comes from a pydantic
model or from the callable's signature; its Cedar resource and context come from one builder
function each. Calling one is :func:`invoke`; recording and governing the call is the gateway's.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from answerable.errors import ArgumentsInvalid, ExecutionError, TransientError
from answerable.records import problems

__all__ = ["Operation", "Resource", "args_model", "http_operation", "invoke", "validate_arguments"]


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
    retries: int = 2
    """How often a transient failure is retried, with the same key; only for idempotent operations."""


def http_operation(
    url: str, *, client: httpx.AsyncClient, method: str = "POST", headers: Mapping[str, str] | None = None
) -> Callable[..., Awaitable[Any]]:
    """An operation that is an HTTP endpoint: JSON arguments in, JSON out, the key as a header.

    The credentials live in ``headers`` inside the gateway; agents never see them.
    """

    async def call(idempotency_key: str, **arguments: Any) -> Any:
        try:
            response = await client.request(
                method,
                url,
                content=orjson.dumps(arguments, default=_jsonable),
                headers={
                    **(headers or {}),
                    "Idempotency-Key": idempotency_key,
                    "Content-Type": "application/json",
                },
            )
        except httpx.TimeoutException as exc:
            raise TransientError(f"{method} {url} timed out: {exc}") from exc
        if response.status_code in _TRANSIENT_STATUS:
            raise TransientError(f"{method} {url} answered {response.status_code}: {response.text[:200]}")
        if response.status_code >= 400:
            raise ExecutionError(f"{method} {url} answered {response.status_code}: {response.text[:200]}")
        return response.json() if response.content else None

    return call


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_TRANSIENT_STATUS = frozenset({502, 503, 504})
"""Answers after which the same request with the same key may succeed."""


def args_model(name: str, call: Callable[..., Any]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for param in inspect.signature(call).parameters.values():
        if param.name == "idempotency_key" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    model: type[BaseModel] = create_model(
        f"{name}.args", __config__=ConfigDict(extra="forbid", frozen=True), **fields
    )
    return model


def validate_arguments(op: Operation, arguments: Mapping[str, Any]) -> BaseModel:
    try:
        return op.args.model_validate(arguments)
    except ValidationError as exc:
        raise ArgumentsInvalid(op.name, problems(exc, "arguments")) from exc


async def invoke(op: Operation, args: BaseModel, key: str) -> Any:
    """Call an operation with validated arguments and its idempotency key; nothing is recorded."""
    kwargs = {name: getattr(args, name) for name in type(args).model_fields}
    if op.wants_key:
        kwargs["idempotency_key"] = key
    result = op.call(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
