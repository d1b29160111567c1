"""Render the alray Helm chart with a real ``helm`` and read what a cluster would get.

:func:`template` runs ``helm template`` and returns a :class:`Rendered`: the parsed objects,
the RayService, its ``serveConfigV2``, every Ray group's start parameters (resources as Ray
sees them, ``ray start`` flags, environment resolved from the rendered ConfigMaps and Secret)
and the API tokens of the rendered Secret. The chart checks in ``tests/helm`` and the
multi-host cluster test (which starts Ray hosts with these parameters) share it.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tools.fetch_helm import ensure_helm

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["CHART", "EXAMPLES", "HelmError", "RayGroup", "Rendered", "helm", "lint", "notes",
           "parse_quantity", "template"]

CHART = ROOT / "helm" / "alray"
#: The values files the chart is checked with: name -> files (default: none).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "default": (),
    "gpu": (str(ROOT / "deploy" / "values-gpu.yaml"),),
    "minimal": (str(ROOT / "deploy" / "values-minimal.yaml"),),
}
_SUFFIX = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


class HelmError(RuntimeError):
    """``helm`` exited non-zero; the message is its stderr."""


def parse_quantity(q: str | int | float) -> float:
    """A Kubernetes quantity (``500m``, ``4``, ``16Gi``, ``1e3``) as a number.

    Raises:
        ValueError: not a quantity.
    """
    m = _QUANTITY.match(str(q).strip())
    if not m:
        raise ValueError(f"{q!r} is not a Kubernetes quantity")
    return float(m.group(1)) * _SUFFIX[m.group(2) or ""]


def helm(*args: str) -> str:
    """Run the pinned helm (fetched once, see tools/fetch_helm.py) with its own config and
    cache folders; its stdout.

    Raises:
        HelmError: helm failed (stderr in the message).
    """
    exe = ensure_helm()
    home = exe.parent / "home"
    env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_CACHE_HOME": str(home / "cache"), "HELM_DATA_HOME": str(home / "data")}
    run = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise HelmError("\n".join(s.strip() for s in (run.stderr, run.stdout) if s.strip()))
    return run.stdout


def _value_args(values: Iterable[str], set_values: Mapping[str, Any] | None) -> list[str]:
    out: list[str] = []
    for f in values:
        out += ["--values", str(f)]
    for k, v in (set_values or {}).items():
        out += ["--set-json", f"{k}={json.dumps(v)}"]
    return out


def lint(values: Iterable[str] = (), set_values: Mapping[str, Any] | None = None,
         chart: str | os.PathLike = CHART) -> str:
    """``helm lint --strict`` of the chart; its report.

    Raises:
        HelmError: lint found an error or (strict) a warning.
    """
    return helm("lint", "--strict", str(chart), *_value_args(values, set_values))


@dataclass(frozen=True)
class RayGroup:
    """One Ray node group of the rendered RayService, as ``ray start`` would see it."""

    name: str
    is_head: bool
    replicas: int
    min_replicas: int
    max_replicas: int
    ray_start_params: dict[str, str]
    container: dict[str, Any]
    pod_spec: dict[str, Any]
    pod_labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def limits(self) -> dict[str, Any]:
        res = self.container.get("resources", {})
        return {**res.get("requests", {}), **res.get("limits", {})}

    @property
    def gpus(self) -> int:
        """GPUs Ray advertises: ``num-gpus``, else the container's GPU limit."""
        if "num-gpus" in self.ray_start_params:
            return int(float(self.ray_start_params["num-gpus"]))
        return sum(int(parse_quantity(v)) for k, v in self.limits.items() if k.endswith("/gpu"))

    @property
    def ray_resources(self) -> dict[str, float]:
        """Resources Ray advertises on a pod of this group (KubeRay: ``num-cpus`` /
        ``memory`` / ``num-gpus`` start params, else the container's limits)."""
        p = self.ray_start_params
        cpus = float(p["num-cpus"]) if "num-cpus" in p else parse_quantity(self.limits["cpu"])
        memory = float(p["memory"]) if "memory" in p else parse_quantity(self.limits["memory"])
        out = {"CPU": cpus, "memory": memory}
        if self.gpus:
            out["GPU"] = float(self.gpus)
        out.update({k: float(v) for k, v in json.loads(p.get("resources", "{}")
                                                       .strip("'\"") or "{}").items()})
        return out

    def ray_start_args(self, gpu_stand_in: str | None = None,
                       skip: Iterable[str] = ()) -> list[str]:
        """``ray start`` flags of this group: its parameters plus the CPUs, memory and GPUs
        of its pods. ``gpu_stand_in`` (a custom resource name) replaces the GPUs on hosts
        without any: ``--num-gpus=0 --resources={"<stand_in>": n}``. ``skip``: parameter
        names the caller sets itself (e.g. ports)."""
        res = self.ray_resources
        params = {k: v for k, v in self.ray_start_params.items()
                  if k not in ("num-cpus", "memory", "num-gpus", "resources")}
        params["num-cpus"] = f"{res['CPU']:g}"
        params["memory"] = str(int(res["memory"]))
        custom = {k: v for k, v in res.items() if k not in ("CPU", "GPU", "memory")}
        if res.get("GPU"):
            if gpu_stand_in:
                params["num-gpus"] = "0"
                custom[gpu_stand_in] = res["GPU"]
            else:
                params["num-gpus"] = f"{res['GPU']:g}"
        if custom:
            params["resources"] = json.dumps(custom)
        return [f"--{k}={v}" for k, v in sorted(params.items()) if k not in set(skip)]


@dataclass
class Rendered:
    """The objects ``helm template`` produced."""

    text: str
    objects: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} {kind} objects named {name or '*'} rendered, "
                              "expected 1")
        return found[0]

    @property
    def ray_service(self) -> dict[str, Any]:
        return self.one("RayService")

    @property
    def serve_config(self) -> dict[str, Any]:
        """The parsed ``serveConfigV2``."""
        return yaml.safe_load(self.ray_service["spec"]["serveConfigV2"])

    def config_map(self, name: str) -> dict[str, str]:
        return self.one("ConfigMap", name).get("data", {})

    def secret_data(self, name: str) -> dict[str, str] | None:
        """A rendered Secret's decoded data (None: not rendered, e.g. an existingSecret)."""
        found = [o for o in self.all("Secret") if o["metadata"]["name"] == name]
        if not found:
            return None
        s = found[0]
        out = {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
        out.update(s.get("stringData") or {})
        return out

    def api_tokens(self) -> dict[str, str]:
        """scope -> the first token of that scope in the rendered Secret's ALRAY_API_TOKENS
        (a token without a scope is ``admin``)."""
        env = self.groups()[0].container.get("env", [])
        refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in env
                if e["name"] == "ALRAY_API_TOKENS" and "secretKeyRef" in e.get("valueFrom", {})]
        if not refs:
            raise LookupError("the head container takes ALRAY_API_TOKENS from no Secret")
        name = refs[0]
        data = self.secret_data(name)
        if data is None:
            raise LookupError(f"the Secret {name} is not rendered (secrets.existingSecret)")
        out: dict[str, str] = {}
        for item in data["ALRAY_API_TOKENS"].split(","):
            scope, sep, token = item.strip().partition(":")
            if not (sep and scope in ("read", "label", "admin") and token.strip()):
                scope, token = "admin", item.strip()
            if token:
                out.setdefault(scope, token.strip())
        return out

    def resolve_env(self, container: dict[str, Any]) -> dict[str, str]:
        """A container's environment as the kubelet would set it from the rendered objects
        (keys of a Secret that is not rendered, or optional and absent, are left out)."""
        env: dict[str, str] = {}
        for src in container.get("envFrom", []):
            if "configMapRef" in src:
                env.update(self.config_map(src["configMapRef"]["name"]))
            elif "secretRef" in src:
                env.update(self.secret_data(src["secretRef"]["name"]) or {})
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            ref = e.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                data = self.config_map(ref["configMapKeyRef"]["name"])
                key = ref["configMapKeyRef"]["key"]
            else:
                data = self.secret_data(ref["secretKeyRef"]["name"]) or {}
                key = ref["secretKeyRef"]["key"]
            if key in data:
                env[e["name"]] = data[key]
        return env

    def groups(self) -> list[RayGroup]:
        """The head group, then each worker group."""
        rc = self.ray_service["spec"]["rayClusterConfig"]
        specs = [("head", True, rc["headGroupSpec"])]
        specs += [(w["groupName"], False, w) for w in rc.get("workerGroupSpecs", [])]
        out = []
        for name, head, g in specs:
            pod = g["template"]["spec"]
            container = pod["containers"][0]
            out.append(RayGroup(
                name=name, is_head=head, replicas=1 if head else g.get("replicas", 0),
                min_replicas=1 if head else g.get("minReplicas", 0),
                max_replicas=1 if head else g.get("maxReplicas", 0),
                ray_start_params={k: str(v) for k, v in g.get("rayStartParams", {}).items()},
                container=container, pod_spec=pod,
                pod_labels=g["template"].get("metadata", {}).get("labels", {}),
                env=self.resolve_env(container)))
        return out

    def group(self, name: str) -> RayGroup:
        for g in self.groups():
            if g.name == name:
                return g
        raise LookupError(f"no Ray group {name!r}: {[g.name for g in self.groups()]}")

    def containers(self) -> list[tuple[str, dict[str, Any]]]:
        """(where, container) for every container of every rendered workload, including the
        autoscaler sidecar KubeRay adds from ``autoscalerOptions``."""
        out = []
        for o in self.objects:
            where = f"{o['kind']}/{o['metadata']['name']}"
            if o["kind"] == "RayService":
                rc = o["spec"]["rayClusterConfig"]
                pods = [("head", rc["headGroupSpec"]["template"]["spec"])]
                pods += [(w["groupName"], w["template"]["spec"])
                         for w in rc.get("workerGroupSpecs", [])]
                if rc.get("enableInTreeAutoscaling"):
                    out.append((f"{where}/autoscaler",
                                {"name": "autoscaler", **rc.get("autoscalerOptions", {})}))
            elif o["kind"] in ("Job", "Deployment", "StatefulSet", "DaemonSet"):
                pods = [("pod", o["spec"]["template"]["spec"])]
            else:
                continue
            for group, pod in pods:
                for c in pod.get("initContainers", []) + pod.get("containers", []):
                    out.append((f"{where}/{group}/{c['name']}", {**c, "_pod": pod}))
        return out


@functools.lru_cache(maxsize=64)
def _template(values: tuple[str, ...], set_json: str, release: str, namespace: str,
              chart: str) -> str:
    return helm("template", release, chart, "--namespace", namespace,
                *_value_args(values, json.loads(set_json)))


def template(values: Iterable[str] = (), set_values: Mapping[str, Any] | None = None, *,
             release: str = "alray", namespace: str = "alray",
             chart: str | os.PathLike = CHART) -> Rendered:
    """``helm template`` of the chart (cached per arguments); the parsed objects.

    Args:
        values: values files, applied in order.
        set_values: ``--set-json`` overrides, e.g. ``{"secrets.apiTokens": "admin:x"}``.
        chart: the chart folder (default: ``helm/alray``).

    Raises:
        HelmError: the schema or a ``fail`` check refused the values (helm's message).
    """
    text = _template(tuple(str(v) for v in values), json.dumps(dict(set_values or {}),
                                                              sort_keys=True),
                     release, namespace, str(chart))
    return Rendered(text, [o for o in yaml.safe_load_all(text) if o])


_NOTES_PROBE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: {{ tpl (.Files.Get "NOTES.probe") . | toJson }}
"""


def notes(values: Iterable[str] = (), set_values: Mapping[str, Any] | None = None) -> str:
    """The chart's NOTES.txt as ``helm install`` would print it (``helm template`` skips
    NOTES, and ``install --dry-run`` needs a cluster): rendered through ``tpl`` in a copy of
    the chart."""
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / CHART.name
        shutil.copytree(CHART, chart)
        shutil.copy(CHART / "templates" / "NOTES.txt", chart / "NOTES.probe")
        (chart / "templates" / "zz-notes-probe.yaml").write_text(_NOTES_PROBE)
        out = helm("template", "alray", str(chart), "--namespace", "alray",
                   "--show-only", "templates/zz-notes-probe.yaml",
                   *_value_args(values, set_values))
    return yaml.safe_load(out)["data"]["notes"]
