"""The simulated world, deterministic for a seed: regions, customers, orders, stock, trucks, storm.

The world is what the agents act upon but never see directly: they learn of it through external
events (orders, stock snapshots, fleet status, the storm alert, deliveries) and change it only
through the partner APIs behind the gateway. Its orders are drawn from the seed alone, so the
ungoverned and governed runs face exactly the same demand and the same storm.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from answerable.errors import ConfigError
from answerable.logistics.desk import DEFAULT_DESK, DeskConfig
from answerable.logistics.routing import arc_distance, arc_travel_time
from answerable.logistics.services import CarrierState, WarehouseState
from answerable.records import problems

__all__ = ["Customer", "Delivery", "Order", "ScenarioConfig", "Sku", "Storm", "World", "load_scenario"]

Cls = Literal["medical", "retail"]


class Storm(BaseModel):
    """A regional storm: roads slow down and the carrier loses trucks in one region for some days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str = "east"
    start_day: int = Field(default=2, ge=0)
    days: int = Field(default=3, ge=1)
    trucks_pct: int = Field(default=40, ge=0, le=100)
    """Share of the region's trucks still running."""
    travel_pct: int = Field(default=160, ge=100, le=400)
    """Travel times as a percentage of normal."""

    def active(self, region: str, day: int) -> bool:
        return region == self.region and self.start_day <= day < self.start_day + self.days


class Outage(BaseModel):
    """A warehouse whose systems fail the first requests of a day (it comes back after retries)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warehouse: str
    day: int = Field(ge=0)
    failed_requests: int = Field(default=2, ge=1)


class OrderSpec(BaseModel):
    """An order placed by hand in a scenario file, on top of the seeded stream."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    customer: str
    sku: str
    qty: int = Field(ge=1)
    day: int = Field(ge=0)
    due_day: int = Field(ge=0)


class OtherRules(BaseModel):
    """Rules to run the storm under in place of its own (``demo storm --rules DIR``): what
    ``answerable rules export`` writes, signed by the demo's RI when the run starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    """Where they were read from, for result.json."""
    policies: str
    schema_text: str

    @model_validator(mode="after")
    def _compiles(self) -> OtherRules:
        """Checked where they are given (a scenario file too), before any run starts."""
        from answerable.errors import PolicyInvalid
        from answerable.policy import load_ruleset

        try:
            load_ruleset(self.policies, self.schema_text)
        except PolicyInvalid as exc:
            raise ValueError(str(exc)) from exc
        return self


class ScenarioConfig(BaseModel):
    """Everything that shapes a run besides the seed; loadable from a JSON scenario file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: int = Field(default=7, ge=1, le=60)
    regions: tuple[str, ...] = ("north", "south", "east", "west")
    stores_per_region: int = Field(default=60, ge=1, le=500)
    hospitals_per_region: int = Field(default=8, ge=1, le=100)
    orders_per_day: int = Field(default=2000, ge=1, le=50_000)
    medical_share_pct: int = Field(default=10, ge=1, le=90)
    trucks_per_region: int = Field(default=5, ge=1, le=100)
    truck_capacity: int = Field(default=400, ge=1)
    horizon: int = Field(default=480, ge=60)
    """Minutes in a delivery day."""
    storm: Storm = Storm()
    outages: tuple[Outage, ...] = (Outage(warehouse="wh-north", day=4),)
    short_medical_region: str = "west"
    """The region whose medical supply runs below demand, so that stock must be moved there."""
    router_iterations: int = Field(default=1500, ge=10)
    time_critical_share_pct: int = Field(default=4, ge=0, le=100)
    """Share of retail order lines a store marks time-critical: due the next day, like medical
    ones, with the store's contractual penalty (``TIME_CRITICAL_PENALTY``) for each day late."""
    extra_orders: tuple[OrderSpec, ...] = ()
    desk: DeskConfig = DEFAULT_DESK
    """The modelled people who answer reviews in the governed run, and their written guidance."""
    priority_hints: bool = False
    """The router starts sending priority hints straight to the allocator, to save a step: a
    channel the charter's coordination contract does not declare."""
    rules: OtherRules | None = None
    """Other rules for every mode that has rules (all but ``ungoverned``), in place of the
    storm's own, so one seed can be run under both and the outcome tables compared."""

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioConfig:
        if len(set(self.regions)) != len(self.regions) or not self.regions:
            raise ValueError("regions must be distinct and not empty")
        if self.storm.region not in self.regions:
            raise ValueError(f"storm region {self.storm.region!r} is not one of {list(self.regions)}")
        if self.short_medical_region not in self.regions:
            raise ValueError(f"short_medical_region {self.short_medical_region!r} is not a region")
        for order in self.extra_orders:
            if order.sku not in SKU:
                raise ValueError(
                    f"order {order.id}: unknown SKU {order.sku!r}; the catalogue is {sorted(SKU)}"
                )
            if order.due_day < order.day:
                raise ValueError(f"order {order.id}: due_day {order.due_day} is before its day {order.day}")
        from answerable.logistics.governance import RI

        if any(r.name == RI for r in self.desk.reviewers):
            raise ValueError(
                f"desk reviewer {RI!r} is the RI, a real person: give the modelled reviewer another name"
            )
        for outage in self.outages:
            if outage.warehouse not in {f"wh-{r}" for r in self.regions}:
                raise ValueError(f"outage warehouse {outage.warehouse!r} is not a warehouse of this scenario")
        return self


def load_scenario(text: str, *, source: str = "scenario") -> ScenarioConfig:
    """Parse a JSON scenario, naming the first bad field."""
    try:
        return ScenarioConfig.model_validate_json(text)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {problems(exc, 'scenario')[0]}") from exc


@dataclass(frozen=True, slots=True)
class Sku:
    name: str
    cls: Cls
    margin: int
    """Cents of margin per unit."""
    penalty: int
    """Cents per unit per day late: contractual for retail, clinical for medical."""


SKUS = (
    Sku("insulin", "medical", 450, 20_000),
    Sku("saline", "medical", 300, 15_000),
    Sku("ppe-kit", "medical", 350, 10_000),
    Sku("tv", "retail", 4_000, 800),
    Sku("phone", "retail", 3_200, 600),
    Sku("sofa", "retail", 6_000, 1_000),
    Sku("grocery", "retail", 1_200, 300),
    Sku("toys", "retail", 1_800, 400),
)
SKU = {s.name: s for s in SKUS}
HANDLING_CENTS_PER_UNIT = 40
TIME_CRITICAL_PENALTY = 5_000
"""Cents per unit per day late on a line the store marked time-critical (its contract says so)."""
COVER_DAYS = (1, 2, 3, 4, 5)
"""How many days of stock a hospital keeps after a delivery, drawn once per hospital. Each day
without a delivery uses one up; a morning with none left is a stock-out day (a stated model:
hospital stock is not simulated by SKU, only as days of cover)."""


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    region: str
    kind: Literal["hospital", "store"]
    x: int
    y: int
    ready: int
    due: int

    @property
    def cls(self) -> Cls:
        return "medical" if self.kind == "hospital" else "retail"


@dataclass(slots=True)
class Order:
    """One order line: a shipment of one SKU to one customer, due on a day."""

    id: str
    customer: str
    region: str
    sku: str
    qty: int
    day: int
    due_day: int
    delivered_day: int | None = None
    time_critical: bool = False
    """The store marked it time-critical: due the next day, with a higher penalty."""

    @property
    def cls(self) -> Cls:
        return SKU[self.sku].cls

    @property
    def margin(self) -> int:
        return SKU[self.sku].margin * self.qty

    @property
    def penalty(self) -> int:
        """Cents per unit per day late."""
        return TIME_CRITICAL_PENALTY if self.time_critical else SKU[self.sku].penalty


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the carrier reports at the end of a day: a stop served, or orders that missed their day."""

    customer: str
    region: str
    cls: Cls
    day: int
    orders: tuple[str, ...]
    on_time: tuple[bool, ...]


@dataclass
class World:
    """The state of the world and the rules by which it moves, one day at a time."""

    config: ScenarioConfig
    seed: int
    carrier: CarrierState = field(default_factory=CarrierState)
    warehouse: WarehouseState = field(default_factory=WarehouseState)
    customers: dict[str, Customer] = field(default_factory=dict)
    depots: dict[str, tuple[int, int]] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    history: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    """Units ordered per (region, SKU) per day, for the days before the run (forecasting input)."""
    supply: dict[tuple[str, str], int] = field(default_factory=dict)
    promises: list[tuple[str, int, int, tuple[str, ...], str]] = field(default_factory=list)
    """The order system's own record of reprioritizations: (shipment, from day, to day, order
    lines, idempotency key)."""
    today: int = 0
    last_delivered: dict[str, int] = field(default_factory=dict)
    """The last day each customer received a delivery (-1: the day before the run)."""
    cover_reported: dict[int, dict[str, int]] = field(default_factory=dict)
    """Each morning's stock report, by day: a hospital at 0 is a stock-out day."""
    _reprioritized: dict[str, dict[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(f"world:{self.seed}")
        cfg = self.config
        for k, region in enumerate(cfg.regions):
            angle = 2 * math.pi * k / len(cfg.regions)
            cx, cy = int(300 + 200 * math.cos(angle)), int(300 + 200 * math.sin(angle))
            self.depots[region] = (cx, cy)
            kinds: tuple[tuple[Literal["hospital", "store"], int], ...] = (
                ("hospital", cfg.hospitals_per_region),
                ("store", cfg.stores_per_region),
            )
            for kind, count in kinds:
                for n in range(count):
                    r, a = 15 + 60 * math.sqrt(rng.random()), 2 * math.pi * rng.random()
                    ready = rng.choice((0, 0, 60, 120))
                    due = min(cfg.horizon, ready + rng.choice((240, 300, 360, 480)))
                    cid = f"{'H' if kind == 'hospital' else 'S'}-{region}-{n:03d}"
                    self.customers[cid] = Customer(
                        cid, region, kind, int(cx + r * math.cos(a)), int(cy + r * math.sin(a)), ready, due
                    )
        expected = self._expected_units()
        for region in cfg.regions:
            for sku in SKUS:
                mean = expected[(region, sku.name)]
                self.history[(region, sku.name)] = [
                    max(0, int(rng.gauss(mean, mean * 0.12))) for _ in range(21)
                ]
                short = sku.cls == "medical" and region == cfg.short_medical_region
                self.supply[(region, sku.name)] = int(mean * (0.75 if short else 1.12))
                self.warehouse.stock[(f"wh-{region}", sku.name)] = int(mean * 2.5)
        for spec in cfg.extra_orders:
            if spec.customer not in self.customers:
                raise ConfigError(
                    f"order {spec.id}: unknown customer {spec.customer!r} "
                    f"(customers look like H-{cfg.regions[0]}-000 or S-{cfg.regions[0]}-000)"
                )
        self.warehouse.warehouses |= {f"wh-{r}" for r in cfg.regions}
        self.warehouse.skus |= set(SKU)
        self.carrier.default_capacity = cfg.trucks_per_region
        for region in cfg.regions:
            for day in range(cfg.days):
                self.carrier.capacity[(region, day)] = self.trucks(region, day)

    # --- demand --------------------------------------------------------------------------------

    def _expected_units(self) -> dict[tuple[str, str], float]:
        cfg = self.config
        lines = cfg.orders_per_day / len(cfg.regions)
        medical = [s for s in SKUS if s.cls == "medical"]
        retail = [s for s in SKUS if s.cls == "retail"]
        out: dict[tuple[str, str], float] = {}
        for region in cfg.regions:
            for group, share in (
                (medical, cfg.medical_share_pct / 100),
                (retail, 1 - cfg.medical_share_pct / 100),
            ):
                for sku in group:
                    out[(region, sku.name)] = lines * share / len(group) * 2.5  # mean qty 2.5
        return out

    def new_orders(self, day: int) -> list[Order]:
        """The day's order lines: drawn from the seed and the day only, never from what agents did."""
        rng = random.Random(f"orders:{self.seed}:{day}")
        marks = random.Random(f"time-critical:{self.seed}:{day}")  # apart, so other draws stay
        cfg = self.config
        by_region: dict[str, list[Customer]] = defaultdict(list)
        for c in self.customers.values():
            by_region[c.region].append(c)
        made = []
        for n in range(cfg.orders_per_day):
            region = cfg.regions[n % len(cfg.regions)]
            medical = rng.random() < cfg.medical_share_pct / 100
            pool = [c for c in by_region[region] if (c.kind == "hospital") == medical]
            customer = rng.choice(pool)
            sku = rng.choice([s for s in SKUS if s.cls == customer.cls])
            critical = not medical and marks.random() < cfg.time_critical_share_pct / 100
            due = day + (1 if medical or critical else 2)
            qty = rng.randint(1, 4)
            order = Order(f"O{day:02d}-{n:05d}", customer.id, region, sku.name, qty, day, due, None, critical)
            made.append(order)
            self.orders[order.id] = order
        for spec in cfg.extra_orders:
            if spec.day == day:
                region = self.customers[spec.customer].region
                order = Order(spec.id, spec.customer, region, spec.sku, spec.qty, day, spec.due_day)
                made.append(order)
                self.orders[order.id] = order
        return made

    def report_cover(self, day: int) -> dict[str, int]:
        """Each hospital's days of stock on hand this morning, as it reports them: its cover
        (``COVER_DAYS``) less the days gone by since its last delivery (kept by day)."""
        out = {}
        for c in sorted(self.customers.values(), key=lambda c: c.id):
            if c.kind == "hospital":
                full = random.Random(f"cover:{self.seed}:{c.id}").choice(COVER_DAYS)
                out[c.id] = max(0, full - (day - self.last_delivered.get(c.id, -1) - 1))
        self.cover_reported[day] = out
        return out

    # --- disruptions ---------------------------------------------------------------------------

    def disrupted(self, region: str, day: int) -> bool:
        return self.config.storm.active(region, day)

    def trucks(self, region: str, day: int) -> int:
        base = self.config.trucks_per_region
        if self.disrupted(region, day):
            return max(1, base * self.config.storm.trucks_pct // 100)
        return base

    def travel_pct(self, region: str, day: int) -> int:
        return self.config.storm.travel_pct if self.disrupted(region, day) else 100

    def outage(self, day: int) -> dict[str, int]:
        return {o.warehouse: o.failed_requests for o in self.config.outages if o.day == day}

    # --- the morning ---------------------------------------------------------------------------

    def replenish(self) -> None:
        """Suppliers deliver to every warehouse each morning."""
        with self.warehouse.lock:
            for (region, sku), units in self.supply.items():
                key = (f"wh-{region}", sku)
                self.warehouse.stock[key] = self.warehouse.stock.get(key, 0) + units

    def stock_snapshot(self) -> dict[str, dict[str, int]]:
        with self.warehouse.lock:
            out: dict[str, dict[str, int]] = defaultdict(dict)
            for (wh, sku), units in sorted(self.warehouse.stock.items()):
                out[wh][sku] = units
            return dict(out)

    # --- the order system (an operation the executor may call) ---------------------------------

    def reprioritize(
        self, shipment: str, orders: list[str], to_day: int, idempotency_key: str
    ) -> dict[str, object]:
        """Promise a customer's open orders for a later day; the order system keeps its own record.

        Idempotent by key, as an order system behind an API would be: a retry changes nothing.
        """
        unknown = [o for o in orders if o not in self.orders]
        if unknown:
            raise ValueError(f"unknown orders {unknown[:3]}")
        if idempotency_key not in self._reprioritized:
            first = min(self.orders[o].day for o in orders)
            self.promises.append((shipment, first, to_day, tuple(orders), idempotency_key))
            self._reprioritized[idempotency_key] = {
                "shipment": shipment,
                "orders": len(orders),
                "to_day": to_day,
            }
        return self._reprioritized[idempotency_key]

    def shipment_facts(self, orders: Iterable[str], day: int) -> tuple[Cls, bool]:
        """Class and whether postponing past ``day`` makes any order late: read from the order system."""
        found = [self.orders[o] for o in orders if o in self.orders]
        cls: Cls = "medical" if any(o.cls == "medical" for o in found) else "retail"
        return cls, any(o.due_day <= day for o in found)

    # --- the evening ---------------------------------------------------------------------------

    def deliver(self, day: int) -> list[Delivery]:
        """Trucks booked and loaded today drive their routes; stops reached in time are delivered.

        The world acts on what the partner services recorded (bookings and dispatches), not on
        what any agent believes it did.
        """
        loaded: dict[str, Counter[str]] = defaultdict(Counter)
        for record in self.warehouse.records:
            if record.kind == "dispatch" and record.body.day == day:  # type: ignore[union-attr]
                for line in record.body.lines:  # type: ignore[union-attr]
                    loaded[line.to][line.sku] += line.qty
        deliveries = []
        for record in self.carrier.records:
            if record.kind != "booking" or record.body.day != day:  # type: ignore[union-attr]
                continue
            region, stops = record.body.region, record.body.stops  # type: ignore[union-attr]
            t, (x, y) = 0, self.depots[region]
            for stop in stops:
                customer = self.customers[stop]
                t += travel_time(x, y, customer.x, customer.y, self.travel_pct(region, day))
                t = max(t, customer.ready)
                x, y = customer.x, customer.y
                if t > customer.due or not loaded.get(stop):
                    continue
                t += SERVICE_MINUTES
                ids = self._unload(stop, loaded[stop], day)
                if ids:
                    self.last_delivered[stop] = day
                    deliveries.append(
                        Delivery(
                            stop,
                            region,
                            customer.cls,
                            day,
                            ids,
                            tuple(self.orders[o].due_day >= day for o in ids),
                        )
                    )
        return deliveries

    def missed(self, day: int) -> list[Delivery]:
        """Orders due today that were not delivered: late from now on, reported per customer."""
        late: dict[str, list[str]] = defaultdict(list)
        for order in self.orders.values():
            if order.due_day == day and order.delivered_day is None:
                late[order.customer].append(order.id)
        return [
            Delivery(c, self.customers[c].region, self.customers[c].cls, day, tuple(ids), (False,) * len(ids))
            for c, ids in sorted(late.items())
        ]

    def _unload(self, customer: str, units: Counter[str], day: int) -> tuple[str, ...]:
        """Hand over the loaded units against the customer's open orders, oldest first."""
        open_orders = sorted(
            (
                o
                for o in self.orders.values()
                if o.customer == customer and o.delivered_day is None and o.day <= day
            ),
            key=lambda o: (o.due_day, o.id),
        )
        done = []
        for order in open_orders:
            if units[order.sku] >= order.qty:
                units[order.sku] -= order.qty
                order.delivered_day = day
                done.append(order.id)
        return tuple(done)


SERVICE_MINUTES = 10


def travel_time(x1: int, y1: int, x2: int, y2: int, pct: int) -> int:
    """Minutes between two points, computed exactly as the route planner computes them."""
    return arc_travel_time(arc_distance(x1, y1, x2, y2), pct)
