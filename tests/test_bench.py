"""The benchmark scripts still run and print their JSON documents (no timing is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def bench(*args: str) -> object:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


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


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("bench/ledger.py", "--quick", "--json", "--no-pin"),
        ("bench/policy.py", "--quick", "--json", "--no-pin"),
        ("bench/provenance.py", "--quick", "--json"),
        ("bench/monitors.py", "--entries", "5000", "--json"),
        ("bench/service.py", "--quick", "--json"),
    ],
    ids=lambda a: a[0] if isinstance(a, tuple) else str(a),
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
