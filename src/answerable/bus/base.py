"""The bus contract: publish recorded messages by topic, deliver them to subscribers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from answerable.records import ExternalEvent, Message

__all__ = ["Bus", "Handler"]

Handler = Callable[[Message | ExternalEvent], Awaitable[None]]


class Bus(Protocol):
    """Delivers each published record to every handler subscribed to its topic.

    Records are in the ledger before they are published, so a bus never holds the only copy
    of anything: a lost delivery can be found and replayed from the ledger.
    """

    def subscribe(self, topic: str, handler: Handler) -> None: ...

    async def publish(self, topic: str, record: Message | ExternalEvent) -> None: ...

    async def drain(self) -> None:
        """Return once every published record has been delivered, including ones published meanwhile."""
        ...
