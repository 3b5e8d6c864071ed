"""The public API is exactly what __all__ says, so nothing leaks or vanishes by accident."""

from __future__ import annotations

import answerable
import answerable.ledger


def test_top_level_exports_are_pinned():
    """Adding or removing a public name is a deliberate change to this list."""
    assert sorted(answerable.__all__) == sorted(
        [
            "Actuator", "Agent", "AgentFailed", "AgentIdentity", "AnswerableError", "Approval",
            "ApprovalRefused", "ArgumentsInvalid", "Context", "Review", "System", "TransientError", "Clock",
            "ConfigError", "Control",
            "ControlState", "Controller", "Decision", "EntryNotFound", "Execution", "ExecutionError",
            "ExternalEvent", "FakeClock", "Gateway", "IdSource", "Intent", "KeyPair", "LedgerError",
            "LedgerTampered", "Message", "NotALedger", "NotAuthorized", "Operation", "Outcome",
            "OutcomeAmbiguous", "Person", "PolicyInvalid", "ProofInvalid", "ProofRequestInvalid",
            "RecordInvalid", "Resource", "RulesetVersion", "SQLiteLedger", "Scope", "SignatureInvalid",
            "SystemCharter", "SystemClock", "UnknownAgent", "UnknownOperation", "http_operation",
            "load_ruleset", "new_charter", "new_ruleset", "schema_for", "Provenance", "why",
            "Claim", "Conflict", "LeaseHeld", "LeaseLost", "amend_charter", "arguments_as_context",
            "Channel", "Coordination", "MessageKind", "MessageRefused", "MessageHeld", "StoreUnavailable",
            "IdempotencyConflict", "CallStopped", "LedgerClosed",
        ]
    )  # fmt: skip
    for name in answerable.__all__:
        assert hasattr(answerable, name)


def test_ledger_exports_the_verifiers_with_the_issue_signatures():
    """verify_inclusion and verify_consistency are importable from answerable.ledger."""
    import inspect

    assert list(inspect.signature(answerable.ledger.verify_inclusion).parameters) == [
        "leaf_index", "tree_size", "leaf_hash", "proof", "root",
    ]  # fmt: skip
    assert list(inspect.signature(answerable.ledger.verify_consistency).parameters) == [
        "size1", "size2", "proof", "root1", "root2",
    ]  # fmt: skip


def test_every_error_derives_from_the_one_base():
    """Callers can catch AnswerableError and get everything answerable raises on purpose."""
    from answerable import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.AnswerableError)
