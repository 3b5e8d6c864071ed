"""A client of ``answerable serve``, for agents in other processes: sync and async.

    from answerable.client import Client
    from answerable.keys import KeyPair

    agent = Client("http://127.0.0.1:8470", KeyPair.load("agent.key"))
    outcome = agent.submit("refund", {"order": "O-1", "amount_cents": 2500}, idempotency_key="refund-O-1")
    if not outcome["done"]:                      # waiting for a person
        outcome = agent.wait(outcome["intent_id"], seconds=30)

Every request, reads included, is signed (RFC 9421) with the key, whose identity must be the
agent's name (or a person's, for ``answer``, ``halt``, ``pause`` and ``resume``) in the charter.
A refused request raises :class:`ServiceRefused` with the service's reason code. What cannot be
sent at all is refused here, before anything is sent, as the in-process gateway refuses it:
arguments with no JSON form (:class:`~answerable.errors.ArgumentsInvalid`), an id no entry can
have (:class:`~answerable.errors.RecordInvalid`), a service URL that does not parse
(:class:`~answerable.errors.ConfigError`), a client already closed (:class:`ClientClosed`).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import orjson

from answerable._canonical import json_problems
from answerable._urls import problem as url_problem
from answerable._urls import shown
from answerable.clock import IdSource, SystemClock
from answerable.control import scope_from_text, unsigned_control
from answerable.errors import AnswerableError, ApprovalRefused, ArgumentsInvalid, ConfigError, RecordInvalid
from answerable.httpsig import sign_request
from answerable.keys import KeyPair
from answerable.records import Message, Scope, entry_bytes
from answerable.review import unsigned_approval
from answerable.signing import sign

__all__ = ["AsyncClient", "Client", "ClientClosed", "ServiceRefused", "patiently"]

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


class ClientClosed(AnswerableError):
    """A call on a client after its ``close()`` (or the end of its ``with`` block): its
    connections are gone, so nothing was sent. Make a new client."""

    def __init__(self) -> None:
        super().__init__("this client is closed (close() or its with block ended): make a new one")


_SHOWN_ID = 64
"""The characters of an id a message quotes: enough to recognise it, not a megabyte of it."""


def _kind(value: object) -> str:
    """What ``value`` is, for a message that refuses it without quoting it."""
    return "None" if value is None else f"a {type(value).__name__}"


def _cut(text: str) -> str:
    """``text`` quoted for a message, cut to its first :data:`_SHOWN_ID` characters."""
    return f"{text[:_SHOWN_ID]!r}{'...' if len(text) > _SHOWN_ID else ''}"


def _settings(key: object, timeout: object, verify: object) -> KeyPair:
    """``key``, once the client's settings are ones it can use: otherwise every call failed with a
    raw AttributeError (no key), TypeError or ValueError (a timeout of "x" or -1), and a CA file's
    path given as ``verify`` (as another HTTP library takes it) was a FileNotFoundError.

    Raises:
        ConfigError: naming the setting.
    """
    if not isinstance(key, KeyPair):
        raise ConfigError(f"a client signs with a KeyPair (KeyPair.load(FILE)), not {_kind(key)}")
    if (
        timeout is not None
        and not isinstance(timeout, httpx.Timeout)
        and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < float("inf")  # NaN too
        )
    ):
        raise ConfigError(f"timeout is seconds above 0 (None: none; or an httpx.Timeout), not {timeout!r}")
    if not isinstance(verify, bool | ssl.SSLContext):
        raise ConfigError(
            "verify is True, False or an ssl.SSLContext "
            f"(ssl.create_default_context(cafile=...) for a CA file), not {_kind(verify)}"
        )
    return key


def _service_url(url: object) -> str:
    """``url`` without its trailing slash, refused now if no request could be made from it: a
    bad port or host would otherwise surface on the first call as a raw ``ValueError`` or
    ``httpx.InvalidURL``. Messages show it through :func:`shown`, so its credentials never do.

    Raises:
        ConfigError: not an http(s) URL with a host, a port in range, and no query or fragment
            (each call's path is appended to it).
    """
    if not isinstance(url, str):
        raise ConfigError(f"the service URL must be a string like http://127.0.0.1:8470, not {_kind(url)}")
    fix = "give http(s)://HOST[:PORT][/PATH], as answerable serve prints it"
    wrong = url_problem(url)
    if wrong is not None:
        raise ConfigError(f"the service URL {shown(url)}: {wrong}; {fix}")
    try:
        httpx.URL(url)
    except httpx.InvalidURL:
        raise ConfigError(f"the service URL is malformed: {shown(url)}; {fix}") from None
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigError(
            f"the service URL has a query or fragment, which each call's path would follow: "
            f"{shown(url)}; {fix}"
        )
    return url.rstrip("/")


def _segment(value: object, what: str, record: str) -> str:
    """``value`` as one percent-encoded URL path segment, so an id is only ever an id: unquoted,
    ``../reviews`` read the reviews list and ``a?b=c`` asked for entry ``a``.

    Raises:
        RecordInvalid: not a string, empty, ``.`` or ``..`` (which a URL resolves away), or
            holding a lone surrogate or control character (no URL carries it); no id is any of
            these, so nothing is sent.
    """
    if not isinstance(value, str):
        raise RecordInvalid(f"{what} must be a string, not {_kind(value)}", record=record)
    problem = ""
    if value in ("", ".", ".."):
        problem = "names nothing"
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            problem = f"holds a lone surrogate at position {exc.start}, which no URL carries"
        else:
            bad = next((i for i, c in enumerate(value) if not c.isprintable()), None)
            if bad is not None:
                problem = f"holds a control character at position {bad}, which no id has"
    if problem:
        raise RecordInvalid(f"{what} {_cut(value)} {problem}; nothing was sent", record=record)
    return quote(value, safe="")


def _encoded(doc: Any) -> bytes | list[str]:
    """``doc`` as the JSON a request carries, or what in it is not JSON, up to three: NaN and
    infinities (which orjson would quietly write as ``null``), lone surrogates, sets, bytes,
    non-string keys, integers no JSON reader holds. orjson's own ``TypeError`` names no path, and
    what only it refuses (a key of a ``str`` subclass) is named at the root."""
    found = json_problems(doc, strict=False, limit=3)
    if found:
        return found
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError as exc:
        return json_problems(doc, strict=True, limit=3) or [f"(root): {exc}"]


def _json_body(doc: Any, what: str, record: str) -> bytes:
    """``doc`` as JSON (see :func:`_encoded`).

    Raises:
        RecordInvalid: ``doc`` has no JSON form; nothing is sent.
    """
    encoded = _encoded(doc)
    if isinstance(encoded, bytes):
        return encoded
    raise RecordInvalid(f"{what}: no JSON form, so nothing was sent: {'; '.join(encoded)}", record=record)


def _submit_body(
    operation: str, arguments: dict[str, Any], idempotency_key: str | None, causes: tuple[str, ...]
) -> bytes:
    """The body of a proposal. Arguments with no JSON form are refused here as the in-process
    gateway refuses them (ArgumentsInvalid, naming each path), not as orjson's bare TypeError;
    they are encoded once, and set in the body as they are.

    Raises:
        ArgumentsInvalid: the arguments have no JSON form.
        RecordInvalid: the operation's name, the idempotency key or the causes have none, or
            the causes are not a list or tuple of ids (a string would be sent as its letters).
    """
    if isinstance(causes, str) or not isinstance(causes, list | tuple):
        raise RecordInvalid(
            f"the causes of an intent are a tuple of entry ids, not {_kind(causes)}",
            record="Intent",
        )
    named = operation if isinstance(operation, str) else repr(operation)
    encoded = _encoded(arguments)
    if not isinstance(encoded, bytes):
        raise ArgumentsInvalid(named, tuple(encoded))
    rest = {"operation": operation, "idempotency_key": idempotency_key, "causes": list(causes)}
    _json_body(rest, f"the intent for {named!r}", "Intent")  # named by its own fields, not the arguments'
    return orjson.dumps({**rest, "arguments": orjson.Fragment(encoded)})


def _sign(key: KeyPair, request: httpx.Request) -> None:
    """Add the RFC 9421 signature headers over the request as it will be sent."""
    body = request.content
    request.headers.update(
        sign_request(key, request.method, str(request.url), body, created=int(time.time()))
    )
    if body:
        request.headers["Content-Type"] = "application/json"


_NOT_JSON = object()


def _answer(response: httpx.Response) -> Any:
    """The service's JSON answer, or ServiceRefused for anything else: a refusal, and also a 3xx
    or a body that is not JSON, which no route gives (an empty id once came back as the 307 of
    a framework's redirect, and was returned as if it were the intent)."""
    status = response.status_code
    try:
        doc = response.json()
    except ValueError:  # json's errors and UnicodeDecodeError both are
        doc = _NOT_JSON
    if 200 <= status < 300 and doc is not _NOT_JSON:
        return doc
    if isinstance(doc, dict):
        raise ServiceRefused(status, str(doc.get("reason_code", "")), str(doc.get("error", "")), doc)
    said = " ".join((response.text if doc is _NOT_JSON else str(doc)).split())[:200]
    message = f"HTTP {status} {response.reason_phrase}, not a JSON answer" + (f": {said}" if said else "")
    raise ServiceRefused(status, "not_json", message, {"error": message, "reason_code": "not_json"})


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


def _request(
    http: httpx.Client | httpx.AsyncClient, method: str, url: str, body: bytes, params: Any
) -> httpx.Request:
    """The request to send, or a typed refusal: a closed client's ``send`` raises a bare
    RuntimeError, and a URL httpx cannot build raises its own errors. Ids are checked before
    they reach here (see :func:`_segment`); this is for what is left (a host's route, say)."""
    if http.is_closed:
        raise ClientClosed
    try:
        return http.build_request(method, url, params=params or None, content=body)
    except (httpx.InvalidURL, UnicodeEncodeError) as exc:
        raise RecordInvalid(
            f"{method} request not sent: its path is not one a URL can carry ({type(exc).__name__})",
            record="request",
        ) from None


def _answer_checked(review_id: object, reason: object) -> str:
    """The review's path segment, once what the answer is signed with is of a kind it can be:
    checked before the review is read, so a bad answer sends nothing (its validity is checked
    where the answer is made, :func:`~answerable.review.unsigned_approval`).

    Raises:
        RecordInvalid: a review id no review has (see :func:`_segment`).
        ApprovalRefused: a reason that is not text (``missing_reason``).
    """
    segment = _segment(review_id, "review id", "Approval")
    if not isinstance(reason, str):
        raise ApprovalRefused(
            f"review {_cut(segment)}: an answer needs a reason, as text, not {_kind(reason)}",
            reason_code="missing_reason",
            review_id=str(review_id),
        )
    return segment


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
    return _json_body(sign(record, key).model_dump(mode="json"), "the approval", "Approval")


def _resume_scope(scope: object, reason: object) -> Scope:
    """The scope a resume lifts, parsed before the stops are read, so a bad resume sends nothing.

    Raises:
        ConfigError: a scope that is not text, or not one of the forms :func:`scope_from_text` reads.
        RecordInvalid: a reason that is not text.
    """
    if not isinstance(scope, str):
        raise ConfigError(f"a scope is text (system, agent:NAME ...), not {_kind(scope)}")
    if not isinstance(reason, str):
        raise RecordInvalid(f"a resume needs a reason, as text, not {_kind(reason)}", record="Control")
    return scope_from_text(scope)


def _resume(key: KeyPair, stops: dict[str, Any], parsed: Scope, reason: str) -> bytes:
    """A resume of ``parsed`` naming the stops on it the service reported, signed by ``key``."""
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
    return _json_body(sign(record, key).model_dump(mode="json"), "the resume", "Control")


def _stop(action: str, reason: str, scope: str) -> bytes:
    return _json_body({"action": action, "reason": reason, "scope": scope}, f"the {action}", "Control")


class Client:
    """A synchronous client; one per agent (or person) key."""

    def __init__(
        self,
        url: str,
        key: KeyPair,
        *,
        timeout: float | httpx.Timeout | None = 90.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        """``verify``: for an https URL, the TLS context that trusts the service's certificate
        (``ssl.create_default_context(cafile=...)`` for one of your own); the system's by default.

        Raises:
            ConfigError: ``url`` is not an http(s) URL a request can be made from (shown
                without its credentials).
        """
        self.url = _service_url(url)
        self.key = _settings(key, timeout, verify)
        self._http = httpx.Client(timeout=timeout, transport=_Transport(verify=verify))

    def _call(self, method: str, path: str, body: bytes = b"", **params: Any) -> Any:
        request = _request(self._http, method, f"{self.url}{path}", body, params)
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
        path = f"/v1/intents/{_segment(intent_id, 'intent id', 'Intent')}"
        result: dict[str, Any] = self._call("GET", path, wait=seconds)
        return result

    def receipt(self, intent_id: str, *, seconds: float = 0.0) -> dict[str, Any]:
        """The receipt of a final intent's call (``answerable receipt verify`` checks it offline),
        waiting up to ``seconds`` for the intent to be final."""
        path = f"/v1/receipts/{_segment(intent_id, 'intent id', 'Intent')}"
        result: dict[str, Any] = self._call("GET", path, wait=seconds)
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
        segment = _answer_checked(review_id, reason)
        review = self._call("GET", f"/v1/reviews/{segment}")
        approval = _approval(self.key, review, verdict, reason, valid_for_seconds, simulated)
        result: dict[str, Any] = self._call("POST", f"/v1/reviews/{segment}/answer", approval)
        return result

    def why(self, entry_id: str) -> dict[str, Any]:
        """The causal chain of a ledger entry (``answerable why --json`` shows the same)."""
        result: dict[str, Any] = self._call("GET", f"/v1/why/{_segment(entry_id, 'entry id', 'entry')}")
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
        parsed = _resume_scope(scope, reason)
        body = _resume(self.key, self._call("GET", "/v1/control"), parsed, reason)
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
        self,
        url: str,
        key: KeyPair,
        *,
        timeout: float | httpx.Timeout | None = 90.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        """As :class:`Client`'s."""
        self.url = _service_url(url)
        self.key = _settings(key, timeout, verify)
        self._http = httpx.AsyncClient(timeout=timeout, transport=_AsyncTransport(verify=verify))

    async def _call(self, method: str, path: str, body: bytes = b"", **params: Any) -> Any:
        request = _request(self._http, method, f"{self.url}{path}", body, params)
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
        path = f"/v1/intents/{_segment(intent_id, 'intent id', 'Intent')}"
        result: dict[str, Any] = await self._call("GET", path, wait=seconds)
        return result

    async def post(self, path: str, doc: Mapping[str, Any]) -> Any:
        """A signed POST of a JSON document to a route the service's host added beside the API
        (a scenario's, a plug-in's); its answer, or ServiceRefused."""
        if not isinstance(path, str) or not path.startswith("/"):
            given = _cut(path) if isinstance(path, str) else _kind(path)
            raise RecordInvalid(
                f"a route's path is a string starting with '/', not {given}", record="request"
            )
        return await self._call(
            "POST", path, _json_body(dict(doc), f"the document for {_cut(path)}", "request")
        )

    async def send(self, message: Message) -> dict[str, Any]:
        """Have the service record and publish a message this agent built; it is signed here
        (the receivers check that signature against the charter), then sent in a signed request.
        Sending the same message again is safe: it is recorded once."""
        signed_message = message if message.signature else sign(message, self.key)
        result: dict[str, Any] = await self._call("POST", "/v1/messages", entry_bytes(signed_message))
        return result

    async def ingest(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Record outside events (each ``topic``, ``source``, ``type``, ``payload``) and publish them."""
        body = _json_body({"events": events}, "the events", "Event")
        result: dict[str, Any] = await self._call("POST", "/v1/events", body)
        return result

    async def receipt(self, intent_id: str, *, seconds: float = 0.0) -> dict[str, Any]:
        path = f"/v1/receipts/{_segment(intent_id, 'intent id', 'Intent')}"
        result: dict[str, Any] = await self._call("GET", path, wait=seconds)
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
        segment = _answer_checked(review_id, reason)
        review = await self._call("GET", f"/v1/reviews/{segment}")
        approval = _approval(self.key, review, verdict, reason, valid_for_seconds, simulated)
        result: dict[str, Any] = await self._call("POST", f"/v1/reviews/{segment}/answer", approval)
        return result

    async def why(self, entry_id: str) -> dict[str, Any]:
        path = f"/v1/why/{_segment(entry_id, 'entry id', 'entry')}"
        result: dict[str, Any] = await self._call("GET", path)
        return result

    async def halt(self, reason: str, *, scope: str = "system") -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "/v1/control", _stop("halt", reason, scope))
        return result

    async def pause(self, reason: str, *, scope: str = "system") -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "/v1/control", _stop("pause", reason, scope))
        return result

    async def resume(self, reason: str, *, scope: str = "system") -> dict[str, Any]:
        parsed = _resume_scope(scope, reason)
        body = _resume(self.key, await self._call("GET", "/v1/control"), parsed, reason)
        result: dict[str, Any] = await self._call("POST", "/v1/control/resume", body)
        return result

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
