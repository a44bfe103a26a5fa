"""The v2 protocol over both transports, driven by Triton's own clients, unchanged.

One ``python -m service`` process with gRPC on (``FORECAST_GRPC_PORT``) and API keys, on a
real ``redis-server``. ``tritonclient.grpc`` and ``tritonclient.http`` each list the
repository, run a stateless inference, and step three interleaved sequences (over gRPC one
of them streamed through ``ModelStreamInfer``); every step's forecast must equal a stateless
inference of the whole series so far, so nothing here is a number written down by hand.
Errors must reach both clients as readable ``InferenceServerException`` messages.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import redis

from tests.support.demo_repository import build_demo_repository
from tests.support.redis_server import RedisServer, free_port
from tests.support.service_process import ServiceProcess

grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException

FEATURES = 2
T0 = 1_790_000_000.0
HOUR = 3600.0
ADMIN_KEY = "admin-key-0123456789"
READ_KEY = "read-key-0123456789"
ADMIN = {"x-api-key": ADMIN_KEY}
READ = {"x-api-key": READ_KEY}
# Passed as copies: tritonclient.http adds its own headers to the dict it is given.
Array = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[tuple[ServiceProcess, int]]:
    repository = build_demo_repository(tmp_path_factory.mktemp("v2t") / "models")
    grpc_port = free_port()
    keys = (
        f'[{{"key": "{ADMIN_KEY}", "tenant": "default", "role": "admin"}},'
        f' {{"key": "{READ_KEY}", "tenant": "default", "role": "read"}}]'
    )
    env = {
        "FORECAST_MODEL_REPOSITORY": str(repository),
        "FORECAST_STORE_URL": redis_server.url,
        "FORECAST_GRPC_PORT": str(grpc_port),
        "FORECAST_API_KEYS": keys,
    }
    process = ServiceProcess(env, log=tmp_path_factory.mktemp("v2t-logs") / "service.log")
    process.start()
    try:
        yield process, grpc_port
    finally:
        process.stop()


@pytest.fixture(scope="module")
def grpc_client(service: tuple[ServiceProcess, int]) -> Iterator[Any]:
    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{service[1]}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def http_client(service: tuple[ServiceProcess, int]) -> Iterator[Any]:
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{service[0].port}")
    yield client
    client.close()


@pytest.fixture(params=["grpc", "http"])
def triton(request: pytest.FixtureRequest, grpc_client: Any, http_client: Any) -> Any:
    return grpc_client if request.param == "grpc" else http_client


def _module(client: Any) -> Any:
    return grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient


def _inputs(client: Any, x: Array, times: npt.NDArray[np.float64]) -> list[Any]:
    lib = _module(client)
    tensors = [
        lib.InferInput("x", list(x.shape), "FP32"),
        lib.InferInput("timestamp", list(times.shape), "FP64"),
    ]
    tensors[0].set_data_from_numpy(x)
    tensors[1].set_data_from_numpy(times)
    return tensors


def infer(client: Any, model: str, x: Array, times: npt.NDArray[np.float64], **kw: Any) -> Array:
    result = client.infer(model, _inputs(client, x, times), headers=dict(ADMIN), **kw)
    out: Array = result.as_numpy("forecast")
    return out


def series(rng: np.random.Generator, n: int) -> tuple[Array, npt.NDArray[np.float64]]:
    x = rng.uniform(-3.0, 3.0, size=(n, FEATURES)).astype(np.float32)
    return x, T0 + HOUR * np.arange(n, dtype=np.float64)


def close(actual: Array, expected: Array) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


# --- repository, metadata, stateless ------------------------------------------------------


def test_repository_index_lists_every_version(triton: Any) -> None:
    index = triton.get_model_repository_index(headers=dict(READ))
    if _module(triton) is grpcclient:
        entries = [{"name": m.name, "version": m.version, "state": m.state} for m in index.models]
    else:
        entries = [{k: e[k] for k in ("name", "version", "state")} for e in index]
    assert {"name": "demo-lstm", "version": "1", "state": "READY"} in entries
    assert {"name": "demo-gru", "version": "1", "state": "READY"} in entries
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("demo-lstm", headers=dict(READ))
    assert not triton.is_model_ready("no-such-model", headers=dict(READ))


def test_metadata_is_the_same_on_both_transports(grpc_client: Any, http_client: Any) -> None:
    over_grpc = grpc_client.get_model_metadata("demo-gru", headers=dict(READ), as_json=True)
    over_http = http_client.get_model_metadata("demo-gru", headers=dict(READ))
    assert over_grpc["name"] == over_http["name"] == "demo-gru"
    assert over_grpc["versions"] == over_http["versions"]
    assert [
        (i["name"], i["datatype"], [int(d) for d in i["shape"]]) for i in over_grpc["inputs"]
    ] == [(i["name"], i["datatype"], i["shape"]) for i in over_http["inputs"]]
    config = grpc_client.get_model_config("demo-gru", headers=dict(READ), as_json=True)["config"]
    assert (
        config["parameters"]
        == http_client.get_model_config("demo-gru", headers=dict(READ))["parameters"]
    )
    assert grpc_client.get_server_metadata(headers=dict(READ)).name == "stateful-forecast"


def test_stateless_infer_is_the_same_on_both_transports(grpc_client: Any, http_client: Any) -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(-3.0, 3.0, size=(3, 5, FEATURES)).astype(np.float32)
    times = np.tile(T0 + HOUR * np.arange(5, dtype=np.float64), (3, 1))
    a = infer(grpc_client, "demo-lstm", x, times)
    b = infer(http_client, "demo-lstm", x, times)
    assert a.shape == (3, 4, 3)
    close(a, b)
    # Each row is its own series: the first row alone gives the first row's forecast.
    close(infer(grpc_client, "demo-lstm", x[:1], times[:1]), a[:1])


# --- sequences ----------------------------------------------------------------------------


class Streamed:
    """One ``ModelStreamInfer`` stream of a gRPC client; answers arrive in the callback."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
        client.start_stream(
            callback=lambda result, error: self.answers.put((result, error)), headers=dict(ADMIN)
        )

    def step(self, model: str, x: Array, times: npt.NDArray[np.float64], **kw: Any) -> Array:
        self.client.async_stream_infer(model, _inputs(self.client, x, times), **kw)
        result, error = self.answers.get(timeout=30)
        if error is not None:
            raise error
        out: Array = result.as_numpy("forecast")
        return out

    def close(self) -> None:
        self.client.stop_stream()


def test_interleaved_sequences_equal_stateless_forecasts(triton: Any) -> None:
    """Three sequences, steps of 1-3 readings interleaved; over gRPC one is streamed."""
    rng = np.random.default_rng(7 if _module(triton) is grpcclient else 8)
    tag = "g" if _module(triton) is grpcclient else "h"
    models = {
        f"{tag}-pump-1": "demo-lstm",
        9_000 + len(tag) + ord(tag): "demo-gru",
        f"{tag}-pump-3": "demo-lstm",
    }
    lengths = [2, 1, 3, 1]
    data = {sid: series(rng, sum(lengths)) for sid in models}
    order = [sid for sid in models for _ in lengths]
    rng.shuffle(order)
    stream = Streamed(triton) if _module(triton) is grpcclient else None
    streamed_id = f"{tag}-pump-3"
    done = dict.fromkeys(models, 0)
    seen = dict.fromkeys(models, 0)
    try:
        for sid in order:
            k = done[sid]
            lo, hi = seen[sid], seen[sid] + lengths[k]
            x, times = data[sid]
            flags = {
                "sequence_id": sid,
                "sequence_start": k == 0,
                "sequence_end": k == len(lengths) - 1,
            }
            if stream is not None and sid == streamed_id:
                got = stream.step(models[sid], x[None, lo:hi], times[None, lo:hi], **flags)
            else:
                got = infer(triton, models[sid], x[None, lo:hi], times[None, lo:hi], **flags)
            whole = infer(triton, models[sid], x[None, :hi], times[None, :hi])
            close(got, whole)
            done[sid], seen[sid] = k + 1, hi
    finally:
        if stream is not None:
            stream.close()
    assert all(n == len(lengths) for n in done.values())

    # Ended, so forgotten: a step without start is refused, readably.
    x, times = data[streamed_id]
    with pytest.raises(InferenceServerException) as caught:
        infer(triton, "demo-lstm", x[None, :1], times[None, :1], sequence_id=streamed_id)
    assert "not active" in caught.value.message()


# --- errors -------------------------------------------------------------------------------


def test_errors_are_readable_exceptions(triton: Any) -> None:
    lib = _module(triton)
    grpc = lib is grpcclient
    wrong = lib.InferInput("x", [1, 1, FEATURES], "FP64")
    wrong.set_data_from_numpy(np.ones((1, 1, FEATURES), np.float64))
    with pytest.raises(InferenceServerException) as caught:
        triton.infer("demo-lstm", [wrong], headers=dict(ADMIN))
    assert "datatype FP32" in caught.value.message()
    assert caught.value.status() == ("StatusCode.INVALID_ARGUMENT" if grpc else "400")

    with pytest.raises(InferenceServerException) as caught:
        triton.get_model_metadata("no-such-model", headers=dict(READ))
    assert "no-such-model" in caught.value.message()
    assert caught.value.status() == ("StatusCode.NOT_FOUND" if grpc else "404")

    x, times = series(np.random.default_rng(1), 1)
    with pytest.raises(InferenceServerException) as caught:
        triton.infer("demo-lstm", _inputs(triton, x[None], times[None]))
    assert "API key" in caught.value.message()
    assert caught.value.status() == ("StatusCode.UNAUTHENTICATED" if grpc else "401")

    # Loading needs the admin role: a read key is refused, and nothing changes.
    with pytest.raises(InferenceServerException) as caught:
        triton.unload_model("demo-gru", headers=dict(READ))
    assert "admin" in caught.value.message()
    assert caught.value.status() == ("StatusCode.PERMISSION_DENIED" if grpc else "403")
    assert triton.is_model_ready("demo-gru", headers=dict(READ))


def test_streamed_errors_leave_the_stream_open(grpc_client: Any) -> None:
    stream = Streamed(grpc_client)
    x, times = series(np.random.default_rng(5), 2)
    try:
        with pytest.raises(InferenceServerException) as caught:
            stream.step("demo-lstm", x[None, :1], times[None, :1], sequence_id="never-started")
        assert "not active" in caught.value.message()
        got = stream.step(
            "demo-lstm",
            x[None],
            times[None],
            sequence_id="s-ok",
            sequence_start=True,
            sequence_end=True,
        )
        close(got, infer(grpc_client, "demo-lstm", x[None], times[None]))
    finally:
        stream.close()


def test_unload_and_load_through_the_repository_extension(triton: Any) -> None:
    lib = _module(triton)
    triton.unload_model("demo-gru", headers=dict(ADMIN))
    assert not triton.is_model_ready("demo-gru", headers=dict(READ))
    index = triton.get_model_repository_index(headers=dict(READ))
    entries = (
        [(m.name, m.state, m.reason) for m in index.models]
        if lib is grpcclient
        else [(e["name"], e["state"], e["reason"]) for e in index]
    )
    assert ("demo-gru", "UNAVAILABLE", "unloaded") in entries
    triton.load_model("demo-gru", headers=dict(ADMIN))
    assert triton.is_model_ready("demo-gru", headers=dict(READ))
    with pytest.raises(InferenceServerException) as caught:
        triton.load_model("no-such-model", headers=dict(ADMIN))
    assert "no-such-model" in caught.value.message()


def test_every_v2_error_over_http_is_in_the_v2_form(service: tuple[ServiceProcess, int]) -> None:
    """Unknown routes and methods included: tritonclient reads ``error`` on every one."""
    with httpx.Client(base_url=service[0].url, headers=dict(ADMIN)) as http:
        for method, path, status in [
            ("GET", "/v2/no/such/route", 404),
            ("POST", "/v2/repository/nothing", 404),
            ("DELETE", "/v2/models/demo-lstm/infer", 405),
            ("PUT", "/v2/repository/index", 405),
            ("GET", "/v2/models/no-such-model", 404),
        ]:
            r = http.request(method, path)
            assert r.status_code == status, (method, path, r.text)
            assert r.headers["content-type"].startswith("application/json"), (method, path)
            assert isinstance(r.json()["error"], str), (method, path, r.text)
        # REST keeps problem+json.
        r = http.get("/v1/no/such/route")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")


def _raw_request(**fields: Any) -> Any:
    """A ModelInferRequest built by hand (tritonclient never sends a malformed one)."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name="demo-lstm")
    for tensor in fields.pop("inputs"):
        request.inputs.add(**tensor)
    request.raw_input_contents.extend(fields.pop("raw", []))
    for key, value in fields.pop("parameters", {}).items():
        setattr(
            request.parameters[key],
            f"{type(value).__name__}_param".replace("int_", "int64_"),
            value,
        )
    return request


TWO = np.array([[[1.0, 2.0]]], dtype="<f4").tobytes()
X = {"name": "x", "datatype": "FP32", "shape": [1, 1, 2]}
GRPC_MALFORMED = {
    "negative axis": (_raw_request(inputs=[{**X, "shape": [1, -1, 2]}], raw=[TWO]), "shape"),
    "raw size": (_raw_request(inputs=[X], raw=[TWO + b"\0" * 4]), "takes 8 bytes"),
    "raw count": (_raw_request(inputs=[X, X], raw=[TWO]), "one per input"),
    "no data": (_raw_request(inputs=[X]), "neither 'data'"),
    "unknown input": (_raw_request(inputs=[{**X, "name": "state"}], raw=[TWO]), "unknown input"),
    "bool sequence id": (
        _raw_request(inputs=[X], raw=[TWO], parameters={"sequence_id": True}),
        "sequence_id",
    ),
    "step on no sequence": (
        _raw_request(inputs=[X], raw=[TWO], parameters={"sequence_id": 424242}),
        "not active",
    ),
}


@pytest.mark.parametrize("case", list(GRPC_MALFORMED))
def test_malformed_grpc_requests_get_invalid_argument(
    case: str, service: tuple[ServiceProcess, int], redis_server: RedisServer
) -> None:
    """The wire model's refusals reach gRPC as INVALID_ARGUMENT with the same messages."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    request, fragment = GRPC_MALFORMED[case]
    with redis.Redis(port=redis_server.port) as store:
        before = sorted(store.keys("*"))
        with grpc.insecure_channel(f"127.0.0.1:{service[1]}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request, metadata=[("x-api-key", ADMIN_KEY)], timeout=10)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert fragment in caught.value.details()
        assert sorted(store.keys("*")) == before
