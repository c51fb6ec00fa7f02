"""scripts/render_kustomize.py renders deploy/k8s as kustomize would, and the rendered
objects keep the security and wiring the manifests promise, in the base and each overlay."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
spec = importlib.util.spec_from_file_location(
    "render_kustomize", ROOT / "scripts/render_kustomize.py"
)
assert spec and spec.loader
rk = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rk)

K8S = DEPLOY / "k8s"
BUILDS = {"base": K8S / "base", "dev": K8S / "overlays/dev", "prod": K8S / "overlays/prod"}
KINDS = [
    "ConfigMap",
    "PersistentVolumeClaim",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Job",
    "CronJob",
    "CronJob",
]


def _by(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(hits) == 1, (kind, name, [o["metadata"]["name"] for o in objs])
    return hits[0]


def _pod_specs(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            out.append((o["metadata"]["name"], o["spec"]["template"]["spec"]))
        elif o["kind"] == "CronJob":
            out.append(
                (o["metadata"]["name"], o["spec"]["jobTemplate"]["spec"]["template"]["spec"])
            )
    return out


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_every_build_has_the_objects_and_hardened_pods(build: str) -> None:
    objs = rk.render(BUILDS[build])
    assert [o["kind"] for o in objs] == KINDS
    specs = _pod_specs(objs)
    assert len(specs) == 4  # the service, the run Job, the monitor and retrain CronJobs
    for name, pod in specs:
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001, name
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"] == {"drop": ["ALL"]}, name
        # With a read-only root, the only writable paths are the runs volume and /tmp.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts == {"/data": "runs", "/tmp": "tmp"}, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        claim = volumes["runs"]["persistentVolumeClaim"]["claimName"]
        assert claim == _by(objs, "PersistentVolumeClaim")["metadata"]["name"], name
        assert "emptyDir" in volumes["tmp"], name
        assert container["resources"]["requests"]["cpu"], name
        assert container["resources"]["limits"]["memory"], name
        for env in container.get("env", []):
            ref = env["valueFrom"]["configMapKeyRef"]
            assert ref["name"] == _by(objs, "ConfigMap")["metadata"]["name"], name
            assert ref["key"] in _by(objs, "ConfigMap")["data"], name


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_probes_selectors_and_the_autoscaler_target_agree(build: str) -> None:
    objs = rk.render(BUILDS[build])
    deployment = _by(objs, "Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["args"][container["args"].index("--port") + 1] == "8000"
    labels = pod["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert _by(objs, "Service")["spec"]["selector"] == selector
    assert _by(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    assert _by(objs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"] == selector
    for constraint in pod["spec"]["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == selector
    target = _by(objs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"]  # the HPA owns the count


def test_dev_overlay_prefixes_names_and_renames_only_references_it_owns() -> None:
    objs = rk.render(BUILDS["dev"])
    assert {o["metadata"]["namespace"] for o in objs} == {"povertymap-dev"}
    assert all(o["metadata"]["name"].startswith("dev-povertymap") for o in objs)
    assert all(o["metadata"]["labels"]["app.kubernetes.io/instance"] == "dev" for o in objs)
    (container,) = _by(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "localhost:5000/povertymap:dev"
    assert container["envFrom"] == [
        {"configMapRef": {"name": "dev-povertymap-config"}},
        # The Secret is not part of the build (created out of band): its name is kept.
        {"secretRef": {"name": "povertymap-secrets", "optional": True}},
    ]
    assert container["imagePullPolicy"] == "Always"
    # The patch changed requests and kept the base's limits and probes (strategic merge).
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "768Mi"},
        "limits": {"memory": "2Gi"},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert (
        _by(objs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "dev-povertymap"
    )
    pdb = _by(objs, "PodDisruptionBudget")["spec"]
    assert "minAvailable" not in pdb and pdb["maxUnavailable"] == 1
    assert _by(objs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
    config = _by(objs, "ConfigMap")["data"]
    assert config["POVERTYMAP_DATABASE_URL"] == "sqlite:////data/povertymap-service.db"
    assert config["POVERTYMAP_REQUIRE_KEY"] == "false"
    assert all(o["spec"]["suspend"] is True for o in objs if o["kind"] == "CronJob")


def test_prod_overlay_sets_image_scale_and_strict_zone_spread() -> None:
    objs = rk.render(BUILDS["prod"])
    assert {o["metadata"]["namespace"] for o in objs} == {"povertymap"}
    images = {c["image"] for _, pod in _pod_specs(objs) for c in pod["containers"]}
    assert images == {"registry.example.org/povertymap/povertymap:0.1.0"}
    hpa = _by(objs, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    pod = _by(objs, "Deployment")["spec"]["template"]["spec"]
    spread = {c["topologyKey"]: c["whenUnsatisfiable"] for c in pod["topologySpreadConstraints"]}
    assert spread == {
        "topology.kubernetes.io/zone": "DoNotSchedule",
        "kubernetes.io/hostname": "ScheduleAnyway",
    }
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert "POVERTYMAP_DATABASE_URL" not in _by(objs, "ConfigMap")["data"]  # from the Secret


def test_config_map_names_only_real_settings() -> None:
    """A POVERTYMAP_* key the service does not read would be a silent typo."""
    settings = pytest.importorskip("povertymap.serve.settings")
    fields = set(settings.ServeSettings.model_fields)
    # Read by the CLI and the jobs, not by ServeSettings.
    others = {"POVERTYMAP_MODEL", "POVERTYMAP_TRACKING_URI", "POVERTYMAP_STUDY"}
    for build in BUILDS.values():
        data = _by(rk.render(build), "ConfigMap")["data"]
        for key in data:
            if key.startswith("POVERTYMAP_") and key not in others:
                assert key.removeprefix("POVERTYMAP_").lower() in fields, key
    secret = rk._load_docs(K8S / "base/secret.template.yaml")[0]
    assert set(secret["stringData"]) == {"POVERTYMAP_DATABASE_URL"}
    assert "CHANGE-ME" in secret["stringData"]["POVERTYMAP_DATABASE_URL"]


def test_strategic_merge_rules() -> None:
    base = {
        "a": 1,
        "drop": 2,
        "containers": [{"name": "x", "image": "i", "env": [{"name": "A", "value": "1"}]}],
        "args": ["one", "two"],
    }
    patch = {
        "drop": None,
        "containers": [
            {"name": "x", "env": [{"name": "B", "value": "2"}]},
            {"name": "y", "image": "j"},
        ],
        "args": ["three"],
    }
    assert rk.strategic_merge(base, patch) == {
        "a": 1,
        "containers": [
            {
                "name": "x",
                "image": "i",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            },
            {"name": "y", "image": "j"},
        ],
        "args": ["three"],  # a list without a merge key is replaced
    }
    assert base["drop"] == 2  # inputs unchanged


def test_refuses_what_it_cannot_render(tmp_path: Path) -> None:
    (tmp_path / "k").mkdir()
    (tmp_path / "k/kustomization.yaml").write_text("configMapGenerator: [{name: x}]\n")
    with pytest.raises(rk.KustomizeError, match="unsupported fields \\['configMapGenerator'\\]"):
        rk.render(tmp_path / "k")
    (tmp_path / "k/kustomization.yaml").write_text(
        "resources: [cm.yaml]\npatches: [{path: p.yaml}]\n"
    )
    (tmp_path / "k/cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "k/p.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    with pytest.raises(rk.KustomizeError, match="no ConfigMap named 'b'"):
        rk.render(tmp_path / "k")
    assert rk.main([str(tmp_path / "k")]) == 2
