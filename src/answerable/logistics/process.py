"""One storm agent in a process of its own: ``python -m answerable.logistics.process RUN.json NAME``.

The scenario driver (:mod:`answerable.logistics.distributed`) writes ``RUN.json`` (the seed, the
scenario, where the ledger, NATS and the service are, each agent's key file) and starts one of
these per agent. The agent is made exactly as in the run in one process, and served by
:func:`answerable.remote.serve_agent`: it hears its topics on NATS and speaks through the
service (the gateway's process). Its clock follows what it hears (the world's clock is the
driver's). The executor hands reviews to the driver's desk with a signed request.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from answerable.client import AsyncClient, patiently
from answerable.clock import FakeClock
from answerable.errors import AnswerableError, ConfigError
from answerable.keys import KeyPair
from answerable.ledger import open_ledger
from answerable.logistics.scenario import storm_agents
from answerable.logistics.world import ScenarioConfig, World
from answerable.remote import RemoteContext, RemoteOutcome, serve_agent
from answerable.runtime import Agent, Context

__all__ = ["STORE_PATIENCE", "RemoteDesk", "main", "make_agent", "orphaned", "run_file"]

STORE_PATIENCE = 60.0
"""Seconds a read or an append of a storm process (an agent, the gateway, the driver) waits for
a PostgreSQL server that does not answer (restarting after a crash, say) before it fails. The
gateway's lease, which it cannot beat meanwhile, runs out long before: it exits and is started
again (see :mod:`answerable.logistics.gateway_process`)."""


class RemoteDesk:
    """The storm desk in the scenario driver, asked in a request the agent signs; asked again
    while the driver cannot take it (the store restarting): it answers each intent once and
    then gives the same answer however often it is asked."""

    def __init__(self, client: AsyncClient | None) -> None:
        self.client = client

    async def settle(self, outcomes: list[Any], ctx: Context) -> list[Any]:
        if not isinstance(ctx, RemoteContext) or self.client is None:
            raise ConfigError("the remote desk answers only agents served through the service")
        client, wanted = self.client, {"intents": [o.intent_id for o in outcomes]}
        answer = await patiently(lambda: client.post("/storm/desk", wanted), ctx.patience)
        return [RemoteOutcome(doc) for doc in answer["outcomes"]]


def make_agent(
    name: str, mode: str, seed: int, config: ScenarioConfig, desk: AsyncClient | None = None
) -> Agent:
    """The agent ``name`` as the run in one process makes it (the same seed, the same map);
    ``desk``: a client of the driver, where the executor hands its reviews."""
    remote = RemoteDesk(desk) if mode == "governed" else None
    for agent in storm_agents(World(config, seed), seed, remote):
        if agent.name == name:
            return agent
    raise ConfigError(f"no storm agent is called {name!r}")


def die_at(plan: str | None) -> Callable[[str], None] | None:
    """A crash test's plan, ``POINT:N``: kill -9 this process the N-th time it reaches POINT
    (``before_send``, ``after_send``, ``before_propose``, ``after_propose``)."""
    if not plan:
        return None
    point, _, count = plan.partition(":")
    left = [int(count)]

    def reached(here: str) -> None:
        if here == point:
            left[0] -= 1
            if left[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    return reached


async def orphaned(stop: asyncio.Event) -> None:
    """Set ``stop`` when standard input closes: the driver holds its end, so it closes when the
    driver exits, however it exits (kill -9 included), and no agent outlives its run."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    stop.set()


async def _serve(spec: dict[str, Any], name: str) -> None:
    config = ScenarioConfig.model_validate_json(json.dumps(spec["scenario"]))
    key = KeyPair.load(spec["keys"][name])
    desk = AsyncClient(spec["desk"], key) if "desk" in spec else None
    agent = make_agent(name, spec["mode"], int(spec["seed"]), config, desk)
    ledger = open_ledger(spec["ledger"], patience=STORE_PATIENCE)
    stop = asyncio.Event()
    watch = asyncio.create_task(orphaned(stop))
    try:
        await serve_agent(
            agent,
            key,
            ledger=ledger,
            nats_url=spec["nats"],
            service_url=spec["service"],
            system=spec["stream"],
            clock=FakeClock(ns=0),
            keys=spec["public_keys"],
            ack_wait=float(spec.get("ack_wait", 30.0)),
            fault=die_at(os.environ.get("ANSWERABLE_STORM_DIE")),
            stop=stop,
        )
    finally:
        watch.cancel()
        if desk is not None:
            await desk.aclose()
        ledger.close()


def run_file(path: str, needed: set[str], who: str) -> dict[str, Any] | None:
    """The run file the driver wrote, or None once ``who`` said in one line why it is unusable."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(spec, dict) or not needed <= spec.keys():
            raise ValueError("not a run file of answerable.logistics.distributed")
    except (OSError, ValueError) as exc:
        print(f"{who}: bad run file {path}: {exc}", file=sys.stderr, flush=True)
        return None
    return spec


def main(argv: list[str]) -> int:
    """Exit 0 when stopped, 2 for a bad command line or run file, 1 when the agent failed."""
    if len(argv) != 2:
        print("usage: python -m answerable.logistics.process RUN.json NAME", file=sys.stderr)
        return 2
    spec = run_file(argv[0], {"scenario", "keys", "ledger", "nats"}, f"answerable storm agent {argv[1]}")
    if spec is None:
        return 2
    try:
        asyncio.run(_serve(spec, argv[1]))
    except AnswerableError as exc:
        print(f"answerable storm agent {argv[1]}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
