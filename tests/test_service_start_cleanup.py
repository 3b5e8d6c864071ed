"""What a refused ``Service.start`` leaves: on NATS, the stream it made goes with the ledger it
made, unless something else already uses it; beside a ledger that stays, the stream stays; under
``build_app``'s lifespan, no lease or open ledger.

Runs against the machine's nats-server (127.0.0.1:4222, JetStream on); each test names a
system (so a stream) of its own and deletes the stream after, whatever happened.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import nats
import orjson
import pytest
from nats.js.errors import NotFoundError
from natsd import stream_there
from support import order_events

from answerable.bus.nats import NatsBus, stream_name
from answerable.charter import new_charter
from answerable.config import load_config
from answerable.errors import ConfigError, LeaseHeld, NotAuthorized
from answerable.gateway import Gateway
from answerable.keys import KeyPair
from answerable.ledger.sqlite import SQLiteLedger
from answerable.scaffold import init
from answerable.service import Service, build_app

NATS = os.environ.get("ANSWERABLE_TEST_NATS", "nats://127.0.0.1:4222")


@pytest.fixture
async def system() -> AsyncIterator[str]:
    """A system name of the test's own; its stream is deleted after, if anything left one."""
    name = f"startleft-{uuid.uuid4().hex[:10]}"
    yield name
    connection = await nats.connect(NATS)
    try:
        await connection.jetstream().delete_stream(stream_name(name))
    except NotFoundError:
        pass
    finally:
        await connection.close()


async def refused_by_the_lease(folder: Path) -> None:
    """Serve ``folder``'s system on NATS while another gateway (one on no bus) holds its ledger."""
    config = load_config(folder / "answerable.toml")
    holder = Service(config)
    await holder.start()
    try:
        refused = Service(replace(config, nats_url=NATS))
        with pytest.raises(LeaseHeld):
            await refused.start()
        assert refused.bus is None
        await refused.stop()
    finally:
        await holder.stop()


async def test_a_start_that_fails_after_making_the_ledger_and_the_stream_leaves_neither(
    tmp_path: Path, system: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first start that fails late (here its reconcile raises, standing for any step after
    NATS is connected) removed the ledger it made and left the stream it made on the server.
    Both go now."""
    init(tmp_path / "shop", system=system)
    config = replace(load_config(tmp_path / "shop" / "answerable.toml"), nats_url=NATS)

    async def fails(_gateway: Gateway) -> list[object]:
        raise ConfigError("a step after NATS connected failed")

    monkeypatch.setattr(Gateway, "reconcile", fails)
    refused = Service(config)
    with pytest.raises(ConfigError, match="after NATS connected"):
        await refused.start()
    assert refused.bus is None
    assert not (tmp_path / "shop" / "ledger.db").exists()
    assert not await stream_there(system)


async def test_a_failed_start_leaves_the_ledger_and_stream_it_made_to_a_gateway_that_holds_it(
    tmp_path: Path, system: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This start made the ledger and the stream, but by the time it fails another gateway holds
    the ledger's lease (it opened the new ledger at the same moment): that gateway writes there
    and may publish, so neither the ledger nor the stream is this start's to remove."""
    init(tmp_path / "shop", system=system)
    config = replace(load_config(tmp_path / "shop" / "answerable.toml"), nats_url=NATS)
    others: list[Gateway] = []

    async def taken_over(gateway: Gateway) -> list[object]:
        gateway.lease.release()
        other = Gateway(SQLiteLedger.open(tmp_path / "shop" / "ledger.db"), holder="gateway@elsewhere:1")
        await other.acquire()
        others.append(other)
        raise ConfigError("a step after NATS connected failed")

    monkeypatch.setattr(Gateway, "reconcile", taken_over)
    refused = Service(config)
    try:
        with pytest.raises(ConfigError, match="after NATS connected"):
            await refused.start()
        assert (tmp_path / "shop" / "ledger.db").exists()
        assert await stream_there(system)
    finally:
        await refused.stop()
        for other in others:
            other.close()
            other.ledger.close()


async def test_a_stream_made_beside_a_ledger_that_stays_stays(tmp_path: Path, system: str) -> None:
    """Refused by the lease of another gateway on a ledger that was there: the stream this start
    made is the system's (that gateway may have connected to it, and would publish into a stream
    nobody makes again), so it stays, as the ledger does."""
    init(tmp_path / "shop", system=system)
    assert not await stream_there(system)
    await refused_by_the_lease(tmp_path / "shop")
    assert await stream_there(system)


async def test_a_stream_that_was_there_before_a_refused_start_stays(tmp_path: Path, system: str) -> None:
    init(tmp_path / "shop", system=system)
    before = await NatsBus.connect(NATS, system)
    [event] = order_events(1)
    await before.publish("orders", event)
    await before.close()
    await refused_by_the_lease(tmp_path / "shop")
    assert await stream_there(system)


async def test_a_bus_unmakes_only_a_stream_it_made_and_nothing_else_uses(system: str) -> None:
    """What it published itself does not keep it; a consumer, or another's record, does."""
    first, second, third = order_events(3)

    alone = await NatsBus.connect(NATS, system)
    assert alone.made_stream
    await alone.publish("orders", first)
    await alone.publish("orders", first)  # a repeat the stream drops
    await alone.close(unmake=True)
    assert not await stream_there(system)

    maker = await NatsBus.connect(NATS, system)
    other = await NatsBus.connect(NATS, system)
    assert not other.made_stream
    await other.publish("orders", second)
    await other.publish("orders", first)
    await maker.publish("orders", first)  # a repeat of the other's: not the maker's record
    await maker.close(unmake=True)
    await other.close(unmake=True)  # it made nothing: never deletes
    assert await stream_there(system)

    async def nothing(_record: object) -> None:
        return None

    connection = await nats.connect(NATS)
    await connection.jetstream().delete_stream(stream_name(system))
    await connection.close()
    maker = await NatsBus.connect(NATS, system)
    agent = await NatsBus.connect(NATS, system)
    agent.subscribe("orders", nothing, group="planner")
    await agent.start()
    await maker.publish("orders", third)
    await maker.close(unmake=True)
    await agent.close()
    assert await stream_there(system)  # an agent is subscribed: it stays


async def test_an_app_whose_start_is_refused_gives_the_ledger_back(tmp_path: Path) -> None:
    """``build_app``'s lifespan started the service and stopped it only once started: a start
    refused after it took the lease (a charter that does not supersede the one in force) kept
    the lease beating and the ledger open for as long as the process lived, and every other
    gateway was refused with LeaseHeld. It stops the service as ``answerable serve`` does."""
    folder = tmp_path / "shop"
    init(folder, system="shop")
    config = load_config(folder / "answerable.toml")
    first = Service(config)
    await first.start()
    await first.stop()
    agent = KeyPair.load(folder / "agent.key")
    another = new_charter(
        "shop",
        KeyPair.load(folder / "ri.key"),
        agents=[agent.identity],
        reviewers=[KeyPair.load(folder / "reviewer.key")],
        agent_keys={agent.identity: agent.public_b64},
    )
    kept = (folder / "charter.json").read_text()
    (folder / "charter.json").write_text(orjson.dumps(another.model_dump(mode="json")).decode())
    refused = Service(config)
    app = build_app(refused)
    with pytest.raises(NotAuthorized, match="does not supersede"):
        async with app.router.lifespan_context(app):
            raise AssertionError("the app started")
    assert refused.gateway is None or not refused.gateway.lease.held
    (folder / "charter.json").write_text(kept)
    again = Service(config)
    await again.start()  # LeaseHeld before: the refused one still held the lease
    await again.stop()
