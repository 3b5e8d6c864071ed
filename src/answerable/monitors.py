"""System-level invariants, declared in configuration and evaluated over the ledger stream.

Emergent behaviour is a design risk, so it is watched where it shows: in outcomes across the
whole system, not in any one agent. Three common shapes cover most invariants: the rate of one
class of outcome against another over a sliding window (``rate_gap``), a running total
(``budget``) and a count per time (``count``). Three more watch coordination itself, against
what was declared or learned at first: ``new_edge`` (agents talk over a channel nobody declared
or saw), ``rate_band`` (a channel's message rate rises far above its usual band) and
``influence`` (one agent's messages come to cause far more of another's intents than they did).
Each entry is seen once, in ledger order, and
updates running figures: nothing is ever rescanned. A breach writes an Alert with its evidence,
pauses the action class the monitor names, and calls the RI; the monitor stays quiet until a
person resumes that scope.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from answerable._canonical import SAFE_INT
from answerable._files import read_capped
from answerable.charter import CharterHistory
from answerable.clock import Clock, IdSource, parse_rfc3339, rfc3339
from answerable.control import ControlFold, scope_from_text
from answerable.errors import ConfigError
from answerable.ledger.base import LedgerStore
from answerable.records import Alert, Control, Entry, problems

__all__ = ["Breach", "MonitorConfig", "Monitors", "load_monitors"]

_KINDS: dict[str, type[BaseModel]] = {
    record.model_fields["kind"].default: record for record in get_args(get_args(Entry)[0])
}
_MISSING = object()


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Strict):
    """Which entries a monitor reads: a record kind, narrowed by event or message type."""

    kind: str
    types: tuple[str, ...] = ()
    """For ExternalEvent and Message: the ``type`` values to read (all if empty)."""


class Response(_Strict):
    """What a breach does besides writing the Alert."""

    pause: str | None = None
    """A scope: ``operation:NAME``, ``resource_class:NAME``, ``agent:NAME``, ``channel:TOPIC``
    (its messages stop) or ``system``."""
    escalate_to: Literal["ri"] = "ri"


class _Monitor(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^\S+$")
    invariant: str = Field(min_length=1)
    """The rule in words, as the RI would state it."""
    source: Source
    where: dict[str, Any] = {}
    """Dotted paths into the entry (``payload.region``) and the value each must equal."""
    respond: Response = Response()


class RateGap(_Monitor):
    """``watch``'s rate of ``outcome`` may not fall more than ``max_gap_permille`` below ``versus``'s."""

    shape: Literal["rate_gap"]
    outcome: str
    """Path to a bool, or a list of bools (one sample each)."""
    group: str
    """Path to the class of the sample."""
    watch: str
    versus: str
    max_gap_permille: int = Field(ge=0, le=1000)
    window: int = Field(default=200, ge=1)
    """Samples kept per class."""
    min_samples: int = Field(default=30, ge=1)


class Budget(_Monitor):
    """The total of ``amount`` over matching entries may not exceed ``limit``."""

    shape: Literal["budget"]
    amount: str
    limit: int = Field(ge=-SAFE_INT, le=SAFE_INT)
    """Within JSON's integer range (±(2**53-1)), so an Alert can record it."""


class Count(_Monitor):
    """At most ``max`` matching entries within any ``window_seconds``."""

    shape: Literal["count"]
    max: int = Field(ge=0)
    window_seconds: int = Field(default=86_400, ge=1)


class NewEdge(_Monitor):
    """Agents talk only over the channels the charter's contract declares, or, without one, that
    they used in the first ``learn_seconds``: a message, or a refused attempt, on another
    (sender, topic, type) is drift. Reads Message and bus Refusal entries (``source.kind`` is
    ``Message``)."""

    shape: Literal["new_edge"]
    learn_seconds: int = Field(default=0, ge=0)


class RateBand(_Monitor):
    """No channel's messages per ``window_seconds`` rise above ``max_factor`` times its busiest
    window while learning (the first ``learn_seconds`` after the first message). Reads Message
    entries; a channel first used after learning is ``new_edge``'s to flag, not this one's."""

    shape: Literal["rate_band"]
    learn_seconds: int = Field(ge=1)
    window_seconds: int = Field(default=86_400, ge=1)
    max_factor: int = Field(default=3, ge=2)


class Influence(_Monitor):
    """No agent's messages come to cause ``max_rise_permille`` more of another agent's intents
    (among its last ``window``) than they did when learning ended. Reads Intent entries and the
    messages they cite (``source.kind`` is ``Intent``)."""

    shape: Literal["influence"]
    learn_seconds: int = Field(ge=1)
    window: int = Field(default=100, ge=1)
    min_samples: int = Field(default=30, ge=1)
    max_rise_permille: int = Field(default=300, ge=1, le=1000)


_Shape = RateGap | Budget | Count | NewEdge | RateBand | Influence
MonitorSpec = Annotated[_Shape, Field(discriminator="shape")]


class MonitorConfig(_Strict):
    monitors: tuple[MonitorSpec, ...]


def load_monitors(
    source: str | Path | dict[str, Any], *, known_scopes: Iterable[str] | None
) -> MonitorConfig:
    """Parse and check a monitor configuration.

    ``known_scopes``: the action classes a monitor may pause; None leaves that one check to a
    later call (a service checks the file before it opens its ledger, and knows its tools after).

    Raises:
        ConfigError: naming the monitor and the unknown field, record kind or action class.
    """
    label = str(source) if isinstance(source, Path) else "monitor configuration"
    try:
        raw = json.loads(read_capped(source).decode("utf-8")) if isinstance(source, Path) else source
        if isinstance(raw, str):
            raw = json.loads(raw)
        config = MonitorConfig.model_validate(raw)
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested absurdly deep
        if isinstance(exc, ValidationError):
            raise ConfigError(f"{label}: {problems(exc, 'monitors')[0]}") from exc
        raise ConfigError(f"{label}: {exc}") from exc
    known = None if known_scopes is None else set(known_scopes)
    for monitor in config.monitors:
        record = _KINDS.get(monitor.source.kind)
        if record is None:
            raise ConfigError(
                f"monitor {monitor.name!r}: unknown record kind {monitor.source.kind!r}; "
                f"one of {sorted(_KINDS)}"
            )
        wanted = {NewEdge: "Message", RateBand: "Message", Influence: "Intent"}.get(type(monitor))
        if wanted is not None and monitor.source.kind != wanted:
            raise ConfigError(
                f"monitor {monitor.name!r}: a {monitor.shape} monitor reads {wanted} entries; "
                f"its source.kind is {wanted}"
            )
        paths = [*monitor.where]
        if isinstance(monitor, RateGap):
            paths += [monitor.outcome, monitor.group]
        if isinstance(monitor, Budget):
            paths.append(monitor.amount)
        for path in paths:
            head = path.split(".", 1)[0]
            if head not in record.model_fields:
                raise ConfigError(
                    f"monitor {monitor.name!r}: {monitor.source.kind} has no field {head!r} (in {path!r}); "
                    f"its fields are {sorted(record.model_fields)}"
                )
        if monitor.respond.pause is not None:
            scope = scope_from_text(monitor.respond.pause)
            if known is not None and scope.kind not in ("system", "channel") and scope.label() not in known:
                raise ConfigError(
                    f"monitor {monitor.name!r}: cannot pause unknown action class {scope.label()!r}; "
                    f"known: {sorted(known)}"
                )
    return config


@dataclass(frozen=True, slots=True)
class Breach:
    """A monitor found its invariant broken."""

    monitor: _Shape
    evidence: tuple[str, ...]
    observed: dict[str, int | str]


@dataclass
class _State:
    samples: dict[str, deque[tuple[bool, str]]] = field(default_factory=dict)
    ok: dict[str, int] = field(default_factory=dict)
    """For rate_gap: samples that were ok in each group's window, kept as the window moves."""
    total: int = 0
    times: deque[tuple[int, str]] = field(default_factory=deque)
    latched: bool = False
    edges: set[tuple[str, str, str]] = field(default_factory=set)
    """For new_edge: the channels seen while learning."""
    since: int | None = None
    """For the coordination shapes: when the first entry they read was made."""
    band: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """For rate_band: each channel's busiest learned window."""
    window_of: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    """For rate_band: each channel's current window (its number, messages in it)."""
    senders: dict[str, str] = field(default_factory=dict)
    """For influence: the sender of each message seen."""
    caused: dict[str, deque[frozenset[str]]] = field(default_factory=dict)
    """For influence: per agent, the senders cited by each of its last intents."""
    learned: dict[tuple[str, str], int] | None = None
    """For influence: each (sender, agent) share in permille when learning ended."""


class Monitors:
    """Evaluates a configuration over a ledger's entries, incrementally, and responds to breaches."""

    def __init__(
        self,
        config: MonitorConfig,
        ledger: LedgerStore,
        *,
        clock: Clock,
        ids: IdSource,
        fence: Callable[[], int] | None = None,
    ) -> None:
        """``fence``: the lease epoch to write under, when a gateway's process runs the monitors
        (a deposed one then writes no alert or pause); None for a reader without a lease."""
        self.config = config
        self._fence = fence
        self.ledger = ledger
        self.clock = clock
        self.ids = ids
        self._next = 0
        self._state = {m.name: _State() for m in config.monitors}
        self._unanswered: dict[tuple[str, tuple[str, ...]], Breach] = {}
        """Breaches found whose Alert is not stored yet: the monitor is latched and its entries
        read, so a failed append must leave them here for the next poll to answer, not lose them."""
        self._by_name = {m.name: m for m in config.monitors}
        self._read = frozenset(
            {m.source.kind for m in config.monitors}
            | {"Control", "Alert"}
            | ({"Refusal"} if any(isinstance(m, NewEdge) for m in config.monitors) else set())
            | ({"Message"} if any(isinstance(m, Influence) for m in config.monitors) else set())
        )
        """The record kinds any monitor reads, and the ones that arm and disarm them."""
        self._controls = ControlFold(CharterHistory())
        """The stops as the Controller folds them, so a resume re-arms exactly when it lifts."""
        self.alerts: list[Alert] = []

    async def poll(self) -> list[Alert]:
        """Read the entries appended since the last poll and respond to any breach.

        A breach whose Alert is further on in the ledger was answered already (a restarted
        service reads the whole ledger again), so it is not alerted twice. One whose Alert could
        not be stored (the store away) is answered by the next poll: before, the monitor stayed
        latched on it with its entries read, and nothing was alerted or paused until a restart.
        """
        size = self.ledger.size()
        if not self.config.monitors:
            self._next = size
            return []
        pending = self._unanswered
        while self._next < size:
            stop = min(size, self._next + 2048)
            batch = self.ledger.entries(self._next, stop)
            # After reading the batch: every charter before its entries was committed before them.
            self._controls.charters.advance(self.ledger)
            for stored in batch:
                if stored.kind not in self._read:
                    continue  # no monitor reads it: not even decoded
                entry = orjson.loads(stored.data)
                if entry.get("kind") == "Alert" and isinstance(entry.get("monitor"), str):
                    # Already answered (by this process before a restart, or another reader):
                    # the breach it answers is not alerted twice.
                    pending.pop(self._key(entry["monitor"], entry.get("observed")), None)
                    if entry["monitor"] in self._state:
                        self._answered(entry["monitor"], entry.get("observed"))
                for breach in self.observe(entry, index=stored.index):
                    pending[self._key(breach.monitor.name, breach.observed)] = breach
            self._next = stop
        written = []
        for key, breach in list(pending.items()):
            written.append(await self._respond(breach))  # raises with the rest still unanswered
            del pending[key]
        return written

    def observe(self, entry: dict[str, Any], *, index: int | None = None) -> list[Breach]:
        """Update every monitor with one entry at ledger position ``index``; pure apart from the
        monitors' running figures.

        A Control entry also updates the stops in force; a resume that lifts a stop re-arms the
        monitors that paused its scope. ``index`` None judges a resume by the latest charter read.
        An entry that is not a valid record of its kind is skipped: monitors watch, the ledger
        and the gateway validate.
        """
        if not isinstance(entry.get("id"), str):
            return []
        if entry.get("kind") == "Control":
            self._control(entry, index)
        found = []
        for monitor in self.config.monitors:
            state = self._state[monitor.name]
            if state.latched:
                continue
            if isinstance(monitor, NewEdge):
                breach = self._new_edge(monitor, state, entry, index)
            elif isinstance(monitor, RateBand):
                breach = _rate_band(monitor, state, entry)
            elif isinstance(monitor, Influence):
                breach = _influence(monitor, state, entry)
            elif not _matches(monitor, entry):
                continue
            else:
                breach = _update(monitor, state, entry)
            if breach is not None:
                if isinstance(monitor, NewEdge):  # one alert per channel, not one per monitor
                    self._answered(monitor.name, breach.observed)
                else:
                    state.latched = True
                found.append(breach)
        return found

    def _key(self, name: str, observed: object) -> tuple[str, tuple[str, ...]]:
        """What one alert answers: a monitor, or for new_edge a monitor and one channel."""
        channel = _channel(observed) if isinstance(self._by_name.get(name), NewEdge) else None
        return (name, channel or ())

    def _answered(self, name: str, observed: object) -> None:
        """An Alert of this monitor is in the ledger: latch it, or, for new_edge, which watches
        each channel on its own, count that channel as known so a different one still alerts."""
        state = self._state[name]
        channel = _channel(observed)
        if isinstance(self._by_name[name], NewEdge) and channel is not None:
            state.edges.add(channel)
        else:
            state.latched = True

    def _new_edge(
        self, monitor: NewEdge, state: _State, entry: dict[str, Any], index: int | None
    ) -> Breach | None:
        """A message or a refused attempt on a channel neither declared nor seen while learning."""
        edge = _edge(entry)
        if edge is None or not all(_value(entry, p) == w for p, w in monitor.where.items()):
            return None
        charters = self._controls.charters
        charter = charters.in_force_at(index) if index is not None else charters.latest()
        contract = charter.coordination if charter is not None else None
        if contract is not None and any(
            c.topic == edge[1] and edge[0] in c.publishers and any(k.type == edge[2] for k in c.messages)
            for c in contract.channels
        ):
            return None
        at = _seconds(entry.get("at"))
        if entry.get("kind") == "Message" and at is not None:
            if state.since is None:
                state.since = at
            if at < state.since + monitor.learn_seconds:
                state.edges.add(edge)
                return None
        if edge in state.edges:
            return None
        sender, topic, type_ = edge
        return Breach(
            monitor,
            (entry["id"],),
            {
                "from": sender,
                "topic": topic,
                "type": type_,
                "entry_kind": str(entry.get("kind")),
                "declared": "no" if contract is not None else "no contract",
            },
        )

    def _control(self, entry: dict[str, Any], index: int | None) -> None:
        """Fold a control; a resume honoured by the charter at its position re-arms its monitors."""
        try:
            control = Control.model_validate(entry)
        except ValueError:  # pydantic's ValidationError: not a Control, so it changes nothing
            return
        if not self._controls.add(index, control) or control.action != "resume":
            return
        label = control.scope.label()
        # Only a monitor whose own pause the resume lifted: a resume signed before another
        # monitor's pause on the scope leaves that pause in force, and re-armed, that monitor
        # alerted and paused a second time with its first pause still standing.
        standing = {s.by for s in self._controls.state.stops if s.scope.label() == label}
        for monitor in self.config.monitors:
            pause = monitor.respond.pause
            if (
                pause is not None
                and scope_from_text(pause).label() == label
                and f"answerable.monitor:{monitor.name}" not in standing
            ):
                self._state[monitor.name] = _State()

    async def _respond(self, breach: Breach) -> Alert:
        monitor = breach.monitor
        now = rfc3339(self.clock.now_ns())
        latest = self._controls.charters.advance(self.ledger).latest()
        ri = latest.ri if latest is not None else None
        alert_id = self.ids.new()
        records: list[Alert | Control] = []
        control_id = None
        if monitor.respond.pause is not None:
            control = Control(
                id=self.ids.new(),
                at=now,
                causes=(alert_id,),
                action="pause",
                scope=scope_from_text(monitor.respond.pause),
                by=f"answerable.monitor:{monitor.name}",
                reason=f"{monitor.invariant} (alert {alert_id}); resuming needs an authorized person",
            )
            control_id = control.id
            records.append(control)
        alert = Alert(
            id=alert_id,
            at=now,
            causes=breach.evidence,
            monitor=monitor.name,
            invariant=monitor.invariant,
            evidence=breach.evidence,
            observed=breach.observed,
            paused=monitor.respond.pause,
            control_id=control_id,
            escalated_to=ri,
        )
        await self.ledger.append([alert, *records], fence=None if self._fence is None else self._fence())
        self.alerts.append(alert)
        return alert


def _value(entry: dict[str, Any], path: str) -> Any:
    current: Any = entry
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


def _channel(observed: object) -> tuple[str, str, str] | None:
    """The (sender, topic, type) a coordination alert is about, or None for any other alert."""
    if not isinstance(observed, dict):
        return None
    edge = (observed.get("from"), observed.get("topic"), observed.get("type"))
    if not all(isinstance(part, str) for part in edge):
        return None
    return (str(edge[0]), str(edge[1]), str(edge[2]))


def _rate_band(monitor: RateBand, state: _State, entry: dict[str, Any]) -> Breach | None:
    """Count a message in its channel's window; past learning, a window above the band is drift."""
    if entry.get("kind") != "Message":
        return None
    edge = _edge(entry)
    at = _seconds(entry.get("at"))
    if edge is None or at is None or not all(_value(entry, p) == w for p, w in monitor.where.items()):
        return None
    if state.since is None:
        state.since = at
    number = (at - state.since) // monitor.window_seconds
    current, count = state.window_of.get(edge, (number, 0))
    count = count + 1 if current == number else 1
    state.window_of[edge] = (number, count)
    if at < state.since + monitor.learn_seconds:
        state.band[edge] = max(state.band.get(edge, 0), count)
        return None
    usual = state.band.get(edge)
    if usual is None or count <= usual * monitor.max_factor:
        return None
    return Breach(
        monitor,
        (entry["id"],),
        {
            "from": edge[0],
            "topic": edge[1],
            "type": edge[2],
            "messages_in_window": count,
            "usual_most": usual,
            "window_seconds": monitor.window_seconds,
        },
    )


def _influence(monitor: Influence, state: _State, entry: dict[str, Any]) -> Breach | None:
    """Track which agents' messages an agent's intents cite; past learning, a share that rose by
    more than the monitor allows is drift."""
    kind = entry.get("kind")
    if kind == "Message" and isinstance(entry.get("sender"), str):
        state.senders[str(entry["id"])] = str(entry["sender"])
        if len(state.senders) > _SENDERS_KEPT:  # intents cite recent messages: forget the oldest
            del state.senders[next(iter(state.senders))]
        return None
    if kind != "Intent" or not isinstance(entry.get("agent"), str):
        return None
    at = _seconds(entry.get("at"))
    if at is None:
        return None
    if not all(_value(entry, p) == w for p, w in monitor.where.items()):
        return None
    if state.since is None:
        state.since = at
    agent = str(entry["agent"])
    cited = frozenset(state.senders[c] for c in entry.get("causes") or () if c in state.senders)
    window = state.caused.setdefault(agent, deque(maxlen=monitor.window))
    window.append(cited)
    learning = at < state.since + monitor.learn_seconds
    if not learning and state.learned is None:
        state.learned = {
            (sender, who): _share(sender, intents)
            for who, intents in state.caused.items()
            for sender in set().union(*intents)
        }
    if learning or len(window) < monitor.min_samples or state.learned is None:
        return None
    for sender in sorted(cited):
        share = _share(sender, window)
        before = state.learned.get((sender, agent), 0)
        if share - before > monitor.max_rise_permille:
            return Breach(
                monitor,
                (entry["id"],),
                {
                    "from": sender,
                    "to": agent,
                    "share_permille": share,
                    "learned_permille": before,
                    "intents": len(window),
                },
            )
    return None


_SENDERS_KEPT = 100_000
"""How many messages' senders ``influence`` remembers, so a long-running service stays bounded."""


def _share(sender: str, intents: Iterable[frozenset[str]]) -> int:
    """Permille of ``intents`` that cite a message from ``sender``."""
    seen = list(intents)
    return 1000 * sum(sender in cited for cited in seen) // len(seen) if seen else 0


def _edge(entry: dict[str, Any]) -> tuple[str, str, str] | None:
    """(sender, topic, type) of a message, or of a message refused on the bus; else None."""
    kind = entry.get("kind")
    if kind == "Message":
        parts = (entry.get("sender"), entry.get("topic"), entry.get("type"))
    elif kind == "Refusal" and entry.get("channel") == "bus":
        parts = (entry.get("claimed"), entry.get("topic"), entry.get("type"))
    else:
        return None
    if not all(isinstance(p, str) for p in parts):
        return None
    return (str(parts[0]), str(parts[1]), str(parts[2]))


def _matches(monitor: RateGap | Budget | Count, entry: dict[str, Any]) -> bool:
    source = monitor.source
    if entry.get("kind") != source.kind:
        return False
    if source.types and entry.get("type") not in source.types:
        return False
    return all(_value(entry, path) == wanted for path, wanted in monitor.where.items())


def _update(monitor: RateGap | Budget | Count, state: _State, entry: dict[str, Any]) -> Breach | None:
    entry_id = entry["id"]
    if isinstance(monitor, RateGap):
        group = _value(entry, monitor.group)
        outcome = _value(entry, monitor.outcome)
        if group not in (monitor.watch, monitor.versus) or outcome is _MISSING:
            return None
        window = state.samples.setdefault(group, deque(maxlen=monitor.window))
        for sample in outcome if isinstance(outcome, list) else [outcome]:
            if len(window) == window.maxlen:  # the oldest sample leaves the window's running count
                state.ok[group] -= window[0][0]
            window.append((bool(sample), entry_id))
            state.ok[group] = state.ok.get(group, 0) + bool(sample)
        watched, versus = state.samples.get(monitor.watch), state.samples.get(monitor.versus)
        if not watched or not versus or min(len(watched), len(versus)) < monitor.min_samples:
            return None
        rate_w = 1000 * state.ok[monitor.watch] // len(watched)
        rate_v = 1000 * state.ok[monitor.versus] // len(versus)
        if rate_v - rate_w <= monitor.max_gap_permille:
            return None
        evidence = tuple(dict.fromkeys(e for ok, e in watched if not ok))[-20:]
        return Breach(
            monitor,
            evidence,
            {
                f"{monitor.watch}_rate_permille": rate_w,
                f"{monitor.versus}_rate_permille": rate_v,
                "samples": len(watched) + len(versus),
                "last_entry": entry_id,
            },
        )
    if isinstance(monitor, Budget):
        amount = _value(entry, monitor.amount)
        if isinstance(amount, bool) or not isinstance(amount, int):
            return None
        state.total += amount
        if state.total <= monitor.limit:
            return None
        # Amounts within JSON's integer range may add up past it: such a total is written as
        # text, so the Alert is still recorded (an integer past it has no canonical JSON).
        total = state.total if -SAFE_INT <= state.total <= SAFE_INT else str(state.total)
        return Breach(monitor, (entry_id,), {"total": total, "limit": monitor.limit})
    at = _seconds(entry.get("at"))
    if at is None:
        return None
    state.times.append((at, entry_id))
    while state.times and state.times[0][0] <= at - monitor.window_seconds:
        state.times.popleft()
    if len(state.times) <= monitor.max:
        return None
    return Breach(
        monitor, tuple(e for _, e in state.times)[-20:], {"count": len(state.times), "max": monitor.max}
    )


def _seconds(stamp: object) -> int | None:
    """Whole seconds since the epoch of a record's ``at``; None if it is not a record time (a
    window needs no more than seconds, and a malformed entry is skipped, not a crash)."""
    if not isinstance(stamp, str):
        return None
    try:
        return parse_rfc3339(stamp) // 1_000_000_000
    except ValueError:
        return None
