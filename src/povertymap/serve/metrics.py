"""Prometheus metrics of one service (its own registry, so several apps can coexist).

The names are a contract with the deploy issue's alerts; keep them exactly:
``povertymap_http_requests_total{route,method,status}``,
``povertymap_http_request_duration_seconds{route,method,status}`` (histogram),
``povertymap_http_requests_in_flight``, ``povertymap_model_info{map,version}`` (1 for the
version served), ``povertymap_model_loaded_timestamp_seconds{map}``,
``povertymap_model_swaps_total{map,outcome}``, ``povertymap_rate_limited_total{role}``,
``povertymap_audit_write_failures_total``, ``povertymap_ready`` (0 or 1);
``povertymap_registry_checks_total{map,outcome}`` (alias polls: unchanged, swapped,
failed); from the newest drift report of the model served (``povertymap monitor``):
``povertymap_drift_detected{map}`` (0 or 1), ``povertymap_drift_feature_share{map}``,
``povertymap_drift_feature_psi_max{map}``, ``povertymap_drift_prediction_psi{map}``,
``povertymap_drift_label_rmse_ratio{map}`` (when the report had labels),
``povertymap_drift_feedback_rmse_ratio{map}`` (when it had field feedback),
``povertymap_drift_report_timestamp_seconds{map}``.
"""

from __future__ import annotations

import contextlib
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]

#: Latency buckets (seconds): fine below 100 ms, where the targets are.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


#: Drift gauges: name suffix -> help (values from :meth:`ServiceMetrics.drift_reported`).
DRIFT_GAUGES = {
    "detected": "1 when the newest drift report of the model served flags drift.",
    "feature_share": "Share of features that drifted in the newest drift report.",
    "feature_psi_max": "Largest feature PSI in the newest drift report.",
    "prediction_psi": "PSI of the model's predictions in the newest drift report.",
    "label_rmse_ratio": "New-label RMSE over the cross-validated RMSE (reports with labels).",
    "feedback_rmse_ratio": "Field-feedback RMSE over the cross-validated RMSE (with feedback).",
    "report_timestamp_seconds": "When the newest drift report was written.",
}


class ServiceMetrics:
    """The service's collectors in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("route", "method", "status")
        self.requests = Counter(
            "povertymap_http_requests_total",
            "HTTP requests answered.",
            labels,
            registry=self.registry,
        )
        self.duration = Histogram(
            "povertymap_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            labels,
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "povertymap_http_requests_in_flight",
            "HTTP requests being answered.",
            registry=self.registry,
        )
        self.model_info = Gauge(
            "povertymap_model_info",
            "The model version each map serves (1).",
            ("map", "version"),
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "povertymap_model_loaded_timestamp_seconds",
            "When each map's version was loaded.",
            ("map",),
            registry=self.registry,
        )
        self.swaps = Counter(
            "povertymap_model_swaps_total",
            "Reloads by outcome (swapped, failed).",
            ("map", "outcome"),
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "povertymap_rate_limited_total",
            "Requests refused by the rate limit.",
            ("role",),
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "povertymap_audit_write_failures_total",
            "Audit rows that could not be written.",
            registry=self.registry,
        )
        self.ready = Gauge(
            "povertymap_ready",
            "1 when every map is loaded and passed its self-test.",
            registry=self.registry,
        )
        self.registry_checks = Counter(
            "povertymap_registry_checks_total",
            "Polls of the model registry alias by outcome (unchanged, swapped, failed).",
            ("map", "outcome"),
            registry=self.registry,
        )
        self.drift = {
            key: Gauge(f"povertymap_drift_{key}", text, ("map",), registry=self.registry)
            for key, text in DRIFT_GAUGES.items()
        }
        self._versions: dict[str, str] = {}
        self._lock = threading.Lock()

    def model_served(self, name: str, version: str, loaded_at: float) -> None:
        """Record that map ``name`` now serves ``version`` (the old label set is removed)."""
        with self._lock:
            old = self._versions.get(name)
            if old is not None and old != version:
                self.model_info.remove(name, old)
            self._versions[name] = version
        self.model_info.labels(name, version).set(1)
        self.model_loaded.labels(name).set(loaded_at)

    def drift_reported(self, name: str, figures: dict[str, float]) -> None:
        """Set map ``name``'s drift gauges to ``figures`` (keys of ``DRIFT_GAUGES``); a
        gauge without a figure is removed, so no stale value outlives its report."""
        for key, gauge in self.drift.items():
            if key in figures:
                gauge.labels(name).set(figures[key])
            else:
                with contextlib.suppress(KeyError):
                    gauge.remove(name)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
