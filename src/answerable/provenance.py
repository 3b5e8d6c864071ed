"""Provenance: why an entry is in the ledger, and who answers for it.

:func:`why` walks ``causes`` backwards from one entry (edge ``caused_by``), adding the links that
are not causes but matter for accountability: a Decision's ruleset (``under_ruleset``) and the
policies that decided it (``decided_by``, pseudo-nodes ``policy:<id>``), the Approval that answered
a Review (``answered_by``). Every read is a lookup by id or by cited id, both indexed, so the cost
grows with the size of the answer, not of the ledger.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from answerable.charter import CharterHistory
from answerable.errors import ConfigError, EntryNotFound, LedgerTampered, RecordInvalid
from answerable.ledger.base import LedgerStore, StoredEntry
from answerable.records import (
    Approval,
    Control,
    Decision,
    Execution,
    ExternalEvent,
    Intent,
    Message,
    Record,
    Review,
    RulesetVersion,
    SystemCharter,
    decode_entry,
)

__all__ = ["DEFAULT_MAX_NODES", "Accountable", "Edge", "Node", "Provenance", "why"]

DEFAULT_MAX_NODES = 10_000
"""Enough for any single action of a real run; a guard against walking a whole day's ledger."""

Relation = Literal["caused_by", "under_ruleset", "decided_by", "answered_by"]
_SUMMARY_MAX = 120


@dataclass(frozen=True, slots=True)
class Node:
    """One entry reached by the walk, a policy it names (kind ``Policy``), or a cited id the ledger
    lacks (kind ``Missing``)."""

    id: str
    kind: str
    summary: str
    """One short human line, e.g. ``Intent billing.invoice by billing-bot``."""


@dataclass(frozen=True, slots=True)
class Edge:
    """``source`` was derived from, decided under, or answered by ``target``."""

    source: str
    target: str
    relation: Relation


@dataclass(frozen=True, slots=True)
class Accountable:
    """Who answers for an entry and through what: the rules they signed, or an approval."""

    ri: str | None
    """The Responsible Individual; None where no charter was in force ("nobody answers")."""
    via: Literal["policy", "approval", "expiry"] | None
    """None when the entry belongs to no decision: the RI answers for the system as a whole."""
    ids: tuple[str, ...] = ()
    """Policy ids, or the approval's entry id."""
    ruleset_version: int | None = None
    ruleset_hash: str | None = None
    approvers: tuple[str, ...] = ()
    """Who signed the approvals, when ``via`` is ``approval``."""
    derived_from: str | None = None
    """The Execution, Decision or Approval this was read from; None for the charter fallback."""

    def to_json(self) -> dict[str, Any]:
        return {
            "ri": self.ri,
            "via": self.via,
            "ids": list(self.ids),
            "ruleset_version": self.ruleset_version,
            "ruleset_hash": self.ruleset_hash,
            "approvers": list(self.approvers),
            "derived_from": self.derived_from,
        }

    def line(self) -> str:
        """One human line: ``ri@x answers via policy routine-bookings (ruleset v1)``."""
        if self.ri is None:
            return "nobody answers: no charter names a Responsible Individual"
        if self.via is None:
            return f"{self.ri} answers for the system (charter); no decision governs this entry"
        what = ", ".join(self.ids) or "no matching policy (default deny)"
        if self.via == "approval" and self.approvers:
            what = f"{what} by {', '.join(self.approvers)}"
        version = f" (ruleset v{self.ruleset_version})" if self.ruleset_version is not None else ""
        return f"{self.ri} answers via {self.via} {what}{version}"


@dataclass(frozen=True, slots=True)
class Provenance:
    """The causal graph of one entry; ``nodes[0]`` is that entry, then nodes in walk order."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    accountable: Accountable
    truncated: bool = False
    """The walk stopped at ``max_nodes``; edges to nodes left out are dropped too."""

    @property
    def root(self) -> str:
        return self.nodes[0].id

    def to_json(self) -> dict[str, Any]:
        """``{"nodes": [{id, kind, summary}], "edges": [{from, to, relation}], "accountable": {...}}``."""
        return {
            "nodes": [{"id": n.id, "kind": n.kind, "summary": n.summary} for n in self.nodes],
            "edges": [{"from": e.source, "to": e.target, "relation": e.relation} for e in self.edges],
            "accountable": self.accountable.to_json(),
        }

    def to_dot(self) -> str:
        """Graphviz text; effects point at their causes, the entry asked about is drawn bold."""
        lines = [
            "digraph provenance {",
            "  rankdir=BT;",
            f"  label={_dot(self.accountable.line())};",
            "  labelloc=t;",
            '  node [shape=box, fontname="Helvetica", fontsize=10];',
            '  edge [fontname="Helvetica", fontsize=9];',
        ]
        for i, n in enumerate(self.nodes):
            style = ', style="bold"' if i == 0 else _STYLE.get(n.kind, "")
            lines.append(f"  {_dot(n.id)} [label={_dot(n.summary + chr(10) + n.id)}{style}];")
        for e in self.edges:
            lines.append(f"  {_dot(e.source)} -> {_dot(e.target)} [label={_dot(e.relation)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"


_STYLE = {
    "Policy": ', shape="note"',
    "Missing": ', style="dashed"',
    "ExternalEvent": ', shape="invhouse"',
    "Approval": ', shape="octagon"',
    "RulesetVersion": ', shape="folder"',
    "SystemCharter": ', shape="folder"',
}


def _dot(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def why(ledger: LedgerStore, entry_id: str, *, max_nodes: int | None = DEFAULT_MAX_NODES) -> Provenance:
    """The causal graph of one entry and who answers for it.

    Args:
        ledger: any ledger backend; only read.
        entry_id: the entry to explain.
        max_nodes: stop adding nodes past this many (``Provenance.truncated`` says so); None for
            no limit.

    Raises:
        EntryNotFound: the ledger holds no entry ``entry_id``.
        ConfigError: ``max_nodes`` is below 1.
        LedgerTampered: an entry on the walk is not JSON.
    """
    if max_nodes is not None and max_nodes < 1:
        raise ConfigError(f"max_nodes must be at least 1 (or None for no limit), not {max_nodes}")
    walk = _Walk(ledger)
    root = walk.load(entry_id)
    if root is None:
        raise EntryNotFound(entry_id)
    nodes: dict[str, Node] = {entry_id: Node(entry_id, root.kind, _summary(root.kind, root.record))}
    edges: dict[tuple[str, str, Relation], Edge] = {}
    queue: deque[tuple[str, _Item]] = deque([(entry_id, root)])
    truncated = False
    while queue:
        source, item = queue.popleft()
        for target, relation in walk.links(item):
            if target not in nodes:
                if max_nodes is not None and len(nodes) >= max_nodes:
                    truncated = True
                    continue
                node, found = walk.node(target)
                nodes[target] = node
                if found is not None:
                    queue.append((target, found))
            edges.setdefault((source, target, relation), Edge(source, target, relation))
    return Provenance(
        nodes=tuple(nodes.values()),
        edges=tuple(edges.values()),
        accountable=walk.accountable(root, list(nodes)),
        truncated=truncated,
    )


# --- the walk ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Opaque:
    """An entry of a kind this module does not know (a newer record type): walked by its causes."""

    id: str
    kind: str
    causes: tuple[str, ...]
    fields: dict[str, Any] = field(default_factory=dict)


_Any = Record | _Opaque
_LINK_FIELDS = ("intent_id", "decision_id", "review_id", "approval_id", "execution_id", "control_id")
"""Fields that name the entry a record answers to; walked like causes when causes omit them."""
_ANSWERS = ("Approval", "ReviewClosed")
"""Kinds that answer a Review: a person's verdict, or its expiry resolved to the rule's default."""


@dataclass(frozen=True, slots=True)
class _Item:
    index: int
    kind: str
    record: _Any


class _Walk:
    """Reads entries by id for one call, decoding each once."""

    def __init__(self, ledger: LedgerStore) -> None:
        self.ledger = ledger
        self.cache: dict[str, _Item | None] = {}
        self._charters: CharterHistory | None = None

    def load(self, entry_id: str) -> _Item | None:
        if entry_id in self.cache:
            return self.cache[entry_id]
        try:
            stored = self.ledger.find(entry_id)
        except EntryNotFound:
            self.cache[entry_id] = None
            return None
        item = _Item(stored.index, stored.kind, _decode(stored))
        self.cache[entry_id] = item
        return item

    def node(self, node_id: str) -> tuple[Node, _Item | None]:
        """The node for an id, and the entry the walk goes on from (None for a leaf)."""
        if node_id.startswith("policy:"):
            return Node(node_id, "Policy", f"Policy {node_id.removeprefix('policy:')}"), None
        item = self.load(node_id)
        if item is None:
            return Node(node_id, "Missing", "cited, but not in this ledger"), None
        return Node(node_id, item.kind, _summary(item.kind, item.record)), item

    def links(self, item: _Item) -> Iterator[tuple[str, Relation]]:
        """Causes first, then the links accountability needs that ``causes`` may not hold."""
        r = item.record
        causes = r.causes
        yield from ((c, "caused_by") for c in causes)
        extra = [v for v in (_field(r, f) for f in _LINK_FIELDS) if isinstance(v, str)]
        if isinstance(r, Execution) and r.authority is not None and r.authority.via == "approval":
            extra.extend(r.authority.ids)
        yield from ((c, "caused_by") for c in dict.fromkeys(extra) if c not in causes)
        if isinstance(r, Decision):
            if r.ruleset_id is not None:
                yield r.ruleset_id, "under_ruleset"
            if r.control_id is None:  # else the stop decided (a cause already), not the policies
                yield from ((f"policy:{p}", "decided_by") for p in r.policy_ids)
        elif isinstance(r, Review):
            yield from ((a.id, "answered_by") for a in self.citing(r.id, *_ANSWERS))

    def citing(self, entry_id: str, *kinds: str) -> list[_Any]:
        """Records of these kinds that cite ``entry_id``, in ledger order, decoded and cached."""
        found = []
        for stored in self.ledger.caused_by(entry_id):
            if stored.kind not in kinds:
                continue
            item = self.cache.get(stored.id)
            if item is None:
                item = _Item(stored.index, stored.kind, _decode(stored))
                self.cache[stored.id] = item
            found.append(item.record)
        return found

    # --- accountability ---------------------------------------------------------------------------

    def accountable(self, root: _Item, order: list[str]) -> Accountable:
        """Read from the Execution the entry belongs to, else its Decision, else the charter."""
        r = root.record
        if isinstance(r, Execution):
            return self._from_execution(r, root.index)
        if isinstance(r, Approval):
            return self._settled(r.intent_id) or self._from_approvals([r])
        if isinstance(r, Intent | Decision | Review):
            settled = self._settled(r.id if isinstance(r, Intent) else r.intent_id)
            if settled is not None:
                return settled
            if isinstance(r, Review):
                answers = [a for a in self.citing(r.id, "Approval") if isinstance(a, Approval)]
                if answers:
                    return self._from_approvals(answers)
            decision = self._decision_of(r)
            if decision is not None:
                return self._from_decision(decision)
        # Anything else (a message, an event, a control) answers through the nearest Execution or
        # Decision it was derived from, in walk order.
        for node_id in order[1:]:
            item = self.cache.get(node_id)
            if item is not None and isinstance(item.record, Execution):
                return self._from_execution(item.record, item.index)
            if item is not None and isinstance(item.record, Decision):
                return self._from_decision(item.record)
        return Accountable(ri=self._ri_at(root.index), via=None)

    def _settled(self, intent_id: str) -> Accountable | None:
        """From the intent's last Execution (a recovered one comes after the first), if it has one."""
        executions = [
            e
            for e in self.citing(intent_id, "Execution")
            if isinstance(e, Execution) and e.intent_id == intent_id
        ]
        if not executions:
            return None
        return self._from_execution(executions[-1], self._index(executions[-1].id))

    def _decision_of(self, r: Intent | Decision | Review) -> Decision | None:
        if isinstance(r, Decision):
            return r
        if isinstance(r, Review):
            found = self._get(r.decision_id)
            return found if isinstance(found, Decision) else None
        decisions = [
            d for d in self.citing(r.id, "Decision") if isinstance(d, Decision) and d.intent_id == r.id
        ]
        return decisions[-1] if decisions else None

    def _from_execution(self, e: Execution, index: int) -> Accountable:
        if e.authority is None:  # nothing decided it: the ungoverned baseline
            return Accountable(ri=self._ri_at(index), via=None, derived_from=e.id)
        a = e.authority
        decision = self._get(e.decision_id)
        approvals = [self._get(i) for i in a.ids] if a.via == "approval" else []
        return Accountable(
            ri=a.responsible,
            via=a.via,
            ids=a.ids,
            ruleset_version=self._version(decision),
            ruleset_hash=a.ruleset_hash,
            approvers=tuple(x.by for x in approvals if isinstance(x, Approval)),
            derived_from=e.id,
        )

    def _from_decision(self, d: Decision) -> Accountable:
        return Accountable(
            ri=self._ri_at(self._index(d.id)),
            via="policy",
            ids=d.policy_ids,
            ruleset_version=self._version(d),
            ruleset_hash=d.ruleset_hash,
            derived_from=d.id,
        )

    def _from_approvals(self, answers: list[Approval]) -> Accountable:
        """Through the answers given so far to one review (a denial, or approvals short of enough)."""
        a = answers[-1]
        review = self._get(a.review_id)
        decision = self._get(review.decision_id) if isinstance(review, Review) else None
        return Accountable(
            ri=self._ri_at(self._index(a.id)),
            via="approval",
            ids=tuple(x.id for x in answers),
            ruleset_version=self._version(decision),
            ruleset_hash=decision.ruleset_hash if isinstance(decision, Decision) else None,
            approvers=tuple(x.by for x in answers),
            derived_from=a.id,
        )

    def _get(self, entry_id: str | None) -> _Any | None:
        item = None if entry_id is None else self.load(entry_id)
        return None if item is None else item.record

    def _index(self, entry_id: str) -> int:
        """The ledger position of an entry the walk has read (so it is cached)."""
        item = self.load(entry_id)
        if item is None:
            raise EntryNotFound(entry_id)
        return item.index

    def _version(self, decision: object) -> int | None:
        if not isinstance(decision, Decision):
            return None
        ruleset = self._get(decision.ruleset_id)
        return ruleset.version if isinstance(ruleset, RulesetVersion) else None

    def _ri_at(self, index: int) -> str | None:
        """The RI of the charter in force when entry ``index`` was written; None if there was none.

        Only charters that chain count, as for control: a SystemCharter entry someone appended
        without the RI's signature names nobody.
        """
        if self._charters is None:
            # Charters are few and indexed by kind: this reads them, never the ledger.
            self._charters = CharterHistory().advance(self.ledger)
        charter = self._charters.in_force_at(index)
        return charter.ri if charter is not None else None


def _decode(stored: StoredEntry) -> _Any:
    try:
        return decode_entry(stored.data)
    except RecordInvalid:
        # A kind added after this module was written: keep walking through it by its causes.
        try:
            body = orjson.loads(stored.data)
        except orjson.JSONDecodeError as exc:
            raise LedgerTampered(
                f"ledger entry {stored.index} ({stored.kind} {stored.id}) is not JSON; "
                "run `answerable verify` on this ledger",
                index=stored.index,
                entry_id=stored.id,
            ) from exc
        fields = body if isinstance(body, dict) else {}
        causes = fields.get("causes", [])
        causes = causes if isinstance(causes, list) else []
        return _Opaque(stored.id, stored.kind, tuple(str(c) for c in causes), fields)


# --- summaries -----------------------------------------------------------------------------------


def _summary(kind: str, r: _Any) -> str:
    return _short(_describe(kind, r))


def _describe(kind: str, r: _Any) -> str:
    if isinstance(r, Intent):
        return f"Intent {r.operation} by {r.agent}"
    if isinstance(r, ExternalEvent):
        return f"ExternalEvent {r.type} from {r.source}"
    if isinstance(r, Message):
        return f"Message {r.type} from {r.sender} on {r.topic}"
    if isinstance(r, Decision) and r.stop is not None:
        return f"Decision {r.effect}: {r.stop}"
    if isinstance(r, Decision):
        by = (
            f" by {', '.join(r.policy_ids)}" if r.policy_ids else "" if r.errors else " by no matching policy"
        )
        tail = f": {r.errors[0]}" if r.errors else ""
        return f"Decision {r.effect}{by}{tail}"
    if isinstance(r, Execution):
        tail = f": {r.error}" if r.error else ""
        return f"Execution {r.operation} {r.status}{tail}"
    if isinstance(r, Review):
        reason = f": {r.reasons[0]}" if r.reasons else ""
        return f"Review of {r.operation}{reason}"
    if isinstance(r, Approval):
        return f"Approval {r.verdict} by {r.by}: {r.reason}"
    if isinstance(r, Control):
        return f"Control {r.action} {r.scope.label()} by {r.by}: {r.reason}"
    if isinstance(r, RulesetVersion):
        return f"RulesetVersion v{r.version} approved by {r.approved_by} ({r.ruleset_hash[:12]})"
    if isinstance(r, SystemCharter):
        return f"SystemCharter {r.system} v{r.version}, RI {r.ri}"
    # A kind without a line of its own (an escalation, an alert): its kind, a word or two, its reason.
    words = [kind, *(str(v) for v in (_field(r, k) for k in ("type", "rule", "resolution", "to")) if v)]
    reason = _field(r, "reason")
    return " ".join(words) + (f": {reason}" if reason else "")


def _field(r: _Any, name: str) -> Any:
    return r.fields.get(name) if isinstance(r, _Opaque) else getattr(r, name, None)


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _SUMMARY_MAX else line[: _SUMMARY_MAX - 1] + "…"
