"""Work gathered over one turn of the event loop and done in one call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["PerTurn"]

In = TypeVar("In")
Out = TypeVar("Out")


class PerTurn(Generic[In, Out]):
    """Calls ``work`` once per event-loop turn with every item submitted during that turn.

    Concurrent callers that each await one item pay for one call between them: the ledger's
    group commit does the same for appends. A lone caller waits one extra turn of the loop,
    a few microseconds. ``work`` must return one result per item, in order; if it raises, every
    caller of that turn gets the exception, and none is left waiting.

    Every caller waits for the end of the turn, even one that seems alone: deciding a lone
    caller at once would let it reach the ledger a turn ahead of the callers started after it
    in the same turn, and the order of entries would then hang on thread timing instead of on
    the order the tasks ran in (a seeded run must write the same ledger twice).
    """

    __slots__ = ("_pending", "_work")

    def __init__(self, work: Callable[[Sequence[In]], Sequence[Out]]) -> None:
        self._work = work
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[In, asyncio.Future[Out]]]] = {}

    async def __call__(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        batch = self._pending.get(loop)
        if batch is None:
            batch = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        future: asyncio.Future[Out] = loop.create_future()
        batch.append((item, future))
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        try:
            results = self._work([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} items")
        except Exception as exc:  # handed to every caller of the turn, never dropped
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a caller cancelled while waiting
                future.set_result(result)
