"""The carrier and warehouse services behave like partner APIs: idempotent, refusing, sometimes slow."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from support import People

from answerable import (
    FakeClock,
    Gateway,
    IdSource,
    SQLiteLedger,
    http_operation,
    new_charter,
    new_ruleset,
    schema_for,
)
from answerable.logistics.services import (
    BookingRequest,
    CarrierState,
    FaultPlan,
    WarehouseState,
    make_carrier_app,
    make_warehouse_app,
    serve,
)
from answerable.records import Execution, Intent, decode_entry


def booking(
    route: str = "R-1", region: str = "north", day: int = 1, truck: str = "T-1", **extra: Any
) -> dict[str, Any]:
    return {
        "route_id": route,
        "region": region,
        "day": day,
        "truck": truck,
        "stops": ["Leeds", "York"],
        "distance": 40,
        **extra,
    }


def dispatch(dispatch_id: str = "D-1", warehouse: str = "leeds", **lines: int) -> dict[str, Any]:
    return {
        "dispatch_id": dispatch_id,
        "warehouse": warehouse,
        "day": 1,
        "lines": [{"sku": sku, "qty": qty, "to": "York"} for sku, qty in (lines or {"water": 5}).items()],
    }


def transfer(source: str = "leeds", to: str = "york", sku: str = "water", qty: int = 10) -> dict[str, Any]:
    return {"transfer_id": "X-1", "from": source, "to": to, "sku": sku, "qty": qty}


def client_for(app: FastAPI, name: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")


@pytest.fixture
def carrier() -> CarrierState:
    return CarrierState(clock=FakeClock(), capacity={("north", 1): 2})


@pytest.fixture
async def carrier_http(carrier: CarrierState) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_carrier_app(carrier), "carrier") as client:
        yield client


@pytest.fixture
def warehouse() -> WarehouseState:
    return WarehouseState(
        clock=FakeClock(),
        stock={("leeds", "water"): 100, ("leeds", "blankets"): 3, ("york", "water"): 0},
        skus={"medicine"},
    )


@pytest.fixture
async def warehouse_http(warehouse: WarehouseState) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_warehouse_app(warehouse), "warehouse") as client:
        yield client


async def book(client: httpx.AsyncClient, key: str | None, body: dict[str, Any]) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return await client.post("/bookings", json=body, headers=headers)


# --- carrier ------------------------------------------------------------------------------------


async def test_booking_answers_201_and_is_recorded_once(
    carrier: CarrierState, carrier_http: httpx.AsyncClient
):
    """A new booking is made, costed in integer cents, and written to the carrier's records."""
    response = await book(carrier_http, "k1", booking())

    assert response.status_code == 201
    assert response.json() == {"booking_id": "BK-00001", "route_id": "R-1", "cost": 40 * 120 + 2 * 1500}
    assert [(r.kind, r.key, r.body.model_dump(mode="json")) for r in carrier.records] == [
        ("booking", "k1", booking())
    ]


async def test_replay_with_same_key_and_body_returns_the_original_without_a_second_booking(
    carrier: CarrierState, carrier_http: httpx.AsyncClient
):
    """The same key and body answer the original booking, marked replayed, with no new effect."""
    first = await book(carrier_http, "k1", booking())
    again = await book(carrier_http, "k1", booking())

    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(carrier.records) == 1
    assert [(r.status, r.applied, r.replayed) for r in carrier.requests] == [
        (201, True, False),
        (200, False, True),
    ]


async def test_same_key_with_other_arguments_is_refused_as_key_reuse(
    carrier: CarrierState, carrier_http: httpx.AsyncClient
):
    """Reusing a key for a different request is a client bug: 422, and nothing is booked."""
    await book(carrier_http, "k1", booking())
    response = await book(carrier_http, "k1", booking(route="R-2", truck="T-2"))

    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reused"
    assert len(carrier.records) == 1


async def test_post_without_idempotency_key_is_rejected(
    carrier: CarrierState, carrier_http: httpx.AsyncClient
):
    """A POST without an Idempotency-Key is a 400 and has no effect."""
    response = await book(carrier_http, None, booking())

    assert response.status_code == 400
    assert response.json()["error"] == "missing_idempotency_key"
    assert carrier.records == []


@pytest.mark.parametrize(
    "body",
    [
        booking(colour="red"),
        booking(day=True),
        booking(distance=-1),
        {k: v for k, v in booking().items() if k != "truck"},
        booking(stops=[]),
    ],
    ids=["unknown-field", "bool-day", "negative-distance", "missing-field", "no-stops"],
)
async def test_malformed_booking_is_refused_as_invalid(
    carrier: CarrierState, carrier_http: httpx.AsyncClient, body: dict[str, Any]
):
    """Unknown fields, wrong types and out-of-range values are 422 invalid_request, with details."""
    response = await book(carrier_http, "k1", body)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"]
    assert carrier.records == []


async def test_same_truck_same_day_under_a_new_key_is_a_double_booking(
    carrier: CarrierState, carrier_http: httpx.AsyncClient
):
    """One truck cannot be booked twice on one day, whatever the key: 409 double_booking."""
    await book(carrier_http, "k1", booking())
    response = await book(carrier_http, "k2", booking(route="R-2", region="south"))

    assert response.status_code == 409
    assert response.json()["error"] == "double_booking"
    assert response.json()["booking_id"] == "BK-00001"
    assert len(carrier.records) == 1


async def test_booking_beyond_regional_capacity_is_refused_as_capacity(
    carrier: CarrierState, carrier_http: httpx.AsyncClient
):
    """With every truck in a region taken that day, a booking is 409 capacity; other regions go on."""
    await book(carrier_http, "k1", booking(truck="T-1"))
    await book(carrier_http, "k2", booking(truck="T-2"))
    full = await book(carrier_http, "k3", booking(truck="T-3"))
    elsewhere = await book(carrier_http, "k4", booking(truck="T-3", region="south"))

    assert full.status_code == 409
    assert full.json() == full.json() | {"error": "capacity", "region": "north", "day": 1, "capacity": 2}
    assert elsewhere.status_code == 201
    assert [r.key for r in carrier.records] == ["k1", "k2", "k4"]


async def test_refused_key_is_judged_afresh_on_retry(carrier: CarrierState, carrier_http: httpx.AsyncClient):
    """A refusal stores nothing under the key, so a retry succeeds once capacity comes back."""
    carrier.capacity[("north", 1)] = 0
    refused = await book(carrier_http, "k1", booking())
    with carrier.lock:
        carrier.capacity[("north", 1)] = 1
    retried = await book(carrier_http, "k1", booking())

    assert (refused.status_code, retried.status_code) == (409, 201)
    assert len(carrier.records) == 1


async def test_after_effect_timeout_then_retry_with_same_key_books_exactly_once(
    carrier_http: httpx.AsyncClient,
):
    """The ambiguous case: booked but answered 504; a retry with the key replays, never rebooks."""
    carrier = CarrierState(faults=FaultPlan(["after_effect"]))
    async with client_for(make_carrier_app(carrier), "carrier") as client:
        lost = await book(client, "k1", booking())
        retried = await book(client, "k1", booking())

    assert lost.status_code == 504
    assert lost.json()["error"] == "timeout"
    assert "applied" not in lost.json()
    assert retried.status_code == 200
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert len(carrier.records) == 1
    assert retried.json()["booking_id"] == carrier.records[0].response.model_dump()["booking_id"]
    assert [(r.status, r.applied, r.timeout) for r in carrier.requests] == [
        (504, True, "after_effect"),
        (200, False, None),
    ]


async def test_before_effect_timeout_then_retry_with_same_key_books_exactly_once():
    """A timeout before the effect leaves nothing behind; the retry makes the one booking."""
    carrier = CarrierState(faults=FaultPlan(["before_effect"]))
    async with client_for(make_carrier_app(carrier), "carrier") as client:
        lost = await book(client, "k1", booking())
        assert carrier.records == []
        retried = await book(client, "k1", booking())

    assert (lost.status_code, retried.status_code) == (504, 201)
    assert len(carrier.records) == 1
    assert [(r.status, r.applied, r.timeout) for r in carrier.requests] == [
        (504, False, "before_effect"),
        (201, True, None),
    ]


async def test_lookup_by_key_finds_the_booking_even_after_a_lost_answer():
    """GET /bookings/{key} is how a recovering client learns whether its booking happened."""
    carrier = CarrierState(faults=FaultPlan(["after_effect", "before_effect"]))
    async with client_for(make_carrier_app(carrier), "carrier") as client:
        await book(client, "k1", booking())
        await book(client, "k2", booking(truck="T-2"))
        found = await client.get("/bookings/k1")
        missing = await client.get("/bookings/k2")

    assert found.status_code == 200
    assert found.json() == {"booking_id": "BK-00001", "route_id": "R-1", "cost": 40 * 120 + 2 * 1500}
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


async def test_concurrent_retries_with_one_key_book_once(
    carrier: CarrierState, carrier_http: httpx.AsyncClient
):
    """Twenty simultaneous sends of one request make one booking and nineteen replays."""
    answers = await asyncio.gather(*(book(carrier_http, "k1", booking()) for _ in range(20)))

    assert sorted(a.status_code for a in answers) == [200] * 19 + [201]
    assert len(carrier.records) == 1


def test_seeded_fault_plan_reproduces_its_draws():
    """Two plans from the same seed time out the same requests the same way."""

    def draws(seed: int) -> list[str | None]:
        plan = FaultPlan(rng=random.Random(seed), before=0.2, after=0.2)
        return [plan.draw() for _ in range(50)]

    assert draws(7) == draws(7)
    assert {"before_effect", "after_effect", None} == set(draws(7))


def test_fault_plan_plays_its_script_before_its_random_draws():
    """The explicit script comes first, in order; with no rng, everything after it goes through."""
    plan = FaultPlan([None, "after_effect"])

    assert [plan.draw() for _ in range(4)] == [None, "after_effect", None, None]


def test_fault_plan_refuses_probabilities_without_a_seeded_rng():
    """Random faults must be reproducible, so a probability without an rng is a mistake."""
    with pytest.raises(ValueError, match="seeded"):
        FaultPlan(after=0.5)


# --- warehouse ----------------------------------------------------------------------------------


async def test_dispatch_takes_stock_out_of_the_warehouse(
    warehouse: WarehouseState, warehouse_http: httpx.AsyncClient
):
    """A dispatch answers 201 and decrements every line's stock."""
    response = await warehouse_http.post(
        "/dispatches", json=dispatch(water=5, blankets=2), headers={"Idempotency-Key": "d1"}
    )

    assert response.status_code == 201
    assert response.json() == {
        "reference": "DS-00001",
        "dispatch_id": "D-1",
        "warehouse": "leeds",
        "units": 7,
    }
    assert warehouse.stock[("leeds", "water")] == 95
    assert warehouse.stock[("leeds", "blankets")] == 1


async def test_dispatch_short_of_one_line_moves_nothing(
    warehouse: WarehouseState, warehouse_http: httpx.AsyncClient
):
    """Insufficient stock on any line is 409 naming the SKU, and no line is taken."""
    before = dict(warehouse.stock)
    response = await warehouse_http.post(
        "/dispatches", json=dispatch(water=5, blankets=4), headers={"Idempotency-Key": "d1"}
    )

    assert response.status_code == 409
    assert response.json() | {"error": "insufficient_stock", "sku": "blankets"} == response.json()
    assert warehouse.stock == before
    assert warehouse.records == []


async def test_offline_warehouse_answers_503_and_keeps_its_stock(
    warehouse: WarehouseState, warehouse_http: httpx.AsyncClient
):
    """An offline site is 503 offline; stock is untouched."""
    warehouse.offline.add("leeds")
    response = await warehouse_http.post("/dispatches", json=dispatch(), headers={"Idempotency-Key": "d1"})

    assert response.status_code == 503
    assert response.json()["error"] == "offline"
    assert warehouse.stock[("leeds", "water")] == 100


async def test_unknown_warehouse_is_404_and_unknown_sku_is_422(warehouse_http: httpx.AsyncClient):
    """A site the operator does not have is 404; a SKU outside the catalogue is 422."""
    nowhere = await warehouse_http.post(
        "/dispatches", json=dispatch(warehouse="hull"), headers={"Idempotency-Key": "d1"}
    )
    no_sku = await warehouse_http.post(
        "/dispatches", json=dispatch(gold=1), headers={"Idempotency-Key": "d2"}
    )
    out_of_stock = await warehouse_http.post(
        "/dispatches", json=dispatch(medicine=1), headers={"Idempotency-Key": "d3"}
    )

    assert (nowhere.status_code, nowhere.json()["error"]) == (404, "unknown_warehouse")
    assert (no_sku.status_code, no_sku.json()["error"], no_sku.json()["sku"]) == (422, "unknown_sku", "gold")
    assert (out_of_stock.status_code, out_of_stock.json()["error"]) == (409, "insufficient_stock")


async def test_dispatch_replay_and_key_reuse_follow_the_carrier_rules(
    warehouse: WarehouseState, warehouse_http: httpx.AsyncClient
):
    """Same key and body replays without taking stock again; other arguments under it are 422."""
    first = await warehouse_http.post("/dispatches", json=dispatch(), headers={"Idempotency-Key": "d1"})
    again = await warehouse_http.post("/dispatches", json=dispatch(), headers={"Idempotency-Key": "d1"})
    reused = await warehouse_http.post(
        "/dispatches", json=dispatch(water=6), headers={"Idempotency-Key": "d1"}
    )

    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")
    assert warehouse.stock[("leeds", "water")] == 95


async def test_dispatch_after_effect_timeout_then_retry_takes_stock_once():
    """A dispatch whose answer was lost takes its stock once, however often it is retried."""
    warehouse = WarehouseState(
        stock={("leeds", "water"): 100}, faults=FaultPlan(["after_effect", "after_effect"])
    )
    async with client_for(make_warehouse_app(warehouse), "warehouse") as client:
        answers = [
            await client.post("/dispatches", json=dispatch(), headers={"Idempotency-Key": "d1"})
            for _ in range(3)
        ]
        found = await client.get("/dispatches/d1")

    assert [a.status_code for a in answers] == [504, 504, 200]
    assert warehouse.stock[("leeds", "water")] == 95
    assert len(warehouse.records) == 1
    assert found.json()["reference"] == "DS-00001"


async def test_transfer_moves_stock_between_warehouses(
    warehouse: WarehouseState, warehouse_http: httpx.AsyncClient
):
    """A transfer takes stock from one site and adds it to the other, all or nothing."""
    moved = await warehouse_http.post("/transfers", json=transfer(qty=30), headers={"Idempotency-Key": "t1"})
    short = await warehouse_http.post("/transfers", json=transfer(qty=71), headers={"Idempotency-Key": "t2"})

    assert moved.status_code == 201
    assert moved.json() == {"reference": "TR-00001", "transfer_id": "X-1", "sku": "water", "qty": 30}
    assert (short.status_code, short.json()["sku"]) == (409, "water")
    assert (warehouse.stock[("leeds", "water")], warehouse.stock[("york", "water")]) == (70, 30)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (transfer(to="hull"), 404, "unknown_warehouse"),
        (transfer(sku="gold"), 422, "unknown_sku"),
        (transfer(to="leeds"), 422, "invalid_request"),
        ({**transfer(), "source": "leeds"}, 422, "invalid_request"),
    ],
    ids=["unknown-destination", "unknown-sku", "same-site", "python-name-not-wire-name"],
)
async def test_transfer_refusals(
    warehouse: WarehouseState,
    warehouse_http: httpx.AsyncClient,
    body: dict[str, Any],
    status: int,
    error: str,
):
    """Transfers refuse unknown sites and SKUs and malformed bodies without moving anything."""
    before = dict(warehouse.stock)
    response = await warehouse_http.post("/transfers", json=body, headers={"Idempotency-Key": "t1"})

    assert (response.status_code, response.json()["error"]) == (status, error)
    assert warehouse.stock == before


async def test_transfer_to_an_offline_warehouse_answers_503(
    warehouse: WarehouseState, warehouse_http: httpx.AsyncClient
):
    """Either end being offline stops a transfer."""
    warehouse.offline.add("york")
    response = await warehouse_http.post("/transfers", json=transfer(), headers={"Idempotency-Key": "t1"})

    assert (response.status_code, response.json()["warehouse"]) == (503, "york")
    assert warehouse.stock[("leeds", "water")] == 100


async def test_lookups_are_per_collection_and_keys_are_per_service(warehouse_http: httpx.AsyncClient):
    """A dispatch key is not a transfer; reusing it for a transfer is key reuse, not a new effect."""
    await warehouse_http.post("/dispatches", json=dispatch(), headers={"Idempotency-Key": "k1"})
    as_dispatch = await warehouse_http.get("/dispatches/k1")
    as_transfer = await warehouse_http.get("/transfers/k1")
    reused = await warehouse_http.post("/transfers", json=transfer(), headers={"Idempotency-Key": "k1"})

    assert as_dispatch.status_code == 200
    assert as_transfer.status_code == 404
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")


# --- over a real socket -------------------------------------------------------------------------


async def test_carrier_books_over_a_real_socket_under_uvicorn():
    """Served by uvicorn on loopback, the carrier books and replays through real HTTP."""
    carrier = CarrierState(capacity={("north", 1): 1})
    with serve(make_carrier_app(carrier)) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            first = await book(client, "k1", booking())
            again = await book(client, "k1", booking())
            full = await book(client, "k2", booking(truck="T-2"))

    assert (first.status_code, again.status_code, full.status_code) == (201, 200, 409)
    assert len(carrier.records) == 1


# --- through the gateway ------------------------------------------------------------------------


class BookArgs(BaseModel):
    """The executor's view of a booking; the carrier validates its own copy on arrival."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    route_id: str
    region: str
    day: int
    truck: str
    stops: tuple[str, ...]
    distance: int


async def carrier_gateway(
    ledger: SQLiteLedger, people: People, clock: FakeClock, client: httpx.AsyncClient
) -> Gateway:
    ids = IdSource(clock)
    gateway = Gateway(ledger, clock=clock, ids=ids)
    gateway.register(
        "carrier.book",
        http_operation(
            "http://carrier/bookings", client=client, headers={"Authorization": "Bearer c-secret"}
        ),
        resource_class="route",
        args=BookArgs,
        idempotent=True,
    )
    charter = new_charter("logistics", people.ri, agents=["executor"], clock=clock, ids=ids)
    ruleset = new_ruleset(
        "permit(principal, action, resource);", schema_for(["carrier.book"]), people.ri, clock=clock, ids=ids
    )
    await gateway.install(charter, ruleset)
    return gateway


def ledger_executions(ledger: SQLiteLedger) -> list[tuple[Intent, Execution]]:
    out = []
    for stored in ledger.of_kind("Execution"):
        execution = decode_entry(stored.data)
        assert isinstance(execution, Execution)
        intent = decode_entry(ledger.find(execution.intent_id).data)
        assert isinstance(intent, Intent)
        out.append((intent, execution))
    return out


async def test_carrier_records_match_the_ledgers_successful_executions_one_to_one(
    ledger: SQLiteLedger, people: People, clock: FakeClock
):
    """Every booking the carrier made has one succeeded Execution in the ledger, and vice versa."""
    carrier = CarrierState(
        clock=clock,
        capacity={("north", 1): 2},
        faults=FaultPlan([None, None, None, None, "after_effect"]),
    )
    async with client_for(make_carrier_app(carrier), "carrier") as client:
        gateway = await carrier_gateway(ledger, people, clock, client)
        plans = [
            booking("R-1", truck="T-1"),
            booking("R-2", truck="T-2"),
            booking("R-3", truck="T-3"),  # north is full: capacity
            booking("R-4", region="south", truck="T-1"),  # T-1 already out on day 1: double booking
            booking("R-5", region="south", truck="T-5"),  # booked, but the answer is a 504
        ]
        outcomes = [await gateway.submit(gateway.intent("executor", "carrier.book", p)) for p in plans]

    # The lost answer is retried by the gateway itself, with the same key: the carrier replays.
    assert [o.status for o in outcomes] == ["succeeded", "succeeded", "failed", "failed", "succeeded"]
    assert outcomes[-1].execution is not None
    assert outcomes[-1].execution.attempts == 2
    succeeded = [(i, e) for i, e in ledger_executions(ledger) if e.status == "succeeded"]
    world = [(r.key, r.body.model_dump(mode="json")) for r in carrier.records]
    ledger_view = [
        (i.idempotency_key, BookArgs.model_validate(i.arguments).model_dump(mode="json"))
        for i, _ in succeeded
    ]
    assert sorted(world) == sorted(ledger_view)
    assert len({key for key, _ in world}) == len(world)
    assert sum(r.applied for r in carrier.requests) == len(carrier.records)
    assert BookingRequest.model_validate(plans[0]) == carrier.records[0].body


async def test_a_stale_fencing_token_is_refused_before_anything_happens(
    carrier: CarrierState, carrier_http: httpx.AsyncClient
):
    """After a newer gateway epoch was seen, a deposed gateway's call makes no effect, even with a new key."""
    fresh = await carrier_http.post(
        "/bookings", json=booking(), headers={"Idempotency-Key": "k-new", "Fencing-Token": "2"}
    )
    assert fresh.status_code == 201
    stale = await carrier_http.post(
        "/bookings",
        json=booking(route="R-2", truck="T-2"),
        headers={"Idempotency-Key": "k-old", "Fencing-Token": "1"},
    )
    assert stale.status_code == 409
    assert stale.json()["error"] == "stale_fencing_token"
    assert [r.key for r in carrier.records] == ["k-new"]
    same = await carrier_http.post(
        "/bookings", json=booking(), headers={"Idempotency-Key": "k-new", "Fencing-Token": "2"}
    )
    assert same.status_code == 200  # the current epoch replays as before
    bad = await carrier_http.post(
        "/bookings", json=booking(), headers={"Idempotency-Key": "k-x", "Fencing-Token": "two"}
    )
    assert bad.status_code == 400
