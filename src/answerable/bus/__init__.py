"""Message transport between agents: one contract, one module per backend."""

from answerable.bus.base import Bus, Handler
from answerable.bus.memory import MemoryBus

__all__ = ["Bus", "Handler", "MemoryBus"]
