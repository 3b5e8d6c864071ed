"""A system whose rules decide route plans, run as its own OS process by tests/test_coordination_procs.py.

``python coordination_child.py LEDGER ROLE SEED [POINT]``; the seed draws how many messages
go, so a failure replays with the same seed:

- ``hold``: send 1 to 3 urgent plans (each held for review), print the reviews' ids, then run the
  system until every plan is delivered (answers given in another process, by the CLI), keep
  running a while to show none is delivered twice, and print how many the executor heard;
- ``send POINT``: send 0 to 3 plans the rules allow, then one more, and kill this process with
  SIGKILL at the gateway's named point of that last one (``claimed``: before its message is
  recorded; ``executed``: after it is recorded and published, before its Execution);
- ``recover``: start a gateway on the ledger (its reconcile settles what the dead one left) and
  print each recovered outcome;
- ``park``: send 1 to 3 urgent plans (each held for review), print the reviews' ids and kill
  this process with SIGKILL before the system runs again: the answers (by the CLI) come while
  no system runs;
- ``listen``: start a gateway and a system with the router on the ledger, run it, and print the
  refusals the router was told of and how many plans the executor heard;
- ``stream``: send plans the rules allow and notes they do not decide, from 2 to 6 concurrent
  tasks, until a dozen are refused (a halt from another process, by the CLI, refuses them);
  print the count sent after each of the first 120, then how many went and how many were
  refused, by reason.

LEDGER is a SQLite file or a PostgreSQL URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

from answerable import (
    Agent,
    Context,
    Gateway,
    KeyPair,
    MessageHeld,
    MessageRefused,
    SQLiteLedger,
    System,
    new_charter,
    new_ruleset,
)
from answerable.ledger import SQLLedger, open_ledger
from answerable.records import ExternalEvent, Intent, Message

RI = KeyPair.from_seed("ri@example.com", b"\x01" * 32)
REVIEWER = KeyPair.from_seed("desk@example.com", b"\x09" * 32)
AGENTS = ("router", "executor")
SCHEMA = """
entity Agent;
entity Message { topic: String, type: String };
action "send:plans/route.plan" appliesTo {
  principal: [Agent], resource: [Message], context: { urgent: Bool }
};
"""
POLICIES = """
@id("router-sends-plans")
permit(principal == Agent::"router", action == Action::"send:plans/route.plan", resource);

@id("urgent-plans-need-the-desk")
@review("an urgent plan goes to the desk first")
forbid(principal, action == Action::"send:plans/route.plan", resource) when { context.urgent };
"""
CONTRACT: dict[str, Any] = {
    "channels": [
        {
            "topic": "plans",
            "publishers": ["router"],
            "subscribers": ["executor"],
            "messages": [{"type": "route.plan", "payload_schema": {"type": "object"}, "decide": True}],
        },
        {
            "topic": "notes",
            "publishers": ["router"],
            "subscribers": ["executor"],
            "messages": [{"type": "note", "payload_schema": {"type": "object"}}],
        },
    ]
}


class Executor(Agent):
    name = "executor"
    subscriptions = ("plans",)

    def __init__(self) -> None:
        self.heard: list[str] = []

    async def handle(self, record: Message | ExternalEvent, ctx: Context) -> None:
        self.heard.append(record.id)


class Router(Agent):
    name = "router"
    subscriptions = ()

    def __init__(self) -> None:
        self.told: list[str] = []

    async def handle(self, record: Message | ExternalEvent, ctx: Context) -> None:
        return None

    async def on_refusal(self, refusal: MessageRefused, ctx: Context) -> None:
        self.told.append(refusal.refusal_id)


def say(**what: Any) -> None:
    sys.stdout.write(json.dumps(what) + "\n")
    sys.stdout.flush()


async def build(target: Path | str, *, fault: Any = None) -> tuple[SQLLedger, Gateway, System, Executor]:
    ledger = open_ledger(target, create=True)
    gateway = Gateway(ledger, fault=fault, lease_ttl=1.0)
    system = System(ledger, gateway, agents=AGENTS)
    system.message_context("plans", "route.plan", lambda p: {"urgent": bool(p.get("urgent"))})
    executor = Executor()
    system.add(executor)
    if not ledger.of_kind("SystemCharter"):
        charter = new_charter("sys", RI, agents=AGENTS, reviewers=[REVIEWER], coordination=CONTRACT)
        await gateway.install(charter, new_ruleset(POLICIES, SCHEMA, RI))
    return ledger, gateway, system, executor


async def hold(path: Path, seed: int) -> None:
    ledger, gateway, system, executor = await build(path)
    count = random.Random(f"hold:{seed}").randint(1, 3)
    reviews = []
    for n in range(count):
        try:
            await system.send("router", "plans", "route.plan", {"urgent": True, "n": n}, (), (), "t")
        except MessageHeld as held:
            reviews.append(held.review_id)
    say(reviews=reviews)
    for _ in range(4000):  # a guard, not a pace: the test answers within seconds
        await system.run_until_idle()
        if len(executor.heard) >= count:
            break
        await asyncio.sleep(0.02)
    for _ in range(20):  # keep running: an answer acted on once is not delivered again
        await system.run_until_idle()
        await gateway.settle_reviews()
    say(delivered=len(executor.heard))
    gateway.close()
    ledger.close()


async def send(path: Path, point: str, seed: int) -> None:
    before = random.Random(f"send:{seed}").randint(0, 3)
    sends = 0

    def fault(at: str, intent: Intent) -> None:
        if at == point and intent.operation.startswith("send:") and sends > before:
            os.kill(os.getpid(), signal.SIGKILL)

    _ledger, _gateway, system, _executor = await build(path, fault=fault)
    say(ready=True, before=before)
    for n in range(before + 1):
        sends += 1
        await system.send("router", "plans", "route.plan", {"urgent": False, "n": n}, (), (), "t")
    say(survived=True)  # never printed: the fault kills the process first


async def recover(path: Path) -> None:
    ledger = SQLiteLedger.open(path)
    gateway = Gateway(ledger, lease_ttl=1.0, standby=True)
    system = System(ledger, gateway, agents=AGENTS)
    system.message_context("plans", "route.plan", lambda p: {"urgent": bool(p.get("urgent"))})
    executor = Executor()
    system.add(executor)
    outcomes = await gateway.start(wait_seconds=30)
    await system.run_until_idle()
    say(recovered=[o.status for o in outcomes], heard=len(executor.heard))
    gateway.close()
    ledger.close()


async def park(path: Path, seed: int) -> None:
    _ledger, _gateway, system, _executor = await build(path)
    reviews = []
    for n in range(random.Random(f"park:{seed}").randint(1, 3)):
        try:
            await system.send("router", "plans", "route.plan", {"urgent": True, "n": n}, (), (), "t")
        except MessageHeld as held:
            reviews.append(held.review_id)
    say(reviews=reviews)
    os.kill(os.getpid(), signal.SIGKILL)


async def listen(path: Path) -> None:
    ledger = SQLiteLedger.open(path)
    gateway = Gateway(ledger, lease_ttl=1.0, standby=True)
    system = System(ledger, gateway, agents=AGENTS)
    system.message_context("plans", "route.plan", lambda p: {"urgent": bool(p.get("urgent"))})
    executor, router = Executor(), Router()
    system.add(executor)
    system.add(router)
    await gateway.start(wait_seconds=30)
    for _ in range(3):
        await system.run_until_idle()
    say(told=router.told, heard=len(executor.heard))
    gateway.close()
    ledger.close()


async def stream(target: str, seed: int) -> None:
    draw = random.Random(f"stream:{seed}")
    workers = draw.randint(2, 6)
    ledger, gateway, system, _executor = await build(target)
    went = 0
    refused: dict[str, int] = {}

    async def work(worker: int) -> None:
        nonlocal went
        pick = random.Random(f"stream:{seed}:{worker}")
        n = 0
        while sum(refused.values()) < 12:
            n += 1
            try:
                if pick.random() < 0.5:
                    await system.send("router", "notes", "note", {"w": worker, "n": n}, (), (), "t")
                else:
                    payload = {"urgent": False, "w": worker, "n": n}
                    await system.send("router", "plans", "route.plan", payload, (), (), "t")
                went += 1
                if went <= 120:  # the test halts after a count it draws up to 120: say each
                    say(sent=went)
            except MessageRefused as exc:
                refused[exc.reason_code] = refused.get(exc.reason_code, 0) + 1
            if n % 50 == 0:
                await system.run_until_idle()  # the executor hears them: the bus's queue stays short

    say(ready=True, workers=workers)
    await asyncio.wait_for(asyncio.gather(*(work(w) for w in range(workers))), 120)
    say(went=went, refused=refused)
    gateway.close()
    ledger.close()


def main() -> None:
    path, role, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    if role == "stream":
        asyncio.run(stream(sys.argv[1], seed))
        return
    if role == "hold":
        asyncio.run(hold(path, seed))
    elif role == "send":
        asyncio.run(send(path, sys.argv[4], seed))
    elif role == "recover":
        asyncio.run(recover(path))
    elif role == "park":
        asyncio.run(park(path, seed))
    elif role == "listen":
        asyncio.run(listen(path))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
