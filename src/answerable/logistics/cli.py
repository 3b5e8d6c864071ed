"""The logistics reference system's command line: `answerable demo storm`, plugged into the CLI.

The core CLI names no domain; it loads this module through the ``answerable.plugins`` entry point
and registers :func:`demo_storm` with its own error handling (one line, exit 1 or 2). It is loaded
on every start of the command (``answerable halt`` included), so it imports typer and nothing
else heavy: Rich, pydantic and the records come in when the storm runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from answerable.errors import ConfigError

__all__ = ["demo_storm", "register_cli", "service_view"]

_PIPED_WIDTH = 160
"""Columns of the storm's table when stdout is no terminal: wide enough for its longest row name."""


def service_view() -> Any:
    """The report's view of on-time service (see answerable.report), imported when a report
    asks: the CLI loads this module on every start (``answerable halt`` included), and the view
    needs the whole world model."""
    from answerable.logistics.service_view import service_view as view

    return view()


def register_cli(demo: typer.Typer, guard: Callable[[Callable[..., None]], Callable[..., None]]) -> None:
    """Add ``storm`` to ``answerable demo``, wrapped by the CLI's error handling."""
    demo.command("storm")(guard(demo_storm))


def demo_storm(
    seed: int = typer.Option(7, "--seed", help="Seed of the world: orders, customers, storm draws."),
    out_dir: Path = typer.Option(Path("out/storm"), "--out", help="Where ledgers and result.json go."),
    mode: str = typer.Option(
        "both",
        "--mode",
        help="both (ungoverned and governed), ungoverned, rules (the desk's guidance as Cedar, no "
        "review), governed, monitored (old rules + monitors) or all four.",
    ),
    days: int | None = typer.Option(None, "--days", help="Simulated days (default: the scenario's)."),
    scenario: Path | None = typer.Option(None, "--scenario", help="A JSON scenario file."),
    distributed: bool = typer.Option(
        False,
        "--distributed",
        help="Each agent in a process of its own, on NATS JetStream, the ledger in PostgreSQL "
        "(a schema per run); the outcome table is the same as in one process.",
    ),
    nats: str | None = typer.Option(
        None, "--nats", help="With --distributed: the NATS JetStream server (nats://127.0.0.1:4222)."
    ),
    postgres: str | None = typer.Option(
        None,
        "--postgres",
        help="With --distributed: the PostgreSQL database (postgresql://postgres@127.0.0.1:5432/"
        "postgres; no schema, no password: each run makes a schema of its own; a password goes "
        "in PGPASSWORD or ~/.pgpass).",
    ),
    rules: Path | None = typer.Option(
        None,
        "--rules",
        metavar="DIR",
        help="Run every mode with rules (all but ungoverned) under these instead of the storm's own: "
        "policies.cedar and schema.cedarschema or schema.json, as `answerable rules export` writes "
        "them, signed by the demo's RI. Compare with a run without, by `answerable report-compare`.",
    ),
) -> None:
    """The storm, run ungoverned and governed from one seed; prints the outcome table."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from answerable.ledger import open_ledger
    from answerable.logistics.demo import METRICS, price_of_accountability, storm
    from answerable.logistics.scenario import Mode, check_scenario_file
    from answerable.logistics.world import ScenarioConfig
    from answerable.records import problems

    # Piped (make demo in CI, a log file), Rich would fit the table to COLUMNS or 80 and cut the
    # row names; a terminal's own width still rules.
    out = Console(highlight=False, width=None if sys.stdout.isatty() else _PIPED_WIDTH)
    err = Console(stderr=True, highlight=False)

    modes: dict[str, tuple[Mode, ...]] = {
        "both": ("ungoverned", "governed"),
        "governed": ("governed",),
        "ungoverned": ("ungoverned",),
        "monitored": ("monitored",),
        "rules": ("rules",),
        "all": ("ungoverned", "rules", "governed", "monitored"),
    }
    if mode not in modes:
        raise ConfigError(f"--mode {mode!r} is not one of {', '.join(modes)}")
    if not 0 <= seed < 1 << 32:  # the route planner's solver takes a 32-bit seed
        raise ConfigError(f"--seed {seed}: give a whole number from 0 to {(1 << 32) - 1}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; the storm writes ledgers and result.json in a folder")
    backends = None
    if not distributed and (nats is not None or postgres is not None):
        raise ConfigError(f"{'--nats' if nats is not None else '--postgres'} is for --distributed runs")
    if distributed:
        from answerable.logistics.distributed import DEFAULT_NATS, DEFAULT_POSTGRES, run_schema_url

        nats, postgres = nats or DEFAULT_NATS, postgres or DEFAULT_POSTGRES
        if not nats.startswith(("nats://", "tls://")):
            raise ConfigError(f"--nats: want a nats:// URL, got one of {nats.split('://')[0]!r}")
        run_schema_url(postgres, "probe")  # a URL with a password or a schema: refused now
        backends = (nats, postgres)
    config = check_scenario_file(scenario) if scenario else ScenarioConfig()
    if days is not None:
        try:
            config = ScenarioConfig.model_validate({**config.model_dump(), "days": days})
        except ValidationError as exc:
            raise ConfigError(f"--days {days}: {'; '.join(problems(exc, 'days'))}") from exc
    if rules is not None:
        from answerable.logistics.world import OtherRules
        from answerable.policy import load_ruleset
        from answerable.replay import read_ruleset

        policies, schema_text = read_ruleset(rules)
        load_ruleset(policies, schema_text)  # refused now, in one line, if it does not parse or validate
        other = OtherRules.model_validate(
            {"source": str(rules), "policies": policies, "schema_text": schema_text}
        )
        config = config.model_copy(update={"rules": other})
    with Progress(console=err, transient=True) as progress:
        tasks: dict[str, TaskID] = {m: progress.add_task(f"{m:>10}", total=config.days) for m in modes[mode]}

        def tick(m: str, _day: int) -> None:
            progress.advance(tasks[m])

        workers = min(len(modes[mode]), os.cpu_count() or 1)
        import asyncio  # here, not at start-up: every command (halt first) loads this module

        results = asyncio.run(
            storm(
                seed,
                out_dir,
                modes=modes[mode],
                config=config,
                on_day=tick,
                workers=workers,
                distributed=backends,
            )
        )
    table = Table(title=f"storm, seed {seed}, {config.days} days")
    table.add_column("")
    for m in results:
        table.add_column(m, justify="right")
    for metric in METRICS:
        table.add_row(metric, *(_cell(metric, r.metrics.get(metric)) for r in results.values()))
    for metric in ("alerts", "medical_late_before_alert", "medical_late_after_alert"):
        table.add_row(metric, *(_cell(metric, r.metrics.get(metric, "-")) for r in results.values()))
    out.print(table)
    for m, result in results.items():
        first = result.metrics.get("first_alert")
        if first:
            out.print(
                f"{m:>10}: monitor {first['monitor']} fired on day {first['day']} "
                f"(ledger entry {first['index']}); "
                f"medical orders late before it {result.metrics['medical_late_before_alert']}, "
                f"after it {result.metrics['medical_late_after_alert']}"
            )
        for alert in result.metrics.get("coordination_alerts") or ():
            what = ", ".join(f"{k} {v}" for k, v in alert.items() if k != "monitor")
            out.print(f"{m:>10}: monitor {alert['monitor']} fired: {what}", markup=False)
    if {"ungoverned", "governed"} <= results.keys():
        price = price_of_accountability(results)
        margin = _cell("margin_change_pct", results["governed"].metrics["margin_change_pct"])
        out.print(
            f"price of accountability: {price:+.2f}% total cost (transport, handling, moving stock), "
            f"{margin} margin"
        )
    for m, result in results.items():
        with open_ledger(result.ledger) as store:
            report = store.verify()
        where = f"{m:>10} ledger: {result.ledger} ({report.size} entries, verified)"
        out.print(where, markup=False, soft_wrap=True)  # one line, whatever the width: scripts read it
    out.print(f"    result: {out_dir / 'result.json'}", markup=False, soft_wrap=True)


def _cell(metric: str, value: Any) -> str:
    if value is None:
        return "-"
    if metric.endswith("_rate"):
        return f"{value:.3f}"
    if metric.endswith("_pct"):
        return f"{value:+.2f}%"
    if metric in ("total_cost", "penalties", "margin") or metric.endswith("_cents"):
        return f"{value / 100:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)
