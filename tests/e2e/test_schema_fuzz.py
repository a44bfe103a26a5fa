"""Schema fuzzing of the whole HTTP API from its own OpenAPI document (schemathesis).

Every operation the app documents is called, with valid and invalid data, against a real
server process on Redis, with an admin key (so every route is reachable). For each call:

- no 5xx;
- the response conforms to the document (content type and body schema of the status);
- a rejected request (4xx) changes nothing: the store's keys and bytes are the same after.

Bounded and deterministic: few examples per operation, derandomized.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import redis

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
)

from models.onnx_builder import build_recurrent_model  # noqa: E402
from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.service_process import ServiceProcess  # noqa: E402

pytestmark = pytest.mark.slow

ADMIN_KEY = "fuzz-admin-key-0123456789"
#: Both ways of presenting the key, so a generated Authorization header cannot replace it.
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}", "X-API-Key": ADMIN_KEY}
#: A database of the session's Redis that only this module uses.
DB = 7
T0 = 1_790_000_000.0
STREAMS = ("s", "0", "a")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "models"
    build_recurrent_model(
        root / "demo-lstm" / "1",
        kind="lstm",
        name="demo-lstm",
        features=["load", "temp"],
        target="load",
        frequency=3600.0,
    )
    return root


@pytest.fixture(scope="module")
def service(redis_server: RedisServer, repository: Path) -> Iterator[ServiceProcess]:
    with redis.Redis(port=redis_server.port, db=DB) as client:
        client.flushdb()
    env = {
        "FORECAST_MODEL_REPOSITORY": str(repository),
        "FORECAST_STORE_URL": f"redis://127.0.0.1:{redis_server.port}/{DB}",
        "FORECAST_API_KEYS": json.dumps([{"key": ADMIN_KEY, "tenant": "fuzz", "role": "admin"}]),
        "FORECAST_MAX_BODY_BYTES": str(64 * 1024),
    }
    with ServiceProcess(env) as process:
        # A few streams, so the fuzzer's requests meet existing state too.
        for stream in STREAMS:
            r = httpx.put(
                f"{process.url}/v1/streams/{stream}",
                json={"model": "demo-lstm", "history": [{"timestamp": T0, "values": [1.0, 2.0]}]},
                headers={"X-API-Key": ADMIN_KEY},
            )
            assert r.status_code == 201, r.text
        yield process


@pytest.fixture(scope="module")
def api_schema(repository: Path) -> Any:
    """The OpenAPI document the app serves at /docs/openapi.json (no server needed for it)."""
    app = create_app(Settings(model_repository=repository, providers="cpu"))
    return schemathesis.openapi.from_dict(app.openapi_schema.to_schema())


def store_snapshot(port: int) -> dict[bytes, bytes | None]:
    with redis.Redis(port=port, db=DB, socket_timeout=5.0) as client:
        # DUMP, not GET: besides the stream records there is each tenant's stream-count quota.
        return {key: client.dump(key) for key in sorted(client.keys("*"))}


def steer_towards_existing(case: Any) -> None:
    """Point most cases at the served model and the existing streams, deterministically.

    Random names almost never hit either, so without this nearly every answer would be a
    404 and the success responses would go unchecked. Admin operations keep their random
    names, as do the v2 repository operations (unloading the only model would starve the rest
    of the run), DELETE keeps its random
    stream ids (so the streams stay for the other operations), and the forecast subscription
    (server-sent events) never meets a live stream, whose answer would not end.
    """
    params = case.path_parameters
    if params is None or case.path.startswith(("/v1/admin", "/v2/repository")):
        return
    if "name" in params:
        params["name"] = "demo-lstm"
    if "stream_id" in params and case.method != "DELETE" and not case.path.endswith("/forecasts"):
        generated = str(params["stream_id"])
        params["stream_id"] = (*STREAMS, generated)[len(generated) % (len(STREAMS) + 1)]


def check_operation(
    operation: Any, mode: Any, service: ServiceProcess, redis_server: RedisServer
) -> None:
    """Call ``operation`` with generated cases of one generation mode and check each answer."""

    @hypothesis.settings(
        max_examples=12,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        steer_towards_existing(case)
        before = store_snapshot(redis_server.port)
        response = case.call(base_url=service.url, headers=AUTH, timeout=30)
        case.validate_response(
            response,
            checks=[not_a_server_error, content_type_conformance, response_schema_conformance],
        )
        if 400 <= response.status_code < 500:
            assert store_snapshot(redis_server.port) == before, (
                f"{case.method} {case.formatted_path} was rejected with {response.status_code} "
                "but changed the store"
            )

    one()


# The operations are walked here rather than through schemathesis' pytest plugin, which
# renames pytest's nodes through a private attribute newer pytest releases no longer have.
@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: str(m.value))
def test_api_conforms_and_rejections_change_nothing(
    mode: Any, api_schema: Any, service: ServiceProcess, redis_server: RedisServer
) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 10, "the document lost its operations"
    for operation in operations:
        try:
            check_operation(operation, mode, service, redis_server)
        except hypothesis.errors.Unsatisfiable:
            # Only an operation with no inputs at all (the health probes) has no invalid case.
            if mode is GenerationMode.POSITIVE or operation.query or operation.body:
                failures.append(f"{operation.method.upper()} {operation.path}: no cases")
        except Exception as exc:  # one report for every failing operation, not just the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
