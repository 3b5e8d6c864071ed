"""What the console's read routes show, made from the ledger: reviews, entries, why() graphs, rules.

Pure functions over a ledger and a gateway; the routes in :mod:`answerable.console.api` call
them off the event loop and turn them into JSON.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from answerable.clock import parse_rfc3339
from answerable.ledger.base import LedgerStore
from answerable.provenance import Provenance
from answerable.records import RulesetVersion, SystemCharter, decode_as
from answerable.review import ReviewState

__all__ = ["LAYOUT_ABOVE", "EntryFilter", "entries_page", "review_doc", "rules_history", "why_doc"]

LAYOUT_ABOVE = 300
"""A why() graph with more nodes than this is laid out on the server."""

_SCAN_LIMIT = 50_000
"""Entries one listing request reads at most; the rest are a ``next_before`` away."""


def review_doc(state: ReviewState, charter: SystemCharter, identity: str, has_key: bool) -> dict[str, Any]:
    """A review as ``/v1/reviews`` gives it, with what the console shows and whether
    ``identity`` (holding a key or not) may answer it now."""
    doc = state.to_json()
    review, now = state.review, state.now
    if state.status in ("open", "reopened"):
        if review.expires_at is not None and review.expires_at <= now:
            status = "expired"  # closing it is the next tick's; it can no longer be answered
        elif review.deadline is not None and review.deadline <= now:
            status = "past_deadline"
        else:
            status = "open"
    else:
        status = "expired" if state.status == "expired" else "settled"
    assignee = state.assignee
    order = review.assignees
    position = order.index(assignee) if assignee in order else -1
    person = charter.person(identity)
    may = (
        person is not None
        and bool({"reviewer", "ri"} & set(person.roles))
        and not (charter.separation_of_duties and state.intent.on_behalf_of == identity)
        and not any(a.by == identity for a in state.approvals)
    )
    doc.update(
        {
            "operation": review.operation,
            "arguments": state.intent.arguments,
            "policy_ids": list(review.policy_ids),
            "reason": "; ".join(review.reasons),
            "deadline": review.deadline,
            "escalates_to": order[position + 1] if 0 <= position < len(order) - 1 else None,
            "intent_id": state.intent.id,
            "status": status,
            "can_answer": bool(may and has_key and status in ("open", "past_deadline")),
        }
    )
    return doc


class EntryFilter:
    """What an entries listing keeps: kind, agent (or sender, or person), operation, time range."""

    def __init__(
        self,
        kind: str | None,
        agent: str | None,
        operation: str | None,
        since: int | None,
        until: int | None,
    ) -> None:
        self.kind, self.agent, self.operation = kind, agent, operation
        self.since, self.until = since, until

    def keeps(self, kind: str, record: dict[str, Any]) -> bool:
        if self.kind is not None and kind != self.kind:
            return False
        if self.agent is not None and self.agent not in (
            record.get("agent"),
            record.get("sender"),
            record.get("by"),
            record.get("claimed"),
        ):
            return False
        if self.operation is not None and record.get("operation") != self.operation:
            return False
        if self.since is not None or self.until is not None:
            try:
                at = parse_rfc3339(str(record.get("at", "")))
            except ValueError:
                return False
            if (self.since is not None and at < self.since) or (self.until is not None and at > self.until):
                return False
        return True


def entries_page(ledger: LedgerStore, keep: EntryFilter, *, before: int | None, limit: int) -> dict[str, Any]:
    """Entries newest first, from just before index ``before``; ``next_before`` pages on (None:
    nothing older is left)."""
    stop = ledger.size() if before is None else min(before, ledger.size())
    found: list[dict[str, Any]] = []
    scanned = 0
    cursor = stop
    while cursor > 0 and len(found) < limit and scanned < _SCAN_LIMIT:
        start = max(0, cursor - 512)
        for stored in reversed(ledger.entries(start, cursor)):
            cursor = stored.index
            scanned += 1
            try:
                record = orjson.loads(stored.data)
            except orjson.JSONDecodeError:
                record = {}
            if not isinstance(record, dict):
                record = {}
            if keep.keeps(stored.kind, record):
                found.append(
                    {
                        "index": stored.index,
                        "id": stored.id,
                        "kind": stored.kind,
                        "at": record.get("at"),
                        "agent": record.get("agent") or record.get("sender") or record.get("by"),
                        "operation": record.get("operation"),
                        "summary": summary(stored.kind, record),
                    }
                )
                if len(found) >= limit:
                    break
        else:
            cursor = start
    return {"entries": found, "next_before": cursor if cursor > 0 else None}


def summary(kind: str, record: dict[str, Any]) -> str:
    """One short line about an entry."""
    parts = [kind]
    for field in ("action", "operation", "effect", "verdict", "status", "topic", "type", "monitor"):
        value = record.get(field)
        if isinstance(value, str):
            parts.append(value)
    scope = record.get("scope")
    if isinstance(scope, dict) and scope.get("kind"):
        parts.append(f"on {scope['kind']}{':' + str(scope['value']) if scope.get('value') else ''}")
    for field, word in (("agent", "by"), ("sender", "from"), ("by", "by"), ("claimed", "claimed")):
        value = record.get(field)
        if isinstance(value, str):
            parts.append(f"{word} {value}")
            break
    line = " ".join(parts)
    return line if len(line) <= 160 else line[:159] + "…"


def why_doc(graph: Provenance) -> dict[str, Any]:
    """The graph as nodes and edges, laid out in layers by distance from the entry asked about
    when it has more than :data:`LAYOUT_ABOVE` nodes (a browser lays out the smaller ones)."""
    nodes = [{"id": n.id, "kind": n.kind, "label": n.summary} for n in graph.nodes]
    edges = [{"from": e.source, "to": e.target, "relation": e.relation} for e in graph.edges]
    layout: dict[str, dict[str, int]] | None = None
    if len(nodes) > LAYOUT_ABOVE:
        depth = {graph.root: 0}
        out: dict[str, list[str]] = defaultdict(list)
        for e in graph.edges:
            out[e.source].append(e.target)
        frontier = [graph.root]
        while frontier:  # breadth first: each node in the layer of its shortest path from the root
            following = []
            for node in frontier:
                for target in out[node]:
                    if target not in depth:
                        depth[target] = depth[node] + 1
                        following.append(target)
            frontier = following
        deepest = max(depth.values(), default=0)
        placed: dict[int, int] = defaultdict(int)
        layout = {}
        for n in graph.nodes:
            layer = depth.get(n.id, deepest + 1)  # unreachable (a truncated walk): one layer below
            layout[n.id] = {"x": placed[layer] * 200, "y": layer * 100}
            placed[layer] += 1
    return {
        "root": graph.root,
        "nodes": nodes,
        "edges": edges,
        "layout": layout,
        "accountable": graph.accountable.to_json(),
        "truncated": graph.truncated,
    }


def rules_history(ledger: LedgerStore) -> list[tuple[RulesetVersion, str, int]]:
    """Every RulesetVersion the ledger records, in ledger order, with its entry id and index."""
    found = []
    for stored in ledger.of_kind("RulesetVersion"):
        record = decode_as(stored.data, RulesetVersion)
        if record is not None:
            found.append((record, stored.id, stored.index))
    return found
