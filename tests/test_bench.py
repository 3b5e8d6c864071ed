"""The benchmark scripts still run and print their JSON documents (no timing is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[1]


def bench(*args: str, timeout: float = 120) -> object:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def bench_module(name: str) -> Any:
    """A module of bench/ (``bench/NAME.py``), imported as the scripts import each other."""
    import importlib

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.mark.slow
def test_governed_call_bench_checks_its_own_ledger():
    """The governed-call bench runs, confirms four ledger entries per governed action, and its
    ablation of the lease and claims still applies to the gateway as it is."""
    doc = bench("bench/governed_call.py", "--quick", "--json")
    assert isinstance(doc, dict)
    assert doc["answerable"]["ledger_check"]["ok"] is True
    cost = doc["lease_and_claims_cost"]
    assert cost["without"]["available"] is True, cost["without"]
    assert set(cost["without"]) >= {"sequential", "concurrent"}
    comparison = doc["comparison"]
    assert comparison["sequential_latency"]["fsync_p50_us"] > 0
    cpu = doc["answerable"]["concurrent"]["cpu_us_per_action"]  # the writer thread is found by name
    assert cpu["ledger_writer"] > 0
    assert cpu["total"] == pytest.approx(cpu["event_loop"] + cpu["ledger_writer"] + cpu["other"])
    assert set(doc["answerable"]["concurrent"]["gc"]) >= {"cpu_us_per_action", "collections_by_generation"}
    # The storage floor replays exactly the concurrent run's rows: its four entries and one claim
    # guard per action, and the tree nodes their appends made: about one per leaf (a range of n
    # appends makes n nodes, give or take the height of the tree).
    floor = doc["answerable"]["storage_floor"]
    rows = floor["rows_per_action"]
    assert (rows["entries"], rows["guards"]) == (4, 1), rows
    assert rows["nodes"] == pytest.approx(4, abs=0.05), rows
    assert floor["cpu_us_per_action"] > 0
    # ... and the sequential run's rows, one action at a time, in the gateway's two commits.
    assert floor["sequential"]["available"] is True, floor["sequential"]
    assert floor["sequential"]["actions"] == doc["answerable"]["sequential"]["actions"]
    assert comparison["sequential_latency"]["storage_floor_p50_us"] > 0
    # The lean reference, with and without the gateway's records: every run wrote its four
    # entries per action, each read back as the record it says it is with that record's own
    # canonical bytes, into a ledger that verifies; one action's four are the gateway's own
    # entries field for field but for ids, times and causes (a response digest left out, a
    # field renamed or of another type would differ).
    for key in ("lean_reference", "lean_with_records"):
        lean = doc["answerable"][key]
        assert lean["entries_written"] == lean["decoded_as_records"] == lean["entries_expected"], lean
        assert lean["entries_expected"] == 4 * lean["actions"] * lean["rounds"], lean
        assert lean["verified"] is True
        assert lean["differs_from_gateway"] == [], lean["differs_from_gateway"]
        # Only the variant with records builds them, all four per action.
        assert lean["records_built"] == (lean["entries_written"] if key == "lean_with_records" else 0)
    alone = doc["answerable"]["lean_sequential"]  # one at a time, beside the sequential goal
    assert alone["entries_written"] == alone["decoded_as_records"] == 4 * alone["actions"], alone
    assert alone["latency"]["n"] == alone["actions"] == doc["answerable"]["sequential"]["actions"]
    assert "lean_p50_us" in comparison["sequential_latency"]
    made = doc["answerable"]["lean_with_records"]
    assert len(made["records_loop_us_each"]) == made["rounds"]
    assert "records_loop_us" in doc["comparison"]["lean_reference"]
    # Cedar's own decision of the run's last request: the recorded Allow, every time.
    cedar = doc["answerable"]["cedar_floor"]
    assert cedar["all_allowed"] is True
    # The same request timed back to back and right after an fsync, every answer the Allow.
    waking = doc["answerable"]["after_fsync"]
    assert waking["all_allowed"] is True
    assert waking["back_to_back"]["n"] == waking["right_after"]["n"] == waking["calls_each"] >= 100
    p50 = (waking["right_after"]["p50_us"], waking["back_to_back"]["p50_us"])
    assert waking["x_slower"] == pytest.approx(p50[0] / p50[1])
    assert waking["added_us"] == pytest.approx(p50[0] - p50[1])
    assert cedar["decisions"] >= cedar["batch"] > 0
    assert cedar["cpu_us_per_decision"] > 0
    if doc["agt"]["available"]:  # `make bench` installs the peer; `make test` need not
        assert set(comparison["concurrent"]) == {"in_memory", "file_sink"}
        storage = comparison["storage_floor"]
        assert storage["x_agt_call"] == pytest.approx(
            storage["storage_cpu_us_per_action"] / storage["agt_in_memory_cpu_us_per_call"]
        )
        assert storage["storage_and_cedar_us"] == pytest.approx(
            storage["storage_cpu_us_per_action"] + storage["cedar_cpu_us_per_decision"]
        )
        [pair] = comparison["paired"]["pairs"]  # --quick: one pair, measured back to back
        assert pair["ratio"] == pytest.approx(pair["answerable"] / pair["agt"])
        lean = doc["answerable"]["lean_reference"]
        rate = doc["agt"]["in_memory"]["sequential"]["actions_per_s"]
        assert comparison["lean_reference"]["ratio_in_memory"] == pytest.approx(lean["actions_per_s"] / rate)
    else:
        assert "concurrent" not in comparison, comparison
        assert "ratio_in_memory" not in comparison["lean_reference"]
        assert comparison["peer_missing"]
        assert comparison["paired"] == {"available": False}


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_instruction_counts_are_taken_of_the_measured_actions_of_each_tree():
    """bench/instructions.py counts each variant under callgrind after its warm-up, each wrote
    every entry it should, and ``--rev`` counts that revision's own gateway, not this tree's."""
    doc = bench("bench/instructions.py", "--quick", "--json", "--rev", "HEAD", timeout=600)
    assert isinstance(doc, dict)
    assert doc["available"] is True, doc
    variants = doc["variants"]
    for key in ("gateway", "lean", "lean-records", "rev"):
        found = variants[key]
        assert found["entries_written"] == found["entries_expected"] == 4 * found["actions"], found
        assert found["failed"] == 0
        # Start-up and imports alone are tens of millions of instructions: a count of the
        # measured actions only is far below that per action.
        assert 100_000 < found["per_action"] < 20_000_000, found
    assert variants["rev"]["answerable"].endswith("tree-HEAD/src/answerable"), variants["rev"]
    assert variants["gateway"]["answerable"] == str(ROOT / "src" / "answerable")
    comparison = doc["comparison"]
    assert comparison["gateway_over_lean"] == pytest.approx(
        variants["gateway"]["per_action"] / variants["lean"]["per_action"]
    )
    assert comparison["records_per_action"] == pytest.approx(
        variants["lean-records"]["per_action"] - variants["lean"]["per_action"]
    )
    if "per_action" in variants["agt"]:  # the bench extra installed
        assert variants["agt"]["entries_written"] == variants["agt"]["entries_expected"]
        assert "gateway_over_agt" in comparison
    else:
        assert "not installed" in variants["agt"]["reason"]
        assert "gateway_over_agt" not in comparison


@pytest.mark.slow
def test_ledger_bench_prints_the_verify_floor_of_the_tree_verify_computed():
    """bench/ledger.py prints, beside verify(), the floor of any verify that checks the tree and
    that floor with one parse per entry, each over the same hashlib bound; the bench itself
    refuses a floor whose tree is not the one verify() computed."""
    doc = bench("bench/ledger.py", "--quick", "--json", "--no-pin")
    assert isinstance(doc, dict)
    verified = doc["verify"]
    floor, bound = verified["floor"], verified["hash_lower_bound_s"]
    assert (floor["size"], floor["root"]) == (verified["size"], verified["root"]) == (20_000, floor["root"])
    parts = floor["read_and_leaf_hashes_s"] + floor["tree_s"] + floor["stored_nodes_s"]
    assert floor["floor_s"] == pytest.approx(parts)
    assert floor["floor_and_parse_s"] == pytest.approx(floor["floor_s"] + floor["parse_s"])
    assert floor["floor_x_lower_bound"] == pytest.approx(floor["floor_s"] / bound)
    assert floor["floor_and_parse_x_lower_bound"] == pytest.approx(floor["floor_and_parse_s"] / bound)
    assert min(parts, floor["parse_s"], verified["verify_cpu_s"]) > 0


def test_the_verify_floor_refuses_a_ledger_whose_leaf_hash_or_node_differs(tmp_path: Path):
    """The floor checks what it times: an altered leaf hash, or an altered stored node, stops it
    (a floor that skipped the comparison would time less than any verify can do)."""
    import sqlite3

    from answerable.ledger import SQLiteLedger

    ledger_bench = bench_module("ledger")
    path = tmp_path / "floor.db"
    ledger = SQLiteLedger.open(path, create=True, origin="test.example/floor")
    try:
        records = ledger_bench.Records(3)
        ledger.append_sync(records.many(9))
    finally:
        ledger.close()
    assert ledger_bench.verify_floor(path, 1.0)["size"] == 9
    for sql in (
        "UPDATE entries SET leaf_hash = zeroblob(32) WHERE idx = 4",
        "UPDATE nodes SET hash = zeroblob(32) WHERE level = 2 AND i = 1",
    ):
        copy = tmp_path / f"altered-{len(sql)}.db"
        copy.write_bytes(path.read_bytes())
        with sqlite3.connect(copy) as conn:
            conn.execute(sql)
        conn.close()
        with pytest.raises(RuntimeError, match="floor"):
            ledger_bench.verify_floor(copy, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("bench/policy.py", "--quick", "--json", "--no-pin"),
        ("bench/provenance.py", "--quick", "--json"),
        ("bench/monitors.py", "--entries", "5000", "--json"),
        pytest.param(("bench/service.py", "--quick", "--json"), marks=pytest.mark.full),
        pytest.param(("bench/coordination.py", "--quick", "--json"), marks=pytest.mark.full),
        ("bench/postgres.py", "--quick", "--json"),
        ("bench/bus.py", "--quick", "--json"),
        pytest.param(("bench/distributed.py", "--quick", "--json"), marks=pytest.mark.full),
        pytest.param(("bench/mcp_proxy.py", "--quick", "--json"), marks=pytest.mark.full),
        ("bench/cli_latency.py", "--quick", "--json"),
    ],
    ids=lambda a: a[0] if isinstance(a, tuple) else str(a),  # the costliest three run in make soak
)
def test_bench_prints_a_json_document(args):
    """Each bench prints one JSON document in quick mode."""
    assert isinstance(bench(*args), dict)


@pytest.mark.slow
def test_routing_bench_prints_routes_as_in_the_file():
    """bench/routing.py --json gives instance and routes; every customer is visited once."""
    [doc] = bench("bench/routing.py", "tests/data/vrp/cvrp/E-n13-k4.vrp", "--seconds", "1", "--json")  # type: ignore[misc]
    assert doc["instance"] == "E-n13-k4"
    visited = sorted(c for route in doc["routes"] for c in route)
    assert visited == list(range(1, 13))


def test_routing_bench_compares_the_planner_with_the_defaults_at_the_same_cpu_time():
    """--versus-defaults: the planner's configuration, its CPU time, and the defaults given that time."""
    rows = bench(
        "bench/routing.py", "tests/data/vrp/cvrp/E-n13-k4.vrp", "tests/data/vrp/solomon/C101.txt",
        "--versus-defaults", "--seeds", "1", "--json",
    )  # fmt: skip
    assert [row["instance"] for row in rows] == ["E-n13-k4", "C101"]  # type: ignore[index]
    for row in rows:  # type: ignore[union-attr]
        assert row["planner_cpu_s"] > 0
        expected = round(
            100 * (row["planner_distance"] - row["defaults_distance"]) / row["defaults_distance"], 2
        )
        assert row["loss_pct"] == expected


def test_solve_instance_replays_from_its_seed_with_the_planners_configuration():
    from answerable.logistics.routing import solve_instance

    path = "tests/data/vrp/solomon/C101.txt"
    first, again = (solve_instance(path, iterations=300, seed=4) for _ in range(2))
    assert (first.routes, first.distance) == (again.routes, again.distance)


def test_record_replaces_its_section_and_records_nothing_from_a_failed_run(tmp_path: Path):
    """bench/record.py writes what a benchmark printed under its name, replaces it on the next
    run, and leaves the README alone when the command fails."""
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nprose\n", encoding="utf-8")

    def record(*command: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "bench/record.py", "demo", "--readme", str(readme), "--", *command]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)

    assert record(sys.executable, "-c", "print('first figures')").returncode == 0
    assert record(sys.executable, "-c", "print('second figures')").returncode == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nprose\n")
    assert text.count("<!-- figures:demo -->") == 1
    assert "second figures" in text
    assert "first figures" not in text
    assert "-c 'print('\"'\"'second figures'\"'\"')'" in text  # the command that printed them
    failed = record(sys.executable, "-c", "print('third'); raise SystemExit(3)")
    assert failed.returncode == 3
    assert readme.read_text(encoding="utf-8") == text


def test_the_garbage_collection_figure_counts_each_collection_and_what_it_freed():
    """The GC time the governed-call bench prints beside CPU per action comes from every
    collection in the block, by generation, with the objects it freed, on the collecting
    thread's CPU clock: a forced full collection of a cycle is counted as one, within the CPU
    the block took, and nothing after the block is."""
    import gc
    import time

    gc_time = bench_module("_common").GcTime
    began = time.thread_time_ns()
    with gc_time() as timed:
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        gc.collect()
    took_us = (time.thread_time_ns() - began) / 1000
    gc.collect()  # after the block: not counted
    found = timed.per_action(1)
    assert found["collections_by_generation"] == [0, 0, 1], found
    assert found["collected"] >= 1, found
    assert 0 < found["cpu_us_per_action_by_generation"][2] <= took_us, (found, took_us)


def test_a_collection_under_way_when_the_timer_starts_is_not_counted():
    """Entered during a collection (from a finalizer, as a thread may while another collects),
    the timer sees that collection's stop without its start: it counts nothing for it, rather
    than the clock's whole reading."""
    import gc

    gc_time = bench_module("_common").GcTime
    timers: list[object] = []

    class StartsATimer:
        def __init__(self) -> None:
            self.me = self  # a cycle: freed by the collector, which runs this during the collection

        def __del__(self) -> None:
            timer = gc_time()
            timer.__enter__()
            timers.append(timer)

    StartsATimer()
    gc.collect()
    assert len(timers) == 1
    timers[0].__exit__(None, None, None)  # type: ignore[attr-defined]
    found = timers[0].per_action(1)  # type: ignore[attr-defined]
    assert found["collections_by_generation"] == [0, 0, 0], found
    assert found["cpu_us_per_action"] == 0, found
