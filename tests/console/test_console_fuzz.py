"""Schemathesis against the console's routes on a real ``answerable serve``: no 5xx whoever sends
what, and no state-changing route answers 2xx without a session.

Two passes over every ``/console/api`` operation the served ``/openapi.json`` declares (the live
stream, which never ends by itself, is left out): without a session, then as the logged-in RI
with the session cookie, its CSRF token and the page's own Origin, so the fuzz gets past the door
and reaches the review queue, the control plane and the ledger explorer.
"""

from __future__ import annotations

from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from consoled import COOKIE, Console
from procs import SOAK
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

pytestmark = [pytest.mark.slow, pytest.mark.soak]

MAX_EXAMPLES = 100 if SOAK else 20
"""Per operation and pass; 100 under ``make soak``."""


class Headers(requests.auth.AuthBase):
    """Adds a browser's headers: its Origin always, and a session's cookie and CSRF token if any."""

    def __init__(self, origin: str, cookie: str | None = None, csrf: str | None = None) -> None:
        self.origin, self.cookie, self.csrf = origin, cookie, csrf

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Origin"] = self.origin
        if self.cookie is not None:
            request.headers["Cookie"] = self.cookie
        if self.csrf is not None:
            request.headers["X-CSRF-Token"] = self.csrf
        return request


def operations(console: Console) -> list[schemathesis.APIOperation[Any, Any, Any, Any]]:
    doc = httpx.get(f"{console.url}/openapi.json", timeout=30).raise_for_status().json()
    schema = schemathesis.openapi.from_dict(
        doc, config=schemathesis.Config.from_dict({"base-url": console.url})
    )
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        if operation.path.startswith("/console/api/") and operation.path != "/console/api/live":
            found.append(operation)
    return found


def fuzz(
    operation: schemathesis.APIOperation[Any, Any, Any, Any], auth: Headers, statuses: list[int]
) -> None:
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
        print_blob=False,
    )
    @hypothesis.given(case=strategy)
    def send(case: schemathesis.Case[Any]) -> None:
        with requests.Session() as session:
            session.auth = auth
            response = case.call_and_validate(session=session, checks=[not_a_server_error])
            statuses.append(response.status_code)

    send()


def test_no_console_route_is_a_server_error_and_none_changes_anything_without_a_session(
    own_console: Console,
) -> None:
    console = own_console
    found = operations(console)
    paths = {(o.method.upper(), o.path) for o in found}
    assert {("POST", "/console/api/control"), ("POST", "/console/api/reviews/{review_id}/answer")} <= paths
    # Logged in first: the unauthenticated pass fuzzes the log-in too, and its failures trip the
    # log-in rate limit for this address (as they should).
    ri = console.browser("ri")
    assert ri.cookie is not None
    before = len(console.indexed())

    # No session: never a 5xx, and no POST (but the log-in itself) answers 2xx.
    for operation in found:
        statuses: list[int] = []
        fuzz(operation, Headers(console.url), statuses)
        if operation.method.upper() == "POST" and operation.path != "/console/api/login":
            assert not [s for s in statuses if 200 <= s < 300], (operation.label, statuses)
    assert len(console.indexed()) == before, "a request without a session changed the ledger"

    # The RI's session (every POST but log-out, which would end it): never a 5xx.
    auth = Headers(console.url, ri.cookie, ri.csrf)
    reached: dict[str, int] = {}
    for operation in found:
        if operation.path == "/console/api/logout":
            continue
        statuses = []
        fuzz(operation, auth, statuses)
        reached[operation.label] = sum(s not in (401, 403) for s in statuses)
    assert min(reached.values()) >= 1, reached  # each route was reached past the door
    assert ri.cookie.startswith(f"{COOKIE}=")
