"""A client of ``answerable serve``, for agents in other processes: sync and async.

    from answerable.client import Client
    from answerable.keys import KeyPair

    agent = Client("http://127.0.0.1:8470", KeyPair.load("agent.key"))
    outcome = agent.submit("refund", {"order": "O-1", "amount_cents": 2500}, idempotency_key="refund-O-1")
    if not outcome["done"]:                      # waiting for a person
        outcome = agent.wait(outcome["intent_id"], seconds=30)

Every request is signed (RFC 9421) with the key, whose identity must be the agent's name (or a
person's, for ``halt`` and ``pause``) in the charter. A refused request raises
:class:`ServiceRefused` with the service's reason code.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from answerable.clock import IdSource, SystemClock
from answerable.errors import AnswerableError
from answerable.httpsig import sign_request
from answerable.keys import KeyPair
from answerable.review import unsigned_approval
from answerable.signing import sign

__all__ = ["AsyncClient", "Client", "ServiceRefused"]


class ServiceRefused(AnswerableError):
    """The service said no: ``status`` is the HTTP status, ``reason_code`` its stable code."""

    def __init__(self, status: int, reason_code: str, message: str) -> None:
        super().__init__(f"[{reason_code}] {message}")
        self.status = status
        self.reason_code = reason_code


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


def _answer(response: httpx.Response) -> Any:
    try:
        doc = response.json()
    except ValueError:
        doc = {"error": response.text[:200], "reason_code": "not_json"}
    if response.status_code >= 400:
        if not isinstance(doc, dict):
            doc = {"error": str(doc)[:200], "reason_code": "not_json"}
        raise ServiceRefused(response.status_code, str(doc.get("reason_code", "")), str(doc.get("error", "")))
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
    key: KeyPair, review: dict[str, Any], verdict: str, reason: str, valid_for_seconds: int
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
    )
    return orjson.dumps(sign(record, key).model_dump(mode="json"))


class Client:
    """A synchronous client; one per agent (or person) key."""

    def __init__(self, url: str, key: KeyPair, *, timeout: float = 90.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self._http = httpx.Client(timeout=timeout, transport=_Transport())

    def _post(self, path: str, body: bytes) -> Any:
        target = f"{self.url}{path}"
        headers = sign_request(self.key, "POST", target, body, created=int(time.time()))
        return _answer(
            self._http.post(target, content=body, headers={**headers, "Content-Type": "application/json"})
        )

    def submit(
        self,
        operation: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        causes: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Propose an intent; its outcome, or ``done: false`` while it waits for a review."""
        result: dict[str, Any] = self._post(
            "/v1/intents", _submit_body(operation, arguments, idempotency_key, causes)
        )
        return result

    def wait(self, intent_id: str, *, seconds: float = 30.0) -> dict[str, Any]:
        """The intent's status once final, or as it stands after ``seconds`` (the service long-polls)."""
        result: dict[str, Any] = _answer(
            self._http.get(f"{self.url}/v1/intents/{intent_id}", params={"wait": seconds})
        )
        return result

    def reviews(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = _answer(self._http.get(f"{self.url}/v1/reviews"))
        return result

    def answer(
        self, review_id: str, verdict: str, reason: str, *, valid_for_seconds: int = 3600
    ) -> dict[str, Any]:
        """Approve or deny a review as this client's key's owner (a reviewer), signed here exactly
        as ``answerable approve`` signs it; the service checks it and acts within a second."""
        review = _answer(self._http.get(f"{self.url}/v1/reviews/{review_id}"))
        approval = _approval(self.key, review, verdict, reason, valid_for_seconds)
        result: dict[str, Any] = self._post(f"/v1/reviews/{review_id}/answer", approval)
        return result

    def halt(self, reason: str, *, scope: str = "system") -> dict[str, Any]:
        """Halt (signed by a person the charter names: this client's key)."""
        result: dict[str, Any] = self._post(
            "/v1/control", orjson.dumps({"action": "halt", "reason": reason, "scope": scope})
        )
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncClient:
    """The same calls for asyncio code (a framework's callback, an agent's event loop)."""

    def __init__(self, url: str, key: KeyPair, *, timeout: float = 90.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self._http = httpx.AsyncClient(timeout=timeout, transport=_AsyncTransport())

    async def _post(self, path: str, body: bytes) -> Any:
        target = f"{self.url}{path}"
        headers = sign_request(self.key, "POST", target, body, created=int(time.time()))
        response = await self._http.post(
            target, content=body, headers={**headers, "Content-Type": "application/json"}
        )
        return _answer(response)

    async def submit(
        self,
        operation: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        causes: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._post(
            "/v1/intents", _submit_body(operation, arguments, idempotency_key, causes)
        )
        return result

    async def wait(self, intent_id: str, *, seconds: float = 30.0) -> dict[str, Any]:
        response = await self._http.get(f"{self.url}/v1/intents/{intent_id}", params={"wait": seconds})
        result: dict[str, Any] = _answer(response)
        return result

    async def reviews(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = _answer(await self._http.get(f"{self.url}/v1/reviews"))
        return result

    async def answer(
        self, review_id: str, verdict: str, reason: str, *, valid_for_seconds: int = 3600
    ) -> dict[str, Any]:
        review = _answer(await self._http.get(f"{self.url}/v1/reviews/{review_id}"))
        approval = _approval(self.key, review, verdict, reason, valid_for_seconds)
        result: dict[str, Any] = await self._post(f"/v1/reviews/{review_id}/answer", approval)
        return result

    async def halt(self, reason: str, *, scope: str = "system") -> dict[str, Any]:
        result: dict[str, Any] = await self._post(
            "/v1/control", orjson.dumps({"action": "halt", "reason": reason, "scope": scope})
        )
        return result

    async def aclose(self) -> None:
        await self._http.aclose()
