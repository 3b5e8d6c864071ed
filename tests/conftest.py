"""Shared fixtures: a fresh ledger, people with keys, and a gateway governing a small world."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from backends import Backend, make_backend
from hypothesis import settings
from support import People, World, build_tlogcheck, make_gateway

from answerable import FakeClock, Gateway, KeyPair, SQLiteLedger

# Speed is measured in bench/, never in tests: no per-example deadline, so a busy CI machine
# cannot turn a slow example into a failure.
settings.register_profile("answerable", deadline=None)
settings.load_profile("answerable")


@pytest.fixture(scope="session", autouse=True)
def _ledger_keys_of_the_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Signing keys of ledgers made with no place given (a PostgreSQL ledger's default is the
    user's ~/.local/share) go to a folder of this run, and so do those of every child process:
    a test run never writes keys into the home of whoever runs it (found at the end of stop 47:
    fifteen keys there after make test and make soak)."""
    given = os.environ.get("ANSWERABLE_KEY_DIR")
    if given is None:
        os.environ["ANSWERABLE_KEY_DIR"] = str(tmp_path_factory.mktemp("ledger-keys"))
    yield
    if given is None:
        os.environ.pop("ANSWERABLE_KEY_DIR", None)


@pytest.fixture(scope="session")
def tlogcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go auditor of published tlog tiles (golang.org/x/mod/sumdb/tlog), built once."""
    return build_tlogcheck(tmp_path_factory.mktemp("tlogcheck"))


@pytest.fixture
def people() -> People:
    seeds = {name: bytes([i + 1]) * 32 for i, name in enumerate(["ri", "operator", "reviewer", "stranger"])}
    return People(
        ri=KeyPair.from_seed("ri@logistics.example", seeds["ri"]),
        operator=KeyPair.from_seed("ops@logistics.example", seeds["operator"]),
        reviewer=KeyPair.from_seed("reviewer@logistics.example", seeds["reviewer"]),
        stranger=KeyPair.from_seed("mallory@elsewhere.example", seeds["stranger"]),
    )


@pytest.fixture(params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    """Each ledger backend in turn: the contract tests run on both."""
    made = make_backend(request.param, tmp_path)
    monkeypatch.setenv("ANSWERABLE_KEY_DIR", str(made.key_dir))
    yield made
    made.close()


@pytest.fixture
def pg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """A PostgreSQL schema of the test's own (for what only a ledger on a server can do)."""
    made = make_backend("postgres", tmp_path)
    monkeypatch.setenv("ANSWERABLE_KEY_DIR", str(made.key_dir))
    yield made
    made.close()


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(ledger_path: Path) -> Iterator[SQLiteLedger]:
    store = SQLiteLedger.open(ledger_path, create=True, origin="test.example/ledger")
    yield store
    store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def gateway(
    ledger: SQLiteLedger, people: People, clock: FakeClock, world: World
) -> AsyncIterator[Gateway]:
    gw = await make_gateway(ledger, people, clock, world)
    yield gw
    gw.close()
