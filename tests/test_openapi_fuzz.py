"""Schemathesis against a real ``answerable serve``: whatever a chartered caller sends, no 5xx.

The schema is the one the process serves at ``/openapi.json``, request bodies included (the POST
routes read their signed body themselves and declare it); for the submit and control routes the
test adds the shapes the scaffolded system expects beside the declared ones, so the fuzz reaches
the gateway, Cedar and the control plane, not only the body parser. Every request is signed
(RFC 9421) over the exact URL and body that go on the wire, by the agent for its routes and the
reads, and by a person for the routes only people may call, so the fuzz is not all refused at
the signature check. At the end the serve process must not have printed a traceback.

Each operation runs as a plain Hypothesis test over ``APIOperation.as_strategy``, derandomized:
``schemathesis.pytest.from_fixture`` (the lazy loader a schema served by a fixture needs) does
not run under pytest 9.2, which has no ``Node._nodeid`` any more.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from procs import SOAK
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from served import Running, start

from answerable.httpsig import sign_request
from answerable.keys import KeyPair
from answerable.scaffold import init

pytestmark = [pytest.mark.slow, pytest.mark.soak]

MAX_EXAMPLES = 150 if SOAK else 40
"""Per operation (valid and invalid inputs together); 150 under ``make soak``."""

BODIES = (
    ("post", "/v1/intents"),
    ("post", "/v1/control"),
    ("post", "/v1/control/resume"),
    ("post", "/v1/reviews/{review_id}/answer"),
)
"""The POST routes, each reading a body it declares in the schema once its signature checks out."""


class Signs(requests.auth.AuthBase):
    """Signs a prepared request as ``key``'s holder would: over its final URL and body bytes."""

    def __init__(self, key: KeyPair) -> None:
        self.key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):  # send exactly the bytes that are signed
            body = body.encode()
            request.body = body
            request.prepare_content_length(body)
        assert isinstance(body, bytes), type(body)
        assert request.method is not None
        assert request.url is not None
        request.headers.update(
            sign_request(self.key, request.method, request.url, body, created=int(time.time()))
        )
        return request


def signer_for(folder: Path, path: str) -> KeyPair:
    """Who sends a request to the route ``path``: the RI controls, the reviewer answers, the agent
    submits and reads (a read by anyone chartered is allowed)."""
    if path.startswith("/v1/control"):
        return KeyPair.load(folder / "ri.key")
    if path == "/v1/reviews/{review_id}/answer":
        return KeyPair.load(folder / "reviewer.key")
    return KeyPair.load(folder / "agent.key")


LIKELY: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/intents"): {
        "type": "object",
        "required": ["operation", "arguments"],
        "properties": {
            "operation": {"enum": ["refund"]},
            "arguments": {
                "type": "object",
                "required": ["order", "amount_cents"],
                "properties": {"order": {"type": "string"}, "amount_cents": {"type": "integer"}},
            },
            "idempotency_key": {"type": ["string", "null"]},
        },
    },
    ("post", "/v1/control"): {
        "type": "object",
        "required": ["action", "reason"],
        "properties": {
            "action": {"enum": ["halt", "pause"]},
            "reason": {"type": "string"},
            "scope": {"type": "string", "pattern": "^(system|(agent|operation|resource_class):.+)$"},
        },
    },
}
"""Bodies shaped as the scaffolded system expects (its one operation, a real control action), so
the fuzz also reaches the gateway, Cedar and the control plane, not only the body parser."""


def with_bodies(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the likely shapes added beside the bodies the service declares for the POSTs."""
    for method, path in BODIES:
        operation = doc["paths"][path][method]
        assert "requestBody" in operation, f"{method} {path} declares no body in /openapi.json"
        if (method, path) in LIKELY:
            content = operation["requestBody"]["content"]["application/json"]
            content["schema"] = {"anyOf": [content["schema"], LIKELY[method, path]]}
    return doc


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Running, list[str]]]:
    """A real serve process, and everything it writes to stderr (read as it comes, so a chatty
    server never blocks on a full pipe)."""
    folder = tmp_path / "shop"
    init(folder)
    running = start(folder)
    said: list[str] = []
    stderr = running.proc.stderr
    assert stderr is not None
    reader = threading.Thread(target=lambda: said.extend(stderr), daemon=True)
    reader.start()
    try:
        yield running, said
    finally:
        if running.proc.poll() is None:
            running.proc.send_signal(signal.SIGTERM)
            running.proc.wait(timeout=60)
        reader.join(timeout=60)
        stderr.close()
    log = "".join(said)
    assert "Traceback" not in log, f"serve printed a traceback:\n{log}"


@pytest.fixture
def api(served: tuple[Running, list[str]]) -> schemathesis.BaseSchema:
    running, _ = served
    doc = httpx.get(f"{running.url}/openapi.json", timeout=30).raise_for_status().json()
    config = schemathesis.Config.from_dict({"base-url": running.url})
    return schemathesis.openapi.from_dict(with_bodies(doc), config=config)


def fuzz(operation: schemathesis.APIOperation[Any, Any, Any, Any], folder: Path, statuses: list[int]) -> None:
    """Send ``operation`` valid and invalid inputs, each signed; raise on the first 5xx. Each
    response's status goes into ``statuses``."""
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)
    signs = Signs(signer_for(folder, operation.path))

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.generate, hypothesis.Phase.shrink],
        suppress_health_check=list(hypothesis.HealthCheck),
        print_blob=False,
    )
    @hypothesis.given(case=strategy)
    def send(case: schemathesis.Case[Any]) -> None:
        with requests.Session() as session:
            session.auth = signs
            response = case.call_and_validate(session=session, checks=[not_a_server_error])
            statuses.append(response.status_code)

    send()


def test_no_request_from_a_chartered_caller_is_a_server_error(
    api: schemathesis.BaseSchema, served: tuple[Running, list[str]]
) -> None:
    running, _ = served
    failed: dict[str, BaseException] = {}
    operations = []
    for result in api.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 10, [o.label for o in operations]
    passed_the_door: dict[str, int] = {}
    for operation in operations:
        statuses: list[int] = []
        try:
            fuzz(operation, running.folder, statuses)
        except (Exception, FailureGroup) as exc:  # one operation's 5xx must not hide another's
            failed[operation.label] = exc
        passed_the_door[operation.label] = sum(status != 401 for status in statuses)
    assert not failed, "\n\n".join(f"{label}:\n{exc}" for label, exc in failed.items())
    # The signing works: every operation was reached past the signature check (one without
    # parameters has one distinct request to send), a thousand times in all under make soak.
    assert min(passed_the_door.values()) >= 1, passed_the_door
    assert sum(passed_the_door.values()) >= (1000 if SOAK else 250), passed_the_door
