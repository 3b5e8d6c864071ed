"""NATS permissions derived from the charter, enforced by a real nats-server of the test's own.

The service and each agent log in with their own keys as NKEY users. An agent pulls only the
topics the coordination contract lets it hear and publishes on none: the server refuses the rest
before any subscriber could see it. A key the charter does not name cannot log in at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from natsd import NatsServer, free_port

from answerable import FakeClock, KeyPair
from answerable.bus.auth import authorization, nkey_seed
from answerable.bus.nats import NatsBus, subject_of
from answerable.charter import new_charter
from answerable.clock import IdSource, rfc3339
from answerable.errors import BusError, ConfigError
from answerable.records import ExternalEvent, Message

pytestmark = pytest.mark.slow

CONTRACT = {
    "channels": [
        {
            "topic": "refunds",
            "publishers": ["intake"],
            "subscribers": ["refunder"],
            "messages": [{"type": "refund.request", "payload_schema": {"type": "object"}}],
        },
        {
            "topic": "audit",
            "publishers": ["refunder"],
            "subscribers": ["intake"],
            "messages": [{"type": "note", "payload_schema": {"type": "object"}}],
        },
    ]
}


KEYS = {name: KeyPair.generate(name) for name in ("ri@x.example", "intake", "refunder", "service", "mallory")}
CHARTER = new_charter(
    "perm-test",
    KEYS["ri@x.example"],
    agents=["intake", "refunder"],
    agent_keys={n: KEYS[n].public_b64 for n in ("intake", "refunder")},
    coordination=CONTRACT,
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """nats-server 2.9 from Debian, JetStream on, with the generated authorization block."""
    own = NatsServer(tmp_path, free_port(), authorization(CHARTER, KEYS["service"].public_b64)).start()
    try:
        yield own.url
    finally:
        own.stop()


def test_permissions_need_a_contract():
    bare = new_charter("free", KEYS["ri@x.example"], agents=["intake"])
    with pytest.raises(ConfigError, match="declares no coordination contract"):
        authorization(bare, KEYS["service"].public_b64)


async def test_an_agent_hears_its_topics_only_and_publishes_on_none(
    server: str, capfd: pytest.CaptureFixture[str]
):
    system = CHARTER.system
    service = await NatsBus.connect(server, system, nkey_seed=nkey_seed(KEYS["service"]), name="service")
    refunder = await NatsBus.connect(server, system, nkey_seed=nkey_seed(KEYS["refunder"]), name="refunder")
    try:
        got: list[str] = []

        async def hear(record: Message | ExternalEvent) -> None:
            got.append(record.id)

        refunder.subscribe("refunds", hear, group="refunder")
        await refunder.start()
        ids = IdSource(FakeClock())
        request = Message(
            id=ids.new(),
            at=rfc3339(0),
            sender="intake",
            topic="refunds",
            type="refund.request",
            payload={"order": "O-1"},
            trace_id="t",
        )
        await service.publish("refunds", request)
        await refunder.drain()
        assert got == [request.id]

        # Publishing on a topic: refused by the server, nothing reaches the stream.
        before = (await service._js.stream_info(f"answerable_{system}")).state.messages
        await refunder.nc.publish(subject_of(system, "refunds"), b'{"forged": true}')
        await refunder.nc.flush()
        await asyncio.sleep(0)  # let the server's -ERR reach the error callback
        said = ""
        for _ in range(100):
            said += capfd.readouterr().err
            if "permissions violation" in said.lower():
                break
            await refunder.nc.flush()
        else:
            raise AssertionError(f"the server did not refuse the publish: {said!r}")
        after = (await service._js.stream_info(f"answerable_{system}")).state.messages
        assert after == before

        # Hearing a topic the contract does not give it: its consumer cannot even be made.
        eavesdrop = await NatsBus.connect(
            server, system, nkey_seed=nkey_seed(KEYS["refunder"]), name="eve", request_timeout=1.0
        )
        eavesdrop.subscribe("audit", hear, group="refunder")
        try:
            with pytest.raises(BusError, match="cannot subscribe to 'audit'"):
                await eavesdrop.start()
        finally:
            await eavesdrop.close()
    finally:
        await refunder.close()
        await service.delete_stream()
        await service.close()


async def test_a_key_the_charter_does_not_name_cannot_log_in(server: str):
    with pytest.raises(BusError, match="cannot connect"):
        await NatsBus.connect(server, CHARTER.system, nkey_seed=nkey_seed(KEYS["mallory"]), connect_wait=2.0)


def test_no_nats_login_is_made_for_a_charter_key_of_small_order():
    """Found in review: a charter written before keys of small order were refused gave such an
    agent a NATS user, and nats-server took a nonce signed by nobody (R the neutral point, S
    zero) as its login: anyone could pull and ack what was meant for that agent."""
    import base64

    agents = tuple(
        a.model_copy(update={"public_key": base64.b64encode(b"\x01" + bytes(31)).decode()})
        if a.name == "refunder"
        else a
        for a in CHARTER.agents
    )
    older = CHARTER.model_copy(update={"agents": agents})
    with pytest.raises(ConfigError, match=r"point of small order.*no NATS login is made for it"):
        authorization(older, KEYS["service"].public_b64)
