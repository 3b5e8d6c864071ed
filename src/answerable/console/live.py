"""The live system as the console shows it: message rates, executions per class, open alerts.

Folded forward from the last ledger index seen, so a stream asking every half second reads only
what was appended since; the first call reads the ledger once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from typing import Any

import orjson

from answerable.clock import parse_rfc3339
from answerable.gateway import Gateway
from answerable.ledger.base import LedgerStore
from answerable.service import control_doc

__all__ = ["LiveView"]

_WINDOW_NS = 60 * 1_000_000_000
_ALERTS_KEPT = 50


class LiveView:
    """Running figures of one ledger, shared by every console stream."""

    def __init__(self, ledger: LedgerStore, gateway: Gateway) -> None:
        self.ledger = ledger
        self.gateway = gateway
        self._seen = 0
        self._messages: deque[tuple[int, str]] = deque()
        """(sent at, sender) of the messages of the last minute, oldest first."""
        self._executed: Counter[str] = Counter()
        self._intents = 0
        self._alerts: deque[dict[str, Any]] = deque(maxlen=_ALERTS_KEPT)
        self._lock = asyncio.Lock()

    async def state(self) -> dict[str, Any]:
        """The document of a ``state`` event: what the ledger says now."""
        async with self._lock:
            size = self.ledger.size()
            if size > self._seen:
                await asyncio.to_thread(self._fold, self._seen, size)
                self._seen = size
        now = time.time_ns()
        while self._messages and self._messages[0][0] < now - _WINDOW_NS:
            self._messages.popleft()
        rates = Counter(sender for _, sender in self._messages)
        gateway = self.gateway
        charter = gateway.charter if gateway.has_charter() else None
        names = sorted({*(a.name for a in charter.agents), *rates} if charter else rates)
        stops = gateway.control.state().stops
        in_force = {s.id for s in stops}
        return {
            "ledger_size": self._seen,
            "agents": [{"name": n, "messages_last_minute": rates.get(n, 0)} for n in names],
            "intents": self._intents,
            "executed": dict(sorted(self._executed.items())),
            "control": control_doc(gateway),
            # An alert is open while the pause it made is in force; one that paused nothing
            # stays listed (the latest fifty): nothing in the ledger closes it.
            "alerts": [a for a in self._alerts if a.get("control_id") is None or a["control_id"] in in_force],
            "reviews_open": len(gateway.reviews.open()),
        }

    def _fold(self, start: int, stop: int) -> None:
        operations = self.gateway.operations
        for first in range(start, stop, 1024):
            for stored in self.ledger.entries(first, min(first + 1024, stop)):
                if stored.kind == "Intent":  # proposed, whatever became of it
                    self._intents += 1
                if stored.kind not in ("Message", "Execution", "Alert"):
                    continue
                try:
                    record = orjson.loads(stored.data)
                except orjson.JSONDecodeError:
                    continue
                if stored.kind == "Message":
                    try:
                        at = parse_rfc3339(str(record.get("at", "")))
                    except ValueError:
                        continue
                    self._messages.append((at, str(record.get("sender", "?"))))
                elif stored.kind == "Execution" and record.get("status") == "succeeded":
                    name = str(record.get("operation", "?"))
                    op = operations.get(name)
                    self._executed[op.resource_class if op is not None else name] += 1
                elif stored.kind == "Alert":
                    self._alerts.append(
                        {
                            "id": stored.id,
                            "index": stored.index,
                            "at": record.get("at"),
                            "monitor": record.get("monitor"),
                            "invariant": record.get("invariant"),
                            "observed": record.get("observed"),
                            "paused": record.get("paused"),
                            "control_id": record.get("control_id"),
                            "escalated_to": record.get("escalated_to"),
                        }
                    )
        # Messages arrive in ledger order, not always in time order: keep the deque sorted.
        self._messages = deque(sorted(self._messages))
