"""Incident report: one self-contained HTML page about a run, computed from its ledger alone.

Everything on the page is read from the ledger (and, when there is one, the ``result.json`` written
beside it), never from the objects that ran, so a report can be made from a ledger someone hands
you. Rendering only reads: it never appends, checkpoints or repairs. The same ledger renders to the
same bytes: the page holds no time of its own, and plots are SVG with fixed ids and no dates.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import math
import os
import shlex
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol

import orjson

from answerable.charter import charter_of
from answerable.clock import on_the_calendar
from answerable.coordination import Observed, observe
from answerable.errors import ConfigError, RecordInvalid
from answerable.ledger import SQLLedger, open_ledger, payload_of
from answerable.ledger.location import is_postgres_url
from answerable.records import (
    Approval,
    Control,
    Decision,
    Execution,
    ExternalEvent,
    Intent,
    Review,
    decode_entry,
)

_P = ParamSpec("_P")

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["compare", "nearest_rank", "render", "write"]

_KNOWN = frozenset(
    {
        "SystemCharter",
        "RulesetVersion",
        "Message",
        "ExternalEvent",
        "Intent",
        "Decision",
        "Review",
        "Approval",
        "Execution",
        "Control",
    }
)


class ServiceView(Protocol):
    """How a domain's outside events say whether its service was on time, per class and day.

    The report is generic; a domain plugs one in through
    the ``answerable.plugins`` entry point group, as a module-level ``service_view()`` factory.
    """

    event_types: frozenset[str]
    classes: tuple[str, ...]
    """Its classes in the order they are reported (the ones that matter most first)."""
    counted: str
    """What it counts, as result.json names the totals (``{class}_{counted}``)."""

    def observe(self, event_type: str, date: str, payload: dict[str, Any]) -> None: ...

    def result(self) -> tuple[dict[str, dict[str, tuple[int, int]]], dict[str, tuple[int, int]]]:
        """On-time and total per class per day, and per class overall."""
        ...

    def figures(self, ledger_path: Path | None) -> dict[str, int | float]:
        """The domain's own figures, recomputed from what it observed and from files beside the
        ledger (its partners' records, say), named as result.json names them. ``ledger_path`` is
        None for a ledger that is not a file (in PostgreSQL): nothing lies beside it."""
        ...


def _views() -> list[ServiceView]:
    """A fresh service view from every installed plugin that offers one."""
    views = []
    for plugin in entry_points(group="answerable.plugins"):
        factory = getattr(plugin.load(), "service_view", None)
        if callable(factory):
            views.append(factory())
    return views


_LONG = 160
"""Values longer than this many characters are folded into a ``<details>``."""


# --- what the ledger says -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reviewed:
    """One decision that went to a person, with the answer if there was one."""

    review: Review
    intent: Intent | None
    approval: Approval | None

    @property
    def waited_s(self) -> float | None:
        if self.approval is None:
            return None
        return (_instant(self.approval.at) - _instant(self.review.at)).total_seconds()


@dataclass(slots=True)
class _Facts:
    """Everything the page shows, gathered in one pass over the ledger."""

    path: Path
    """The ledger's file; for a ledger in PostgreSQL, its schema's name (no file lies beside it)."""
    where: str
    """How the ledger is named to the reader: the path or the URL."""
    file: bool
    origin: str
    size: int
    root: str
    verifier: str
    checkpoint: str | None
    kinds: Counter[str] = field(default_factory=Counter)
    event_types: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_at: str | None = None
    last_at: str | None = None
    days: list[str] = field(default_factory=list)
    derived: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    result_note: str = ""
    cents: frozenset[str] = frozenset()
    """Figures result.json says are money in cents (its ``units``); keys ending ``_cents`` too."""
    baseline: tuple[str, dict[str, Any]] | None = None
    """The run result.json names as its ``baseline`` (the one without governance), to compare to."""
    ri: str | None = None
    simulated_answers: int = 0
    on_time: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    """Class -> day -> (on time, due), as the installed plugins' service views judge them."""
    executed: dict[str, Counter[str]] = field(default_factory=dict)
    """Operation -> day -> succeeded executions."""
    statuses: Counter[str] = field(default_factory=Counter)
    reviewed: list[_Reviewed] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    outside_alerts: list[ExternalEvent] = field(default_factory=list)
    undecodable: list[tuple[int, str, str]] = field(default_factory=list)
    coordination: Observed | None = None
    """How the agents coordinated: edges with their messages per day, refused channels."""

    @property
    def label(self) -> str:
        return self.path.stem

    def outcome(self) -> dict[str, Any]:
        """The outcome table: result.json's figures when there are some, else the ledger's."""
        return dict(self.result) if self.result is not None else dict(self.derived)


def _gather(target: str | Path, shown_as: str | None = None) -> _Facts:
    """``shown_as``: how the page names the ledger, where its path is not the reader's to know."""
    where = str(target)
    file = not is_postgres_url(where)
    with open_ledger(where) as ledger:
        ledger_path = Path(where) if file else Path(getattr(ledger, "schema", "ledger"))
        entries = ledger.entries()
        facts = _Facts(
            path=ledger_path,
            where=where if shown_as is None else shown_as,
            file=file,
            origin=ledger.origin,
            size=len(entries),
            root=base64.b64encode(ledger.root(len(entries))).decode("ascii"),
            verifier=ledger.verifier_key(),
            checkpoint=ledger.latest_checkpoint(),
        )
        try:
            facts.ri = charter_of(ledger).ri
        except ConfigError:
            facts.ri = None  # no charter: nobody answers for this system
        intents: dict[str, Intent] = {}
        reviews: list[Review] = []
        approvals: dict[str, Approval] = {}
        decisions: list[Decision] = []
        executions: list[Execution] = []
        active: set[str] = set()
        views = _views()
        for stored in entries:
            facts.kinds[stored.kind] += 1
            record: Any = None
            if stored.kind in _KNOWN:
                try:
                    record = decode_entry(stored.data)
                except RecordInvalid as exc:
                    facts.undecodable.append((stored.index, stored.kind, str(exc)))
            else:
                try:
                    record = orjson.loads(stored.data)
                except orjson.JSONDecodeError as exc:
                    facts.undecodable.append((stored.index, stored.kind, f"not JSON: {exc}"))
                if record is not None and not isinstance(record, dict):
                    facts.undecodable.append((stored.index, stored.kind, "not a JSON object"))
                    record = None
            if record is None:
                continue
            at = record.get("at") if isinstance(record, dict) else record.at
            if isinstance(record, dict) and not _is_time(at):
                at = None  # an entry of a kind this version does not know may hold anything
            elif isinstance(at, str) and not on_the_calendar(at):
                at = None  # a known kind's pattern admits a 13th month; a library caller could write one
            if isinstance(at, str):
                facts.first_at = at if facts.first_at is None else min(facts.first_at, at)
                facts.last_at = at if facts.last_at is None else max(facts.last_at, at)
                active.add(at[:10])
            if isinstance(record, dict):
                if stored.kind == "Alert":
                    facts.alerts.append(record)
            elif isinstance(record, Intent):
                intents[record.id] = record
            elif isinstance(record, Decision):
                decisions.append(record)
            elif isinstance(record, Execution):
                executions.append(record)
            elif isinstance(record, Review):
                reviews.append(record)
            elif isinstance(record, Approval):
                approvals.setdefault(record.review_id, record)
            elif isinstance(record, Control):
                facts.controls.append(record)
            elif isinstance(record, ExternalEvent):
                facts.event_types[(record.type, record.source)] += 1
                watching = [v for v in views if record.type in v.event_types]
                if watching:
                    payload = _payload(ledger, record)
                    for view in watching:
                        view.observe(record.type, record.at[:10], payload)
                elif record.type.endswith(".alert"):
                    facts.outside_alerts.append(record)
        facts.coordination = observe(ledger)
    if facts.first_at is not None and facts.last_at is not None:
        facts.days = _days_between(facts.first_at[:10], facts.last_at[:10], active)
    facts.reviewed = [_Reviewed(r, intents.get(r.intent_id), approvals.get(r.id)) for r in reviews]
    for x in executions:
        facts.statuses[x.status] += 1
        if x.status == "succeeded":
            facts.executed.setdefault(x.operation, Counter())[x.at[:10]] += 1
    facts.on_time, per_class = {}, {}
    domain: dict[str, int | float] = {}
    for view in views:
        table, totals = view.result()
        facts.on_time.update(table)
        per_class.update(totals)
        domain.update(view.figures(ledger_path if file else None))
    facts.derived = _derived(facts, per_class, decisions, executions, approvals)
    facts.derived.update(domain)
    if file:
        facts.result, facts.result_note = _result_json(ledger_path)
        facts.cents = _cents_of(ledger_path, facts.result)
        facts.baseline = _baseline_of(ledger_path)
    else:
        facts.result_note = "a ledger in PostgreSQL has no result.json beside it; figures are from the ledger"
        facts.cents = _cents_of(None, None)
    facts.simulated_answers = sum(1 for a in approvals.values() if a.simulated)
    return facts


def _baseline_of(ledger_path: Path) -> tuple[str, dict[str, Any]] | None:
    """The run result.json names as ``baseline``, unless it is this ledger's own run."""
    try:
        document = json.loads((ledger_path.parent / "result.json").read_text(encoding="utf-8"))
        name, runs = document["baseline"], document["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    run = runs.get(name) if isinstance(runs, dict) and isinstance(name, str) else None
    return (name, _figures(run)) if isinstance(run, dict) and name != ledger_path.stem else None


def _cents_of(ledger_path: Path | None, run: dict[str, Any] | None) -> frozenset[str]:
    """The figures that are money in cents: result.json's ``units`` says so, or the key's name."""
    try:
        units = (
            None
            if ledger_path is None
            else json.loads((ledger_path.parent / "result.json").read_text(encoding="utf-8")).get("units")
        )
    except (OSError, ValueError, AttributeError):
        units = None
    named = {k for k, v in units.items() if v == "cents"} if isinstance(units, dict) else set()
    return frozenset(named | {k for k in run or {} if k.endswith("_cents")})


def _payload(ledger: SQLLedger, event: ExternalEvent) -> dict[str, Any]:
    return payload_of(ledger, event.payload)


def _class_rank(cls: str) -> tuple[int, str]:
    """Classes in the order the installed service views name them, then the rest by name."""
    order = _class_order()
    return (order.index(cls) if cls in order else len(order), cls)


@functools.cache
def _class_order() -> tuple[str, ...]:
    """Read once: the installed plugins do not change while a process runs."""
    return tuple(c for view in _views() for c in view.classes)


def _derived(
    facts: _Facts,
    per_class: dict[str, tuple[int, int]],
    decisions: Sequence[Decision],
    executions: Sequence[Execution],
    approvals: dict[str, Approval],
) -> dict[str, Any]:
    """The outcome figures that the ledger alone supports, named as result.json names them."""
    out: dict[str, Any] = {}
    counted = next((view.counted for view in _views()), "due")
    for cls, (on_time, total) in sorted(per_class.items(), key=lambda kv: _class_rank(kv[0])):
        out[f"{cls}_{counted}"] = total
        out[f"{cls}_on_time_rate"] = round(on_time / total, 4) if total else 1.0
    done = [x for x in executions if x.status == "succeeded"]
    denied_reviews = sum(1 for a in approvals.values() if a.verdict == "deny")
    out["actions_executed"] = len(done)
    out["actions_attributed"] = sum(1 for x in done if x.authority is not None and x.authority.responsible)
    out["actions_denied"] = sum(1 for d in decisions if d.effect == "deny") + denied_reviews
    out["reviews_raised"] = len(facts.reviewed)
    out["reviews_approved"] = sum(1 for a in approvals.values() if a.verdict == "approve")
    out["reviews_denied"] = denied_reviews
    waits = sorted(r.waited_s / 60 for r in facts.reviewed if r.waited_s is not None)
    out["review_wait_p50_minutes"] = nearest_rank(waits, 0.50)
    out["review_wait_p95_minutes"] = nearest_rank(waits, 0.95)
    if facts.reviewed:
        out["reviews_too_late"] = facts.kinds["ReviewClosed"]
    out["alerts"] = len(facts.alerts)
    out["coordination_alerts"] = [
        {"monitor": a.get("monitor"), **a["observed"]}
        for a in facts.alerts
        if isinstance(a.get("observed"), dict) and "from" in a["observed"]
    ]
    out["halted"] = _halted(facts.controls)
    out["ledger_entries"] = facts.size
    return out


def _halted(controls: Sequence[Control]) -> dict[str, str] | None:
    """The earliest halt of the whole system that no later resume lifted (a resume names the
    stops it lifts as its causes): who, when, why; None when nothing halts it at the end."""
    lifted = {cause for c in controls if c.action == "resume" for cause in c.causes}
    for c in controls:
        if c.action == "halt" and c.scope.kind == "system" and c.id not in lifted:
            return {"control": c.id, "by": c.by, "at": c.at, "reason": c.reason}
    return None


def nearest_rank(values: list[float], q: float) -> float | None:
    """The nearest-rank quantile (rank ``ceil(q·n)``) of sorted ``values``, rounded to 0.1; None
    for none. The review waits of result.json and of this report are both taken so."""
    if not values:
        return None
    return round(values[max(0, math.ceil(q * len(values)) - 1)], 1)


def _result_json(ledger_path: Path) -> tuple[dict[str, Any] | None, str]:
    """This run's figures from ``result.json`` beside the ledger, keyed by the ledger's stem."""
    path = ledger_path.parent / "result.json"
    if not path.exists():
        return None, "no result.json beside the ledger; figures are recomputed from the ledger"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{path.name} beside the ledger could not be read ({exc}); figures are from the ledger"
    runs = document.get("runs") if isinstance(document, dict) else None
    run = runs.get(ledger_path.stem) if isinstance(runs, dict) else None
    if not isinstance(run, dict):
        return None, f"{path.name} has no run named {ledger_path.stem!r}; figures are from the ledger"
    return _figures(run), f"figures from {path.name} (run {ledger_path.stem!r}), checked against the ledger"


def _figures(run: dict[str, Any]) -> dict[str, Any]:
    """A run of result.json without ``ledger``: where the run's ledger is, not a figure of it."""
    return {k: v for k, v in run.items() if k != "ledger"}


def _instant(at: str) -> datetime:
    """An RFC 3339 UTC time as the ledger writes it; nanoseconds are cut to microseconds."""
    stamp, _, fraction = at.rstrip("Z").partition(".")
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return parsed.replace(microsecond=int((fraction + "000000")[:6])) if fraction else parsed


MAX_DAYS = 366
"""Longest run of calendar days the per-day plots draw; past it they draw only the days that hold
entries. One entry dated in 2999 (any writer may date its own Message) would otherwise make a
bar per day for centuries, and the report would not finish."""


def _days_between(first: str, last: str, active: set[str]) -> list[str]:
    """Every day from ``first`` to ``last``, so a quiet day shows as a gap; or, across more than
    :data:`MAX_DAYS`, only the days on which an entry lies."""
    start = datetime.strptime(first, "%Y-%m-%d").replace(tzinfo=UTC).toordinal()
    stop = datetime.strptime(last, "%Y-%m-%d").replace(tzinfo=UTC).toordinal()
    if stop - start >= MAX_DAYS:
        return sorted(active)
    return [datetime.fromordinal(n).strftime("%Y-%m-%d") for n in range(start, stop + 1)]


# --- plots --------------------------------------------------------------------------------------


_DRAWING = threading.RLock()
"""Held while a plot is drawn: see :func:`_plain_text`."""


def _plain_text(plot: Callable[_P, str | None]) -> Callable[_P, str | None]:
    """Draw ``plot`` with every label shown as written: agents name the topics, types and
    operations on the axes, and matplotlib read a ``$`` pair in one as mathematics, failing at
    ``savefig`` on text it could not parse (a message topic ``$\\foo$`` made every later report
    of the ledger fail, found by an audit; the ledger keeps it for good)."""

    @functools.wraps(plot)
    def drawn(*args: _P.args, **kwargs: _P.kwargs) -> str | None:
        import matplotlib

        # matplotlib's settings are the process's: a plot drawn in another thread (the console
        # renders reports in worker threads) ending its context would put mathematics back
        # under this one mid-draw, so plots are drawn one at a time.
        with _DRAWING, matplotlib.rc_context({"text.parse_math": False}):
            return plot(*args, **kwargs)

    return drawn


def _figure(width: float = 7.5, height: float = 2.8) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError(
            "the report draws its plots with matplotlib, which is not installed; "
            "run `pip install matplotlib` in this environment"
        ) from exc
    # A bare Figure never touches pyplot, so no display backend is chosen and the caller's is kept.
    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Figure, name: str) -> str:
    """Inline SVG with ids salted by the plot's name (unique on the page) and no creation date."""
    import io

    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"answerable-{name}", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _style(ax: Axes, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


_ALERT_COLOUR = "#d08c00"


def _alert_days(runs: Iterable[_Facts]) -> set[str]:
    """The dates on which an outside alert (an event of type ``*.alert``) was recorded."""
    return {e.at[:10] for f in runs for e in f.outside_alerts}


def _mark_days(ax: Axes, labels: Sequence[str], days: set[str]) -> None:
    """Shade the categories of a per-day axis that fall on an outside alert's day."""
    first = True
    for i, day in enumerate(labels):
        if day in days:
            legend = "outside alert that day" if first else None
            ax.axvspan(i - 0.5, i + 0.5, color=_ALERT_COLOUR, alpha=0.13, lw=0, label=legend)
            first = False


def _mark_span(ax: Axes, origin: datetime, days: set[str]) -> None:
    """Shade whole UTC days with an outside alert on a time axis measured from ``origin``."""
    for n, day in enumerate(sorted(days)):
        start = (datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC) - origin).total_seconds()
        label = None if n else "outside alert that day"
        ax.axvspan(start, start + 86_400, color=_ALERT_COLOUR, alpha=0.13, lw=0, label=label)


@_plain_text
def _plot_on_time(runs: Sequence[_Facts], name: str) -> str | None:
    series = [(f, cls, days) for f in runs for cls, days in f.on_time.items() if days]
    if not series:
        return None
    labels = sorted({day for _, _, days in series for day in days})
    fig = _figure()
    ax = fig.add_subplot()
    styles = ("-", "--", ":", "-.")
    markers = ("o", "s", "^", "D")
    classes = sorted({cls for _, cls, _ in series}, key=_class_rank)
    for n, f in enumerate(runs):
        for cls in classes:
            days = f.on_time.get(cls)
            if not days:
                continue
            xs = [labels.index(d) for d in days]
            ys = [ok / total if total else 1.0 for ok, total in days.values()]
            label = cls if len(runs) == 1 else f"{f.label} {cls}"
            ax.plot(
                xs,
                ys,
                linestyle=styles[classes.index(cls) % len(styles)] if len(runs) > 1 else "-",
                marker=markers[classes.index(cls) % len(markers)],
                color=f"C{n}" if len(runs) > 1 else f"C{classes.index(cls)}",
                label=label,
            )
    _mark_days(ax, labels, _alert_days(runs))
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    _style(ax, "On-time rate of what was due each day, by class", "on time")
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig, name)


def _coordination_rows(runs: Sequence[_Facts]) -> list[tuple[str, str, tuple[str, str, str]]]:
    """Rows of the coordination picture across runs: (label, kind, edge), kind ``declared``,
    ``undeclared``, ``open`` (no contract) or ``refused``."""
    rows: dict[tuple[str, tuple[str, str, str]], str] = {}
    for f in runs:
        graph = f.coordination
        if graph is None:
            continue
        for e in graph.edges:
            kind = "open" if e.declared is None else "declared" if e.declared else "undeclared"
            key = ("sent", (e.sender, e.topic, e.type))
            rows[key] = "undeclared" if rows.get(key) == "undeclared" else kind
        for edge in graph.refused_days:
            rows[("refused", edge)] = "refused"
    out = []
    for (what, (sender, topic, type_)), kind in sorted(
        rows.items(), key=lambda kv: (kv[0][0] == "refused", kv[0][1])
    ):
        prefix = "refused: " if what == "refused" else ""
        out.append((f"{prefix}{sender} → {topic} / {type_}", kind, (sender, topic, type_)))
    return out


@_plain_text
def _plot_coordination(runs: Sequence[_Facts], name: str) -> str | None:
    """Messages per day on each (sender, topic, type), one panel per run side by side: a person
    sees a channel open, grow or fall silent during the run, and refused attempts in grey."""
    rows = _coordination_rows(runs)
    shown = [
        f
        for f in runs
        if f.coordination is not None and (f.coordination.edges or f.coordination.refused_days)
    ]
    if not rows or not shown:
        return None
    import numpy as np

    fig = _figure(width=min(12.5, 3.0 + 2.6 * len(shown)), height=0.9 + 0.32 * len(rows))
    axes = fig.subplots(1, len(shown), sharey=True, squeeze=False)[0]
    colours = {"declared": "#1f3b57", "open": "#1f3b57", "undeclared": "#b23a48", "refused": "#8a8a8a"}
    for ax, f in zip(axes, shown, strict=True):
        graph = f.coordination
        if graph is None:  # filtered above; kept for the type checker
            continue
        sent = {(e.sender, e.topic, e.type): e.days for e in graph.edges}
        grid = np.zeros((len(rows), len(f.days)))
        for r, (_label, kind, edge) in enumerate(rows):
            days = (graph.refused_days.get(edge) if kind == "refused" else sent.get(edge)) or Counter()
            for c, day in enumerate(f.days):
                grid[r, c] = days[day]
        ax.imshow(np.log1p(grid), aspect="auto", cmap="Blues", vmin=0)
        for r, (_label, kind, _edge) in enumerate(rows):
            for c in range(len(f.days)):
                if grid[r, c]:
                    ax.text(
                        c,
                        r,
                        f"{int(grid[r, c]):,}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if grid[r, c] > grid.max() / 3 else colours[kind],
                    )
        _mark_days(ax, f.days, _alert_days([f]))
        ax.set_xticks(range(len(f.days)), [d[5:] for d in f.days], rotation=30, ha="right")
        ax.tick_params(labelsize=8)
        ax.set_title(
            f.label if len(shown) > 1 else "Messages per day on each channel", fontsize=10, loc="left"
        )
    first = axes[0]
    first.set_yticks(range(len(rows)), [label for label, _, _ in rows])
    for tick, (_label, kind, _edge) in zip(first.get_yticklabels(), rows, strict=True):
        tick.set_color(colours[kind])
    notes = ["numbers: messages that day"]
    if any(kind == "undeclared" for _, kind, _ in rows):
        notes.append("red: a channel the contract does not declare")
    if any(kind == "refused" for _, kind, _ in rows):
        notes.append("grey: messages refused")
    if _alert_days(shown):
        notes.append("shaded: a day with an outside alert")
    fig.supxlabel("; ".join(notes), fontsize=8)
    return _svg(fig, name)


@_plain_text
def _plot_actions(f: _Facts) -> str | None:
    if not f.executed:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    bottom = [0] * len(f.days)
    for n, (operation, per_day) in enumerate(sorted(f.executed.items())):
        heights = [per_day.get(d, 0) for d in f.days]
        ax.bar(range(len(f.days)), heights, bottom=bottom, label=operation, color=f"C{n}")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    _mark_days(ax, f.days, _alert_days([f]))
    ax.set_xticks(range(len(f.days)), f.days, rotation=30, ha="right")
    _style(ax, "Actions executed per day, by operation", "executions")
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig, "actions")


@_plain_text
def _plot_reviews(f: _Facts) -> str | None:
    if not f.reviewed:
        return None
    counts: dict[str, Counter[str]] = {k: Counter() for k in ("approve", "deny", "pending")}
    for r in f.reviewed:
        counts[r.approval.verdict if r.approval else "pending"][r.review.at[:10]] += 1
    fig = _figure()
    ax = fig.add_subplot()
    bottom = [0] * len(f.days)
    colours = {"approve": "#3a7d44", "deny": "#b23a48", "pending": "#9a9a9a"}
    for verdict, per_day in counts.items():
        if not per_day:
            continue
        heights = [per_day.get(d, 0) for d in f.days]
        ax.bar(range(len(f.days)), heights, bottom=bottom, label=verdict, color=colours[verdict])
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    _mark_days(ax, f.days, _alert_days([f]))
    ax.set_xticks(range(len(f.days)), f.days, rotation=30, ha="right")
    _style(ax, "Decisions sent to review per day, by verdict", "reviews")
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig, "reviews")


@_plain_text
def _plot_waits(f: _Facts) -> str | None:
    answered = [r for r in f.reviewed if r.approval is not None]
    if not answered:
        return None
    origin, span = _origin(f)
    fig = _figure()
    ax = fig.add_subplot()
    for verdict, colour in (("approve", "#3a7d44"), ("deny", "#b23a48")):
        mine = [r for r in answered if r.approval is not None and r.approval.verdict == verdict]
        if mine:
            ax.scatter(
                [_seconds(r.review.at, origin) for r in mine],
                [r.waited_s or 0.0 for r in mine],
                s=12,
                alpha=0.7,
                color=colour,
                label=verdict,
            )
    _mark_span(ax, origin, _alert_days([f]))
    _time_axis(ax, origin, span)
    ax.set_ylim(bottom=0)
    _style(ax, "Time each review waited for its answer (approval time − review time)", "seconds")
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig, "waits")


@_plain_text
def _plot_timeline(f: _Facts) -> str | None:
    if not (f.outside_alerts or f.alerts or f.controls):
        return None
    origin, span = _origin(f)

    def at(times: Iterable[str]) -> list[float]:
        return [_seconds(t, origin) for t in times]

    rows: list[tuple[str, list[float], str, str]] = [
        ("outside alerts", at(e.at for e in f.outside_alerts), "v", "#d08c00"),
        ("alerts", at(str(a["at"]) for a in f.alerts if _is_time(a.get("at"))), "X", "#b23a48"),
        ("halt", at(c.at for c in f.controls if c.action == "halt"), "s", "#000000"),
        ("pause", at(c.at for c in f.controls if c.action == "pause"), "D", "#555555"),
        ("resume", at(c.at for c in f.controls if c.action == "resume"), "^", "#3a7d44"),
        ("reviews", at(r.review.at for r in f.reviewed), "|", "#4a6fa5"),
    ]
    rows = [row for row in rows if row[1]]
    fig = _figure(height=0.6 + 0.45 * len(rows))
    ax = fig.add_subplot()
    for y, (_, times, marker, colour) in enumerate(rows):
        ax.scatter(times, [y] * len(times), marker=marker, color=colour, s=40, alpha=0.8)
    ax.set_yticks(range(len(rows)), [row[0] for row in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    _mark_span(ax, origin, _alert_days([f]))
    _time_axis(ax, origin, span)
    _style(ax, "Alerts, controls and reviews on the timeline (UTC)", "")
    ax.grid(axis="x", alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8, frameon=False, loc="upper right")
    return _svg(fig, "timeline")


_STEPS = (
    *(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800),
    *(3600 * h for h in (1, 2, 3, 6, 12)),
    *(86_400 * d for d in (1, 2, 7, 14, 28, 91, 365, 3_652, 36_524, 365_242)),
)
"""Tick spacings in seconds; a time axis takes the finest that gives at most eight ticks."""


def _origin(f: _Facts) -> tuple[datetime, tuple[float, float]]:
    """Midnight UTC before the first entry, and the span of the ledger in seconds after it.

    Times are plotted as seconds after that midnight, so ticks at whole hours and days fall on the
    clock's hours and days, and microseconds survive (days since 1970 as a float would lose them).
    """
    first = _instant(f.first_at or "1970-01-01T00:00:00Z")
    last = _instant(f.last_at or "1970-01-01T00:00:00Z")
    origin = first.replace(hour=0, minute=0, second=0, microsecond=0)
    return origin, ((first - origin).total_seconds(), (last - origin).total_seconds())


def _seconds(at: str, origin: datetime) -> float:
    return (_instant(at) - origin).total_seconds()


def _time_axis(ax: Axes, origin: datetime, span: tuple[float, float]) -> None:
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    start, stop = span
    pad = max((stop - start) * 0.03, 0.001)
    step = next((s for s in _STEPS if (stop - start) / s <= 8), _STEPS[-1])
    fmt = "%m-%d" if step >= 86_400 else "%m-%d %H:%M" if step >= 60 else "%H:%M:%S.%f"

    def label(x: float, _pos: int | None) -> str:
        return (origin + timedelta(seconds=x)).strftime(fmt)

    ax.set_xlim(start - pad, stop + pad)
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(label))
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_xlabel("UTC", fontsize=8)


def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        _instant(value)
    except ValueError:
        return False
    return True


# --- HTML ---------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;
padding:0 1rem;color:#1d1d1f}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1rem}table{border-collapse:collapse;margin:.5rem 0;font-size:13px}
th,td{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:top;text-align:left;overflow-wrap:anywhere}
table{max-width:100%}td code{white-space:pre-wrap;overflow-wrap:anywhere}
th{background:#f4f4f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#f4f4f6;padding:.6rem;white-space:pre-wrap;overflow-wrap:anywhere}.muted{color:#666}
.none{color:#666;font-style:italic}figure{margin:1rem 0}svg{max-width:100%;height:auto}
.deny{color:#b23a48;font-weight:600}.approve{color:#3a7d44;font-weight:600}
.pending{color:#666;font-weight:600}dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem}
dt{font-weight:600}dd{margin:0}.conclusion{font-size:15px;max-width:75ch}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: Iterable[str]) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _none(text: str) -> str:
    return f'<p class="none">{_e(text)}</p>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[int] = ()) -> str:
    """A table whose cells are already HTML; only the header is escaped here."""
    parts = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        cells = (f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _value(value: object) -> str:
    """A free-form ledger value as escaped HTML, long ones folded."""
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if len(text) <= _LONG:
        return f"<code>{_e(text)}</code>"
    return f"<details><summary><code>{_e(text[:_LONG])}…</code></summary><pre>{_e(text)}</pre></details>"


def _cell(metric: str, value: object, cents: frozenset[str] = frozenset()) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return _value(value)
    if not isinstance(value, int | float):
        return _e(value)
    if metric.endswith("_rate"):
        return f"{value:.3f}"
    if metric.endswith("_pct"):
        return f"{value:+.2f}%"
    if metric in cents or metric.endswith("_cents"):
        return f"{value / 100:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return _e(value)


def _label(metric: str) -> str:
    """A figure's key as a person reads it (``pickup_on_time_rate``: "Pickup on-time rate"),
    its key kept as the tooltip for whoever scripts against result.json."""
    words = metric.replace("on_time", "on-time").split("_")
    if words[-1] == "pct":
        words = [*words[:-1], "(%)"]
    elif words[-1] == "cents":
        words = words[:-1]
    text = " ".join(words)
    return f'<span title="{_e(metric)}">{_e(text[:1].upper() + text[1:])}</span>'


def _metric_names(outcomes: Iterable[dict[str, Any]]) -> list[str]:
    # First-seen order: result.json lists its figures in the order the scenario defines them.
    names: list[str] = []
    for outcome in outcomes:
        names.extend(k for k in outcome if k not in names)
    return names


def _outcome_section(f: _Facts) -> str:
    parts = ["<h2 id=outcome>Outcome</h2>", f'<p class="muted">{_e(f.result_note)}</p>']
    rows: list[tuple[str, ...]]
    if f.result is None:
        rows = [(_label(m), _cell(m, f.derived.get(m), f.cents)) for m in _metric_names([f.derived])]
        parts.append(_table(["metric", "from the ledger"], rows, numeric=[1]))
        return "\n".join(parts)
    names = _metric_names([f.result, f.derived])
    rows = []
    for m in names:
        ours, theirs = f.derived.get(m), f.result.get(m)
        mark = " ≠" if m in f.derived and m in f.result and ours != theirs else ""
        rows.append((_label(m), _cell(m, theirs, f.cents), _cell(m, ours, f.cents) + mark))
    parts.append(_table(["metric", "result.json", "recomputed from the ledger"], rows, numeric=[1, 2]))
    parts.append(
        '<p class="muted">Money is in whole currency units (result.json holds cents). The ledger '
        "holds response digests, not prices: costs are recomputed from the partners' own records "
        "beside it when the domain's plugin finds them; a figure that differs is marked.</p>"
        if f.cents
        else '<p class="muted">result.json names no units (an older one): figures are shown as '
        "written. The ledger holds response digests, not prices.</p>"
    )
    return "\n".join(parts)


def _figure_block(svg: str | None, missing: str) -> str:
    return f"<figure>{svg}</figure>" if svg is not None else _none(missing)


def _plots_section(f: _Facts) -> str:
    cost = ""
    if f.result is not None:
        known = [m for m in f.result if m in f.cents]
        if known:
            cost = (
                "<p>Totals from result.json: "
                + ", ".join(f"{_label(m)} <b>{_cell(m, f.result[m], f.cents)}</b>" for m in known)
                + ".</p>"
            )
    statuses = ", ".join(f"{_e(s)}: {n:,}" for s, n in sorted(f.statuses.items()))
    return "\n".join(
        [
            "<h2 id=plots>Plots</h2>",
            "<h3>Service</h3>",
            _figure_block(
                _plot_on_time([f], "on-time"),
                "No installed plugin reads this ledger's outside events as service: no on-time rates.",
            ),
            "<h3>Cost: actions executed</h3>",
            cost,
            f'<p class="muted">Executions by status: {statuses or "none"}.</p>',
            _figure_block(_plot_actions(f), "No executed actions in this ledger."),
            "<h3>Reviews</h3>",
            _figure_block(_plot_reviews(f), "No decision in this ledger went to review."),
            _waits_summary(f),
            _figure_block(_plot_waits(f), "No review in this ledger was answered: no waiting times."),
            "<h3>Timeline</h3>",
            _figure_block(_plot_timeline(f), "No alerts or controls in this ledger."),
            "<h3>Coordination</h3>",
            _coordination_summary(f),
            _figure_block(_plot_coordination([f], "coordination"), "No agent sent a message in this ledger."),
        ]
    )


def _coordination_summary(f: _Facts) -> str:
    graph = f.coordination
    if graph is None or not (graph.edges or graph.refusals):
        return ""
    undeclared = [e for e in graph.edges if e.declared is False]
    said = [
        f"{sum(e.messages for e in graph.edges):,} messages on {len(graph.edges)} channel(s)",
        "under the charter's coordination contract" if graph.contract else "with no coordination contract",
    ]
    if undeclared:
        said.append(f"{len(undeclared)} channel(s) it does not declare")
    refused = sum(graph.refusals.values())
    if refused:
        said.append(f"{refused:,} message(s) refused")
    return f"<p>{_e(', '.join(said))} (<code>answerable coordination</code> lists them).</p>"


def _waits_summary(f: _Facts) -> str:
    waits = sorted(w for w in (r.waited_s for r in f.reviewed) if w is not None)
    if not waits:
        return ""
    median = waits[len(waits) // 2]
    return (
        f"<p>{len(waits):,} answered; waiting time median {median:,.1f} s, "
        f"longest {waits[-1]:,.1f} s (times as the ledger recorded them).</p>"
    )


def _reviews_section(f: _Facts) -> str:
    head = "<h2 id=reviews>Decisions that went to review</h2>"
    if not f.reviewed:
        return head + _none("No decision in this ledger went to review.")
    rows: list[tuple[str, ...]] = []
    for r in f.reviewed:
        a, i = r.approval, r.intent
        verdict = a.verdict if a else "pending"
        waited = r.waited_s
        rows.append(
            (
                f"<code>{_e(r.review.at)}</code>",
                _e(r.review.operation),
                _e(i.agent) if i else '<span class="muted">?</span>',
                _value(i.arguments) if i else _e(r.review.intent_id),
                "<br>".join(_e(x) for x in r.review.reasons),
                "<br>".join(f"<code>{_e(p)}</code>" for p in r.review.policy_ids),
                f'<span class="{verdict}">{_e(verdict)}</span>',
                _e(a.by) if a else "",
                _e(a.reason) if a else "",
                "" if waited is None else f"{waited:,.1f} s",
            )
        )
    return "\n".join(
        [
            head,
            f"<p>{len(f.reviewed):,} review(s), "
            f"{sum(1 for r in f.reviewed if r.approval is None):,} without an answer.</p>",
            _table(
                [
                    "sent at",
                    "operation",
                    "agent",
                    "arguments",
                    "why it went to review",
                    "policies",
                    "verdict",
                    "answered by",
                    "their reason",
                    "waited",
                ],
                rows,
                numeric=[9],
            ),
        ]
    )


def _alerts_section(f: _Facts) -> str:
    parts = ["<h2 id=alerts>Alerts</h2>"]
    rows: list[tuple[str, ...]]
    if f.alerts:
        rows = []
        for a in f.alerts:
            fields = "".join(
                f"<dt>{_e(k)}</dt><dd>{_value(v)}</dd>"
                for k, v in sorted(a.items())
                if k not in ("id", "at", "kind")
            )
            rows.append(
                (
                    f"<code>{_e(a.get('id', ''))}</code>",
                    f"<code>{_e(a.get('at', ''))}</code>",
                    f"<dl>{fields}</dl>",
                )
            )
        parts.append(_table(["id", "at", "fields"], rows))
    else:
        parts.append(_none("No Alert entries in this ledger."))
    parts.append("<h3>Alerts from outside (external events of type <code>*.alert</code>)</h3>")
    if f.outside_alerts:
        rows = [
            (
                f"<code>{_e(e.at)}</code>",
                _e(e.source),
                _e(e.type),
                "<dl>"
                + "".join(f"<dt>{_e(k)}</dt><dd>{_value(v)}</dd>" for k, v in sorted(e.payload.items()))
                + "</dl>",
            )
            for e in f.outside_alerts
        ]
        parts.append(_table(["at", "source", "type", "payload"], rows))
    else:
        parts.append(_none("No external alerts in this ledger."))
    parts.append("<h3>Controls (halt, pause, resume)</h3>")
    if f.controls:
        rows = [
            (
                f"<code>{_e(c.at)}</code>",
                _e(c.action),
                _e(c.scope.label()),
                _e(c.by),
                _e(c.reason),
                "signed" if c.signature else "",
            )
            for c in f.controls
        ]
        parts.append(_table(["at", "action", "scope", "by", "reason", "signature"], rows))
    else:
        parts.append(_none("No halt, pause or resume in this ledger."))
    return "\n".join(parts)


def _entries_section(f: _Facts) -> str:
    parts = ["<h2 id=entries>Entries</h2>"]
    parts.append(
        _table(["kind", "entries"], [(_e(k), f"{n:,}") for k, n in sorted(f.kinds.items())], numeric=[1])
    )
    if f.event_types:
        rows = [(_e(t), _e(s), f"{n:,}") for (t, s), n in sorted(f.event_types.items())]
        parts.append("<h3>External events by type</h3>")
        parts.append(_table(["type", "source", "events"], rows, numeric=[2]))
    if f.undecodable:
        rows = [(str(i), _e(k), _e(why)) for i, k, why in f.undecodable]
        parts.append("<h3>Entries that could not be decoded</h3>")
        parts.append(_table(["index", "kind", "why"], rows, numeric=[0]))
    return "\n".join(parts)


def _checkpoint_section(f: _Facts) -> str:
    ledger = shlex.quote(f.where)
    parts = ["<h2 id=checkpoint>Checkpoint and verification</h2>"]
    if f.checkpoint is None:
        parts.append(_none("The ledger holds no stored checkpoint. Sign one (this writes to the ledger):"))
        parts.append(f"<pre>answerable ledger checkpoint {_e(ledger)} --out checkpoint.txt</pre>")
    else:
        lines = f.checkpoint.splitlines()
        size = lines[1] if len(lines) > 1 else "?"
        covered = (
            "it covers the whole ledger"
            if size == str(f.size)
            else f"{f.size:,} entries now, so entries after {_e(size)} are not covered by it"
        )
        parts.append(
            f"<p>Latest stored checkpoint, signed by the ledger's key: size {_e(size)} ({covered}).</p>"
        )
        parts.append(f"<pre>{_e(f.checkpoint)}</pre>")
        data = base64.b64encode(f.checkpoint.encode()).decode("ascii")
        parts.append(
            f'<p>Save it as <a download="checkpoint.txt" href="data:text/plain;base64,{data}">'
            "<code>checkpoint.txt</code></a> (keep it outside the ledger's folder), then at any "
            "later time prove the ledger still holds exactly these entries, nothing rewritten, "
            "truncated or rolled back:</p>"
        )
    parts.append(f"<pre>answerable verify {_e(ledger)} --checkpoint checkpoint.txt</pre>")
    parts.append(
        _table(
            ["", ""],
            [
                ("verifier key", f"<code>{_e(f.verifier)}</code>"),
                ("entries now", f"{f.size:,}"),
                ("root now (base64)", f"<code>{_e(f.root)}</code>"),
            ],
        )
    )
    return "\n".join(parts)


def _conclusion(f: _Facts) -> str:
    """The page in one paragraph: who answers for what ran, how service went against the
    baseline run, what it cost, what people were asked and what stopped the system."""
    o = f.outcome()
    said: list[str] = []
    executed, attributed = o.get("actions_executed"), o.get("actions_attributed")
    if isinstance(executed, int):
        if not executed:
            said.append("No action was executed")
        elif attributed == executed and f.ri:
            said.append(f"{executed:,} actions executed, all attributed to the RI {_e(f.ri)}")
        elif attributed and f.ri:
            said.append(
                f"{executed:,} actions executed, {attributed:,} of them attributed to the RI {_e(f.ri)}"
            )
        else:
            why = ": the ledger has no charter, so nobody answers for them" if f.ri is None else ""
            said.append(f"{executed:,} actions executed, none attributed to anyone{why}")
    base_name, base = f.baseline if f.baseline is not None else ("", {})
    rates = []
    for key in (k for k in o if k.endswith("_on_time_rate") and isinstance(o[k], int | float)):
        than = f" against {base[key]:.3f} {_e(base_name)}" if isinstance(base.get(key), int | float) else ""
        rates.append(f"{_e(key.removesuffix('_on_time_rate'))} {o[key]:.3f}{than}")
    if rates:
        said.append("on time: " + ", ".join(rates))
    changes = [
        f"{_e(_plain(k.removesuffix('_change_pct')))} {o[k]:+.2f}%"
        for k in o
        if k.endswith("_change_pct") and isinstance(o[k], int | float)
    ]
    if changes and base_name:
        said.append(", ".join(changes) + f" against {_e(base_name)}")
    reviews = len(f.reviewed)
    if reviews:
        answered = [r for r in f.reviewed if r.approval is not None]
        approved = sum(1 for r in answered if r.approval is not None and r.approval.verdict == "approve")
        who = ""
        if answered and f.simulated_answers == len(answered):
            who = ", every answer by a simulated reviewer, marked so in the ledger"
        elif f.simulated_answers:
            who = f", {f.simulated_answers:,} of the answers by simulated reviewers"
        said.append(
            f"{reviews:,} decision{'s' if reviews != 1 else ''} went to review ({approved:,} approved, "
            f"{len(answered) - approved:,} denied, {reviews - len(answered):,} unanswered{who})"
        )
    if f.alerts:
        said.append(f"{len(f.alerts):,} monitor alert(s), the first at {_e(f.alerts[0].get('at'))}")
    stops = Counter(c.action for c in f.controls)
    if stops:
        said.append(", ".join(f"{n:,} {action}(s)" for action, n in sorted(stops.items())))
    if not said:
        return ""
    return f'<p class="conclusion">{"; ".join(said)}.</p>'


def _plain(key: str) -> str:
    return key.replace("_", " ")


def _summary(f: _Facts) -> str:
    span = (
        f"{_e(f.first_at)} – {_e(f.last_at)}"
        if f.first_at is not None
        else '<span class="muted">no entries</span>'
    )
    return "\n".join(
        [
            f"<h1>Incident report: {_e(f.label)}</h1>",
            _conclusion(f),
            "<dl>",
            f"<dt>ledger</dt><dd><code>{_e(f.where)}</code></dd>",
            f"<dt>origin</dt><dd><code>{_e(f.origin)}</code></dd>",
            f"<dt>entries</dt><dd>{f.size:,}</dd>",
            f"<dt>recorded</dt><dd>{span} (UTC, from the ledger)</dd>",
            "</dl>",
            '<p class="muted">Computed from the ledger alone; rendering does not write to it. '
            '<a href="#outcome">outcome</a> · <a href="#plots">plots</a> · '
            '<a href="#reviews">reviews</a> · <a href="#alerts">alerts</a> · '
            '<a href="#entries">entries</a> · <a href="#checkpoint">checkpoint</a></p>',
        ]
    )


# --- public API ---------------------------------------------------------------------------------


def render(ledger_path: str | Path, *, shown_as: str | None = None) -> str:
    """The incident report of one ledger, as one self-contained HTML page; ``shown_as`` names the
    ledger on it instead of its path (the console's readers are not the server's operators).

    Raises:
        NotALedger: the path is not an answerable ledger.
        ConfigError: matplotlib is not installed.
    """
    f = _gather(ledger_path, shown_as)
    return _page(
        f"Incident report: {f.label}",
        [
            _summary(f),
            _outcome_section(f),
            _plots_section(f),
            _reviews_section(f),
            _alerts_section(f),
            _entries_section(f),
            _checkpoint_section(f),
        ],
    )


def write(ledger_path: str | Path, out: Path) -> Path:
    """Render the report of ``ledger_path`` and write it to ``out``; return ``out``.

    Raises:
        NotALedger: the path is not an answerable ledger.
        ConfigError: matplotlib is not installed, or ``out`` cannot be written.
    """
    out = Path(out)
    _write(out, render(ledger_path))
    return out


def _write(out: Path, text: str) -> None:
    """Write a page whole, creating its directory; a path that cannot be written is the caller's
    to fix, and one that is a ledger, the key or log beside one, or a private key is refused:
    a report aimed at its own ledger would have replaced the evidence it reports on."""
    from answerable._files import never_written_over, written_whole

    problem = never_written_over(out)
    if problem is not None:
        raise ConfigError(f"the report's path {problem}; a report is never written over a ledger or a key")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with written_whole(out) as page:
            page.write(text.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {out}: {exc.strerror or exc}") from exc


def compare(paths: list[Path], out: Path) -> Path:
    """Write a page comparing runs: their outcome tables side by side, on-time rates overlaid,
    and how their agents coordinated, day by day, side by side.

    Each run links to its own report when one sits beside its ledger (``LEDGER`` with ``.html``).

    Raises:
        NotALedger: a path is not an answerable ledger.
        ConfigError: matplotlib is not installed, or ``out`` cannot be written.
    """
    out = Path(out)
    try:
        folder = out.resolve().parent
    except RuntimeError as exc:  # a symlink loop: Python 3.11 raises this, not OSError
        raise ConfigError(f"cannot write the comparison to {out}: {exc}") from exc
    _write(out, render_compare(paths, links_from=folder))
    return out


def render_compare(
    paths: list[Path], *, links_from: Path | None = None, shown_as: Sequence[str] | None = None
) -> str:
    """The comparison page of ``paths`` as one self-contained HTML page; with ``links_from``,
    each run links to its own report found beside its ledger, relative to that folder.
    ``shown_as``: a name for each ledger on the page instead of its path.

    Raises:
        NotALedger: a path is not an answerable ledger.
        ConfigError: matplotlib is not installed.
    """
    names_shown = list(shown_as) if shown_as is not None else [None] * len(paths)
    if len(names_shown) != len(paths):
        raise ConfigError(f"render_compare: {len(paths)} ledgers, {len(names_shown)} names for them")
    runs = [_gather(Path(p), shown) for p, shown in zip(paths, names_shown, strict=True)]
    labels = _unique_labels(runs)
    outcomes = [r.outcome() for r in runs]
    names = _metric_names(outcomes)
    head = ["metric", *labels]
    cents = frozenset().union(*(r.cents for r in runs))
    rows = [(_label(m), *(_cell(m, o.get(m), cents) for o in outcomes)) for m in names]
    links = []
    for label, r in zip(labels, runs, strict=True):
        report = r.path.with_suffix(".html")
        source = "result.json" if r.result is not None else "the ledger"
        if links_from is not None and report.exists():
            href = Path(os.path.relpath(report.resolve(), links_from)).as_posix()
            what = f'<a href="{_e(href)}">{_e(label)}</a>'
        else:
            what = _e(label)
        links.append(
            f"<li>{what}: <code>{_e(r.where)}</code>, {r.size:,} entries, figures from {_e(source)}</li>"
        )
    svg = _plot_on_time(runs, "compare-on-time")
    body = [
        "<h1>Comparison of runs</h1>",
        "<ul>" + "".join(links) + "</ul>",
        "<h2>Outcome</h2>",
        _table(head, rows, numeric=range(1, len(head))),
        '<p class="muted">Money is in whole currency units.</p>',
        "<h2>On-time rates</h2>",
        _figure_block(svg, "No installed plugin reads these ledgers' outside events as service."),
        "<h2>Coordination</h2>",
        _figure_block(
            _plot_coordination(runs, "compare-coordination"), "No agent sent a message in these ledgers."
        ),
    ]
    return _page("Comparison of runs: " + ", ".join(labels), body)


def _unique_labels(runs: Sequence[_Facts]) -> list[str]:
    stems = Counter(r.label for r in runs)
    return [r.label if stems[r.label] == 1 else f"{r.path.parent.name}/{r.label}" for r in runs]
