"""Prometheus metrics (GET /metrics): DMR-native counters and histograms per model, plus the engines'
live state (slots busy, queue depth, KV usage, cached and speculative tokens) and the backend registry's,
read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_LAT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TPS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class _EngineCollector(Collector):
    def __init__(self, source: Callable[[], list[tuple[str, dict[str, Any], int]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        loaded = GaugeMetricFamily("dmr_models_loaded", "Models resident in memory")
        mem = GaugeMetricFamily(
            "dmr_model_memory_bytes", "Estimated memory of a resident model", labels=["model"]
        )
        gauges = {
            k: GaugeMetricFamily(f"dmr_{k}", h, labels=["model"])
            for k, h in (
                ("slots_busy", "Sequences being generated"),
                ("slots_total", "Parallel sequence slots"),
                ("queue_depth", "Requests waiting for a slot"),
                ("kv_cells_used", "KV cache cells in use"),
                ("kv_cells_total", "KV cache cells"),
                ("kv_usage_ratio", "KV cache cells used / total"),
            )
        }
        counters = {
            k: CounterMetricFamily(f"dmr_engine_{k}", h, labels=["model"])
            for k, h in (
                ("prompt_tokens", "Prompt tokens submitted"),
                ("cached_tokens", "Prompt tokens reused from the cache"),
                ("generated_tokens", "Tokens generated"),
                ("drafted", "Speculative tokens drafted"),
                ("accepted", "Speculative tokens accepted"),
                ("steps", "llama_decode calls (one per batched step)"),
                ("decode_seconds", "Seconds spent inside llama_decode"),
            )
        }
        accept = GaugeMetricFamily(
            "dmr_speculative_acceptance_ratio", "Accepted / drafted tokens", labels=["model"]
        )
        rows = self._source()
        loaded.add_metric([], len(rows))
        for model, stats, estimate in rows:
            mem.add_metric([model], estimate)
            for k, g in gauges.items():
                if k == "kv_usage_ratio":
                    total = stats.get("kv_cells_total") or 0
                    g.add_metric([model], (stats.get("kv_cells_used", 0) / total) if total else 0.0)
                else:
                    g.add_metric([model], float(stats.get(k, 0)))
            for k, c in counters.items():
                c.add_metric([model], float(stats.get(k, 0)))
            drafted = stats.get("drafted", 0)
            accept.add_metric([model], (stats.get("accepted", 0) / drafted) if drafted else 0.0)
        yield loaded
        yield mem
        yield from gauges.values()
        yield from counters.values()
        yield accept


class _BackendCollector(Collector):
    """One row per registered backend (scheduling/backends.py): installed or not, and its resident models."""

    def __init__(self, source: Callable[[], list[tuple[str, bool, int]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        installed = GaugeMetricFamily(
            "dmr_backend_installed", "1 when the backend can run models here", labels=["backend"]
        )
        loaded = GaugeMetricFamily(
            "dmr_backend_models_loaded", "Models resident per backend", labels=["backend"]
        )
        for name, is_installed, n in self._source():
            installed.add_metric([name], 1.0 if is_installed else 0.0)
            loaded.add_metric([name], float(n))
        yield installed
        yield loaded


class Metrics:
    def __init__(
        self,
        engine_source: Callable[[], list[tuple[str, dict[str, Any], int]]],
        backend_source: Callable[[], list[tuple[str, bool, int]]] = list,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "dmr_requests",
            "HTTP requests on the inference routes",
            ["model", "endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "dmr_request_duration_seconds",
            "Request latency (to the last byte)",
            ["model", "endpoint"],
            buckets=_LAT_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "dmr_time_to_first_token_seconds",
            "Time to first token",
            ["model"],
            buckets=_LAT_BUCKETS,
            registry=r,
        )
        self.tps = Histogram(
            "dmr_generation_tokens_per_second",
            "Decode speed per request",
            ["model"],
            buckets=_TPS_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("dmr_prompt_tokens", "Prompt tokens", ["model"], registry=r)
        self.completion_tokens = Counter("dmr_completion_tokens", "Completion tokens", ["model"], registry=r)
        self.cached_tokens = Counter(
            "dmr_cached_prompt_tokens", "Prompt tokens served from the KV cache", ["model"], registry=r
        )
        self.waiting = Gauge(
            "dmr_requests_waiting", "Requests waiting for their model to load", ["model"], registry=r
        )
        self.loads = Counter("dmr_model_loads", "Model loads", ["model"], registry=r)
        self.evictions = Counter("dmr_model_evictions", "Idle models evicted to make room", registry=r)
        r.register(_EngineCollector(engine_source))
        r.register(_BackendCollector(backend_source))

    def render(self) -> bytes:
        return generate_latest(self.registry)
