"""Halt, pause and resume: stopping is easy, starting is hard.

Anyone with access to the system may halt or pause it; the entry records who they say they are
and why. Resuming needs a person the charter authorizes (``operator`` or the RI; a halt only the
RI) proven by their signature. The state lives in the ledger itself, so another process (the CLI)
stops a running system by appending one entry, and a resume whose signature does not verify
against the charter is ignored when the state is folded, wherever it came from.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from answerable.charter import charter_of
from answerable.clock import Clock, IdSource, SystemClock, rfc3339
from answerable.errors import AnswerableError, ConfigError
from answerable.keys import KeyPair
from answerable.ledger.base import LedgerStore
from answerable.records import Control, Scope, SystemCharter, decode_entry
from answerable.signing import require_role, sign, verify_signed_by

__all__ = ["ControlState", "Controller", "scope_from_text"]


@dataclass(frozen=True, slots=True)
class ControlState:
    """The stops in force, keyed by scope label; resuming a scope lifts the stops on that scope."""

    stops: tuple[Control, ...] = ()

    def blocking(
        self, *, agent: str, operation: str, resource_class: str, resource_classes: tuple[str, ...] = ()
    ) -> Control | None:
        """The first stop that applies to this action, or None if it may run.

        ``resource_classes`` adds classes the resource itself carries (its Cedar ``class``
        attribute, say ``medical``), so one pause can stop every operation on that class.
        """
        classes = {resource_class, *resource_classes}
        for stop in self.stops:
            scope = stop.scope
            if (
                scope.kind == "system"
                or (scope.kind == "agent" and scope.value == agent)
                or (scope.kind == "operation" and scope.value == operation)
                or (scope.kind == "resource_class" and scope.value in classes)
            ):
                return stop
        return None

    def apply(self, control: Control) -> ControlState:
        label = control.scope.label()
        if control.action == "resume":
            return ControlState(tuple(s for s in self.stops if s.scope.label() != label))
        return ControlState((*self.stops, control))


def scope_from_text(text: str) -> Scope:
    """Parse ``system``, ``agent:NAME``, ``operation:NAME`` or ``resource_class:NAME``."""
    kind, _, value = text.partition(":")
    try:
        return Scope.model_validate({"kind": kind, "value": value or None})
    except ValueError as exc:
        raise ConfigError(
            f"scope {text!r} is not one of system, agent:NAME, operation:NAME, resource_class:NAME"
        ) from exc


class Controller:
    """Reads and writes control entries of one ledger, folding them incrementally."""

    def __init__(
        self, ledger: LedgerStore, *, clock: Clock | None = None, ids: IdSource | None = None
    ) -> None:
        self.ledger = ledger
        self.clock = clock or SystemClock()
        self.ids = ids or IdSource(self.clock)
        self._state = ControlState()
        self._seen = -1
        self._lock = threading.Lock()

    def state(self) -> ControlState:
        """The current state, including entries other processes appended since the last call.

        One indexed query for control entries after the last one seen: cheap enough to run
        immediately before every execution, which is where the gateway calls it.
        """
        with self._lock:
            fresh = self.ledger.of_kind("Control", after=self._seen)
            if fresh:
                charter = charter_of(self.ledger)
                state = self._state
                for stored in fresh:
                    control = decode_entry(stored.data)
                    assert isinstance(control, Control)
                    if control.action != "resume" or _resume_is_valid(control, state, charter):
                        state = state.apply(control)
                    self._seen = stored.index
                self._state = state
            return self._state

    def _make(self, action: str, scope: Scope, by: str, reason: str) -> Control:
        return Control.model_validate(
            {
                "id": self.ids.new(),
                "at": rfc3339(self.clock.now_ns()),
                "action": action,
                "scope": scope.model_dump(),
                "by": by,
                "reason": reason,
                "causes": [s.id for s in self.state().stops if s.scope.label() == scope.label()],
            }
        )

    async def halt(self, *, by: str, reason: str, scope: Scope | None = None) -> Control:
        """Stop everything in scope at once; only the RI can lift it."""
        control = self._make("halt", scope or Scope(kind="system"), by, reason)
        await self.ledger.append([control])
        return control

    async def pause(self, *, by: str, reason: str, scope: Scope | None = None) -> Control:
        """Stop everything in scope until an operator or the RI resumes it."""
        control = self._make("pause", scope or Scope(kind="system"), by, reason)
        await self.ledger.append([control])
        return control

    async def resume(self, *, key: KeyPair, reason: str, scope: Scope | None = None) -> Control:
        """Lift the stops on ``scope``, signed by a person the charter authorizes.

        Raises:
            NotAuthorized: the key's owner is not in the charter or lacks the role.
            SignatureInvalid: the key is not the one the charter holds for them.
        """
        control = sign(self._make("resume", scope or Scope(kind="system"), key.identity, reason), key)
        charter = charter_of(self.ledger)
        _check_resume(control, self.state(), charter)
        await self.ledger.append([control])
        return control


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
