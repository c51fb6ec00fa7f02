"""Keeping a running service in step with the model registry and the drift reports.

A map served as ``NAME@ALIAS`` (``povertymap serve --model demo@champion``) follows its
alias: every ``registry_poll_seconds`` the :class:`Watcher` asks the registry which
version holds the alias, and when that is not the version served it hot-swaps the run
directory of the new version in through :meth:`MapRegistry.reload` (loaded and
self-tested beside the old one; a failure leaves the old version serving). A rollback is
the same move backwards. Each poll is counted by outcome in
``povertymap_registry_checks_total{map,outcome}``.

With ``drift_dir`` set, the same pass reads the newest ``drift.json`` written by
``povertymap monitor`` for the model each map serves (matched on the run id) and sets the
``povertymap_drift_*`` gauges from it; a map with no report for its model has none, so a
swap never leaves the old model's drift standing for the new one.

Each worker process runs its own watcher (a daemon thread started with the app): a swap
reaches every worker within one poll interval.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from povertymap.serve.errors import log
from povertymap.serve.maps import MapRegistry
from povertymap.serve.metrics import DRIFT_GAUGES, ServiceMetrics

__all__ = ["ModelRef", "Watcher"]


@dataclass(frozen=True)
class ModelRef:
    """A map served from the registry: ``NAME@ALIAS`` in the store ``uri``, whose runs
    live under ``runs``."""

    ref: str
    uri: str
    runs: Path | None = None

    def resolve(self) -> tuple[str, Path]:
        """The version that ``ref`` names now and its run directory."""
        from povertymap.mlops.registry import served_run

        version, path = served_run(self.ref, uri=self.uri, runs=self.runs)
        return version.version, path


class Watcher:
    """Polls the registry aliases and drift reports of the maps served (module doc)."""

    def __init__(
        self,
        maps: MapRegistry,
        metrics: ServiceMetrics,
        *,
        models: Mapping[str, ModelRef] | None = None,
        drift_dir: Path | None = None,
        interval: float = 30.0,
    ) -> None:
        self.maps = maps
        self.metrics = metrics
        self.models = dict(models or {})
        self.drift_dir = drift_dir
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """Whether there is anything to watch."""
        return bool(self.models) or self.drift_dir is not None

    def check(self) -> dict[str, str]:
        """One pass: follow every alias, then refresh the drift gauges. Returns each
        registry map's outcome (``unchanged``, ``swapped`` or ``failed``)."""
        outcomes = {name: self._follow(name, ref) for name, ref in self.models.items()}
        if self.drift_dir is not None:
            self._refresh_drift(self.drift_dir)
        return outcomes

    def _follow(self, name: str, ref: ModelRef) -> str:
        try:
            _, path = ref.resolve()
            served = self.maps.get(name).run.path.resolve()
            if path.resolve() == served:
                outcome = "unchanged"
            else:
                self.maps.reload(name, path)
                outcome = "swapped"
                log.info("map %s now serves %s from %s", name, ref.ref, path)
        except Exception as exc:  # the old version keeps serving; the next poll retries
            outcome = "failed"
            log.warning("map %s: following %s failed (%s)", name, ref.ref, type(exc).__name__)
        self.metrics.registry_checks.labels(name, outcome).inc()
        return outcome

    def _refresh_drift(self, folder: Path) -> None:
        from povertymap.io.artifacts import read_json
        from povertymap.io.mlops_files import drift_report_files

        newest: dict[str, dict[str, Any]] = {}
        for path in drift_report_files(folder):
            try:
                doc = read_json(path)
                run_id, written = str(doc["model_run"]), float(doc["written"])
            except Exception as exc:  # one bad report must not hide the others
                log.warning("drift report %s unreadable (%s)", path, type(exc).__name__)
                continue
            if written >= float(newest.get(run_id, {}).get("written", -1.0)):
                newest[run_id] = doc
        for m in self.maps.all():
            report = newest.get(m.run.run_id)
            figures: dict[str, float] = {}
            if report is not None:
                gauges = report.get("gauges", {})
                figures = {k: float(gauges[k]) for k in DRIFT_GAUGES if k in gauges}
                figures["report_timestamp_seconds"] = float(report["written"])
            self.metrics.drift_reported(m.name, figures)

    def start(self) -> None:
        """Check once now, then every ``interval`` seconds in a daemon thread."""
        if not self.active or self._thread is not None:
            return
        self.check()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="povertymap-watch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def stop(self) -> None:
        """Stop the thread (waits for a pass in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
