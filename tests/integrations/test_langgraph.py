"""A LangGraph graph whose tool node goes through a real ``answerable serve``.

The "model" is a node that emits scripted AI messages with tool calls: no model is called. The
tool's body never runs in the test's process; the service runs ``operations:refund``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import tools_condition
from langgraph.types import Command
from ledger_view import executions_of, recorded, refunds_paid
from served import Running

from answerable.client import Client, ServiceRefused
from answerable.integrations.langgraph import ToolCallInvalid, governed_tool_node
from answerable.keys import KeyPair

pytestmark = pytest.mark.slow


@tool
def refund(order: str, amount_cents: int) -> str:
    """Refund an order; the amount in cents."""
    raise AssertionError("a governed tool's body never runs in the agent's process")


@pytest.fixture
def client(shop: Running) -> Iterator[Client]:
    with Client(shop.url, KeyPair.load(shop.folder / "agent.key")) as agent_client:
        yield agent_client


@pytest.fixture
def reviewer(shop: Running) -> Iterator[Client]:
    with Client(shop.url, KeyPair.load(shop.folder / "reviewer.key")) as reviewer_client:
        yield reviewer_client


def calls(*calls: tuple[str, dict[str, Any] | str]) -> AIMessage:
    """An AI message asking for ``refund`` calls, each (call id, arguments)."""
    good = [(i, a) for i, a in calls if isinstance(a, dict)]
    bad = [(i, a) for i, a in calls if isinstance(a, str)]
    return AIMessage(
        content="",
        tool_calls=[{"name": "refund", "args": a, "id": i, "type": "tool_call"} for i, a in good],
        invalid_tool_calls=[
            {"name": "refund", "args": a, "id": i, "error": "not JSON", "type": "invalid_tool_call"}
            for i, a in bad
        ],
    )


def graph_of(client: Client, *turns: AIMessage) -> CompiledStateGraph[Any, Any, Any, Any]:
    """model -> tools -> model ..., the model saying ``turns`` in order, then "done"."""
    script = iter(turns)

    def model(state: MessagesState) -> dict[str, list[AIMessage]]:
        return {"messages": [next(script, AIMessage(content="done"))]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", governed_tool_node([refund], client))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=InMemorySaver())


def told(state: dict[str, Any]) -> list[dict[str, Any]]:
    """What the tool node told the model so far, each parsed."""
    return [json.loads(str(m.content)) for m in state["messages"] if isinstance(m, ToolMessage)]


def asked(state: dict[str, Any]) -> dict[str, Any]:
    [pending] = state["__interrupt__"]
    value: dict[str, Any] = pending.value
    return value


def test_a_call_the_rules_allow_runs_once_in_the_service(shop: Running, client: Client) -> None:
    """No review, no interrupt: the model reads the operation's result."""
    graph = graph_of(client, calls(("lg-small", {"order": "LG-1", "amount_cents": 1500})))
    out = graph.invoke({"messages": [HumanMessage("refund LG-1")]}, {"configurable": {"thread_id": "lg-1"}})
    assert "__interrupt__" not in out
    [result] = told(out)
    assert (result["status"], result["result"]) == ("succeeded", {"refunded": 1500, "order": "LG-1"})
    assert len(executions_of(shop.folder, result["intent_id"])) == 1


def test_a_resume_is_no_approval_and_the_reviewers_approval_runs_it_once(
    shop: Running, client: Client, reviewer: Client
) -> None:
    """interrupt() carries the review; resuming without the reviewer's answer runs nothing and
    asks again; after the reviewer approves, the next resume reports the execution."""
    graph = graph_of(client, calls(("lg-large", {"order": "LG-2", "amount_cents": 50000})))
    thread = {"configurable": {"thread_id": "lg-2"}}
    out = graph.invoke({"messages": [HumanMessage("refund LG-2")]}, thread)
    review = asked(out)
    assert (review["operation"], review["arguments"]) == ("refund", {"order": "LG-2", "amount_cents": 50000})
    assert review["review_id"] in [r["review_id"] for r in client.reviews()]

    out = graph.invoke(Command(resume="approve"), thread)  # the framework's approval: nobody signed
    assert asked(out)["review_id"] == review["review_id"]
    assert executions_of(shop.folder, review["intent_id"]) == []
    assert "LG-2" not in [r["order"] for r in refunds_paid(shop.folder)]

    reviewer.answer(review["review_id"], "approve", "LG-2 matches the returned goods")
    assert client.wait(review["intent_id"], seconds=20)["status"] == "succeeded"
    out = graph.invoke(Command(resume="approve"), thread)
    assert "__interrupt__" not in out
    [result] = told(out)
    assert (result["status"], result["intent_id"]) == ("succeeded", review["intent_id"])
    assert len(executions_of(shop.folder, review["intent_id"])) == 1
    [approval] = [a for a in recorded(shop.folder, "Approval") if a["intent_id"] == review["intent_id"]]
    assert (approval["by"], approval["reason"]) == (reviewer.key.identity, "LG-2 matches the returned goods")
    assert [r["order"] for r in refunds_paid(shop.folder)].count("LG-2") == 1


def test_an_edit_on_resume_is_a_new_intent_and_the_old_approval_does_not_carry_over(
    shop: Running, client: Client, reviewer: Client
) -> None:
    """The edited arguments get their own review; approving the original runs the original only."""
    graph = graph_of(client, calls(("lg-edit", {"order": "LG-3", "amount_cents": 60000})))
    thread = {"configurable": {"thread_id": "lg-3"}}
    original = asked(graph.invoke({"messages": [HumanMessage("refund LG-3")]}, thread))
    out = graph.invoke(
        Command(
            resume={"intent_id": original["intent_id"], "arguments": {"order": "LG-3", "amount_cents": 20000}}
        ),
        thread,
    )
    edited = asked(out)
    assert edited["intent_id"] != original["intent_id"]
    assert edited["review_id"] != original["review_id"]
    assert (edited["arguments"]["amount_cents"], edited["supersedes"]) == (20000, original["intent_id"])

    reviewer.answer(original["review_id"], "approve", "the first amount was fine")  # not the edit's
    out = graph.invoke(Command(resume="approve"), thread)
    assert asked(out)["review_id"] == edited["review_id"]
    assert executions_of(shop.folder, edited["intent_id"]) == []

    reviewer.answer(edited["review_id"], "deny", "20000 is not what was returned")
    out = graph.invoke(Command(resume="check"), thread)
    [result] = told(out)
    assert (result["status"], result["intent_id"]) == ("denied", edited["intent_id"])
    assert executions_of(shop.folder, edited["intent_id"]) == []
    assert client.wait(original["intent_id"], seconds=20)["status"] == "succeeded"  # what was approved
    assert [r["amount_cents"] for r in refunds_paid(shop.folder) if r["order"] == "LG-3"] == [60000]


def test_two_calls_each_ask_for_their_own_review_and_a_late_edit_edits_nothing(
    shop: Running, client: Client, reviewer: Client
) -> None:
    """Resume values line up with the asks in order; an edit that arrives after its review was
    answered, or that lands on another call's ask, changes nothing and runs nothing twice."""
    graph = graph_of(
        client,
        calls(
            ("lg-two-a", {"order": "LG-4", "amount_cents": 30000}),
            ("lg-two-b", {"order": "LG-5", "amount_cents": 35000}),
        ),
    )
    thread = {"configurable": {"thread_id": "lg-4"}}
    first = asked(graph.invoke({"messages": [HumanMessage("refund LG-4, LG-5")]}, thread))
    again = asked(graph.invoke(Command(resume="check"), thread))  # still open: asked again
    assert again["intent_id"] == first["intent_id"]
    reviewer.answer(first["review_id"], "approve", "LG-4 checked")
    client.wait(first["intent_id"], seconds=20)
    late = {"intent_id": first["intent_id"], "arguments": {"order": "LG-4", "amount_cents": 1}}
    second = asked(graph.invoke(Command(resume=late), thread))  # lands on LG-5's ask: ignored
    assert (second["arguments"]["order"], second["supersedes"]) == ("LG-5", None)
    reviewer.answer(second["review_id"], "approve", "LG-5 checked")
    client.wait(second["intent_id"], seconds=20)
    out = graph.invoke(Command(resume="check"), thread)
    assert [r["status"] for r in told(out)] == ["succeeded", "succeeded"]
    paid = [
        (r["order"], r["amount_cents"]) for r in refunds_paid(shop.folder) if r["order"] in ("LG-4", "LG-5")
    ]
    assert paid == [("LG-4", 30000), ("LG-5", 35000)]


def test_bad_calls_are_precise_answers_and_nothing_unrecorded_runs(shop: Running, client: Client) -> None:
    """Off-schema arguments: the service's refusal; unreadable ones and unknown tools: never
    submitted; a denial by the rules: recorded and said. The model reads each."""
    before = len(recorded(shop.folder, "Intent"))
    message = calls(
        ("lg-bad-type", {"order": "LG-6", "amount_cents": "lots"}),
        ("lg-too-much", {"order": "LG-7", "amount_cents": 900000}),
        ("lg-not-json", '{"order": "LG-8", "amount_cents": '),
        ("lg-split-emoji", {"order": "LG-9 \ud83d", "amount_cents": 100}),  # half a surrogate pair
    )
    message.tool_calls.append({"name": "transfer", "args": {}, "id": "lg-unknown", "type": "tool_call"})
    graph = graph_of(client, message)
    out = graph.invoke({"messages": [HumanMessage("refund")]}, {"configurable": {"thread_id": "lg-5"}})
    not_json, bad, too_much, split, unknown = told(out)
    assert not_json["status"] == "invalid"
    # json.loads took it; the run failed in the client's UnicodeEncodeError before
    assert split["status"] == "invalid"
    assert "lone surrogate" in split["error"]
    assert (bad["status"], bad["reason_code"]) == ("refused", "ArgumentsInvalid")
    assert too_much["status"] == "denied"
    assert unknown["status"] == "invalid"
    assert "no such tool" in unknown["error"]
    assert len(recorded(shop.folder, "Intent")) == before + 1  # the denied one, recorded
    assert executions_of(shop.folder, too_much["intent_id"]) == []


def test_an_edit_without_the_intent_it_edits_and_an_unreachable_service_raise(
    shop: Running, client: Client
) -> None:
    """An edit must name the interrupt's intent; no service, no call. Both raise answerable errors."""
    graph = graph_of(client, calls(("lg-unnamed", {"order": "LG-9", "amount_cents": 20000})))
    thread = {"configurable": {"thread_id": "lg-6"}}
    asked(graph.invoke({"messages": [HumanMessage("refund LG-9")]}, thread))
    with pytest.raises(ToolCallInvalid, match="intent_id"):
        graph.invoke(Command(resume={"arguments": {"order": "LG-9", "amount_cents": 1}}), thread)

    with Client("http://127.0.0.1:9", KeyPair.load(shop.folder / "agent.key")) as nowhere:
        graph = graph_of(nowhere, calls(("lg-nowhere", {"order": "LG-10", "amount_cents": 100})))
        with pytest.raises(ServiceRefused) as refused:
            graph.invoke({"messages": [HumanMessage("refund")]}, {"configurable": {"thread_id": "lg-7"}})
    assert refused.value.reason_code == "unreachable"
