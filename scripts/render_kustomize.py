#!/usr/bin/env python3
"""Render a kustomization offline: the subset of kustomize that deploy/k8s uses.

There is no kubectl or kustomize binary here, and no pip package renders kustomize
without one, so ``make deploy-check`` renders the base and each overlay with this script
and validates the output with ``kubernetes-validate --strict``.

    python scripts/render_kustomize.py deploy/k8s/overlays/prod            # YAML on stdout
    python scripts/render_kustomize.py deploy/k8s/overlays/dev -o out.yaml

Supported fields, with kustomize's semantics (anything else is refused, so a field the
renderer would silently skip can never reach the manifests):

- ``resources``: files (one or more YAML documents) and kustomization folders, in order;
- ``patches``: ``path`` to a strategic-merge patch (one or more documents), each applied
  to the object of its kind and ``metadata.name`` (or to ``target: {kind, name}``). Maps
  merge recursively, ``null`` deletes a key, lists of objects merge by their Kubernetes
  merge key (``name`` for containers, env, volumes; ``containerPort`` for ports;
  ``mountPath`` for volume mounts; ``topologyKey`` for spread constraints), other lists
  are replaced, as the API server's strategic merge does;
- ``namespace``: set on every namespaced object;
- ``namePrefix`` / ``nameSuffix``: on every object's name, and on the references to
  objects of this build (ConfigMap and Secret refs in env, envFrom and volumes, PVC claim
  names, the HPA's scale target); references to objects outside the build (a Secret
  created out of band) keep their name, as in kustomize;
- ``labels`` (``pairs``, ``includeTemplates``, ``includeSelectors``) and the deprecated
  ``commonLabels`` (both flags on): on every object's labels, pod templates and, with
  selectors, workload, Service, PodDisruptionBudget and NetworkPolicy pod selectors;
- ``images``: ``name`` -> ``newName``, ``newTag``, ``digest`` in every container and
  init container.

Per kustomization the order is kustomize's: resources, patches, namespace, name
prefix/suffix, labels, images; an overlay's transformations apply to its base's output.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["KustomizeError", "render", "strategic_merge"]

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "patches",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "labels",
    "commonLabels",
    "images",
}
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
}
#: Strategic-merge keys of the lists deploy/k8s patches (from the Kubernetes API types).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "topologySpreadConstraints": "topologyKey",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render faithfully."""


Obj = dict[str, Any]


def _load_docs(path: Path) -> list[Obj]:
    with path.open(encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise KustomizeError(f"{path}: every document needs kind and metadata")
    return docs


def _kustomization(folder: Path) -> tuple[Path, Obj]:
    for name in KUSTOMIZATION_FILES:
        path = folder / name
        if path.is_file():
            with path.open(encoding="utf-8") as f:
                k = yaml.safe_load(f) or {}
            unknown = sorted(set(k) - SUPPORTED)
            if unknown:
                raise KustomizeError(
                    f"{path}: unsupported fields {unknown}; this renderer knows "
                    f"{sorted(SUPPORTED)} (extend scripts/render_kustomize.py, or use kustomize)"
                )
            return path, k
    raise KustomizeError(f"{folder}: no kustomization.yaml")


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """``patch`` merged into ``base`` (both left unchanged) by the rules of the module
    docstring."""
    if isinstance(patch, dict) and isinstance(base, dict):
        out = dict(base)
        for key, value in patch.items():
            if isinstance(key, str) and key.startswith("$"):
                raise KustomizeError(f"patch directive {key!r} is not supported")
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and isinstance(base, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        if all(isinstance(x, dict) and key in x for x in [*base, *patch]):
            out_list = [copy.deepcopy(x) for x in base]
            index = {x[key]: i for i, x in enumerate(out_list)}
            for item in patch:
                if item[key] in index:
                    i = index[item[key]]
                    out_list[i] = strategic_merge(out_list[i], item, field)
                else:
                    out_list.append(copy.deepcopy(item))
            return out_list
    return copy.deepcopy(patch)


def _pod_templates(obj: Obj) -> Iterator[Obj]:
    """The pod templates (``{metadata, spec}``) of a workload."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind in WORKLOADS and "template" in spec:
        yield spec["template"]
    elif kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
        if template:
            yield template


def _pod_specs(obj: Obj) -> Iterator[Obj]:
    if obj.get("kind") == "Pod":
        yield obj.setdefault("spec", {})
    for template in _pod_templates(obj):
        yield template.setdefault("spec", {})


def _containers(obj: Obj) -> Iterator[Obj]:
    for spec in _pod_specs(obj):
        for field in ("initContainers", "containers"):
            yield from spec.get(field) or []


def _apply_patches(objs: list[Obj], k: Obj, folder: Path) -> None:
    for entry in k.get("patches") or []:
        if set(entry) - {"path", "target"} or "path" not in entry:
            raise KustomizeError(f"{folder}: a patch needs `path` (and optional `target`)")
        for patch in _load_docs(folder / entry["path"]):
            target = entry.get("target") or {}
            kind = target.get("kind", patch["kind"])
            name = target.get("name", patch["metadata"].get("name"))
            hits = [
                i
                for i, o in enumerate(objs)
                if o["kind"] == kind and o["metadata"].get("name") == name
            ]
            if not hits:
                raise KustomizeError(f"{folder / entry['path']}: no {kind} named {name!r} to patch")
            for i in hits:
                patched = strategic_merge(objs[i], {**patch, "apiVersion": objs[i]["apiVersion"]})
                objs[i].clear()
                objs[i].update(patched)


def _rename(objs: list[Obj], prefix: str, suffix: str) -> None:
    renamed: dict[tuple[str, str], str] = {}
    for o in objs:
        if o["kind"] == "Namespace":
            continue
        old = o["metadata"]["name"]
        new = f"{prefix}{old}{suffix}"
        o["metadata"]["name"] = new
        renamed[(o["kind"], old)] = new

    def ref(kind: str, holder: dict[str, Any] | None, field: str = "name") -> None:
        if holder and (kind, holder.get(field)) in renamed:
            holder[field] = renamed[(kind, holder[field])]

    for o in objs:
        for spec in _pod_specs(o):
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
                for env in c.get("env") or []:
                    source = env.get("valueFrom") or {}
                    ref("ConfigMap", source.get("configMapKeyRef"))
                    ref("Secret", source.get("secretKeyRef"))
                for env_from in c.get("envFrom") or []:
                    ref("ConfigMap", env_from.get("configMapRef"))
                    ref("Secret", env_from.get("secretRef"))
            for volume in spec.get("volumes") or []:
                ref("ConfigMap", volume.get("configMap"))
                ref("Secret", volume.get("secret"), "secretName")
                ref("PersistentVolumeClaim", volume.get("persistentVolumeClaim"), "claimName")
        if o["kind"] == "HorizontalPodAutoscaler":
            target = o.get("spec", {}).get("scaleTargetRef") or {}
            ref(target.get("kind", ""), target)


def _label(objs: list[Obj], pairs: dict[str, str], templates: bool, selectors: bool) -> None:
    for o in objs:
        o["metadata"].setdefault("labels", {}).update(pairs)
        if templates or selectors:
            for template in _pod_templates(o):
                template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if not selectors:
            continue
        spec = o.setdefault("spec", {})
        if o["kind"] == "Service":
            spec.setdefault("selector", {}).update(pairs)
        elif o["kind"] in WORKLOADS - {"Job"} or o["kind"] == "PodDisruptionBudget":
            spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
        elif o["kind"] == "NetworkPolicy":
            spec.setdefault("podSelector", {}).setdefault("matchLabels", {}).update(pairs)


def _images(objs: list[Obj], images: list[Obj]) -> None:
    for c in (c for o in objs for c in _containers(o)):
        image = str(c.get("image", ""))
        name = image.split("@", 1)[0]
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        for rule in images:
            if rule.get("name") != name:
                continue
            if set(rule) - {"name", "newName", "newTag", "digest"}:
                raise KustomizeError(f"unsupported image fields in {rule}")
            new = rule.get("newName", name)
            if rule.get("digest"):
                new += f"@{rule['digest']}"
            elif rule.get("newTag"):
                new += f":{rule['newTag']}"
            elif image != name:
                new += image[len(name) :]
            c["image"] = new


def render(folder: str | Path) -> list[Obj]:
    """The objects the kustomization in ``folder`` builds."""
    folder = Path(folder)
    _, k = _kustomization(folder)
    objs: list[Obj] = []
    for entry in k.get("resources") or []:
        path = folder / entry
        objs.extend(render(path) if path.is_dir() else _load_docs(path))
    _apply_patches(objs, k, folder)
    if k.get("namespace"):
        for o in objs:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    if k.get("namePrefix") or k.get("nameSuffix"):
        _rename(objs, k.get("namePrefix", ""), k.get("nameSuffix", ""))
    if k.get("commonLabels"):
        _label(objs, k["commonLabels"], templates=True, selectors=True)
    for entry in k.get("labels") or []:
        if set(entry) - {"pairs", "includeTemplates", "includeSelectors"}:
            raise KustomizeError(f"{folder}: unsupported labels fields in {entry}")
        _label(
            objs,
            entry.get("pairs") or {},
            templates=bool(entry.get("includeTemplates")),
            selectors=bool(entry.get("includeSelectors")),
        )
    if k.get("images"):
        _images(objs, k["images"])
    return objs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder with a kustomization.yaml")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        objs = render(args.folder)
    except (KustomizeError, OSError, yaml.YAMLError) as exc:
        print(f"render_kustomize: {exc}", file=sys.stderr)
        return 2
    text = yaml.safe_dump_all(objs, sort_keys=False, default_flow_style=False)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
