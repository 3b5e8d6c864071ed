"""Fixtures for the ledger tests: a path, ids on a fake clock, and a fresh ledger there.

A test module may set ``ORIGIN`` to name its ledger's origin.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from answerable import FakeClock, SQLiteLedger
from answerable.clock import IdSource


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ids() -> IdSource:
    return IdSource(FakeClock())


@pytest.fixture
def store(path: Path, request: pytest.FixtureRequest) -> Iterator[SQLiteLedger]:
    with SQLiteLedger.open(
        path, create=True, origin=getattr(request.module, "ORIGIN", "test.example/ledger")
    ) as ledger:
        yield ledger
