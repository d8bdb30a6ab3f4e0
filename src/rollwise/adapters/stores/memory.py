"""The ``memory://`` store. It needs no I/O, so it lives in the core (the simulator uses it too)."""

from rollwise.core.memory_store import MemoryStore

__all__ = ["MemoryStore"]
