"""Metrics, called by intent (``metrics.connection_opened()``), Prometheus behind it.

Hot-path counts (messages and bytes each way, deliveries) are plain integers summed at
scrape time by a custom collector, so a fan-out to thousands of sockets pays an integer add,
not a lock per message. Messages and bytes are counted per connection by the transport and
read at scrape time through :meth:`Metrics.bind_traffic`. Everything else uses
prometheus-client's own types.

Labels never carry user ids, tokens or channel names: at most a namespace, a method name
from the application's own registry, a code or a reason slug, so cardinality stays bounded.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class FastHistogram:
    """A lock-free histogram for the event-loop thread only (one writer)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = _LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            acc += n
            out.append((repr(bound), acc))
        acc += self.counts[-1]
        out.append(("+Inf", acc))
        return out


class Traffic(Protocol):
    """Totals of WebSocket traffic (``transport.server.Totals``)."""

    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int


# Server API methods get their own label value; anything else is counted as "unknown".
API_METHODS = frozenset(
    {
        "publish",
        "broadcast",
        "subscribe",
        "unsubscribe",
        "disconnect",
        "refresh",
        "presence",
        "presence_stats",
        "history",
        "history_remove",
        "channels",
        "info",
        "batch",
    }
)


class Metrics:
    """All of wshub's metrics for one process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # Hot counters (exported by _HotCollector).
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.connections = 0
        self.publications = 0
        self.deliveries = 0
        self.delivery_latency = FastHistogram()
        self.handler_durations: dict[str, FastHistogram] = {}
        self.api_durations: dict[str, FastHistogram] = {}
        self.traffic: Callable[[], Traffic] | None = None
        r.register(_HotCollector(self))
        # Cold metrics. Children of the accept-path counters are cached per label value
        # (routes and close codes are small, fixed sets).
        self._connects_by_route: dict[str, Any] = {}
        self._disconnects_by_code: dict[int, Any] = {}
        self.connects = Counter(
            "wshub_connects", "Accepted WebSocket upgrades.", ["route"], registry=r
        )
        self.disconnects = Counter(
            "wshub_disconnects", "Closed connections by close code.", ["code"], registry=r
        )
        self.rejections = Counter(
            "wshub_middleware_rejections",
            "Upgrades refused before the 101, by reason.",
            ["reason", "status"],
            registry=r,
        )
        self.slow_consumers = Counter(
            "wshub_slow_consumer_disconnects", "Connections closed for not reading.", registry=r
        )
        self.dead_peers = Counter(
            "wshub_dead_peer_disconnects", "Connections closed for not answering pings.", registry=r
        )
        self.command_errors = Counter(
            "wshub_command_errors", "Error replies by protocol error code.", ["code"], registry=r
        )
        self.commands = Counter(
            "wshub_commands", "Client protocol commands by type.", ["command"], registry=r
        )
        self.subscriptions = Gauge("wshub_subscriptions", "Live client subscriptions.", registry=r)
        self.channels = Gauge("wshub_channels", "Channels with local subscribers.", registry=r)
        self.skipped_sends = Counter(
            "wshub_skipped_sends",
            "Deliveries skipped because the connection was closing.",
            registry=r,
        )
        self.broker_errors = Counter(
            "wshub_broker_errors", "Engine operation failures.", registry=r
        )
        self.broker_reconnects = Counter(
            "wshub_broker_reconnects",
            "Times the broker's subscription connection was lost and came back.",
            registry=r,
        )
        self.handler_errors = Counter(
            "wshub_handler_errors", "Handlers that raised, by hook.", ["hook"], registry=r
        )
        self.worker_rejections = Counter(
            "wshub_worker_rejections",
            "Handler calls refused because the pool queue was full.",
            registry=r,
        )
        self.api_requests = Counter(
            "wshub_api_requests",
            'Server API calls by method and outcome ("ok", an error code, or an HTTP status).',
            ["method", "outcome"],
            registry=r,
        )

    def bind_traffic(self, source: Callable[[], Traffic]) -> None:
        """Read messages and bytes in/out from ``source`` at scrape time."""
        self.traffic = source

    # -- intents ------------------------------------------------------------------------

    def connection_opened(self, route: str) -> None:
        self.connections += 1
        child = self._connects_by_route.get(route)
        if child is None:
            child = self._connects_by_route[route] = self.connects.labels(route)
        child.inc()

    def connection_closed(self, code: int) -> None:
        self.connections -= 1
        child = self._disconnects_by_code.get(code)
        if child is None:
            child = self._disconnects_by_code[code] = self.disconnects.labels(str(code))
        child.inc()

    def upgrade_rejected(self, reason: str, status: int) -> None:
        self.rejections.labels(reason, str(status)).inc()

    def slow_consumer(self) -> None:
        self.slow_consumers.inc()

    def dead_peer(self) -> None:
        self.dead_peers.inc()

    def broker_resynced(self) -> None:
        self.broker_reconnects.inc()

    def command(self, name: str) -> None:
        self.commands.labels(name).inc()

    def command_error(self, code: int) -> None:
        self.command_errors.labels(str(code)).inc()

    def handler_failed(self, hook: str) -> None:
        self.handler_errors.labels(hook).inc()

    def handler_duration(self, method: str, seconds: float) -> None:
        h = self.handler_durations.get(method)
        if h is None:
            if len(self.handler_durations) >= 1000:
                method = "_other"
                h = self.handler_durations.get(method)
            if h is None:
                h = self.handler_durations[method] = FastHistogram()
        h.observe(seconds)

    def api_call(self, method: str, outcome: str, seconds: float) -> None:
        """One server API call (a batch counts once, plus once per command inside it)."""
        if method not in API_METHODS:
            method = "unknown"
        self.api_requests.labels(method, outcome).inc()
        h = self.api_durations.get(method)
        if h is None:
            h = self.api_durations[method] = FastHistogram()
        h.observe(seconds)

    def publication_delivered(self, recipients: int, latency: float) -> None:
        self.publications += 1
        self.deliveries += recipients
        self.delivery_latency.observe(latency)


class _HotCollector(Collector):
    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        m = self.m
        yield GaugeMetricFamily(
            "wshub_connections", "Open WebSocket connections.", value=m.connections
        )
        t: Traffic = m if m.traffic is None else m.traffic()
        for name, doc, value in (
            ("wshub_messages_in", "WebSocket messages received.", t.messages_in),
            ("wshub_messages_out", "WebSocket messages sent.", t.messages_out),
            ("wshub_bytes_in", "Payload bytes received.", t.bytes_in),
            ("wshub_bytes_out", "Payload bytes sent.", t.bytes_out),
            ("wshub_publications", "Publications fanned out by this node.", m.publications),
            ("wshub_deliveries", "Publication frames handed to sockets.", m.deliveries),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield _hist(
            "wshub_delivery_latency_seconds",
            "Publication accepted to last frame handed to the socket.",
            [((), m.delivery_latency)],
        )
        yield _hist(
            "wshub_handler_duration_seconds",
            "Python handler duration by method.",
            [((k,), h) for k, h in m.handler_durations.items()],
            labels=["method"],
        )
        yield _hist(
            "wshub_api_duration_seconds",
            "Server API call duration by method.",
            [((k,), h) for k, h in m.api_durations.items()],
            labels=["method"],
        )


def _hist(
    name: str,
    doc: str,
    series: Iterable[tuple[tuple[str, ...], FastHistogram]],
    labels: list[str] | None = None,
) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=labels)
    for values, h in series:
        fam.add_metric(list(values), h.buckets(), h.sum)
    return fam
