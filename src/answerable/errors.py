"""The one error tree of answerable.

Every error a caller can catch derives from :class:`AnswerableError` and carries the offending
thing as attributes, so code can react without parsing text::

    AnswerableError
    ├── ConfigError                  bad configuration, charter or key file
    ├── RecordInvalid                a record or message that does not validate
    ├── PolicyInvalid                Cedar policies or schema that do not parse or validate
    ├── UnknownAgent                 an intent or message from an agent not in the charter
    ├── AgentFailed                  an agent raised while handling a record
    ├── MessageRefused               a message outside the coordination contract, or one the rules refused
    ├── MessageHeld                  a message the rules sent to review: delivered once if approved
    ├── UnknownOperation             an intent for an operation that is not registered
    ├── IdempotencyConflict          an idempotency key an earlier intent of the agent used otherwise
    ├── ArgumentsInvalid             arguments that do not match an operation's schema
    ├── RequestBuildFailed           an operation's Cedar resource or context builder failed
    ├── NotAuthorized                a person the charter does not authorize for this act
    │   └── ApprovalRefused          an approval that cannot be used, with a stable reason code
    ├── SignatureInvalid             a signature that does not verify
    ├── BusError                     the message bus (NATS) cannot be reached or refused a publish
    ├── ExportFailed                 a telemetry endpoint (OTLP) did not take the spans sent to it
    ├── LedgerError                  anything wrong with a ledger
    │   ├── NotALedger               a file that is not an answerable ledger
    │   ├── LedgerTampered           stored entries, hashes or checkpoints that do not add up
    │   ├── EntryNotFound            an id or index the ledger does not hold
    │   ├── ProofInvalid             an inclusion or consistency proof that does not verify
    │   ├── ProofRequestInvalid      a proof asked for past the tree size
    │   ├── LeaseHeld                another gateway is the active one on this ledger
    │   ├── LeaseLost                this gateway's epoch was taken over: it may not append or call
    │   └── Conflict                 a guarded append lost a race: read again and decide again
    └── ExecutionError               an operation failed or its outcome is unknown
        ├── TransientError           a timeout or overload: the same call with the same key may work
        ├── CallStopped              an operation that found a stop in force and did nothing
        └── OutcomeAmbiguous         a crash left an intent whose effect cannot be established
"""

from __future__ import annotations

from answerable._text import exception_text

__all__ = [
    "AgentFailed",
    "AgentLost",
    "AnswerableError",
    "ApprovalRefused",
    "ArgumentsInvalid",
    "BusError",
    "CallStopped",
    "ConfigError",
    "Conflict",
    "EntryNotFound",
    "ExecutionError",
    "ExportFailed",
    "IdempotencyConflict",
    "LeaseHeld",
    "LeaseLost",
    "LedgerError",
    "LedgerTampered",
    "MessageHeld",
    "MessageRefused",
    "NotALedger",
    "NotAuthorized",
    "OutcomeAmbiguous",
    "PolicyInvalid",
    "ProofInvalid",
    "ProofRequestInvalid",
    "RecordInvalid",
    "RequestBuildFailed",
    "SignatureInvalid",
    "StoreUnavailable",
    "TransientError",
    "UnknownAgent",
    "UnknownOperation",
]


class AnswerableError(Exception):
    """Base of every error answerable raises on purpose."""


class ConfigError(AnswerableError):
    """A configuration, charter or key file is missing or malformed."""


class RecordInvalid(AnswerableError):
    """A record or message failed validation.

    Attributes:
        record: the record type that was being built (``"Intent"``, ``"Message"`` ...).
    """

    def __init__(self, message: str, *, record: str = "") -> None:
        super().__init__(message)
        self.record = record


class PolicyInvalid(AnswerableError):
    """Cedar policies or schema do not parse, or do not validate against the schema."""

    def __init__(self, message: str, *, errors: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors


class UnknownAgent(AnswerableError):
    """An agent that the system charter does not name."""

    def __init__(self, agent: str) -> None:
        super().__init__(
            f"unknown agent {agent!r}: it is not in the system charter; add it to the charter's agents"
        )
        self.agent = agent


class AgentFailed(AnswerableError):
    """An agent raised while handling a record; what it received is in the ledger to replay.

    Attributes:
        agent: the agent's name.
        record_id: the id of the record it was handling.
    """

    def __init__(self, agent: str, record_id: str, record_type: str, cause: BaseException) -> None:
        super().__init__(
            f"agent {agent!r} failed while handling {record_type} {record_id}: "
            f"{exception_text(cause)}; what it received is in the ledger: restart it and "
            "deliver that record again (its intents carry the same idempotency keys, so nothing runs twice)"
        )
        self.agent = agent
        self.record_id = record_id


class AgentLost(AnswerableError):
    """An agent's process exited, or stopped making progress, while a run needed it.

    Attributes:
        agent: the agent's name (``agents`` when it is not known which).
    """

    def __init__(self, agent: str, detail: str) -> None:
        super().__init__(f"agent {agent}: {detail}")
        self.agent = agent


STOP_CODES = frozenset({"halt", "pause"})
"""The reason codes of a refusal by a stop in force (the control plane), not by a rule."""


class MessageRefused(AnswerableError):
    """A message outside the coordination contract: not published, and the refusal recorded.

    Attributes:
        sender, topic, type: the edge it tried.
        reason_code: ``undeclared_topic``, ``undeclared_sender``, ``undeclared_type``,
            ``undeclared_recipient`` or ``payload_schema``; ``halt`` or ``pause`` for a stop in
            force; ``denied`` for a decided message the rules refused; ``not_said_then`` for one
            an agent rebuilding its state did not say the first time (see :attr:`ends_handling`).
        refusal_id: the Refusal entry that records it, so the sender can cite it ("" for
            ``not_said_then``: nothing is recorded).
    """

    def __init__(
        self, sender: str, topic: str, type: str, reason_code: str, detail: str, refusal_id: str
    ) -> None:
        if reason_code == "not_said_then":
            remedy = "nothing was recorded"
        elif reason_code in STOP_CODES:
            remedy = (
                f"recorded as {refusal_id}. A stop is in force on its sender or channel: the RI resumes it"
            )
        else:
            remedy = (
                f"recorded as {refusal_id}. The charter's coordination contract declares the channels: "
                "the RI signs a new version to add one"
            )
        super().__init__(
            f"message {type!r} from {sender} on {topic!r} refused ({reason_code}): {detail}; {remedy}"
        )
        self.sender, self.topic, self.type = sender, topic, type
        self.reason_code = reason_code
        self.refusal_id = refusal_id

    @property
    def ends_handling(self) -> bool:
        """Refused by a halt in force (only the RI lifts it; the work it cut is dropped and the
        refusal recorded), or not said when the record was first handled (``not_said_then``: an
        agent handling records again to rebuild its state stops where it stopped then). A
        handler that meets this has done what it may: its record counts as handled (see
        :meth:`answerable.runtime.Agent.handle`). A pause does not end it: the handling fails,
        and between processes the record comes again, after the pause is lifted."""
        return self.reason_code in ("halt", "not_said_then")


class MessageHeld(AnswerableError):
    """A message the rules sent to a person: not recorded or delivered yet. Approved, it is
    recorded and delivered once; denied, its sender's :meth:`Agent.on_refusal` hears of it.

    Attributes:
        intent_id: the intent the message waits under; review_id: the review a person answers.
    """

    def __init__(self, sender: str, topic: str, type: str, intent_id: str, review_id: str) -> None:
        super().__init__(
            f"message {type!r} from {sender} on {topic!r} is held for review {review_id}: "
            "it is delivered once a reviewer approves it, and never if they deny it"
        )
        self.sender, self.topic, self.type = sender, topic, type
        self.intent_id = intent_id
        self.review_id = review_id


class UnknownOperation(AnswerableError):
    """An operation that is not registered with the gateway."""

    def __init__(self, operation: str, known: tuple[str, ...] = ()) -> None:
        hint = f"; registered: {', '.join(known)}" if known else ""
        super().__init__(f"unknown operation {operation!r}{hint}")
        self.operation = operation


class ArgumentsInvalid(AnswerableError):
    """Arguments that do not match the operation's schema."""

    def __init__(self, operation: str, problems: tuple[str, ...]) -> None:
        super().__init__(f"arguments for {operation!r} do not match its schema: {'; '.join(problems)}")
        self.operation = operation
        self.problems = problems


class NotAuthorized(AnswerableError):
    """A person acting outside what the charter authorizes them to do."""

    def __init__(self, message: str, *, who: str = "", reason_code: str = "") -> None:
        super().__init__(message)
        self.who = who
        self.reason_code = reason_code


class ApprovalRefused(NotAuthorized):
    """An approval or denial that cannot be accepted.

    ``reason_code`` is stable for scripts: ``unknown_review``, ``not_a_reviewer``,
    ``own_proposal``, ``bad_signature``, ``args_mismatch``, ``already_used``, ``already_answered``,
    ``expired``, ``missing_reason``, ``already_claimed`` (the intent was claimed for
    execution: nothing can change that), ``bad_verdict``, ``busy`` (the review kept changing),
    ``bad_causes`` (an answer that does not cite exactly its review), ``bad_expiry`` (an answer
    whose time or expiry is no date, or valid for over a year), ``from_the_future`` (an answer
    dated more than five minutes ahead of the clock that checks it).
    """

    def __init__(self, message: str, *, reason_code: str, review_id: str = "", who: str = "") -> None:
        super().__init__(message, who=who, reason_code=reason_code)
        self.review_id = review_id


class SignatureInvalid(AnswerableError):
    """A signature that is missing, malformed or does not verify."""


class BusError(AnswerableError):
    """The message bus cannot be reached, or did not take a publish; names the server and what."""


class ExportFailed(AnswerableError):
    """A telemetry endpoint did not take the spans sent to it; names the endpoint. Nothing is
    lost: spans are made from the ledger, so the same export can run again from ``start``, the
    first entry whose span was not taken (those before it were)."""

    def __init__(self, message: str, *, start: int) -> None:
        super().__init__(message)
        self.start = start


class LedgerError(AnswerableError):
    """Anything wrong with a ledger."""


class StoreUnavailable(LedgerError):
    """The store did not answer: its server is down, restarting or out of reach, or the
    connection broke during a commit (whose outcome is then unknown until the ledger is read
    again). Transient: whoever can wait tries again later; nothing was lost."""

    reason_code = "store_unavailable"


class LedgerClosed(LedgerError):
    """The ledger was closed by this process (or its file is gone): nothing more is written
    through this handle, so whoever retries a write on it waits for nothing."""

    reason_code = "ledger_closed"


class NotALedger(LedgerError):
    """A file that is not an answerable ledger."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path} is not an answerable ledger: {why}")
        self.path = path


class LedgerTampered(LedgerError):
    """Stored entries, hashes or checkpoints that do not add up.

    Attributes:
        index: the first bad leaf index, or None when the damage is not in one entry.
        entry_id: the id recorded for that entry, when it could be read.
    """

    def __init__(self, message: str, *, index: int | None = None, entry_id: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.entry_id = entry_id


class EntryNotFound(LedgerError):
    """An entry id or index that the ledger does not hold."""

    def __init__(self, key: str | int) -> None:
        super().__init__(f"ledger has no entry {key!r}")
        self.key = key


class ProofInvalid(LedgerError):
    """An inclusion or consistency proof that does not verify."""


class ProofRequestInvalid(LedgerError):
    """A proof asked for sizes or indexes the tree does not have."""


class LeaseHeld(LedgerError):
    """Another gateway holds the ledger's lease: one active gateway per ledger.

    Attributes:
        holder, pid, host, since: who holds it, as the lease row records them.
    """

    def __init__(self, path: str, *, holder: str, pid: int, host: str, since: str) -> None:
        super().__init__(
            f"ledger {path} is served by another gateway: {holder} (pid {pid} on {host}, since {since}); "
            "stop that one, or start this one with standby=True to take over when its lease expires"
        )
        self.holder = holder
        self.pid = pid
        self.host = host
        self.since = since


class LeaseLost(LedgerError):
    """This gateway's lease epoch is no longer in force: a standby took over.

    Nothing it appends is committed and no call it makes counts; it must stop.
    """

    def __init__(self, epoch: int, current: int | None) -> None:
        now = "released" if current is None else f"epoch {current}"
        if epoch == 0:
            message = (
                "this gateway does not hold the ledger's lease: call start(), install() or "
                "resume_from_ledger() first"
            )
        else:
            message = (
                f"this gateway's lease (epoch {epoch}) is no longer in force ({now} is): it may no "
                "longer append or call out; restart it as a standby"
            )
        super().__init__(message)
        self.epoch = epoch
        self.current = current


class Conflict(LedgerError):
    """A guarded append found its head moved: someone else wrote first. Read again, decide again."""

    def __init__(self, key: str, expected: int | None, found: int | None) -> None:
        super().__init__(f"{key} changed while this was decided (expected head {expected}, found {found})")
        self.key = key
        self.expected = expected
        self.found = found


class IdempotencyConflict(AnswerableError):
    """An intent whose request is recorded already, under its idempotency key (an earlier intent
    of the agent used the key) or under its id (this Intent was submitted before), that asks for
    something else, or whose first time has no outcome yet.

    A key names one request: the same key again is that request again, never a new one (the
    partner's call, which carries the key, would answer for the first), and its outcome, failed
    or ambiguous ones included, is final for the key: another try is a new request with a new
    key. ``reason_code`` is ``idempotency_conflict`` (another operation or other arguments) or
    ``idempotency_in_flight`` (the first intent's call has no recorded outcome: it is running,
    or it was cut off, and the next gateway to start on the ledger reconciles it).
    """

    def __init__(self, agent: str, key: str, intent_id: str, reason_code: str) -> None:
        super().__init__(
            f"idempotency key {key!r} of {agent} was used by intent {intent_id} "
            + (
                "with another operation or other arguments: a new request needs a new key"
                if reason_code == "idempotency_conflict"
                else "whose outcome is not recorded yet: its call is running, or was cut off and is "
                "reconciled when a gateway next starts on this ledger"
            )
        )
        self.key = key
        self.agent = agent
        self.intent_id = intent_id
        self.reason_code = reason_code


class ExecutionError(AnswerableError):
    """An operation failed."""


class TransientError(ExecutionError):
    """A timeout or an overloaded partner: trying again with the same idempotency key may work."""


class CallStopped(ExecutionError):
    """Raised by an operation that checked control itself, found a stop in force and did
    nothing. The gateway reads control again: where a stop applies to the call it records the
    call ``not_executed``, citing that stop, as its own check before the call does; otherwise
    (no stop it can name) the call ``failed``."""


class OutcomeAmbiguous(ExecutionError):
    """A crash left an intent whose effect on the world cannot be established."""

    def __init__(self, intent_id: str, operation: str) -> None:
        super().__init__(
            f"intent {intent_id} ({operation}) was recorded but its outcome is unknown; "
            f"operation {operation!r} is paused until a person reconciles it"
        )
        self.intent_id = intent_id
        self.operation = operation


class RequestBuildFailed(AnswerableError):
    """An operation's resource or context builder raised, or returned something that is not JSON.

    The gateway records this as a deny: a broken builder refuses, it never crashes the gateway.

    Attributes:
        operation: the operation whose builder failed.
        reason: what went wrong, without the operation's name.
    """

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(
            f"building the Cedar request for {operation!r} failed: {reason}; fix the operation's "
            "resource or context builder (they must return JSON values)"
        )
        self.operation = operation
        self.reason = reason
