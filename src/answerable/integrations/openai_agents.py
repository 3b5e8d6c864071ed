"""OpenAI Agents SDK function tools whose calls are intents of an answerable service.

    from agents import Agent, Runner
    from answerable.integrations.openai_agents import govern, settle

    agent = govern(Agent(name="refunds", tools=[refund]), client)   # client: an AsyncClient
    result = await Runner.run(agent, "refund order O-2")
    while result.interruptions:                  # calls waiting for a reviewer
        state = result.to_state()
        await settle(state, seconds=600)         # each reviewer's answer, put into the run
        result = await Runner.run(agent, state)

A governed tool never runs its body in the agent's process. Calling it submits an intent for the
operation of the same name (the service's config declares the same function as that operation's
``target``); the gateway runs it once, where the credentials are. The idempotency key comes from
the model's call id and the arguments, so the SDK invoking the same call again is not a second
effect, and an edited argument is a new intent with a new review.

A call the rules send to review becomes the SDK's own approval interruption. Approving it with
``RunState.approve`` (``always_approve`` included) only lets the SDK ask the service again: the
intent runs only once a reviewer of the charter has answered its review, signed and bound to its
exact arguments. :func:`settle` waits for those answers and approves (or rejects, with the
reviewer's denial) the interruptions they settle; it never approves one that is still open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agents import Agent, FunctionTool, Handoff, RunContextWrapper, RunState, ToolApprovalItem
from agents.tool_context import ToolContext

from answerable.client import AsyncClient, ServiceRefused
from answerable.errors import ConfigError
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

__all__ = [
    "PendingReview",
    "ToolCallInvalid",
    "ToolOutcome",
    "govern",
    "governed_tools",
    "pending_review",
    "settle",
]

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class _Governed:
    """A governed tool's invocation: the SDK calls it with the model's arguments as JSON."""

    tool: str
    operation: str
    client: AsyncClient
    wait_seconds: float
    first: dict[str, ToolOutcome] = field(default_factory=dict)
    """Final answers the approval check already got, by key, until the invocation reports them:
    only the first submit's answer carries the operation's result."""

    async def submit(self, call_id: str, arguments: dict[str, Any]) -> ToolOutcome:
        """The intent this call is (submitted now, or the one already made for the same key).

        Raises:
            ServiceRefused: the refusal is not the model's to act on (see MODEL_VISIBLE_REFUSALS).
        """
        key = call_key(self.operation, call_id, arguments)
        doc = await self.client.submit(self.operation, arguments, idempotency_key=key)
        return ToolOutcome.from_doc(doc, self.operation, arguments)

    async def needs_approval(self, _: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
        """The SDK's approval check, answered by submitting: True only while a review is open.

        Submitting here, before the SDK decides, is what makes the interruption carry a real
        review; a call the rules allow has run (once) by the time this returns False."""
        try:
            parse_arguments(self.tool, call_id, params)
        except ToolCallInvalid:
            return False  # nothing to review: the invocation parses them again and tells the model
        try:
            outcome = await self.submit(call_id, params)
        except ServiceRefused as exc:
            if exc.status in MODEL_VISIBLE_REFUSALS:
                return False  # the invocation submits again and hands the model the refusal
            raise
        if outcome.waiting:
            return True
        self.first[call_key(self.operation, call_id, params)] = outcome
        return False

    async def __call__(self, ctx: ToolContext[Any], raw: str) -> str:
        """What the model reads: the outcome of the intent, never the tool body's own return."""
        try:
            arguments = parse_arguments(self.tool, ctx.tool_call_id, raw)
        except ToolCallInvalid as exc:
            return invalid_text(exc)
        outcome = self.first.pop(call_key(self.operation, ctx.tool_call_id, arguments), None)
        if outcome is None:
            try:
                outcome = await self.submit(ctx.tool_call_id, arguments)
            except ServiceRefused as exc:
                if exc.status in MODEL_VISIBLE_REFUSALS:
                    return refusal_text(exc)
                raise
        if outcome.waiting and self.wait_seconds > 0:
            doc = await self.client.wait(outcome.intent_id, seconds=self.wait_seconds)
            outcome = ToolOutcome.from_doc(doc, self.operation, arguments)
        return outcome.for_model()


def governed_tools(
    tools: Sequence[FunctionTool],
    client: AsyncClient,
    *,
    operations: Mapping[str, str] | None = None,
    wait_seconds: float = 0.0,
) -> list[FunctionTool]:
    """The same tools (name, description, parameter schema) with calls that go to the service.

    Args:
        tools: function tools, as ``@function_tool`` makes them; their bodies are not called here.
        client: the agent's client of ``answerable serve`` (its key names the agent).
        operations: the service's operation for a tool whose name differs from it.
        wait_seconds: how long an invocation the SDK was told to go ahead with waits for an open
            review to be answered before it tells the model the call is still waiting.
    """
    made = []
    for tool in tools:
        if not isinstance(tool, FunctionTool):
            raise ConfigError(
                f"tool {getattr(tool, 'name', tool)!r} is a {type(tool).__name__}; only function tools "
                "can be governed (hosted tools run outside this process and outside the service)"
            )
        governed = _Governed(tool.name, (operations or {}).get(tool.name, tool.name), client, wait_seconds)
        made.append(
            FunctionTool(
                name=tool.name,
                description=tool.description,
                params_json_schema=tool.params_json_schema,
                on_invoke_tool=governed,
                strict_json_schema=tool.strict_json_schema,
                is_enabled=tool.is_enabled,
                needs_approval=governed.needs_approval,
            )
        )
    return made


def govern(
    agent: Agent[C],
    client: AsyncClient,
    *,
    operations: Mapping[str, str] | None = None,
    wait_seconds: float = 0.0,
) -> Agent[C]:
    """A copy of ``agent`` whose tools, and those of the agents it hands off to, are governed.

    Raises:
        ConfigError: the agent has a tool that cannot be governed (a hosted tool), an MCP server
            (its tools are listed at run time, past this wrapper) or a ``Handoff`` object (its
            agent is made at run time); left in, each would be a way around the service.
    """
    if agent.mcp_servers:
        raise ConfigError(
            f"agent {agent.name!r} has MCP servers; their tools would run ungoverned: "
            "declare them as operations of the service instead"
        )
    handoffs: list[Agent[Any] | Handoff[Any, Any]] = []
    for other in agent.handoffs:
        if not isinstance(other, Agent):
            raise ConfigError(
                f"agent {agent.name!r}: handoff {other.tool_name!r} is a Handoff object, whose agent "
                "this wrapper cannot see; hand off to a governed Agent instead"
            )
        handoffs.append(govern(other, client, operations=operations, wait_seconds=wait_seconds))
    tools = governed_tools(
        agent.tools,  # type: ignore[arg-type]  # checked one by one: only function tools pass
        client,
        operations=operations,
        wait_seconds=wait_seconds,
    )
    return agent.clone(tools=tools, handoffs=handoffs)


def _governed_of(item: ToolApprovalItem) -> _Governed | None:
    """The governed tool an interruption is for; None for any other tool's interruption."""
    for tool in item.agent.tools:
        if isinstance(tool, FunctionTool) and tool.name == item.tool_name:
            invoke = tool.on_invoke_tool
            return invoke if isinstance(invoke, _Governed) else None
    return None


async def pending_review(item: ToolApprovalItem) -> PendingReview:
    """The review an interruption of a governed tool waits for: show it to the reviewer.

    Raises:
        ToolCallInvalid: the interruption is not a governed tool's, or its arguments are not a
            JSON object (the SDK asks approval for those without letting a policy see them).
        ServiceRefused: the service cannot be asked.
    """
    governed = _governed_of(item)
    call_id = item.call_id or ""
    if governed is None:
        raise ToolCallInvalid(str(item.name), call_id, "it is no governed tool's call")
    arguments = parse_arguments(governed.tool, call_id, item.arguments)
    outcome = await governed.submit(call_id, arguments)  # the same key: the intent already made
    return PendingReview(
        review_id=outcome.review_id or "",
        intent_id=outcome.intent_id,
        operation=governed.operation,
        arguments=arguments,
        call_id=call_id,
    )


async def settle(state: RunState[Any], *, seconds: float = 0.0) -> list[ToolOutcome]:
    """Put the reviewers' answers into a paused run: approve each governed interruption whose
    intent a reviewer approved (it has run in the gateway, and the resumed run reports how),
    reject each one a reviewer denied or let expire, and leave those still open pending.

    Interruptions of tools that are not governed are left as they are: they are the
    application's to answer. A call whose arguments are not JSON is rejected with the reason.

    Args:
        state: the paused run (``result.to_state()``).
        seconds: how long to wait for each open review's answer (the service long-polls).

    Returns:
        Each governed interruption's outcome as it stood when settled.
    """
    outcomes = []
    for item in state.get_interruptions():
        governed = _governed_of(item)
        if governed is None:
            continue
        try:
            review = await pending_review(item)
        except ToolCallInvalid as exc:
            state.reject(item, rejection_message=str(exc))
            continue
        doc = await governed.client.wait(review.intent_id, seconds=seconds)
        outcome = ToolOutcome.from_doc(doc, review.operation, review.arguments)
        outcomes.append(outcome)
        if outcome.waiting:
            continue
        if outcome.status in ("denied", "expired"):
            state.reject(item, rejection_message=outcome.for_model())
        else:
            state.approve(item)
    return outcomes
