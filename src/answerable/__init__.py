"""answerable: multi-agent systems that stay observable, attributable and interruptible.

The names below are imported when first used (PEP 562), not when the package is: a command such
as ``answerable halt`` needs the ledger and control, not the gateway, the runtime and their
dependencies, and starts several times faster for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from answerable.charter import amend_charter, new_charter, new_ruleset, schema_for
    from answerable.clock import Clock, FakeClock, IdSource, SystemClock
    from answerable.control import Controller, ControlState
    from answerable.errors import (
        AgentFailed,
        AnswerableError,
        ApprovalRefused,
        ArgumentsInvalid,
        ConfigError,
        Conflict,
        EntryNotFound,
        ExecutionError,
        LeaseHeld,
        LeaseLost,
        LedgerError,
        LedgerTampered,
        MessageHeld,
        MessageRefused,
        NotALedger,
        NotAuthorized,
        OutcomeAmbiguous,
        PolicyInvalid,
        ProofInvalid,
        ProofRequestInvalid,
        RecordInvalid,
        SignatureInvalid,
        TransientError,
        UnknownAgent,
        UnknownOperation,
    )
    from answerable.gateway import Gateway, Operation, Outcome, Resource, http_operation
    from answerable.keys import KeyPair
    from answerable.ledger import SQLiteLedger
    from answerable.operations import arguments_as_context
    from answerable.policy import load_ruleset
    from answerable.provenance import Provenance, why
    from answerable.records import (
        AgentIdentity,
        Approval,
        Channel,
        Claim,
        Control,
        Coordination,
        Decision,
        Execution,
        ExternalEvent,
        Intent,
        Message,
        MessageKind,
        Person,
        Review,
        RulesetVersion,
        Scope,
        SystemCharter,
    )
    from answerable.runtime import Actuator, Agent, Context, System

_HOME = {
    "Actuator": "answerable.runtime",
    "Agent": "answerable.runtime",
    "AgentFailed": "answerable.errors",
    "AgentIdentity": "answerable.records",
    "AnswerableError": "answerable.errors",
    "Approval": "answerable.records",
    "ApprovalRefused": "answerable.errors",
    "ArgumentsInvalid": "answerable.errors",
    "Channel": "answerable.records",
    "Claim": "answerable.records",
    "Clock": "answerable.clock",
    "ConfigError": "answerable.errors",
    "Conflict": "answerable.errors",
    "Context": "answerable.runtime",
    "Control": "answerable.records",
    "ControlState": "answerable.control",
    "Controller": "answerable.control",
    "Coordination": "answerable.records",
    "Decision": "answerable.records",
    "EntryNotFound": "answerable.errors",
    "Execution": "answerable.records",
    "ExecutionError": "answerable.errors",
    "ExternalEvent": "answerable.records",
    "FakeClock": "answerable.clock",
    "Gateway": "answerable.gateway",
    "IdSource": "answerable.clock",
    "Intent": "answerable.records",
    "KeyPair": "answerable.keys",
    "LeaseHeld": "answerable.errors",
    "LeaseLost": "answerable.errors",
    "LedgerError": "answerable.errors",
    "LedgerTampered": "answerable.errors",
    "Message": "answerable.records",
    "MessageHeld": "answerable.errors",
    "MessageKind": "answerable.records",
    "MessageRefused": "answerable.errors",
    "NotALedger": "answerable.errors",
    "NotAuthorized": "answerable.errors",
    "Operation": "answerable.gateway",
    "Outcome": "answerable.gateway",
    "OutcomeAmbiguous": "answerable.errors",
    "Person": "answerable.records",
    "PolicyInvalid": "answerable.errors",
    "ProofInvalid": "answerable.errors",
    "ProofRequestInvalid": "answerable.errors",
    "Provenance": "answerable.provenance",
    "RecordInvalid": "answerable.errors",
    "Resource": "answerable.gateway",
    "Review": "answerable.records",
    "RulesetVersion": "answerable.records",
    "SQLiteLedger": "answerable.ledger",
    "Scope": "answerable.records",
    "SignatureInvalid": "answerable.errors",
    "System": "answerable.runtime",
    "SystemCharter": "answerable.records",
    "SystemClock": "answerable.clock",
    "TransientError": "answerable.errors",
    "UnknownAgent": "answerable.errors",
    "UnknownOperation": "answerable.errors",
    "amend_charter": "answerable.charter",
    "arguments_as_context": "answerable.operations",
    "http_operation": "answerable.gateway",
    "load_ruleset": "answerable.policy",
    "new_charter": "answerable.charter",
    "new_ruleset": "answerable.charter",
    "schema_for": "answerable.charter",
    "why": "answerable.provenance",
}
"""Where each public name lives."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'answerable' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next look-up is a plain one
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


__all__ = [
    "Actuator",
    "Agent",
    "AgentFailed",
    "AgentIdentity",
    "AnswerableError",
    "Approval",
    "ApprovalRefused",
    "ArgumentsInvalid",
    "Channel",
    "Claim",
    "Clock",
    "ConfigError",
    "Conflict",
    "Context",
    "Control",
    "ControlState",
    "Controller",
    "Coordination",
    "Decision",
    "EntryNotFound",
    "Execution",
    "ExecutionError",
    "ExternalEvent",
    "FakeClock",
    "Gateway",
    "IdSource",
    "Intent",
    "KeyPair",
    "LeaseHeld",
    "LeaseLost",
    "LedgerError",
    "LedgerTampered",
    "Message",
    "MessageHeld",
    "MessageKind",
    "MessageRefused",
    "NotALedger",
    "NotAuthorized",
    "Operation",
    "Outcome",
    "OutcomeAmbiguous",
    "Person",
    "PolicyInvalid",
    "ProofInvalid",
    "ProofRequestInvalid",
    "Provenance",
    "RecordInvalid",
    "Resource",
    "Review",
    "RulesetVersion",
    "SQLiteLedger",
    "Scope",
    "SignatureInvalid",
    "System",
    "SystemCharter",
    "SystemClock",
    "TransientError",
    "UnknownAgent",
    "UnknownOperation",
    "amend_charter",
    "arguments_as_context",
    "http_operation",
    "load_ruleset",
    "new_charter",
    "new_ruleset",
    "schema_for",
    "why",
]
