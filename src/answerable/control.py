"""Halt, pause and resume: stopping is easy, starting is hard.

Anyone with access to the system may halt or pause it; the entry records who they say they are
and why. Resuming needs a person the charter authorizes (``operator`` or the RI; a halt only the
RI) proven by their signature. The state lives in the ledger itself, so another process (the CLI)
stops a running system by appending one entry, and a resume whose signature does not verify
against the charter in force at its ledger position is ignored when the state is folded,
wherever it came from: every process, and every restart, agrees on the state at every position.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from answerable._reason import says_something
from answerable.charter import CharterHistory
from answerable.clock import Clock, IdSource, SystemClock, rfc3339
from answerable.errors import AnswerableError, ConfigError, LedgerTampered, RecordInvalid
from answerable.keys import KeyPair
from answerable.ledger.base import CONTROL_HEAD, Guard, LedgerStore, StoredEntry
from answerable.records import Control, Scope, SystemCharter, decode_as, decode_entry, problems
from answerable.signing import require_role, sign, verify_signed_by

__all__ = [
    "ControlFold",
    "ControlState",
    "Controller",
    "names_nothing",
    "scope_from_text",
    "unsigned_control",
]


@dataclass(frozen=True, slots=True)
class ControlState:
    """The stops in force, keyed by scope label; resuming a scope lifts the stops on that scope."""

    stops: tuple[Control, ...] = ()

    def blocking(
        self,
        *,
        agent: str,
        operation: str,
        resource_class: str,
        resource_classes: tuple[str, ...] = (),
        channel: str | None = None,
    ) -> Control | None:
        """The first stop that applies to this action, or None if it may run.

        ``resource_classes`` adds classes the resource itself carries (its Cedar ``class``
        attribute, say ``high-risk``), so one pause can stop every operation on that class;
        ``channel`` is the topic of a message being sent (a decided message's operation).
        """
        classes = {resource_class, *resource_classes}
        for stop in self.stops:
            scope = stop.scope
            if (
                scope.kind == "system"
                or (scope.kind == "agent" and scope.value == agent)
                or (scope.kind == "operation" and scope.value == operation)
                or (scope.kind == "resource_class" and scope.value in classes)
                or (scope.kind == "channel" and channel is not None and scope.value == channel)
            ):
                return stop
        return None

    def blocking_message(self, *, sender: str, topic: str) -> Control | None:
        """The first stop that applies to a message: the system's, its sender's, or its channel's."""
        for stop in self.stops:
            scope = stop.scope
            if (
                scope.kind == "system"
                or (scope.kind == "agent" and scope.value == sender)
                or (scope.kind == "channel" and scope.value == topic)
            ):
                return stop
        return None

    def apply(self, control: Control) -> ControlState:
        """The state after ``control`` takes effect: a stop adds; a resume lifts the stops on its
        scope that it names in ``causes``, the ones its signer saw, and no stop written after
        them (a gateway's "outcome unknown" pause that landed meanwhile stays until someone who
        has seen it resumes it)."""
        if control.action == "resume":
            label, seen = control.scope.label(), set(control.causes)
            return ControlState(
                tuple(s for s in self.stops if not (s.scope.label() == label and s.id in seen))
            )
        return ControlState((*self.stops, control))


def scope_from_text(text: str) -> Scope:
    """Parse ``system``, ``agent:NAME``, ``operation:NAME``, ``resource_class:NAME`` or
    ``channel:TOPIC``."""
    if not isinstance(text, str):
        raise ConfigError(f"a scope is text like agent:NAME, not a {type(text).__name__}")
    kind, _, value = text.partition(":")
    try:
        return Scope.model_validate({"kind": kind, "value": value or None})
    except ValueError as exc:
        raise ConfigError(
            f"scope {text!r} is not one of system, agent:NAME, operation:NAME, resource_class:NAME, "
            "channel:TOPIC"
        ) from exc


def _scope_problem(scope: Scope) -> str | None:
    """Why no stop may be recorded on ``scope``, or None: a value that nothing can ever be named.

    A stop on an unknown name is recorded (with a warning: an agent may join later), but a name
    with a control character or nothing visible, or an agent or topic with a space (the charter's
    names have none), can never match anything: it would read in the ledger as a stop that holds.
    Checked where a halt or pause is made, never where one is read, nor for a resume: whatever
    stop a ledger holds can be lifted.
    """
    value = scope.value
    if value is None:
        return None
    shown = ascii(value)[1:-1][:40]
    if not says_something(value) or any(_control(c) for c in value):
        return f"scope {scope.kind}:{shown}: the name holds a control character or nothing visible"
    if scope.kind in ("agent", "channel") and any(c.isspace() for c in value):
        return f"scope {scope.kind}:{shown}: a charter's {scope.kind} names have no spaces"
    return None


def _control(c: str) -> bool:
    """A control character or a lone surrogate (Unicode Cc, Cs), which no charter name may hold.
    Format marks (Cf: the zero-width joiner of an emoji sequence, the Persian non-joiner) and
    characters newer than this Python's tables may be in a charter's names, so a stop on such a
    name must be possible; a name of them alone has no visible sign, which is refused above."""
    return unicodedata.category(c) in ("Cc", "Cs")


_LISTED = 8
"""Names a warning lists of what the charter does name."""


def names_nothing(ledger: LedgerStore, scope: Scope, charters: CharterHistory | None = None) -> str | None:
    """Why a stop of ``scope`` stops nothing the system knows today, or None.

    An agent the charter in force does not name, or a topic its coordination contract does not
    declare. Such a stop is still recorded (an agent may join later, and a stop is never refused),
    but whoever typed it is told: in a storm, ``agent:planer`` for ``agent:planner`` would read as
    a pause that holds. Operations and resource classes are not judged: no record lists them all.
    Asked after the stop is recorded, so a charter history that cannot be read (a damaged entry)
    is no error here: no warning is given, and the stop stands.
    """
    if scope.kind not in ("agent", "channel") or scope.value is None:
        return None
    try:
        charter = (charters or CharterHistory()).advance(ledger).latest()
    except AnswerableError:
        return None
    if charter is None:
        return None
    if scope.kind == "agent":
        known, what = charter.agent_names(), "agent"
    elif charter.coordination is not None:
        known, what = frozenset(c.topic for c in charter.coordination.channels), "topic"
    else:
        return None  # no contract: any topic may carry messages
    if scope.value in known:
        return None
    names = sorted(known)
    listed = ", ".join(names[:_LISTED]) + (
        f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    )
    return (
        f"the charter names no {what} {scope.value!r} (it names {listed}): this stops nothing until one joins"
    )


class ControlFold:
    """Control entries folded in ledger order, each resume judged where it stands in the ledger.

    A resume is honoured when its signer held the role it needs (the RI for a halt, else an
    operator or the RI) in the charter in force at the resume's own ledger position, and the
    signature verifies against that charter. Judging by the charter in force at the time of
    reading instead would let a process started after a handover honour a resume that a process
    running through it ignored; folded this way, every reader agrees at every position.
    """

    def __init__(self, charters: CharterHistory) -> None:
        self.charters = charters
        """Must have read the ledger at least up to the entries folded (see :meth:`add`)."""
        self.state = ControlState()

    def add(self, index: int | None, control: Control) -> bool:
        """Fold one Control entry at ledger position ``index``; True if it took effect.

        ``index`` None judges a resume by the latest charter read, for entries not (yet) in a
        ledger. Halts and pauses always take effect.
        """
        if control.action == "resume":
            charter = self.charters.latest() if index is None else self.charters.in_force_at(index)
            if charter is None or not _resume_is_valid(control, self.state, charter):
                return False
        self.state = self.state.apply(control)
        return True


class Controller:
    """Reads and writes control entries of one ledger, folding them incrementally.

    ``charters`` may be shared with other readers of the same ledger (the review queue, say), so
    the charter chain is read once.
    """

    def __init__(
        self,
        ledger: LedgerStore,
        *,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        charters: CharterHistory | None = None,
    ) -> None:
        self.ledger = ledger
        self.clock = clock or SystemClock()
        self.ids = ids or IdSource(self.clock)
        self.charters = charters or CharterHistory()
        self._fold = ControlFold(self.charters)
        self._seen = -1
        self._version: int | None = None
        """The ledger's data version read just before the last query: while it stands, nothing
        has been committed since, so the fold is current without a query."""
        self._lock = threading.Lock()

    def state(self) -> ControlState:
        """The current state, including entries other processes appended since the last call.

        The fold is current for every stop committed before this call: the store's data version
        is read first, and only when it moved since the last query (a commit by anyone came in
        between) are the control entries after the last one seen read, with one indexed query.
        Under a load of concurrent intents that is one query per group commit, not two per
        intent, and every check still sees every stop committed before it began.

        Raises:
            LedgerTampered: an entry stored as a Control is not one; no stop may be dropped
                silently, so nothing runs until the ledger is repaired.
        """
        with self._lock:
            version = self.ledger.data_version()
            if version == self._version:
                return self._fold.state
            fresh = self.ledger.of_kind("Control", after=self._seen)
            if fresh:
                # Read after the controls: every charter before them was committed before them.
                self.charters.advance(self.ledger)
                for stored in fresh:
                    self._fold.add(stored.index, _control_in(stored))
                    self._seen = stored.index
            self._version = version  # only once all of it folded: a damaged entry raises again
            return self._fold.state

    def guarded_state(self) -> tuple[ControlState, Guard]:
        """The state now, and the guard under which an append lands only while it still holds.

        The head is read before the state, so the state folds every stop up to the head at
        least; a stop committed after the head was read moves it (the store moves it to every
        Control entry), and the guarded append fails with Conflict instead of landing after it.
        """
        head = self.ledger.head(CONTROL_HEAD)
        return self.state(), Guard(CONTROL_HEAD, head)

    def make(self, action: str, scope: Scope, by: str, reason: str) -> Control:
        """The control entry an action would append now, unsigned; its causes are the stops in
        force on that scope (what a resume lifts). For a caller that appends it itself: the
        command line halts without starting an event loop, which would cost it start-up time."""
        _scope_given(action, by, scope)
        return unsigned_control(
            action,
            scope,
            by,
            reason,
            causes=[s.id for s in self.state().stops if s.scope.label() == scope.label()],
            control_id=self.ids.new(),
            at_ns=self.clock.now_ns(),
        )

    async def halt(self, *, by: str, reason: str, scope: Scope | None = None) -> Control:
        """Stop everything in scope at once; only the RI can lift it.

        Raises:
            RecordInvalid: ``by`` is empty or holds whitespace, or ``reason`` is empty or blank.
        """
        control = self.make("halt", scope or Scope(kind="system"), by, reason)
        await self.ledger.append([control])
        return control

    async def pause(self, *, by: str, reason: str, scope: Scope | None = None) -> Control:
        """Stop everything in scope until an operator or the RI resumes it.

        Raises:
            RecordInvalid: ``by`` is empty or holds whitespace, or ``reason`` is empty or blank.
        """
        control = self.make("pause", scope or Scope(kind="system"), by, reason)
        await self.ledger.append([control])
        return control

    async def resume(self, *, key: KeyPair, reason: str, scope: Scope | None = None) -> Control:
        """Lift the stops on ``scope``, signed by a person the charter authorizes.

        Checked here against the charter in force now; like every resume, it is folded against
        the charter in force where it lands in the ledger.

        Raises:
            NotAuthorized: the key's owner is not in the charter or lacks the role.
            SignatureInvalid: the key is not the one the charter holds for them.
            ConfigError: the ledger has no charter, so nobody may resume; or nothing is halted
                or paused on ``scope``: a resume there would lift nothing, while whoever asked for
                it would read "resume recorded" (a resume lifts the stops on its own scope only).
            RecordInvalid: ``reason`` is empty.
        """
        if not isinstance(key, KeyPair):  # the resume is signed with it
            raise RecordInvalid(
                f"a resume is signed with a KeyPair, not a {type(key).__name__}", record="Control"
            )
        made = self.make("resume", scope or Scope(kind="system"), key.identity, reason)
        if not made.causes:
            stops = ", ".join(sorted({s.scope.label() for s in self.state().stops})) or "nothing"
            raise ConfigError(
                f"nothing is halted or paused on {made.scope.label()}, so a resume there lifts nothing "
                f"(stopped now: {stops}); resume the scope that was stopped"
            )
        return await self.record_resume(sign(made, key))

    async def record_resume(self, control: Control) -> Control:
        """Record a resume its author signed elsewhere (a client of the service, the console),
        after the same checks :meth:`resume` makes.

        Raises:
            NotAuthorized, SignatureInvalid, ConfigError: as for :meth:`resume`.
            RecordInvalid: ``control`` is not a resume, or its reason is blank.
        """
        if not isinstance(control, Control):
            raise RecordInvalid(
                f"a resume to record is a Control, not a {type(control).__name__}", record="Control"
            )
        if control.action != "resume":
            raise RecordInvalid(f"control {control.id} is a {control.action}, not a resume", record="Control")
        if not says_something(control.reason):  # signed elsewhere, so not made by unsigned_control
            raise RecordInvalid(
                f"resume {control.id}: give a reason; a blank one says nothing (it needs a visible sign)",
                record="Control",
            )
        charter = self.charters.advance(self.ledger).latest()
        if charter is None:
            raise ConfigError(
                f"ledger {self.ledger.origin} has no valid SystemCharter, so nobody may resume; "
                "install a charter first"
            )
        _check_resume(control, self.state(), charter)
        await self.ledger.append([control])
        return control


def unsigned_control(
    action: str,
    scope: Scope,
    by: str,
    reason: str,
    *,
    causes: Sequence[str],
    control_id: str,
    at_ns: int,
) -> Control:
    """A halt, pause or resume record; a resume is then signed by its author. The CLI, the
    service's clients and the console all make them here, so they sign the same bytes.

    ``causes``: the stops on ``scope`` a resume lifts (or a halt or pause extends).

    Raises:
        RecordInvalid: a blank reason, a name with spaces, an unknown action.
    """
    if not says_something(reason):
        # Checked here, not in the record: a Control written before this check still reads.
        raise RecordInvalid(
            f"{action} by {by!r}: give a reason; a blank one says nothing (it needs a visible sign)",
            record="Control",
        )
    _scope_given(action, by, scope)
    try:
        return Control.model_validate(
            {
                "id": control_id,
                "at": rfc3339(at_ns),
                "action": action,
                "scope": scope.model_dump(),
                "by": by,
                "reason": reason,
                "causes": list(causes),
            }
        )
    except ValidationError as exc:
        raise RecordInvalid(
            f"{action} by {by!r}: {'; '.join(problems(exc, 'control'))}", record="Control"
        ) from exc


def _scope_given(action: str, by: str, scope: object) -> None:
    """Refuse a scope that is not a Scope: ``"agent:router"`` typed where one belongs."""
    if not isinstance(scope, Scope):
        raise RecordInvalid(
            f"{action} by {by!r}: the scope is a Scope (scope_from_text('agent:NAME') makes one), "
            f"not a {type(scope).__name__}",
            record="Control",
        )
    if action == "resume":  # whatever stop a ledger holds can be lifted, and by whoever signs it
        return
    if isinstance(by, str) and any(_control(c) for c in by):
        wrong: str | None = f"{ascii(by)[:60]} holds a control character, which no identity may have"
    else:
        wrong = _scope_problem(scope)
    if wrong is not None:
        raise RecordInvalid(f"{action} by {by!r}: {wrong}", record="Control")


def _control_in(stored: StoredEntry) -> Control:
    """The Control a ledger entry of that kind holds."""
    control = decode_as(stored.data, Control)
    if control is not None:
        return control
    try:
        record = decode_entry(stored.data)
    except RecordInvalid as exc:
        raise LedgerTampered(
            f"ledger entry {stored.index} is stored as a Control but does not decode: {exc}; "
            "run `answerable verify` on this ledger",
            index=stored.index,
            entry_id=stored.id,
        ) from exc
    if not isinstance(record, Control):
        raise LedgerTampered(
            f"ledger entry {stored.index} is stored as a Control but holds a {record.kind}; "
            "run `answerable verify` on this ledger",
            index=stored.index,
            entry_id=stored.id,
        )
    return record


def _check_resume(control: Control, state: ControlState, charter: SystemCharter) -> None:
    label = control.scope.label()
    halted = any(s.action == "halt" and s.scope.label() == label for s in state.stops)
    if halted:
        require_role(charter, control.by, "ri")
    else:
        require_role(charter, control.by, "ri", "operator")
    verify_signed_by(control, charter, control.by)


def _resume_is_valid(control: Control, state: ControlState, charter: SystemCharter) -> bool:
    try:
        _check_resume(control, state, charter)
    except AnswerableError:
        return False
    return True
