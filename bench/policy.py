"""Policy: Cedar decision latency, answerable's ``decide()`` vs raw cedarpy, parsed once vs per call.

Run: ``python bench/policy.py`` (``--quick`` for a smoke run, ``--json`` for one JSON document).
The process pins itself to one CPU, as the other benchmarks do.

The ruleset is a logistics one: ten policies over typed resources (shipments with a class,
region, weight and value) and a typed context (``disruption: Bool``, ``delay_minutes: Long``),
with two ``@review`` forbids. The same mixed stream of requests (allow, deny and review) goes
through each contender:

* ``decide()``: answerable's decision, with the policies and schema parsed once by
  ``load_ruleset``; a review costs a second evaluation without the review forbids;
* raw ``cedarpy.is_authorized`` with a pre-parsed ``PolicySet`` and ``Schema``, and below it
  cedarpy's Rust entry point called without its Python wrapper (stdlib ``json.loads`` of the
  result, result objects), parsed with orjson: the floor any Python caller can reach;
* raw ``cedarpy.is_authorized`` with the policies as text, parsed again on every call (the
  schema still pre-parsed), and with both as text.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import _common as common
import cedarpy
import orjson

from answerable.policy import CedarRequest, decide, load_ruleset

GOAL_P99_US = 100.0

SCHEMA = """
entity Team;
entity Agent in [Team] { region: String };
entity Shipment {
  class: String,
  region: String,
  weight_kg: Long,
  value_cents: Long,
  hazardous: Bool,
};
type Signals = { disruption: Bool, delay_minutes: Long };
action "carrier.book" appliesTo { principal: [Agent], resource: [Shipment], context: Signals };
action "shipment.reprioritize" appliesTo { principal: [Agent], resource: [Shipment], context: Signals };
"""

POLICIES = """
@id("book-in-own-region")
permit(principal, action == Action::"carrier.book", resource)
  when { principal.region == resource.region };

@id("book-anywhere-for-dispatch")
permit(principal in Team::"dispatch", action == Action::"carrier.book", resource);

@id("reprioritize-when-late")
permit(principal, action == Action::"shipment.reprioritize", resource)
  when { context.delay_minutes >= 30 };

@id("reprioritize-medical-in-disruption")
permit(principal, action == Action::"shipment.reprioritize", resource)
  when { resource.class == "medical" && context.disruption };

@id("no-closed-regions")
forbid(principal, action == Action::"carrier.book", resource)
  when { resource.region == "closed" };

@id("value-cap")
forbid(principal, action == Action::"carrier.book", resource)
  when { resource.value_cents > 25000000 };

@id("no-hazardous-in-disruption")
forbid(principal, action, resource)
  when { resource.hazardous && context.disruption };

@id("retail-not-ahead-of-medical-in-disruption")
forbid(principal, action == Action::"shipment.reprioritize", resource)
  when { resource.class == "retail" && context.disruption && context.delay_minutes < 120 };

@id("medical-booking-in-disruption")
@review("a medical booking during a disruption needs a dispatcher")
forbid(principal, action == Action::"carrier.book", resource)
  when { resource.class == "medical" && context.disruption };

@id("heavy-reprioritize")
@review("moving a heavy shipment ahead needs a person")
forbid(principal, action == Action::"shipment.reprioritize", resource)
  when { resource.weight_kg > 20000 };
"""

REGIONS = ("north", "south", "east", "west")
CLASSES = ("medical", "retail")


def make_requests(n: int, seed: int) -> list[CedarRequest]:
    """A mixed stream: most requests allowed, some denied, some routed to review."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        agent = f"agent-{k % 17}"
        team = "dispatch" if k % 5 == 0 else "regional"
        agent_region = rng.choice(REGIONS)
        region = agent_region if rng.random() < 0.7 else rng.choice((*REGIONS, "closed"))
        action = rng.choice(("carrier.book", "shipment.reprioritize"))
        shipment = {
            "class": rng.choice(CLASSES),
            "region": region,
            "weight_kg": rng.choice((800, 4_000, 12_000, 22_000)),
            "value_cents": rng.choice((50_000, 2_000_000, 30_000_000)),
            "hazardous": rng.random() < 0.05,
        }
        context = {"disruption": rng.random() < 0.3, "delay_minutes": rng.choice((0, 15, 45, 180, 600))}
        entities = (
            {"uid": {"type": "Team", "id": team}, "attrs": {}, "parents": []},
            {
                "uid": {"type": "Agent", "id": agent},
                "attrs": {"region": agent_region},
                "parents": [{"type": "Team", "id": team}],
            },
            {"uid": {"type": "Shipment", "id": f"S-{k:06d}"}, "attrs": shipment, "parents": []},
        )
        out.append(CedarRequest(("Agent", agent), action, ("Shipment", f"S-{k:06d}"), context, entities))
    return out


def _raw(request: CedarRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The request as a cedarpy user would pass it: dicts, context as a dict, entities as a list."""
    return (
        {
            "principal": {"type": request.principal[0], "id": request.principal[1]},
            "action": {"type": "Action", "id": request.action},
            "resource": {"type": request.resource[0], "id": request.resource[1]},
            "context": dict(request.context),
        },
        [dict(e) for e in request.entities],
    )


def _internal_request(request: dict[str, Any]) -> dict[str, Any]:
    """The request as cedarpy's Rust core takes it: context already a JSON string."""
    return {**request, "context": orjson.dumps(request["context"]).decode()}


def _time(call: Callable[[Any], Any], inputs: list[Any], warmup: int) -> tuple[list[int], list[Any]]:
    for item in inputs[:warmup]:
        call(item)
    clock = time.perf_counter_ns
    samples = []
    results = []
    for item in inputs:
        t0 = clock()
        result = call(item)
        samples.append(clock() - t0)
        results.append(result)
    return samples, results


def run(args: argparse.Namespace) -> dict[str, Any]:
    pinning = common.pin_to_one_core(0) if args.pin else {"pinned": False, "cpus": None, "note": "--no-pin"}
    t0 = time.perf_counter()
    ruleset = load_ruleset(POLICIES, SCHEMA)
    load_us = (time.perf_counter() - t0) * 1e6
    requests = make_requests(args.requests, args.seed)
    raw = [_raw(r) for r in requests]
    warmup = min(args.warmup, len(requests))

    decided_samples, verdicts = _time(lambda r: decide(r, ruleset), requests, warmup)
    by_effect: dict[str, list[int]] = {}
    for verdict, ns in zip(verdicts, decided_samples, strict=True):
        by_effect.setdefault(verdict.effect, []).append(ns)

    policy_set, schema = ruleset.policy_set, ruleset.schema
    internal = [(_internal_request(q[0]), orjson.dumps(q[1]).decode()) for q in raw]
    contenders: dict[str, Callable[[Any], Any]] = {
        "cedarpy_preparsed": lambda q: cedarpy.is_authorized(q[0], policy_set, q[1], schema),
        "cedarpy_policy_text": lambda q: cedarpy.is_authorized(q[0], POLICIES, q[1], schema),
        "cedarpy_all_text": lambda q: cedarpy.is_authorized(q[0], POLICIES, q[1], SCHEMA),
    }
    raw_results: dict[str, dict[str, Any]] = {}
    samples, _ = _time(
        lambda q: orjson.loads(
            cedarpy._internal.is_authorized_batch([q[0]], policy_set, q[1], schema, False)[0]
        ),
        internal,
        warmup,
    )
    raw_results["cedarpy_internal_floor"] = {
        "requests": len(internal),
        "latency": common.summarize_ns(samples),
    }
    agree = True
    for name, call in contenders.items():
        count = len(raw) if name == "cedarpy_preparsed" else min(len(raw), args.reparse)
        samples, results = _time(call, raw[:count], min(warmup, count))
        # A review is a Deny to raw Cedar: only ``allow`` must line up exactly.
        agree &= all(
            (res.decision == cedarpy.Decision.Allow) == (v.effect == "allow")
            for res, v in zip(results, verdicts, strict=False)
        )
        raw_results[name] = {"requests": count, "latency": common.summarize_ns(samples)}

    return {
        "benchmark": "policy",
        "quick": args.quick,
        "machine": {**common.describe_machine(), **pinning},
        "cedarpy": cedarpy_version(),
        "ruleset": {
            "policies": len(ruleset.names),
            "review_policies": len(ruleset.review),
            "actions": ["carrier.book", "shipment.reprioritize"],
            "load_ruleset_us": load_us,
        },
        "goal": {"p99_us": GOAL_P99_US, "met": common.summarize_ns(decided_samples)["p99_us"] < GOAL_P99_US},
        "decide": {
            "requests": len(requests),
            "latency": common.summarize_ns(decided_samples),
            "by_effect": {
                effect: {"requests": len(ns), "latency": common.summarize_ns(ns)}
                for effect, ns in sorted(by_effect.items())
            },
        },
        **raw_results,
        "decisions_agree": agree,
    }


def cedarpy_version() -> str:
    from importlib.metadata import version

    return version("cedarpy")


def render(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    m, rs = doc["machine"], doc["ruleset"]
    console.print(
        f"[bold]policy[/bold]  {m['cpu']}, Python {m['python']}, cedarpy {doc['cedarpy']}; "
        f"{'pinned to ONE core: CPU ' + str(m['cpus']) if m['pinned'] else 'not pinned (' + m['note'] + ')'}"
    )
    console.print(
        f"ruleset: {rs['policies']} policies ({rs['review_policies']} @review) over "
        f"{', '.join(rs['actions'])}; load_ruleset (parse + validate, once) took "
        f"{common.fmt_us(rs['load_ruleset_us'])}"
    )
    us = common.fmt_us
    table = Table(title="one Cedar decision, side by side")
    for col in (
        "what",
        "requests",
        "p50",
        "p99",
        "max",
        "mean",
        f"goal p99 < {doc['goal']['p99_us']:.0f} µs",
    ):
        table.add_column(col, justify="left" if col == "what" else "right")

    def row(label: str, r: dict[str, Any], goal: bool = False) -> None:
        lat = r["latency"]
        met = lat["p99_us"] < doc["goal"]["p99_us"]
        verdict = ("[green]meets[/green]" if met else "[red]misses[/red]") if goal else ""
        table.add_row(
            label,
            f"{r['requests']:,}",
            us(lat["p50_us"]),
            us(lat["p99_us"]),
            us(lat["max_us"]),
            us(lat["mean_us"]),
            verdict,
        )

    row("answerable decide(), parsed once (all requests)", doc["decide"], goal=True)
    for effect, r in doc["decide"]["by_effect"].items():
        row(f"  of which {effect}", r, goal=True)
    row("cedarpy.is_authorized, pre-parsed PolicySet + Schema", doc["cedarpy_preparsed"])
    row("  floor: cedarpy._internal + orjson, no wrapper", doc["cedarpy_internal_floor"])
    row("cedarpy.is_authorized, policies as text (re-parsed)", doc["cedarpy_policy_text"])
    row("cedarpy.is_authorized, policies + schema as text", doc["cedarpy_all_text"])
    console.print(table)
    agree = "[green]yes[/green]" if doc["decisions_agree"] else "[red]NO[/red]"
    console.print(
        f"decide() and raw Cedar agree on every allow: {agree} (a review is a Deny to raw Cedar; "
        "decide() evaluates a review twice, the second time without the @review forbids)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per contender")
    parser.add_argument("--reparse", type=int, default=2_000, help="requests for the re-parsing contenders")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin to one CPU")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.reparse, args.warmup = 1_000, 200, 50
    doc = run(args)
    if not common.emit(doc, args.json):
        render(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
