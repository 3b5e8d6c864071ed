"""On-time service per order class, read from the storm's own events, for the generic report.

The report knows no domain: it asks each installed plugin's ``service_view()`` which outside
events say whether service was on time. Here that is the logistics world's ``orders.batch`` and
``delivery`` events, and the classes are named by the customer id prefix (H: hospitals, S: stores).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from answerable.logistics.agents import TRANSFER_CENTS_PER_UNIT
from answerable.logistics.scenario import partner_records_path
from answerable.logistics.world import HANDLING_CENTS_PER_UNIT, SKU, TIME_CRITICAL_PENALTY

__all__ = ["OrderService", "service_view"]

_CLASSES = {"H": "medical", "S": "retail"}
"""Customer id prefix to order class, as the logistics world names its customers."""


class OrderService:
    """Collects order batches and deliveries as the report meets them, then judges on-time."""

    event_types = frozenset({"orders.batch", "delivery", "orders.time_critical", "stock.cover"})
    classes = tuple(_CLASSES.values())
    counted = "orders"

    def __init__(self) -> None:
        self._batches: list[tuple[str, dict[str, Any]]] = []
        self._deliveries: list[dict[str, Any]] = []
        self._critical: set[str] = set()
        self._cover: dict[int, dict[str, int]] = {}

    def observe(self, event_type: str, date: str, payload: dict[str, Any]) -> None:
        if event_type == "orders.batch":
            self._batches.append((date, payload))
        elif event_type == "delivery":
            self._deliveries.append(payload)
        elif event_type == "orders.time_critical":
            self._critical.update(str(o) for o in payload.get("orders") or ())
        elif event_type == "stock.cover":
            cover, day = payload.get("cover_days"), payload.get("day")
            if isinstance(cover, dict) and isinstance(day, int):
                self._cover.setdefault(day, {}).update(
                    {str(h): n for h, n in cover.items() if isinstance(n, int)}
                )

    def result(self) -> tuple[dict[str, dict[str, tuple[int, int]]], dict[str, tuple[int, int]]]:
        return _service(self._batches, self._deliveries)

    def figures(self, ledger_path: Path | None) -> dict[str, int | float]:
        """The run's money and service, recomputed: margin, lateness penalties and time-critical
        service from the ledger's order, report and delivery events; costs and postponements
        from the partners' own records beside the ledger (when there)."""
        out = _margin_and_penalties(self._batches, self._deliveries, self._critical)
        out["hospital_stockout_days"] = _stockouts(self._cover, self._deliveries)
        if ledger_path is None:
            return out  # a ledger in PostgreSQL: no partners' records lie beside it
        partners = partner_records_path(ledger_path)
        try:
            lines = partners.read_text(encoding="utf-8").splitlines()
        except OSError:
            return out
        transport = handling = moving = medical = critical = 0
        for line in lines:
            try:
                record = json.loads(line)
                kind, body, response = record["kind"], record["body"], record["response"]
                if kind == "booking":
                    transport += int(response["cost"])
                elif kind == "dispatch":
                    handling += HANDLING_CENTS_PER_UNIT * sum(int(x["qty"]) for x in body["lines"])
                elif kind == "transfer":
                    moving += TRANSFER_CENTS_PER_UNIT * int(body["qty"])
                elif kind == "promise":
                    customer = str(body["shipment"]).split("@", 1)[0]
                    medical += _class_of(customer) == "medical"
                    critical += bool(self._critical & {str(o) for o in body["orders"]})
            except (ValueError, KeyError, TypeError):
                return out  # not a partners' file this view can read: no costs rather than wrong ones
        out.update(
            total_cost=transport + handling + moving,
            transport_cost_cents=transport,
            handling_cost_cents=handling,
            moving_cost_cents=moving,
            medical_shipments_postponed=medical,
            time_critical_shipments_postponed=critical,
        )
        return out


def service_view() -> OrderService:
    return OrderService()


def _service(
    batches: Sequence[tuple[str, dict[str, Any]]], deliveries: Sequence[dict[str, Any]]
) -> tuple[dict[str, dict[str, tuple[int, int]]], dict[str, tuple[int, int]]]:
    """On-time orders per class per due day, judged the way the scenario measures them.

    An order is judged once its due day has been run (it is at most the last ordering day); it
    is on time if a delivery on or before its due day carried it. A day is named by the date of
    that day's order batch. Without order batches, deliveries are counted by their own flags.
    """
    due: dict[str, tuple[str, int]] = {}
    day_dates: dict[int, str] = {}
    for date, batch in batches:
        day = batch.get("day")
        orders = batch.get("orders")
        if not isinstance(day, int) or not isinstance(orders, list):
            continue
        day_dates.setdefault(day, date)
        for row in orders:
            if isinstance(row, list) and len(row) >= 5 and isinstance(row[4], int):
                due[str(row[0])] = (_class_of(str(row[1])), row[4])
    delivered = _first_delivery(deliveries)
    flagged: dict[tuple[str, int], list[bool]] = defaultdict(list)
    for d in deliveries:
        day = d.get("day")
        orders = d.get("orders")
        flags = d.get("on_time")
        if not isinstance(day, int) or not isinstance(orders, list) or not isinstance(flags, list):
            continue
        for flag in flags[: len(orders)]:
            flagged[(_class_of(str(d.get("customer", ""))), day)].append(bool(flag))
    per_day: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    if due:
        last = max(day_dates)
        for order, (cls, due_day) in due.items():
            if due_day > last:
                continue
            cell = per_day[cls][day_dates.get(due_day, f"day {due_day}")]
            got = delivered.get(order)
            cell[0] += got is not None and got <= due_day
            cell[1] += 1
    else:
        for (cls, day), values in flagged.items():
            cell = per_day[cls][f"day {day}"]
            cell[0] += sum(values)
            cell[1] += len(values)
    table = {cls: {day: (c[0], c[1]) for day, c in sorted(days.items())} for cls, days in per_day.items()}
    totals = {
        cls: (sum(c[0] for c in days.values()), sum(c[1] for c in days.values()))
        for cls, days in table.items()
    }
    return dict(sorted(table.items(), key=lambda kv: _class_rank(kv[0]))), totals


def _margin_and_penalties(
    batches: Sequence[tuple[str, dict[str, Any]]], deliveries: Sequence[dict[str, Any]], critical: set[str]
) -> dict[str, int | float]:
    """Margin of every order delivered, penalties for every order judged late (due by the last
    day run; late days to its delivery, or to the end of the run), and how the time-critical
    lines fared, as the scenario measures them."""
    orders: dict[str, tuple[str, int, int]] = {}
    last = -1
    for _date, batch in batches:
        day = batch.get("day")
        if isinstance(day, int):
            last = max(last, day)
        for row in batch.get("orders") or []:
            if isinstance(row, list) and len(row) >= 5 and row[2] in SKU:
                orders[str(row[0])] = (str(row[2]), int(row[3]), int(row[4]))
    delivered = _first_delivery(deliveries)
    margin = penalties = critical_judged = critical_on_time = 0
    for order, (sku, qty, due) in orders.items():
        got = delivered.get(order)
        if got is not None:
            margin += SKU[sku].margin * qty
        if due <= last:
            late = (got if got is not None else last + 1) - due
            penalty = TIME_CRITICAL_PENALTY if order in critical else SKU[sku].penalty
            if late > 0:
                penalties += late * qty * penalty
            if order in critical:
                critical_judged += 1
                critical_on_time += late <= 0
    return {
        "penalties": penalties,
        "margin": margin,
        "time_critical_orders": critical_judged,
        "time_critical_on_time_rate": round(critical_on_time / critical_judged, 4)
        if critical_judged
        else 1.0,
    }


def _first_delivery(deliveries: Sequence[dict[str, Any]]) -> dict[str, int]:
    """The first day each order was delivered, from the carrier's delivery events."""
    delivered: dict[str, int] = {}
    for d in deliveries:
        day, orders = d.get("day"), d.get("orders")
        if isinstance(day, int) and isinstance(orders, list):
            for order in orders:
                delivered[str(order)] = min(day, delivered.get(str(order), day))
    return delivered


def _stockouts(cover: dict[int, dict[str, int]], deliveries: Sequence[dict[str, Any]]) -> int:
    """Hospital mornings with no stock left, recomputed from the deliveries, not read off the
    reports: each hospital's full cover is what it reported on the first morning (nothing used
    yet), and each day without a delivery uses one up, as the world's stated model says."""
    if not cover:
        return 0
    first = min(cover)
    full = cover[first]
    served: dict[str, set[int]] = {}
    for d in deliveries:
        if isinstance(d.get("day"), int):
            served.setdefault(str(d.get("customer")), set()).add(d["day"])
    out = 0
    for day in sorted(cover):
        for hospital, stock in full.items():
            last = max((x for x in served.get(hospital, ()) if x < day), default=first - 1)
            out += max(0, stock - (day - last - 1)) == 0
    return out


def _class_of(customer: str) -> str:
    return _CLASSES.get(customer.split("-", 1)[0], "other")


def _class_rank(cls: str) -> tuple[int, str]:
    ranks = list(_CLASSES.values())
    return (ranks.index(cls) if cls in ranks else len(ranks), cls)
