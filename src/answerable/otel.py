"""The ledger as OpenTelemetry spans: the causal chain in the trace viewer a team already runs.

Every ledger entry becomes one span, so no link of a causal chain goes missing. Where the GenAI
semantic conventions apply they are followed: an Execution is an ``execute_tool`` span timed by
the call's measured latency, a Message an ``invoke_agent`` span of its sender, an Intent carries
``gen_ai.agent.name``, ``gen_ai.tool.name`` and ``gen_ai.tool.call.id``. The answerable ids are
``answerable.*`` attributes.

Causes become span links, each naming the cause's id and kind, so a viewer walks from a
dispatch back through the decision, the messages and the events that led to it, across agents.
The first cause is also the span's parent, so a chain reads as one trace: a span's trace is its
first cause's, and an entry with no cause starts a trace. Span and trace ids are derived from
entry ids (SHA-256), so exporting the same ledger twice yields the same spans, and spans
exported live and after the fact agree.

Spans are made from the ledger, never instead of it: an endpoint that is down loses nothing,
and the export can run again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from answerable.clock import parse_rfc3339
from answerable.errors import EntryNotFound, ExportFailed, RecordInvalid
from answerable.ledger.base import LedgerStore, StoredEntry
from answerable.records import Decision, Execution, Intent, Message, Record, Review, decode_entry

__all__ = ["SpanMaker", "export_ledger", "span_id_of", "trace_id_of"]

_SCOPE = InstrumentationScope("answerable", None)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_BATCH = 512


def span_id_of(entry_id: str) -> int:
    """The span id of an entry: 64 bits of SHA-256 of its id (never zero, which OTel forbids)."""
    return int.from_bytes(hashlib.sha256(b"span:" + entry_id.encode()).digest()[:8], "big") or 1


def trace_id_of(root_id: str) -> int:
    """The trace id of a chain that starts at the entry ``root_id``: 128 bits of SHA-256."""
    return int.from_bytes(hashlib.sha256(b"trace:" + root_id.encode()).digest()[:16], "big") or 1


class SpanMaker:
    """Turns ledger entries into spans, remembering each entry's trace so a chain stays one."""

    def __init__(self, ledger: LedgerStore) -> None:
        self.ledger = ledger
        self.resource = Resource.create({"service.name": "answerable", "answerable.ledger": ledger.origin})
        self._trace: dict[str, int] = {}
        self._kind: dict[str, str] = {}
        self._last_ns = 0
        """The last entry time read: the stand-in for an entry whose time does not parse."""

    def spans(self, entries: Iterable[StoredEntry]) -> Iterator[ReadableSpan]:
        for stored in entries:
            try:
                record = decode_entry(stored.data)
            except RecordInvalid:
                continue  # not a record: `answerable verify` names it; a trace has nothing to show
            yield self.span(stored.index, record)

    def span(self, index: int, record: Record) -> ReadableSpan:
        causes = tuple(record.causes)
        trace = self._trace_of(record.id, causes)
        self._kind[record.id] = _kind(record)
        links = [
            Link(
                SpanContext(self._trace_of_known(c), span_id_of(c), False, _SAMPLED),
                {"answerable.cause": c, "answerable.cause_kind": self._kind_of(c)},
            )
            for c in causes
        ]
        # A first cause the ledger does not hold would be a parent no viewer can find: link only.
        known = bool(causes) and self._kind.get(causes[0], "unknown") != "unknown"
        parent = SpanContext(trace, span_id_of(causes[0]), False, _SAMPLED) if known else None
        name, attributes, status, duration_ns = _describe(record)
        try:
            end = self._last_ns = parse_rfc3339(record.at)
        except ValueError:  # a time the schema lets through but no calendar holds: kept as said
            end = self._last_ns
            attributes = {**attributes, "answerable.at": record.at, "answerable.at_invalid": True}
        return ReadableSpan(
            name=name,
            context=SpanContext(trace, span_id_of(record.id), False, _SAMPLED),
            parent=parent,
            resource=self.resource,
            attributes={
                "answerable.id": record.id,
                "answerable.kind": _kind(record),
                "answerable.index": index,
                **attributes,
            },
            links=links,
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=end - duration_ns,
            end_time=end,
            instrumentation_scope=_SCOPE,
        )

    def _trace_of(self, entry_id: str, causes: Sequence[str]) -> int:
        trace = self._trace_of_known(causes[0]) if causes else trace_id_of(entry_id)
        self._trace[entry_id] = trace
        return trace

    def _trace_of_known(self, entry_id: str) -> int:
        """The trace of an entry made into a span before, or found up its first causes in the
        ledger (an export that starts past the beginning); an id the ledger lacks starts its own."""
        walked: list[str] = []
        seen: set[str] = set()
        current = entry_id
        trace: int | None = None
        while trace is None:
            trace = self._trace.get(current)
            if trace is not None:
                break
            walked.append(current)
            seen.add(current)
            try:
                record = decode_entry(self.ledger.find(current).data)
            except (EntryNotFound, RecordInvalid):
                trace = trace_id_of(current)
                break
            self._kind[current] = _kind(record)
            if not record.causes or record.causes[0] in seen:  # a root, or a cycle a forger made
                trace = trace_id_of(current)
                break
            current = record.causes[0]
        for each in walked:
            self._trace[each] = trace
        return trace

    def _kind_of(self, entry_id: str) -> str:
        if entry_id not in self._kind:
            self._trace_of_known(entry_id)
        return self._kind.get(entry_id, "unknown")


def _describe(record: Record) -> tuple[str, dict[str, Any], Status, int]:
    """A span's name, attributes, status and duration for one record."""
    if isinstance(record, Execution):
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": record.operation,
            "gen_ai.tool.call.id": record.intent_id,
            "answerable.intent_id": record.intent_id,
            "answerable.status": record.status,
            "answerable.attempts": record.attempts,
        }
        if record.decision_id is not None:
            attributes["answerable.decision_id"] = record.decision_id
        if record.authority is not None:
            attributes["answerable.responsible"] = record.authority.responsible
            attributes["answerable.authority.via"] = record.authority.via
            attributes["answerable.authority.ids"] = list(record.authority.ids)
        status = Status(StatusCode.UNSET)
        if record.status == "succeeded":
            status = Status(StatusCode.OK)
        elif record.status in ("failed", "ambiguous"):
            attributes["error.type"] = record.status
            status = Status(StatusCode.ERROR, record.error or record.status)
        return f"execute_tool {record.operation}", attributes, status, record.latency_us * 1000
    if isinstance(record, Intent):
        attributes = {
            "gen_ai.agent.name": record.agent,
            "gen_ai.tool.name": record.operation,
            "gen_ai.tool.call.id": record.id,
            "answerable.idempotency_key": record.idempotency_key,
        }
        if record.on_behalf_of is not None:
            attributes["answerable.on_behalf_of"] = record.on_behalf_of
        return f"answerable.intent {record.operation}", attributes, Status(StatusCode.UNSET), 0
    if isinstance(record, Message):
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": record.sender,
            "answerable.topic": record.topic,
            "answerable.message_type": record.type,
            "answerable.recipients": list(record.recipients),
            "answerable.trace_id": record.trace_id,
        }
        return f"invoke_agent {record.sender}", attributes, Status(StatusCode.UNSET), 0
    if isinstance(record, Decision):
        operation = str(record.request.get("action", {}).get("id", "?"))
        attributes = {
            "answerable.intent_id": record.intent_id,
            "answerable.effect": record.effect,
            "answerable.policy_ids": list(record.policy_ids),
            "answerable.ruleset_hash": record.ruleset_hash,
        }
        if record.control_id is not None:
            attributes["answerable.control_id"] = record.control_id
        return f"answerable.decide {operation}", attributes, Status(StatusCode.UNSET), 0
    if isinstance(record, Review):
        attributes = {
            "answerable.intent_id": record.intent_id,
            "answerable.reasons": list(record.reasons),
            "answerable.assignees": list(record.assignees),
            "answerable.approvals_required": record.approvals_required,
        }
        return f"answerable.review {record.operation}", attributes, Status(StatusCode.UNSET), 0
    return f"answerable.{_kind(record)}", {}, Status(StatusCode.UNSET), 0


def export_ledger(
    ledger: LedgerStore,
    exporter: SpanExporter,
    *,
    start: int = 0,
    stop: int | None = None,
    where: str = "the exporter",
    maker: SpanMaker | None = None,
) -> int:
    """Export the entries ``[start, stop)`` (by default all) as spans, in batches; returns how
    many spans were exported. ``maker``: one kept across calls (the service's rounds) remembers
    the traces it has seen.

    Raises:
        ExportFailed: the exporter refused a batch (after its own retries); names ``where``
            and how far the export got, so it can run again from there.
    """
    end = ledger.size() if stop is None else stop
    maker = maker or SpanMaker(ledger)
    exported = 0
    for first in range(start, end, _BATCH):
        last = min(first + _BATCH, end)
        spans = list(maker.spans(ledger.entries(first, last)))
        if spans and exporter.export(spans) is not SpanExportResult.SUCCESS:
            raise ExportFailed(
                f"{where} did not take the spans of entries {first} to {last - 1} "
                f"({exported} spans exported before them); run the export again from --start {first}",
                start=first,
            )
        exported += len(spans)
    return exported


def _kind(record: Record) -> str:
    """The record's ``kind``, which every concrete record type declares."""
    return str(getattr(record, "kind", type(record).__name__))
