"""Routing: solver quality on public VRP benchmarks, and the route planner's solve time.

Run: ``python bench/routing.py tests/data/vrp/solomon/C101.txt tests/data/vrp/cvrp/A-n32-k5.vrp
--seconds 10`` prints instance, distance, vehicles, best-known solution and gap; ``--json``
prints one JSON list of ``{"instance", "routes", "distance", "vehicles", "bks", "gap_pct",
"feasible", "seconds"}`` instead, routes numbered as in the instance's ``.sol`` file.

Distances follow the like-with-like rule of ``tests/data/vrp/README.md``: Solomon arcs truncated
to one decimal against the ``distance_only_dimacs`` BKS, CVRP arcs rounded to the nearest integer
against ``cvrp_distance_only_nint``. The BKS table is ``tests/data/vrp/bks.csv`` of this checkout.

``--planner`` instead times :func:`answerable.logistics.routing.solve` at its default 2000
iterations on seeded synthetic days of 70 and 150 stops (``--sizes`` to change), the figure
the planner's latency budget is about.

``--versus-defaults`` runs each instance with the planner's own configuration (2000 iterations,
stopping on iterations so a seed replays; ``--seeds`` seeds) and measures its CPU time, then gives
PyVRP's default configuration that same CPU time from the same seed, and prints both distances
and the planner's loss in percent beside its CPU time. Goal: at most 1% lost on average.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from answerable.logistics.routing import Fleet, RoutingProblem, Stop, solve, solve_instance

BKS_CSV = Path(__file__).resolve().parent.parent / "tests" / "data" / "vrp" / "bks.csv"
GOAL_GAP_PCT = 1.0
GOAL_PLANNER_S = 0.5


def run_instances(files: list[str], seconds: float, seed: int) -> list[dict[str, Any]]:
    rows = []
    for file in files:
        started = time.perf_counter()
        result = solve_instance(file, seconds=seconds, seed=seed, bks_csv=BKS_CSV)
        rows.append(
            {
                "instance": result.instance,
                "routes": result.routes,
                "distance": result.distance,
                "vehicles": result.vehicles,
                "bks": result.bks,
                "gap_pct": result.gap_pct,
                "feasible": result.feasible,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    return rows


def synthetic_day(stops: int, seed: int) -> RoutingProblem:
    """A day like the planner's: scattered stops, one in five required, time windows of 30-200."""
    rng = random.Random(seed)
    made = []
    for i in range(stops):
        ready = rng.randrange(0, 800)
        made.append(
            Stop(
                id=f"s{i:03d}",
                x=rng.randrange(0, 101),
                y=rng.randrange(0, 101),
                demand=rng.randrange(1, 21),
                ready=ready,
                due=ready + rng.randrange(30, 200),
                service=10,
                prize=rng.randrange(10, 200),
                required=rng.random() < 0.2,
            )
        )
    fleet = Fleet(vehicles=10, capacity=100, fixed_cost=50, unit_distance_cost=1)
    return RoutingProblem(depot_x=50, depot_y=50, horizon=1200, stops=tuple(made), fleet=fleet)


def run_planner(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        wall: list[float] = []
        cpu: list[float] = []
        for seed in range(repeats):
            problem = synthetic_day(size, seed)
            started, started_cpu = time.perf_counter(), time.process_time()
            plan = solve(problem, seed=seed)
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        wall.sort()
        cpu.sort()
        rows.append(
            {
                "stops": size,
                "runs": repeats,
                "p50_s": round(wall[len(wall) // 2], 3),
                "max_s": round(wall[-1], 3),
                "cpu_p50_s": round(cpu[len(cpu) // 2], 3),
                "cpu_max_s": round(cpu[-1], 3),
                "last_feasible": plan.feasible,
                "last_dropped": len(plan.dropped),
            }
        )
    return rows


GOAL_LOSS_PCT = 1.0


def run_versus_defaults(files: list[str], seeds: int, iterations: int) -> list[dict[str, Any]]:
    """The planner's configuration against PyVRP's defaults at the same CPU time, per instance."""
    rows = []
    for file in files:
        losses, cpus, ours, theirs = [], [], [], []
        for seed in range(seeds):
            started = time.process_time()
            planner = solve_instance(file, iterations=iterations, seed=seed, bks_csv=BKS_CSV)
            cpu = time.process_time() - started
            defaults = solve_instance(file, seconds=cpu, seed=seed, bks_csv=BKS_CSV)
            cpus.append(cpu)
            ours.append(planner.distance)
            theirs.append(defaults.distance)
            losses.append(100 * (planner.distance - defaults.distance) / defaults.distance)
        rows.append(
            {
                "instance": planner.instance,
                "seeds": seeds,
                "planner_cpu_s": round(sum(cpus) / seeds, 3),
                "planner_distance": round(sum(ours) / seeds, 1),
                "defaults_distance": round(sum(theirs) / seeds, 1),
                "loss_pct": round(sum(losses) / seeds, 2),
            }
        )
    return rows


def print_versus(rows: list[dict[str, Any]]) -> None:
    print(f"Goal: the planner's configuration loses at most {GOAL_LOSS_PCT:g}% on average against")
    print("PyVRP's defaults given the same CPU time (means over the seeds per instance)")
    print(f"{'instance':<12} {'planner CPU s':>13} {'planner':>10} {'defaults':>10} {'loss %':>7}")
    for row in rows:
        print(
            f"{row['instance']:<12} {row['planner_cpu_s']:>13.3f} {row['planner_distance']:>10g}"
            f" {row['defaults_distance']:>10g} {row['loss_pct']:>+7.2f}"
        )
    if rows:
        losses = [row["loss_pct"] for row in rows]
        mean = sum(losses) / len(losses)
        worst = max(rows, key=lambda row: row["loss_pct"])
        verdict = "ok" if mean <= GOAL_LOSS_PCT else "miss"
        print(
            f"mean loss {mean:+.2f}% over {len(rows)} instances ({verdict}); worst {worst['instance']}"
            f" {worst['loss_pct']:+.2f}%; instances over {GOAL_LOSS_PCT:g}%:"
            f" {sum(loss > GOAL_LOSS_PCT for loss in losses)}"
        )


def print_instances(rows: list[dict[str, Any]], seconds: float) -> None:
    print(f"Goal: gap under {GOAL_GAP_PCT:g}% to the like-with-like BKS at {seconds:g} s per instance")
    print(f"{'instance':<12} {'distance':>10} {'vehicles':>8} {'BKS':>10} {'gap %':>7}  goal")
    for row in rows:
        bks = "-" if row["bks"] is None else f"{row['bks']:g}"
        gap = "-" if row["gap_pct"] is None else f"{row['gap_pct']:.2f}"
        ok = row["feasible"] and row["gap_pct"] is not None and row["gap_pct"] < GOAL_GAP_PCT
        verdict = "ok" if ok else ("INFEASIBLE" if not row["feasible"] else "miss")
        print(
            f"{row['instance']:<12} {row['distance']:>10g} {row['vehicles']:>8} {bks:>10} {gap:>7}  {verdict}"
        )


def print_planner(rows: list[dict[str, Any]]) -> None:
    print(f"Goal: solve() at default iterations well under {GOAL_PLANNER_S:g} s for 70-150 stops")
    print("(wall seconds, and CPU seconds of this process, which other load on the machine inflates less)")
    print(f"{'stops':>5} {'runs':>4} {'p50 s':>7} {'max s':>7} {'CPU p50':>8} {'CPU max':>8}")
    for row in rows:
        print(
            f"{row['stops']:>5} {row['runs']:>4} {row['p50_s']:>7.3f} {row['max_s']:>7.3f}"
            f" {row['cpu_p50_s']:>8.3f} {row['cpu_max_s']:>8.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="Solomon .txt or VRPLIB .vrp instances")
    parser.add_argument("--seconds", type=float, default=10.0, help="search time per instance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON list on stdout")
    parser.add_argument("--planner", action="store_true", help="time solve() on synthetic days instead")
    parser.add_argument("--sizes", type=int, nargs="+", default=[70, 150], help="stops per day for --planner")
    parser.add_argument("--repeats", type=int, default=5, help="days per size for --planner")
    parser.add_argument(
        "--versus-defaults", action="store_true", help="the planner's configuration against the defaults"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per instance for --versus-defaults")
    parser.add_argument("--iterations", type=int, default=2000, help="the planner's iterations")
    args = parser.parse_args(argv)
    if args.planner == bool(args.files):
        parser.error("give instance files, or --planner, but not both")
    if args.versus_defaults:
        rows = run_versus_defaults(args.files, args.seeds, args.iterations)
        if args.json:
            sys.stdout.write(json.dumps(rows) + "\n")
        else:
            print_versus(rows)
        return 0

    if args.planner:
        rows = run_planner(args.sizes, args.repeats)
        if args.json:
            sys.stdout.write(json.dumps(rows) + "\n")
        else:
            print_planner(rows)
        return 0

    rows = run_instances(args.files, args.seconds, args.seed)
    if args.json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        print_instances(rows, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
