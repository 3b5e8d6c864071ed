"""The route planner's solver: prize-collecting vehicle routing with time windows, on PyVRP.

Two entry points share one modelling path (integer matrices → ``pyvrp.ProblemData`` → iterated
local search → routes as node numbers):

- :func:`solve` plans a day: optional stops carry a prize, required stops must be served, and
  the objective is collected prizes minus fixed vehicle costs and distance costs. It stops on an
  iteration count, never on time, so a seed reproduces the plan on any machine.
- :func:`solve_instance` runs the same path on public benchmark files (Solomon VRPTW, VRPLIB
  CVRP) under a time budget, and reports the gap to the best-known solution of the matching
  rounding convention (see ``tests/data/vrp/README.md``).
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import vrplib  # type: ignore[import-untyped]
from pyvrp import (
    Client,
    Depot,
    IteratedLocalSearchParams,
    Location,
    ProblemData,
    Solution,
    SolveParams,
    VehicleType,
)
from pyvrp import solve as pyvrp_solve
from pyvrp.exceptions import PenaltyBoundWarning
from pyvrp.search import NeighbourhoodParams, PerturbationParams
from pyvrp.stop import MaxIterations, MaxRuntime, StoppingCriterion

from answerable import ConfigError, RecordInvalid

__all__ = [
    "Fleet",
    "InstanceResult",
    "RoutePlan",
    "RoutingProblem",
    "Stop",
    "arc_distance",
    "arc_travel_time",
    "solve",
    "solve_instance",
]

_Matrix = npt.NDArray[np.int64]

# The planner must answer in well under half a second for 70-150 stops at 2000 iterations.
# PyVRP's defaults (50 neighbours, up to 25 perturbed clients, exhaustive search on each new
# best) spend 1.5-3.7 s of CPU on that. 20 neighbours and at most 15 perturbed clients, without
# the exhaustive search, stop on iterations (so a seed replays) and, given the same CPU time as
# the defaults get, lose nothing on average over all 56 Solomon and 6 CVRP instances of
# tests/data/vrp (mean -0.37%, worst instance +0.45%, three seeds) and cost 0.27 / 0.38 s CPU on
# 70 / 150-stop planner days; at most 3 perturbed clients (the earlier setting) took a third of
# that but lost 1.8% on average and 7.6% on C105.
# ``bench/routing.py --versus-defaults`` re-measures it, ``--planner`` times it on planner days.
_PLANNER_PARAMS: Final = SolveParams(
    ils=IteratedLocalSearchParams(exhaustive_on_best=False),
    neighbourhood=NeighbourhoodParams(num_neighbours=20),
    perturbation=PerturbationParams(min_perturbations=1, max_perturbations=15),
)

# A benchmark run has seconds, not milliseconds, so it keeps PyVRP's tuned defaults.
_BENCHMARK_PARAMS: Final = SolveParams()

_SOLOMON_CONVENTION: Final = "distance_only_dimacs"
_CVRP_CONVENTION: Final = "cvrp_distance_only_nint"


@dataclass(frozen=True, slots=True)
class Stop:
    """One place a truck may (or must) visit, in the planner's integer units."""

    id: str
    x: int
    y: int
    demand: int
    """Load taken from the truck; the sum on one route may not exceed ``Fleet.capacity``."""
    ready: int
    """Earliest start of service; a truck arriving earlier waits."""
    due: int
    """Latest start of service (not latest departure), as in Solomon's instances."""
    service: int
    prize: int
    """What visiting the stop is worth, in the same units as the fleet's costs."""
    required: bool
    """A required stop is never traded away for cost; if it cannot be served the plan is infeasible."""

    def __post_init__(self) -> None:
        problems = []
        if not self.id:
            problems.append("an empty id")
        if self.demand < 0 or self.service < 0 or self.prize < 0:
            problems.append("a negative demand, service time or prize")
        if not 0 <= self.ready <= self.due:
            problems.append(f"a time window [{self.ready}, {self.due}] that is empty or before 0")
        if problems:
            raise RecordInvalid(f"stop {self.id!r} has {' and '.join(problems)}", record="Stop")


@dataclass(frozen=True, slots=True)
class Fleet:
    """Identical trucks based at the depot."""

    vehicles: int
    capacity: int
    fixed_cost: int
    """Charged once for every truck that leaves the depot."""
    unit_distance_cost: int
    """Charged per unit of distance driven."""

    def __post_init__(self) -> None:
        if min(self.vehicles, self.capacity, self.fixed_cost, self.unit_distance_cost) < 0:
            raise RecordInvalid(f"fleet {self} has a negative field", record="Fleet")


@dataclass(frozen=True, slots=True)
class RoutingProblem:
    """One day's routing question: where the depot is, until when trucks may drive, what to visit."""

    depot_x: int
    depot_y: int
    horizon: int
    """Trucks leave at 0 or later and must be back at the depot by ``horizon``."""
    stops: tuple[Stop, ...]
    fleet: Fleet
    travel_factor_pct: int = 100
    """Travel time as a percentage of distance (a storm slows trucks but does not lengthen roads)."""

    def __post_init__(self) -> None:
        if self.horizon < 0 or self.travel_factor_pct <= 0:
            raise RecordInvalid(
                f"horizon {self.horizon} must be >= 0 and travel_factor_pct "
                f"{self.travel_factor_pct} must be > 0",
                record="RoutingProblem",
            )
        ids = [stop.id for stop in self.stops]
        if len(set(ids)) != len(ids):
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            raise RecordInvalid(f"stop ids must be unique; repeated: {repeated}", record="RoutingProblem")


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """The planner's answer: which trucks drive where, and what is left undone."""

    routes: tuple[tuple[str, ...], ...]
    """Stop ids in visiting order, one tuple per truck that leaves; the depot is implied at both ends."""
    dropped: tuple[str, ...]
    """Stops no route visits, in the problem's order."""
    distance: int
    cost: int
    """Operating cost: ``fixed_cost`` per route plus ``unit_distance_cost`` times ``distance``."""
    feasible: bool
    """False when some capacity, time window or required stop could not be honoured; the routes
    are then the least-bad ones found, for a person to look at."""


@dataclass(frozen=True, slots=True)
class InstanceResult:
    """A solver run on a public benchmark instance, in that instance's own units and numbering."""

    instance: str
    routes: list[list[int]]
    """Node numbers as the instance's ``.sol`` files use them (Solomon: ``CUST NO.``; VRPLIB:
    0-based node index), depot left out."""
    distance: float
    """Total distance under the instance's BKS rounding (Solomon: arcs truncated to 0.1; CVRP:
    arcs rounded to the nearest integer)."""
    vehicles: int
    bks: float | None
    gap_pct: float | None
    feasible: bool


@dataclass(frozen=True, slots=True)
class _Network:
    """Depot at index 0, clients after it, every value already an integer in solver units.

    Both entry points build one of these, so the planner and the benchmarks exercise the same
    translation into PyVRP.
    """

    xy: _Matrix
    distance: _Matrix
    duration: _Matrix
    demand: Sequence[int]
    ready: Sequence[int]
    due: Sequence[int]
    service: Sequence[int]
    prize: Sequence[int]
    required: Sequence[bool]
    vehicles: int
    capacity: int
    horizon: int
    fixed_cost: int = 0
    unit_distance_cost: int = 1


def arc_distance(ax: int, ay: int, bx: int, by: int) -> int:
    """Planner distance between two points: Euclidean, rounded to the nearest integer.

    There are no ties to break: the square root of an integer is never exactly ``k + 0.5``.
    """
    return round(math.hypot(ax - bx, ay - by))


def arc_travel_time(distance: int, travel_factor_pct: int) -> int:
    """Planner travel time over an arc of ``distance``, rounded up.

    Rounding up keeps the plan honest: a truck can never be promised at a stop earlier than the
    slowed-down road allows.
    """
    return -(-distance * travel_factor_pct // 100)


def solve(problem: RoutingProblem, *, seed: int = 0, iterations: int = 2000) -> RoutePlan:
    """Plan routes that maximise collected prizes minus vehicle and distance costs.

    PyVRP minimises distance cost + fixed cost + uncollected prizes, which differs from the
    objective here only by the constant sum of all prizes.

    Args:
        problem: the depot, stops and fleet.
        seed: PyVRP's random seed; the same seed and problem give the same plan.
        iterations: iterated local search iterations; the stop criterion is this count, not time.

    Returns:
        The plan; ``feasible`` is False rather than an exception when required stops cannot all
        be served within capacity, time windows and fleet size.
    """
    stops = problem.stops
    if not stops:
        return RoutePlan(routes=(), dropped=(), distance=0, cost=0, feasible=True)
    if problem.fleet.vehicles == 0:
        # PyVRP needs at least one vehicle; with none, every stop is dropped.
        infeasible = any(stop.required for stop in stops)
        dropped = tuple(stop.id for stop in stops)
        return RoutePlan(routes=(), dropped=dropped, distance=0, cost=0, feasible=not infeasible)

    solution = _run(_planner_network(problem), MaxIterations(iterations), seed, _PLANNER_PARAMS)
    routes = _client_routes(solution)
    visited = {node for route in routes for node in route}
    fleet = problem.fleet
    distance = int(solution.distance())
    return RoutePlan(
        routes=tuple(tuple(stops[node - 1].id for node in route) for route in routes),
        dropped=tuple(stop.id for node, stop in enumerate(stops, start=1) if node not in visited),
        distance=distance,
        cost=fleet.fixed_cost * len(routes) + fleet.unit_distance_cost * distance,
        feasible=bool(solution.is_feasible()),
    )


def solve_instance(
    path: str | Path,
    *,
    seconds: float | None = None,
    seed: int = 0,
    bks_csv: str | Path | None = None,
    iterations: int | None = None,
) -> InstanceResult:
    """Solve a public benchmark instance for ``seconds`` and compare it with its best-known solution.

    Solomon ``.txt`` files are VRPTW with distance-only objective and every arc truncated to one
    decimal (the DIMACS convention of the ``.sol`` files); other files are read as VRPLIB CVRP
    with every arc rounded to the nearest integer and an unlimited fleet.

    Args:
        path: a Solomon ``.txt`` or VRPLIB ``.vrp`` file.
        seconds: wall-clock budget for a search with PyVRP's default parameters.
        seed: PyVRP's random seed.
        iterations: instead of ``seconds``, search with the planner's own parameters for this
            many iterations, as :func:`solve` does (the result then replays from its seed).
        bks_csv: ``bks.csv`` to look the best-known value up in; by default the one in the
            instance's folder or its parent, the layout of ``tests/data/vrp``.

    Returns:
        Routes in the ``.sol`` numbering, the distance in the instance's units, and the gap in
        percent to the best-known solution of the same convention (None if it is not listed).
    """
    if (seconds is None) == (iterations is None):
        raise ConfigError("solve_instance: give seconds (PyVRP's defaults) or iterations (the planner's)")
    path = Path(path)
    solomon = path.suffix.lower() == ".txt"
    network, scale = _solomon_network(path) if solomon else _cvrp_network(path)
    if iterations is not None:
        solution = _run(network, MaxIterations(iterations), seed, _PLANNER_PARAMS)
    else:
        solution = _run(network, MaxRuntime(seconds or 0.0), seed, _BENCHMARK_PARAMS)
    routes = _client_routes(solution)
    distance = int(solution.distance()) / scale

    convention = _SOLOMON_CONVENTION if solomon else _CVRP_CONVENTION
    bks = _best_known(path, convention, bks_csv)
    return InstanceResult(
        instance=path.stem,
        routes=routes,
        distance=distance,
        vehicles=len(routes),
        bks=bks,
        gap_pct=None if bks is None else 100 * (distance - bks) / bks,
        feasible=bool(solution.is_feasible()),
    )


def _planner_network(problem: RoutingProblem) -> _Network:
    xy = np.array([(problem.depot_x, problem.depot_y)] + [(s.x, s.y) for s in problem.stops], dtype=np.int64)
    distance = np.rint(_euclidean(xy)).astype(np.int64)
    duration = -(-distance * problem.travel_factor_pct // 100)
    stops = problem.stops
    return _Network(
        xy=xy,
        distance=distance,
        duration=duration,
        demand=[0] + [s.demand for s in stops],
        ready=[0] + [s.ready for s in stops],
        due=[problem.horizon] + [s.due for s in stops],
        service=[0] + [s.service for s in stops],
        prize=[0] + [s.prize for s in stops],
        required=[False] + [s.required for s in stops],
        vehicles=problem.fleet.vehicles,
        capacity=problem.fleet.capacity,
        horizon=problem.horizon,
        fixed_cost=problem.fleet.fixed_cost,
        unit_distance_cost=problem.fleet.unit_distance_cost,
    )


def _solomon_network(path: Path) -> tuple[_Network, int]:
    """Solomon VRPTW in tenths: arcs ``floor(10·d)``, and times scaled by 10 to match."""
    inst = vrplib.read_instance(str(path), instance_format="solomon")
    xy = _integral(inst["node_coord"], path)
    squared = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=-1)
    # floor(sqrt(100·s)) is exact in float64 for these magnitudes: a perfect square gives an exact
    # root, and any other root lies at least 1/(2·sqrt(100·s)) away from an integer.
    tenths = np.floor(np.sqrt(100 * squared)).astype(np.int64)
    windows = _integral(inst["time_window"], path) * 10
    n = len(xy)
    network = _Network(
        xy=xy,
        distance=tenths,
        duration=tenths,
        demand=[int(v) for v in inst["demand"]],
        ready=[int(v) for v in windows[:, 0]],
        due=[int(v) for v in windows[:, 1]],
        service=[int(v) for v in _integral(inst["service_time"], path) * 10],
        prize=[0] * n,
        required=[True] * n,
        vehicles=int(inst["vehicles"]),
        capacity=int(inst["capacity"]),
        horizon=int(windows[0, 1]),
    )
    return network, 10


def _cvrp_network(path: Path) -> tuple[_Network, int]:
    """VRPLIB CVRP: arcs rounded to the nearest integer (vrplib 2.x leaves EUC_2D unrounded)."""
    inst = vrplib.read_instance(str(path))
    depots = np.asarray(inst.get("depot", [0]))
    if depots.tolist() != [0]:
        raise RecordInvalid(f"{path}: only one depot, the first node, is supported", record="instance")
    distance = np.rint(np.asarray(inst["edge_weight"], dtype=np.float64)).astype(np.int64)
    n = len(distance)
    coords = inst.get("node_coord")
    xy = np.rint(coords).astype(np.int64) if coords is not None else np.zeros((n, 2), dtype=np.int64)
    unbounded = int(np.iinfo(np.int64).max)
    network = _Network(
        xy=xy,
        distance=distance,
        duration=distance,
        demand=[int(v) for v in inst["demand"]],
        ready=[0] * n,
        due=[unbounded] * n,
        service=[0] * n,
        prize=[0] * n,
        required=[True] * n,
        vehicles=n - 1,
        capacity=int(inst["capacity"]),
        horizon=unbounded,
    )
    return network, 1


def _integral(values: npt.ArrayLike, path: Path) -> _Matrix:
    array = np.asarray(values)
    rounded: _Matrix = np.rint(array).astype(np.int64)
    if not np.array_equal(rounded, array):
        raise RecordInvalid(f"{path}: expected integer coordinates and times", record="instance")
    return rounded


def _euclidean(xy: _Matrix) -> npt.NDArray[np.float64]:
    delta = (xy[:, None, :] - xy[None, :, :]).astype(np.float64)
    root: npt.NDArray[np.float64] = np.sqrt((delta**2).sum(axis=-1))
    return root


def _problem_data(network: _Network) -> ProblemData:
    n = len(network.xy)
    clients = [
        Client(
            location=i,
            delivery=[network.demand[i]],
            service_duration=network.service[i],
            tw_early=network.ready[i],
            tw_late=network.due[i],
            prize=network.prize[i],
            required=network.required[i],
        )
        for i in range(1, n)
    ]
    vehicle = VehicleType(
        num_available=network.vehicles,
        capacity=[network.capacity],
        fixed_cost=network.fixed_cost,
        unit_distance_cost=network.unit_distance_cost,
        tw_early=0,
        tw_late=network.horizon,
    )
    return ProblemData(
        locations=[Location(x=float(x), y=float(y)) for x, y in network.xy.tolist()],
        clients=clients,
        depots=[Depot(location=0, tw_early=0, tw_late=network.horizon)],
        vehicle_types=[vehicle],
        # PyVRP's stub spells the matrix type ``np.ndarray[int]``, which no real array matches.
        distance_matrices=[cast(Any, network.distance)],
        duration_matrices=[cast(Any, network.duration)],
    )


def _run(network: _Network, stop: StoppingCriterion, seed: int, params: SolveParams) -> Solution:
    data = _problem_data(network)
    with warnings.catch_warnings():
        # PyVRP warns when its penalties hit their ceiling, i.e. when no feasible solution turns up.
        # Callers learn that from ``feasible`` instead, and a warning would be an error under
        # ``-W error``. (catch_warnings swaps process-wide filters; the worst a racing thread can
        # do is leave this one category ignored.)
        warnings.simplefilter("ignore", PenaltyBoundWarning)
        result = pyvrp_solve(data, stop, seed=seed, collect_stats=False, display=False, params=params)
    return result.best


def _client_routes(solution: Solution) -> list[list[int]]:
    """Routes as network indices (depot 0 left out), which are also the instance node numbers."""
    routes = []
    for route in solution.routes():
        # Client ``c`` sits at location ``c + 1``: the depot is location 0 in every network here.
        visits = [activity.idx + 1 for activity in route if activity.is_client()]
        if visits:
            routes.append(visits)
    return routes


def _best_known(path: Path, convention: str, bks_csv: str | Path | None) -> float | None:
    """The ``bks.csv`` value for this instance and convention; an explicit table must exist."""
    if bks_csv is None:
        found = [p for p in (path.parent / "bks.csv", path.parent.parent / "bks.csv") if p.is_file()]
        if not found:
            return None
        bks_csv = found[0]
    with Path(bks_csv).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["instance"] == path.stem and row["convention"] == convention:
                return float(row["distance"])
    return None
