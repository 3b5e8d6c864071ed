"""Control: stopping is easy, starting is hard, and the state lives in the ledger."""

from __future__ import annotations

import pytest
from support import People, booking

from answerable import Controller, Gateway, NotAuthorized, Scope, SignatureInvalid, SQLiteLedger
from answerable.keys import KeyPair
from answerable.records import Control
from answerable.signing import sign


async def test_anyone_can_halt_and_is_recorded_as_they_say(gateway: Gateway, ledger: SQLiteLedger):
    """A halt needs no key: who and why are recorded as given."""
    halt = await gateway.control.halt(by="driver-42", reason="roads closed")
    assert (halt.by, halt.reason, halt.scope.label()) == ("driver-42", "roads closed", "system")
    assert gateway.control.state().stops == (halt,)


async def test_only_the_ri_lifts_a_halt(gateway: Gateway, people):
    """An operator may resume a pause but not a halt."""
    await gateway.control.halt(by="driver-42", reason="roads closed")
    with pytest.raises(NotAuthorized, match="requires the role ri"):
        await gateway.control.resume(key=people.operator, reason="looks fine")
    await gateway.control.resume(key=people.ri, reason="checked")
    assert gateway.control.state().stops == ()


async def test_reviewer_and_stranger_cannot_resume(gateway: Gateway, people):
    """Resuming needs the operator or RI role in the charter."""
    await gateway.control.pause(by="x", reason="y")
    for key in (people.reviewer, people.stranger):
        with pytest.raises(NotAuthorized):
            await gateway.control.resume(key=key, reason="please")


async def test_resume_with_a_key_not_in_the_charter_is_refused(gateway: Gateway, people):
    """Claiming the RI's identity with another key fails the signature check."""
    await gateway.control.pause(by="x", reason="y")
    impostor = KeyPair.generate(people.ri.identity)
    with pytest.raises(SignatureInvalid):
        await gateway.control.resume(key=impostor, reason="trust me")


async def test_forged_resume_written_straight_to_the_ledger_is_ignored(
    gateway: Gateway, ledger: SQLiteLedger, people
):
    """A resume appended without a valid signature does not lift the stop."""
    halt = await gateway.control.halt(by="x", reason="y")
    forged = sign(
        gateway.control.make("resume", Scope(kind="system"), people.ri.identity, "sneaky"),
        KeyPair.generate("someone"),
    )
    ledger.append_sync([forged])
    assert gateway.control.state().stops == (halt,)
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    assert outcome.status == "denied"


async def test_scopes_block_only_what_they_name(gateway: Gateway):
    """Agent, operation and resource-class scopes each block only their own."""
    await gateway.control.pause(by="x", reason="y", scope=Scope(kind="agent", value="router"))
    await gateway.control.pause(by="x", reason="y", scope=Scope(kind="resource_class", value="bench"))
    state = gateway.control.state()
    assert state.blocking(agent="router", operation="carrier.book", resource_class="shipment") is not None
    assert state.blocking(agent="executor", operation="noop", resource_class="bench") is not None
    assert state.blocking(agent="executor", operation="carrier.book", resource_class="shipment") is None


async def test_a_second_process_sees_the_same_state(gateway: Gateway, ledger_path, people):
    """Control folded from the ledger by another reader matches the writer's view."""
    await gateway.control.pause(by="x", reason="y", scope=Scope(kind="operation", value="carrier.book"))
    with SQLiteLedger.open(ledger_path) as other:
        [stop] = Controller(other).state().stops
    assert isinstance(stop, Control)
    assert stop.scope.label() == "operation:carrier.book"


def test_scope_needs_a_value_except_for_system():
    """'system' takes no value; the other scopes need one."""
    with pytest.raises(ValueError, match="scope"):
        Scope(kind="agent")
    with pytest.raises(ValueError, match="scope"):
        Scope(kind="system", value="x")


async def test_a_paused_call_is_said_to_be_stopped_not_refused_by_the_rule_that_permits_it(
    gateway: Gateway, people: People
):
    """Found in review: a call denied by a pause was told to the agent framework as "the rules
    refused it" with the permit that allowed it (``routine-bookings``), by the MCP proxy as "denied
    by the rules (routine-bookings)", and ``why`` read "Decision deny by routine-bookings". The
    Decision keeps what Cedar said; every reader now names the stop instead."""
    import json

    from answerable.integrations._common import ToolOutcome
    from answerable.mcp_proxy import _answer
    from answerable.provenance import why
    from answerable.service import outcome_doc

    await gateway.control.pause(
        by="ops@logistics.example", reason="storm", scope=Scope(kind="operation", value="carrier.book")
    )
    outcome = await gateway.submit(gateway.intent("executor", "carrier.book", booking()))
    assert outcome.status == "denied"
    decision = outcome.decision
    assert decision is not None
    assert decision.policy_ids == ("routine-bookings",)  # Cedar's word, as recorded
    assert decision.stop == "pause in force on operation:carrier.book by ops@logistics.example: storm"
    doc = outcome_doc(outcome)
    assert (doc["decision"]["control_id"], doc["decision"]["stop"]) == (decision.control_id, decision.stop)
    told = json.loads(ToolOutcome.from_doc(doc, "carrier.book", booking()).for_model())
    assert told["stop"] == decision.stop
    assert "policy_ids" not in told
    assert "rules" not in told["note"]
    answered = _answer(doc, {})["content"][0]["text"]
    assert answered.startswith(f"stopped: {decision.stop}")
    assert "routine-bookings" not in answered
    chain = why(gateway.ledger, decision.id).to_json()
    said = json.dumps(chain)
    assert "deny by routine-bookings" not in said
    assert f"Decision deny: {decision.stop}" in said
    assert "policy:routine-bookings" not in said  # the rule did not decide it

    await gateway.control.resume(
        key=people.ri, reason="over", scope=Scope(kind="operation", value="carrier.book")
    )
    allowed = await gateway.submit(gateway.intent("executor", "carrier.book", booking("S-2")))
    assert allowed.decision is not None
    assert allowed.decision.stop is None
    assert "policy:routine-bookings" in json.dumps(why(gateway.ledger, allowed.decision.id).to_json())


async def test_a_stop_of_an_agent_the_charter_does_not_name_is_kept_and_its_typist_is_told(
    gateway: Gateway, ledger_path
):
    """``agent:ruoter`` for ``agent:router`` in a storm read as a pause that holds. The stop is still
    recorded (an agent may join later, and no stop is ever refused), after which the person is told,
    on stderr and in the JSON, through the console script's fast path as a person types it."""
    from procs import cli

    gateway.close()
    typo = await cli("pause", str(ledger_path), "--by", "ops", "--reason", "storm", "--scope", "agent:ruoter")
    assert typo.code == 0, typo.err
    assert typo.out.startswith("pause recorded: ")
    assert typo.err == (
        "answerable: warning: the charter names no agent 'ruoter' (it names executor, router): "
        "this stops nothing until one joins\n"
    )
    right = await cli(
        "pause", str(ledger_path), "--by", "ops", "--reason", "storm", "--scope", "agent:router", "--json"
    )
    assert (right.code, right.err) == (0, "")
    assert "warning" not in right.out
    with SQLiteLedger.open(ledger_path) as store:
        scopes = [s.scope.label() for s in Controller(store).state().stops]
    assert scopes == ["agent:ruoter", "agent:router"]  # both recorded
