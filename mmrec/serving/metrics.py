"""Prometheus metrics of one replica, in a private registry (Ray uses the default one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the route)

_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("mmrec_http_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.latency = Histogram("mmrec_http_request_seconds", "Request latency by route",
                                 ["route"], buckets=_BUCKETS, registry=r)
        self.rejected = Counter("mmrec_rejected", "Requests refused by a guard", ["reason"],
                                registry=r)
        self.inflight = Gauge("mmrec_inflight", "Requests computing now", registry=r)
        self.outfits = Counter("mmrec_outfits", "Outfits returned", registry=r)
        self.reloads = Counter("mmrec_reloads", "Artifact reloads by outcome", ["outcome"], registry=r)
        self.cache = Counter("mmrec_response_cache", "JSON recommend answers by cache result",
                             ["result"], registry=r)
        self.impressions = Counter("mmrec_impressions", "Recommend answers written to the impression log",
                                   registry=r)
        self.impressions_dropped = Counter(
            "mmrec_impressions_dropped", "Impressions not logged (queue full or write failed)", registry=r)
        self.events = Counter("mmrec_events", "Events received by outcome", ["status"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
