"""Every metric the dashboard and the alert rules use is one the running service exports,
with the labels they select on; and each alert has its runbook in docs/operations.md.

The app is the real one (``create_app`` over a tiny run), driven through the paths that
create each labelled series: requests, a reload, a registry alias that cannot be resolved
(polls fail), and a drift report in ``POVERTYMAP_DRIFT_DIR`` read by the watcher.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("fastapi", reason="the service needs the `serve` extra")

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from povertymap.serve.app import create_app
from povertymap.serve.maps import load_map
from povertymap.serve.metrics import DRIFT_GAUGES
from povertymap.serve.settings import ServeSettings
from povertymap.serve.watch import ModelRef

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy/monitoring"
DASHBOARD = MONITORING / "grafana/dashboards/povertymap.json"
NAME = re.compile(r"\b(povertymap_[a-z0-9_]+)")
SELECTOR = re.compile(r"\b(povertymap_[a-z0-9_]+)\{([^}]*)\}")
#: Prometheus' own series the rules may use besides the service's.
BUILTIN = {"up"}


def _strings(node: Any, keys: set[str]) -> list[str]:
    """Every string under one of ``keys`` anywhere in a JSON document."""
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in keys and isinstance(v, str):
                out.append(v)
            else:
                out.extend(_strings(v, keys))
    elif isinstance(node, list):
        for v in node:
            out.extend(_strings(v, keys))
    return out


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return _strings(doc, {"expr", "query", "definition"})


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _exported(text: str) -> tuple[set[str], dict[str, set[str]], dict[tuple[str, str], float]]:
    """Names a scrape can return (samples, and the series names of declared families),
    the label names seen per sample name, and every sample's value by (name, labels)."""
    names: set[str] = set()
    labels: dict[str, set[str]] = {}
    values: dict[tuple[str, str], float] = {}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in suffixes.get(family.type, [""])}
        for sample in family.samples:
            names.add(sample.name)
            labels.setdefault(sample.name, set()).update(sample.labels)
            key = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[(sample.name, key)] = sample.value
    return names, labels, values


@pytest.fixture(scope="module")
def scrape(serve_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("mlflow", reason="the alias poll needs the `mlops` extra")
    tmp = tmp_path_factory.mktemp("metrics")
    loaded = load_map(serve_run)
    drift = tmp / "drift" / "round2"
    drift.mkdir(parents=True)
    figures = {
        "detected": 1.0,
        "feature_share": 0.25,
        "feature_psi_max": 3.5,
        "prediction_psi": 2.4,
        "label_rmse_ratio": 1.5,
        "feedback_rmse_ratio": 1.3,
    }
    written = time.time() - 3600
    # The report as `povertymap monitor` writes it (docs/lifecycle.md: model_run, written, gauges).
    (drift / "drift.json").write_text(
        json.dumps(
            {"drift": True, "model_run": loaded.run.run_id, "written": written, "gauges": figures}
        )
    )
    settings = ServeSettings(
        database_url=f"sqlite:///{tmp / 'service.db'}",
        log_requests=False,
        drift_dir=str(drift.parent),
        registry_poll_seconds=3600.0,
        rate_public=100_000.0,
        rate_analyst=100_000.0,
        rate_admin=100_000.0,
    )
    # An alias that cannot be resolved: every poll fails and is counted, the map serves on.
    ref = ModelRef(f"{loaded.name}-missing@champion", f"sqlite:///{tmp / 'mlflow.db'}", tmp)
    app = create_app(settings, [loaded], models={loaded.name: ref})
    admin = app.state.service.keys.create("admin", name="ops")[1]
    with TestClient(app, raise_server_exceptions=False) as client:  # lifespan: first poll
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert (
            client.get(f"/v1/maps/{loaded.name}/point", params={"lon": 0, "lat": 89}).status_code
            == 404
        )
        reload = client.post(
            f"/v1/admin/maps/{loaded.name}/reload", headers={"Authorization": f"Bearer {admin}"}
        )
        assert reload.status_code == 200, reload.text
        text = client.get("/metrics").text
    return {
        "text": text,
        "map": loaded.name,
        "version": loaded.version,
        "figures": figures,
        "written": written,
    }


def test_the_rules_and_dashboard_use_metrics_at_all() -> None:
    used_alerts = {n for rule in alert_rules() for n in NAME.findall(rule["expr"])}
    used_dash = {n for e in dashboard_exprs() for n in NAME.findall(e)}
    # The contract (src/povertymap/serve/metrics.py) is covered: every family appears.
    families = {
        "povertymap_http_requests_total",
        "povertymap_http_request_duration_seconds_bucket",
        "povertymap_http_requests_in_flight",
        "povertymap_model_info",
        "povertymap_model_loaded_timestamp_seconds",
        "povertymap_model_swaps_total",
        "povertymap_rate_limited_total",
        "povertymap_audit_write_failures_total",
        "povertymap_ready",
        "povertymap_registry_checks_total",
        *(f"povertymap_drift_{k}" for k in DRIFT_GAUGES),
    }
    assert used_dash == families
    assert len(used_alerts) == 9 and used_alerts <= families


@pytest.mark.slow
def test_every_metric_used_is_exported_with_its_labels(scrape: dict[str, Any]) -> None:
    names, labels, _ = _exported(scrape["text"])
    exprs = [r["expr"] for r in alert_rules()] + dashboard_exprs()
    used = {n for e in exprs for n in NAME.findall(e)}
    assert used - names == set()
    for expr in exprs:
        for metric, selector in SELECTOR.findall(expr):
            wanted = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*\"", selector))
            assert wanted, (metric, selector)
            # job and instance are added by the scrape, le is the histogram's.
            assert wanted <= labels[metric] | {"job", "instance"}, (metric, wanted)
    # Any other series a rule selects is Prometheus' own.
    others = {w for e in exprs for w in re.findall(r"\b([a-z_:]+)\{", e)} - used
    assert others <= BUILTIN, others


@pytest.mark.slow
def test_the_scrape_holds_the_values_of_what_happened(scrape: dict[str, Any]) -> None:
    _, _, values = _exported(scrape["text"])
    m, version = scrape["map"], scrape["version"]

    def value(name: str, **labels: str) -> float:
        return values[(name, ",".join(f"{k}={v}" for k, v in sorted(labels.items())))]

    get = {"method": "GET"}
    assert value("povertymap_http_requests_total", route="/healthz", status="200", **get) == 3
    assert (
        value(
            "povertymap_http_request_duration_seconds_count", route="/healthz", status="200", **get
        )
        == 3
    )
    assert (
        value("povertymap_http_requests_total", route="/v1/maps/{map}/point", status="404", **get)
        == 1
    )
    assert value("povertymap_http_requests_in_flight") == 1  # the scrape itself
    assert value("povertymap_ready") == 1
    assert value("povertymap_model_info", map=m, version=version) == 1
    assert value("povertymap_model_swaps_total", map=m, outcome="swapped") == 1
    assert value("povertymap_registry_checks_total", map=m, outcome="failed") == 1
    assert value("povertymap_audit_write_failures_total") == 0
    for key, figure in scrape["figures"].items():
        assert value(f"povertymap_drift_{key}", map=m) == pytest.approx(figure)
    assert value("povertymap_drift_report_timestamp_seconds", map=m) == pytest.approx(
        scrape["written"]
    )
    assert abs(value("povertymap_model_loaded_timestamp_seconds", map=m) - time.time()) < 600


def test_each_alert_has_a_runbook_section_and_the_dashboard_its_data_source() -> None:
    docs = (ROOT / "docs/operations.md").read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", docs, flags=re.M)
    }
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower() and anchor in headings, rule["alert"]
        assert rule["labels"]["severity"] in {"page", "warning", "info"}
    source = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = source["datasources"][0]["uid"]
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {uid}
    assert {t["datasource"]["uid"] for p in panels for t in p["targets"]} == {uid}
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
