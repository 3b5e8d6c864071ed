"""One real ``answerable serve`` per test module for the framework adapters, served once per module.

The scaffolded shop governs ``refund``: up to 100 EUR runs, more waits for its reviewer, more
than 1000 EUR is refused. Tests share the service and keep apart by order and call id.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from served import Running, start

from answerable.scaffold import init


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("integrations") / "shop"
    init(folder)
    running = start(folder)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.stop(signal.SIGKILL)
