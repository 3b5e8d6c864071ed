"""The storm's gateway in a process of its own: ``python -m answerable.logistics.gateway_process RUN.json``.

The scenario driver (:mod:`answerable.logistics.distributed`) keeps the world: its partners
(carrier, warehouse, order system) answer over HTTP there, as a real carrier's API would, and
its clock is shared through a mapped file (:mod:`answerable.logistics.simclock`). This process
is the gateway on the run's PostgreSQL schema, served with the service's HTTP API: the agents
propose and send through it, and it alone calls the partners, once per intent, after its claim
is durable. So it can be killed at any moment and started again: it takes the lease over when
the dead one's heartbeat stops, reconciles what the dead one left open (a partner found the
effect by its key, or is asked again with the same key), and serves again on the same socket.

Two routes beside the API serve the driver, each in a request it signs with the run's key: the
modelled desk's answer to a review (``/storm/answer``: its reviewers are simulated, their keys
derived from their names, so it is signed here as the desk in one process signs it) and the
review clock's tick (``/storm/settle``). The listening socket is the driver's, inherited (its
number in the run file), so a request made while this process was dead waits in its backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from answerable.clock import IdSource
from answerable.config import ConsoleConfig
from answerable.errors import (
    AnswerableError,
    ApprovalRefused,
    ConfigError,
    LeaseLost,
    NotAuthorized,
    StoreUnavailable,
)
from answerable.gateway import Gateway, http_operation
from answerable.httpsig import verify_request
from answerable.lease import exit_when_lost
from answerable.ledger import SQLLedger, open_ledger
from answerable.logistics.agents import AGENTS
from answerable.logistics.desk import desk_key
from answerable.logistics.process import STORE_PATIENCE, orphaned, run_file
from answerable.logistics.scenario import Ungoverned, register_operations
from answerable.logistics.simclock import SharedClock
from answerable.logistics.world import Cls, Customer, ScenarioConfig, World
from answerable.runtime import System
from answerable.service import Service, build_app, outcome_doc

__all__ = ["DriverFacts", "main", "signed_json", "unavailable"]


class DriverFacts:
    """The world's records as the gateway's process reads them for a rule's context: what never
    changes (the customers, the storm's calendar) from its own copy of the seeded world, the day
    from the shared clock, and the order system's facts asked of the driver."""

    def __init__(self, world: World, clock: SharedClock, driver: str) -> None:
        self._world, self._clock = world, clock
        self._http = httpx.Client(base_url=driver, timeout=30.0)

    @property
    def today(self) -> int:
        return self._clock.today

    @property
    def customers(self) -> Mapping[str, Customer]:
        return self._world.customers

    def disrupted(self, region: str, day: int) -> bool:
        return self._world.disrupted(region, day)

    def shipment_facts(self, orders: Iterable[str], day: int) -> tuple[Cls, bool]:
        """Asked of the order system (the driver) while the intent is decided: a short blocking
        call on loopback, as the rule's context must be read before Cedar runs."""
        answer = self._http.post("/world/shipment", json={"orders": list(orders), "day": day})
        answer.raise_for_status()
        doc = answer.json()
        cls: Cls = "medical" if doc["class"] == "medical" else "retail"
        return cls, bool(doc["late"])

    def close(self) -> None:
        self._http.close()


async def signed_json(
    request: Request, base: str, keys: Mapping[str, str], ledger: SQLLedger
) -> dict[str, Any]:
    """The JSON body of a request signed by one of ``keys`` (and not replayed).

    Raises:
        NotAuthorized: unsigned, signed by another key, or replayed; ValueError: not a JSON object.
    """
    body = await request.body()
    who = verify_request(
        "POST", base + request.url.path, dict(request.headers), body, keys, now=int(time.time())
    )
    if not await asyncio.to_thread(ledger.use_nonce, f"{who.keyid}:{who.nonce}", who.created):
        raise NotAuthorized("this request was made before", reason_code="replayed")
    doc = orjson.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("want a JSON object")
    return doc


def unavailable(exc: LeaseLost | StoreUnavailable) -> JSONResponse:
    """503 for what passes (the store restarting, a gateway about to be started again): the
    driver's and the agents' requests to these routes are safe to repeat, and are repeated."""
    code = "lease_lost" if isinstance(exc, LeaseLost) else exc.reason_code
    return JSONResponse({"error": str(exc), "reason_code": code}, status_code=503)


def _refused(exc: Exception) -> JSONResponse:
    if isinstance(exc, NotAuthorized):
        return JSONResponse({"error": str(exc), "reason_code": exc.reason_code}, status_code=401)
    return JSONResponse({"error": str(exc), "reason_code": "bad_body"}, status_code=422)


def die_at(plan: str | None) -> Callable[[str], None]:
    """A crash test's plan, ``POINT:N``: kill -9 this process the N-th time a partner call
    reaches POINT: ``before_call`` (the claim is durable, the partner not asked) or
    ``after_call`` (the partner did it, the gateway has not recorded it)."""
    point, _, count = (plan or "").partition(":")
    left = [int(count) if count.isdigit() else 0]

    def reached(here: str) -> None:
        if here == point and left[0] > 0:
            left[0] -= 1
            if left[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    return reached


def _partner(base: str, fault: Callable[[str], None]) -> httpx.AsyncClient:
    async def before(_request: httpx.Request) -> None:
        fault("before_call")

    async def after(_response: httpx.Response) -> None:
        fault("after_call")

    return httpx.AsyncClient(
        base_url=base, timeout=30.0, event_hooks={"request": [before], "response": [after]}
    )


def _storm_routes(
    app: FastAPI, gateway: Gateway, ledger: SQLLedger, base: str, spec: Mapping[str, Any]
) -> None:
    keys = {"driver": str(spec["gateway"]["driver_key"])}
    seats = {r["name"] for r in spec["scenario"].get("desk", {}).get("reviewers", [])}

    @app.post("/storm/answer", include_in_schema=False)
    async def answer(request: Request) -> JSONResponse:
        try:
            doc = await signed_json(request, base, keys, ledger)
            seat = str(doc["seat"])
            if seats and seat not in seats:
                raise ValueError(f"{seat!r} is no modelled reviewer of this run")
            verdict: Literal["approve", "deny"] = "approve" if doc["verdict"] == "approve" else "deny"
            outcome = await gateway.answer(
                str(doc["review_id"]),
                key=desk_key(seat),
                verdict=verdict,
                reason=str(doc["reason"]),
                valid_for_seconds=int(doc["valid_for_seconds"]),
                simulated=bool(doc["simulated"]),
            )
        except ApprovalRefused as exc:  # answered already (by this desk, before a kill), or not the desk's
            if exc.reason_code == "already_answered":  # a gateway that died may not have acted on it
                with contextlib.suppress(AnswerableError):
                    await gateway.settle_review(str(doc["review_id"]))
            return JSONResponse({"error": str(exc), "reason_code": exc.reason_code}, status_code=409)
        except (NotAuthorized, ValueError, KeyError, TypeError) as exc:
            return _refused(exc)
        except (LeaseLost, StoreUnavailable) as exc:
            return unavailable(exc)
        except AnswerableError as exc:
            return JSONResponse({"error": str(exc), "reason_code": "refused"}, status_code=409)
        return JSONResponse(outcome_doc(outcome))

    @app.post("/storm/settle", include_in_schema=False)
    async def settle(request: Request) -> JSONResponse:
        try:
            await signed_json(request, base, keys, ledger)
            await gateway.settle_reviews()
        except (NotAuthorized, ValueError) as exc:
            return _refused(exc)
        except (LeaseLost, StoreUnavailable) as exc:
            return unavailable(exc)
        return JSONResponse({"settled": True})


async def _serve(spec: dict[str, Any]) -> None:
    import uvicorn

    from answerable.bus.nats import NatsBus

    here = spec["gateway"]
    config = ScenarioConfig.model_validate_json(json.dumps(spec["scenario"]))
    mode, port, driver = str(spec["mode"]), int(here["port"]), str(here["driver"])
    base = f"http://127.0.0.1:{port}"
    clock = SharedClock(Path(here["clock"]))
    ids = IdSource(clock)  # its own ids: a gateway started again never mints one the dead one did
    ledger = await asyncio.to_thread(open_ledger, spec["ledger"], patience=STORE_PATIENCE)
    facts = DriverFacts(World(config, int(spec["seed"])), clock, driver)
    fault = die_at(os.environ.get("ANSWERABLE_STORM_DIE"))
    carrier, warehouse = _partner(f"{driver}/carrier", fault), _partner(f"{driver}/warehouse", fault)
    orders = _partner(f"{driver}/orders", fault)
    ttl = float(here.get("lease_ttl", 2.0))
    gateway: Gateway = (
        Ungoverned(ledger, clock=clock, ids=ids, agents=AGENTS, lease_ttl=ttl)
        if mode == "ungoverned"
        else Gateway(ledger, clock=clock, ids=ids, lease_ttl=ttl)
    )

    register_operations(
        gateway,
        facts,
        carrier,
        warehouse,
        reprioritize=http_operation(f"{driver}/orders/reprioritize", client=orders),
        carrier_url=f"{driver}/carrier",
        warehouse_url=f"{driver}/warehouse",
    )
    stop = asyncio.Event()
    watch = asyncio.create_task(orphaned(stop))  # the driver is gone, however it went
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    bus = await NatsBus.connect(
        spec["nats"], spec["stream"], name=f"answerable storm gateway {spec['stream']}"
    )
    try:
        # The dead one's lease lapses after its ttl; what it left open is settled before serving.
        # The ungoverned baseline has no charter to load and no claims to settle: only the lease.
        if mode == "ungoverned":
            await gateway.acquire(standby=True, wait_seconds=max(30.0, 4 * ttl))
        else:
            await gateway.start(standby=True, wait_seconds=max(30.0, 4 * ttl))
        system = System(ledger, gateway, agents=AGENTS, bus=bus, clock=clock, ids=ids)
        users = here.get("console_users")
        service = Service.hosting(
            ledger,
            gateway,
            system,
            folder=Path(here["folder"]),
            origin=ledger.origin,
            public_url=base,
            agent_keys=spec["public_keys"],
            console=None if users is None else ConsoleConfig(users=Path(users)),
        )
        app = build_app(service, lifespan=False)
        if users is not None:
            from answerable.console.api import mount_console

            mount_console(app, service)
        _storm_routes(app, gateway, ledger, base, spec)

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Any:
                yield  # SIGTERM is this process's own: it stops serving, then closes the rest

        sock = socket.socket(fileno=int(here["fd"]))  # the driver's, listening: see the module
        server = Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                serving.result()
                raise ConfigError(f"the gateway did not start serving on {base}")
            await asyncio.sleep(0.01)
        print(f"answerable storm gateway: listening on {base}", flush=True)
        exit_when_lost(gateway.lease, "answerable storm gateway")
        await stop.wait()
        await service.stop()  # the refusals it counted are recorded
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    finally:
        watch.cancel()
        await bus.close()
        for client in (carrier, warehouse, orders):
            await client.aclose()
        facts.close()
        gateway.close()
        ledger.close()
        clock.close()


def main(argv: list[str]) -> int:
    """Exit 0 when stopped, 2 for a bad command line or run file, 1 when the gateway failed."""
    if len(argv) != 1:
        print("usage: python -m answerable.logistics.gateway_process RUN.json", file=sys.stderr)
        return 2
    spec = run_file(argv[0], {"scenario", "gateway", "ledger", "nats"}, "answerable storm gateway")
    if spec is None:
        return 2
    try:
        asyncio.run(_serve(spec))
    except (AnswerableError, OSError) as exc:
        print(f"answerable storm gateway: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
