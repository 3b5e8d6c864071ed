"""Fixtures of the console tests: a service with a ``[console]`` table (see ``consoled``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from consoled import Console, serve_console


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """One service for a module's tests (each log-in is its own session)."""
    yield from serve_console(tmp_path_factory.mktemp("console") / "shop")


@pytest.fixture
def own_console(tmp_path: Path) -> Iterator[Console]:
    """A service of the test's own: for a test that changes who may log in."""
    yield from serve_console(tmp_path / "shop")
