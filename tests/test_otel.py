"""The ledger as OpenTelemetry spans: one per entry, causes as links, GenAI names where they fit."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from otlp import ARRIVED, otlp_receiver
from support import booking

from answerable import Gateway, SQLiteLedger
from answerable.errors import ExportFailed
from answerable.otel import export_ledger, span_id_of
from answerable.records import ExternalEvent, Message


async def chain(gateway: Gateway, ledger: SQLiteLedger) -> dict[str, str]:
    """An event, a message citing it, a booking citing the message (executed), one sent to
    review and one that fails at the carrier. Returns the ids by role."""
    clock_at = gateway.intent("executor", "noop", {}).at
    event = ExternalEvent(
        id="ev-1", at=clock_at, source="weather", type="storm.alert", payload={"r": "north"}
    )
    message = Message(
        id="msg-1",
        at=clock_at,
        causes=(event.id,),
        sender="router",
        topic="routes",
        recipients=("executor",),
        type="route.plan",
        payload={"day": 1},
        trace_id="t-1",
    )
    await ledger.append([event, message])
    done = await gateway.submit(
        gateway.intent("executor", "carrier.book", booking("S-1"), causes=(message.id,))
    )
    reviewed = await gateway.submit(
        gateway.intent("executor", "carrier.book", booking("S-2", "medical", disruption=True))
    )

    def refuse() -> None:
        raise ValueError("the carrier said no")

    gateway.register("carrier.fail", refuse, resource_class="shipment")
    failed = await gateway.submit(gateway.intent("executor", "carrier.fail", {}))
    assert done.execution is not None
    assert reviewed.review is not None
    assert failed.execution is not None
    return {
        "event": event.id,
        "message": message.id,
        "intent": done.intent.id,
        "decision": done.decision.id,
        "execution": done.execution.id,
        "review": reviewed.review.id,
        "failed": failed.execution.id,
    }


def by_id(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {str(s.attributes["answerable.id"]): s for s in spans if s.attributes}


async def test_every_entry_is_one_span_and_a_chain_is_one_trace_linked_by_its_causes(
    gateway: Gateway, ledger: SQLiteLedger
) -> None:
    ids = await chain(gateway, ledger)
    memory = InMemorySpanExporter()
    assert export_ledger(ledger, memory) == ledger.size()
    spans = by_id(memory.get_finished_spans())
    assert len(spans) == ledger.size()

    execution = spans[ids["execution"]]
    assert execution.name == "execute_tool carrier.book"
    attributes = execution.attributes or {}
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["gen_ai.tool.name"] == "carrier.book"
    assert attributes["gen_ai.tool.call.id"] == ids["intent"]
    assert attributes["answerable.responsible"] == "ri@logistics.example"
    assert execution.status.status_code is StatusCode.OK
    linked = {(link.attributes or {}).get("answerable.cause"): link for link in execution.links}
    assert {ids["intent"], ids["decision"]} <= set(linked)
    assert linked[ids["decision"]].attributes == {
        "answerable.cause": ids["decision"],
        "answerable.cause_kind": "Decision",
    }
    assert linked[ids["intent"]].context.span_id == spans[ids["intent"]].context.span_id
    assert execution.parent is not None
    assert execution.parent.span_id == span_id_of(ids["intent"])

    # event -> message -> intent -> decision -> execution: one trace, rooted at the event
    trace = spans[ids["event"]].context.trace_id
    for role in ("message", "intent", "decision", "execution"):
        assert spans[ids[role]].context.trace_id == trace, role
    assert spans[ids["event"]].parent is None
    message = spans[ids["message"]]
    assert message.name == "invoke_agent router"
    assert (message.attributes or {})["gen_ai.agent.name"] == "router"
    assert spans[ids["intent"]].name == "answerable.intent carrier.book"
    assert spans[ids["review"]].name == "answerable.review carrier.book"
    failed = spans[ids["failed"]]
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "failed"


async def test_the_same_ledger_exports_the_same_spans_and_a_late_start_keeps_the_traces(
    gateway: Gateway, ledger: SQLiteLedger
) -> None:
    """Ids come from entry ids: exported twice, or from the middle on (as the service does
    live), a span has the same span and trace id."""
    ids = await chain(gateway, ledger)
    whole, again, tail = InMemorySpanExporter(), InMemorySpanExporter(), InMemorySpanExporter()
    export_ledger(ledger, whole)
    export_ledger(ledger, again)
    start = ledger.find(ids["execution"]).index
    export_ledger(ledger, tail, start=start)

    def contexts(exporter: InMemorySpanExporter) -> dict[str, tuple[int, int]]:
        return {
            i: (s.context.trace_id, s.context.span_id)
            for i, s in by_id(exporter.get_finished_spans()).items()
        }

    assert contexts(whole) == contexts(again)
    assert contexts(tail).items() <= contexts(whole).items()
    assert ids["execution"] in contexts(tail)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    with otlp_receiver() as found:
        yield found


async def test_an_otlp_receiver_on_loopback_gets_every_span_with_its_links(
    gateway: Gateway, ledger: SQLiteLedger, receiver: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    ids = await chain(gateway, ledger)
    endpoint, received = receiver
    exported = export_ledger(ledger, OTLPSpanExporter(endpoint=endpoint, timeout=5), where=endpoint)
    spans = [s for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == exported == ledger.size()
    named = {s.span_id: s for s in spans}
    execution = named[span_id_of(ids["execution"]).to_bytes(8, "big")]
    assert execution.name == "execute_tool carrier.book"
    assert {link.span_id for link in execution.links} >= {
        span_id_of(ids["intent"]).to_bytes(8, "big"),
        span_id_of(ids["decision"]).to_bytes(8, "big"),
    }
    [resource] = {
        kv.value.string_value
        for r in received
        for rs in r.resource_spans
        for kv in rs.resource.attributes
        if kv.key == "service.name"
    }
    assert resource == "answerable"


async def test_an_endpoint_that_is_down_is_named_and_nothing_is_lost(
    gateway: Gateway, ledger: SQLiteLedger
) -> None:
    """The export gives up after the exporter's own retries with an error naming where to
    start again; the ledger is untouched, and the same export succeeds later."""
    await chain(gateway, ledger)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/v1/traces"
    size = ledger.size()
    started = time.monotonic()
    with pytest.raises(ExportFailed, match=r"did not take the spans of entries 0 to \d+ \(0 spans exported"):
        export_ledger(ledger, OTLPSpanExporter(endpoint=endpoint, timeout=1), where=endpoint)
    assert time.monotonic() - started < 30
    assert ledger.size() == size
    memory = InMemorySpanExporter()
    assert export_ledger(ledger, memory) == size


def _serve_with(folder: Path, url: str):  # type: ignore[no-untyped-def]
    from served import free_port, start

    from answerable.scaffold import init

    init(folder)
    config = folder / "answerable.toml"
    config.write_text(config.read_text() + f'\n[otel]\nendpoint = "{url}"\n')
    return start(folder, free_port())


def _stop(running) -> str:  # type: ignore[no-untyped-def]
    """SIGTERM, and everything the service said on stderr after it was ready."""
    import signal

    running.proc.send_signal(signal.SIGTERM)
    said = running.proc.stderr.read()
    assert running.proc.wait(timeout=60) == 0, said
    running.proc.stderr.close()
    return str(said)


def test_the_service_exports_each_new_entry_live(
    tmp_path: Path, receiver: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    """``[otel] endpoint``: a refund made through the service arrives at the receiver as an
    ``execute_tool refund`` span linked to its intent, within a few settle rounds."""
    from served import agent

    endpoint, received = receiver
    running = _serve_with(tmp_path / "shop", endpoint)
    try:
        [done] = agent(running, {"arguments": {"order": "O-1", "amount_cents": 500}})
        assert done["status"] == "succeeded"
        names: set[str] = set()
        while "execute_tool refund" not in names:
            assert ARRIVED.wait(timeout=30), f"no spans for 30 s; heard {names}"
            ARRIVED.clear()
            names = {
                s.name
                for r in list(received)
                for rs in r.resource_spans
                for ss in rs.scope_spans
                for s in ss.spans
            }
        assert "answerable.intent refund" in names
        assert "answerable.SystemCharter" not in names  # what came before the start: otel-export
    finally:
        said = _stop(running)
    assert "Traceback" not in said
    spans = [
        s.span_id for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]
    assert len(spans) == len(set(spans))  # the last round at stop sent nothing twice


def test_an_endpoint_that_hangs_or_is_down_never_holds_a_call_and_is_said_once(tmp_path: Path) -> None:
    """A collector that takes a request and never answers: refunds still run while it holds
    the export. One that is down: one line of the service's own, none of the exporter's retries."""
    from served import agent

    got, release = threading.Event(), threading.Event()

    class Hung(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.set()
            release.wait(timeout=60)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    hung = HTTPServer(("127.0.0.1", 0), Hung)
    threading.Thread(target=hung.serve_forever, daemon=True).start()
    running = _serve_with(tmp_path / "shop", f"http://127.0.0.1:{hung.server_address[1]}/v1/traces")
    try:
        [first] = agent(running, {"arguments": {"order": "O-1", "amount_cents": 500}})
        assert got.wait(timeout=30)  # the export of the first refund is held by the collector
        [second] = agent(running, {"arguments": {"order": "O-2", "amount_cents": 500}})
        assert not release.is_set()
        assert (first["status"], second["status"]) == ("succeeded", "succeeded")
    finally:
        release.set()
        _stop(running)
        hung.shutdown()
        hung.server_close()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1/traces"
    running = _serve_with(tmp_path / "other", dead)
    try:
        [done] = agent(running, {"arguments": {"order": "O-3", "amount_cents": 500}})
        assert done["status"] == "succeeded"
    finally:
        said = _stop(running)
    lines = [line for line in said.splitlines() if "otel" in line.lower() or "export" in line.lower()]
    assert sum("did not take the spans" in line for line in lines) <= 1, said
    assert not [line for line in lines if "Transient error" in line or "Failed to export" in line], said
