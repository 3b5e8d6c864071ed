"""A client of ``answerable serve``, for agents in other processes: sync and async.

    from answerable.client import Client
    from answerable.keys import KeyPair
from answerable.records import Message, entry_bytes

    agent = Client("http://127.0.0.1:8470", KeyPair.load("agent.key"))
    outcome = agent.submit("refund", {"order": "O-1", "amount_cents": 2500}, idempotency_key="refund-O-1")
    if not outcome["done"]:                      # waiting for a person
        outcome = agent.wait(outcome["intent_id"], seconds=30)

Every request, reads included, is signed (RFC 9421) with the key, whose identity must be the
agent's name (or a person's, for ``answer``, ``halt``, ``pause`` and ``resume``) in the charter.
A refused request raises :class:`ServiceRefused` with the service's reason code.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
import orjson

from answerable.clock import IdSource, SystemClock
from answerable.control import scope_from_text, unsigned_control
from answerable.errors import AnswerableError
from answerable.httpsig import sign_request
from answerable.keys import KeyPair
from answerable.records import Message, entry_bytes
from answerable.review import unsigned_approval
from answerable.signing import sign

__all__ = ["AsyncClient", "Client", "ServiceRefused", "patiently"]

T = TypeVar("T")


class ServiceRefused(AnswerableError):
    """The service said no: ``status`` is the HTTP status, ``reason_code`` its stable code."""

    def __init__(
        self, status: int, reason_code: str, message: str, doc: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"[{reason_code}] {message}")
        self.status = status
        self.reason_code = reason_code
        self.doc: Mapping[str, Any] = doc or {}
        """The service's whole answer (a refused message's ``refusal_id``, say)."""


def _submit_body(
    operation: str, arguments: dict[str, Any], idempotency_key: str | None, causes: tuple[str, ...]
) -> bytes:
    return orjson.dumps(
        {
            "operation": operation,
            "arguments": arguments,
            "idempotency_key": idempotency_key,
            "causes": list(causes),
        }
    )


def _sign(key: KeyPair, request: httpx.Request) -> None:
    """Add the RFC 9421 signature headers over the request as it will be sent."""
    body = request.content
    request.headers.update(
        sign_request(key, request.method, str(request.url), body, created=int(time.time()))
    )
    if body:
        request.headers["Content-Type"] = "application/json"


def _answer(response: httpx.Response) -> Any:
    try:
        doc = response.json()
    except ValueError:
        doc = {"error": response.text[:200], "reason_code": "not_json"}
    if response.status_code >= 400:
        if not isinstance(doc, dict):
            doc = {"error": str(doc)[:200], "reason_code": "not_json"}
        raise ServiceRefused(
            response.status_code, str(doc.get("reason_code", "")), str(doc.get("error", "")), doc
        )
    return doc


class _Transport(httpx.HTTPTransport):
    """httpx's transport, its connection failures said as ServiceRefused (status 0), not raw."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.TransportError as exc:
            raise ServiceRefused(0, "unreachable", f"{request.url.host}: {exc}") from exc


class _AsyncTransport(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.TransportError as exc:
            raise ServiceRefused(0, "unreachable", f"{request.url.host}: {exc}") from exc


def _approval(
    key: KeyPair, review: dict[str, Any], verdict: str, reason: str, valid_for_seconds: int, simulated: bool
) -> bytes:
    clock = SystemClock()
    record = unsigned_approval(
        review_id=str(review["review_id"]),
        intent_id=str(review["intent_id"]),
        binding=str(review["binding"]),
        by=key.identity,
        verdict=verdict,
        reason=reason,
        approval_id=IdSource(clock).new(),
        at_ns=clock.now_ns(),
        valid_for_seconds=valid_for_seconds,
        simulated=simulated,
    )
    return orjson.dumps(sign(record, key).model_dump(mode="json"))


def _resume(key: KeyPair, stops: dict[str, Any], scope: str, reason: str) -> bytes:
    """A resume of ``scope`` naming the stops on it the service reported, signed by ``key``."""
    parsed = scope_from_text(scope)
    clock = SystemClock()
    lifted = [stop["id"] for stop in stops.get("stops", []) if stop.get("scope") == parsed.label()]
    record = unsigned_control(
        "resume",
        parsed,
        key.identity,
        reason,
        causes=lifted,
        control_id=IdSource(clock).new(),
        at_ns=clock.now_ns(),
    )
    return orjson.dumps(sign(record, key).model_dump(mode="json"))


def _stop(action: str, reason: str, scope: str) -> bytes:
    return orjson.dumps({"action": action, "reason": reason, "scope": scope})


class Client:
    """A synchronous client; one per agent (or person) key."""

    def __init__(
        self, url: str, key: KeyPair, *, timeout: float = 90.0, verify: ssl.SSLContext | bool = True
    ) -> None:
        """``verify``: for an https URL, the TLS context that trusts the service's certificate
        (``ssl.create_default_context(cafile=...)`` for one of your own); the system's by default."""
        self.url = url.rstrip("/")
        self.key = key
        self._http = httpx.Client(timeout=timeout, transport=_Transport(verify=verify))

    def _call(self, method: str, path: str, body: bytes = b"", **params: Any) -> Any:
        request = self._http.build_request(method, f"{self.url}{path}", params=params or None, content=body)
        _sign(self.key, request)
        return _answer(self._http.send(request))

    def submit(
        self,
        operation: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        causes: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Propose an intent; its outcome, or ``done: false`` while it waits for a review."""
        result: dict[str, Any] = self._call(
            "POST", "/v1/intents", _submit_body(operation, arguments, idempotency_key, causes)
        )
        return result

    def wait(self, intent_id: str, *, seconds: float = 30.0) -> dict[str, Any]:
        """The intent's status once final, or as it stands after ``seconds`` (the service long-polls)."""
        result: dict[str, Any] = self._call("GET", f"/v1/intents/{intent_id}", wait=seconds)
        return result

    def receipt(self, intent_id: str, *, seconds: float = 0.0) -> dict[str, Any]:
        """The receipt of a final intent's call (``answerable receipt verify`` checks it offline),
        waiting up to ``seconds`` for the intent to be final."""
        result: dict[str, Any] = self._call("GET", f"/v1/receipts/{intent_id}", wait=seconds)
        return result

    def operations(self) -> list[dict[str, Any]]:
        """The operations agents may propose; an MCP tool with its input schema and standing."""
        result: list[dict[str, Any]] = self._call("GET", "/v1/operations")
        return result

    def reviews(self) -> list[dict[str, Any]]:
        """The open reviews, each whole (``answerable reviews --json`` shows the same)."""
        result: list[dict[str, Any]] = self._call("GET", "/v1/reviews")
        return result

    def answer(
        self,
        review_id: str,
        verdict: str,
        reason: str,
        *,
        valid_for_seconds: int = 3600,
        simulated: bool = False,
    ) -> dict[str, Any]:
        """Approve or deny a review as this client's key's owner (a reviewer), signed here exactly
        as ``answerable approve`` signs it; the service checks it and acts within a second.
        ``simulated``: the owner is a modelled person, as the charter marks them."""
        review = self._call("GET", f"/v1/reviews/{review_id}")
        approval = _approval(self.key, review, verdict, reason, valid_for_seconds, simulated)
        result: dict[str, Any] = self._call("POST", f"/v1/reviews/{review_id}/answer", approval)
        return result

    def why(self, entry_id: str) -> dict[str, Any]:
        """The causal chain of a ledger entry (``answerable why --json`` shows the same)."""
        result: dict[str, Any] = self._call("GET", f"/v1/why/{entry_id}")
        return result

    def halt(self, reason: str, *, scope: str = "system") -> dict[str, Any]:
        """Halt (signed by a person the charter names: this client's key); only the RI resumes it."""
        result: dict[str, Any] = self._call("POST", "/v1/control", _stop("halt", reason, scope))
        return result

    def pause(self, reason: str, *, scope: str = "system") -> dict[str, Any]:
        """Pause a scope (signed by a person the charter names); an operator or the RI resumes it."""
        result: dict[str, Any] = self._call("POST", "/v1/control", _stop("pause", reason, scope))
        return result

    def resume(self, reason: str, *, scope: str = "system") -> dict[str, Any]:
        """Lift the stops on ``scope`` now in force, signed here exactly as ``answerable resume``
        signs it (the charter must let this key's owner lift them)."""
        body = _resume(self.key, self._call("GET", "/v1/control"), scope, reason)
        result: dict[str, Any] = self._call("POST", "/v1/control/resume", body)
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


async def patiently(request: Callable[[], Awaitable[T]], patience: float) -> T:
    """``request()``, made again with back-off while the service cannot take it (unreachable:
    killed, starting again; or 503), for up to ``patience`` seconds. Only for a request that is
    safe to repeat: one the service recognises when it comes twice.

    Raises:
        ServiceRefused: any other refusal, or the last one once ``patience`` is spent.
    """
    deadline = time.monotonic() + patience
    pause = 0.1
    while True:
        try:
            return await request()
        except ServiceRefused as exc:
            if exc.status not in (0, 503) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(2 * pause, 2.0)


class AsyncClient:
    """The same calls for asyncio code (a framework's callback, an agent's event loop)."""

    def __init__(
        self, url: str, key: KeyPair, *, timeout: float = 90.0, verify: ssl.SSLContext | bool = True
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self._http = httpx.AsyncClient(timeout=timeout, transport=_AsyncTransport(verify=verify))

    async def _call(self, method: str, path: str, body: bytes = b"", **params: Any) -> Any:
        request = self._http.build_request(method, f"{self.url}{path}", params=params or None, content=body)
        _sign(self.key, request)
        return _answer(await self._http.send(request))

    async def submit(
        self,
        operation: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        causes: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", "/v1/intents", _submit_body(operation, arguments, idempotency_key, causes)
        )
        return result

    async def wait(self, intent_id: str, *, seconds: float = 30.0) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/v1/intents/{intent_id}", wait=seconds)
        return result

    async def post(self, path: str, doc: Mapping[str, Any]) -> Any:
        """A signed POST of a JSON document to a route the service's host added beside the API
        (a scenario's, a plug-in's); its answer, or ServiceRefused."""
        return await self._call("POST", path, orjson.dumps(dict(doc)))

    async def send(self, message: Message) -> dict[str, Any]:
        """Have the service record and publish a message this agent built; it is signed here
        (the receivers check that signature against the charter), then sent in a signed request.
        Sending the same message again is safe: it is recorded once."""
        signed_message = message if message.signature else sign(message, self.key)
        result: dict[str, Any] = await self._call("POST", "/v1/messages", entry_bytes(signed_message))
        return result

    async def ingest(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Record outside events (each ``topic``, ``source``, ``type``, ``payload``) and publish them."""
        result: dict[str, Any] = await self._call("POST", "/v1/events", orjson.dumps({"events": events}))
        return result

    async def receipt(self, intent_id: str, *, seconds: float = 0.0) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/v1/receipts/{intent_id}", wait=seconds)
        return result

    async def operations(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", "/v1/operations")
        return result

    async def reviews(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", "/v1/reviews")
        return result

    async def answer(
        self,
        review_id: str,
        verdict: str,
        reason: str,
        *,
        valid_for_seconds: int = 3600,
        simulated: bool = False,
    ) -> dict[str, Any]:
        review = await self._call("GET", f"/v1/reviews/{review_id}")
        approval = _approval(self.key, review, verdict, reason, valid_for_seconds, simulated)
        result: dict[str, Any] = await self._call("POST", f"/v1/reviews/{review_id}/answer", approval)
        return result

    async def why(self, entry_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/v1/why/{entry_id}")
        return result

    async def halt(self, reason: str, *, scope: str = "system") -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "/v1/control", _stop("halt", reason, scope))
        return result

    async def pause(self, reason: str, *, scope: str = "system") -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "/v1/control", _stop("pause", reason, scope))
        return result

    async def resume(self, reason: str, *, scope: str = "system") -> dict[str, Any]:
        body = _resume(self.key, await self._call("GET", "/v1/control"), scope, reason)
        result: dict[str, Any] = await self._call("POST", "/v1/control/resume", body)
        return result

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
