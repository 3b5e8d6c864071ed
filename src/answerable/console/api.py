"""The console's HTTP API under ``/console/api/``, its pages under ``/console/``, and their guards.

Every route reads the session from its ``__Host-`` cookie and checks, on each request, that the
charter in force still gives the person the roles they logged in with; a state-changing route
also wants the session's CSRF token in ``X-CSRF-Token`` and a same-origin request (``Origin``,
or ``Sec-Fetch-Site`` without it). Answers and resumes are signed here with the key the person's
password unlocked at log-in, exactly as the CLI signs them, and go down the same code path as
``/v1``: the ledger records them, and every halt and pause, in the person's name.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from answerable._body import BodyRefused, read_body
from answerable._reason import says_something
from answerable.clock import IdSource, SystemClock, parse_rfc3339, rfc3339
from answerable.config import ConsoleConfig
from answerable.console.accounts import Account, load_accounts, unlock, verify_password
from answerable.console.live import LiveView
from answerable.console.sessions import COOKIE, LoginLimit, Session, Sessions, csrf_matches
from answerable.console.views import EntryFilter, entries_page, review_doc, rules_history, why_doc
from answerable.control import scope_from_text, unsigned_control
from answerable.errors import (
    AnswerableError,
    ApprovalRefused,
    ConfigError,
    EntryNotFound,
    NotAuthorized,
    RecordInvalid,
    SignatureInvalid,
)
from answerable.gateway import Gateway
from answerable.httpsig import normalized_uri
from answerable.keys import KeyPair
from answerable.ledger import SQLLedger
from answerable.ledger.note import checkpoint_size
from answerable.review import ReviewState, unsigned_approval
from answerable.service import ANSWER_STATUS, Service
from answerable.signing import sign

__all__ = ["CSP", "ConsoleRefused", "console_router", "mount_console"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
_STATIC = Path(__file__).with_name("static")
_DIGITS = re.compile(r"[0-9]+")
"""ASCII digits only: ``str.isdigit`` also takes ² and ①, which ``int`` refuses."""
_MAX_BODY = 16 * 1024
_POLL = 0.5
"""Seconds between two looks at the ledger's size in a live stream."""
_KEEPALIVE = 15.0


class ConsoleRefused(AnswerableError):
    """A console request refused: its HTTP status, stable reason code and one precise line."""

    def __init__(self, status: int, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason_code = reason_code


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LoginBody(_Body):
    identity: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class AnswerBody(_Body):
    verdict: Literal["approve", "deny"]
    reason: str = Field(max_length=2000)


class ControlBody(_Body):
    action: Literal["halt", "pause"]
    scope: str = Field(default="system", max_length=300)
    reason: str = Field(max_length=2000)


class ResumeBody(_Body):
    scope: str = Field(default="system", max_length=300)
    reason: str = Field(max_length=2000)
    seen: list[str] | None = Field(default=None, max_length=1000)
    """The ids of the stops the person was shown (the console's page sends them): the resume
    lifts those, and is refused when the stops on its scope are no longer those."""


def mount_console(app: FastAPI, service: Service) -> None:
    """Serve the console on ``app``: the API, the pages, their security headers and errors.

    Raises:
        ConfigError: the service's config has no ``[console]`` table.
    """
    if service.config.console is None:
        raise ConfigError(f"{service.config.source.name}: no [console] table: the console is not served")
    app.include_router(console_router(service))
    app.mount("/console/static", StaticFiles(directory=_STATIC), name="console-static")
    app.add_middleware(_ConsoleHeaders)

    @app.exception_handler(ConsoleRefused)
    async def refused(_request: Request, exc: ConsoleRefused) -> JSONResponse:
        return _error(exc.status, exc.reason_code, str(exc))


def console_router(service: Service) -> APIRouter:
    """The console's routes over a running ``service`` (started before the first request)."""
    config = service.config.console
    if config is None:
        raise ConfigError(f"{service.config.source.name}: no [console] table: the console is not served")
    console = _Console(service, config)
    router = APIRouter()

    @router.get("/console", include_in_schema=False)
    async def bare() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=308)

    @router.get("/console/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(_STATIC / "index.html", media_type="text/html")

    @router.post("/console/api/login", openapi_extra=_schema(LoginBody, "An identity and its password."))
    async def login(request: Request) -> JSONResponse:
        return await console.login(request)

    @router.post("/console/api/logout")
    async def logout(request: Request) -> JSONResponse:
        await console.acting(request)
        console.sessions.end(request.cookies.get(COOKIE))
        response = JSONResponse({"ended": True})
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response

    @router.get("/console/api/me")
    async def me(request: Request) -> JSONResponse:
        return JSONResponse(_me(await console.reading(request)))

    @router.get("/console/api/reviews")
    async def reviews(request: Request) -> JSONResponse:
        session = await console.reading(request)
        _, gateway = console.running()
        states = await asyncio.to_thread(gateway.reviews.open)
        return JSONResponse([console.review(s, session) for s in states])

    @router.get("/console/api/reviews/{review_id}")
    async def review(review_id: str, request: Request) -> JSONResponse:
        session = await console.reading(request)
        return JSONResponse(console.review(await console.state(review_id), session))

    @router.post(
        "/console/api/reviews/{review_id}/answer",
        openapi_extra=_schema(AnswerBody, "approve or deny, and why (required)."),
    )
    async def answer(review_id: str, request: Request) -> JSONResponse:
        return JSONResponse(await console.answer(review_id, request))

    @router.post(
        "/console/api/control", openapi_extra=_schema(ControlBody, "A halt or pause of a scope, and why.")
    )
    async def control(request: Request) -> JSONResponse:
        session = await console.acting(request, "ri", "operator", "reviewer")
        body = _parse(ControlBody, await _read(request))
        _reason(body.reason)
        try:
            scope_from_text(body.scope)
        except ConfigError as exc:
            raise ConsoleRefused(422, "bad_scope", str(exc)) from exc
        try:
            done = await console.service.stop_scope(session.identity, body.action, body.scope, body.reason)
        except RecordInvalid as exc:
            raise ConsoleRefused(422, "bad_body", str(exc)) from exc
        return JSONResponse(done)

    @router.get("/console/api/control")
    async def control_state(request: Request) -> JSONResponse:
        await console.reading(request)
        return JSONResponse(console.service.control_doc())

    @router.post("/console/api/resume", openapi_extra=_schema(ResumeBody, "The scope to resume, and why."))
    async def resume(request: Request) -> JSONResponse:
        return JSONResponse(await console.resume(request))

    @router.get("/console/api/live")
    async def live(request: Request) -> StreamingResponse:
        await console.reading(request)
        return StreamingResponse(
            console.stream(request), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )

    @router.get("/console/api/entries")
    async def entries(
        request: Request,
        kind: str | None = None,
        agent: str | None = None,
        operation: str | None = None,
        since: str | None = None,
        until: str | None = None,
        before: str | None = None,
        limit: str | None = None,
    ) -> JSONResponse:
        await console.reading(request)
        ledger, _ = console.running()
        keep = EntryFilter(
            kind or None, agent or None, operation or None, _time(since, "since"), _time(until, "until")
        )
        page = await asyncio.to_thread(
            entries_page,
            ledger,
            keep,
            before=_whole(before, "before", 0, 2**62),
            limit=_whole(limit, "limit", 1, 500) or 100,
        )
        return JSONResponse(page)

    @router.get("/console/api/entries/{entry_id}")
    async def entry(entry_id: str, request: Request) -> JSONResponse:
        await console.reading(request)
        return JSONResponse(await console.entry(entry_id))

    @router.get("/console/api/why/{entry_id}")
    async def why_of(entry_id: str, request: Request) -> JSONResponse:
        from answerable.provenance import why

        await console.reading(request)
        ledger, _ = console.running()
        try:
            graph = await asyncio.to_thread(why, ledger, entry_id, max_nodes=10_000)
        except EntryNotFound as exc:
            raise ConsoleRefused(404, "unknown_entry", _no_entry(entry_id)) from exc
        return JSONResponse(why_doc(graph))

    @router.get("/console/api/rules")
    async def rules(request: Request) -> JSONResponse:
        await console.reading(request)
        ledger, _ = console.running()
        history = await asyncio.to_thread(rules_history, ledger)
        rows = [
            {
                "version": r.version,
                "id": entry_id,
                "index": index,
                "ruleset_hash": r.ruleset_hash,
                "schema_hash": r.schema_hash,
                "approved_by": r.approved_by,
                "at": r.at,
            }
            for r, entry_id, index in history
        ]
        active = (
            None if not rows else {k: rows[-1][k] for k in ("version", "ruleset_hash", "approved_by", "at")}
        )
        return JSONResponse({"active": active, "history": rows})

    @router.get(
        "/console/api/rules/diff",
        openapi_extra={
            "parameters": [
                {"name": n, "in": "query", "required": True, "schema": {"type": "string"}}
                for n in ("from", "to")
            ]
        },
    )
    async def rules_diff(request: Request) -> JSONResponse:
        from answerable.policy import diff_policies

        await console.reading(request)
        ledger, _ = console.running()
        versions = {str(r.version): r.policies for r, _, _ in await asyncio.to_thread(rules_history, ledger)}
        old, new = request.query_params.get("from"), request.query_params.get("to")
        for name, value in (("from", old), ("to", new)):
            if value is None or value not in versions:
                raise ConsoleRefused(
                    404,
                    "unknown_version",
                    f"{name}={(value or '')[:40]!r}: the ledger has ruleset versions {sorted(versions)}",
                )
        try:
            changes = diff_policies(versions[str(old)], versions[str(new)])
        except AnswerableError as exc:
            raise ConsoleRefused(422, "bad_rules", str(exc)) from exc
        return JSONResponse(changes)

    @router.get("/console/api/coordination")
    async def coordination(request: Request, day: str | None = None) -> JSONResponse:
        await console.reading(request)
        return JSONResponse(await console.coordination(day))

    @router.get("/console/api/report", response_class=HTMLResponse)
    async def report(request: Request) -> HTMLResponse:
        from answerable.report import render

        await console.reading(request)
        if service.config.ledger_url is not None:
            raise ConsoleRefused(
                404, "no_report", "the report reads a ledger file; this ledger is in PostgreSQL"
            )
        try:
            ledger = service.config.ledger
            page = _plots_as_images(await asyncio.to_thread(render, ledger, shown_as=_shown(ledger)))
        except AnswerableError as exc:
            raise ConsoleRefused(404, "no_report", str(exc).replace(str(service.config.folder), "")) from exc
        return HTMLResponse(page, headers={"Content-Security-Policy": _allowing_its_styles(page)})

    @router.get("/console/api/report/compare", response_class=HTMLResponse)
    async def report_compare(request: Request) -> HTMLResponse:
        from answerable.report import render_compare

        await console.reading(request)
        others = config.compare
        if service.config.ledger_url is not None or not others:
            raise ConsoleRefused(
                404,
                "no_comparison",
                "no [console] compare ledgers are set beside this service's own ledger file",
            )
        try:
            ledgers = [service.config.ledger, *others]
            page = _plots_as_images(
                await asyncio.to_thread(render_compare, ledgers, shown_as=[_shown(p) for p in ledgers])
            )
        except AnswerableError as exc:
            raise ConsoleRefused(
                404, "no_comparison", str(exc).replace(str(service.config.folder), "")
            ) from exc
        return HTMLResponse(page, headers={"Content-Security-Policy": _allowing_its_styles(page)})

    def _shown(path: Path) -> str:
        """A ledger as the console's readers see it named: within the system's folder, relative to
        it; elsewhere, its file name. Where the server keeps its files is its operator's to know."""
        try:
            return path.resolve().relative_to(service.config.folder.resolve()).as_posix()
        except ValueError:
            return path.name

    return router


class _Console:
    """The state behind the routes: sessions, the log-in limit, the live view."""

    def __init__(self, service: Service, config: ConsoleConfig) -> None:
        self.service = service
        self.config = config
        self.sessions = Sessions(config.session_minutes)
        self.limit = LoginLimit()
        self._live: LiveView | None = None
        self._checking = asyncio.Semaphore(2)
        self._accounts: tuple[tuple[int, int, int], dict[str, Account]] | None = None
        """Password checks running at once: each is argon2id, 64 MiB and a core for a moment."""

    def accounts(self) -> dict[str, Account]:
        """The accounts file as it is now, read again only when it changed."""
        try:
            stat = self.config.users.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            return {}
        if self._accounts is None or self._accounts[0] != stamp:
            try:
                self._accounts = (stamp, load_accounts(self.config.users))
            except ConfigError:
                return {}  # unreadable now: no session stands on it
        return self._accounts[1]

    def running(self) -> tuple[SQLLedger, Gateway]:
        ledger, gateway = self.service.ledger, self.service.gateway
        if ledger is None or gateway is None:
            raise ConsoleRefused(409, "starting", "the service is starting")
        return ledger, gateway

    def roles_of(self, identity: str) -> tuple[str, ...]:
        """The roles the charter in force and the config give ``identity`` now."""
        _, gateway = self.running()
        roles: list[str] = []
        if gateway.has_charter():
            person = gateway.charter.person(identity)
            if person is not None:
                roles.extend(person.roles)
        if identity in self.config.viewers:
            roles.append("viewer")
        return tuple(dict.fromkeys(roles))

    # --- guards ----------------------------------------------------------------------------------

    def session(self, request: Request) -> Session:
        """The request's session, still standing under the charter in force."""
        token = request.cookies.get(COOKIE)
        found = self.sessions.get(token)
        if found is None:
            raise ConsoleRefused(401, "no_session", "not logged in: no session, or it expired or was ended")
        ended = self.ended(found)
        if ended is not None:
            self.sessions.end_all(found.identity)
            raise ConsoleRefused(401, "session_ended", f"{ended}; log in again")
        return found

    def ended(self, session: Session) -> str | None:
        """Why the session no longer stands, or None: the charter in force no longer gives the
        person every role or the key they logged in with (removed, a role revoked, a key rotated),
        or their password changed since (each is said as it is, never one for the other)."""
        now = self.roles_of(session.identity)
        if not now or any(r not in now for r in session.roles):
            return f"the charter in force no longer gives {session.identity} the roles of this session"
        account = self.accounts().get(session.identity)
        if account is None or _digest(account.password_hash) != session.account:
            return f"the password of {session.identity} was changed or removed since this log-in"
        if session.key is not None:
            _, gateway = self.running()
            person = gateway.charter.person(session.identity)
            if person is None or person.public_key != session.key.public_b64:
                return f"the charter in force holds another key for {session.identity} than this session's"
        return None

    async def reading(self, request: Request) -> Session:
        return self.session(request)

    async def acting(self, request: Request, *roles: str) -> Session:
        """The session of a state-changing request: same origin, its CSRF token, and one of
        ``roles`` (any role when none is named)."""
        session = self.session(request)
        _same_origin(request, self.service.config.public_url)
        if not csrf_matches(session, request.headers.get("x-csrf-token")):
            raise ConsoleRefused(403, "csrf", "missing or wrong X-CSRF-Token: send the token /me gives")
        if roles and not set(roles) & set(session.roles):
            raise ConsoleRefused(
                403,
                "forbidden",
                f"{session.identity} ({', '.join(session.roles)}) may not do this: "
                f"it needs {' or '.join(roles)}",
            )
        return session

    # --- log-in ----------------------------------------------------------------------------------

    async def login(self, request: Request) -> JSONResponse:
        _same_origin(request, self.service.config.public_url)
        body = _parse(LoginBody, await _read(request))
        address = request.client.host if request.client is not None else "?"
        wait = self.limit.blocked(body.identity, address)
        if wait is not None:
            raise ConsoleRefused(
                429, "too_many_logins", f"too many failed log-ins; try again in {max(1, round(wait))} s"
            )
        # Counted at once (no await between the look and the count) and forgiven after a success,
        # so a burst of guesses sent together meets the limit as a sequence would.
        self.limit.failed(body.identity, address)
        roles = self.roles_of(body.identity)
        try:
            accounts = await asyncio.to_thread(load_accounts, self.config.users)
        except ConfigError as exc:
            print(f"answerable serve: console: {exc}", file=sys.stderr, flush=True)  # the path stays here
            raise ConsoleRefused(
                503,
                "accounts_unreadable",
                "the console's accounts cannot be read; the service's log says why",
            ) from exc
        account = accounts.get(body.identity) if roles else None
        async with self._checking:  # argon2id costs 64 MiB and a core: a few at a time
            known = await asyncio.to_thread(verify_password, account, body.password)
        if not known:
            raise ConsoleRefused(401, "bad_login", "wrong identity or password")
        if account is None:  # verify_password is False for no account; kept for the type checker
            raise ConsoleRefused(401, "bad_login", "wrong identity or password")
        self.limit.forgive(body.identity, address)
        key = await asyncio.to_thread(unlock, account, body.password)
        _, gateway = self.running()
        person = gateway.charter.person(body.identity) if gateway.has_charter() else None
        if key is not None and (person is None or person.public_key != key.public_b64):
            key = None  # a key the charter no longer holds for them signs nothing here
        token, session = self.sessions.open(body.identity, roles, key, _digest(account.password_hash))
        response = JSONResponse(_me(session))
        response.set_cookie(
            COOKIE,
            token,
            max_age=self.config.session_minutes * 60,
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return response

    # --- reviews ---------------------------------------------------------------------------------

    async def state(self, review_id: str) -> ReviewState:
        _, gateway = self.running()
        try:
            return await asyncio.to_thread(gateway.reviews.state, review_id)
        except ApprovalRefused as exc:
            raise ConsoleRefused(404, "unknown_review", _no_entry(review_id, "review")) from exc

    def review(self, state: ReviewState, session: Session) -> dict[str, Any]:
        _, gateway = self.running()
        return review_doc(state, gateway.charter, session.identity, session.key is not None)

    async def answer(self, review_id: str, request: Request) -> dict[str, Any]:
        session = await self.acting(request, "reviewer", "ri")
        body = _parse(AnswerBody, await _read(request))
        _reason(body.reason)
        key = _key_of(session)
        state = await self.state(review_id)
        _, gateway = self.running()
        person = gateway.charter.person(session.identity)
        clock = SystemClock()
        try:
            # As answerable.client signs it: the same record, the same validity.
            approval = sign(
                unsigned_approval(
                    review_id=state.review.id,
                    intent_id=state.intent.id,
                    binding=state.review.binding,
                    by=session.identity,
                    verdict=body.verdict,
                    reason=body.reason,
                    approval_id=IdSource(clock).new(),
                    at_ns=clock.now_ns(),
                    valid_for_seconds=3600,
                    simulated=person is not None and person.simulated,
                ),
                key,
            )
            return await self.service.answer(session.identity, review_id, approval)
        except ApprovalRefused as exc:
            raise ConsoleRefused(ANSWER_STATUS.get(exc.reason_code, 422), exc.reason_code, str(exc)) from exc
        except RecordInvalid as exc:
            raise ConsoleRefused(422, "bad_body", str(exc)) from exc

    # --- control ---------------------------------------------------------------------------------

    async def resume(self, request: Request) -> dict[str, Any]:
        session = await self.acting(request, "ri", "operator")
        body = _parse(ResumeBody, await _read(request))
        _reason(body.reason)
        try:
            scope = scope_from_text(body.scope)
        except ConfigError as exc:
            raise ConsoleRefused(422, "bad_scope", str(exc)) from exc
        key = _key_of(session)
        _, gateway = self.running()
        lifted = [s.id for s in gateway.control.state().stops if s.scope.label() == scope.label()]
        if not lifted:
            raise ConsoleRefused(409, "not_stopped", f"nothing is halted or paused on {scope.label()}")
        unseen = [s for s in lifted if body.seen is not None and s not in body.seen]
        if unseen:  # a reconcile's "outcome unknown" pause, or a monitor's, landed after the page
            raise ConsoleRefused(
                409,
                "stops_changed",
                f"{scope.label()} has stops you were not shown ({', '.join(unseen)}): look, then resume",
            )
        clock = SystemClock()
        try:
            made = sign(
                unsigned_control(
                    "resume",
                    scope,
                    session.identity,
                    body.reason,
                    causes=lifted,
                    control_id=IdSource(clock).new(),
                    at_ns=clock.now_ns(),
                ),
                key,
            )
            return await self.service.resume(session.identity, made)
        except (NotAuthorized, SignatureInvalid) as exc:
            raise ConsoleRefused(403, "not_authorized", str(exc)) from exc
        except RecordInvalid as exc:
            raise ConsoleRefused(422, "bad_body", str(exc)) from exc

    # --- live ------------------------------------------------------------------------------------

    async def stream(self, request: Request) -> AsyncIterator[bytes]:
        """``state`` events: one at once, then one whenever the ledger grows; the stream ends
        when the client goes or the session ends."""
        ledger, gateway = self.running()
        if self._live is None:
            self._live = LiveView(ledger, gateway)
        live = self._live
        token = request.cookies.get(COOKIE)
        last, quiet = -1, time.monotonic()
        while True:
            session = self.sessions.get(token)
            if session is None or self.ended(session) is not None:
                if session is not None:
                    self.sessions.end_all(session.identity)
                yield b'event: ended\ndata: {"reason_code": "session_ended"}\n\n'
                return
            if await request.is_disconnected():
                return
            size = ledger.size()
            if size != last:
                state = await live.state()
                last = state["ledger_size"]
                quiet = time.monotonic()
                yield b"event: state\ndata: " + orjson.dumps(state) + b"\n\n"
            elif time.monotonic() - quiet > _KEEPALIVE:
                quiet = time.monotonic()
                yield b": keepalive\n\n"
            await asyncio.sleep(_POLL)

    # --- ledger ----------------------------------------------------------------------------------

    async def entry(self, entry_id: str) -> dict[str, Any]:
        ledger, _ = self.running()
        try:
            stored = await asyncio.to_thread(ledger.find, entry_id)
        except EntryNotFound as exc:
            raise ConsoleRefused(404, "unknown_entry", _no_entry(entry_id)) from exc
        try:
            note = await self.service.checkpoint()
        except AnswerableError as exc:
            raise ConsoleRefused(409, "no_checkpoint", f"no checkpoint can be signed now: {exc}") from exc
        size = checkpoint_size(note)
        proof = await asyncio.to_thread(ledger.inclusion_proof, stored.index, size)
        return {
            "index": stored.index,
            "id": stored.id,
            "kind": stored.kind,
            "entry": orjson.loads(stored.data),
            "proof": {
                "leaf_index": stored.index,
                "tree_size": size,
                "hashes": [base64.b64encode(h).decode("ascii") for h in proof],
            },
            "checkpoint": note,
        }

    async def coordination(self, day: str | None) -> dict[str, Any]:
        from answerable.coordination import observe

        ledger, _ = self.running()
        whole = await asyncio.to_thread(observe, ledger)
        days = sorted(
            {d for e in whole.edges for d in e.days} | {d for c in whole.refused_days.values() for d in c}
        )
        chosen: str | None = None
        graph = whole
        if day:
            if _DIGITS.fullmatch(day) and len(day) < 6:
                if int(day) >= len(days):
                    raise ConsoleRefused(
                        404, "unknown_day", f"day={day}: the ledger has {len(days)} day(s) of messages"
                    )
                chosen = days[int(day)]
            else:
                try:
                    parse_rfc3339(f"{day}T00:00:00Z")
                except ValueError as exc:
                    raise ConsoleRefused(
                        422, "bad_day", f"day={day[:40]!r}: give a day number from 0 or a date YYYY-MM-DD"
                    ) from exc
                chosen = day
            start = parse_rfc3339(f"{chosen}T00:00:00Z")
            graph = await asyncio.to_thread(
                observe, ledger, since=start, until=start + 86_400 * 1_000_000_000 - 1
            )
        refused: dict[tuple[str, str, str], int] = {}
        for (sender, topic, type_, _code), count in graph.refusals.items():
            refused[sender, topic, type_] = refused.get((sender, topic, type_), 0) + count
        doc = graph.as_json()
        doc["edges"] = [
            {
                **e.as_json(),
                "declared": e.declared,
                "undeclared": e.declared is False,
                "refused": refused.pop((e.sender, e.topic, e.type), 0),
            }
            for e in graph.edges
        ]
        doc["refused_edges"] = [  # refused channels that carried nothing: every message was refused
            {"from": s, "topic": t, "type": y, "refused": n} for (s, t, y), n in sorted(refused.items())
        ]
        doc["days"] = days
        doc["day"] = chosen
        return doc


# --- helpers ---------------------------------------------------------------------------------------


class _ConsoleHeaders:
    """Adds the console's security headers to every response under ``/console``, errors included."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/console" or path.startswith("/console/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                own = [
                    (n, v) for n, v in message.get("headers", []) if n.lower() == b"content-security-policy"
                ]
                names = {name for name, _ in _HEADERS}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                # A route's own policy stays (the report allows its one inline style by hash).
                message["headers"] = (
                    kept + [(n, v) for n, v in _HEADERS if not (own and n == _HEADERS[0][0])] + own
                )
            await send(message)

        await self.app(scope, receive, with_headers)


def _plots_as_images(page: str) -> str:
    """The report with each inline SVG plot turned into an image of itself (a ``data:`` URL): a
    plot's own ``style`` attributes then stay inside the image, and the page needs no inline
    style beyond its one stylesheet."""

    def image(match: re.Match[str]) -> str:
        svg = match.group(0)
        title = re.search(r"<title>(.*?)</title>", svg, re.S)
        alt = title.group(1).strip() if title else "plot"
        data = base64.b64encode(svg.encode()).decode()
        return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/svg+xml;base64,{data}">'

    return re.sub(r"<svg\b.*?</svg>", image, page, flags=re.S)


def _allowing_its_styles(page: str) -> str:
    """The console's policy with the page's own ``<style>`` blocks allowed by their SHA-256 (the
    report is one self-contained file; nothing else inline is allowed)."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()}'"
        for style in re.findall(r"<style>(.*?)</style>", page, re.S)
    )
    return CSP.replace("style-src 'self'", f"style-src 'self' {hashes}" if hashes else "style-src 'self'")


def _no_entry(entry_id: str, what: str = "entry") -> str:
    return f"the ledger holds no {what} {entry_id[:80]!r}"


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "reason_code": code}, status_code=status)


def _me(session: Session) -> dict[str, Any]:
    return {
        "identity": session.identity,
        "roles": list(session.roles),
        "csrf_token": session.csrf_token,
        "expires_at": rfc3339(int(session.expires_at * 1_000_000_000)),
        "can_sign": session.key is not None,
    }


def _origin_of(url: str) -> str | None:
    """The web origin of ``url`` as browsers send it in ``Origin``, or None for no http(s) one."""
    try:
        parts = urlsplit(normalized_uri(url))
    except ValueError:  # a port that is no number, a broken IPv6 host
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _same_origin(request: Request, public_url: str | None) -> None:
    """Refuse a request another site's page made: its ``Origin`` must be this server's own,
    or, when a browser sends none, ``Sec-Fetch-Site`` must say same-origin."""
    origin = request.headers.get("origin")
    # The one origin people use when it is configured (a Host header can be anything), each
    # side as a browser writes it: lower-case, no default port (`https://Console.Example:443/`
    # in the configuration refused every log-in, found by an audit).
    own = _origin_of(public_url or f"{request.url.scheme}://{request.headers.get('host', '')}")
    if origin is not None:
        # As a browser writes it, exactly: a form it never sends (upper case, a user, a path)
        # is no browser's.
        if own is None or origin != own:
            raise ConsoleRefused(
                403, "cross_origin", f"a request from {origin[:100]!r} is not from this console's origin"
            )
        return
    if request.headers.get("sec-fetch-site") != "same-origin":
        raise ConsoleRefused(
            403,
            "cross_origin",
            "no Origin and no Sec-Fetch-Site: same-origin: not a request from this console",
        )


async def _read(request: Request) -> bytes:
    try:
        return await read_body(request, _MAX_BODY)
    except BodyRefused as exc:
        raise ConsoleRefused(exc.status, exc.code, str(exc)) from None


def _parse(model: type[Any], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise ConsoleRefused(422, "bad_body", f"{where}: {first['msg']}") from exc


def _key_of(session: Session) -> KeyPair:
    """The person's unlocked key; refused when none is stored (a viewer's, say)."""
    if session.key is None:
        raise ConsoleRefused(
            403,
            "no_key",
            f"no signing key is stored for {session.identity}: "
            "answerable users set-password CONFIG IDENTITY --key KEYFILE",
        )
    return session.key


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _reason(reason: str) -> None:
    """A reason says something: at least one visible sign (not only spaces or invisible marks)."""
    if not says_something(reason):
        raise ConsoleRefused(422, "reason_required", "give a reason: a blank one says nothing")


def _whole(text: str | None, name: str, low: int, high: int) -> int | None:
    if text is None or text == "":
        return None
    if not _DIGITS.fullmatch(text) or len(text) > 19 or not low <= int(text) <= high:
        raise ConsoleRefused(
            422, f"bad_{name}", f"{name}={text[:40]!r}: want a whole number from {low} to {high}"
        )
    return int(text)


def _time(text: str | None, name: str) -> int | None:
    if not text:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise ConsoleRefused(
            422, f"bad_{name}", f"{name}={text[:40]!r}: want an RFC 3339 UTC time like 2025-01-31T12:00:00Z"
        ) from exc


def _schema(model: type[BaseModel], what: str) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that reads its body itself."""
    return {
        "requestBody": {
            "required": True,
            "description": what,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
