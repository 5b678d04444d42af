"""Prometheus metrics of one server (``GET /metrics``), through prometheus-client.

Two kinds, chosen for cost:

* Per-event instruments (request count and latency, journal batches,
  snapshots) are prometheus-client ``Counter``/``Histogram`` objects. A
  request looks its labelled children up in a plain dict, so it pays two
  increments and a bucket search, not a ``labels()`` call.
* Everything that is a level or already counted elsewhere (parked waiters,
  channel actors and inbox depth, webhook outcomes and the outbox, keys
  minted) is read from the runtime only when ``/metrics`` is scraped, by
  :class:`_RuntimeCollector`: zero cost per request.

Each server has its own ``CollectorRegistry``, so several servers in one
process (tests) never share counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from backchannel.runtime.hub import Hub

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
SNAPSHOT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The registry and the per-event instruments; see the module docstring."""

    def __init__(self, hub: Hub) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "backchannel_requests",
            "HTTP requests answered, by route template, method and status.",
            ["method", "path", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "backchannel_request_duration_seconds",
            "Time from request to answer, by route template and method.",
            ["method", "path"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.fsync = Histogram(
            "backchannel_journal_fsync_seconds",
            "Time to write one journal batch and fsync it (per the fsync policy).",
            buckets=FSYNC_BUCKETS,
            registry=registry,
        )
        self.batch = Histogram(
            "backchannel_journal_batch_records",
            "Records per journal batch (group commit).",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.snapshot_seconds = Histogram(
            "backchannel_snapshot_duration_seconds",
            "Time to write one snapshot.",
            buckets=SNAPSHOT_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        registry.register(_RuntimeCollector(hub))

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count one answered request (called once per request: keep it cheap)."""
        key = (method, path, status)
        children = self._children.get(key)
        if children is None:
            if len(self._children) > 10_000:  # bounded even if a label ever runs away
                key = (method, "other", status)
                path = "other"
            children = self._children[key] = (
                self.requests.labels(method, path, str(status)),
                self.latency.labels(method, path),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_batch(self, records: int, seconds: float) -> None:
        self.batch.observe(records)
        self.fsync.observe(seconds)

    def observe_snapshot(self, seconds: float) -> None:
        self.snapshot_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RuntimeCollector(Collector):
    """Levels and counters read from the runtime at scrape time."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        actors = list(hub.passivation.running)  # a passive channel has no inbox, no waiter
        depths = [a.statistics().inbox_depth for a in actors]
        yield _gauge("backchannel_channel_actors", "Channel actor tasks.", len(actors))
        yield _gauge(
            "backchannel_passive_channels",
            "Channels kept in memory without an actor task (idle).",
            len(hub.actors) - len(actors),
        )
        yield _gauge(
            "backchannel_actor_inbox_depth",
            "Commands queued in channel actors' inboxes, in all.",
            sum(depths),
        )
        yield _gauge(
            "backchannel_actor_inbox_depth_max", "The deepest actor inbox.", max(depths, default=0)
        )
        yield _gauge(
            "backchannel_parked_waiters",
            "Long-poll waiters parked now.",
            sum(a.parked for a in actors),
        )
        journal = hub.journal.statistics()
        yield _gauge("backchannel_journal_queued", "Records not yet durable.", journal.queued)
        yield _gauge(
            "backchannel_journal_last_durable_seq", "Newest durable seq.", journal.last_durable_seq
        )
        snapshot = hub.last_snapshot
        if snapshot is not None:
            yield _gauge("backchannel_snapshot_bytes", "Size of the last snapshot.", snapshot.bytes)
        outbox = hub.world.outbox
        yield _gauge(
            "backchannel_webhook_pending", "Webhook deliveries pending.", len(outbox.pending)
        )
        deliveries = CounterMetricFamily(
            "backchannel_webhook_attempts",
            "Webhook delivery attempts since start, by outcome "
            "(refused attempts also count as failed or given_up).",
            labels=["outcome"],
        )
        outcomes = hub.sender.outcomes if hub.sender is not None else {}
        for outcome in ("delivered", "failed", "given_up", "refused"):
            deliveries.add_metric([outcome], outcomes.get(outcome, 0))
        deliveries.add_metric(["dropped"], hub.webhooks_dropped)
        yield deliveries
        yield CounterMetricFamily(
            "backchannel_key_mints", "API keys minted since start.", value=hub.keys_minted
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
