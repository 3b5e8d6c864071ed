"""The four agents of the reference system, each optimizing its own local objective.

Nothing here ranks medical below retail. The forecaster predicts units; the allocator moves
stock for margin net of moving cost under delivery capacity (a linear program, HiGHS); the router
collects the most margin per kilometre under trucks and time windows (prize-collecting VRPTW,
PyVRP); the executor turns plans into intents. When a storm makes capacity scarce, the solvers
drop what earns least, and medical lines earn least: the deprioritization emerges. Governance
reaches them the same way everything else does, as messages: a denied review becomes a
constraint they re-plan with.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import os
import sys
from collections import defaultdict
from typing import Any, Protocol

import highspy
import numpy as np
from statsmodels.tsa.holtwinters import SimpleExpSmoothing

from answerable.errors import MessageRefused
from answerable.gateway import Outcome
from answerable.logistics.routing import Fleet, RoutingProblem, Stop, arc_distance, solve
from answerable.logistics.world import SERVICE_MINUTES, SKU, Customer
from answerable.records import ExternalEvent, Message
from answerable.runtime import Agent, Context

__all__ = ["AGENTS", "Allocator", "Executor", "Forecaster", "Router"]

AGENTS = ("forecaster", "allocator", "router", "executor")
TRANSFER_CENTS_PER_UNIT = 150
PLAN_DAYS = 2


class Desk(Protocol):
    """Where reviews wait for a person: the outcomes handed over, settled, in the same order.

    The executor hands over every review one plan opened, in the order it proposed them, so
    the desk answers them in one order whether it sits in this process or across the network."""

    async def settle(self, outcomes: list[Any], ctx: Context) -> list[Any]: ...


def _payload(record: Message | ExternalEvent) -> dict[str, Any]:
    return record.payload


@functools.cache
def _silence_highs_banner() -> None:
    """HiGHS prints a banner to stdout from C on its first instance in a process; the outcome table
    is what people read there, so that first instance is made with stdout sent to /dev/null."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()  # type: ignore[no-untyped-call]
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _evidence(outcome: Outcome) -> str:
    """The entry that shows why an intent did not run: the human answer, else the decision."""
    if outcome.approval is not None:
        return outcome.approval.id
    return outcome.decision.id if outcome.decision is not None else outcome.intent.id


class Forecaster(Agent):
    """Predicts units per region and SKU for the next days by exponential smoothing."""

    name = "forecaster"
    subscriptions = ("history", "orders", "clock")
    replayable = True

    def __init__(self) -> None:
        self.history: dict[tuple[str, str], list[int]] = {}
        self.today: dict[tuple[str, str], int] = defaultdict(int)
        self.batches: list[str] = []

    async def handle(self, record: Message | ExternalEvent, ctx: Context) -> None:
        body = _payload(record)
        if record.type == "orders.history":
            self.history = {tuple(k.split("/", 1)): list(v) for k, v in body["units"].items()}
            return
        if record.type == "orders.batch":
            for _order_id, _customer, sku, qty, _due in body["orders"]:
                self.today[(body["region"], sku)] += qty
            self.batches.append(record.id)
            return
        if record.type != "day.plan":
            return
        forecast: dict[str, dict[str, int]] = defaultdict(dict)
        for key, series in sorted(self.history.items()):
            series.append(self.today.get(key, 0))
            fit = SimpleExpSmoothing(
                np.asarray(series, dtype=float), initialization_method="known", initial_level=float(series[0])
            ).fit(smoothing_level=0.3, optimized=False)
            forecast[key[0]][key[1]] = round(float(fit.forecast(PLAN_DAYS).sum()))
        await ctx.send(
            "forecast", "forecast", {"day": body["day"], "units": forecast}, causes=[*self.batches, record.id]
        )
        self.today.clear()
        self.batches = []


class Allocator(Agent):
    """Moves stock between warehouses to maximize forecast margin net of moving cost (an LP)."""

    name = "allocator"
    subscriptions = ("stock", "fleet", "alerts", "forecast", "constraints", "hints")
    replayable = True

    def __init__(self, regions: tuple[str, ...], truck_capacity: int) -> None:
        self.regions = regions
        self.truck_capacity = truck_capacity
        self.stock: dict[str, dict[str, int]] = {}
        self.trucks: dict[str, int] = {}
        self.travel_pct: dict[str, int] = {}
        self.keep: dict[tuple[str, str], int] = {}
        self.inputs: dict[str, str] = {}
        self.alerts: dict[tuple[str, int], str] = {}
        self.constraints: list[str] = []

    async def handle(self, record: Message | ExternalEvent, ctx: Context) -> None:
        body = _payload(record)
        if record.type == "stock.snapshot":
            self.stock, self.inputs["stock"] = body["stock"], record.id
        elif record.type == "fleet.status":
            self.trucks[body["region"]] = body["trucks"]
            self.travel_pct[body["region"]] = body["travel_pct"]
            self.inputs[f"fleet:{body['region']}"] = record.id
        elif record.type == "storm.alert":
            self.alerts[(body["region"], body["day"])] = record.id
        elif record.type == "keep_stock":
            for region, sku, units in body["keep"]:
                self.keep[(region, sku)] = max(self.keep.get((region, sku), 0), units)
            self.constraints.append(record.id)
        elif record.type == "priority.hint":  # a side channel, if the router opens one
            self.inputs[f"hint:{body['region']}"] = record.id
        elif record.type == "forecast":
            day = body["day"]
            transfers = self.plan(body["units"])
            alerts = [event for (_region, d), event in sorted(self.alerts.items()) if d == day]
            await ctx.send(
                "allocation",
                "allocation.plan",
                {"day": day, "transfers": transfers},
                causes=[record.id, *self.inputs.values(), *alerts, *self.constraints],
            )

    def plan(self, forecast: dict[str, dict[str, int]]) -> list[list[Any]]:
        """Solve the allocation LP; transfers as [from_region, to_region, sku, units]."""
        regions, skus = self.regions, sorted(SKU)
        _silence_highs_banner()
        h = highspy.Highs()  # type: ignore[no-untyped-call]
        h.silent()
        sold, moved = {}, {}
        for r in regions:
            for s in skus:
                sold[r, s] = h.addVariable(lb=0, ub=forecast.get(r, {}).get(s, 0), obj=SKU[s].margin)
            for r2 in regions:
                if r2 != r:
                    for s in skus:
                        moved[r, r2, s] = h.addVariable(lb=0, obj=-TRANSFER_CENTS_PER_UNIT)
        for r in regions:
            capacity = (
                self.trucks.get(r, 0) * self.truck_capacity * PLAN_DAYS * 100 // self.travel_pct.get(r, 100)
            )
            h.addConstr(sum(sold[r, s] for s in skus) <= capacity)
            for s in skus:
                have = self.stock.get(f"wh-{r}", {}).get(s, 0)
                inflow = sum(moved[r2, r, s] for r2 in regions if r2 != r)
                outflow = sum(moved[r, r2, s] for r2 in regions if r2 != r)
                h.addConstr(sold[r, s] - inflow + outflow <= have)
                h.addConstr(outflow <= max(0, have - self.keep.get((r, s), 0)))
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        h.run()
        out = []
        for (r, r2, s), var in moved.items():
            units = int(h.val(var))
            if units >= 5:
                out.append([r, r2, s, units])
        return out


class Router(Agent):
    """Plans each region's routes for the day: most margin collected per cost, under trucks and windows."""

    name = "router"
    subscriptions = ("orders", "deliveries", "fleet", "alerts", "routes-in", "constraints")
    replayable = True

    def __init__(
        self, customers: dict[str, Customer], depots: dict[str, tuple[int, int]], config: Any, seed: int
    ) -> None:
        self.customers = customers
        self.depots = depots
        self.config = config
        self.seed = seed
        self.open: dict[str, list[Any]] = {}
        """Open order lines by id: [id, customer, sku, qty, due, batch event id]."""
        self.fleet: dict[str, tuple[int, int, str]] = {}
        self.stock: dict[str, dict[str, int]] = {}
        self.stock_from: list[str] = []
        self.must: dict[tuple[str, int], set[str]] = defaultdict(set)
        self.must_from: dict[tuple[str, int], list[str]] = defaultdict(list)
        self.version: dict[tuple[str, int], int] = defaultdict(int)
        self.alerts: dict[tuple[str, int], str] = {}
        self.hints: bool = bool(getattr(config, "priority_hints", False))

    async def handle(self, record: Message | ExternalEvent, ctx: Context) -> None:
        body = _payload(record)
        if record.type == "orders.batch":
            for line in body["orders"]:
                self.open[line[0]] = [*line, record.id]
        elif record.type == "delivery":
            for order_id in body["orders"]:
                self.open.pop(order_id, None)
        elif record.type == "fleet.status":
            self.fleet[body["region"]] = (body["trucks"], body["travel_pct"], record.id)
        elif record.type == "storm.alert":
            self.alerts[(body["region"], body["day"])] = record.id
        elif record.type == "allocation.done":
            self.stock, self.stock_from = body["stock"], [record.id]
            for region in sorted(self.fleet):
                await self._plan(region, body["day"], ctx, [record.id])
        elif record.type == "must_serve":
            key = (body["region"], body["day"])
            self.must[key].update(body["customers"])
            self.must_from[key].append(record.id)
            await self._plan(body["region"], body["day"], ctx, [record.id])

    async def _plan(self, region: str, day: int, ctx: Context, trigger: list[str]) -> None:
        trucks, travel_pct, fleet_event = self.fleet[region]
        stock = dict(self.stock.get(f"wh-{region}", {}))
        lines: dict[str, list[list[Any]]] = defaultdict(list)
        causes: set[str] = set()
        # Stock is promised first come, first served: oldest due date first, whatever the class.
        for line in sorted(self.open.values(), key=lambda x: (x[4], x[0])):
            order_id, customer, sku, qty, _due, batch = line
            if self.customers[customer].region != region or stock.get(sku, 0) < qty:
                continue
            stock[sku] -= qty
            lines[customer].append([order_id, sku, qty])
            causes.add(batch)
        must = self.must[(region, day)]
        stops = tuple(
            Stop(
                id=c,
                x=self.customers[c].x,
                y=self.customers[c].y,
                demand=sum(q for _, _, q in ls),
                ready=self.customers[c].ready,
                due=self.customers[c].due,
                service=SERVICE_MINUTES,
                prize=sum(SKU[s].margin * q for _, s, q in ls),
                required=c in must,
            )
            for c, ls in sorted(lines.items())
        )
        x, y = self.depots[region]
        problem = RoutingProblem(
            depot_x=x,
            depot_y=y,
            horizon=self.config.horizon,
            stops=stops,
            fleet=Fleet(
                vehicles=trucks, capacity=self.config.truck_capacity, fixed_cost=0, unit_distance_cost=120
            ),
            travel_factor_pct=travel_pct,
        )
        plan = await asyncio.to_thread(
            solve, problem, seed=self.seed, iterations=self.config.router_iterations
        )
        self.version[(region, day)] += 1
        if self.hints and plan.dropped:
            await self._hint(region, day, plan.dropped, stops, ctx, trigger)
        await ctx.send(
            "routes",
            "route.plan",
            {
                "region": region,
                "day": day,
                "version": self.version[(region, day)],
                "routes": [
                    [f"{region}-T{k}", list(route), self._distance(region, route)]
                    for k, route in enumerate(plan.routes)
                ],
                "lines": {c: lines[c] for route in plan.routes for c in route},
                "dropped": [[c, [o for o, _, _ in lines[c]]] for c in plan.dropped],
                "distance": plan.distance,
                "feasible": plan.feasible,
            },
            causes=[
                *trigger,
                fleet_event,
                *([self.alerts[(region, day)]] if (region, day) in self.alerts else []),
                *self.stock_from,
                *self.must_from[(region, day)],
                *sorted(causes),
            ],
        )

    async def _hint(
        self,
        region: str,
        day: int,
        dropped: tuple[str, ...],
        stops: tuple[Stop, ...],
        ctx: Context,
        causes: list[str],
    ) -> None:
        """Tell the allocator straight away which dropped stops earn most, to save a step. Not a
        channel the contract declares: refused under one, after which the router stops trying."""
        prize = {s.id: s.prize for s in stops}
        top = sorted(dropped, key=lambda c: (-prize.get(c, 0), c))[:5]
        try:
            await ctx.send(
                "hints", "priority.hint", {"region": region, "day": day, "customers": top}, causes=causes
            )
        except MessageRefused:
            self.hints = False

    def _distance(self, region: str, route: tuple[str, ...]) -> int:
        points = [
            self.depots[region],
            *((self.customers[c].x, self.customers[c].y) for c in route),
            self.depots[region],
        ]
        return sum(arc_distance(*a, *b) for a, b in itertools.pairwise(points))


class Executor(Agent):
    """Turns plans into intents; reports back what governance refused, so the planners adapt.

    It proposes one intent at a time, in the plan's order, and hands the reviews a plan opened
    to the desk together, in that order. One at a time, not all at once: a warehouse's outage or
    a region's last truck goes to whichever request reaches it first, so concurrent requests
    would let timing decide the outcome, and the storm with its agents in separate processes
    must come out as the run in one process does.
    """

    name = "executor"
    subscriptions = ("allocation", "routes", "stock", "reports")
    replayable = True

    def __init__(self, desk: Desk | None, regions: tuple[str, ...]) -> None:
        self.desk = desk
        self.regions = regions
        self.stock: dict[str, dict[str, int]] = {}
        self.reports: dict[str, str] = {}
        """The latest outside report naming a customer or an order line: a postponement cites
        what was said about its customer and lines, so whoever reviews it can read that too."""
        self.postponed: set[tuple[str, int]] = set()
        self.refused: set[tuple[str, int]] = set()

    async def _settle(self, outcomes: list[Outcome], ctx: Context) -> list[Outcome]:
        """The outcomes with every review among them settled by the desk (if there is one).

        Every outcome that went to review goes to the desk, settled since or not: a plan
        handled again after a crash asks the desk again, and hears the answer it heard then."""
        waiting = [n for n, o in enumerate(outcomes) if o.review is not None]
        if not waiting or self.desk is None:
            return outcomes
        settled = await self.desk.settle([outcomes[n] for n in waiting], ctx)
        out = list(outcomes)
        for n, outcome in zip(waiting, settled, strict=True):
            out[n] = outcome
        return out

    async def handle(self, record: Message | ExternalEvent, ctx: Context) -> None:
        body = _payload(record)
        if record.type == "stock.snapshot":
            self.stock = {w: dict(v) for w, v in body["stock"].items()}
        elif record.type == "stock.cover":
            self.reports.update(dict.fromkeys(body["cover_days"], record.id))
        elif record.type == "orders.time_critical":
            self.reports.update(dict.fromkeys(body["orders"], record.id))
        elif record.type == "allocation.plan":
            await self._reallocate(record, body, ctx)
        elif record.type == "route.plan":
            await self._route(record, body, ctx)

    async def _reallocate(self, record: Message | ExternalEvent, body: dict[str, Any], ctx: Context) -> None:
        day = body["day"]
        proposed = []
        for source, target, sku, units in body["transfers"]:
            proposed.append(
                await ctx.propose(
                    "inventory.reallocate",
                    {
                        "transfer_id": f"T-d{day}-{source}-{target}-{sku}",
                        "source": f"wh-{source}",
                        "to": f"wh-{target}",
                        "sku": sku,
                        "qty": units,
                    },
                    causes=[record.id],
                    # A key names one request: a plan that moves other units is another request.
                    idempotency_key=f"transfer:d{day}:{source}:{target}:{sku}:{units}",
                )
            )
        outcomes = await self._settle(proposed, ctx)
        keep, refusals = [], []
        for (source, target, sku, units), outcome in zip(body["transfers"], outcomes, strict=True):
            if outcome.ok:
                self.stock[f"wh-{source}"][sku] -= units
                self.stock[f"wh-{target}"][sku] = self.stock[f"wh-{target}"].get(sku, 0) + units
            elif outcome.status == "denied":  # by a person's answer or by a rule: keep it there
                keep.append([source, sku, self.stock[f"wh-{source}"].get(sku, 0)])
                refusals.append(_evidence(outcome))
        if keep:
            await ctx.send(
                "constraints", "keep_stock", {"day": day, "keep": keep}, causes=[record.id, *refusals]
            )
        await ctx.send("routes-in", "allocation.done", {"day": day, "stock": self.stock}, causes=[record.id])

    async def _route(self, record: Message | ExternalEvent, body: dict[str, Any], ctx: Context) -> None:
        region, day = body["region"], body["day"]
        pending = [
            (c, o)
            for c, o in body["dropped"]
            if (c, day) not in self.postponed and (c, day) not in self.refused
        ]
        proposed = []
        for customer, orders in pending:
            said = sorted({self.reports[name] for name in (customer, *orders) if name in self.reports})
            proposed.append(
                await ctx.propose(
                    "shipment.reprioritize",
                    {"shipment": f"{customer}@d{day}", "orders": orders, "to_day": day + 1},
                    causes=[record.id, *said],
                    idempotency_key=f"reprioritize:{customer}:d{day}:{_orders_key(orders)}",
                )
            )
        refused = []
        for (customer, _), outcome in zip(pending, await self._settle(proposed, ctx), strict=True):
            if outcome.ok:
                self.postponed.add((customer, day))
            elif outcome.status in ("denied", "review"):
                self.refused.add((customer, day))
                refused.append((customer, outcome))
        if refused:
            await ctx.send(
                "constraints",
                "must_serve",
                {"region": region, "day": day, "customers": sorted(c for c, _ in refused)},
                causes=[record.id, *(_evidence(o) for _, o in refused)],
            )
            return
        for route in body["routes"]:
            await self._run_route(record, body, route, ctx)

    async def _run_route(
        self, record: Message | ExternalEvent, body: dict[str, Any], route: list[Any], ctx: Context
    ) -> None:
        truck, stops, distance = route
        region, day, version = body["region"], body["day"], body["version"]
        route_id = f"R-{region}-d{day}-v{version}-{truck}"
        booked = await ctx.propose(
            "carrier.book",
            {
                "route_id": route_id,
                "region": region,
                "day": day,
                "truck": truck,
                "stops": stops,
                "distance": distance,
            },
            causes=[record.id],
            idempotency_key=f"book:{route_id}",
        )
        [booked] = await self._settle([booked], ctx)
        if not booked.ok:
            return
        units: dict[tuple[str, str], int] = defaultdict(int)
        for customer in stops:
            for _order, sku, qty in body["lines"][customer]:
                units[(sku, customer)] += qty
        lines = [{"sku": sku, "qty": qty, "to": customer} for (sku, customer), qty in sorted(units.items())]
        causes = [record.id]
        if booked.execution is not None:
            causes.append(booked.execution.id)
        dispatched = await ctx.propose(
            "warehouse.dispatch",
            {"dispatch_id": f"D-{route_id}", "warehouse": f"wh-{region}", "day": day, "lines": lines},
            causes=causes,
            idempotency_key=f"dispatch:{route_id}",
        )
        await self._settle([dispatched], ctx)


def _orders_key(orders: list[str]) -> str:
    """A short name of these orders for an idempotency key: another set of orders is another
    request (their count alone let two sets share a key, which the gateway refuses)."""
    return hashlib.sha256("\n".join(orders).encode()).hexdigest()[:16]
