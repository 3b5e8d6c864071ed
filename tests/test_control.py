"""Control: stopping is easy, starting is hard, and the state lives in the ledger."""

from __future__ import annotations

import pytest
from support import booking

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
