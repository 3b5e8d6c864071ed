"""The coordination that actually happened, read from a ledger: who told whom what, and what came of it.

The contract says how agents may talk; this says how they did. One edge per (sender, topic,
type), so every message counts in exactly one edge; its receivers are the agents the message
named, the channel's subscribers in the contract in force when it was sent, and any agent whose
own records cite it (they acted on it). An edge's ``caused_intents`` are the intents that cite
one of its messages directly, and ``caused_executions`` the executions of those intents.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from answerable.charter import CharterHistory
from answerable.clock import parse_rfc3339
from answerable.contract import ContractCheck
from answerable.ledger.base import LedgerStore
from answerable.records import Coordination

__all__ = ["Edge", "Observed", "observe", "to_dot"]

_READ = frozenset({"Message", "Intent", "Execution", "Refusal", "SystemCharter"})


@dataclass
class Edge:
    """Messages of one (sender, topic, type)."""

    sender: str
    topic: str
    type: str
    receivers: set[str] = field(default_factory=set)
    messages: int = 0
    caused_intents: int = 0
    caused_executions: int = 0
    first: str = ""
    last: str = ""
    declared: bool | None = None
    """Whether the contract in force declared it when its last message was sent; None: no contract."""
    days: Counter[str] = field(default_factory=Counter)
    """Messages per UTC day (``YYYY-MM-DD``), to see coordination change over a run."""

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.sender,
            "to": sorted(self.receivers),
            "topic": self.topic,
            "type": self.type,
            "messages": self.messages,
            "caused_intents": self.caused_intents,
            "caused_executions": self.caused_executions,
            "first": self.first,
            "last": self.last,
        }


@dataclass
class Observed:
    """The observed coordination graph of a ledger, within a time range."""

    agents: list[str]
    edges: list[Edge]
    refusals: dict[tuple[str, str, str, str], int]
    """(sender, topic, type, reason code) -> refused messages."""
    refused_days: dict[tuple[str, str, str], Counter[str]]
    """(sender, topic, type) -> refused messages per UTC day."""
    contract: bool
    """Whether any charter in the range declared a contract."""

    def as_json(self) -> dict[str, Any]:
        return {
            "agents": self.agents,
            "edges": [e.as_json() for e in self.edges],
            "undeclared": [
                {"from": e.sender, "topic": e.topic, "type": e.type, "messages": e.messages}
                for e in self.edges
                if e.declared is False
            ],
            "refused": sum(self.refusals.values()),
            "refusals": [
                {"from": s, "topic": t, "type": y, "reason_code": r, "messages": n}
                for (s, t, y, r), n in sorted(self.refusals.items())
            ],
            "contract": self.contract,
        }


def observe(ledger: LedgerStore, *, since: int | None = None, until: int | None = None) -> Observed:
    """Read the ledger once and build the observed graph of messages sent in [since, until]
    (nanoseconds since the epoch; None: unbounded). Refusals count in the same range."""
    charters = CharterHistory()
    edges: dict[tuple[str, str, str], Edge] = {}
    edge_of: dict[str, tuple[str, str, str]] = {}
    intents_of: dict[str, set[tuple[str, str, str]]] = {}
    refusals: dict[tuple[str, str, str, str], int] = defaultdict(int)
    refused_days: dict[tuple[str, str, str], Counter[str]] = {}
    checks: dict[int, ContractCheck] = {}
    agents: set[str] = set()
    contract_seen = False

    def within(at: str) -> bool:
        if since is None and until is None:
            return True
        try:
            ns = parse_rfc3339(at)
        except ValueError:
            return False
        return (since is None or ns >= since) and (until is None or ns <= until)

    for index, entry in _entries(ledger):
        kind = entry.get("kind")
        if kind == "SystemCharter":
            charters.advance(ledger)
            agents.update(a["name"] for a in entry.get("agents", ()) if isinstance(a, dict))
            continue
        at = str(entry.get("at", ""))
        causes = entry.get("causes") or ()
        if kind == "Message":
            for cause in causes:  # an agent that acted on a message received it
                if cause in edge_of:
                    edges[edge_of[cause]].receivers.add(str(entry["sender"]))
            if not within(at):
                continue
            key = (str(entry["sender"]), str(entry["topic"]), str(entry["type"]))
            edge = edges.get(key) or edges.setdefault(key, Edge(*key, first=at))
            edge.messages += 1
            edge.days[at[:10]] += 1
            edge.last = at
            edge.receivers.update(str(r) for r in entry.get("recipients") or ())
            contract = _contract_at(charters, index)
            if contract is not None:
                contract_seen = True
                check = checks.get(id(contract))
                if check is None:
                    check = checks[id(contract)] = ContractCheck(contract)
                edge.declared = check.declares(*key)
                if not entry.get("recipients"):
                    edge.receivers.update(check.subscribers(key[1]))
            edge_of[str(entry["id"])] = key
            agents.add(key[0])
        elif kind == "Intent":
            cited = {edge_of[c] for c in causes if c in edge_of}
            for key in cited:
                edges[key].caused_intents += 1
                edges[key].receivers.add(str(entry["agent"]))
            if cited:
                intents_of[str(entry["id"])] = cited
        elif kind == "Execution":
            for key in intents_of.get(str(entry.get("intent_id")), ()):
                edges[key].caused_executions += 1
        elif kind == "Refusal" and entry.get("channel") == "bus" and within(at):
            tried = (str(entry["claimed"]), str(entry["topic"]), str(entry["type"]))
            refusals[(*tried, str(entry["reason_code"]))] += 1
            refused_days.setdefault(tried, Counter())[at[:10]] += 1
    latest = charters.latest()
    if latest is not None:
        contract_seen = contract_seen or latest.coordination is not None
    ordered = sorted(edges.values(), key=lambda e: (e.first, e.sender, e.topic, e.type))
    return Observed(sorted(agents), ordered, dict(refusals), refused_days, contract_seen)


def _contract_at(charters: CharterHistory, index: int) -> Coordination | None:
    charter = charters.in_force_at(index)
    return charter.coordination if charter is not None else None


_NEEDS = {
    "Message": ("id", "at", "sender", "topic", "type"),
    "Intent": ("id", "at", "agent"),
    "Execution": ("intent_id",),
    "Refusal": ("at", "claimed", "channel", "reason_code"),
    "SystemCharter": (),
}
"""The string fields each kind must have to be read; a malformed entry is skipped, not a crash
(``answerable verify`` is what says a ledger was tampered with)."""


def _entries(ledger: LedgerStore) -> Iterator[tuple[int, dict[str, Any]]]:
    """The entries a graph needs, decoded, in ledger order; the rest are not even parsed."""
    size = ledger.size()
    for start in range(0, size, 2048):
        for stored in ledger.entries(start, min(size, start + 2048)):
            if stored.kind not in _READ:
                continue
            try:
                entry = orjson.loads(stored.data)
            except orjson.JSONDecodeError:
                continue
            if _readable(stored.kind, entry):
                yield stored.index, entry


def _readable(kind: str, entry: object) -> bool:
    if not isinstance(entry, dict) or not all(isinstance(entry.get(f), str) for f in _NEEDS[kind]):
        return False
    bus = kind == "Refusal" and entry.get("channel") == "bus"
    return not bus or (isinstance(entry.get("topic"), str) and isinstance(entry.get("type"), str))


def to_dot(graph: Observed) -> str:
    """Graphviz DOT: an arrow per (edge, receiver), labelled with its topic, type and count;
    undeclared edges dashed red, refused attempts dotted grey."""
    lines = ["digraph coordination {", "  rankdir=LR;", "  node [shape=box];"]
    for agent in graph.agents:
        lines.append(f"  {_q(agent)};")
    for edge in graph.edges:
        style = ' color="red" style="dashed"' if edge.declared is False else ""
        label = f"{edge.topic} / {edge.type} ({edge.messages})"
        for receiver in sorted(edge.receivers) or ["?"]:
            lines.append(f"  {_q(edge.sender)} -> {_q(receiver)} [label={_q(label)}{style}];")
    for (sender, topic, type_, code), count in sorted(graph.refusals.items()):
        label = f"refused: {topic} / {type_} ({count}, {code})"
        lines.append(f'  {_q(sender)} -> {_q("refused")} [label={_q(label)} color="grey" style="dotted"];')
    if graph.refusals:
        lines.append('  "refused" [shape=octagon color="grey"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
