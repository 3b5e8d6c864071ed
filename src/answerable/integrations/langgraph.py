"""A LangGraph tool node whose tool calls are intents of an answerable service.

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.prebuilt import tools_condition
    from answerable.integrations.langgraph import governed_tool_node

    builder.add_node("tools", governed_tool_node([refund], client))   # where ToolNode would go
    builder.add_conditional_edges("model", tools_condition)
    graph = builder.compile(checkpointer=InMemorySaver())            # interrupts need one

Each tool call of the last AI message is submitted to ``answerable serve`` (the tool's body runs
there, once, as the operation of the same name); the model reads the outcome as a
``ToolMessage``. A call the rules send to review calls ``interrupt()`` with the review (its id,
the intent's id, the operation and the exact arguments). Resuming the graph
(``Command(resume=...)``) never approves anything: the node asks the service where the intent
stands and, while the review is open, interrupts again. Only a reviewer of the charter, answering
the review (``answerable approve`` or ``Client.answer``), lets it run. A resume value of the form
``{"intent_id": <the interrupt's intent_id>, "arguments": {...}}`` edits the call: the edited
arguments are a new intent with their own review, and the node interrupts for that one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.types import interrupt

from answerable.client import Client, ServiceRefused
from answerable.integrations._common import (
    MODEL_VISIBLE_REFUSALS,
    PendingReview,
    ToolCallInvalid,
    ToolOutcome,
    call_key,
    invalid_text,
    parse_arguments,
    refusal_text,
)

__all__ = ["GovernedToolNode", "PendingReview", "ToolCallInvalid", "ToolOutcome", "governed_tool_node"]


@dataclass(frozen=True, slots=True)
class GovernedToolNode:
    """A graph node that answers the last AI message's tool calls through the service.

    Attributes:
        operations: the service's operation for each tool name the node accepts.
        client: the agent's client of ``answerable serve`` (its key names the agent).
        wait_seconds: how long a resumed node waits for an open review's answer before it
            interrupts again (the service long-polls; 0 asks once).
        messages_key: where the state keeps its messages, as ``MessagesState`` does.
    """

    operations: Mapping[str, str]
    client: Client
    wait_seconds: float = 0.0
    messages_key: str = "messages"

    def __call__(self, state: Any) -> Any:
        """The tool messages for the last AI message's calls, in the state's own shape."""
        messages: Sequence[AnyMessage] = state if isinstance(state, list) else state[self.messages_key]
        last = messages[-1] if messages else None
        answers: list[ToolMessage] = []
        if isinstance(last, AIMessage):
            answers += [
                self._invalid(
                    ToolCallInvalid(
                        c["name"] or "", c["id"] or "", c["error"] or "its arguments are not JSON"
                    )
                )
                for c in last.invalid_tool_calls
            ]
            answers += [self._answer(c["name"], c["id"] or "", c["args"]) for c in last.tool_calls]
        return answers if isinstance(state, list) else {self.messages_key: answers}

    def _invalid(self, exc: ToolCallInvalid) -> ToolMessage:
        return ToolMessage(invalid_text(exc), tool_call_id=exc.call_id, name=exc.tool, status="error")

    def _answer(self, tool: str, call_id: str, args: Mapping[str, Any]) -> ToolMessage:
        """One call's outcome, asking (``interrupt()``) for each intent of it that went to review.

        It asks on every run of this node, even once the review is answered (the ask then says
        so in ``status``), because LangGraph hands resume values back by position: asking only
        while a review is open would shift every later value when a reviewer answers between
        two runs, and an edit would be lost. A call still waiting asks again after each resume,
        which can still shift a value onto a later ask: harmless, since a value approves nothing
        and an edit applies only to the intent it names."""
        operation = self.operations.get(tool)
        if operation is None:
            return self._invalid(
                ToolCallInvalid(tool, call_id, f"no such tool; known: {sorted(self.operations)}")
            )
        try:
            arguments = parse_arguments(tool, call_id, args)
        except ToolCallInvalid as exc:
            return self._invalid(exc)
        supersedes: str | None = None
        while True:
            try:
                doc = self.client.submit(
                    operation, arguments, idempotency_key=call_key(operation, call_id, arguments)
                )
            except ServiceRefused as exc:
                if exc.status in MODEL_VISIBLE_REFUSALS:
                    return ToolMessage(refusal_text(exc), tool_call_id=call_id, name=tool, status="error")
                raise
            outcome = ToolOutcome.from_doc(doc, operation, arguments)
            if outcome.review_id is None:
                break
            pending = PendingReview(
                outcome.review_id, outcome.intent_id, operation, arguments, call_id, supersedes
            )
            answer = interrupt({**pending.as_dict(), "status": outcome.status})
            edited = _edit_of(answer, pending)
            # An edit applies whatever the first intent's state, so every later run of this node
            # takes the same path to the same new intent. It does not withdraw the first one
            # (an agent cannot): its review stays open, marked superseded in the new ask.
            if edited is not None and edited != arguments:
                supersedes, arguments = outcome.intent_id, edited
                continue
            if outcome.waiting:
                doc = self.client.wait(outcome.intent_id, seconds=self.wait_seconds)
                outcome = ToolOutcome.from_doc(doc, operation, arguments)
            if not outcome.waiting:
                break
            # Still open: ask again. The next resume is checked against the service once more.
        return ToolMessage(
            outcome.for_model(),
            tool_call_id=call_id,
            name=tool,
            status="success" if outcome.status == "succeeded" else "error",
        )


def _edit_of(answer: Any, pending: PendingReview) -> dict[str, Any] | None:
    """The edited arguments a resume value carries for ``pending``'s intent, or None.

    A value naming another intent is a resume meant for an earlier ask of this node (LangGraph
    matches resume values by position, and a review answered meanwhile asks one time fewer): it
    edits nothing here. Anything else that is not an edit (True, "approve") only says "look again".

    Raises:
        ToolCallInvalid: an edit that names no intent, or whose arguments are not an object.
    """
    if not isinstance(answer, Mapping) or "arguments" not in answer:
        return None
    if "intent_id" not in answer:
        raise ToolCallInvalid(
            pending.operation,
            pending.call_id,
            "a resume value that edits arguments must name the interrupt's intent_id",
        )
    if answer["intent_id"] != pending.intent_id:
        return None
    return parse_arguments(pending.operation, pending.call_id, answer["arguments"])


def governed_tool_node(
    tools: Sequence[BaseTool | str],
    client: Client,
    *,
    operations: Mapping[str, str] | None = None,
    wait_seconds: float = 0.0,
    messages_key: str = "messages",
) -> GovernedToolNode:
    """A node to use in place of ``ToolNode(tools)``: the same tool names, answered by the service.

    Args:
        tools: the tools bound to the model (or their names); their bodies are never called here.
        client: the agent's client of ``answerable serve``.
        operations: the service's operation for a tool whose name differs from it.
        wait_seconds: see :class:`GovernedToolNode`.
        messages_key: see :class:`GovernedToolNode`.
    """
    names = [tool if isinstance(tool, str) else tool.name for tool in tools]
    return GovernedToolNode(
        {name: (operations or {}).get(name, name) for name in names}, client, wait_seconds, messages_key
    )
