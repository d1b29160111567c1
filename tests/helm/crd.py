"""Validate KubeRay custom resources offline against the CRDs' ``openAPIV3Schema``.

An API server treats a CRD schema differently from plain JSON Schema; this module does what
it does, short of CEL rules (``x-kubernetes-validations``):

- fills every schema ``default`` into the object before validating (defaulting);
- reads ``x-kubernetes-int-or-string`` as integer-or-string;
- rejects unknown fields: an object schema with ``properties`` and neither
  ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields`` accepts nothing else
  (the server would prune them silently; here a misspelled field is an error, with a
  "did you mean" from the schema's own field names);
- allows ``apiVersion``/``kind``/``metadata`` in ``x-kubernetes-embedded-resource`` objects.

The CRDs are KubeRay v1.7.0's, copied unchanged into ``deploy/kuberay-crds/``.
"""

from __future__ import annotations

import copy
import difflib
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = ["CRD_DIR", "CrdError", "crd_schema", "fill_defaults", "validate_custom_resource"]

CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kuberay-crds"
_FILES = {"RayService": "ray.io_rayservices.yaml", "RayCluster": "ray.io_rayclusters.yaml",
          "RayJob": "ray.io_rayjobs.yaml"}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CrdError(ValueError):
    """A custom resource does not match its CRD; the message lists every problem by path."""


def _structural(node: Any) -> Any:
    """A JSON-Schema copy of a CRD schema node with the API server's semantics (see above)."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural(v) for k, v in node.items()
           if k not in ("x-kubernetes-validations", "description")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable"):
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if ("properties" in out and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd(kind: str) -> dict[str, Any]:
    if kind not in _FILES:
        raise CrdError(f"no KubeRay CRD for kind {kind!r} (known: {sorted(_FILES)})")
    with open(CRD_DIR / _FILES[kind]) as f:
        return yaml.load(f, Loader=_Loader)


@functools.cache
def crd_schema(kind: str, version: str) -> dict[str, Any]:
    """The raw ``openAPIV3Schema`` of ``kind`` at ``version`` (e.g. ``v1``)."""
    crd = _crd(kind)
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            if not v.get("served", False):
                raise CrdError(f"{kind} {crd['spec']['group']}/{version} is not served")
            return v["schema"]["openAPIV3Schema"]
    served = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]
    raise CrdError(f"{kind}: apiVersion {crd['spec']['group']}/{version} is not in the CRD "
                   f"(served: {served})")


@functools.cache
def _validator(kind: str, version: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft7Validator(_structural(crd_schema(kind, version)))


def fill_defaults(obj: Any, schema: dict[str, Any]) -> Any:
    """A copy of ``obj`` with the schema's defaults filled in, as the API server does: a
    missing property with a ``default`` gets it, at every level the object has."""
    obj = copy.deepcopy(obj)
    _fill(obj, schema)
    return obj


def _fill(obj: Any, schema: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                _fill(obj[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in obj.items():
                if key not in schema.get("properties", {}):
                    _fill(value, extra)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            _fill(item, schema["items"])


def _schema_at(schema: dict[str, Any], path: list[Any]) -> dict[str, Any]:
    node = schema
    for p in path:
        if isinstance(p, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(p) or node.get("additionalProperties") or {}
        if not isinstance(node, dict):
            return {}
    return node


def _message(err: jsonschema.ValidationError, schema: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in err.absolute_path) or "(root)"
    if err.validator == "additionalProperties" and err.validator_value is False:
        known = sorted(_schema_at(schema, list(err.absolute_path)).get("properties", {}))
        extra = sorted(set(err.instance) - set(known))
        parts = []
        for name in extra:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parts.append(f"{where}.{name}: unknown field{hint}")
        return "; ".join(parts)
    return f"{where}: {err.message}"


def validate_custom_resource(obj: dict[str, Any]) -> dict[str, Any]:
    """Validate a RayService/RayCluster/RayJob against its CRD; the defaulted object.

    Raises:
        CrdError: naming the object and every bad or unknown field by its path.
    """
    kind = obj.get("kind", "?")
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    name = obj.get("metadata", {}).get("name", "?")
    if group != "ray.io":
        raise CrdError(f"{kind} {name}: apiVersion {obj.get('apiVersion')!r} is not ray.io/*")
    schema = crd_schema(kind, version)
    full = fill_defaults(obj, schema)
    errors = sorted(_validator(kind, version).iter_errors(full),
                    key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [_message(e, schema) for e in errors]
        raise CrdError(f"{kind} {name} does not match the KubeRay CRD "
                       f"(deploy/kuberay-crds, ray.io/{version}):\n  " + "\n  ".join(lines))
    return full
