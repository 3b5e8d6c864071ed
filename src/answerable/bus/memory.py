"""The in-process bus: deterministic FIFO delivery, the embedded default."""

from __future__ import annotations

from collections import deque

from answerable.bus.base import Handler
from answerable.records import ExternalEvent, Message

__all__ = ["MemoryBus"]


class MemoryBus:
    """Delivers in publish order, one record at a time, to subscribers in subscription order.

    One order for a given sequence of publishes is what makes a seeded run reproducible: the
    same seed gives the same messages, in the same order, with the same causes.
    """

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Handler]] = {}
        self._queue: deque[tuple[str, Message | ExternalEvent]] = deque()
        self.delivered = 0

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._subscribers.setdefault(topic, []).append(handler)

    async def publish(self, topic: str, record: Message | ExternalEvent) -> None:
        self._queue.append((topic, record))

    async def drain(self) -> None:
        while self._queue:
            topic, record = self._queue.popleft()
            for handler in self._subscribers.get(topic, ()):
                await handler(record)
                self.delivered += 1
