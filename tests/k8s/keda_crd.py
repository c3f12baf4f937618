"""KEDA's vendored CRDs (tests/k8s/crds, v2.20.2): their schemas as strict JSON Schemas, and the CRDs themselves
for a real API server."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRDS = Path(__file__).parent / "crds"
KEDA_VERSION = "v2.20.2"
FILES = {"ScaledObject": "keda.sh_scaledobjects.yaml", "TriggerAuthentication": "keda.sh_triggerauthentications.yaml"}


def crd(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CRDS / FILES[kind]).read_text(encoding="utf-8"))
    return loaded


def _strict(node: Any) -> Any:
    """Unknown fields refused wherever the structural schema lists the known ones (as strict field validation
    does); maps (additionalProperties given) and preserve-unknown-fields nodes stay open."""
    if isinstance(node, dict):
        node = {key: _strict(value) for key, value in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


@cache
def _validator(kind: str) -> jsonschema.Draft7Validator:
    (version,) = [v for v in crd(kind)["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return jsonschema.Draft7Validator(schema)


def validate(manifest: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if `manifest` (a keda.sh/v1alpha1 object) breaks the CRD's schema."""
    assert manifest["apiVersion"] == "keda.sh/v1alpha1", manifest["apiVersion"]
    _validator(manifest["kind"]).validate(manifest)


def errors(manifest: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(manifest["kind"]).iter_errors(
        manifest)]
