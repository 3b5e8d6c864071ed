"""``answerable demo storm``: run the storm both ways, write the ledgers and ``result.json``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from answerable.errors import AnswerableError, ConfigError
from answerable.logistics.scenario import Mode, RunResult, run
from answerable.logistics.world import ScenarioConfig

__all__ = ["METRICS", "MONEY", "price_of_accountability", "storm"]

MONEY = (
    "total_cost",
    "transport_cost_cents",
    "handling_cost_cents",
    "moving_cost_cents",
    "penalties",
    "margin",
)
"""The figures that are money, in cents (``result.json`` says so in ``units``, for the report)."""

METRICS = (
    "medical_orders",
    "medical_on_time_rate",
    "retail_orders",
    "retail_on_time_rate",
    "time_critical_orders",
    "time_critical_on_time_rate",
    "medical_shipments_postponed",
    "time_critical_shipments_postponed",
    "hospital_stockout_days",
    "total_cost",
    "transport_cost_cents",
    "handling_cost_cents",
    "moving_cost_cents",
    "total_cost_change_pct",
    "penalties",
    "margin",
    "margin_change_pct",
    "actions_executed",
    "actions_attributed",
    "actions_denied",
    "reviews_raised",
    "reviews_approved",
    "reviews_denied",
    "review_wait_p50_minutes",
    "review_wait_p95_minutes",
    "reviewer_hours",
    "reviews_too_late",
    "answers_against_guidance",
    "reviewers",
    "ledger_entries",
    "wall_seconds",
)


async def storm(
    seed: int,
    out_dir: Path,
    *,
    modes: tuple[Mode, ...] = ("ungoverned", "governed"),
    config: ScenarioConfig | None = None,
    on_day: Callable[[Mode, int], None] | None = None,
    workers: int = 1,
    distributed: tuple[str, str] | None = None,
) -> dict[Mode, RunResult]:
    """Run each mode from the same seed; write ``result.json`` beside the ledgers.

    ``workers`` above 1 runs the modes in that many processes at once: each mode is its own world,
    seeded alone, so the figures are the same as one after another; their results come back
    without the simulated ``world`` (None), and ``on_day`` hears each mode's days when it ends.

    ``distributed``: (NATS URL, PostgreSQL URL): each mode runs with its agents in processes of
    their own (:mod:`answerable.logistics.distributed`), one mode after another, each on a
    schema and a stream of its own; ``runs.MODE.ledger`` names the schema's URL.
    """
    config = config or ScenarioConfig()
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    results: dict[Mode, RunResult] = {}
    if distributed is not None:
        from answerable.logistics.distributed import DistributedStormRun

        nats_url, postgres_url = distributed
        for mode in modes:

            def heard(day: int, mode: Mode = mode) -> None:
                if on_day is not None:
                    on_day(mode, day)

            storm_run = DistributedStormRun(
                mode, seed, config, out_dir, nats_url=nats_url, postgres_url=postgres_url
            )
            results[mode] = await run(mode, seed, config, out_dir, on_day=heard, storm_run=storm_run)
    elif workers > 1 and len(modes) > 1:
        loop = asyncio.get_running_loop()
        # Spawned, not forked: a fork would copy whatever locks the caller's threads hold.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(modes)), mp_context=spawn) as pool:
            done = await asyncio.gather(
                *(loop.run_in_executor(pool, _run_alone, mode, seed, config, out_dir) for mode in modes)
            )
        for mode, (metrics, ledger) in zip(modes, done, strict=True):
            results[mode] = RunResult(mode, metrics, ledger, None)
            for day in range(config.days):
                if on_day is not None:
                    on_day(mode, day)
    for mode in modes:
        if mode in results:
            continue

        def tick(day: int, mode: Mode = mode) -> None:
            if on_day is not None:
                on_day(mode, day)

        results[mode] = await run(mode, seed, config, out_dir, on_day=tick)
    document: dict[str, Any] = {
        "seed": seed,
        "days": config.days,
        "units": dict.fromkeys(MONEY, "cents"),
        "baseline": "ungoverned",
        "runs": {mode: result.metrics for mode, result in results.items()},
    }
    if "ungoverned" in results:
        base = results["ungoverned"].metrics
        for result in results.values():
            result.metrics["total_cost_change_pct"] = _change(
                result.metrics["total_cost"], base["total_cost"]
            )
            result.metrics["margin_change_pct"] = _change(result.metrics["margin"], base["margin"])
    if {"ungoverned", "governed"} <= results.keys():
        document["price_of_accountability_pct"] = price_of_accountability(results)
    if config.rules is not None and set(results) - {"ungoverned"}:  # other rules were used: say which
        document["rules"] = {
            "source": config.rules.source,
            "ruleset_hash": hashlib.sha256(config.rules.policies.encode()).hexdigest(),
        }
    text = json.dumps(document, indent=2) + "\n"
    await asyncio.to_thread((out_dir / "result.json").write_text, text, encoding="utf-8")
    return results


def _run_alone(
    mode: Mode, seed: int, config: ScenarioConfig, out_dir: Path
) -> tuple[dict[str, Any], Path | str]:
    """One mode in a worker process: its figures and its ledger (the world stays behind). An
    error crosses back as a ConfigError with its words: not every error can be rebuilt from a
    pickle, and a broken pool would hide what went wrong."""
    try:
        result = asyncio.run(run(mode, seed, config, out_dir))
    except AnswerableError as exc:
        raise ConfigError(f"the {mode} run: {exc}") from None
    return result.metrics, result.ledger


def _change(value: int, base: int) -> float | None:
    """Percent change against ``base``; None when the base is zero (no change is a percent of it)."""
    return round(100 * (value - base) / base, 2) if base else None


def price_of_accountability(results: dict[Mode, RunResult]) -> float:
    """How much more the governed run spent on transport, handling and moving stock, in percent
    (its margin change, ``margin_change_pct``, is the other half of the price)."""
    base = results["ungoverned"].metrics["total_cost"]
    governed = results["governed"].metrics["total_cost"]
    return round(100 * (governed - base) / base, 2) if base else 0.0
