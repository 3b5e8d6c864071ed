"""The storm with each agent and the gateway in a process of its own: NATS JetStream between
them, the ledger in PostgreSQL, the gateway served over HTTP.

The scenario driver (this module, in the ``answerable demo storm --distributed`` process) keeps
what is simulated: the world, its clock and the storm desk's modelled people. The world's
partners (carrier, warehouse, order system) answer over HTTP here, as real partners' APIs
would, and dedupe by idempotency key; the clock is shared with the gateway through a mapped file
(:mod:`answerable.logistics.simclock`). The gateway runs as ``python -m
answerable.logistics.gateway_process`` on the run's own schema and serves the service's HTTP
API; the four agents run as ``python -m answerable.logistics.process`` children, each with a key
the run's charter lists, hearing their topics on the run's own stream and speaking only through
that API. Any of them may die (kill -9) at any moment: it is started again, the gateway on the
same port, and the run goes on from what the ledger holds.

A day's steps end when every consumer of the stream has nothing left to deliver and nothing
unacknowledged: an agent acknowledges a record only after its handler returned, and what the
handler said was recorded and published before that, so an empty stream means every agent is
done. The executor hands the reviews a plan opened to the desk here, in the order it proposed
them (``POST /storm/desk``, signed with its key), as it hands them to the desk in process. So
the same seed gives the same outcome table as the run in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import secrets
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from answerable.bus import Bus
from answerable.client import AsyncClient, ServiceRefused, patiently
from answerable.clock import IdSource
from answerable.errors import AgentLost, AnswerableError, ConfigError, NotAuthorized, StoreUnavailable
from answerable.gateway import Gateway, Outcome
from answerable.keys import KeyPair
from answerable.ledger import SQLLedger, open_ledger
from answerable.ledger.postgres import parse_url
from answerable.logistics.agents import AGENTS
from answerable.logistics.desk import Reviews
from answerable.logistics.gateway_process import signed_json, unavailable
from answerable.logistics.process import STORE_PATIENCE
from answerable.logistics.scenario import Mode, StormRun
from answerable.logistics.services import make_carrier_app, make_warehouse_app
from answerable.logistics.simclock import SharedClock
from answerable.logistics.world import ScenarioConfig
from answerable.records import Intent, Review, decode_entry
from answerable.service import outcome_doc

__all__ = ["DEFAULT_NATS", "DEFAULT_POSTGRES", "DistributedStormRun", "run_schema_url"]

DEFAULT_NATS = "nats://127.0.0.1:4222"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTUP_SECONDS = 60.0
"""How long an agent process may take to import, connect and subscribe."""


def run_schema_url(base: str, schema: str) -> str:
    """``base`` (a ``postgresql://`` URL naming no schema) naming ``schema`` instead.

    Raises:
        ConfigError: ``base`` is not a PostgreSQL URL, carries a password, or names options of
            its own (each run makes its schema, so none may be given).
    """
    parse_url(base)
    parts = urlsplit(base)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "options" for k, _ in query):
        raise ConfigError(
            "--postgres: give a URL without options: each run makes a schema of its own and names it"
        )
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


class DistributedStormRun(StormRun):
    """One mode of the storm with the agents in processes of their own (see the module)."""

    def __init__(
        self,
        mode: Mode,
        seed: int,
        config: ScenarioConfig,
        out_dir: Path,
        *,
        nats_url: str = DEFAULT_NATS,
        postgres_url: str = DEFAULT_POSTGRES,
        stall_seconds: float = 300.0,
        ack_wait: float = 10.0,
        restarts: int = 3,
        die: tuple[str, str] | None = None,
        console_users: Path | None = None,
    ) -> None:
        """``ack_wait``: how long a record a dead agent held waits before it comes again (to the
        agent restarted). ``restarts``: how often an agent's process (or the gateway's) that
        died is started again before the run gives up. ``die``: a crash test's plan, (agent or
        ``gateway``, ``POINT:N``), for its first process only (see the ``die_at`` of
        :mod:`answerable.logistics.process` and :mod:`answerable.logistics.gateway_process`)."""
        super().__init__(mode, seed, config, out_dir)
        self.run_id = f"{mode}_{seed}_{secrets.token_hex(4)}"
        self.schema = f"storm_{self.run_id}"
        self.ledger_url = run_schema_url(postgres_url, self.schema)
        self.nats_url = nats_url
        self.stream = f"storm-{self.run_id}"
        self.stall_seconds = stall_seconds
        self.keys = {name: KeyPair.generate(name) for name in AGENTS}
        self.agent_keys = {name: key.public_b64 for name, key in self.keys.items()}
        self.folder = out_dir / "agents" / self.run_id
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._lost: asyncio.Future[tuple[str, int]] | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._server: Any = None
        self._serving: asyncio.Task[None] | None = None
        self._nats: Any = None
        self.ack_wait = ack_wait
        self.restarts = dict.fromkeys((*AGENTS, "gateway"), restarts)
        self.restarted: list[tuple[str, int]] = []
        """(agent, exit code) of each process that died and was started again."""
        self._die = die
        self._spec: Path | None = None
        self._closing = False
        self._answered: dict[str, dict[str, Any]] = {}
        """The desk's answer to each intent it was asked about, as the executor heard it."""
        self._desk_lock = asyncio.Lock()
        self.console_users = console_users
        """An accounts file (``answerable.console.accounts``): the run's service then serves the
        console too, so the storm's people (the RI) can watch and halt it in a browser."""
        self.console_url: str | None = None
        self.serving = asyncio.Event()
        """Set once the run's service listens (with ``console_url`` set when it serves one)."""
        self.driver_key = KeyPair.generate("driver")
        """Signs what the driver asks of the gateway (the desk's answers, the review clock)."""
        self.gateway_process: asyncio.subprocess.Process | None = None
        self._gateway_url = ""
        self._gateway_client: AsyncClient | None = None
        self._gateway_sock: socket.socket | None = None

    @property
    def location(self) -> str:
        return self.ledger_url

    async def _open_ledger(self) -> SQLLedger:
        """Opened at once or refused at once (a server away when the run starts is a mistake in
        the command, said in one line); once open, the run waits out a restart of the server."""
        ledger = await asyncio.to_thread(
            open_ledger,
            self.ledger_url,
            create=True,
            origin=f"logistics.example/storm/{self.mode}/{self.run_id}",
        )
        ledger.patience = STORE_PATIENCE
        return ledger

    async def __aenter__(self) -> DistributedStormRun:
        """NATS first, then PostgreSQL: either one away is one error naming it, before anything
        is made in the other. A start that fails later (an agent that does not come up) takes
        the run's stream down and leaves its schema holding what was recorded until then."""
        from answerable.bus.nats import NatsBus

        self._nats = await NatsBus.connect(self.nats_url, self.stream, name=f"answerable storm {self.run_id}")
        try:
            await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)
            self.clock = SharedClock(self.folder / "clock", ns=self.clock.ns)
            self.ids = IdSource(self.clock, rng=random.Random(f"ids:{self.seed}:{self.mode}"))
            # The gateway's port is held here for the whole run and handed to each of its
            # processes: while one is dead, requests wait in the backlog for the next one,
            # and the port cannot go to anyone else meanwhile.
            self._gateway_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._gateway_sock.bind(("127.0.0.1", 0))
            self._gateway_sock.listen(512)
            self._gateway_sock.set_inheritable(True)
            self._gateway_url = f"http://127.0.0.1:{self._gateway_sock.getsockname()[1]}"
            self._gateway_client = AsyncClient(self._gateway_url, self.driver_key)
            await super().__aenter__()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _bus(self) -> Bus:
        return self._nats  # type: ignore[no-any-return]

    async def _start_agents(self) -> None:
        self.gateway.close()  # it installed charter and rules; the gateway's process takes over
        port = await self._serve()
        spec: dict[str, Any] = {
            "mode": self.mode,
            "seed": self.seed,
            "scenario": self.config.model_dump(mode="json"),
            "ledger": self.ledger_url,
            "nats": self.nats_url,
            "stream": self.stream,
            "service": self._gateway_url,
            "desk": f"http://127.0.0.1:{port}",
            "public_keys": self.agent_keys,
            "ack_wait": self.ack_wait,
            "keys": {},
            "gateway": {
                "port": int(self._gateway_url.rsplit(":", 1)[1]),
                "fd": self._gateway_sock.fileno() if self._gateway_sock is not None else -1,
                "driver": f"http://127.0.0.1:{port}",
                "clock": str(self.folder / "clock"),
                "driver_key": self.driver_key.public_b64,
                "folder": str(self.out_dir),
                "console_users": None if self.console_users is None else str(self.console_users),
            },
        }
        for name, key in self.keys.items():
            path = self.folder / f"{name}.key"
            await asyncio.to_thread(key.save, path)
            spec["keys"][name] = str(path)
        self._spec = self.folder / "run.json"
        await asyncio.to_thread(_write_private, self._spec, json.dumps(spec, indent=1))
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self.gateway_process = await self._spawn("gateway", first=True)
        await self._listening("gateway", self.gateway_process)
        self._watchers.append(asyncio.create_task(self._watch("gateway", self.gateway_process)))
        if self.console_users is not None:
            self.console_url = f"{self._gateway_url}/console/"
            print(f"answerable console on {self.console_url}", file=sys.stderr, flush=True)
        self.serving.set()
        for name in AGENTS:
            self.processes[name] = await self._spawn(name, first=True)
        for name, process in self.processes.items():
            await self._listening(name, process)
            self._watchers.append(asyncio.create_task(self._watch(name, process)))

    async def _spawn(self, name: str, *, first: bool) -> asyncio.subprocess.Process:
        """Start ``name``'s process: an agent, or the gateway (handed the driver's socket)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("ANSWERABLE_STORM_DIE", None)
        if first and self._die is not None and self._die[0] == name:
            env["ANSWERABLE_STORM_DIE"] = self._die[1]
        gateway = name == "gateway"
        command = (
            ("answerable.logistics.gateway_process", str(self._spec))
            if gateway
            else ("answerable.logistics.process", str(self._spec), name)
        )
        sock = self._gateway_sock if gateway else None
        log = await asyncio.to_thread(open, self.folder / f"{name}.log", "ab")
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                *command,
                stdin=asyncio.subprocess.PIPE,  # closed when this process ends: it stops
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                pass_fds=() if sock is None else (sock.fileno(),),
            )
        finally:
            log.close()

    async def day(self, day: int) -> None:
        if isinstance(self.clock, SharedClock):
            self.clock.today = day  # what the gateway's rules read as today, as the world's own
        await super().day(day)

    def _reviews(self) -> Reviews:
        if self._gateway_client is None:
            raise ConfigError("the run's gateway is not set up yet")
        return ServiceReviews(self.ledger, self.gateway, self._gateway_client, self.stall_seconds)

    async def _listening(
        self, name: str, process: asyncio.subprocess.Process, seconds: float = STARTUP_SECONDS
    ) -> None:
        """Wait for the agent to say it listens: its consumers exist, so it hears what comes next
        (an agent started again says so after it handled again what it had handled)."""
        if process.stdout is None:
            raise AgentLost(name, "its output is not a pipe")
        try:
            line = await asyncio.wait_for(process.stdout.readline(), seconds)
        except TimeoutError:
            raise AgentLost(name, f"not listening after {seconds:g} s; {self._tail(name)}") from None
        if b"listening" not in line:
            await process.wait()
            raise AgentLost(name, f"exited with {process.returncode} at start; {self._tail(name)}")

    async def _watch(self, name: str, process: asyncio.subprocess.Process) -> None:
        """Keep an agent or the gateway running: a process that dies is started again, up to
        ``restarts`` times. An agent rebuilds its state from what it handled, and what it held
        comes to it again. The gateway gets the same socket: it sees the dead one's lease is
        dead and settles what that one left open; until it listens, new requests wait in the
        socket's backlog, and ones the dead process had taken are made again by their senders
        (those safe to repeat)."""
        while True:
            if process.stdout is not None:
                while await process.stdout.readline():  # its pipe kept empty, or it would block
                    pass
            code = await process.wait()
            if self._closing:
                return
            if code == 0 or self.restarts[name] <= 0:  # it stopped, or it keeps dying
                if self._lost is not None and not self._lost.done():
                    self._lost.set_result((name, code))
                return
            self.restarts[name] -= 1
            self.restarted.append((name, code))
            what = "the gateway" if name == "gateway" else f"agent {name}"
            print(f"answerable storm: {what} exited with {code}; started again", file=sys.stderr)
            try:
                process = await self._spawn(name, first=False)
                if name == "gateway":
                    self.gateway_process = process
                else:
                    self.processes[name] = process
                await self._listening(name, process, self.stall_seconds)
            except AgentLost:
                if self._lost is not None and not self._lost.done():
                    self._lost.set_result((name, process.returncode or -1))
                return

    def _tail(self, name: str) -> str:
        """The last line ``name`` (an agent, or the gateway) wrote to its log."""
        path = self.folder / f"{name}.log"
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return f"its last words: {lines[-1]}" if lines else f"it said nothing (see {path})"

    async def settled(self) -> None:
        drained = asyncio.ensure_future(self.system.run_until_idle())
        lost = self._lost
        waiting: set[asyncio.Future[Any]] = {drained} if lost is None else {drained, lost}
        done, _ = await asyncio.wait(waiting, timeout=self.stall_seconds, return_when=asyncio.FIRST_COMPLETED)
        if drained in done:
            drained.result()
            return
        drained.cancel()
        with contextlib.suppress(asyncio.CancelledError, AnswerableError):
            await drained
        if lost is not None and lost.done():
            name, code = lost.result()
            raise AgentLost(
                name, f"its process exited with {code} in the middle of the run; {self._tail(name)}"
            )
        raise AgentLost(
            "agents",
            f"not done within {self.stall_seconds:g} s (a record keeps failing?); see {self.folder}",
        )

    # --- the driver's own server: the world's partners and the desk ---------------------------

    async def _serve(self) -> int:
        """Serve the world's partners, the order system's facts and the desk on a free loopback
        port; the port."""
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        app = FastAPI()
        app.mount("/carrier", make_carrier_app(self.world.carrier))
        app.mount("/warehouse", make_warehouse_app(self.world.warehouse))
        self._world_routes(app)
        self._desk_route(app, base)

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield  # SIGINT and SIGTERM stay the driver's: it stops the agents, then this

        self._server = Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
        )
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._serving.done():
                self._serving.result()
                raise ConfigError(f"the run's driver did not start serving on {base}")
            await asyncio.sleep(0.01)
        return port

    def _world_routes(self, app: FastAPI) -> None:
        """The order system, as the gateway's process reads and calls it: the facts a rule's
        context needs, and the reprioritization (idempotent by key, as in process)."""
        world = self.world

        @app.post("/world/shipment", include_in_schema=False)
        async def shipment(request: Request) -> JSONResponse:
            doc = orjson.loads(await request.body())
            cls, late = world.shipment_facts([str(o) for o in doc["orders"]], int(doc["day"]))
            return JSONResponse({"class": cls, "late": late})

        @app.post("/orders/reprioritize", include_in_schema=False)
        async def reprioritize(request: Request) -> JSONResponse:
            key = request.headers.get("Idempotency-Key", "")
            if not key:
                return JSONResponse({"error": "an Idempotency-Key header is required"}, status_code=422)
            doc = orjson.loads(await request.body())
            try:
                done = world.reprioritize(
                    str(doc["shipment"]), [str(o) for o in doc["orders"]], int(doc["to_day"]), key
                )
            except (KeyError, TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=422)
            return JSONResponse(done)

    def _desk_route(self, app: FastAPI, base: str) -> None:
        executor = self.keys["executor"].public_b64

        @app.post("/storm/desk", include_in_schema=False)
        async def desk(request: Request) -> JSONResponse:
            try:
                doc = await signed_json(request, base, {"executor": executor}, self.ledger)
                wanted = doc["intents"]
                if not isinstance(wanted, list) or not all(isinstance(i, str) for i in wanted):
                    raise TypeError(wanted)
            except NotAuthorized as exc:
                return JSONResponse({"error": str(exc), "reason_code": exc.reason_code}, status_code=401)
            except StoreUnavailable as exc:
                return unavailable(exc)
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": f"not a desk request: {exc}", "reason_code": "bad_body"}, 422)
            async with self._desk_lock:  # one plan's reviews at a time, as at the desk in process
                try:
                    docs = await self._at_desk(wanted)
                except StoreUnavailable as exc:
                    return unavailable(exc)
                except AnswerableError as exc:
                    return JSONResponse({"error": str(exc), "reason_code": "not_at_desk"}, 422)
            return JSONResponse({"outcomes": docs})

    async def _at_desk(self, intent_ids: list[str]) -> list[dict[str, Any]]:
        """The desk's answer for each intent, in order: the one it gave, if it was asked before
        (a plan handled again after a crash hears what it heard then, however the review has
        gone since), else its answer now to a review still waiting."""
        fresh = [i for i in dict.fromkeys(intent_ids) if i not in self._answered]
        waiting = [await asyncio.to_thread(self._waiting, i) for i in fresh]
        answered = await self.reviewer.settle(waiting) if self.reviewer is not None else waiting
        for intent_id, outcome in zip(fresh, answered, strict=True):
            self._answered[intent_id] = outcome_doc(outcome)
        return [self._answered[i] for i in intent_ids]

    def _waiting(self, intent_id: str) -> Outcome:
        """An intent the desk was not asked about before, with its review (waiting, or answered
        through a gateway that died before it could say so)."""
        intent = decode_entry(self.ledger.find(intent_id).data)
        if not isinstance(intent, Intent):
            raise ConfigError(f"{intent_id} is no intent")
        decision, review, _ = self.gateway.records_of(intent_id)
        if review is None:
            raise ConfigError(f"intent {intent_id} has no review for the desk")
        return Outcome("review", intent, decision, review=review)

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        try:
            for task in self._watchers:  # no agent started again from here on
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for process in self.processes.values():
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(signal.SIGTERM)
            for name, process in self.processes.items():
                if process.stdin is not None:
                    process.stdin.close()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    print(f"answerable storm: agent {name} did not stop on SIGTERM; killed", file=sys.stderr)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
            gateway = self.gateway_process
            if gateway is not None:  # after the agents: none of them is left to ask it anything
                if gateway.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        gateway.send_signal(signal.SIGTERM)
                if gateway.stdin is not None:
                    gateway.stdin.close()
                try:
                    await asyncio.wait_for(gateway.wait(), 30)
                except TimeoutError:
                    print("answerable storm: the gateway did not stop on SIGTERM; killed", file=sys.stderr)
                    with contextlib.suppress(ProcessLookupError):
                        gateway.kill()
                    await gateway.wait()
            if self._gateway_client is not None:
                await self._gateway_client.aclose()
            if self._gateway_sock is not None:
                self._gateway_sock.close()
            if isinstance(self.clock, SharedClock):
                self.clock.close()
            if self._server is not None and self._serving is not None:
                self._server.should_exit = True
                with contextlib.suppress(asyncio.CancelledError):
                    await self._serving
            if self._nats is not None:
                with contextlib.suppress(AnswerableError, Exception):
                    await self._nats.delete_stream()  # the ledger holds every record it carried
                await self._nats.close()
        finally:
            for name in self.keys:  # minted for this run: nobody speaks as its agents once it is over
                (self.folder / f"{name}.key").unlink(missing_ok=True)
            await super().__aexit__(*exc)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (a run file names where the servers are)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


class ServiceReviews:
    """The desk's way to the gateway in its own process: each answer and each tick of the review
    clock is a request the driver signs. A gateway that is down (killed, starting again) is
    asked again until it answers, within ``patience`` seconds; an answer it recorded before it
    died is read back from the ledger, not given twice."""

    def __init__(self, ledger: SQLLedger, gateway: Gateway, client: AsyncClient, patience: float) -> None:
        self._ledger, self._gateway, self._client, self._patience = ledger, gateway, client, patience

    @property
    def ledger(self) -> SQLLedger:
        return self._ledger

    async def _post(self, path: str, doc: dict[str, Any]) -> Any:
        return await patiently(lambda: self._client.post(path, doc), self._patience)

    async def answer(
        self,
        review_id: str,
        *,
        key: KeyPair,
        verdict: Literal["approve", "deny"],
        reason: str,
        valid_for_seconds: int = 3600,
        simulated: bool = False,
    ) -> Outcome:
        doc = {
            "review_id": review_id,
            "seat": key.identity,
            "verdict": verdict,
            "reason": reason,
            "valid_for_seconds": valid_for_seconds,
            "simulated": simulated,
        }
        try:
            answered = await self._post("/storm/answer", doc)
        except ServiceRefused as exc:
            if exc.status != 409 or exc.reason_code not in ("already_answered", "already_claimed"):
                raise
            answered = None  # answered already: by this desk, through a gateway that then died
        review = decode_entry((await asyncio.to_thread(self._ledger.find, review_id)).data)
        if not isinstance(review, Review):
            raise ConfigError(f"{review_id} is no review")
        intent = decode_entry((await asyncio.to_thread(self._ledger.find, review.intent_id)).data)
        if not isinstance(intent, Intent):
            raise ConfigError(f"review {review_id} is of no intent")
        outcome = await asyncio.to_thread(self._gateway.recorded_outcome, intent)
        if outcome is None:
            raise ConfigError(
                f"review {review_id} was answered, and its intent's outcome is not recorded yet"
            )
        result = None if answered is None else answered.get("result")
        return dataclasses.replace(outcome, result=result)

    async def settle_reviews(self) -> None:
        await self._post("/storm/settle", {})
