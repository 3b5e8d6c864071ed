"""Routing: the planner trades optional stops for cost, never required ones, and its plans hold up."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import numpy as np
import pytest
import vrplib  # type: ignore[import-untyped]

from answerable import RecordInvalid
from answerable.logistics.routing import (
    Fleet,
    InstanceResult,
    RoutePlan,
    RoutingProblem,
    Stop,
    arc_distance,
    arc_travel_time,
    solve,
    solve_instance,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "vrp"


def stop(
    id: str, x: int, y: int, *, demand: int = 1, prize: int = 100, required: bool = False, **kw: int
) -> Stop:
    window = {"ready": 0, "due": 10_000, "service": 0} | kw
    return Stop(id=id, x=x, y=y, demand=demand, prize=prize, required=required, **window)


def day(
    *stops: Stop, vehicles: int = 1, capacity: int = 100, horizon: int = 10_000, pct: int = 100
) -> RoutingProblem:
    fleet = Fleet(vehicles=vehicles, capacity=capacity, fixed_cost=10, unit_distance_cost=1)
    return RoutingProblem(0, 0, horizon, tuple(stops), fleet, travel_factor_pct=pct)


def synthetic_day(size: int, seed: int, pct: int = 100) -> RoutingProblem:
    rng = random.Random(seed)
    stops = []
    for i in range(size):
        ready = rng.randrange(0, 800)
        stops.append(
            Stop(
                id=f"s{i:03d}",
                x=rng.randrange(0, 101),
                y=rng.randrange(0, 101),
                demand=rng.randrange(1, 21),
                ready=ready,
                due=ready + rng.randrange(30, 200),
                service=10,
                prize=rng.randrange(10, 200),
                required=rng.random() < 0.15,
            )
        )
    fleet = Fleet(vehicles=8, capacity=100, fixed_cost=50, unit_distance_cost=1)
    return RoutingProblem(50, 50, 1200, tuple(stops), fleet, travel_factor_pct=pct)


def nint_distance(ax: int, ay: int, bx: int, by: int) -> int:
    """Euclidean distance rounded to nearest, in exact integer arithmetic: floor(sqrt(s) + 1/2)."""
    return (math.isqrt(4 * ((ax - bx) ** 2 + (ay - by) ** 2)) + 1) // 2


def check_plan(problem: RoutingProblem, plan: RoutePlan) -> None:
    """Recompute everything the plan claims from the problem alone, with the depot leaving at 0."""
    by_id = {s.id: s for s in problem.stops}
    visited = [sid for route in plan.routes for sid in route]
    assert len(visited) == len(set(visited)), "a stop is visited twice"
    assert sorted(visited + list(plan.dropped)) == sorted(by_id)
    assert not [sid for sid in plan.dropped if by_id[sid].required]
    assert len(plan.routes) <= problem.fleet.vehicles
    total = 0
    for route in plan.routes:
        assert route, "an empty route was reported"
        assert sum(by_id[sid].demand for sid in route) <= problem.fleet.capacity
        x, y, clock = problem.depot_x, problem.depot_y, 0
        for sid in route:
            s = by_id[sid]
            leg = nint_distance(x, y, s.x, s.y)
            total += leg
            begin = max(clock + math.ceil(leg * problem.travel_factor_pct / 100), s.ready)
            assert begin <= s.due, f"{sid} served at {begin}, after its due time {s.due}"
            clock, x, y = begin + s.service, s.x, s.y
        leg = nint_distance(x, y, problem.depot_x, problem.depot_y)
        total += leg
        assert clock + math.ceil(leg * problem.travel_factor_pct / 100) <= problem.horizon
    assert plan.distance == total
    fleet = problem.fleet
    assert plan.cost == fleet.fixed_cost * len(plan.routes) + fleet.unit_distance_cost * total


def test_scarce_capacity_drops_the_lowest_prizes_first():
    """With room for three of five equal stops, the two with the smallest prizes are dropped."""
    prizes = {"a": 1000, "b": 900, "c": 800, "d": 60, "e": 50}
    stops = [stop(sid, 3 + i, 4, prize=p) for i, (sid, p) in enumerate(prizes.items())]
    scarce = solve(day(*stops, capacity=3))
    assert scarce.feasible
    assert sorted(scarce.dropped) == ["d", "e"]
    roomy = solve(day(*stops, capacity=5))
    assert roomy.dropped == (), "the low prizes are worth collecting when there is room"


def test_unprofitable_optional_stop_is_dropped_but_required_one_is_visited():
    """A far stop worth nothing is dropped unless it is required."""
    problem = day(stop("far-required", 400, 0, prize=0, required=True), stop("far-optional", 0, 400, prize=0))
    plan = solve(problem)
    assert plan.feasible
    assert plan.routes == (("far-required",),)
    assert plan.dropped == ("far-optional",)
    check_plan(problem, plan)


def test_required_stops_are_all_visited_on_a_busy_day():
    """On a feasible synthetic day every required stop is on some route."""
    problem = synthetic_day(70, seed=1)
    plan = solve(problem)
    assert plan.feasible
    required = {s.id for s in problem.stops if s.required}
    assert required <= {sid for route in plan.routes for sid in route}


def test_same_seed_gives_the_same_plan():
    """The stop criterion is an iteration count, so a seed reproduces the plan exactly."""
    problem = synthetic_day(70, seed=2)
    assert solve(problem, seed=7) == solve(problem, seed=7)


def test_empty_problem_gives_an_empty_plan():
    """No stops: no routes, nothing dropped, nothing spent."""
    assert solve(day()) == RoutePlan(routes=(), dropped=(), distance=0, cost=0, feasible=True)


def test_no_vehicles_drops_every_stop():
    """Without trucks optional stops are dropped, and a required one makes the plan infeasible."""
    assert solve(day(stop("a", 1, 1), vehicles=0)) == RoutePlan((), ("a",), 0, 0, True)
    assert not solve(day(stop("a", 1, 1, required=True), vehicles=0)).feasible


@pytest.mark.parametrize("pct", [100, 135])
def test_routes_respect_time_windows_capacity_and_reported_distance(pct: int):
    """Arrival times, loads, distance and cost recomputed from the problem match the plan."""
    problem = synthetic_day(80, seed=3, pct=pct)
    plan = solve(problem, seed=1)
    assert plan.feasible
    check_plan(problem, plan)


def test_storm_slows_travel_without_lengthening_roads():
    """A stop reachable in time at normal speed is dropped at half speed; distance is unchanged."""
    problem = day(stop("late", 100, 0, due=150, prize=1000))
    calm = solve(problem)
    assert calm.routes == (("late",),)
    assert calm.distance == 200
    storm = solve(day(stop("late", 100, 0, due=150, prize=1000), pct=200))
    assert storm.dropped == ("late",)
    assert storm.feasible


def test_required_stops_beyond_capacity_give_an_infeasible_plan_not_an_error():
    """Two required loads of 8 on one truck of 10 cannot be planned; the plan says so."""
    problem = day(
        stop("a", 5, 0, demand=8, required=True), stop("b", 0, 5, demand=8, required=True), capacity=10
    )
    plan = solve(problem)
    assert not plan.feasible
    assert plan.dropped == ()
    assert sorted(sid for route in plan.routes for sid in route) == ["a", "b"]


def test_required_stop_that_cannot_be_reached_in_time_gives_an_infeasible_plan():
    """A required window closing before the truck can arrive is reported, not raised."""
    plan = solve(day(stop("early", 100, 0, due=50, required=True)))
    assert not plan.feasible


def test_arc_helpers_give_the_units_the_planner_uses():
    """The public helpers agree with nearest-integer distance and rounded-up slowed travel time."""
    rng = random.Random(5)
    for _ in range(500):
        ax, ay, bx, by = (rng.randrange(-300, 300) for _ in range(4))
        pct = rng.randrange(50, 300)
        d = nint_distance(ax, ay, bx, by)
        assert arc_distance(ax, ay, bx, by) == d
        assert arc_travel_time(d, pct) == math.ceil(d * pct / 100)


def test_malformed_stops_and_problems_are_rejected():
    """An empty time window or a repeated stop id is refused at construction."""
    with pytest.raises(RecordInvalid, match="time window"):
        stop("a", 0, 0, ready=10, due=5)
    with pytest.raises(RecordInvalid, match="repeated"):
        day(stop("a", 0, 0), stop("a", 1, 1))


# Public benchmarks. The evaluators below read the files themselves and apply the README's
# rounding per arc, so they check the solver's numbering and distances rather than repeat them.


def solomon_evaluator(path: Path) -> tuple[dict[str, int], list[tuple[int, ...]]]:
    """Fleet data and per-node rows ``(x, y, demand, ready, due, service)`` keyed by CUST NO."""
    lines = path.read_text().splitlines()
    number, capacity = map(int, lines[lines.index("VEHICLE") + 2].split())
    rows: dict[int, tuple[int, ...]] = {}
    for line in lines[lines.index("CUSTOMER") + 2 :]:
        if line.strip():
            cust, *values = map(int, line.split())
            rows[cust] = tuple(values)
    return {"vehicles": number, "capacity": capacity}, [rows[i] for i in range(len(rows))]


def solomon_tenths(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Arc length truncated to one decimal, in tenths: floor(10·d) = isqrt(100·d²)."""
    return math.isqrt(100 * ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2))


def check_solomon(path: Path, routes: list[list[int]]) -> float:
    fleet, nodes = solomon_evaluator(path)
    assert sorted(n for r in routes for n in r) == list(range(1, len(nodes)))
    assert len(routes) <= fleet["vehicles"]
    total = 0
    for route in routes:
        assert sum(nodes[n][2] for n in route) <= fleet["capacity"]
        here, clock = nodes[0], 0
        for n in route:
            leg = solomon_tenths(here, nodes[n])
            total += leg
            begin = max(clock + leg, 10 * nodes[n][3])
            assert begin <= 10 * nodes[n][4], f"customer {n} late"
            clock, here = begin + 10 * nodes[n][5], nodes[n]
        leg = solomon_tenths(here, nodes[0])
        total += leg
        assert clock + leg <= 10 * nodes[0][4]
    return total / 10


def check_cvrp(path: Path, routes: list[list[int]]) -> float:
    inst = vrplib.read_instance(str(path))
    arcs = np.round(inst["edge_weight"]).astype(int)
    assert sorted(n for r in routes for n in r) == list(range(1, inst["dimension"]))
    total = 0
    for route in routes:
        assert sum(int(inst["demand"][n]) for n in route) <= inst["capacity"]
        walk = [0, *route, 0]
        total += sum(int(arcs[a, b]) for a, b in itertools.pairwise(walk))
    return float(total)


CHECKERS = {".txt": check_solomon, ".vrp": check_cvrp}


@pytest.mark.parametrize(
    "name", ["solomon/C101.txt", "solomon/R101.txt", "cvrp/A-n32-k5.vrp", "cvrp/E-n13-k4.vrp"]
)
def test_evaluators_reproduce_the_best_known_solutions(name: str):
    """The .sol routes score their stated cost under the evaluators, so the numbering is the .sol one."""
    path = DATA / name
    solution = vrplib.read_solution(str(path.with_suffix(".sol")))
    assert CHECKERS[path.suffix](path, solution["routes"]) == pytest.approx(solution["cost"])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "bks"), [("solomon/C101.txt", 827.3), ("cvrp/A-n32-k5.vrp", 784.0)])
def test_public_instance_is_solved_validly_near_the_best_known(name: str, bks: float):
    """Two seconds give a complete, feasible solution within 3% of the like-with-like BKS."""
    path = DATA / name
    result = solve_instance(path, seconds=2)
    assert isinstance(result, InstanceResult)
    assert result.feasible
    assert result.instance == path.stem
    assert result.bks == bks
    assert CHECKERS[path.suffix](path, result.routes) == pytest.approx(result.distance)
    assert result.vehicles == len(result.routes)
    assert result.gap_pct is not None
    assert result.gap_pct == pytest.approx(100 * (result.distance - bks) / bks)
    assert result.gap_pct < 3.0
