"""Prometheus metrics, one registry per app, fed by the ledger rows as they are written."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from codey.gateway.ledger import LedgerRow

# From a cache hit (milliseconds) to a long generation (a minute or two) on a CPU.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "codey_requests",
            "Requests by service, dialect, HTTP status and cache result.",
            ["service", "dialect", "status", "cache"],
            registry=r,
        )
        self.batch_lines = Counter(
            "codey_batch_lines",
            "Batch job lines by service, HTTP status and cache result (apart from requests).",
            ["service", "status", "cache"],
            registry=r,
        )
        self.latency = Histogram(
            "codey_request_duration_seconds",
            "Time from arrival to answer.",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "codey_prompt_tokens", "Prompt tokens sent to the engine.", ["service"], registry=r
        )
        self.completion_tokens = Counter(
            "codey_completion_tokens", "Tokens generated.", ["service"], registry=r
        )
        self.cost = Counter("codey_cost_dollars", "Estimated cost.", ["service"], registry=r)
        self.quota_used = Gauge(
            "codey_quota_used_requests",
            "Requests counted against today's quota.",
            ["service", "principal"],
            registry=r,
        )
        self.quota_remaining = Gauge(
            "codey_quota_remaining_requests",
            "Requests left in today's quota.",
            ["service", "principal"],
            registry=r,
        )
        self.backend_errors = Counter(
            "codey_backend_errors",
            "Failures inside codey or its backend, by kind.",
            ["kind"],
            registry=r,
        )
        self.attempts = Counter(
            "codey_upstream_attempts",
            "Calls to deployments, retries and failovers included, by outcome.",
            ["model", "deployment", "outcome"],
            registry=r,
        )
        self.outstanding = Gauge(
            "codey_upstream_outstanding",
            "Requests in flight per deployment.",
            ["deployment"],
            registry=r,
        )
        self.breaker_open = Gauge(
            "codey_upstream_breaker_open",
            "1 while a deployment's circuit breaker is open or half-open.",
            ["deployment"],
            registry=r,
        )
        # one engine process per embedded model, so each engine series names its model
        self.queue_depth = Gauge(
            "codey_engine_queue_depth", "Engine jobs queued or running.", ["model"], registry=r
        )
        self.decode_rate = Gauge(
            "codey_engine_decode_tokens_per_second",
            "Decode speed of the last answer.",
            ["model"],
            registry=r,
        )
        self.engine_up = Gauge(
            "codey_engine_up",
            "1 while the engine process is ready, else 0.",
            ["model"],
            registry=r,
        )
        self.engine_restarts = Counter(
            "codey_engine_restarts",
            "Times the engine process was started again after it died.",
            ["model"],
            registry=r,
        )
        self._batching = _BatchingCollector()
        r.register(self._batching)

    def watch_deployment(
        self, name: str, outstanding: Callable[[], float], breaker_open: Callable[[], float]
    ) -> None:
        self.outstanding.labels(name).set_function(outstanding)
        self.breaker_open.labels(name).set_function(breaker_open)

    def attempt(self, model: str, deployment: str, outcome: str) -> None:
        self.attempts.labels(model, deployment, outcome).inc()

    def watch_engine(
        self,
        model: str,
        depth: Callable[[], float],
        rate: Callable[[], float],
        up: Callable[[], float],
        batching: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.queue_depth.labels(model).set_function(depth)
        self.decode_rate.labels(model).set_function(rate)
        self.engine_up.labels(model).set_function(up)
        if batching is not None:
            self._batching.engines[model] = batching

    def observe(self, row: LedgerRow, kind: str | None = None) -> None:
        """A request's ledger row in the metrics; a batch line's apart from the requests, and
        without its latency (it waits behind interactive requests by design)."""
        cache = "hit" if row.cached else "miss"
        if row.batch:
            self.batch_lines.labels(row.service, str(row.status), cache).inc()
        else:
            self.requests.labels(row.service, row.dialect, str(row.status), cache).inc()
            self.latency.labels(row.service).observe(row.latency_ms / 1000)
        self.prompt_tokens.labels(row.service).inc(row.prompt_tokens)
        self.completion_tokens.labels(row.service).inc(row.completion_tokens)
        self.cost.labels(row.service).inc(row.cost_usd)
        if row.status >= 499 and kind:
            self.backend_errors.labels(kind).inc()

    def quota(self, service: str, principal: str, used: int, limit: int | None) -> None:
        self.quota_used.labels(service, principal).set(used)
        if limit is not None:
            self.quota_remaining.labels(service, principal).set(max(limit - used, 0))


class _BatchingCollector(Collector):
    """The engine's batcher counters, read at each scrape (they restart with the engine)."""

    GAUGES = (
        ("active", "codey_engine_active_sequences", "Requests holding a slot."),
        ("waiting", "codey_engine_waiting_requests", "Requests waiting for a slot."),
        ("kv_cells", "codey_engine_kv_cells_used", "KV cache cells the slots hold."),
        ("slots", "codey_engine_slots", "Sequences the engine can decode together."),
    )
    COUNTERS = (
        ("steps", "codey_engine_steps", "llama_decode steps."),
        (
            "step_tokens",
            "codey_engine_step_tokens",
            "Tokens over all steps; over codey_engine_steps_total, the batch size per step.",
        ),
        ("decoded", "codey_engine_decoded_tokens", "Answer tokens sampled."),
        ("prefilled", "codey_engine_prefilled_tokens", "Prompt tokens read."),
        ("slot_hits", "codey_engine_slot_hits", "Requests that found part of their prompt cached."),
        ("reused", "codey_engine_reused_prompt_tokens", "Prompt tokens taken from the cache."),
        ("drafted", "codey_engine_drafted_tokens", "Tokens guessed by prompt lookup and checked."),
        ("accepted", "codey_engine_accepted_draft_tokens", "Guessed tokens the model agreed with."),
        (
            "decode_seconds",
            "codey_engine_decode_seconds",
            "Seconds spent in llama_decode; its rate is the share of the time the engine computes.",
        ),
    )

    def __init__(self) -> None:
        self.engines: dict[str, Callable[[], Mapping[str, Any]]] = {}
        """Each embedded model's batcher counters."""

    def collect(self) -> Iterator[Metric]:
        if not self.engines:
            return
        stats = {model: read() for model, read in self.engines.items()}
        for kind, table in ((GaugeMetricFamily, self.GAUGES), (CounterMetricFamily, self.COUNTERS)):
            for key, name, doc in table:
                family = kind(name, doc, labels=["model"])
                for model, values in stats.items():
                    family.add_metric([model], float(values.get(key, 0)))
                yield family
