"""The storm scenario: the same agents, the same seed, run ungoverned and governed, measured."""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict

from answerable._files import read_capped
from answerable._text import exception_text, recordable
from answerable.bus import Bus
from answerable.charter import charter_of, new_ruleset
from answerable.clock import FakeClock, IdSource, parse_rfc3339, rfc3339
from answerable.errors import AnswerableError, ConfigError, UnknownAgent, UnknownOperation
from answerable.gateway import Gateway, Outcome, Resource, http_operation, invoke
from answerable.ledger import SQLiteLedger, SQLLedger
from answerable.logistics.agents import (
    AGENTS,
    TRANSFER_CENTS_PER_UNIT,
    Allocator,
    Desk,
    Executor,
    Forecaster,
    Router,
)
from answerable.logistics.desk import ModelledDesk, Reviews
from answerable.logistics.governance import charter, ri_key, ruleset
from answerable.logistics.services import (
    Booking,
    DispatchRequest,
    TransferRequest,
    make_carrier_app,
    make_warehouse_app,
)
from answerable.logistics.world import (
    HANDLING_CENTS_PER_UNIT,
    SKU,
    Cls,
    Customer,
    ScenarioConfig,
    World,
    load_scenario,
)
from answerable.monitors import Monitors, load_monitors
from answerable.operations import FencingToken
from answerable.records import (
    Alert,
    Approval,
    Decision,
    Execution,
    Intent,
    ReviewClosed,
    decode_entry,
    digest,
)
from answerable.report import nearest_rank
from answerable.runtime import Agent, System

__all__ = ["MODES", "Mode", "RunResult", "StormRun", "run"]

Mode = Literal["ungoverned", "rules", "governed", "monitored"]
"""``rules``: the storm rules, with the storm desk's written guidance compiled to Cedar in place
of review (explicitly approved rules only, no person asked); ``governed``: the storm rules sending
critical prioritization decisions to the desk; ``monitored``: the rules as first approved, before
anyone foresaw the storm (no review of reprioritizations), with the system-level monitors as the
only safeguard against emergence."""
MODES: tuple[Mode, ...] = ("ungoverned", "rules", "governed", "monitored")
MONITORS = Path(__file__).with_name("monitors.json")
DAY0_NS = 1_772_431_200_000_000_000  # 2026-03-02T06:00:00Z, the morning the demo starts


class _Line(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    sku: str
    qty: int
    to: str


class BookArgs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    route_id: str
    region: str
    day: int
    truck: str
    stops: list[str]
    distance: int


class DispatchArgs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    dispatch_id: str
    warehouse: str
    day: int
    lines: list[_Line]


class TransferArgs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    transfer_id: str
    source: str
    to: str
    sku: str
    qty: int


class ReprioritizeArgs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    shipment: str
    orders: list[str]
    to_day: int


@dataclass(frozen=True, slots=True)
class RunResult:
    """One mode's outcome: the figures of ``result.json`` and where its ledger is."""

    mode: Mode
    metrics: dict[str, Any]
    ledger: Path | str
    """The ledger's file, or its ``postgresql://`` URL."""
    world: World | None
    """The simulated world after the run; None when the run was made in another process."""


class Ungoverned(Gateway):
    """The baseline: the same operations and credentials, no rules, no RI, no stop button.

    It records intents and outcomes (observability is not what governance adds), but nothing
    decides them and no one answers for them: every Execution's authority is empty.
    """

    def __init__(self, *args: Any, agents: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.agents = frozenset(agents)

    async def submit(self, intent: Intent) -> Outcome:
        if intent.agent not in self.agents:
            raise UnknownAgent(intent.agent)
        op = self.operations.get(intent.operation)
        if op is None:
            raise UnknownOperation(intent.operation, tuple(sorted(self.operations)))
        args = op.args.model_validate(intent.arguments)
        await self.ledger.append([intent])
        started = self.clock.now_ns()
        try:
            result = await invoke(op, args, intent.idempotency_key)
            status: Literal["succeeded", "failed"] = "succeeded"
            error = None
        except Exception as exc:  # recorded as it happened, like any outcome
            result, status, error = None, "failed", recordable(exception_text(exc))
        execution = Execution(
            id=self.ids.new(),
            at=rfc3339(self.clock.now_ns()),
            causes=(intent.id,),
            intent_id=intent.id,
            decision_id=None,
            operation=op.name,
            status=status,
            authority=None,
            response_digest=digest(repr(result).encode()) if status == "succeeded" else None,
            latency_us=max((self.clock.now_ns() - started) // 1000, 0),  # the clock may step back
            error=error,
        )
        await self.ledger.append([execution])
        return Outcome(status, intent, None, execution, result)


class WorldFacts(Protocol):
    """What the gateway reads of the world to build a rule's context: the :class:`World` itself
    in one process, its records asked over HTTP from the gateway's own process."""

    @property
    def today(self) -> int: ...

    @property
    def customers(self) -> Mapping[str, Customer]: ...

    def disrupted(self, region: str, day: int) -> bool: ...

    def shipment_facts(self, orders: Iterable[str], day: int) -> tuple[Cls, bool]: ...


def register_operations(
    gateway: Gateway,
    world: WorldFacts,
    carrier: httpx.AsyncClient,
    warehouse: httpx.AsyncClient,
    *,
    reprioritize: Callable[..., Any],
    carrier_url: str = "http://carrier.local",
    warehouse_url: str = "http://warehouse.local",
) -> None:
    """The four world-changing operations, with one Cedar entity builder each.

    Context (is there a disruption, would a postponement be late) comes from the world's own
    records, never from the agent's arguments: an agent cannot talk its way past a rule.
    ``reprioritize`` is the order system's operation (the world's method in one process).
    """
    book = http_operation(f"{carrier_url}/bookings", client=carrier)
    dispatch = http_operation(f"{warehouse_url}/dispatches", client=warehouse)
    transfer_http = http_operation(f"{warehouse_url}/transfers", client=warehouse)

    async def transfer(
        idempotency_key: str, source: str, fencing_token: FencingToken | None = None, **rest: Any
    ) -> Any:
        return await transfer_http(
            idempotency_key=idempotency_key, fencing_token=fencing_token, **{"from": source}, **rest
        )

    def region_of(warehouse_name: str) -> str:
        return warehouse_name.removeprefix("wh-")

    def route(a: Any) -> Resource:
        return Resource("Route", a.route_id, {"region": a.region, "stops": len(a.stops)})

    def route_context(a: Any) -> Mapping[str, Any]:
        return {"disruption": world.disrupted(a.region, a.day)}

    def load(a: Any) -> Resource:
        units = sum(line.qty for line in a.lines)
        return Resource("Dispatch", a.dispatch_id, {"region": region_of(a.warehouse), "units": units})

    def load_context(a: Any) -> Mapping[str, Any]:
        return {"disruption": world.disrupted(region_of(a.warehouse), a.day)}

    def lot(a: Any) -> Resource:
        attrs = {
            "class": SKU[a.sku].cls,
            "sku": a.sku,
            "from_region": region_of(a.source),
            "to_region": region_of(a.to),
        }
        return Resource("StockLot", a.transfer_id, attrs)

    def lot_context(a: Any) -> Mapping[str, Any]:
        return {"source_disrupted": world.disrupted(region_of(a.source), world.today)}

    gateway.register(
        "carrier.book",
        book,
        resource_class="route",
        args=BookArgs,
        resource=route,
        context=route_context,
        idempotent=True,
        fenced=True,
    )
    gateway.register(
        "warehouse.dispatch",
        dispatch,
        resource_class="stock",
        args=DispatchArgs,
        resource=load,
        context=load_context,
        idempotent=True,
        fenced=True,
    )
    gateway.register(
        "inventory.reallocate",
        transfer,
        resource_class="stock",
        args=TransferArgs,
        resource=lot,
        context=lot_context,
        idempotent=True,
        fenced=True,
    )

    def shipment(a: Any) -> Resource:
        cls, _late = world.shipment_facts(a.orders, a.to_day - 1)
        customer = a.shipment.split("@")[0]
        return Resource("Shipment", a.shipment, {"class": cls, "region": world.customers[customer].region})

    def shipment_context(a: Any) -> Mapping[str, Any]:
        _cls, late = world.shipment_facts(a.orders, a.to_day - 1)
        customer = a.shipment.split("@")[0]
        return {
            "disruption": world.disrupted(world.customers[customer].region, a.to_day - 1),
            "past_due": late,
        }

    gateway.register(
        "shipment.reprioritize",
        reprioritize,
        resource_class="shipment",
        args=ReprioritizeArgs,
        resource=shipment,
        context=shipment_context,
        idempotent=True,
    )


def storm_agents(
    world: World,
    seed: int,
    desk: Desk | None,
    executor: Callable[[Desk | None, tuple[str, ...]], Executor] = Executor,
) -> tuple[Agent, ...]:
    """The four agents as every run of the storm makes them, in one process or each in its own."""
    config = world.config
    return (
        Forecaster(),
        Allocator(config.regions, config.truck_capacity),
        Router(world.customers, world.depots, config, seed),
        executor(desk, config.regions),
    )


class StormRun:
    """One mode of the storm, built and torn down as an async context; days are stepped one by one.

    Tests use it to step a day at a time, or to swap in an agent (a crashing executor, say).
    The agents live in this process, on the in-process bus; :class:`answerable.logistics.
    distributed.DistributedStormRun` runs the same days with each agent in a process of its own.
    """

    def __init__(
        self,
        mode: Mode,
        seed: int,
        config: ScenarioConfig,
        out_dir: Path,
        *,
        executor: Callable[[Desk | None, tuple[str, ...]], Executor] = Executor,
    ) -> None:
        self.mode, self.seed, self.config = mode, seed, config
        self.out_dir = out_dir
        self.path = out_dir / f"{mode}.db"
        self.world = World(config, seed)
        self.clock = FakeClock(ns=DAY0_NS)
        self.ids = IdSource(self.clock, rng=random.Random(f"ids:{seed}:{mode}"))
        self._executor = executor
        self.agent_keys: dict[str, str] | None = None
        """Agents' public keys for the charter, when they sign what they say (other processes)."""

    @property
    def location(self) -> Path | str:
        """Where the ledger is: a file here, a URL for a ledger on a server."""
        return self.path

    async def _open_ledger(self) -> SQLLedger:
        for stale in (
            self.path,
            partner_records_path(self.path),
            *(self.path.with_name(self.path.name + x) for x in (".key", "-wal", "-shm")),
        ):
            await asyncio.to_thread(stale.unlink, missing_ok=True)
        return SQLiteLedger.open(self.path, create=True, origin=f"logistics.example/storm/{self.mode}")

    async def _bus(self) -> Bus | None:
        return None  # the in-process bus

    async def _start_agents(self) -> None:
        for agent in storm_agents(self.world, self.seed, self.reviewer, self._executor):
            self.system.add(agent)

    def _reviews(self) -> Reviews:
        """Where the desk answers reviews and the review clock ticks: the gateway in this process."""
        return self.gateway

    async def settled(self) -> None:
        """Until every agent has handled everything said so far (the reviews they wait on answered)."""
        await self.system.run_until_idle()

    async def __aenter__(self) -> StormRun:
        await asyncio.to_thread(self.out_dir.mkdir, parents=True, exist_ok=True)
        world, clock, ids = self.world, self.clock, self.ids
        self.ledger = await self._open_ledger()
        self.carrier = httpx.AsyncClient(transport=httpx.ASGITransport(app=make_carrier_app(world.carrier)))
        self.warehouse = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=make_warehouse_app(world.warehouse))
        )
        self.gateway: Gateway = (
            Ungoverned(self.ledger, clock=clock, ids=ids, agents=AGENTS)
            if self.mode == "ungoverned"
            else Gateway(self.ledger, clock=clock, ids=ids)
        )
        register_operations(
            self.gateway, world, self.carrier, self.warehouse, reprioritize=world.reprioritize
        )
        self.reviewer: ModelledDesk | None = None
        self.monitors = None
        if self.mode != "ungoverned":
            other = self.config.rules
            rules = (
                ruleset(
                    clock,
                    ids,
                    foresaw_the_storm=self.mode in ("rules", "governed"),
                    review=self.mode != "rules",
                )
                if other is None
                else new_ruleset(other.policies, other.schema_text, ri_key(), version=2, clock=clock, ids=ids)
            )
            await self.gateway.install(
                charter(AGENTS, clock, ids, self.config.desk, agent_keys=self.agent_keys), rules
            )
            desk = ModelledDesk(self._reviews(), clock, self.config.desk, self.seed)
            self.reviewer = desk if self.mode == "governed" else None  # the only mode with review rules
            known = {f"operation:{o}" for o in self.gateway.operations} | {
                f"resource_class:{c}" for c in ("medical", "retail", "route", "stock", "shipment")
            }
            # Ids of their own, drawn in the order they act: the alerts' ids are the same whether
            # the gateway draws its ids in this process or in its own (result.json names one).
            watch_ids = IdSource(clock, rng=random.Random(f"ids:{self.seed}:{self.mode}:monitors"))
            self.monitors = Monitors(
                load_monitors(MONITORS, known_scopes=known), self.ledger, clock=clock, ids=watch_ids
            )
        self.system = System(
            self.ledger,
            self.gateway,
            agents=AGENTS,
            bus=await self._bus(),
            clock=clock,
            ids=ids,
            watcher=self.monitors,
        )
        await self._start_agents()
        history = {f"{r}/{s}": v for (r, s), v in sorted(world.history.items())}
        await self.system.ingest([("history", "order-system", "orders.history", {"units": history})])
        return self

    async def day(self, day: int) -> None:
        """Morning events, planning and execution, then the day's deliveries.

        The morning's news is heard by every agent before the day's plan is asked for, and each
        step ends when every agent is done: the in-process bus delivers in that order by itself,
        and agents in other processes, each hearing several topics at once, are made to."""
        self.clock.ns = max(self.clock.ns, DAY0_NS + day * 86_400_000_000_000)
        self.world.today = day
        self.world.replenish()
        with self.world.warehouse.lock:
            self.world.warehouse.outages.update(self.world.outage(day))
        *news, plan = _morning(self.world, day)
        await self.system.ingest(news)
        await self.settled()
        await self.system.ingest([plan])
        await self.settled()
        # Evening, whatever the desk's answers moved the clock to; reviews nobody answered in
        # time escalate and close with their rules' safe default now, as the gateway's own tick.
        self.clock.ns = max(self.clock.ns, DAY0_NS + day * 86_400_000_000_000 + 12 * 3_600_000_000_000)
        if self.reviewer is not None:
            await self._reviews().settle_reviews()
        delivered = [
            (
                "deliveries",
                "carrier",
                kind,
                {
                    "customer": d.customer,
                    "region": d.region,
                    "class": d.cls,
                    "day": d.day,
                    "orders": list(d.orders),
                    "on_time": list(d.on_time),
                },
            )
            for kind, batch in (
                ("delivery", self.world.deliver(day)),
                ("delivery.missed", self.world.missed(day)),
            )
            for d in batch
        ]
        await self.system.ingest(delivered)
        await self.settled()

    def halted(self) -> dict[str, str] | None:
        """The halt in force on the whole system, if a person halted it (from the console, the
        command line, in any process): who, when, why. A halted storm runs to its last day all
        the same, since the world does not stop; every call and message after it is refused and
        recorded, so the outcome table shows what the halt cost."""
        for stop in self.gateway.control.state().stops:
            if stop.action == "halt" and stop.scope.kind == "system":
                return {"control": stop.id, "by": stop.by, "at": stop.at, "reason": stop.reason}
        return None

    async def __aexit__(self, *_: object) -> None:
        """Close what was opened (all of it, or what a failed start got to)."""
        for client in (getattr(self, "carrier", None), getattr(self, "warehouse", None)):
            if client is not None:
                await client.aclose()
        if hasattr(self, "gateway"):
            self.gateway.close()
        if hasattr(self, "ledger"):
            self.ledger.close()


async def run(
    mode: Mode,
    seed: int,
    config: ScenarioConfig,
    out_dir: Path,
    *,
    on_day: Callable[[int], Awaitable[None] | None] | None = None,
    storm_run: StormRun | None = None,
) -> RunResult:
    """Run the storm in one mode and measure it; the ledger is written to ``out_dir/{mode}.db``
    (or where ``storm_run``, a run built elsewhere, keeps it).

    ``on_day`` hears each day when it ends; what it returns, if awaitable, is awaited before the
    next day (or, after the last, before the run is measured and closed): a caller watching the
    run, a test or a person at the console, can hold it there while its service still answers."""
    started = time.perf_counter()
    async with storm_run or StormRun(mode, seed, config, out_dir) as storm:
        for day in range(config.days):
            await storm.day(day)
            if on_day is not None:
                held = on_day(day)
                if inspect.isawaitable(held):
                    await held
        storm.ledger.checkpoint()
        metrics = measure(storm.world, storm.ledger, config)
        await asyncio.to_thread(write_partner_records, storm.world, partner_records_path(storm.path))
        if storm.reviewer is not None:
            metrics["reviewer_hours"] = round(storm.reviewer.minutes_spent / 60, 1)
            metrics["reviews_too_late"] = storm.reviewer.too_late
            metrics["answers_against_guidance"] = storm.reviewer.against_guidance
        if storm.monitors is not None:
            metrics.update(monitor_report(storm.world, storm.ledger, storm.monitors.alerts))
        metrics["halted"] = storm.halted()
    metrics["wall_seconds"] = round(time.perf_counter() - started, 2)
    metrics["ledger"] = str(storm.location)
    return RunResult(mode, metrics, storm.location, storm.world)


def _morning(world: World, day: int) -> list[tuple[str, str, str, Mapping[str, Any]]]:
    """What the outside world tells the system at the start of a day."""
    cfg = world.config
    events: list[tuple[str, str, str, Mapping[str, Any]]] = []
    for region in cfg.regions:
        if world.disrupted(region, day):
            events.append(
                (
                    "alerts",
                    "weather-service",
                    "storm.alert",
                    {
                        "region": region,
                        "day": day,
                        "trucks_pct": cfg.storm.trucks_pct,
                        "travel_pct": cfg.storm.travel_pct,
                    },
                )
            )
    for region in cfg.regions:
        events.append(
            (
                "fleet",
                "carrier",
                "fleet.status",
                {
                    "region": region,
                    "day": day,
                    "trucks": world.trucks(region, day),
                    "travel_pct": world.travel_pct(region, day),
                },
            )
        )
    events.append(("stock", "warehouse", "stock.snapshot", {"day": day, "stock": world.stock_snapshot()}))
    orders = world.new_orders(day)
    cover = world.report_cover(day)
    for region in cfg.regions:
        batch = [[o.id, o.customer, o.sku, o.qty, o.due_day] for o in orders if o.region == region]
        events.append(
            ("orders", "order-system", "orders.batch", {"region": region, "day": day, "orders": batch})
        )
        # What customers tell the desk, not the order system: the stores' time-critical lines and
        # the hospitals' stock on hand. The rules never see these; a reviewer reads them.
        critical = [o.id for o in orders if o.region == region and o.time_critical]
        events.append(
            ("reports", "stores", "orders.time_critical", {"region": region, "day": day, "orders": critical})
        )
        mine = {c: n for c, n in cover.items() if world.customers[c].region == region}
        events.append(
            ("reports", "hospitals", "stock.cover", {"region": region, "day": day, "cover_days": mine})
        )
    events.append(("clock", "scheduler", "day.plan", {"day": day}))
    return events


def partner_records_path(ledger: Path) -> Path:
    """Where a run keeps its partners' own records: beside its ledger, ``MODE.partners.jsonl``."""
    return ledger.with_name(f"{ledger.stem}.partners.jsonl")


def write_partner_records(world: World, path: Path) -> None:
    """The carrier's, the warehouse's and the order system's records of what they did, one JSON
    line each: the ledger holds response digests, not prices, so the report recomputes costs and
    postponements from these."""
    lines = []
    for service, state in (("carrier", world.carrier), ("warehouse", world.warehouse)):
        for record in state.records:
            lines.append(
                json.dumps(
                    {
                        "service": service,
                        "kind": record.kind,
                        "key": record.key,
                        "body": record.body.model_dump(mode="json", by_alias=True),
                        "response": record.response.model_dump(mode="json", by_alias=True),
                    },
                    sort_keys=True,
                )
            )
    for shipment, first, to_day, orders, key in world.promises:
        body = {"shipment": shipment, "orders": list(orders), "from_day": first, "to_day": to_day}
        lines.append(
            json.dumps(
                {"service": "order-system", "kind": "promise", "key": key, "body": body, "response": body},
                sort_keys=True,
            )
        )
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def measure(world: World, ledger: SQLLedger, config: ScenarioConfig) -> dict[str, Any]:
    """The outcome table: service to hospitals and stores, money, and what the ledger can attribute."""
    judged = [o for o in world.orders.values() if o.due_day < config.days]
    out: dict[str, Any] = {}
    for cls in ("medical", "retail"):
        mine = [o for o in judged if o.cls == cls]
        on_time = sum(1 for o in mine if o.delivered_day is not None and o.delivered_day <= o.due_day)
        out[f"{cls}_orders"] = len(mine)
        out[f"{cls}_on_time_rate"] = round(on_time / len(mine), 4) if mine else 1.0
    critical = [o for o in judged if o.time_critical]
    on_time = sum(1 for o in critical if o.delivered_day is not None and o.delivered_day <= o.due_day)
    out["time_critical_orders"] = len(critical)
    out["time_critical_on_time_rate"] = round(on_time / len(critical), 4) if critical else 1.0
    postponed = [[world.orders[o] for o in orders] for _s, _f, _t, orders, _k in world.promises]
    out["medical_shipments_postponed"] = sum(any(o.cls == "medical" for o in p) for p in postponed)
    out["time_critical_shipments_postponed"] = sum(any(o.time_critical for o in p) for p in postponed)
    out["hospital_stockout_days"] = sum(
        1 for report in world.cover_reported.values() for left in report.values() if left == 0
    )
    transport = handling = moving = 0
    for record in world.carrier.records:
        if isinstance(record.response, Booking):
            transport += record.response.cost
    for record in world.warehouse.records:
        if isinstance(record.body, DispatchRequest):
            handling += HANDLING_CENTS_PER_UNIT * sum(line.qty for line in record.body.lines)
        elif isinstance(record.body, TransferRequest):
            moving += TRANSFER_CENTS_PER_UNIT * record.body.qty
    penalties = 0
    for o in judged:
        late = (o.delivered_day if o.delivered_day is not None else config.days) - o.due_day
        if late > 0:
            penalties += late * o.qty * o.penalty
    out["total_cost"] = transport + handling + moving
    out["transport_cost_cents"] = transport
    out["handling_cost_cents"] = handling
    out["moving_cost_cents"] = moving
    out["penalties"] = penalties
    out["margin"] = sum(o.margin for o in world.orders.values() if o.delivered_day is not None)
    executions = [decode_entry(e.data) for e in ledger.of_kind("Execution")]
    done = [x for x in executions if isinstance(x, Execution) and x.status == "succeeded"]
    out["actions_executed"] = len(done)
    try:
        ri: str | None = charter_of(ledger).ri
    except AnswerableError:
        ri = None  # the ungoverned baseline has no charter: nobody answers
    out["actions_attributed"] = sum(1 for x in done if attributed(ledger, x, ri))
    decisions = [
        d for d in (decode_entry(e.data) for e in ledger.of_kind("Decision")) if isinstance(d, Decision)
    ]
    reviews = ledger.of_kind("Review")
    outcomes = Counter(_review_outcome(ledger, r.id) for r in reviews)
    out["actions_denied"] = sum(1 for d in decisions if d.effect == "deny") + outcomes["denied"]
    out["reviews_raised"] = len(reviews)
    out["reviews_approved"] = outcomes["approved"]
    out["reviews_denied"] = outcomes["denied"]
    waits = sorted(_waits_minutes(ledger))
    out["review_wait_p50_minutes"] = nearest_rank(waits, 0.50)
    out["review_wait_p95_minutes"] = nearest_rank(waits, 0.95)
    answers = [
        a for a in (decode_entry(e.data) for e in ledger.of_kind("Approval")) if isinstance(a, Approval)
    ]
    simulated = sum(1 for a in answers if a.simulated)
    out["reviewers"] = (
        "none"
        if not answers
        else "modelled people (simulated)"
        if simulated == len(answers)
        else "people"
        if not simulated
        else f"people and modelled people ({simulated} of {len(answers)} answers simulated)"
    )
    out["reviewer_hours"] = None
    """Time the reviewers spent answering: the desk's model says it (the run fills it in)."""
    out["ledger_entries"] = ledger.size()
    return out


def _waits_minutes(ledger: SQLLedger) -> list[float]:
    """Minutes from each review opening to its first answer, in the ledger's own times."""
    opened = {}
    for stored in ledger.of_kind("Review"):
        record = decode_entry(stored.data)
        opened[record.id] = record.at
    waits = {}
    for stored in ledger.of_kind("Approval"):
        answer = decode_entry(stored.data)
        if isinstance(answer, Approval) and answer.review_id in opened and answer.review_id not in waits:
            waits[answer.review_id] = (
                parse_rfc3339(answer.at) - parse_rfc3339(opened[answer.review_id])
            ) / 60e9
    return list(waits.values())


def attributed(ledger: SQLLedger, execution: Execution, ri: str | None) -> bool:
    """Does the ledger itself show who answers for this execution, and through what?

    Not just a filled-in field: the RI named must be the charter's, and the authority's ids must
    resolve to entries that allowed exactly this intent (the allowing Decision and its policies,
    the approvals of its review, or the review's closing by a rule that said proceed).
    """
    authority = execution.authority
    if authority is None or execution.decision_id is None:
        return False
    try:
        if ri is None or authority.responsible != ri:
            return False
        decision = decode_entry(ledger.find(execution.decision_id).data)
        if not isinstance(decision, Decision) or decision.intent_id != execution.intent_id:
            return False
        if authority.via == "policy":
            return decision.effect == "allow" and set(authority.ids) <= set(decision.policy_ids)
        answers = [decode_entry(ledger.find(i).data) for i in authority.ids]
    except AnswerableError:
        return False
    if authority.via == "approval":
        return bool(answers) and all(
            isinstance(a, Approval) and a.verdict == "approve" and a.intent_id == execution.intent_id
            for a in answers
        )
    return all(isinstance(a, ReviewClosed) and a.resolution == "approve" for a in answers)


def _review_outcome(ledger: SQLLedger, review_id: str) -> str:
    """``approved``, ``denied`` or ``open``, counted once per review whatever the number of approvers."""
    followers = [decode_entry(e.data) for e in ledger.caused_by(review_id)]
    if any(isinstance(f, Approval) and f.verdict == "deny" for f in followers) or any(
        isinstance(f, ReviewClosed) and f.resolution == "deny" for f in followers
    ):
        return "denied"
    review = decode_entry(ledger.find(review_id).data)
    executed = [decode_entry(e.data) for e in ledger.caused_by(review.intent_id)]  # type: ignore[union-attr]
    if any(
        isinstance(x, Execution) and x.authority is not None and x.authority.via != "policy" for x in executed
    ):
        return "approved"
    return "open"


def monitor_report(world: World, ledger: SQLLedger, alerts: list[Alert]) -> dict[str, Any]:
    """When the monitor that guards hospitals (the first to pause the medical class) fired, and
    how many medical orders were late before and after; every alert is counted in ``alerts``."""
    guards = [a for a in alerts if a.paused == "resource_class:medical"]
    first = guards[0] if guards else None
    day = None if first is None else (_parse_day(first.at))
    late = [
        o
        for o in world.orders.values()
        if o.cls == "medical"
        and o.due_day < world.config.days
        and (o.delivered_day is None or o.delivered_day > o.due_day)
    ]
    return {
        "alerts": len(alerts),
        "first_alert": None
        if first is None
        else {"monitor": first.monitor, "day": day, "entry": first.id, "index": ledger.find(first.id).index},
        "medical_late_before_alert": len(late) if day is None else sum(1 for o in late if o.due_day <= day),
        "medical_late_after_alert": None if day is None else sum(1 for o in late if o.due_day > day),
        "coordination_alerts": [
            {"monitor": a.monitor, **a.observed} for a in alerts if "topic" in a.observed
        ],
    }


def _parse_day(at: str) -> int:
    return (parse_rfc3339(at) - DAY0_NS) // 86_400_000_000_000


def check_scenario_file(path: Path) -> ScenarioConfig:
    """Load a JSON scenario file, naming the file and the first bad field."""
    try:
        text = read_capped(path).decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read scenario file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"scenario file {path} is not UTF-8 text (byte {exc.start}): give a JSON file"
        ) from exc
    return load_scenario(text, source=str(path))
