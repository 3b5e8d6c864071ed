"""Provenance: latency of ``why()`` on a ledger of a million entries shaped like real runs.

Run: ``python bench/provenance.py`` (1,000,000 entries; ``--entries N`` to change it, ``--quick``
for 20,000, ``--json`` for one JSON document, ``--ledger PATH`` to build the ledger there once and
reuse it on later runs). The process pins itself to one CPU, as the other scripts do.

The ledger holds what a governed run writes, in the same proportions: a signed charter and ruleset,
then causal chains ExternalEvent → Message → Message → Intent → Decision → Execution. Messages fan
in: the first cites its own event and up to two recent ones, the second cites the first and
sometimes another event. One chain in twenty goes to review (Decision → Review → Approval →
Execution through the approval). Records are built as validated pydantic models and appended with
``SQLiteLedger.append_sync`` in lists of ``--batch``, one durable group commit each.

Then ``why()`` is timed on ``--samples`` random Executions (the question an auditor asks) and as
many random Intents (which also look forward for the execution that settled them), with the page
cache warm, as it is on a server answering these. Goal printed: p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

from answerable.charter import new_charter, new_ruleset
from answerable.clock import FakeClock, IdSource, rfc3339
from answerable.keys import KeyPair
from answerable.ledger import SQLiteLedger
from answerable.provenance import why
from answerable.records import (
    Approval,
    Authority,
    Decision,
    Execution,
    ExternalEvent,
    Intent,
    Message,
    Record,
    Review,
    digest,
)

GOAL_P99_MS = 50.0
SCHEMA = """
entity Agent;
entity Shipment { class: String, region: String };
action "carrier.book" appliesTo { principal: [Agent], resource: [Shipment], context: { disruption: Bool } };
"""
POLICIES = """
@id("routine-bookings")
permit(principal, action == Action::"carrier.book", resource);

@id("medical-under-disruption-needs-review")
@review("a medical booking during a disruption needs a person")
forbid(principal, action == Action::"carrier.book", resource)
  when { resource.class == "medical" && context.disruption };
"""
EVENTS = (
    ("order-system", "orders.batch"),
    ("weather-service", "storm.alert"),
    ("carrier", "fleet.status"),
    ("warehouse", "stock.snapshot"),
)
REGIONS = ("north-1", "north-3", "south-2", "east-4", "west-1")
CLASSES = ("medical", "retail", "industrial")
RI = "ri@logistics.example"
REVIEWER = "storm-desk@logistics.example"


class Chains:
    """Builds the records of one governed run, chain by chain, as the runtime and gateway would."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = FakeClock()
        self.ids = IdSource(self.clock, random.Random(seed + 1))
        self.recent: list[str] = []
        self.n = 0
        self.ruleset_id = ""
        self.ruleset_hash = ""
        self.schema_hash = ""

    def _at(self) -> str:
        self.clock.ns += self.rng.randrange(20_000, 400_000)
        return rfc3339(self.clock.ns)

    def setup(self) -> list[Record]:
        ri = KeyPair.from_seed(RI, b"\x01" * 32)
        reviewer = KeyPair.from_seed(REVIEWER, b"\x02" * 32)
        charter = new_charter(
            "logistics",
            ri,
            agents=["router", "planner", "executor"],
            reviewers=[reviewer],
            clock=self.clock,
            ids=self.ids,
        )
        ruleset = new_ruleset(POLICIES, SCHEMA, ri, clock=self.clock, ids=self.ids)
        self.ruleset_id, self.ruleset_hash, self.schema_hash = (
            ruleset.id,
            ruleset.ruleset_hash,
            ruleset.schema_hash,
        )
        return [charter, ruleset]

    def chain(self) -> list[Record]:
        rng, ids = self.rng, self.ids
        self.n += 1
        source, kind = rng.choice(EVENTS)
        event = ExternalEvent(
            id=ids.new(),
            at=self._at(),
            source=source,
            type=kind,
            payload={"batch": self.n, "region": rng.choice(REGIONS), "count": rng.randrange(1, 400)},
        )
        fan_in = rng.sample(self.recent, min(len(self.recent), rng.randrange(0, 3)))
        self.recent = [*self.recent[-31:], event.id]
        trace = event.id
        plan = Message(
            id=ids.new(),
            at=self._at(),
            causes=(event.id, *fan_in),
            sender="planner",
            topic="plans",
            type="allocation.plan",
            payload={"day": self.n // 500, "units": rng.randrange(1, 900)},
            trace_id=trace,
        )
        extra = (rng.choice(self.recent),) if rng.random() < 0.3 else ()
        route = Message(
            id=ids.new(),
            at=self._at(),
            causes=tuple(dict.fromkeys((plan.id, *extra))),
            sender="router",
            topic="routes",
            type="route.plan",
            payload={"stops": [f"S-{self.n:07d}-{k}" for k in range(rng.randrange(1, 6))]},
            trace_id=trace,
        )
        cls = rng.choice(CLASSES)
        review = cls == "medical" and rng.random() < 0.15
        shipment: dict[str, Any] = {
            "shipment": f"S-{self.n:07d}",
            "cls": cls,
            "region": rng.choice(REGIONS),
            "disruption": review,
        }
        intent_id = ids.new()
        intent = Intent(
            id=intent_id,
            at=self._at(),
            causes=(route.id,),
            agent="executor",
            operation="carrier.book",
            arguments=shipment,
            idempotency_key=intent_id,
            trace_id=trace,
        )
        policies = ("medical-under-disruption-needs-review",) if review else ("routine-bookings",)
        decision = Decision(
            id=ids.new(),
            at=self._at(),
            causes=(intent.id,),
            intent_id=intent.id,
            effect="review" if review else "allow",
            policy_ids=policies,
            ruleset_id=self.ruleset_id,
            ruleset_hash=self.ruleset_hash,
            schema_hash=self.schema_hash,
            request={
                "principal": {"type": "Agent", "id": "executor"},
                "action": {"type": "Action", "id": "carrier.book"},
                "resource": {"type": "Shipment", "id": shipment["shipment"]},
                "context": {"disruption": review},
            },
            entities=(
                {"uid": {"type": "Agent", "id": "executor"}, "attrs": {}, "parents": []},
                {
                    "uid": {"type": "Shipment", "id": shipment["shipment"]},
                    "attrs": {"class": cls, "region": shipment["region"]},
                    "parents": [],
                },
            ),
        )
        records: list[Record] = [event, plan, route, intent, decision]
        causes: tuple[str, ...] = (intent.id, decision.id)
        authority = Authority(responsible=RI, via="policy", ids=policies, ruleset_hash=self.ruleset_hash)
        if review:
            binding = digest(intent.id.encode())
            rv = Review(
                id=ids.new(),
                at=self._at(),
                causes=(intent.id, decision.id),
                intent_id=intent.id,
                decision_id=decision.id,
                operation="carrier.book",
                reasons=("a medical booking during a disruption needs a person",),
                policy_ids=policies,
                binding=binding,
            )
            approval = Approval(
                id=ids.new(),
                at=self._at(),
                causes=(rv.id,),
                review_id=rv.id,
                intent_id=intent.id,
                verdict="approve",
                by=REVIEWER,
                reason="hospital confirmed the slot",
                binding=binding,
                expires_at=rfc3339(self.clock.ns + 3_600_000_000_000),
            )
            records += [rv, approval]
            causes = (*causes, approval.id)
            authority = Authority(
                responsible=RI, via="approval", ids=(approval.id,), ruleset_hash=self.ruleset_hash
            )
        records.append(
            Execution(
                id=ids.new(),
                at=self._at(),
                causes=causes,
                intent_id=intent.id,
                decision_id=decision.id,
                operation="carrier.book",
                status="succeeded",
                authority=authority,
                response_digest=digest(shipment["shipment"].encode()),
                latency_us=rng.randrange(2_000, 90_000),
            )
        )
        return records


def build(path: Path, entries: int, batch: int, seed: int) -> dict[str, Any]:
    """Create a ledger of at least ``entries`` entries at ``path``."""
    chains = Chains(seed)
    started = time.perf_counter()
    building = appending = 0.0
    with SQLiteLedger.open(path, create=True, origin="bench.example/provenance") as ledger:
        pending: list[Record] = chains.setup()
        total = 0
        while total < entries:
            t0 = time.perf_counter()
            while len(pending) < batch and total + len(pending) < entries:
                pending.extend(chains.chain())
            t1 = time.perf_counter()
            ledger.append_sync(pending)
            appending += time.perf_counter() - t1
            building += t1 - t0
            total += len(pending)
            pending = []
        size = ledger.size()
    return {
        "built": True,
        "entries": size,
        "chains": chains.n,
        "build_s": time.perf_counter() - started,
        "build_records_s": building,
        "append_s": appending,
    }


def sample_ids(path: Path, kind: str, count: int, seed: int) -> list[str]:
    """Random ids of one kind, read straight from the file: the bench's sampling, not why()'s work."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id FROM entries WHERE kind = ?", (kind,)).fetchall()
    finally:
        conn.close()
    rng = random.Random(seed)
    return [r[0] for r in rng.sample(rows, min(count, len(rows)))]


def measure(ledger: SQLiteLedger, ids: list[str]) -> dict[str, Any]:
    clock = time.perf_counter_ns
    samples, nodes, edges, vias = [], [], [], {"policy": 0, "approval": 0, "none": 0}
    for entry_id in ids:
        t0 = clock()
        p = why(ledger, entry_id)
        samples.append(clock() - t0)
        nodes.append(len(p.nodes))
        edges.append(len(p.edges))
        vias[p.accountable.via or "none"] += 1
        assert p.accountable.ri == RI, f"why({entry_id}) names {p.accountable.ri!r}, not the RI"
        assert not p.truncated
    return {
        "count": len(ids),
        "latency": common.summarize_ns(samples),
        "first_call_us": samples[0] / 1000 if samples else 0.0,
        "mean_nodes": sum(nodes) / len(nodes) if nodes else 0.0,
        "max_nodes": max(nodes, default=0),
        "mean_edges": sum(edges) / len(edges) if edges else 0.0,
        "accountable_via": vias,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    pinning = common.pin_to_one_core(0) if args.pin else {"pinned": False, "cpus": None, "note": "--no-pin"}
    with tempfile.TemporaryDirectory(prefix="answerable-bench-", dir=args.dir) as tmp:
        path = Path(args.ledger) if args.ledger else Path(tmp) / "provenance.db"
        if path.exists():
            built: dict[str, Any] = {"built": False, "build_s": 0.0}
        else:
            built = build(path, args.entries, args.batch, args.seed)
        executions = sample_ids(path, "Execution", args.samples, args.seed)
        intents = sample_ids(path, "Intent", args.samples, args.seed + 1)
        with SQLiteLedger.open(path) as ledger:
            size = ledger.size()
            by_execution = measure(ledger, executions)
            by_intent = measure(ledger, intents)
        file_bytes = sum(p.stat().st_size for p in path.parent.iterdir() if p.name.startswith(path.name))
        filesystem = common.filesystem_of(path.parent)
    return {
        "benchmark": "provenance",
        "quick": args.quick,
        "machine": {**common.describe_machine(), **pinning},
        "ledger": {
            "path": str(path) if args.ledger else None,
            "entries": size,
            "file_bytes": file_bytes,
            "filesystem": filesystem,
            **built,
        },
        "goals": {"why_p99_ms": GOAL_P99_MS},
        "why": {"executions": by_execution, "intents": by_intent},
    }


def render(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    m, led, goal = doc["machine"], doc["ledger"], doc["goals"]["why_p99_ms"]
    console.print(
        f"[bold]provenance[/bold]  {m['cpu']}, Python {m['python']}, SQLite {m['sqlite']}; "
        f"{'pinned to ONE core: CPU ' + str(m['cpus']) if m['pinned'] else 'not pinned (' + m['note'] + ')'}"
    )
    made = (
        f"built in {led['build_s']:.1f} s ({led['build_records_s']:.1f} s building records, "
        f"{led['append_s']:.1f} s appending; {led['chains']:,} chains)"
        if led["built"]
        else f"reused {led['path']}"
    )
    console.print(
        f"{led['entries']:,} entries, file {led['file_bytes'] / 1e6:,.0f} MB on {led['filesystem']}; {made}"
    )
    us = common.fmt_us
    table = Table(title="why() latency, page cache warm")
    for col in (
        "root",
        "calls",
        "p50",
        "p99",
        "max",
        "first call",
        "nodes (mean/max)",
        f"goal p99 < {goal:.0f} ms",
    ):
        table.add_column(col, justify="left" if col == "root" else "right")
    for key, label in (("executions", "random Executions"), ("intents", "random Intents")):
        r = doc["why"][key]
        lat = r["latency"]
        good = lat["p99_us"] < goal * 1000
        table.add_row(
            label,
            f"{r['count']:,}",
            us(lat["p50_us"]),
            us(lat["p99_us"]),
            us(lat["max_us"]),
            us(r["first_call_us"]),
            f"{r['mean_nodes']:.1f} / {r['max_nodes']}",
            "[green]meets[/green]" if good else "[red]misses[/red]",
        )
    console.print(table)
    via = doc["why"]["executions"]["accountable_via"]
    console.print(f"  Executions answered via policy {via['policy']:,}, via approval {via['approval']:,}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="ledger size to build")
    parser.add_argument("--quick", action="store_true", help="20,000 entries and 200 samples")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--ledger", help="build the ledger at PATH, or reuse it if it exists")
    parser.add_argument("--samples", type=int, default=1_000, help="why() calls per root kind")
    parser.add_argument("--batch", type=int, default=20_000, help="records per append (one commit)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="where the temporary ledger goes (default: the system temp dir)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin to one CPU")
    args = parser.parse_args()
    if args.quick:
        args.entries, args.samples = 20_000, 200
    doc = run(args)
    if not common.emit(doc, args.json):
        render(doc)


if __name__ == "__main__":
    main()
