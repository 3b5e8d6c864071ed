"""``answerable serve``: the gateway as a long-running service other processes call over HTTP.

At start it takes the ledger's lease, installs (or resumes) the charter and ruleset the RI
signed, and reconciles what a crash left open. While it runs it settles reviews answered from
anywhere (``answerable approve`` included) within ``settle_every`` seconds, ticks deadlines and
expiry, and signs (and publishes) a checkpoint every ``[checkpoints] every_seconds``. On SIGTERM
uvicorn stops accepting, lets requests in flight finish, and the shutdown signs a last
checkpoint and releases the lease.

Agents sign their requests (RFC 9421, :mod:`answerable.httpsig`) with the key the charter lists
for them; people (the RI, operators) sign halts and pauses the same way with their own keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import ssl
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from answerable._body import BodyRefused, read_body
from answerable._canonical import canonical_bytes
from answerable._files import read_capped
from answerable._locks import KeyedLocks
from answerable._urls import shown
from answerable.bus import MemoryBus
from answerable.clock import parse_rfc3339, rfc3339
from answerable.config import ConsoleConfig, ServiceConfig, resolve_target
from answerable.control import names_nothing, scope_from_text
from answerable.errors import (
    AnswerableError,
    ApprovalRefused,
    ArgumentsInvalid,
    ConfigError,
    EntryNotFound,
    ExportFailed,
    IdempotencyConflict,
    LeaseLost,
    LedgerClosed,
    MessageRefused,
    NotALedger,
    NotAuthorized,
    RecordInvalid,
    SignatureInvalid,
    StoreUnavailable,
    UnknownOperation,
)
from answerable.gateway import Gateway, Outcome
from answerable.httpsig import SKEW, claimed_keyid, verify_request
from answerable.keys import KeyPair, verify_signature
from answerable.ledger import SERVING_PATIENCE, SQLLedger, open_ledger, payload_of
from answerable.ledger.base import StoredEntry, holds
from answerable.ledger.note import checkpoint_size
from answerable.ledger.tiles import (
    TILE_WIDTH,
    entry_bundle,
    parse_tile_path,
    publish,
    published_size,
    republish_checkpoint,
)
from answerable.ledger.witness import CosignatureVerifier, request_cosignature
from answerable.monitors import MonitorConfig, Monitors, load_monitors
from answerable.operations import arguments_as_context, canonical_arguments
from answerable.policy import load_ruleset
from answerable.records import (
    Approval,
    Control,
    Decision,
    Execution,
    ExternalEvent,
    Intent,
    Message,
    Refusal,
    RulesetVersion,
    SystemCharter,
    decode_entry,
    digest,
    entry_bytes,
    signing_bytes,
    summary,
)
from answerable.runtime import System

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from answerable.bus.nats import NatsBus
    from answerable.otel import SpanMaker
    from answerable.upstream import Upstreams

__all__ = ["ANSWER_STATUS", "MAX_BODY", "Service", "build_app", "control_doc", "outcome_doc"]

_NOTIFY = frozenset({"Review", "Escalation", "ReviewClosed", "Control", "Alert"})
_WATCH_PAGE = 512
"""Entries the webhook's watch reads at a time."""
_NOTIFIED = "notified:webhook"
"""The ledger note of how far the webhook was told (events before it were posted or given up)."""

MAX_BODY = 64 * 1024
"""Largest request body accepted; an intent's arguments are far smaller."""

REFUSALS_EVERY = 10.0
"""At most one Refusal recorded per claimed identity in this many seconds; the rest are counted."""


ANSWER_STATUS = {
    "already_answered": 409,
    "already_claimed": 409,
    "already_used": 409,
    "expired": 409,
    "busy": 409,
    "unknown_review": 404,
    "not_a_reviewer": 403,
    "own_proposal": 403,
    "bad_causes": 422,
    "bad_expiry": 422,
    "from_the_future": 422,
    "bad_verdict": 422,
    "missing_reason": 422,
}
"""HTTP status of each reason the review queue gives for refusing an answer, in the API and the
console alike: a settled review is a conflict, an unknown one is not found, a malformed answer
(no reason, no verdict, the wrong causes or window) unprocessable; missing_reason and bad_verdict
were 403 over the API, 422 in the console, until they were listed here."""


class _Strict(BaseModel):
    """A request body: a field no version of the API has (``idempotencyKey`` for
    ``idempotency_key``) is refused, not dropped, or the request would run without what it meant."""

    model_config = ConfigDict(extra="forbid")


class SubmitBody(_Strict):
    operation: str
    arguments: dict[str, Any]
    idempotency_key: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """Absent: the intent's id serves. Never empty: an empty key would name no slot a restart
    could find again, and the same request would then run twice."""
    causes: tuple[str, ...] = ()


class EventBody(_Strict):
    topic: str
    source: str
    type: str
    payload: dict[str, Any]


class EventsBody(_Strict):
    events: list[EventBody] = Field(min_length=1, max_length=1000)


class ControlBody(_Strict):
    action: str
    reason: str
    scope: str = "system"


class Service:
    """The gateway, its ledger and its background duties, for one config."""

    def __init__(self, config: ServiceConfig, *, wait_for_store: float = 0.0) -> None:
        """``wait_for_store``: seconds :meth:`start` waits for a ledger database server that does
        not answer yet; by default it fails at once, naming it."""
        self.config = config
        self.wait_for_store = wait_for_store
        self.ledger: SQLLedger | None = None
        self.gateway: Gateway | None = None
        self.monitors: Monitors | None = None
        self.system: System | None = None
        """Records and publishes what agents in other processes say (``POST /v1/messages``)."""
        self.bus: NatsBus | None = None
        self._monitor_rules: MonitorConfig | None = None
        """``[monitors] file``, loaded once, when the start checks what it can without a ledger."""
        self.tls_password: str | None = None
        """The encrypted TLS key's password, asked for once at start; never recorded or shown."""
        self._tasks: list[asyncio.Task[None]] = []
        self._traced = 0
        """``[otel]``: entries before this index are exported as spans."""
        self._span_exporter: SpanExporter | None = None
        self._span_maker: SpanMaker | None = None
        self._trace_round: asyncio.Future[int] | None = None
        """The export running on its thread, kept so that stopping waits for it."""
        self._trace_failing = False
        self._by_key: dict[tuple[str, str], str] = {}
        """(agent, idempotency key) -> intent id, rebuilt from the ledger at start."""
        self._key_locks: KeyedLocks[tuple[str, str]] = KeyedLocks()
        """Per (agent, idempotency key): one request at a time."""
        self._message_locks: KeyedLocks[str] = KeyedLocks()
        """Per message id: one copy of a message recorded or answered at a time."""
        self._checkpointed = -1
        self._ruleset: RulesetVersion | None = None
        self._charter_seen: tuple[int, int] | None = None
        """(mtime, size) of the charter file when it was last read."""
        self._seen = 0
        self._published = 0
        """The ledger size the stream is known to have taken all of (see :meth:`_publish_again`)."""
        self._published_key = ""
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        """Events for the webhook; when it is full, what comes after waits in the ledger."""
        self._untold = 0
        """Events queued for the webhook and not yet posted (or given up on)."""
        self._noted = 0
        """The position last noted in the ledger's notes as told to the webhook."""
        self._refusals: dict[tuple[str, bool], _Bucket] = {}
        """(claimed identity, verified) -> the rate limit of its Refusal entries."""
        self._clock_said: dict[bool, float] = {}
        """When (``time.monotonic``) this machine's clock was last said to be behind the ledger's
        latest time: under ``False`` within the skew, under ``True`` further than the skew."""
        self._names: set[str] = set()
        """Every agent and person named by a charter this service had in force."""
        self.undelivered_events = 0
        """Events the webhook refused or never answered (said on stderr)."""
        self._hosted = False
        self._agent_keys: dict[str, str] | None = None
        self.upstreams: Upstreams | None = None
        """``[mcp.servers.*]``: the MCP servers whose signed tools are operations here."""
        self._tools: set[str] = set()
        """The MCP tools registered with the gateway so far (a tool is registered once)."""
        self._results: dict[str, Any] = {}
        """Intent id -> the result its execution returned here, newest last, so a caller that
        waited (for a review, say) gets it; the ledger keeps only its digest. Bounded."""
        self._checkpointing = asyncio.Lock()
        self._succeeded: set[tuple[str, bytes]] = set()
        """(operation, canonical bytes of its ``same`` arguments) of every call that succeeded,
        for the operations a ``[[prerequisites]]`` names as ``after``: read from the ledger at
        start, then kept as this gateway (the one writer) records more."""

    @classmethod
    def hosting(
        cls,
        ledger: SQLLedger,
        gateway: Gateway,
        system: System,
        *,
        folder: Path,
        origin: str,
        public_url: str | None = None,
        agent_keys: Mapping[str, str] | None = None,
        console: ConsoleConfig | None = None,
    ) -> Service:
        """The HTTP API over a gateway built in this process: a scenario driver's, whose
        operations are closures over its simulated world. Nothing is read from charter, rules
        or operations files and no duty runs: the host settles reviews and signs checkpoints
        on its own clock, and :meth:`stop` leaves the ledger, gateway and bus to it.
        ``agent_keys``: who may sign requests when the gateway has no charter (a baseline)."""
        config = ServiceConfig(
            source=folder / "hosted",
            folder=folder,
            ledger=folder / "hosted.db",
            signing_key=None,
            origin=origin,
            charter=folder / "charter.json",
            ruleset=folder / "ruleset.json",
            policies=folder / "policies.cedar",
            schema=folder / "schema.cedarschema",
            operations=(),
            public_url=public_url,
            console=console,
        )
        service = cls(config)
        service._hosted = True
        service.ledger, service.gateway, service.system = ledger, gateway, system
        service._agent_keys = None if agent_keys is None else dict(agent_keys)
        service._names = set(agent_keys or ()) | set(system.known)
        if gateway.has_charter():
            service._learn_names(gateway.charter)
        service._learn_keys()  # a host started again on its ledger: a key used before stays used
        return service

    def _learn_keys(self) -> None:
        """Every (agent, idempotency key) the ledger's intents used, so that a request repeated
        after a restart meets the intent it made, not a second one."""
        ledger, _ = self._running()
        for stored in ledger.of_kind("Intent"):
            intent = decode_entry(stored.data)
            if isinstance(intent, Intent):
                self._by_key.setdefault((intent.agent, intent.idempotency_key), intent.id)

    # --- life ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check what needs no ledger, open (or make) the ledger, connect NATS, take the lease,
        install or resume, reconcile, start the duties.

        A start refused leaves no ledger it made: every check that needs none comes before it
        is made, and a ledger this start made is removed again if a later step fails. NATS is
        connected only once the ledger is open (connecting makes the system's stream if it is
        not there), and closed again if the start fails.

        The stream goes with the ledger: a start that fails and removes the ledger it made also
        deletes the stream it made, unless something else uses it already (a consumer on it, or
        a record on it that this start did not publish). Beside a ledger that stays (one that
        was there, or one another gateway made at the same moment and holds the lease of), the
        stream is the system's and stays: another gateway of the system may have connected to it
        and not published yet, and its publishes would wait for a stream nobody makes again.

        Raises:
            ConfigError: the signed charter or ruleset does not match the files, a prerequisite
                names no operation, the TLS files or the NATS URL or key are unusable;
            BusError: NATS cannot be reached; LeaseHeld: another live gateway holds the ledger.
        """
        if self._hosted:
            return
        config = self.config
        charter, ruleset = self._checked()
        login = self._bus_login()
        ledger, made = self._open_ledger()
        try:
            if config.nats_url is not None:
                from answerable.bus.nats import NatsBus  # nats-py only where a system runs on NATS

                self.bus = await NatsBus.connect(
                    config.nats_url,
                    charter.system,
                    name=f"answerable serve {charter.system}",
                    nkey_seed=login,
                )
            await self._start_on(ledger, charter, ruleset)
        except BaseException:
            alone = made and self._alone_on(ledger)  # the stream goes with the ledger it made
            if self.bus is not None:  # first: the stream is looked at while the lease is still held
                await self.bus.close(unmake=alone)
                self.bus = None
            if made:
                await self._unmake(ledger, alone=alone)
            elif self.ledger is None:  # refused before the start took the ledger (stop closes it after)
                ledger.close()
            raise

    def _checked(self) -> tuple[SystemCharter, RulesetVersion]:
        """The signed charter and ruleset, once everything a start checks without a ledger holds:
        said before one is made, since a refused start must leave none behind."""
        config = self.config
        self._charter_seen = _stamp(config.charter)  # before reading: a later write is followed
        charter = _record(config.charter, SystemCharter)
        ruleset = _record(config.ruleset, RulesetVersion)
        parsed = load_ruleset(_text(config.policies), _text(config.schema))
        if (parsed.ruleset_hash, parsed.schema_hash) != (ruleset.ruleset_hash, ruleset.schema_hash):
            raise ConfigError(
                f"{config.policies.name} or {config.schema.name} changed since the RI signed "
                f"{config.ruleset.name}: have the RI sign the new version"
            )
        if config.monitors is not None:  # loaded, and so checked, before a ledger is made
            self._monitor_rules = load_monitors(
                config.monitors, known_scopes=_scopes(config, charter, ruleset)
            )
        _check_prerequisites(config, ruleset)
        self.tls_password = _check_tls(config)  # for uvicorn, which loads the key again
        return charter, ruleset

    def _bus_login(self) -> str | None:
        """The NATS URL checked and the service's NATS seed loaded (None without logins), before
        a ledger is made: nats-py says only "invalid connect url option" of a bad URL."""
        config = self.config
        if config.nats_url is None:
            return None
        from answerable.bus.nats import shown, url_problem  # nats-py only for NATS

        problem = url_problem(config.nats_url)
        if problem is not None:
            raise ConfigError(f"{config.source.name}: [nats] url {shown(config.nats_url)}: {problem}")
        if config.nats_key is None:
            return None
        from answerable.bus.auth import nkey_seed  # logins on: the service has rights no agent has

        try:
            return nkey_seed(KeyPair.load(config.nats_key))
        except ConfigError as exc:
            raise ConfigError(f"{config.source.name}: [nats] key: {exc}") from exc

    def _open_ledger(self) -> tuple[SQLLedger, bool]:
        """The ledger, and whether this start made it (only a ledger it made may it remove).

        Opened as it is first, so a ledger that exists is never taken for one made here; one
        made counts only while it has no entry. (Another process that made it between the two
        opens writes only under the lease, which :meth:`_unmake` checks before removing it.)"""
        config = self.config
        target = config.ledger_url or config.ledger
        try:
            return open_ledger(target, signing_key=config.signing_key, patience=self.wait_for_store), False
        except NotALedger:
            pass  # none there yet (a file that is no ledger is refused again below)
        ledger = open_ledger(
            target,
            create=True,
            origin=config.origin,
            signing_key=config.signing_key,
            patience=self.wait_for_store,
        )
        try:
            return ledger, ledger.size() == 0
        except BaseException:
            ledger.close()
            raise

    def _alone_on(self, ledger: SQLLedger) -> bool:
        """Whether no other gateway's lease is on ``ledger`` (none is, or this start's own is):
        a ledger this start made, and its stream, are then this start's alone to remove."""
        try:
            row = ledger.lease()
        except AnswerableError:
            return False
        lease = None if self.gateway is None else self.gateway.lease
        return row is None or (lease is not None and (row.holder, row.pid) == (lease.holder, lease.pid))

    async def _unmake(self, ledger: SQLLedger, *, alone: bool) -> None:
        """Remove the ledger this start made, its start having failed: a refused serve leaves
        no ledger, key or schema. Left alone unless ``alone`` and, read again now, no other
        gateway's lease is on it (see :meth:`_alone_on`): one may have taken the new ledger while
        the bus closed. Never raises: the failure that brought this here is the one to say."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(AnswerableError):
            if not (alone and self._alone_on(ledger)):
                return
            if self.gateway is not None:
                self.gateway.close()
            ledger.close()
            self.ledger = self.gateway = None
            self.system = None
            self.monitors = None
            _remove_ledger(ledger)

    async def _start_on(self, ledger: SQLLedger, charter: SystemCharter, ruleset: RulesetVersion) -> None:
        """Take the lease, install or resume, reconcile, start the duties, on the opened ledger."""
        config = self.config
        # Opened within wait_for_store or not at all (by default a wrong address is said before
        # anything starts); from here on, a restart of the database server is waited out.
        ledger.patience = SERVING_PATIENCE
        self.ledger = ledger
        self._say_clock()
        opened = ledger.size()  # what the webhook is told starts here, start-up pauses included
        gateway = Gateway(ledger)
        self.gateway = gateway
        for op in config.operations:
            gateway.register(
                op.name,
                resolve_target(op.target, config.folder, f"operation {op.name}"),
                resource_class=op.resource_class,
                idempotent=op.idempotent,
                lookup=resolve_target(op.lookup, config.folder, f"operation {op.name}")
                if op.lookup
                else None,
                context=self._context_of(op.name),
            )
        self._learn_successes(ledger.of_kind("Execution"))
        if config.mcp is not None and config.mcp.servers:
            from answerable.toolschema import signed_pins
            from answerable.upstream import Upstreams  # the mcp SDK only where a config names servers

            extra = {p.operation: {"prerequisites": "Set<String>"} for p in config.prerequisites}
            self.upstreams = Upstreams(
                config.mcp, signed_pins(ruleset.schema_text), self._offer_tools, extra_context=extra
            )
            await self.upstreams.start()
        if ledger.of_kind("SystemCharter"):
            await gateway.resume_from_ledger()
        await gateway.install(charter, ruleset)
        for stored in ledger.of_kind("SystemCharter"):
            named = decode_entry(stored.data)
            if isinstance(named, SystemCharter):
                self._learn_names(named)
        self._ruleset = ruleset
        for recovered in await gateway.reconcile():  # a call a crash cut off counts once it is settled
            self._learn_outcome(recovered)
        self._learn_keys()
        if config.webhook is not None:
            # Told from where the last service's webhook was told up to: events written while no
            # service ran (a halt by the CLI, say) are told now, not lost with a position kept in
            # memory. A ledger with no note yet (new, or kept by an earlier version) starts here.
            noted = ledger.get_note(_NOTIFIED)
            self._seen = opened if noted is None or not noted.isdigit() else min(int(noted), ledger.size())
            if noted is None:  # noted now: a service killed before its first event still says where
                ledger.put_note(_NOTIFIED, str(self._seen))
            self._noted = self._seen
        self.system = System(
            ledger,
            gateway,
            agents=[a.name for a in charter.agents],
            bus=self.bus or MemoryBus(),
            clock=gateway.clock,
            ids=gateway.ids,
        )
        if self.bus is not None:
            await self._publish_again(ledger, self.bus, charter.system)
        if self._monitor_rules is not None:
            self.monitors = Monitors(
                self._monitor_rules,
                ledger,
                clock=gateway.clock,
                ids=gateway.ids,
                fence=lambda: gateway.lease.epoch,
            )
            await self.monitors.poll()  # the whole ledger once: a breach left unanswered is answered now
        self._tasks = [
            asyncio.create_task(self._every(config.settle_every, self._settle)),
            asyncio.create_task(self._every(config.checkpoint_every, self._checkpoint)),
        ]
        if self.bus is not None:
            self._tasks.append(asyncio.create_task(self._every(1.0, self._note_published)))
        if config.webhook is not None:
            self._tasks.append(asyncio.create_task(self._every(config.settle_every, self._watch)))
            self._tasks.append(asyncio.create_task(self._notify(config.webhook)))
        if config.otel_endpoint is not None:
            import logging

            # The exporter logs each attempt it retries, and a malformed OTEL_EXPORTER_OTLP_HEADERS
            # element verbatim (a token, say): the service says what failed in its own words.
            logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
            self._traced = ledger.size()
            print(
                f"answerable serve: otel: exporting live from entry {self._traced} to "
                f"{shown(config.otel_endpoint)} "
                f"(earlier entries: answerable otel-export --start 0)",
                file=sys.stderr,
                flush=True,
            )
            self._tasks.append(asyncio.create_task(self._every(config.settle_every, self._trace)))

    async def _publish_again(self, ledger: SQLLedger, bus: Any, system: str) -> None:
        """Publish again what a service before this one recorded and may not have got onto the
        stream: it waited in that one's outbox (NATS away) when it died. Everything after the
        last size noted as all taken goes again, in the ledger's order; the stream drops a repeat
        within its duplicate window, and the subscribers' handled marks drop an older one. A
        ledger with no note yet (new, or kept by an earlier version) starts one at its size."""
        key = self._published_key = f"published:{system}"
        noted = await asyncio.to_thread(ledger.get_note, key)
        size = await asyncio.to_thread(ledger.size)
        start = size if noted is None or not noted.isdigit() else min(int(noted), size)
        again = 0
        for first in range(start, size, 1024):
            for stored in await asyncio.to_thread(ledger.entries, first, min(first + 1024, size)):
                if stored.kind not in ("Message", "ExternalEvent"):
                    continue
                record = decode_entry(stored.data)
                if not isinstance(record, Message | ExternalEvent) or record.topic is None:
                    continue  # an event recorded in process: no service published it
                # As it was published: a payload too big for the entry went to a blob.
                record = record.model_copy(update={"payload": payload_of(ledger, record.payload)})
                try:
                    await bus.publish(record.topic, record)
                except RecordInvalid as exc:  # larger than this server takes: said, not fatal
                    print(f"answerable serve: not published again: {exc}", file=sys.stderr, flush=True)
                    continue
                again += 1
        if again:
            print(
                f"answerable serve: published again {again} records recorded after entry {start} "
                "(a service before this one may not have)",
                file=sys.stderr,
                flush=True,
            )
        self._published = start
        if not bus.waiting:  # all of it taken: note so; else the duty notes it once it is
            await asyncio.to_thread(ledger.put_note, key, str(size))
            self._published = size

    async def _note_published(self) -> None:
        """Note how far the stream has taken the ledger: the size read while nothing this
        service recorded waits to be published (none in flight, the outbox empty)."""
        ledger, system, gateway = self.ledger, self.system, self.gateway
        if ledger is None or system is None or self.bus is None or gateway is None:
            return
        if not gateway.lease.held:  # deposed: the active service notes its own progress
            return
        size = ledger.size()  # read before the two checks, with no await between them
        if system.unpublished or self.bus.waiting or size <= self._published:
            return
        await asyncio.to_thread(ledger.put_note, self._published_key, str(size))
        self._published = size

    async def _trace(self) -> None:
        """Export the entries appended since the last round as spans, on a thread of its own:
        the gateway never waits for the endpoint. What the endpoint refuses is tried again from
        the first entry it did not take on the next round (the spans are made from the ledger,
        so none is lost and none is sent twice); a refusal is said once on stderr, and so is the
        recovery."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from answerable.otel import SpanMaker, export_ledger

        ledger, _ = self._running()
        endpoint = self.config.otel_endpoint
        size = ledger.size()
        if endpoint is None or size <= self._traced:
            return
        if self._span_exporter is None or self._span_maker is None:
            self._span_exporter = OTLPSpanExporter(endpoint=endpoint, timeout=5)
            self._span_maker = SpanMaker(ledger)
        exporter, maker, start = self._span_exporter, self._span_maker, self._traced

        def one_round() -> int:
            export_ledger(ledger, exporter, start=start, stop=size, where=shown(endpoint), maker=maker)
            return size

        self._trace_round = asyncio.ensure_future(asyncio.to_thread(one_round))
        try:
            # Shielded: a stop that cancels this duty waits for the round instead of sending
            # the same spans again beside it.
            await asyncio.shield(self._trace_round)
        except ExportFailed as exc:
            self._traced = exc.start
            if not self._trace_failing:
                print(
                    f"answerable serve: otel: {shown(endpoint)} did not take the spans from entry "
                    f"{exc.start}; "
                    "trying again every round (nothing is lost: spans are made from the ledger)",
                    file=sys.stderr,
                    flush=True,
                )
            self._trace_failing = True
            return
        if self._trace_failing:
            print(f"answerable serve: otel: {shown(endpoint)} takes spans again", file=sys.stderr, flush=True)
        self._traced, self._trace_failing = size, False

    async def _stop_tracing(self) -> None:
        """Let a round in flight finish, send a last one unless the endpoint is down, close."""
        last = self._trace_round
        if last is not None:
            await asyncio.wait([last], timeout=15)
            if not last.done():
                return  # still sending: a last round beside it would send its spans twice
            failure = last.exception()
            if isinstance(failure, ExportFailed):
                self._traced, self._trace_failing = failure.start, True
            elif failure is None:
                self._traced = max(self._traced, last.result())
        if not self._trace_failing:
            with contextlib.suppress(AnswerableError):
                await self._trace()
        if self._span_exporter is not None:
            await asyncio.to_thread(self._span_exporter.shutdown)

    async def stop(self) -> None:
        """Stop the duties, sign a last checkpoint, release the lease, close the ledger."""
        if self._hosted:
            await self._flush_refusals()
            return
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks:  # it started: it held the lease, so it records and signs the last word
            await self._flush_refusals()
            if self.config.otel_endpoint is not None:
                await self._stop_tracing()
            with contextlib.suppress(AnswerableError):
                await self._checkpoint(final=True)
        if self.bus is not None:
            await self.bus.close()
        if self.upstreams is not None:
            await self.upstreams.stop()
        if self.gateway is not None:
            self.gateway.close()
        if self.ledger is not None:
            self.ledger.close()

    async def _offer_tools(self) -> None:
        """Register each upstream tool the signed rules let out, once (called again whenever a
        server's list changes; a tool withheld later stays registered and refuses to run)."""
        upstreams, gateway = self.upstreams, self.gateway
        if upstreams is None or gateway is None:
            return
        from answerable.toolschema import args_from_schema

        for operation, offer in upstreams.offers().items():
            if operation in self._tools or upstreams.standing(operation) is not None:
                continue
            try:
                gateway.register(
                    operation,
                    _tool_call(upstreams, operation),
                    resource_class=operation,
                    args=args_from_schema(operation, offer.input_schema),
                    context=self._context_of(operation),
                )
            except ConfigError as exc:  # this tool only: the server's other tools stay offered
                upstreams.refuse(operation, str(exc))
                print(f"answerable serve: {exc}", file=sys.stderr, flush=True)
                continue
            self._tools.add(operation)

    def _context_of(self, operation: str) -> Any:
        """The Cedar context builder of ``operation``: its arguments, and for one a
        ``[[prerequisites]]`` names, ``prerequisites``: the ``after`` operations that already
        succeeded with the same ``same`` arguments, as the ledger shows."""
        rules = [p for p in self.config.prerequisites if p.operation == operation]
        if not rules:
            return arguments_as_context

        def context(args: BaseModel) -> dict[str, Any]:
            values = arguments_as_context(args)
            met = [p.after for p in rules if (p.after, _key_of(values, p.same)) in self._succeeded]
            return {**values, "prerequisites": sorted(set(met))}

        return context

    def _learn_successes(self, executions: list[StoredEntry]) -> None:
        """Remember the succeeded calls of every prerequisite's ``after`` operation."""
        ledger = self.ledger
        wanted: dict[str, list[tuple[str, ...]]] = {}
        for p in self.config.prerequisites:
            wanted.setdefault(p.after, []).append(p.same)
        if ledger is None or not wanted:
            return
        for stored in executions:
            execution = decode_entry(stored.data)
            if not isinstance(execution, Execution) or execution.status != "succeeded":
                continue
            if execution.operation not in wanted:
                continue
            intent = decode_entry(ledger.find(execution.intent_id).data)
            if isinstance(intent, Intent):
                for same in wanted[execution.operation]:
                    self._succeeded.add((execution.operation, _key_of(intent.arguments, same)))

    def _learn_outcome(self, outcome: Outcome) -> None:
        if outcome.execution is None or outcome.execution.status != "succeeded":
            return
        for p in self.config.prerequisites:
            if p.after == outcome.intent.operation:
                self._succeeded.add((p.after, _key_of(outcome.intent.arguments, p.same)))

    def _keep_result(self, intent_id: str, result: Any) -> None:
        """Keep a call's answer for its status and its receipt: as the JSON value its recorded
        digest was taken of, or not at all when it has none (the digest is then of its repr, and
        a raw value put in a document failed the status read and the receipt with a 500)."""
        result = json_result(result)
        if result is None:
            return
        self._results[intent_id] = result
        while len(self._results) > 10_000:
            del self._results[next(iter(self._results))]

    async def receipt(self, intent_id: str, seconds: float) -> tuple[int, dict[str, Any]]:
        """The receipt of an intent's call (see :mod:`answerable.receipt`), once the intent is
        final; a checkpoint is signed at once when none covers it yet."""
        from answerable.receipt import build_receipt

        ledger, gateway = self._running()
        doc = await self.wait(intent_id, seconds) if seconds else self.status_of(intent_id)
        if not doc["done"]:
            return 409, {
                "error": f"intent {intent_id} is not final ({doc['status']}): its receipt comes after",
                "reason_code": "not_final",
                "status": doc["status"],
            }
        decision, review, execution = gateway.records_of(intent_id)
        if decision is None:  # refused before any decision (a halt): nothing to prove yet
            return 409, {"error": f"intent {intent_id} has no decision", "reason_code": "not_final"}
        # Every answer a person gave, approvals and denials: a receipt of a denied call shows who.
        approvals = () if review is None else tuple(a.id for a in gateway.reviews.state(review.id).approvals)
        ids = {
            "intent": intent_id,
            "decision": decision.id,
            "execution": None if execution is None else execution.id,
        }
        result = self._results.get(intent_id)
        built = build_receipt(ledger, ids, approvals=approvals, result=result)
        if built is None:  # no checkpoint covers it yet: sign one (callers waiting share it)
            await self._checkpoint()
            built = build_receipt(ledger, ids, approvals=approvals, result=result)
        if built is None:
            return 503, {"error": "no checkpoint covers the call yet", "reason_code": "no_checkpoint"}
        return 200, built

    def control_doc(self) -> dict[str, Any]:
        """The stops in force (``GET /v1/control``): what a resume must name to lift them."""
        _, gateway = self._running()
        return control_doc(gateway)

    def operations(self) -> list[dict[str, Any]]:
        """What agents may propose: each operation, and for an MCP tool its description, input
        schema and whether it is withheld now (and why)."""
        _, gateway = self._running()
        listed: list[dict[str, Any]] = [
            {"name": op.name, "kind": "function", "resource_class": op.resource_class}
            for op in self.config.operations
        ]
        if self.upstreams is not None:
            for operation, offer in sorted(self.upstreams.offers().items()):
                listed.append(
                    {
                        "name": operation,
                        "kind": "mcp",
                        "server": offer.server,
                        "tool": offer.tool,
                        "description": offer.description,
                        "input_schema": dict(offer.input_schema),
                        "withheld": self.upstreams.standing(operation),
                    }
                )
        del gateway
        return listed

    async def _every(self, seconds: float, duty: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await duty()
            except LeaseLost:
                return  # deposed: a standby holds the ledger now
            except AnswerableError:
                continue  # recorded where it matters; try again on the next round
            except Exception as exc:  # a bug must not stop reviews, monitors and checkpoints for good
                print(
                    f"answerable serve: {duty.__name__}: {type(exc).__name__}: {exc}",
                    file=sys.stderr,
                    flush=True,
                )

    async def _settle(self) -> None:
        await self._follow_charter()
        try:
            if self.gateway is not None:
                for recovered in await self.gateway.reconcile_held():  # a stop that held a claim lifted
                    self._learn_outcome(recovered)
                for outcome in await self.gateway.settle_reviews():
                    self._learn_outcome(outcome)
                    self._keep_result(outcome.intent.id, outcome.result)
        finally:  # a review that cannot be acted on this round stops neither refusals nor monitors
            await self._flush_refusals(due=True)
            await self._watch_invariants()
        self._say_clock()

    def _say_clock(self) -> None:
        """Say on stderr when this machine's clock falls behind the latest time another clock gave
        the ledger, or further behind than the skew: at start, and in the round it first happens
        (a writer's clock far ahead turns the review clock's floor off for as long as it was
        ahead; its owner learns it here, not from a lapsed approval counting again). Each
        standing at most once in :data:`CLOCK_SAID_EVERY`, and "behind" not within it of "far
        behind": a gap that hovers about a threshold is not said every round, and a clock that
        falls behind again next week is said again."""
        if self.ledger is None:
            return
        with contextlib.suppress(AnswerableError):  # the store away: said in a later round
            said = _clock_behind(self.ledger.latest_time(), time.time_ns())
            if said is None:
                return
            far, text = said
            now = time.monotonic()
            waits_on = (True,) if far else (True, False)  # "behind" waits on "far behind" too
            if all(now - self._clock_said.get(s, -math.inf) >= CLOCK_SAID_EVERY for s in waits_on):
                print(f"answerable serve: {text}", file=sys.stderr, flush=True)
                self._clock_said[far] = now

    async def _follow_charter(self) -> None:
        """Put a new charter version in force when the RI writes one to the ``[charter]`` file
        (``answerable charter amend``): keys added, rotated or revoked take effect at once. One
        that does not chain from the charter in force is said on stderr and changes nothing."""
        stamp = _stamp(self.config.charter)
        if stamp == self._charter_seen or self.gateway is None or self._ruleset is None:
            return
        self._charter_seen = stamp
        try:
            charter = _record(self.config.charter, SystemCharter)
            if charter.id != self.gateway.charter.id:
                await self.gateway.install(charter, self._ruleset)
                self._learn_names(charter)
                print(
                    f"answerable serve: charter v{charter.version} ({charter.id}) is in force",
                    file=sys.stderr,
                    flush=True,
                )
        except LeaseLost:
            raise
        except AnswerableError as exc:
            if not isinstance(exc, NotAuthorized | SignatureInvalid | ConfigError | RecordInvalid):
                self._charter_seen = None  # the store was busy, say: try again next round
            print(
                f"answerable serve: {self.config.charter.name} not put in force: {exc}; "
                f"charter v{self.gateway.charter.version} stays",
                file=sys.stderr,
                flush=True,
            )

    async def _watch_invariants(self) -> None:
        """Evaluate the monitors on the entries appended since they last looked (by anyone)."""
        if self.monitors is not None:
            await self.monitors.poll()

    async def _settle_now(self) -> None:
        """Settle at once after an answer over HTTP (the loop would within ``settle_every``)."""
        with contextlib.suppress(AnswerableError):
            await self._settle()

    async def _checkpoint(self, *, final: bool = False) -> None:
        """Sign (and publish, and have witnessed) a checkpoint if the ledger grew; ``final`` signs
        one even if not, since an interval's checkpoint may have been cut short by the stop. One
        at a time (the interval's and a receipt's), so the published tree only ever grows."""
        async with self._checkpointing:
            await self._checkpoint_now(final=final)

    async def _checkpoint_now(self, *, final: bool) -> None:
        ledger = self.ledger
        if ledger is None or (ledger.size() == self._checkpointed and not final):
            return
        if self.config.publish_dir is not None:
            done = await asyncio.to_thread(
                publish, ledger, self.config.publish_dir, hashes_only=not self.config.public_entries
            )
            self._checkpointed = done.size
            note = done.note
        else:
            note = await asyncio.to_thread(ledger.checkpoint)
            self._checkpointed = checkpoint_size(note)
        for url, key in self.config.witnesses:
            note = await asyncio.to_thread(self._cosigned, note, url, key)
        if self.config.witnesses and self.config.publish_dir is not None:
            await asyncio.to_thread(republish_checkpoint, self.config.publish_dir, note)

    def _cosigned(self, note: str, url: str, key: str) -> str:
        """``note`` with the witness's cosignature added, or as it was if the witness is away
        (the next checkpoint asks again; a refusal is said on stderr: it means a rewrite)."""
        ledger, _ = self._running()
        size = checkpoint_size(note)
        try:
            return request_cosignature(
                note, url, CosignatureVerifier.from_key(key), lambda old: ledger.consistency_proof(old, size)
            )
        except AnswerableError as exc:
            print(f"answerable serve: witness {shown(url)}: {exc}", file=sys.stderr, flush=True)
            return note

    async def _watch(self) -> None:
        """Queue a webhook event for each review opened, escalated or closed, halt, pause and alert."""
        ledger, _ = self._running()
        size = ledger.size()
        # A page at a time, and none while the queue is full: behind a webhook that is down, the
        # events wait in the ledger, and a round that finds the queue full reads nothing (it
        # read from the first untold event to the end, on the loop, each round). Entries the
        # webhook is not told of are read once, in the round after they were written.
        while self._seen < size and not self._events.full():
            page_end = min(size, self._seen + _WATCH_PAGE)
            for stored in ledger.entries(self._seen, page_end):
                if stored.kind in _NOTIFY:
                    try:
                        self._events.put_nowait(_event_of(stored))
                    except asyncio.QueueFull:
                        # The webhook is far behind: this event and the rest wait in the ledger,
                        # for a later round. Dropped, they were noted as told with those around them.
                        self._seen = stored.index
                        return
                    self._untold += 1
            self._seen = page_end
        if self._seen == size and not self._untold:
            await self._note_told(size)

    async def _note_told(self, position: int) -> None:
        """Note in the ledger that the webhook was told of everything before ``position``: the
        next service starts there. Only the lease's holder notes (a deposed one is behind)."""
        ledger, gateway = self.ledger, self.gateway
        if ledger is None or gateway is None or position <= self._noted or not gateway.lease.held:
            return
        try:
            await asyncio.to_thread(ledger.put_note, _NOTIFIED, str(position))
        except AnswerableError:  # the store away: noted next time, and told again at worst
            return
        self._noted = position

    async def _notify(self, url: str) -> None:
        """Post each event to the webhook, retrying with back-off; the gateway never waits for it.

        An event the webhook does not take (refused with a 4xx at once, or no answer or a 5xx
        after six attempts) is counted in ``undelivered_events`` and said on stderr, once until
        an event goes through again: the people it was to reach must learn from somewhere that
        they were not told (the ledger holds every event). The webhook is named without its path,
        which is often its secret.
        """
        where = shown(url, path_secret=True)
        failing = False
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                event = await self._events.get()
                why = ""
                for attempt in range(6):
                    try:
                        answer = await http.post(url, json=event)
                    except Exception as exc:  # any failure is said, and the sender lives on
                        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    else:
                        why = f"answered {answer.status_code}"
                        if answer.status_code < 300:
                            why = ""
                            break
                        if answer.status_code < 500:  # refused or moved: asking again changes nothing
                            break
                    await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
                if why:
                    self.undelivered_events += 1
                    if not failing:
                        print(
                            f"answerable serve: webhook {where} did not take the {event['kind']} event "
                            f"{event['id']} ({_printable(why.replace(url, where), 300)}); the ledger holds "
                            "it, and this is said once until an event goes through",
                            file=sys.stderr,
                            flush=True,
                        )
                elif failing:
                    print(
                        f"answerable serve: webhook {where} takes events again", file=sys.stderr, flush=True
                    )
                failing = bool(why)
                self._untold -= 1
                await self._note_told(self._seen if not self._untold else int(event["index"]) + 1)

    # --- reading -------------------------------------------------------------------------------------

    def _running(self) -> tuple[SQLLedger, Gateway]:
        if self.ledger is None or self.gateway is None:
            raise ConfigError("the service is not running")
        return self.ledger, self.gateway

    def status_of(self, intent_id: str) -> dict[str, Any]:
        """Where an intent stands, read from the ledger: its decision, review and execution."""
        ledger, gateway = self._running()
        intent = decode_entry(ledger.find(intent_id).data)
        if not isinstance(intent, Intent):
            raise _HTTPError(404, "not_an_intent", f"entry {intent_id} is a {intent.kind}, not an intent")
        decision, review, execution = gateway.records_of(intent_id)
        status, done = "recorded", False
        if execution is not None:
            status, done = execution.status, True
        elif decision is not None and decision.effect == "deny":
            status, done = "denied", True
        elif review is not None:
            state = gateway.reviews.state(review.id)
            status = {"denied": "denied", "expired": "expired"}.get(state.status, "review")
            done = status != "review"
        return {
            "intent_id": intent_id,
            "agent": intent.agent,
            "operation": intent.operation,
            "arguments": intent.arguments,
            "idempotency_key": intent.idempotency_key,
            "status": status,
            "done": done,
            "decision": _decision_doc(decision),
            "review_id": None if review is None else review.id,
            "execution": None
            if execution is None
            else {**_execution_doc(execution), "response_digest": execution.response_digest},
            **({"result": self._results[intent_id]} if intent_id in self._results else {}),
        }

    # --- acting ------------------------------------------------------------------------------------

    async def submit(self, agent: str, body: SubmitBody) -> tuple[int, dict[str, Any]]:
        """Govern one intent for ``agent``; (HTTP status, document). The monitors then read what
        it added before the answer goes back, so a breach pauses its class before the next call."""
        try:
            return await self._submit(agent, body)
        finally:
            try:
                await self._watch_invariants()
            except Exception as exc:  # the call is done: its answer must not turn into a 500
                print(f"answerable serve: monitors: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    async def _submit(self, agent: str, body: SubmitBody) -> tuple[int, dict[str, Any]]:
        ledger, gateway = self._running()
        for cause in body.causes:  # an agent cites what is in the ledger, nothing else
            try:
                ledger.find(cause)
            except EntryNotFound:
                return 422, {
                    "error": f"cause {cause!r} is no entry of the ledger",
                    "reason_code": "unknown_cause",
                }
        if (
            self.upstreams is not None
            and "." in body.operation
            and body.operation.split(".", 1)[0] in self.upstreams.servers
        ):
            await self.upstreams.awaiting(body.operation)
            why = self.upstreams.standing(body.operation)
            if why is not None:  # refused before it is an intent: the tool is not one the RI signed
                raise _HTTPError(409, "tool_withheld", why)
        if body.idempotency_key is None:
            outcome = await gateway.submit(self._intent(agent, body))
            self._learn_outcome(outcome)
            self._keep_result(outcome.intent.id, outcome.result)
            return 200, outcome_doc(outcome)
        slot = (agent, body.idempotency_key)
        async with self._key_locks.hold(slot):
            return await self._submit_once(slot, agent, body)

    async def _submit_once(
        self, slot: tuple[str, str], agent: str, body: SubmitBody
    ) -> tuple[int, dict[str, Any]]:
        """Submit under the idempotency key's lock: the same key and arguments give the intent
        already made, other arguments a 409."""
        _, gateway = self._running()
        existing = self._by_key.get(slot)
        if existing is not None:
            doc = self.status_of(existing)
            if doc["operation"] == body.operation and _same(
                doc["arguments"], _as_recorded(gateway, body.operation, body.arguments)
            ):
                return 200, {**doc, "existing": True}
            return 409, {
                "error": f"idempotency key {body.idempotency_key!r} was used by intent {existing} "
                "with other arguments",
                "reason_code": "idempotency_conflict",
                "intent_id": existing,
            }
        intent = self._intent(agent, body)
        self._by_key[slot] = intent.id
        try:
            outcome = await gateway.submit(intent)
        except AnswerableError:
            if not self._recorded(intent.id):
                del self._by_key[slot]
            raise
        self._by_key[slot] = outcome.intent.id  # the gateway's own head may name an earlier intent
        self._learn_outcome(outcome)
        self._keep_result(outcome.intent.id, outcome.result)
        return 200, outcome_doc(outcome)

    async def answer(self, person: str, review_id: str, approval: Approval) -> dict[str, Any]:
        """Record ``person``'s signed answer to a review (from ``/v1`` or the console), then settle
        at once. The queue checks everything else (role, signature, binding, state).

        Raises:
            ApprovalRefused: the queue refuses the answer, with its reason code.
        """
        if approval.by != person or approval.review_id != review_id:
            raise _HTTPError(
                403, "not_yours", "the Approval must be by the request's signer, for this review"
            )
        _, gateway = self._running()
        _not_ahead(approval.at, gateway.clock.now_ns(), "Approval")
        state = await gateway.reviews.submit(approval)
        asyncio.get_running_loop().create_task(self._settle_now())
        return {"id": approval.id, "verdict": approval.verdict, "review_id": review_id, "state": state.status}

    async def stop_scope(self, person: str, action: str, scope_text: str, reason: str) -> dict[str, Any]:
        """Record ``person``'s halt or pause of a scope (from ``/v1`` or the console).

        With ``warning`` when the stop reaches nothing the charter names (a typo in an agent's name).

        Raises:
            AnswerableError: ``bad_scope`` (422), the scope does not parse; RecordInvalid: a blank reason.
        """
        ledger, gateway = self._running()
        try:
            scope = scope_from_text(scope_text)
        except ConfigError as exc:
            raise _HTTPError(422, "bad_scope", str(exc)) from exc
        if action == "halt":
            made = await gateway.control.halt(by=person, reason=reason, scope=scope)
        elif action == "pause":
            made = await gateway.control.pause(by=person, reason=reason, scope=scope)
        else:
            raise _HTTPError(
                422,
                "bad_action",
                f"action {action!r}: halt or pause (a resume is signed: POST /v1/control/resume)",
            )
        doc = {"id": made.id, "action": made.action, "scope": made.scope.label(), "by": made.by}
        warning = await asyncio.to_thread(names_nothing, ledger, scope, gateway.control.charters)
        return doc if warning is None else {**doc, "warning": warning}

    async def resume(self, person: str, made: Control) -> dict[str, Any]:
        """Record a resume ``person`` signed (from ``/v1`` or the console).

        Raises:
            NotAuthorized, SignatureInvalid: the charter does not let its signer lift these stops.
        """
        if made.by != person:
            raise _HTTPError(403, "not_yours", "the resume must be by the request's signer")
        ledger, gateway = self._running()
        label = made.scope.label()
        if not any(s.scope.label() == label and s.id in made.causes for s in gateway.control.state().stops):
            try:  # one sent again is refused below as the entry it already is
                ledger.find(made.id)
            except EntryNotFound:
                # Answered 200 it would read as lifted while the stop stays (the console says so too).
                raise _HTTPError(
                    409,
                    "not_stopped",
                    f"the resume lifts nothing: no stop in force on {label} is among its causes",
                ) from None
        made = await gateway.control.record_resume(made)
        return {"id": made.id, "action": made.action, "scope": made.scope.label(), "by": made.by}

    async def checkpoint(self) -> str:
        """The latest signed checkpoint note, signing one first if none covers the whole ledger."""
        ledger, _ = self._running()
        note = ledger.latest_checkpoint()
        if note is None or checkpoint_size(note) < ledger.size():
            await self._checkpoint()
            note = ledger.latest_checkpoint()
        if note is None:
            raise _HTTPError(409, "no_checkpoint", "no checkpoint is signed yet")
        return note

    def chartered(self, name: str) -> bool:
        """Whether any charter this service has had in force names ``name`` (a revoked agent or a
        removed person included: a request in their name is still worth recording)."""
        return name in self._names

    def _learn_names(self, charter: SystemCharter) -> None:
        self._names |= charter.agent_names() | {p.identity for p in charter.people}
        if self.system is not None:  # the charter in force says who may send
            self.system.known = frozenset(a.name for a in charter.agents)

    async def message(self, agent: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """Record and publish a message ``agent`` built and signed; (HTTP status, document).

        The same message sent again (a retry after a lost answer) is published again and
        answered as recorded: JetStream drops the second copy inside its duplicate window."""
        ledger, gateway = self._running()
        if self.system is None:
            raise _HTTPError(503, "starting", "the service is starting")
        try:
            message = decode_entry(raw)
        except RecordInvalid as exc:
            raise _HTTPError(422, "bad_body", str(exc)) from exc
        if not isinstance(message, Message):
            raise _HTTPError(422, "bad_body", f"want a Message record, got a {message.kind}")
        if message.sender != agent:
            raise _HTTPError(
                403, "not_sender", f"{agent} signed the request; the message names {message.sender}"
            )
        _not_ahead(message.at, gateway.clock.now_ns(), "Message")
        key = self.agent_keys().get(agent)
        try:
            verify_signature(key or "", message.signature, signing_bytes(message), who=agent)
        except SignatureInvalid as exc:
            raise _HTTPError(401, "bad_signature", str(exc)) from exc
        for cause in message.causes:  # a message cites what is in the ledger, nothing else
            try:
                ledger.find(cause)
            except EntryNotFound:
                raise _HTTPError(422, "unknown_cause", f"cause {cause!r} is no entry of the ledger") from None
        # One copy of a message at a time: two resends at once were both "new", and the second's
        # append was refused as an id used twice (a 422, and a Refusal in the sender's name).
        async with self._message_locks.hold(message.id):
            answer = await self._published_before(message)
            if answer is not None:
                return answer
            try:
                await self.system.publish_message(message, decided=False)
            except MessageRefused as exc:
                return 409, {"error": str(exc), "reason_code": exc.reason_code, "refusal_id": exc.refusal_id}
            except RecordInvalid:
                answer = await self._published_before(message)  # another process recorded it first
                if answer is None:
                    raise
                return answer
        return 200, {"message_id": message.id, "index": ledger.find(message.id).index, "duplicate": False}

    async def _published_before(self, message: Message) -> tuple[int, dict[str, Any]] | None:
        """The answer to a message recorded already (published again: its first publish may not
        have reached the stream), or None when it is new."""
        ledger, _ = self._running()
        if self.system is None:
            raise _HTTPError(503, "starting", "the service is starting")
        try:
            stored = ledger.find(message.id)
        except EntryNotFound:
            return None
        if not holds(stored.data, entry_bytes(message)):
            first = decode_entry(stored.data)
            if not (isinstance(first, Message) and _same_message(first, message)):
                raise _HTTPError(409, "id_used", f"message id {message.id} is used by another entry")
            message = first  # made again by a handler run again: the one recorded is the message
        await self.system.bus.publish(message.topic, message)
        return 200, {"message_id": message.id, "index": stored.index, "duplicate": True}

    async def ingest(self, agent: str, body: EventsBody) -> tuple[int, dict[str, Any]]:
        """Record outside events brought by ``agent`` (a driver, a connector) and publish them."""
        self._running()
        if self.system is None:
            raise _HTTPError(503, "starting", "the service is starting")
        made = await self.system.ingest(
            [(e.topic, e.source, e.type, e.payload) for e in body.events], brought_by=agent
        )
        return 200, {"event_ids": [e.id for e in made], "by": agent}

    async def record_refusal(
        self, claimed: str, *, verified: bool, target: str, reason_code: str, detail: str, body: bytes | None
    ) -> Refusal | None:
        """Record a refused request made in the name of ``claimed`` (a chartered identity),
        unless one of the same kind (verified or not) was recorded for them within
        :data:`REFUSALS_EVERY` seconds: then it is counted, the count goes into the next one
        recorded, and :meth:`stop` records the last one counted. Verified and unverified
        refusals are limited apart, so a forger in an agent's name cannot hide the agent's own."""
        _, gateway = self._running()
        refusal = Refusal(
            id=gateway.ids.new(),
            at=rfc3339(gateway.clock.now_ns()),
            claimed=claimed,
            verified=verified,
            channel="http",
            target=_printable(target, 300),
            reason_code=_printable(reason_code, 64) or "refused",
            detail=_printable(detail, 500),
            body_digest=None if body is None else digest(body),
        )
        now = time.monotonic()
        bucket = self._refusals.setdefault((claimed, verified), _Bucket())
        if now - bucket.last < REFUSALS_EVERY:
            bucket.suppressed += 1
            bucket.latest = refusal
            return None
        refusal = refusal.model_copy(update={"suppressed": bucket.suppressed})
        self._refusals[claimed, verified] = _Bucket(last=now)
        await self._append_refusal(refusal)
        return refusal

    async def _append_refusal(self, refusal: Refusal) -> None:
        ledger, gateway = self._running()
        await ledger.append([refusal], fence=gateway.lease.epoch)

    async def _flush_refusals(self, *, due: bool = False) -> None:
        """Record the last refusal each limit held back, with the count before it: at stop all of
        them; in each settle round (``due``) those whose interval has passed. A process killed
        then loses the count of one interval at most: before, held back until the next refusal
        or the stop, every count since the last one recorded was lost with it."""
        now = time.monotonic()
        for key, bucket in list(self._refusals.items()):
            latest, count = bucket.latest, bucket.suppressed
            if latest is None or (due and now - bucket.last < REFUSALS_EVERY):
                continue
            self._refusals[key] = _Bucket(last=now)  # before the await: refusals meanwhile count anew
            try:
                await self._append_refusal(latest.model_copy(update={"suppressed": count - 1}))
            except AnswerableError:  # the store away: kept for the next round (at stop, lost)
                kept = self._refusals.setdefault(key, _Bucket(last=now))
                kept.suppressed += count
                kept.latest = kept.latest or latest
        if not due:
            self._refusals.clear()

    def _recorded(self, intent_id: str) -> bool:
        ledger, _ = self._running()
        try:
            ledger.find(intent_id)
        except AnswerableError:
            return False
        return True

    def _intent(self, agent: str, body: SubmitBody) -> Intent:
        _, gateway = self._running()
        return gateway.intent(
            agent, body.operation, body.arguments, causes=body.causes, idempotency_key=body.idempotency_key
        )

    async def wait(self, intent_id: str, seconds: float) -> dict[str, Any]:
        """The intent's status once it is final, or as it is when ``seconds`` (at most 60) run out."""
        deadline = time.monotonic() + min(max(seconds, 0.0), 60.0)
        while True:
            doc = self.status_of(intent_id)
            if doc["done"] or time.monotonic() >= deadline:
                return doc
            await asyncio.sleep(0.1)

    def agent_keys(self) -> dict[str, str]:
        _, gateway = self._running()
        if self._agent_keys is not None and not gateway.has_charter():
            return dict(self._agent_keys)
        return {a.name: a.public_key for a in gateway.charter.agents if a.public_key}

    def people_keys(self) -> dict[str, str]:
        _, gateway = self._running()
        return {p.identity: p.public_key for p in gateway.charter.people}


def control_doc(gateway: Gateway) -> dict[str, Any]:
    """The stops in force, as ``GET /v1/control`` and the console show them."""
    return {
        "stops": [
            {
                "id": stop.id,
                "action": stop.action,
                "scope": stop.scope.label(),
                "by": stop.by,
                "reason": stop.reason,
                "at": stop.at,
            }
            for stop in gateway.control.state().stops
        ]
    }


def _tool_call(upstreams: Upstreams, operation: str) -> Any:
    """The call the gateway makes for one MCP tool: the operation is bound here, never read from
    the arguments, which reach the tool whole as one mapping (whatever their names)."""

    async def call(**arguments: Any) -> Any:
        return await upstreams.call(operation, arguments)

    return call


def _key_of(arguments: Mapping[str, Any], same: tuple[str, ...]) -> bytes:
    """The values of the ``same`` arguments, as canonical bytes (absent ones as absent)."""
    return canonical_bytes({name: arguments[name] for name in same if name in arguments})


def _cut(path: str, shown: int = 80) -> str:
    """A path a client sent, as a refusal repeats it: at most ``shown`` characters (a 7 KB path
    came back whole in the 404's body)."""
    return path if len(path) <= shown else f"{path[:shown]}... ({len(path):,} characters)"


def _event_of(stored: StoredEntry) -> dict[str, Any]:
    """The webhook event for an entry: its kind, id, index and time, and what names the stop,
    review or alert (never its arguments)."""
    record = orjson.loads(stored.data)
    event = {"kind": stored.kind, "id": stored.id, "index": stored.index, "at": record.get("at")}
    for field_name in ("action", "scope", "by", "reason", "operation", "review_id", "monitor"):
        if field_name in record:
            event[field_name] = record[field_name]
    return event


CLOCK_BEHIND_SAID = 2.0
"""Seconds this machine's clock may be behind the ledger's latest time before the service says
so at start (closer than that is the ordinary drift of clocks kept by NTP)."""

CLOCK_SAID_EVERY = 3600.0
"""Seconds before the service says again that its clock is behind (as far as it said last)."""


def _clock_behind(latest_ns: int | None, now_ns: int) -> tuple[bool, str] | None:
    """How far this machine's clock is behind the latest time another runtime's clock gave the
    ledger (``LedgerStore.latest_time``), as what to say and whether it is past ``SKEW``; None
    when it is not behind by more than :data:`CLOCK_BEHIND_SAID`.

    Reviews run on the later of the two, so a clock behind is harmless up to ``SKEW``, but its
    owner should learn of it before a review closes minutes earlier than their clock says; past
    ``SKEW`` the ledger's time is not trusted, and gateways on either clock may judge a lapse
    differently."""
    if latest_ns is None or latest_ns - now_ns <= CLOCK_BEHIND_SAID * 1e9:
        return None
    behind = (latest_ns - now_ns) / 1e9
    if behind <= SKEW:
        return False, (
            f"this machine's clock is {behind:,.1f} s behind the latest time a clock gave the ledger; "
            "reviews here keep the ledger's time, so they escalate, close and lapse by the clock "
            "that is ahead; keep the clocks in step (NTP)"
        )
    return True, (
        f"this machine's clock is {behind:,.0f} s behind the latest time a clock gave the ledger, more "
        f"than the {SKEW} s trusted: reviews here keep this machine's time, and a gateway on the "
        "other clock may judge an approval lapsed that this one counts; set the clocks right (NTP)"
    )


def _not_ahead(at: str, now_ns: int, kind: str) -> None:
    """Refuse a record its writer dated ahead of this service's clock by more than a request may
    be (``SKEW``): a record from the future would stand before what it caused in every timeline,
    review wait and report drawn from the ledger. A record dated in the past is kept: a message
    sent again after an outage is late, not wrong."""
    try:
        ahead = (parse_rfc3339(at) - now_ns) / 1e9
    except ValueError as exc:  # the record's pattern admits a 13th month; the calendar does not
        raise _HTTPError(422, "bad_body", f"the {kind}'s time {at!r} is no time: {exc}") from exc
    if ahead > SKEW:
        raise _HTTPError(
            422,
            "from_the_future",
            f"the {kind} is dated {at}, {ahead:,.0f} s ahead of this service's clock (at most {SKEW} s)",
        )


def _as_recorded(gateway: Gateway, operation: str, arguments: Mapping[str, Any]) -> Mapping[str, Any]:
    """The arguments as an Intent of ``operation`` records them (``true`` read as 1 by an integer
    field, say), so a request sent again byte for byte matches the intent it made; arguments the
    operation refuses are compared as sent."""
    op = gateway.operations.get(operation)
    if op is None:
        return arguments
    try:
        return canonical_arguments(op, arguments)[0]
    except AnswerableError:
        return arguments


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    try:
        return canonical_bytes(dict(a)) == canonical_bytes(dict(b))
    except RecordInvalid:
        return False


def _same_message(first: Message, again: Message) -> bool:
    """The same message made again by its sender: all but its time (and so its signature) and
    the order it listed its causes in (what it heard, heard in another order)."""
    apart = {"at", "signature", "causes", "payload"}
    return (
        first.model_dump(exclude=apart) == again.model_dump(exclude=apart)
        and sorted(first.causes) == sorted(again.causes)
        and _same(first.payload, again.payload)
    )


def _decision_doc(decision: Decision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "id": decision.id,
        "effect": decision.effect,
        "policy_ids": list(decision.policy_ids),
        "errors": list(decision.errors),
        "control_id": decision.control_id,
        "stop": decision.stop,
    }


def _execution_doc(execution: Execution) -> dict[str, Any]:
    return {"id": execution.id, "status": execution.status, "error": execution.error}


def outcome_doc(outcome: Outcome) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "intent_id": outcome.intent.id,
        "status": outcome.status,
        "done": outcome.status != "review",
        "decision": _decision_doc(outcome.decision),
        "review_id": None if outcome.review is None else outcome.review.id,
        "execution": None if outcome.execution is None else _execution_doc(outcome.execution),
    }
    if outcome.approval is not None:
        approval = outcome.approval
        doc["approval"] = {"id": approval.id, "by": approval.by, "verdict": approval.verdict}
    doc["result"] = json_result(outcome.result)
    return doc


def json_result(result: Any) -> Any:
    """A call's answer as the JSON value its Execution's digest was taken of (decoded from its
    canonical bytes), or None when it has no JSON form (NaN, a datetime, an integer past
    ±(2**53-1), a lone surrogate, a value that holds itself): a verifier recomputes that digest
    from what it is shown."""
    if result is None:
        return None
    try:
        return orjson.loads(canonical_bytes(result))
    except Exception:  # foreign code's value: RecordInvalid, or its own types failing inside
        return None


@dataclass
class _Bucket:
    """One rate limit of Refusal entries: when one was last recorded, and what was held back."""

    last: float = -math.inf
    suppressed: int = 0
    latest: Refusal | None = None


def _printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` with anything unprintable (a NUL, a newline) shown as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _pinned_tools(config: ServiceConfig, ruleset: RulesetVersion) -> set[str]:
    """The MCP tools that may become operations: those the signed schema pins, when the config
    names MCP servers. Known without a ledger or a server: a tool a server lists later is
    exposed only under such a pin."""
    if config.mcp is None or not config.mcp.servers:
        return set()
    from answerable.toolschema import signed_pins

    return set(signed_pins(ruleset.schema_text))


def _scopes(config: ServiceConfig, charter: SystemCharter, ruleset: RulesetVersion) -> set[str]:
    """The action classes a monitor may pause."""
    tools = _pinned_tools(config, ruleset)
    return (
        {f"operation:{op.name}" for op in config.operations}
        | {f"resource_class:{op.resource_class}" for op in config.operations}
        | {f"operation:{t}" for t in tools}
        | {f"resource_class:{t}" for t in tools}
        | {f"agent:{a.name}" for a in charter.agents}
    )


def _check_prerequisites(config: ServiceConfig, ruleset: RulesetVersion) -> None:
    """Each ``[[prerequisites]]`` names operations there are: ``[[operations]]`` or pinned tools."""
    known = {op.name for op in config.operations} | _pinned_tools(config, ruleset)
    for p in config.prerequisites:
        for name in (p.operation, p.after):
            if name not in known:
                raise ConfigError(
                    f"{config.source.name}: [[prerequisites]]: {name!r} is neither an [[operations]] "
                    "name nor a tool the signed rules declare"
                )


def _check_tls(config: ServiceConfig) -> str | None:
    """Load ``[server] tls_cert`` and ``tls_key`` as uvicorn will, before a ledger is made: a
    pair it cannot load is said naming the file (its contents never shown), where uvicorn
    raised OpenSSL's "PEM lib" once the ledger was made. The password of an encrypted key, asked
    for here once on a terminal, is returned for uvicorn (which asked again); with no terminal
    to ask on, such a key is refused in one line (OpenSSL's own prompts were two more lines)."""
    cert, key = config.tls_cert, config.tls_key
    where = f"{config.source.name}: [server]"
    if cert is None:
        if key is not None:
            raise ConfigError(f"{where} tls_key is set without tls_cert: give both")
        return None
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if path is not None:
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise ConfigError(f"{where} {name} {path}: {exc.strerror or exc}") from exc
    asked: list[str] = []

    def password() -> str:
        if not sys.stdin.isatty():
            raise _NoTerminal
        import getpass

        asked.append(getpass.getpass(f"password of the TLS key {key or cert}: "))
        return asked[-1]

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=password)
    except _NoTerminal:
        raise ConfigError(
            f"{where} tls_key {key or cert}: is encrypted with a password, and no terminal is there "
            "to ask for it"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{where} {_tls_fault(cert, key, exc)}") from exc
    return asked[-1] if asked else None


class _NoTerminal(Exception):
    """An encrypted TLS key, and no terminal to ask its password on."""


def _tls_fault(cert: Path, key: Path | None, exc: OSError) -> str:
    """Which of the two files OpenSSL refused, and why, in words (its own name no file)."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
    except (ssl.SSLError, OSError):
        return f"tls_cert {cert}: holds no PEM certificate"
    if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
        return f"tls_key {key or cert}: is not the private key of the certificate in tls_cert {cert}"
    return f"tls_key {key or cert}: holds no PEM private key (or one encrypted with a password)"


def _remove_ledger(ledger: SQLLedger) -> None:
    """Delete a ledger just made and closed: its file (and what SQLite keeps beside it) or its
    PostgreSQL tables, with its schema only if making the ledger made it (a schema someone
    granted, and whatever else is in it, stays: ``SQLLedger.discard``), then its signing key,
    which making it wrote (a new ledger never takes a key file that is there)."""
    try:
        ledger.discard()
    except Exception:  # the driver's own too: the start's failure is the one said
        return  # and the key stays with the tables it signs for
    with contextlib.suppress(OSError):
        ledger.key_path.unlink(missing_ok=True)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


def _text(path: Path) -> str:
    try:
        return read_capped(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _record(path: Path, kind: type[SystemCharter] | type[RulesetVersion]) -> Any:
    try:
        return kind.model_validate_json(_text(path))
    except ValidationError as exc:
        raise ConfigError(f"{path.name} is not a signed {kind.__name__}: {summary(exc)}") from exc


_SIGNED_HEADERS = ("signature", "signature-input", "content-digest")
"""The headers a request's signature stands on: each may come once."""


def build_app(service: Service, *, lifespan: bool = True) -> FastAPI:
    """The HTTP API, versioned under ``/v1``, and ``/healthz``. With ``lifespan`` the app starts
    and stops the service itself (a start refused there is said as the ASGI server says a failed
    startup, uvicorn with a traceback); ``answerable serve`` starts it first, to refuse with one
    line."""

    @contextlib.asynccontextmanager
    async def running(_app: FastAPI) -> AsyncIterator[None]:
        try:
            await service.start()
        except BaseException:
            # As ``answerable serve`` does: a start refused once it took the lease (a charter
            # that does not supersede the one in force) kept it, beating, and the ledger open.
            await service.stop()
            raise
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="answerable", version="1", lifespan=running if lifespan else None)

    async def signed(request: Request, keys: Mapping[str, str], *, once: bool = True) -> tuple[str, bytes]:
        """The signer and body of a request signed (RFC 9421) by one of ``keys``. ``once``: its
        nonce is spent in the store, so it is refused if sent again, even after a restart (reads
        are not: a read sent again within the clock window reads again, which changes nothing)."""
        # Each signature header once: two copies of one are read one way by the check and
        # another by whoever names the signer, and a request could be verified as one agent's
        # while its refusal was recorded, as verified, in another's name.
        doubled = [name for name in _SIGNED_HEADERS if len(request.headers.getlist(name)) > 1]
        if doubled:
            raise _HTTPError(401, "bad_signature_input", f"the request carries {doubled[0]} more than once")
        claimed = claimed_keyid(request.headers)
        if claimed is not None and service.chartered(claimed):
            request.state.claimed = claimed  # who it says it is: a refusal is recorded in their name
        try:
            body = await read_body(request, MAX_BODY)
        except BodyRefused as exc:
            raise _HTTPError(exc.status, exc.code, str(exc)) from None
        request.state.body = body
        # The target as sent: the raw path, percent-encodings and all (a decoded path is not
        # what the client signed), behind the public URL when a proxy terminates TLS.
        raw_path = request.scope.get("raw_path") or request.url.path.encode("utf-8")
        query = request.scope.get("query_string") or b""
        base = service.config.public_url or f"{request.url.scheme}://{request.url.netloc}"
        target = (
            base.rstrip("/") + raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        )
        try:
            who = verify_request(
                request.method, target, dict(request.headers), body, keys, now=int(time.time())
            )
        except NotAuthorized as exc:
            raise _HTTPError(401, exc.reason_code, str(exc)) from exc
        request.state.claimed = who.keyid  # the signer, whatever was claimed before the check
        if not once:
            request.state.verified = True
            return who.keyid, body
        ledger, _ = service._running()
        forget = int(time.time()) - 2 * SKEW  # older requests fail the clock check before this
        if not await asyncio.to_thread(
            functools.partial(ledger.use_nonce, forget_before=forget), f"{who.keyid}:{who.nonce}", who.created
        ):
            raise _HTTPError(401, "replayed", "this request was made before (its nonce is used)")
        request.state.verified = True  # signed by them, and never sent before
        return who.keyid, body

    async def remember(request: Request, status: int, code: str, message: str) -> None:
        """Record a refused write made in a chartered identity's name (rate-limited)."""
        claimed = getattr(request.state, "claimed", None)
        if request.method != "POST" or claimed is None or status < 400 or status == 503:
            return  # (503: the service could not take it, which says nothing of the caller)
        with contextlib.suppress(AnswerableError):
            await service.record_refusal(
                claimed,
                verified=getattr(request.state, "verified", False),
                target=f"{request.method} {getattr(request.scope.get('route'), 'path', '?')}",
                reason_code=code,
                detail=message,
                body=getattr(request.state, "body", None),
            )

    @app.exception_handler(AnswerableError)
    async def refused(request: Request, exc: AnswerableError) -> JSONResponse:
        status = 422 if isinstance(exc, ArgumentsInvalid | UnknownOperation | RecordInvalid) else 400
        if isinstance(exc, _HTTPError):
            status = exc.status
        elif isinstance(exc, EntryNotFound):
            status = 404
        elif isinstance(exc, LeaseLost | StoreUnavailable | LedgerClosed):
            # Not the caller's doing (LedgerClosed: the service is stopping), and passing: a
            # request safe to repeat comes again, to this service restarted or its standby.
            status = 503
        elif isinstance(exc, ApprovalRefused):
            status = ANSWER_STATUS.get(exc.reason_code, 403)
        elif isinstance(exc, NotAuthorized):
            status = 403
        elif isinstance(exc, IdempotencyConflict):
            status = 409
        code = getattr(exc, "reason_code", "") or type(exc).__name__
        # The store's messages name its files for the operator; a caller over HTTP learns the
        # origin instead (the folder layout is not theirs to know).
        message = str(exc).replace(str(service.config.ledger), service.config.origin)
        if service.ledger is not None:  # nor where its database is
            message = message.replace(service.ledger.name, service.config.origin)
        message = message.replace(str(service.config.folder), "the system's folder")
        await remember(request, status, code, message)
        return JSONResponse({"error": message, "reason_code": code}, status_code=status)

    @app.exception_handler(HTTPException)
    async def no_route(request: Request, exc: HTTPException) -> JSONResponse:
        """The framework's own refusals (no such path, a method the path does not take) in the shape
        every other refusal has, so a client reads one shape."""
        path = request.url.path
        code, message = {
            404: ("not_found", f"no such path: {_cut(path)}"),
            405: ("method_not_allowed", f"{_cut(path)} does not take {request.method}"),
        }.get(exc.status_code, ("http_error", str(exc.detail)))
        return JSONResponse(
            {"error": message, "reason_code": code}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A query parameter of the wrong type (``?wait=abc``): named, with the code its range check
        gives (``bad_wait``), in the shape of every refusal."""
        first = exc.errors()[0]
        name = str(first["loc"][-1]) if first["loc"] else "request"
        message = f"{name}={first.get('input')!r}: {first['msg']}"
        return JSONResponse({"error": message, "reason_code": f"bad_{name}"}, status_code=422)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ledger, gateway = service.ledger, service.gateway
        holds = gateway is not None and gateway.lease.held
        try:
            reachable = ledger is not None and ledger.size() >= 0
        except AnswerableError:
            reachable = False
        return JSONResponse(
            {"lease": holds, "store": reachable}, status_code=200 if holds and reachable else 503
        )

    @app.post("/v1/intents", openapi_extra=_body(SubmitBody, "An intent, in a request the agent signed."))
    async def submit(request: Request) -> JSONResponse:
        agent, raw = await signed(request, service.agent_keys())
        body = _parse(SubmitBody, raw)
        status, doc = await service.submit(agent, body)
        await remember(request, status, str(doc.get("reason_code", "")), str(doc.get("error", "")))
        return JSONResponse(doc, status_code=status)

    async def reader(request: Request) -> str:
        """Reads show arguments (addresses, orders): only the charter's agents and people read."""
        who, _ = await signed(request, {**service.agent_keys(), **service.people_keys()}, once=False)
        return who

    @app.post(
        "/v1/messages",
        openapi_extra=_body(Message, "A Message record its sender built and signed, in a request it signed."),
    )
    async def message(request: Request) -> JSONResponse:
        agent, raw = await signed(request, service.agent_keys())
        status, doc = await service.message(agent, raw)
        await remember(request, status, str(doc.get("reason_code", "")), str(doc.get("error", "")))
        return JSONResponse(doc, status_code=status)

    @app.post("/v1/events", openapi_extra=_body(EventsBody, "Outside events, in a request an agent signed."))
    async def events(request: Request) -> JSONResponse:
        agent, raw = await signed(request, service.agent_keys())
        status, doc = await service.ingest(agent, _parse(EventsBody, raw))
        return JSONResponse(doc, status_code=status)

    @app.get("/v1/intents/{intent_id}")
    async def get_intent(intent_id: str, request: Request, wait: float = 0.0) -> JSONResponse:
        await reader(request)
        if not math.isfinite(wait) or not 0 <= wait <= 60:
            raise _HTTPError(422, "bad_wait", f"wait={wait}: give seconds from 0 to 60")
        return JSONResponse(await service.wait(intent_id, wait) if wait else service.status_of(intent_id))

    @app.get("/v1/receipts/{intent_id}")
    async def receipt(intent_id: str, request: Request, wait: float = 0.0) -> JSONResponse:
        await reader(request)
        if not math.isfinite(wait) or not 0 <= wait <= 60:
            raise _HTTPError(422, "bad_wait", f"wait={wait}: give seconds from 0 to 60")
        status, doc = await service.receipt(intent_id, wait)
        return JSONResponse(doc, status_code=status)

    @app.get("/v1/operations")
    async def operations(request: Request) -> JSONResponse:
        await reader(request)
        return JSONResponse(service.operations())

    @app.get("/v1/reviews")
    async def reviews(request: Request) -> JSONResponse:
        await reader(request)
        _, gateway = service._running()
        return JSONResponse([s.to_json() for s in gateway.reviews.open()])

    @app.get("/v1/reviews/{review_id}")
    async def review(review_id: str, request: Request) -> JSONResponse:
        await reader(request)
        _, gateway = service._running()
        return JSONResponse(gateway.reviews.state(review_id).to_json())

    @app.get("/v1/control")
    async def control_state(request: Request) -> JSONResponse:
        """The stops in force: what a resume must name in its causes to lift them."""
        await reader(request)
        return JSONResponse(service.control_doc())

    @app.post(
        "/v1/control/resume",
        openapi_extra=_body(Control, "A resume the person signed, in a request they signed."),
    )
    async def resume(request: Request) -> JSONResponse:
        """A person's resume, signed by them as the CLI signs it, sent in a signed request."""
        person, raw = await signed(request, service.people_keys())
        try:
            made = Control.model_validate_json(raw)
        except ValidationError as exc:
            raise _HTTPError(422, "bad_body", f"not a signed Control: {exc.errors()[0]['msg']}") from exc
        return JSONResponse(await service.resume(person, made))

    @app.post(
        "/v1/reviews/{review_id}/answer",
        openapi_extra=_body(Approval, "An Approval the reviewer signed, in a request they signed."),
    )
    async def answer(review_id: str, request: Request) -> JSONResponse:
        """A person's Approval, signed by them as the CLI signs it, sent in a signed request."""
        person, raw = await signed(request, service.people_keys())
        try:
            approval = Approval.model_validate_json(raw)
        except ValidationError as exc:
            raise _HTTPError(422, "bad_body", f"not a signed Approval: {exc.errors()[0]['msg']}") from exc
        return JSONResponse(await service.answer(person, review_id, approval))

    @app.post(
        "/v1/control", openapi_extra=_body(ControlBody, "A halt or pause, in a request a person signed.")
    )
    async def control(request: Request) -> JSONResponse:
        person, raw = await signed(request, service.people_keys())
        body = _parse(ControlBody, raw)
        return JSONResponse(await service.stop_scope(person, body.action, body.scope, body.reason))

    @app.get("/v1/why/{entry_id}")
    async def why_of(entry_id: str, request: Request) -> JSONResponse:
        from answerable.provenance import why

        await reader(request)
        ledger, _ = service._running()
        return JSONResponse(why(ledger, entry_id).to_json())

    @app.get("/log/{path:path}")
    async def log(path: str, request: Request) -> Response:
        """The published log: its ``checkpoint`` and ``tile/...`` files, nothing else in that
        folder. Entry bundles carry every call's arguments: unless the config makes them public
        they are not in the folder, and are made from the ledger for signed readers only."""
        folder = service.config.publish_dir
        tile = parse_tile_path(path)
        if (
            folder is not None
            and tile is not None
            and tile[0] == "entries"
            and not service.config.public_entries
        ):
            await reader(request)
            _, index, width = tile
            ledger, _ = service._running()
            size = published_size(folder, ledger)
            start = index * TILE_WIDTH
            held = ledger.entries(start, start + width) if start + width <= size else []
            if len(held) != width:  # entries never change: any tile within the checkpoint is served
                raise _HTTPError(404, "not_published", f"/log/{path} is not part of the published checkpoint")
            return Response(entry_bundle([e.data for e in held]), media_type="application/octet-stream")
        parts = path.split("/")
        allowed = path == "checkpoint" or (
            parts[0] == "tile" and all(p and p not in (".", "..") for p in parts)
        )
        if folder is None or not allowed:
            raise _HTTPError(404, "not_published", f"/log/{path} is not part of the published log")
        target = folder / path
        try:
            on_disk = target.is_file()
        except OSError:  # a name too long for the filesystem: is_file raises it, not False
            on_disk = False
        if not on_disk:
            raise _HTTPError(404, "not_published", f"/log/{path[:80]} is not published")
        return Response(
            target.read_bytes(),
            media_type="text/plain" if path == "checkpoint" else "application/octet-stream",
        )

    @app.get("/v1/checkpoint")
    async def checkpoint() -> PlainTextResponse:
        ledger, _ = service._running()
        note = ledger.latest_checkpoint() or await asyncio.to_thread(ledger.checkpoint)
        return PlainTextResponse(note)

    return app


def _body(model: type[BaseModel], what: str) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that reads its (signed) body itself, so the schema
    says what to send; ``$defs`` inlined, as the schema has no components for them."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "description": what,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }


def _parse(model: type[Any], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise _HTTPError(422, "bad_body", f"{where}: {first['msg']}") from exc


class _HTTPError(AnswerableError):
    """A refusal with its HTTP status and stable reason code."""

    def __init__(self, status: int, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason_code = reason_code
