"""The partner HTTP services the logistics world acts on: a carrier and a warehouse operator.

Each service is a FastAPI app built by a factory over a state object that keeps the service's own
account of what it was asked (``requests``) and what it did (``records``), so a test can hold the
world's account against the ledger's. They behave like real partner APIs: an ``Idempotency-Key``
header is required on every POST, a retry with the same key and body replays the original answer
without a second effect, and the same key with other arguments is refused.

Timeouts are answered, not slept: a :class:`FaultPlan` makes a POST answer ``504 Gateway Timeout``
either before its effect or after it, which is what a client behind a load balancer really sees
when the upstream is slow, and it keeps tests free of sleeps (``httpx.ASGITransport`` ignores client
timeouts, so a handler that hung would hang the test). The 504 body never says whether the effect
happened; only ``state.requests`` does. In-process use::

    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://carrier")

and :func:`serve` runs an app under uvicorn on loopback for tests that need a real socket.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from answerable import Clock, SystemClock

__all__ = [
    "Booking",
    "BookingRequest",
    "CarrierState",
    "Dispatch",
    "DispatchLine",
    "DispatchRequest",
    "EffectRecord",
    "FaultPlan",
    "RequestRecord",
    "TimeoutAt",
    "Transfer",
    "TransferRequest",
    "WarehouseState",
    "make_carrier_app",
    "make_warehouse_app",
    "serve",
]

TimeoutAt = Literal["before_effect", "after_effect"]
"""Where a request times out: before the service acted, or after it acted but before it answered."""

# Strict so that ``true`` is not a day and ``"3"`` not a quantity; strings are strict in v2 anyway.
_Count = Annotated[int, Field(strict=True, ge=0)]
_Positive = Annotated[int, Field(strict=True, gt=0)]
_Name = Annotated[str, Field(min_length=1)]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BookingRequest(_Body):
    """``POST /bookings``: put one truck on one route for one day."""

    route_id: _Name
    region: _Name
    day: _Count
    truck: _Name
    stops: tuple[_Name, ...] = Field(min_length=1)
    distance: _Count
    """Whole kilometres."""


class Booking(_Body):
    """What the carrier answers for a booking it made."""

    booking_id: str
    route_id: str
    cost: int
    """Integer cents: no floats in anything the ledger may hash."""


class DispatchLine(_Body):
    """One SKU, how many, and where it goes."""

    sku: _Name
    qty: _Positive
    to: _Name


class DispatchRequest(_Body):
    """``POST /dispatches``: ship stock out of one warehouse, all lines or none."""

    dispatch_id: _Name
    warehouse: _Name
    day: _Count
    lines: tuple[DispatchLine, ...] = Field(min_length=1)


class Dispatch(_Body):
    """What the warehouse operator answers for a dispatch it made."""

    reference: str
    dispatch_id: str
    warehouse: str
    units: int


class TransferRequest(_Body):
    """``POST /transfers``: move stock of one SKU between two warehouses."""

    transfer_id: _Name
    source: _Name = Field(alias="from")
    """``from`` on the wire; a Python keyword, hence the alias."""
    to: _Name
    sku: _Name
    qty: _Positive

    @model_validator(mode="after")
    def _distinct(self) -> TransferRequest:
        if self.source == self.to:
            raise ValueError(f"a transfer needs two warehouses; both are {self.to!r}")
        return self


class Transfer(_Body):
    """What the warehouse operator answers for a transfer it made."""

    reference: str
    transfer_id: str
    sku: str
    qty: int


_Request = BookingRequest | DispatchRequest | TransferRequest
_Response = Booking | Dispatch | Transfer
_Kind = Literal["booking", "dispatch", "transfer"]


@dataclass(frozen=True, slots=True)
class EffectRecord:
    """One thing a service did, written once when it did it and never on a replay."""

    seq: int
    kind: _Kind
    key: str
    """The Idempotency-Key it was done under."""
    body: _Request
    response: _Response
    at_ns: int


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the service saw it, including what it did not tell the client."""

    method: str
    path: str
    key: str | None
    status: int
    """What the client received."""
    error: str | None
    """The ``error`` code in the body the client received, if any."""
    applied: bool
    """This request made a new effect (true for an after-effect timeout, which the client cannot tell)."""
    replayed: bool
    timeout: TimeoutAt | None
    at_ns: int


class FaultPlan:
    """Which POSTs time out, fixed in advance so that a run reproduces.

    One draw per POST that reaches the service's logic (it carries a key and a valid body): first
    from ``script`` in order, then, once the script is spent, from ``rng`` with probabilities
    ``before`` and ``after``; with no ``rng`` every later request goes through. Lookups never fail.
    """

    def __init__(
        self,
        script: Iterable[TimeoutAt | None] = (),
        *,
        rng: random.Random | None = None,
        before: float = 0.0,
        after: float = 0.0,
    ) -> None:
        if before < 0 or after < 0 or before + after > 1:
            raise ValueError(f"fault probabilities must be >= 0 and sum to <= 1, got {before} and {after}")
        if (before or after) and rng is None:
            raise ValueError("a probabilistic FaultPlan needs a seeded random.Random as rng")
        self._script: deque[TimeoutAt | None] = deque(script)
        self._rng = rng
        self._before = before
        self._after = after

    def draw(self) -> TimeoutAt | None:
        """The fault for the next POST, or None for a clean answer."""
        if self._script:
            return self._script.popleft()
        if self._rng is None:
            return None
        x = self._rng.random()
        if x < self._before:
            return "before_effect"
        if x < self._before + self._after:
            return "after_effect"
        return None


@dataclass(kw_only=True, eq=False)
class _ServiceState:
    faults: FaultPlan = field(default_factory=FaultPlan)
    clock: Clock = field(default_factory=SystemClock)
    records: list[EffectRecord] = field(default_factory=list)
    """Append-only: what the service did, each effect once."""
    requests: list[RequestRecord] = field(default_factory=list)
    """Append-only: every request received, retries and refusals included."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    """A threading lock, not an asyncio one: the app may run on the test's loop (ASGITransport) or
    on uvicorn's loop in another thread while a simulator changes capacity or stock from this one.
    Handlers hold it only around synchronous code, so it never blocks a loop for long."""
    _by_key: dict[str, EffectRecord] = field(default_factory=dict, init=False, repr=False)
    fence: int = 0
    """The highest gateway lease epoch seen in a ``Fencing-Token`` header: an older one is a
    deposed gateway that woke up, and its request is refused before anything else."""

    def effect(self, key: str) -> EffectRecord | None:
        """The effect made under ``key``, if any."""
        with self.lock:
            return self._by_key.get(key)


@dataclass(kw_only=True, eq=False)
class CarrierState(_ServiceState):
    """A carrier: trucks per region and day, and the bookings against them."""

    capacity: dict[tuple[str, int], int] = field(default_factory=dict)
    """Trucks available per (region, day); a storm lowers it. Hold ``lock`` to change it while serving."""
    default_capacity: int | None = None
    """Trucks for a (region, day) not in ``capacity``; None means no limit."""
    cents_per_km: int = 120
    cents_per_stop: int = 1500


@dataclass(kw_only=True, eq=False)
class WarehouseState(_ServiceState):
    """A warehouse operator: stock per (warehouse, SKU), and which sites are offline.

    Hold ``lock`` to change stock or ``offline`` while the app is served from another thread.
    """

    stock: dict[tuple[str, str], int] = field(default_factory=dict)
    warehouses: set[str] = field(default_factory=set)
    """Known sites; every warehouse named in ``stock`` is added."""
    skus: set[str] = field(default_factory=set)
    """The catalogue; every SKU named in ``stock`` is added."""
    offline: set[str] = field(default_factory=set)
    outages: dict[str, int] = field(default_factory=dict)
    """Warehouses whose systems are down for their next N requests (503 each), then back."""

    def __post_init__(self) -> None:
        self.warehouses |= {w for w, _ in self.stock}
        self.skus |= {s for _, s in self.stock}


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    error: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.detail}


_Req = TypeVar("_Req", BookingRequest, DispatchRequest, TransferRequest)
_Apply = Callable[[_Req, int], "_Refusal | _Response"]


def _respond(
    state: _ServiceState,
    request: Request,
    key: str | None,
    status: int,
    payload: dict[str, Any],
    *,
    applied: bool = False,
    replayed: bool = False,
    timeout: TimeoutAt | None = None,
) -> JSONResponse:
    """Log the request as sent and build the answer; call with ``state.lock`` held."""
    state.requests.append(
        RequestRecord(
            method=request.method,
            path=request.url.path,
            key=key,
            status=status,
            error=payload.get("error") if status >= 400 else None,
            applied=applied,
            replayed=replayed,
            timeout=timeout,
            at_ns=state.clock.now_ns(),
        )
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(payload, status_code=status, headers=headers)


def _timeout_body(collection: str, key: str) -> dict[str, Any]:
    return {
        "error": "timeout",
        "message": (
            "the service did not answer in time; the request may or may not have taken effect: "
            f"retry with the same Idempotency-Key or GET /{collection}/{key}"
        ),
    }


def _stale_fence(state: _ServiceState, header: str | None) -> _Refusal | None:
    """Refuse a token older than the newest seen; remember a newer one. Called under the lock."""
    if header is None:
        return None
    try:
        epoch = int(header)
    except ValueError:
        why = f"Fencing-Token {header[:40]!r} is not an integer epoch"
        return _Refusal(400, "invalid_fencing_token", why)
    if epoch < state.fence:
        return _Refusal(
            409,
            "stale_fencing_token",
            f"Fencing-Token {epoch} is older than {state.fence}: another gateway has taken over",
            {"fence": state.fence},
        )
    state.fence = epoch
    return None


async def _post(
    state: _ServiceState,
    request: Request,
    kind: _Kind,
    collection: str,
    model: type[_Req],
    apply: _Apply[_Req],
) -> JSONResponse:
    """The idempotent POST every endpoint shares: key, validation, replay, fault, effect."""
    raw = await request.body()
    key = request.headers.get("idempotency-key") or None
    with state.lock:
        if key is None:
            refusal = _Refusal(
                400,
                "missing_idempotency_key",
                f"POST /{collection} needs an Idempotency-Key header; send a fresh unique key per "
                "request and the same key on every retry of it",
            )
            return _respond(state, request, None, refusal.status, refusal.body())
        stale = _stale_fence(state, request.headers.get("fencing-token"))
        if stale is not None:
            return _respond(state, request, key, stale.status, stale.body())
        try:
            body = model.model_validate_json(raw)
        except ValidationError as exc:
            problems = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False)
            ]
            refusal = _Refusal(
                422,
                "invalid_request",
                f"the body of POST /{collection} does not match {model.__name__}",
                {"detail": problems},
            )
            return _respond(state, request, key, refusal.status, refusal.body())

        timeout = state.faults.draw()
        if timeout == "before_effect":
            return _respond(state, request, key, 504, _timeout_body(collection, key), timeout=timeout)

        earlier = state._by_key.get(key)
        applied = replayed = False
        if earlier is not None and earlier.kind == kind and earlier.body == body:
            status, payload, replayed = 200, _dump(earlier.response), True
        elif earlier is not None:
            refusal = _Refusal(
                422,
                "idempotency_key_reused",
                f"Idempotency-Key {key!r} was first used for a {earlier.kind} with other arguments; "
                "use a new key for a new request",
                {"key": key},
            )
            status, payload = refusal.status, refusal.body()
        else:
            result = apply(body, len(state.records) + 1)
            if isinstance(result, _Refusal):
                # Refusals are not stored under the key: nothing happened, so a retry is judged afresh.
                status, payload = result.status, result.body()
            else:
                record = EffectRecord(
                    seq=len(state.records) + 1,
                    kind=kind,
                    key=key,
                    body=body,
                    response=result,
                    at_ns=state.clock.now_ns(),
                )
                state.records.append(record)
                state._by_key[key] = record
                status, payload, applied = 201, _dump(result), True

        if timeout == "after_effect":
            status, payload = 504, _timeout_body(collection, key)
        return _respond(
            state, request, key, status, payload, applied=applied, replayed=replayed, timeout=timeout
        )


def _lookup(state: _ServiceState, request: Request, kind: _Kind, key: str) -> JSONResponse:
    """``GET /{collection}/{key}``: the effect made under a key, for recovery after a lost answer."""
    with state.lock:
        record = state._by_key.get(key)
        if record is None or record.kind != kind:
            payload = {"error": "not_found", "message": f"no {kind} was made under Idempotency-Key {key!r}"}
            return _respond(state, request, key, 404, payload)
        return _respond(state, request, key, 200, _dump(record.response))


def _dump(response: _Response) -> dict[str, Any]:
    return response.model_dump(mode="json", by_alias=True)


# --- carrier ------------------------------------------------------------------------------------


def make_carrier_app(state: CarrierState) -> FastAPI:
    """The carrier's API over ``state``.

    ``POST /bookings`` answers 201 with a :class:`Booking`; 200 and ``Idempotent-Replayed: true``
    for a retry; 400 ``missing_idempotency_key``; 422 ``invalid_request`` or
    ``idempotency_key_reused``; 409 ``double_booking`` (that truck is booked that day) or
    ``capacity`` (no trucks left in that region that day); 504 ``timeout`` from the fault plan.
    ``GET /bookings/{key}`` answers the booking made under the key, or 404 ``not_found``.
    """
    app = FastAPI(title="carrier")

    def book(body: BookingRequest, seq: int) -> _Refusal | Booking:
        booked = [
            (r.body, r.response)
            for r in state.records
            if isinstance(r.body, BookingRequest) and isinstance(r.response, Booking)
        ]
        holder = next((done for b, done in booked if (b.truck, b.day) == (body.truck, body.day)), None)
        if holder is not None:
            return _Refusal(
                409,
                "double_booking",
                f"truck {body.truck} is already booked on day {body.day} ({holder.booking_id}); "
                "pick another truck or day",
                {"truck": body.truck, "day": body.day, "booking_id": holder.booking_id},
            )
        limit = state.capacity.get((body.region, body.day), state.default_capacity)
        taken = sum(1 for b, _ in booked if (b.region, b.day) == (body.region, body.day))
        if limit is not None and taken >= limit:
            return _Refusal(
                409,
                "capacity",
                f"no trucks left in {body.region} on day {body.day} ({taken} of {limit} booked); "
                "try another day or region",
                {"region": body.region, "day": body.day, "capacity": limit},
            )
        cost = body.distance * state.cents_per_km + len(body.stops) * state.cents_per_stop
        return Booking(booking_id=f"BK-{seq:05d}", route_id=body.route_id, cost=cost)

    @app.post("/bookings")
    async def post_booking(request: Request) -> JSONResponse:
        return await _post(state, request, "booking", "bookings", BookingRequest, book)

    @app.get("/bookings/{key}")
    async def get_booking(request: Request, key: str) -> JSONResponse:
        return _lookup(state, request, "booking", key)

    return app


# --- warehouse ----------------------------------------------------------------------------------


def make_warehouse_app(state: WarehouseState) -> FastAPI:
    """The warehouse operator's API over ``state``.

    ``POST /dispatches`` and ``POST /transfers`` answer 201 with a :class:`Dispatch` or
    :class:`Transfer`, with the carrier's idempotency answers (200 replay, 400, 422, 504). Their
    refusals, checked in this order and never leaving a partial effect: 404 ``unknown_warehouse``,
    422 ``unknown_sku``, 503 ``offline``, 409 ``insufficient_stock`` (naming the ``sku``).
    ``GET /dispatches/{key}`` and ``GET /transfers/{key}`` look an effect up by key.
    """
    app = FastAPI(title="warehouse")

    def known(*names: str) -> _Refusal | None:
        for name in names:
            if name not in state.warehouses:
                return _Refusal(404, "unknown_warehouse", f"no warehouse named {name!r}", {"warehouse": name})
        return None

    def catalogued(skus: Iterable[str]) -> _Refusal | None:
        unknown = sorted(set(skus) - state.skus)
        if unknown:
            return _Refusal(
                422, "unknown_sku", f"SKU {unknown[0]!r} is not in the catalogue", {"sku": unknown[0]}
            )
        return None

    def online(*names: str) -> _Refusal | None:
        for name in names:
            if state.outages.get(name, 0) > 0:
                state.outages[name] -= 1
                return _Refusal(
                    503, "offline", f"warehouse {name} is offline; retry later", {"warehouse": name}
                )
            if name in state.offline:
                return _Refusal(
                    503, "offline", f"warehouse {name} is offline; retry later", {"warehouse": name}
                )
        return None

    def enough(warehouse: str, wanted: Counter[str]) -> _Refusal | None:
        for sku, qty in sorted(wanted.items()):
            have = state.stock.get((warehouse, sku), 0)
            if have < qty:
                return _Refusal(
                    409,
                    "insufficient_stock",
                    f"{warehouse} holds {have} of {sku}, {qty} asked; nothing was moved",
                    {"sku": sku, "warehouse": warehouse, "available": have, "requested": qty},
                )
        return None

    def dispatch(body: DispatchRequest, seq: int) -> _Refusal | Dispatch:
        wanted: Counter[str] = Counter()
        for line in body.lines:
            wanted[line.sku] += line.qty
        refusal = (
            known(body.warehouse)
            or catalogued(wanted)
            or online(body.warehouse)
            or enough(body.warehouse, wanted)
        )
        if refusal is not None:
            return refusal
        for sku, qty in wanted.items():
            state.stock[(body.warehouse, sku)] -= qty
        return Dispatch(
            reference=f"DS-{seq:05d}",
            dispatch_id=body.dispatch_id,
            warehouse=body.warehouse,
            units=sum(wanted.values()),
        )

    def transfer(body: TransferRequest, seq: int) -> _Refusal | Transfer:
        refusal = (
            known(body.source, body.to)
            or catalogued([body.sku])
            or online(body.source, body.to)
            or enough(body.source, Counter({body.sku: body.qty}))
        )
        if refusal is not None:
            return refusal
        state.stock[(body.source, body.sku)] -= body.qty
        state.stock[(body.to, body.sku)] = state.stock.get((body.to, body.sku), 0) + body.qty
        return Transfer(reference=f"TR-{seq:05d}", transfer_id=body.transfer_id, sku=body.sku, qty=body.qty)

    @app.post("/dispatches")
    async def post_dispatch(request: Request) -> JSONResponse:
        return await _post(state, request, "dispatch", "dispatches", DispatchRequest, dispatch)

    @app.get("/dispatches/{key}")
    async def get_dispatch(request: Request, key: str) -> JSONResponse:
        return _lookup(state, request, "dispatch", key)

    @app.post("/transfers")
    async def post_transfer(request: Request) -> JSONResponse:
        return await _post(state, request, "transfer", "transfers", TransferRequest, transfer)

    @app.get("/transfers/{key}")
    async def get_transfer(request: Request, key: str) -> JSONResponse:
        return _lookup(state, request, "transfer", key)

    return app


# --- serving on loopback ------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """A uvicorn server that says when its startup is over, so nobody polls with sleeps."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = threading.Event()

    async def startup(self, sockets: list[Any] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_done.set()


@contextmanager
def serve(app: FastAPI, *, guard_seconds: float = 10.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a background thread; yields its base URL.

    The port is chosen by the OS (port 0) and read back from the bound socket. ``guard_seconds``
    bounds start-up and shutdown only so that a broken server fails the caller instead of hanging
    it; a healthy one returns as soon as it is up.

    Raises:
        RuntimeError: uvicorn did not start (its own log says why).
    """
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", ws="none", log_level="warning", access_log=False
    )
    server = _Server(config)
    # uvicorn installs signal handlers only on the main thread, so a worker thread is safe here.
    thread = threading.Thread(target=server.run, name="answerable-serve", daemon=True)
    thread.start()
    try:
        if not server.startup_done.wait(guard_seconds) or not server.started:
            raise RuntimeError(f"uvicorn did not start serving {app.title!r} within {guard_seconds}s")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(guard_seconds)
        if thread.is_alive():
            server.force_exit = True
            thread.join(guard_seconds)
