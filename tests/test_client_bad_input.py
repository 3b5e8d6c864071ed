"""Bad input to the service's clients, against a real ``answerable serve``: found by a sweep.

Arguments with no JSON form raised orjson's bare TypeError; ids went into URL paths unquoted
(``../reviews`` read the reviews list, ``a?b=c`` asked for entry ``a``, an empty id came back as
a framework's 307 returned as if it were the intent); a reason or scope of None, a validity past
the year 9999, a port out of range and a closed client raised AttributeError, OverflowError,
ValueError and RuntimeError. Each is now an AnswerableError with a one-line message, refused
before anything is sent, so the ledger does not change.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from served import Running, effects, serving

from answerable import KeyPair
from answerable.client import AsyncClient, Client, ServiceRefused
from answerable.errors import AnswerableError, ApprovalRefused, ArgumentsInvalid, ConfigError, RecordInvalid

pytestmark = pytest.mark.slow

E = TypeVar("E", bound=AnswerableError)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One service for the module: every test here is refused before it sends, or only reads."""
    with serving(tmp_path_factory.mktemp("bad-input") / "shop") as running:
        yield running


@pytest.fixture(scope="module")
def held(shop: Running) -> dict[str, Any]:
    """An intent held for review: a real intent id and review id to aim bad input beside."""
    with Client(shop.url, KeyPair.load(shop.folder / "agent.key")) as agent:
        doc = agent.submit("refund", {"order": "O-held", "amount_cents": 50000}, idempotency_key="held")
    assert doc["status"] == "review"
    return doc


def ledger(running: Running) -> list[tuple[int, str]]:
    """Every entry's index and kind, read without writing (the service holds the file)."""
    conn = sqlite3.connect(f"file:{running.folder / 'ledger.db'}?mode=ro", uri=True)
    try:
        return [(int(i), str(k)) for (i, k) in conn.execute("SELECT idx, kind FROM entries ORDER BY idx")]
    finally:
        conn.close()


def refused(running: Running, kind: type[E], call: Callable[[], object]) -> E:
    """The error ``call`` raises, checked to be ``kind`` with a one-line message, and to have
    recorded nothing and run nothing."""
    before, done = ledger(running), effects(running)
    with pytest.raises(kind) as caught:
        call()
    assert "\n" not in str(caught.value)
    assert (ledger(running), effects(running)) == (before, done)
    return caught.value


def agent_of(running: Running) -> Client:
    return Client(running.url, KeyPair.load(running.folder / "agent.key"))


class _Key(enum.StrEnum):
    """A key orjson refuses though it is a str: the intent was sent without its arguments."""

    ORDER = "order"


def reviewer_of(running: Running) -> Client:
    return Client(running.url, KeyPair.load(running.folder / "reviewer.key"))


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"order": {"O"}, "amount_cents": 1}, "order: a set is not a JSON value"),
        ({"order": b"O", "amount_cents": 1}, "order: a bytes is not a JSON value"),
        ({"order": "O\ud800", "amount_cents": 1}, "order: string holds a lone surrogate at position 1"),
        ({1: "O", "amount_cents": 1}, "(root): key 1 is not a string"),
        ({"order": "O", "amount_cents": 10**30}, "amount_cents: integer 10"),
        ({"order": "O", "amount_cents": 10**5000}, "integer of 16,610 bits"),
        ({"order": "O", "amount_cents": float("nan")}, "amount_cents: nan is not a JSON number"),
        ({_Key.ORDER: "O", "amount_cents": 1}, "(root): Dict key must be str"),
    ],
    ids=["set", "bytes", "surrogate", "int-key", "huge-int", "5000-digits", "nan", "str-subclass-key"],
)
def test_arguments_with_no_json_form_are_refused_as_the_gateway_refuses_them(
    shop: Running, arguments: dict[Any, Any], named: str
) -> None:
    """ArgumentsInvalid naming the path, as in process; NaN is not sent as orjson's ``null``."""
    with agent_of(shop) as agent:
        error = refused(shop, ArgumentsInvalid, lambda: agent.submit("refund", arguments))
    assert (error.operation, named in str(error)) == ("refund", True), str(error)


def test_the_rest_of_an_intent_with_no_json_form_is_refused_before_it_is_sent(shop: Running) -> None:
    fine = {"order": "O-1", "amount_cents": 1}
    with agent_of(shop) as agent:
        for call, named in [
            (lambda: agent.submit("refund\ud800", fine), "operation: string holds a lone surrogate"),
            (lambda: agent.submit("refund", fine, idempotency_key="k\ud800"), "idempotency_key: string"),
            (lambda: agent.submit("refund", fine, causes="abc"), "not a str"),  # type: ignore[arg-type]
            (lambda: agent.halt("storm\ud800"), "reason: string holds a lone surrogate"),
        ]:
            assert named in str(refused(shop, RecordInvalid, call))


@pytest.mark.parametrize("bad_id", ["", ".", "..", "\ud800", "a\x00", "line\nbreak", None], ids=repr)
def test_an_id_no_entry_can_have_is_refused_before_anything_is_sent(
    shop: Running, held: dict[str, Any], bad_id: Any
) -> None:
    """An empty id came back as the service's 307 and was returned as if it were the intent; a
    lone surrogate or NUL raised UnicodeEncodeError or httpx.InvalidURL."""
    with agent_of(shop) as agent, reviewer_of(shop) as reviewer:
        for call in (
            lambda: agent.wait(bad_id, seconds=0.1),
            lambda: agent.receipt(bad_id),
            lambda: agent.why(bad_id),
            lambda: reviewer.answer(bad_id, "approve", "ok"),
        ):
            assert "nothing was sent" in str(refused(shop, RecordInvalid, call)) or bad_id is None
        assert reviewer.reviews()[0]["review_id"] == held["review_id"]  # still open


def test_an_id_is_one_path_segment_and_a_real_one_still_works(shop: Running, held: dict[str, Any]) -> None:
    """Unquoted, ``../reviews`` read the open reviews and ``a?b=c`` asked for entry ``a``."""
    with agent_of(shop) as agent:
        dotted = refused(shop, ServiceRefused, lambda: agent.wait("../reviews", seconds=0.1))
        assert dotted.status == 404
        queried = refused(shop, ServiceRefused, lambda: agent.why("a?b=c"))
        assert queried.status == 404
        assert "'a?b=c'" in str(queried), str(queried)
        slashed = refused(shop, ServiceRefused, lambda: agent.wait("x/y", seconds=0.1))
        assert slashed.status == 404
        assert agent.wait(held["intent_id"], seconds=0.1)["status"] == "review"
        assert agent.why(held["intent_id"])


def test_an_answer_that_is_not_2xx_json_is_a_refusal_a_redirect_included(shop: Running) -> None:
    """The service redirects ``/v1/intents/`` (a framework's 307, empty body): that is no answer."""
    with agent_of(shop) as agent:
        redirect = refused(shop, ServiceRefused, lambda: agent._call("GET", "/v1/intents/", wait=0.1))
    assert (redirect.status, redirect.reason_code) == (307, "not_json")
    assert "HTTP 307" in str(redirect)


def test_an_answer_or_resume_with_values_it_cannot_be_signed_with_is_refused_typed(
    shop: Running, held: dict[str, Any]
) -> None:
    review_id = held["review_id"]
    with reviewer_of(shop) as reviewer:
        no_reason: Any = None
        none_reason = refused(shop, ApprovalRefused, lambda: reviewer.answer(review_id, "approve", no_reason))
        assert none_reason.reason_code == "missing_reason"
        forever = refused(
            shop,
            ApprovalRefused,
            lambda: reviewer.answer(review_id, "approve", "ok", valid_for_seconds=10**20),
        )
        assert "one whole second to" in str(forever)
        refused(shop, RecordInvalid, lambda: reviewer.resume(None))  # type: ignore[arg-type]
        refused(shop, ConfigError, lambda: reviewer.resume("over", scope=None))  # type: ignore[arg-type]
        assert [r["review_id"] for r in reviewer.reviews()] == [review_id]  # nothing answered it


def test_a_service_url_no_request_can_be_made_from_is_refused_when_the_client_is_made(
    shop: Running,
) -> None:
    """Port 99999 raised ValueError on the first call; the message never shows credentials."""
    key = KeyPair.load(shop.folder / "agent.key")
    for url in (
        "http://user:hunter2@127.0.0.1:99999",
        "http://user:hunter2@[::1",
        "ftp://user:hunter2@127.0.0.1:8470",
        "http://127.0.0.1:8470/?token=hunter2",
        "127.0.0.1:8470",
    ):
        for make in (Client, AsyncClient):
            with pytest.raises(ConfigError) as bad:
                make(url, key)
            assert "hunter2" not in str(bad.value), str(bad.value)
            assert "\n" not in str(bad.value)


def test_a_closed_client_says_so(shop: Running) -> None:
    """It raised httpx's RuntimeError; now ClientClosed, an AnswerableError, and nothing is sent."""
    client = agent_of(shop)
    client.close()
    for call in (client.reviews, lambda: client.submit("refund", {"order": "O-9", "amount_cents": 1})):
        closed = refused(shop, AnswerableError, call)
        assert type(closed).__name__ == "ClientClosed", repr(closed)
        assert "closed" in str(closed)


async def test_the_async_client_refuses_the_same(shop: Running, held: dict[str, Any]) -> None:
    agent = AsyncClient(shop.url, KeyPair.load(shop.folder / "agent.key"))
    reviewer = AsyncClient(shop.url, KeyPair.load(shop.folder / "reviewer.key"))
    no_reason: Any = None
    before, done = ledger(shop), effects(shop)
    got: list[str] = []
    for call in (
        lambda: agent.submit("refund", {"order": {"O"}, "amount_cents": 1}),
        lambda: agent.wait("\ud800", seconds=0.1),
        lambda: agent.wait("", seconds=0.1),
        lambda: agent.wait("../reviews", seconds=0.1),
        lambda: agent.post("/v1/events", {"events": {1}}),
        lambda: agent.ingest([{"payload": float("nan")}]),
        lambda: reviewer.answer(held["review_id"], "approve", no_reason),
        lambda: reviewer.resume("over", scope=no_reason),
    ):
        try:
            await call()
        except Exception as exc:  # which one is what is checked
            got.append(type(exc).__name__)
        else:
            got.append("no error")
    await agent.aclose()
    try:
        await agent.reviews()
    except Exception as exc:
        got.append(type(exc).__name__)
    await reviewer.aclose()
    assert got == [
        "ArgumentsInvalid",
        "RecordInvalid",
        "RecordInvalid",
        "ServiceRefused",  # 404: no such path, not the reviews list
        "RecordInvalid",
        "RecordInvalid",
        "ApprovalRefused",
        "ConfigError",
        "ClientClosed",
    ]
    assert (ledger(shop), effects(shop)) == (before, done)
