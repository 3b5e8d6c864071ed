"""An OpenAI Agents SDK agent whose tool calls go through a real ``answerable serve``.

The model is the SDK's own ``ScriptedModel``: no model is called. The tool's body never runs in
the test's process; the service runs ``operations:refund`` from the shop's folder.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, RunResult, RunState, ToolCallOutputItem, UserError, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call
from ledger_view import executions_of, recorded, refunds_paid
from served import Running

from answerable.client import AsyncClient, ServiceRefused
from answerable.errors import ConfigError
from answerable.integrations.openai_agents import govern, pending_review, settle
from answerable.keys import KeyPair

pytestmark = pytest.mark.slow
NO_TRACES = RunConfig(tracing_disabled=True)


@function_tool
def refund(order: str, amount_cents: int) -> str:
    """Refund an order; the amount in cents."""
    raise AssertionError("a governed tool's body never runs in the agent's process")


@pytest.fixture
async def client(shop: Running) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(shop.url, KeyPair.load(shop.folder / "agent.key")) as agent_client:
        yield agent_client


@pytest.fixture
async def reviewer(shop: Running) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(shop.url, KeyPair.load(shop.folder / "reviewer.key")) as reviewer_client:
        yield reviewer_client


def said(result: RunResult) -> list[dict[str, Any]]:
    """What the tool told the model in this run, each parsed."""
    return [json.loads(str(i.output)) for i in result.new_items if isinstance(i, ToolCallOutputItem)]


def agent_calling(client: AsyncClient, *turns: list[Any]) -> Agent[Any]:
    return govern(Agent(name="refunds", model=ScriptedModel(turns), tools=[refund]), client)


async def test_a_call_the_rules_allow_runs_once_in_the_service_and_the_model_gets_its_result(
    shop: Running, client: AsyncClient
) -> None:
    """No review: the intent runs in the gateway and its result is the tool's output."""
    agent = agent_calling(
        client,
        [function_call("refund", {"order": "OA-1", "amount_cents": 2500}, call_id="oa-small")],
        [assistant_message("refunded")],
    )
    result = await Runner.run(agent, "refund OA-1", run_config=NO_TRACES)
    assert not result.interruptions
    [out] = said(result)
    assert (out["status"], out["result"]) == ("succeeded", {"refunded": 2500, "order": "OA-1"})
    assert len(executions_of(shop.folder, out["intent_id"])) == 1
    assert [r["order"] for r in refunds_paid(shop.folder)].count("OA-1") == 1


async def test_a_framework_approval_runs_nothing_and_the_reviewers_approval_runs_it_once(
    shop: Running, client: AsyncClient, reviewer: AsyncClient
) -> None:
    """RunState.approve alone executes nothing; after the reviewer approves, the resumed run
    reports the execution, and the ledger holds one execution and the reviewer's who and why."""
    agent = agent_calling(
        client,
        [function_call("refund", {"order": "OA-2", "amount_cents": 50000}, call_id="oa-large")],
        [assistant_message("asked")],
        [assistant_message("refunded")],
    )
    first = await Runner.run(agent, "refund OA-2", run_config=NO_TRACES)
    [item] = first.interruptions
    review = await pending_review(item)
    assert (review.operation, dict(review.arguments)) == ("refund", {"order": "OA-2", "amount_cents": 50000})
    assert review.review_id in [r["review_id"] for r in await client.reviews()]
    paused = first.to_state().to_string()

    only_framework = first.to_state()
    only_framework.approve(item)  # the SDK's approval: nobody of the charter signed anything
    resumed = await Runner.run(agent, only_framework, run_config=NO_TRACES)
    [out] = said(resumed)
    assert (out["status"], out["review_id"]) == ("review", review.review_id)
    assert executions_of(shop.folder, review.intent_id) == []
    assert "OA-2" not in [r["order"] for r in refunds_paid(shop.folder)]

    await reviewer.answer(review.review_id, "approve", "order OA-2 checked against the invoice")
    state = await RunState.from_string(agent, paused)
    [settled] = await settle(state, seconds=20)
    assert settled.status == "succeeded"
    final = await Runner.run(agent, state, run_config=NO_TRACES)
    [out] = said(final)
    assert (out["status"], out["intent_id"]) == ("succeeded", review.intent_id)
    assert final.final_output == "refunded"
    [execution] = executions_of(shop.folder, review.intent_id)
    assert execution["status"] == "succeeded"
    [approval] = [a for a in recorded(shop.folder, "Approval") if a["intent_id"] == review.intent_id]
    assert (approval["by"], approval["reason"]) == (
        reviewer.key.identity,
        "order OA-2 checked against the invoice",
    )
    assert [r["order"] for r in refunds_paid(shop.folder)].count("OA-2") == 1


async def test_an_edited_argument_is_a_new_intent_whose_review_the_old_approval_does_not_answer(
    shop: Running, client: AsyncClient, reviewer: AsyncClient
) -> None:
    """The same call id with another amount: a new intent, a new review, nothing run for it."""
    agent = agent_calling(
        client,
        [function_call("refund", {"order": "OA-3", "amount_cents": 40000}, call_id="oa-edit")],
        [assistant_message("done")],
    )
    first = await Runner.run(agent, "refund OA-3", run_config=NO_TRACES)
    [item] = first.interruptions
    original = await pending_review(item)
    await reviewer.answer(original.review_id, "approve", "40000 is right")

    edited = agent_calling(
        client,
        [function_call("refund", {"order": "OA-3", "amount_cents": 45000}, call_id="oa-edit")],
        [assistant_message("done")],
    )
    second = await Runner.run(edited, "refund OA-3", run_config=NO_TRACES)
    [item] = second.interruptions
    changed = await pending_review(item)
    assert changed.intent_id != original.intent_id
    assert changed.review_id != original.review_id
    assert changed.review_id in [r["review_id"] for r in await client.reviews()]
    state = second.to_state()
    [still_open] = await settle(state)
    assert still_open.waiting
    assert still_open.intent_id == changed.intent_id
    state.approve(item)
    resumed = await Runner.run(edited, state, run_config=NO_TRACES)
    assert said(resumed)[0]["status"] == "review"
    assert executions_of(shop.folder, changed.intent_id) == []
    assert [r["amount_cents"] for r in refunds_paid(shop.folder) if r["order"] == "OA-3"] == [40000]


async def test_always_approve_in_the_framework_does_not_bypass_the_next_calls_review(
    shop: Running, client: AsyncClient, reviewer: AsyncClient
) -> None:
    """always_approve skips the SDK's check, not the service's: another call opens its own review."""
    agent = agent_calling(
        client,
        [function_call("refund", {"order": "OA-4", "amount_cents": 30000}, call_id="oa-always-1")],
        [function_call("refund", {"order": "OA-5", "amount_cents": 90000}, call_id="oa-always-2")],
        [assistant_message("done")],
    )
    first = await Runner.run(agent, "refund OA-4 and OA-5", run_config=NO_TRACES)
    [item] = first.interruptions
    review = await pending_review(item)
    await reviewer.answer(review.review_id, "approve", "OA-4 checked")
    state = first.to_state()
    await settle(state, seconds=20)
    state.approve(item, always_approve=True)
    resumed = await Runner.run(agent, state, run_config=NO_TRACES)
    assert not resumed.interruptions  # the SDK asked nobody about the second call
    one, two = said(resumed)
    assert one["status"] == "succeeded"
    assert two["status"] == "review"
    assert two["review_id"] != review.review_id
    assert two["review_id"] in [r["review_id"] for r in await client.reviews()]
    assert executions_of(shop.folder, two["intent_id"]) == []
    assert "OA-5" not in [r["order"] for r in refunds_paid(shop.folder)]


async def test_bad_calls_from_the_model_are_precise_answers_and_nothing_unrecorded_runs(
    shop: Running, client: AsyncClient
) -> None:
    """Arguments off the schema are the service's refusal; arguments that are not JSON are
    never submitted; a denial by the rules is said as one; all are told to the model."""
    before = len(recorded(shop.folder, "Intent"))
    agent = agent_calling(
        client,
        [
            function_call("refund", {"order": "OA-6", "amount_cents": "lots"}, call_id="oa-bad-type"),
            function_call("refund", {"order": "OA-7", "amount_cents": 900000}, call_id="oa-too-much"),
        ],
        [assistant_message("done")],
    )
    result = await Runner.run(agent, "refund", run_config=NO_TRACES)
    bad, too_much = said(result)
    assert (bad["status"], bad["reason_code"]) == ("refused", "ArgumentsInvalid")
    assert "amount_cents" in bad["error"]
    assert too_much["status"] == "denied"
    assert executions_of(shop.folder, too_much["intent_id"]) == []
    assert len(recorded(shop.folder, "Intent")) == before + 1  # the denied one, recorded

    not_json = agent_calling(
        client,
        [function_call("refund", '{"order": "OA-8", "amount_cents": NaN}', call_id="oa-nan")],
        [assistant_message("done")],
    )
    first = await Runner.run(not_json, "refund", run_config=NO_TRACES)
    assert len(first.interruptions) == 1  # the SDK asks before a policy may look at arguments it cannot read
    state = first.to_state()
    assert await settle(state) == []
    rejected = await Runner.run(not_json, state, run_config=NO_TRACES)
    [out] = [str(i.output) for i in rejected.new_items if isinstance(i, ToolCallOutputItem)]
    assert "not JSON" in out
    assert len(recorded(shop.folder, "Intent")) == before + 1


async def test_an_unreachable_service_fails_the_run_with_the_services_error(shop: Running) -> None:
    """No service, no call: the run fails rather than telling the model anything. The SDK wraps
    a tool's exception in its UserError; the service's error is its cause."""
    async with AsyncClient("http://127.0.0.1:9", KeyPair.load(shop.folder / "agent.key")) as nowhere:
        agent = agent_calling(
            nowhere,
            [function_call("refund", {"order": "OA-9", "amount_cents": 100}, call_id="oa-nowhere")],
        )
        with pytest.raises(UserError) as failed:
            await Runner.run(agent, "refund", run_config=NO_TRACES)
    cause = failed.value.__cause__
    assert isinstance(cause, ServiceRefused)
    assert (cause.status, cause.reason_code) == (0, "unreachable")


def test_an_agent_with_a_tool_the_service_cannot_govern_is_refused(shop: Running) -> None:
    """A hosted tool would run past the service: govern() says so instead of leaving it in."""
    from agents import WebSearchTool

    client = AsyncClient(shop.url, KeyPair.load(shop.folder / "agent.key"))
    with pytest.raises(ConfigError, match="WebSearchTool"):
        govern(Agent(name="searcher", tools=[refund, WebSearchTool()]), client)
