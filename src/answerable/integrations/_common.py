"""What the framework adapters share: a tool call's key, its outcome as a record, what a model reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from answerable._canonical import json_problems
from answerable.client import ServiceRefused
from answerable.errors import AnswerableError

__all__ = [
    "MODEL_VISIBLE_REFUSALS",
    "PendingReview",
    "ToolCallInvalid",
    "ToolOutcome",
    "call_key",
    "invalid_text",
    "parse_arguments",
    "refusal_text",
]

MODEL_VISIBLE_REFUSALS = frozenset({409, 422})
"""Refusals the model caused and can act on (arguments that do not match the operation's schema,
an operation that does not exist, a call id reused with other arguments): said to the model as
the tool's result. Any other refusal (the service unreachable, this agent's key unknown, a 5xx)
is the deployment's problem, not the model's, and is raised."""


class ToolCallInvalid(AnswerableError):
    """A framework handed over a tool call that cannot become an intent; nothing was submitted.

    Attributes:
        tool: the tool's name as the framework gave it.
        call_id: the framework's id of the call.
        problem: what is wrong with it.
    """

    def __init__(self, tool: str, call_id: str, problem: str) -> None:
        super().__init__(f"tool call {call_id!r} to {tool!r}: {problem}; nothing was submitted")
        self.tool = tool
        self.call_id = call_id
        self.problem = problem


def call_key(operation: str, call_id: str, arguments: Mapping[str, Any]) -> str:
    """The idempotency key of one tool call: the framework's call id plus a digest of the
    operation and arguments.

    The call id makes a framework's retry of the same call (a resumed run invoking it again) the
    same intent, so it runs at most once. The digest makes an edited argument under the same call
    id a different key, so it is a new intent with its own review rather than a 409, and never
    inherits the first one's approval.
    """
    canonical = json.dumps([operation, arguments], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # A lone surrogate (half an emoji pair a model split) has no UTF-8: its code point's bytes
    # stand in, and the gateway refuses the arguments by name, as it refuses any not JSON.
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    if len(call_id) > 96:  # the service takes keys up to 128 characters: a long id by its digest
        call_id = "sha256-" + hashlib.sha256(call_id.encode()).hexdigest()[:64]
    return f"{call_id}:{digest}"


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON; sent on, they would arrive at the service as null."""
    raise ValueError(f"{name} is not a JSON value")


def parse_arguments(tool: str, call_id: str, raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A tool call's arguments as the object the service validates.

    Raises:
        ToolCallInvalid: ``raw`` is not JSON, or not a JSON object.
    """
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        parsed: Any = dict(raw)
    else:
        try:
            parsed = json.loads(raw, parse_constant=_no_constant)
        except ValueError as exc:
            raise ToolCallInvalid(tool, call_id, f"its arguments are not JSON ({exc})") from exc
    if not isinstance(parsed, dict):
        raise ToolCallInvalid(
            tool, call_id, f"its arguments are a JSON {type(parsed).__name__}, not an object"
        )
    # json.loads takes "\ud83d", half of an emoji pair a model split, which no UTF-8 (so no
    # JSON sent on) can carry; a framework's dict may hold a NaN: the model is told, as for any
    # arguments that are not JSON, instead of the run failing in the client.
    found = json_problems(parsed, strict=False, limit=3)
    if found:
        raise ToolCallInvalid(tool, call_id, f"its arguments are not JSON ({'; '.join(found)})")
    return parsed


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """Where the intent a tool call became stands, as the service answered."""

    intent_id: str
    operation: str
    arguments: Mapping[str, Any]
    status: str
    """``succeeded``, ``failed``, ``denied``, ``expired``, ``not_executed``, ``ambiguous``, or
    ``review`` while it waits for a reviewer."""
    review_id: str | None = None
    execution_id: str | None = None
    result: Any = None
    """The operation's return value, when the answer carried it (the first submit's answer does;
    an answer read later, after a review, carries the execution's id and status only)."""
    policy_ids: tuple[str, ...] = ()
    stop: str | None = None
    """The halt or pause that denied it (in force on what, by whom, why), when one did: then the
    rules did not refuse it, and it may run if asked again after a person resumes."""
    error: str | None = None
    has_result: bool = field(default=False, repr=False)

    @property
    def waiting(self) -> bool:
        """The intent waits for a reviewer: nothing has run yet."""
        return self.status == "review"

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], operation: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        """From the service's answer to a submit or a wait for ``operation`` with ``arguments``."""
        decision = doc.get("decision") or {}
        execution = doc.get("execution") or {}
        return cls(
            intent_id=str(doc["intent_id"]),
            operation=operation,
            arguments=dict(arguments),
            status=str(doc["status"]),
            review_id=None if doc.get("review_id") is None else str(doc["review_id"]),
            execution_id=None if not execution.get("id") else str(execution["id"]),
            result=doc.get("result"),
            policy_ids=tuple(str(p) for p in decision.get("policy_ids") or ()),
            stop=None if decision.get("stop") is None else str(decision["stop"]),
            error=execution.get("error") or None,
            has_result="result" in doc,
        )

    def for_model(self) -> str:
        """The tool's result as the model reads it: JSON that says what happened and, when
        nothing ran, why and what is awaited."""
        said: dict[str, Any] = {"status": self.status, "intent_id": self.intent_id}
        if self.review_id is not None:
            said["review_id"] = self.review_id
        if self.status == "succeeded":
            said["execution_id"] = self.execution_id
            if self.has_result:
                said["result"] = self.result
            else:
                said["note"] = "run once by the gateway after the review; its result stays in the service"
        elif self.waiting:
            said["note"] = (
                "waiting for a reviewer; nothing has run. Approving this call in the agent "
                "framework does not run it: a reviewer answers the review (answerable approve), "
                "then the run is resumed."
            )
        elif self.status == "denied" and self.stop is not None:
            said["stop"] = self.stop
            said["note"] = (
                "a halt or pause stopped it; nothing ran. Asked again after a person resumes, it may run"
            )
        elif self.status == "denied":
            said["policy_ids"] = list(self.policy_ids)
            said["note"] = (
                "a reviewer denied it; nothing ran" if self.review_id else "the rules refused it; nothing ran"
            )
        elif self.status == "expired":
            said["note"] = "no reviewer answered in time; nothing ran"
        else:
            said["error"] = self.error
        return json.dumps(said, default=str)


def invalid_text(exc: ToolCallInvalid) -> str:
    """A call that could not become an intent, as the tool's result."""
    return json.dumps({"status": "invalid", "error": str(exc)})


def refusal_text(exc: ServiceRefused) -> str:
    """A refusal the model caused, as the tool's result: the service's reason code and message."""
    return json.dumps({"status": "refused", "reason_code": exc.reason_code, "error": str(exc)})


@dataclass(frozen=True, slots=True)
class PendingReview:
    """A tool call waiting for a reviewer: what to show them and what their answer binds to."""

    review_id: str
    intent_id: str
    operation: str
    arguments: Mapping[str, Any]
    """Exactly what the reviewer approves; any other arguments are another intent."""
    call_id: str
    supersedes: str | None = None
    """The intent this one replaces when it came from an edit; its review stays open until a
    reviewer answers it (an agent cannot withdraw an intent), so deny it if the edit is meant."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for a framework that carries the review as plain data."""
        return {
            "review_id": self.review_id,
            "intent_id": self.intent_id,
            "operation": self.operation,
            "arguments": dict(self.arguments),
            "call_id": self.call_id,
            "supersedes": self.supersedes,
        }
