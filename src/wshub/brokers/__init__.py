"""Engines behind small interfaces: Broker (pub/sub), HistoryStore, PresenceManager."""

from wshub.brokers.base import (
    Broker,
    BrokerEventHandler,
    ClientInfo,
    HistoryResult,
    HistoryStore,
    PresenceManager,
    PresenceStats,
    Publication,
    StreamPosition,
)

__all__ = [
    "Broker",
    "BrokerEventHandler",
    "ClientInfo",
    "HistoryResult",
    "HistoryStore",
    "PresenceManager",
    "PresenceStats",
    "Publication",
    "StreamPosition",
]
