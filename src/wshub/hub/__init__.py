"""Local connections and fan-out. Knows nothing of brokers or Redis."""

from wshub.hub.hub import Hub

__all__ = ["Hub"]
