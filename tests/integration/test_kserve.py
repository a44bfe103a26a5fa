"""The v2 protocol, driven by Triton's own HTTP client against real service processes.

Two ``python -m service`` processes share one real ``redis-server``; both start once for the
module. Every v2 output is compared with what the REST API computes for the same data, so
the tests check the mapping, not numbers written down by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import redis

from service.state.keys import stream_key
from tests.support.demo_repository import build_demo_repository
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess

httpclient = pytest.importorskip("tritonclient.http")
# tritonclient's async_infer runs on gevent; sleeping through gevent lets its requests go out.
gevent = pytest.importorskip("gevent")
triton_utils = pytest.importorskip("tritonclient.utils")
InferenceServerException = triton_utils.InferenceServerException

TTL_SECONDS = 900.0
MAX_SERIES = 16
FEATURES = 2
T0 = 1_790_000_000.0
Array = npt.NDArray[np.float32]


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models, built once: the two replicas share them for the whole module."""
    return build_demo_repository(tmp_path_factory.mktemp("v2") / "models")


@pytest.fixture(scope="module")
def shared_redis(redis_server: RedisServer) -> str:
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="module")
def services(
    repository: Path, shared_redis: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two replicas of the service on one Redis, as behind a load balancer."""
    env = {
        "FORECAST_MODEL_REPOSITORY": str(repository),
        "FORECAST_STORE_URL": shared_redis,
        "FORECAST_STREAM_TTL_SECONDS": str(TTL_SECONDS),
        "FORECAST_MAX_SERIES": str(MAX_SERIES),
        # Long enough to outlast the Redis pause of the arrival-order test.
        "FORECAST_STORE_TIMEOUT_SECONDS": "10",
    }
    logs = tmp_path_factory.mktemp("v2-logs")
    a = ServiceProcess(env, log=logs / "a.log")
    b = ServiceProcess(env, log=logs / "b.log")
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


def _triton(service: ServiceProcess) -> Iterator[Any]:
    """Triton's HTTP client on one replica, closed with the module."""
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{service.port}", concurrency=8)
    yield client
    client.close()


@pytest.fixture(scope="module")
def triton_a(services: tuple[ServiceProcess, ServiceProcess]) -> Iterator[Any]:
    yield from _triton(services[0])


@pytest.fixture(scope="module")
def triton_b(services: tuple[ServiceProcess, ServiceProcess]) -> Iterator[Any]:
    yield from _triton(services[1])


@pytest.fixture(scope="module")
def http(services: tuple[ServiceProcess, ServiceProcess]) -> Iterator[httpx.Client]:
    """Plain HTTP to replica A: the REST reference, and v2 requests tritonclient cannot spoil."""
    with httpx.Client(base_url=services[0].url, timeout=10.0) as client:
        yield client


@pytest.fixture(scope="module")
def store(shared_redis: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(shared_redis)
    yield client
    client.close()


# --- helpers ------------------------------------------------------------------------------


def v2_infer(
    client: Any,
    model: str,
    x: Array,
    *,
    binary: bool = True,
    timestamps: npt.NDArray[np.float64] | None = None,
    sequence_id: int | str = 0,
    start: bool = False,
    end: bool = False,
    version: str = "",
) -> Array:
    """One inference through tritonclient; the forecast tensor it returns."""
    inputs = [httpclient.InferInput("x", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x, binary_data=binary)
    if timestamps is not None:
        inputs.append(httpclient.InferInput("timestamp", list(timestamps.shape), "FP64"))
        inputs[1].set_data_from_numpy(timestamps, binary_data=binary)
    result = client.infer(
        model,
        inputs,
        model_version=version,
        outputs=[httpclient.InferRequestedOutput("forecast", binary_data=binary)],
        sequence_id=sequence_id,
        sequence_start=start,
        sequence_end=end,
    )
    out: Array = result.as_numpy("forecast")
    return out


def observations(x: Array, first_index: int) -> list[dict[str, Any]]:
    """REST observations of one series' rows, an hour apart from ``first_index`` on."""
    return [
        {"timestamp": T0 + 3600.0 * (first_index + i), "values": [float(v) for v in row]}
        for i, row in enumerate(x)
    ]


def rest_matrix(forecast: dict[str, Any], quantiles: Sequence[str]) -> Array:
    """A REST forecast as the [H, Q] matrix the v2 output carries."""
    return np.array([[step["quantiles"][q] for q in quantiles] for step in forecast["steps"]])


def quantile_labels(client: Any, model: str) -> list[str]:
    labels: str = client.get_model_config(model)["parameters"]["quantiles"]["string_value"]
    return labels.split(",")


def rest_stream_forecasts(
    http: httpx.Client, stream_id: str, model: str, steps: Sequence[Array], labels: Sequence[str]
) -> list[Array]:
    """The forecast after each step, from a REST stream fed the same readings."""
    r = http.put(
        f"/v1/streams/{stream_id}", json={"model": model, "history": observations(steps[0], 0)}
    )
    assert r.status_code in (200, 201), r.text
    out = [rest_matrix(r.json()["forecast"], labels)]
    seen = len(steps[0])
    for step in steps[1:]:
        r = http.post(
            f"/v1/streams/{stream_id}/observations", json={"observations": observations(step, seen)}
        )
        assert r.status_code == 200, r.text
        out.append(rest_matrix(r.json()["forecast"], labels))
        seen += len(step)
    return out


def rest_stateless(
    http: httpx.Client, model: str, series: Sequence[Array], labels: Sequence[str]
) -> list[Array]:
    body = {"series": [{"observations": observations(s, 0)} for s in series]}
    r = http.post(f"/v1/models/{model}/forecast", json=body)
    assert r.status_code == 200, r.text
    return [rest_matrix(f, labels) for f in r.json()["forecasts"]]


def readings(rng: np.random.Generator, *shape: int) -> Array:
    return rng.uniform(-3.0, 3.0, size=shape).astype(np.float32)


def close(actual: Array, expected: Array) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


# --- server and model description ---------------------------------------------------------


def test_server_metadata_and_health(triton_a: Any) -> None:
    assert triton_a.is_server_live()
    assert triton_a.is_server_ready()
    meta = triton_a.get_server_metadata()
    assert meta["name"] == "stateful-forecast"
    assert meta["version"]
    assert {"sequence", "sequence(string_id)", "binary_tensor_data", "model_configuration"} <= set(
        meta["extensions"]
    )
    assert triton_a.is_model_ready("demo-lstm")
    assert triton_a.is_model_ready("demo-lstm", "1")
    assert not triton_a.is_model_ready("demo-lstm", "9")
    assert not triton_a.is_model_ready("no-such-model")


def test_model_metadata_and_config(triton_a: Any) -> None:
    meta = triton_a.get_model_metadata("demo-gru")
    assert meta["name"] == "demo-gru"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert {i["name"]: (i["datatype"], i["shape"]) for i in meta["inputs"]} == {
        "x": ("FP32", [-1, -1, FEATURES]),
        "timestamp": ("FP64", [-1, -1]),
    }
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("forecast", "FP32", [-1, 4, 3])
    ]
    assert triton_a.get_model_metadata("demo-gru", "1") == meta

    config = triton_a.get_model_config("demo-gru")
    assert config["name"] == "demo-gru"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == MAX_SERIES
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("x", "TYPE_FP32", [-1, FEATURES]),
        ("timestamp", "TYPE_FP64", [-1]),
    ]
    assert [(o["name"], o["dims"]) for o in config["output"]] == [("forecast", [4, 3])]
    idle = config["sequence_batching"]["max_sequence_idle_microseconds"]
    assert idle == int(TTL_SECONDS * 1_000_000)
    assert config["parameters"]["quantiles"]["string_value"] == "0.1,0.5,0.9"

    # The recurrent state is the service's business: no client-visible tensor mentions it.
    assert "state" not in json.dumps([meta["inputs"], meta["outputs"]])
    assert "state" not in json.dumps([config["input"], config["output"]])

    with pytest.raises(InferenceServerException) as caught:
        triton_a.get_model_metadata("no-such-model")
    assert caught.value.status() == "404"
    assert "no-such-model" in caught.value.message()


# --- stateless inference ------------------------------------------------------------------


def test_stateless_infer_json_and_binary_equal_rest(triton_a: Any, http: httpx.Client) -> None:
    rng = np.random.default_rng(1)
    x = readings(rng, 3, 6, FEATURES)
    labels = quantile_labels(triton_a, "demo-lstm")
    expected = np.stack(rest_stateless(http, "demo-lstm", list(x), labels))

    as_json = v2_infer(triton_a, "demo-lstm", x, binary=False)
    as_binary = v2_infer(triton_a, "demo-lstm", x, binary=True, version="1")
    assert as_json.shape == as_binary.shape == (3, 4, 3)
    assert as_json.dtype == as_binary.dtype == np.float32
    close(as_json, expected)
    close(as_binary, expected)
    # Timestamps only order the readings; the forecast does not depend on them.
    times = T0 + 3600.0 * np.tile(np.arange(6, dtype=np.float64), (3, 1))
    close(v2_infer(triton_a, "demo-lstm", x, timestamps=times), expected)
    # tritonclient may compress the request body; the server inflates it.
    for algorithm in ("gzip", "deflate"):
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = triton_a.infer("demo-lstm", [tensor], request_compression_algorithm=algorithm)
        close(result.as_numpy("forecast"), expected)


def test_json_output_shape_and_id_echo(http: httpx.Client) -> None:
    """Details tritonclient relies on: ``id`` echoed even when empty, no ``parameters`` on JSON."""
    x = [[[1.0, 20.0], [1.5, 19.0]]]
    for request_id in ("", "req-1"):
        body = {
            "id": request_id,
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2, 2], "data": x}],
        }
        r = http.post("/v2/models/demo-gru/infer", json=body)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        answer = r.json()
        assert answer["id"] == request_id
        assert answer["model_name"] == "demo-gru"
        assert answer["model_version"] == "1"
        (output,) = answer["outputs"]
        assert output["name"] == "forecast"
        assert output["shape"] == [1, 4, 3]
        assert len(output["data"]) == 12
        assert "parameters" not in output
    # Flat and nested ``data`` are the same tensor.
    flat = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2, 2], "data": [1, 20, 1.5, 19]}]
    }
    r = http.post("/v2/models/demo-gru/infer", json=flat)
    assert r.status_code == 200, r.text
    assert "id" not in r.json()
    assert r.json()["outputs"][0]["data"] == answer["outputs"][0]["data"]


# --- sequences ----------------------------------------------------------------------------


def test_interleaved_sequences_equal_rest_streams(triton_a: Any, http: httpx.Client) -> None:
    rng = np.random.default_rng(2)
    sequences: dict[int | str, str] = {
        17: "demo-lstm",
        "pump-7": "demo-gru",
        2**63 + 5: "demo-lstm",
        "17": "demo-gru",  # the string "17" is a different sequence from the integer 17
    }
    lengths = [1, 2, 1, 3, 1]
    steps = {sid: [readings(rng, n, FEATURES) for n in lengths] for sid in sequences}
    order = [sid for sid in sequences for _ in lengths]
    rng.shuffle(order)

    got: dict[int | str, list[Array]] = {sid: [] for sid in sequences}
    for sid in order:
        k = len(got[sid])
        x = steps[sid][k][None]
        out = v2_infer(
            triton_a,
            sequences[sid],
            x,
            binary=bool(k % 2),
            sequence_id=sid,
            start=k == 0,
            end=k == len(lengths) - 1,
        )
        assert out.shape == (1, 4, 3)
        got[sid].append(out[0])

    for n, (sid, model) in enumerate(sequences.items()):
        expected = rest_stream_forecasts(
            http, f"ref-interleaved-{n}", model, steps[sid], quantile_labels(triton_a, model)
        )
        for step, (actual, wanted) in enumerate(zip(got[sid], expected, strict=True)):
            assert np.allclose(actual, wanted, rtol=1e-5, atol=1e-6), (sid, step)

    # Ended sequences are forgotten: the stream is gone and a step without start is refused.
    assert http.get("/v1/streams/v2:17").status_code == 404
    assert http.get("/v1/streams/v2:s:pump-7").status_code == 404
    with pytest.raises(InferenceServerException) as caught:
        v2_infer(triton_a, "demo-lstm", steps[17][1][None], sequence_id=17)
    assert caught.value.status() == "400"
    assert "not active" in caught.value.message()


@pytest.mark.parametrize("sequence_id", ["sensor-\u03b1", "plant/line-1", "Kühlhaus 3"])
def test_string_sequence_ids_of_any_text_equal_rest_streams(
    triton_a: Any, triton_b: Any, http: httpx.Client, store: redis.Redis, sequence_id: str
) -> None:
    """Triton accepts any string as a sequence id; so does the service, on both replicas, and
    the REST API reads the sequence's stream under its percent-encoded id."""
    rng = np.random.default_rng(len(sequence_id))
    steps = [readings(rng, n, FEATURES) for n in (2, 1, 1)]
    got = [
        v2_infer(client, "demo-lstm", step[None], sequence_id=sequence_id, start=k == 0)[0]
        for k, (client, step) in enumerate(zip([triton_a, triton_b, triton_a], steps, strict=True))
    ]
    labels = quantile_labels(triton_a, "demo-lstm")
    reference = quote(f"ref-{sequence_id}", safe="")
    expected = rest_stream_forecasts(http, reference, "demo-lstm", steps, labels)
    for actual, wanted in zip(got, expected, strict=True):
        close(actual, wanted)
    stream = quote(f"v2:s:{sequence_id}", safe="")
    r = http.get(f"/v1/streams/{stream}")
    assert r.status_code == 200, r.text
    assert r.json()["stream_id"] == f"v2:s:{sequence_id}"
    assert r.json()["seq"] == 4
    assert store.get(stream_key("fcst", "default", f"v2:s:{sequence_id}")) is not None
    v2_infer(triton_a, "demo-lstm", steps[0][None], sequence_id=sequence_id, end=True)
    assert http.get(f"/v1/streams/{stream}").status_code == 404


def test_start_on_an_active_sequence_resets_it(triton_a: Any, http: httpx.Client) -> None:
    rng = np.random.default_rng(3)
    first, second = readings(rng, 1, 2, FEATURES), readings(rng, 1, 1, FEATURES)
    fresh = v2_infer(triton_a, "demo-gru", first, sequence_id="reset-me", start=True)
    moved = v2_infer(triton_a, "demo-gru", second, sequence_id="reset-me")
    assert not np.allclose(fresh, moved)
    again = v2_infer(triton_a, "demo-gru", first, sequence_id="reset-me", start=True)
    close(again, fresh)
    assert http.get("/v1/streams/v2:s:reset-me").json()["seq"] == 2
    v2_infer(triton_a, "demo-gru", second, sequence_id="reset-me", end=True)


def test_one_step_sequence_is_a_forecast_that_leaves_nothing(
    triton_a: Any, http: httpx.Client
) -> None:
    """Start and end on one request: the step's forecast, and no stream afterwards."""
    x = readings(np.random.default_rng(9), 1, 3, FEATURES)
    alone = v2_infer(triton_a, "demo-gru", x, sequence_id=606, start=True, end=True)
    close(alone, v2_infer(triton_a, "demo-gru", x))
    assert http.get("/v1/streams/v2:606").status_code == 404


def test_sequence_continues_across_replicas(
    triton_a: Any, triton_b: Any, http: httpx.Client
) -> None:
    """Half the steps to one replica, half to the other: no sticky routing needed."""
    rng = np.random.default_rng(4)
    labels = quantile_labels(triton_a, "demo-lstm")
    steps = [readings(rng, n, FEATURES) for n in (2, 1, 1, 3, 1, 1, 2, 1)]
    expected = rest_stream_forecasts(http, "ref-replicas", "demo-lstm", steps, labels)

    half = len(steps) // 2
    for k, step in enumerate(steps):
        client = triton_a if k < half else triton_b
        out = v2_infer(
            client,
            "demo-lstm",
            step[None],
            sequence_id=4242,
            start=k == 0,
            end=k == len(steps) - 1,
        )
        assert np.allclose(out[0], expected[k], rtol=1e-5, atol=1e-6), k
        if k == half - 1:
            # What A left behind is what B continues from.
            assert http.get("/v1/streams/v2:4242").json()["seq"] == sum(map(len, steps[:half]))
    assert http.get("/v1/streams/v2:4242").status_code == 404


def linear_order(
    http: httpx.Client,
    model: str,
    labels: Sequence[str],
    first: Array,
    steps: Sequence[Array],
    answers: Sequence[Array],
) -> list[int]:
    """The order in which the steps were applied, given each one's answer.

    At each point exactly one pending step must have answered the forecast of everything
    applied so far plus itself; otherwise the steps did not apply one at a time, once each.
    """
    applied = [first]
    pending = list(range(len(steps)))
    order: list[int] = []
    while pending:
        prefix = np.concatenate(applied)
        candidates = [np.concatenate([prefix, steps[i]]) for i in pending]
        forecasts = rest_stateless(http, model, candidates, labels)
        matches = [
            i
            for i, forecast in zip(pending, forecasts, strict=True)
            if np.allclose(answers[i], forecast, rtol=1e-4, atol=1e-5)
        ]
        assert len(matches) == 1, f"after {order}: steps {matches} fit the next position"
        order.append(matches[0])
        applied.append(steps[matches[0]])
        pending.remove(matches[0])
    return order


def send_steps(
    clients: Sequence[Any],
    model: str,
    sequence_id: int | str,
    steps: Sequence[Array],
    *,
    spacing: float,
    frozen: RedisServer | None = None,
) -> list[Array]:
    """Send every step of one sequence without waiting for answers; the answers, in order.

    Step k goes to ``clients[k % len(clients)]``; tritonclient sends each from its own
    greenlet and connection, and ``gevent.sleep(spacing)`` lets it go out before the next.
    With ``frozen``, that Redis is paused while they are sent, so all are in flight at once.
    """
    pending = []
    if frozen is not None:
        frozen.pause()
    try:
        for k, step in enumerate(steps):
            x = httpclient.InferInput("x", [1, *step.shape], "FP32")
            x.set_data_from_numpy(step[None])
            client = clients[k % len(clients)]
            pending.append(client.async_infer(model, [x], sequence_id=sequence_id))
            gevent.sleep(spacing)
    finally:
        if frozen is not None:
            frozen.resume()
    return [p.get_result().as_numpy("forecast")[0] for p in pending]


@pytest.mark.parametrize("frozen", [False, True], ids=["live-store", "frozen-store"])
def test_steps_racing_on_two_replicas_apply_once_each(
    triton_a: Any, triton_b: Any, http: httpx.Client, redis_server: RedisServer, frozen: bool
) -> None:
    """Steps of one sequence in flight on both replicas at once each apply exactly once.

    With the store frozen while they arrive, both replicas read the same last time and stamp
    their next steps alike: one loses the compare-and-set, is skipped whole by the core's
    duplicate check, and is re-stamped after the winner and applied.
    """
    rng = np.random.default_rng(5 + frozen)
    model, sid = "demo-lstm", 9000 + frozen
    labels = quantile_labels(triton_a, model)
    first = readings(rng, 1, FEATURES)
    steps = [readings(rng, int(n), FEATURES) for n in rng.integers(1, 3, size=12)]
    v2_infer(triton_a, model, first[None], sequence_id=sid, start=True)

    answers = send_steps(
        (triton_a, triton_b),
        model,
        sid,
        steps,
        spacing=0.02 if frozen else 0,
        frozen=redis_server if frozen else None,
    )

    stream = http.get(f"/v1/streams/v2:{sid}").json()
    assert stream["seq"] == len(first) + sum(len(s) for s in steps)
    order = linear_order(http, model, labels, first, steps, answers)
    assert sorted(order) == list(range(len(steps)))
    close(answers[order[-1]], rest_matrix(stream["forecast"], labels))


def test_steps_in_flight_apply_in_arrival_order(
    triton_a: Any, http: httpx.Client, redis_server: RedisServer
) -> None:
    """Steps that arrive one after another while the store is frozen apply in that order.

    Redis is paused, so every step is still in flight when the next one arrives.
    """
    rng = np.random.default_rng(8)
    model, sid = "demo-gru", "arrival-order"
    labels = quantile_labels(triton_a, model)
    first = readings(rng, 1, FEATURES)
    steps = [readings(rng, 1, FEATURES) for _ in range(6)]
    v2_infer(triton_a, model, first[None], sequence_id=sid, start=True)

    # 0.1 s apart: each request is sent and waits on the frozen store before the next.
    answers = send_steps((triton_a,), model, sid, steps, spacing=0.1, frozen=redis_server)

    assert linear_order(http, model, labels, first, steps, answers) == list(range(len(steps)))


# --- malformed requests -------------------------------------------------------------------


def _x(shape: list[int], data: Any, **extra: Any) -> dict[str, Any]:
    return {"name": "x", "datatype": "FP32", "shape": shape, "data": data, **extra}


def _timestamp(shape: list[int], data: list[float], datatype: str = "FP64") -> dict[str, Any]:
    return {"name": "timestamp", "datatype": datatype, "shape": shape, "data": data}


Case = tuple[bytes, dict[str, str], str]


def _json(fragment: str, *inputs: dict[str, Any], **body: Any) -> Case:
    """A JSON body of these ``inputs`` (on sequence ``SEQ`` unless ``parameters`` says
    otherwise), and what the error must say about it."""
    request = {"inputs": list(inputs), **body}
    request.setdefault("parameters", SEQ)
    return json.dumps(request).encode(), {}, fragment


def _binary(
    json_part: dict[str, Any], tensors: bytes, fragment: str, *, header_length: int | None = None
) -> Case:
    """A binary-extension body, its header, and what the error must say about it."""
    head = json.dumps(json_part).encode()
    length = len(head) if header_length is None else header_length
    return head + tensors, {"Inference-Header-Content-Length": str(length)}, fragment


def _binary_x(declared: int, tensors: bytes, fragment: str) -> Case:
    """``x`` [1, 1, 2] as binary data that declares ``declared`` bytes and sends ``tensors``."""
    x = {
        "name": "x",
        "datatype": "FP32",
        "shape": [1, 1, 2],
        "parameters": {"binary_data_size": declared},
    }
    return _binary({"inputs": [x], "parameters": SEQ}, tensors, fragment)


SEQ = {"sequence_id": 31337, "sequence_start": False, "sequence_end": False}
TWO = np.array([[[1.0, 2.0]]], dtype="<f4").tobytes()
ONE_STEP = _x([1, 1, 2], [1, 2])

MALFORMED: dict[str, Case] = {
    "wrong x datatype": _json("datatype FP32", {**ONE_STEP, "datatype": "FP64"}),
    "wrong timestamp datatype": _json(
        "datatype FP64", ONE_STEP, _timestamp([1, 1], [5], datatype="INT64")
    ),
    "shape/data mismatch": _json("needs 2 element(s)", _x([1, 1, 2], [1, 2, 3])),
    "wrong feature count": _json("[B, T, 2]", _x([1, 1, 3], [1, 2, 3])),
    "rank 2": _json("[B, T, 2]", _x([1, 2], [1, 2])),
    "timestamp shape": _json(
        "'timestamp' must have shape [1, 1]", ONE_STEP, _timestamp([1, 2], [5, 6])
    ),
    "unknown input": _json(
        "unknown input 'state'",
        ONE_STEP,
        {"name": "state", "datatype": "FP32", "shape": [1, 1], "data": [0]},
    ),
    "unknown output": _json(
        "unknown output 'state_out'", ONE_STEP, outputs=[{"name": "state_out"}]
    ),
    "missing x": _json("'x' is required", _timestamp([1, 1], [5])),
    "x twice": _json("given twice", ONE_STEP, ONE_STEP),
    "non-numeric data": _json("must hold numbers", _x([1, 1, 2], [1, "2"])),
    "NaN reading": (
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 2], "data": [1, NaN]}],'
        b' "parameters": {"sequence_id": 31337}}',
        {},
        "NaN and Infinity are not numbers in JSON",
    ),
    "not JSON": (b"{inputs: ", {}, "not valid JSON"),
    "binary size disagrees with shape": _binary_x(12, TWO + b"\0\0\0\0", "takes 8 bytes"),
    "binary part shorter than declared": _binary_x(8, TWO[:6], "holds only 6"),
    "binary part longer than declared": _binary_x(8, TWO + b"\0" * 4, "add up to 8"),
    "header length beyond the body": _binary(
        {"inputs": [ONE_STEP], "parameters": SEQ},
        b"",
        "Inference-Header-Content-Length",
        header_length=10_000,
    ),
    "batch of two in a sequence": _json("batch size 1", _x([2, 1, 2], [1, 2, 3, 4])),
    "negative sequence id": _json("unsigned", ONE_STEP, parameters={"sequence_id": -3}),
    "sequence id with a newline": _json(
        "control character", ONE_STEP, parameters={"sequence_id": "a\nb"}
    ),
    "sequence id of 257 bytes": _json(
        "257 bytes", ONE_STEP, parameters={"sequence_id": "\u00fc" * 128 + "x"}
    ),
    "start without an id": _json(
        "non-zero sequence_id", ONE_STEP, parameters={"sequence_start": True}
    ),
    "timestamps out of order": _json(
        "strictly increasing", _x([1, 2, 2], [1, 2, 3, 4]), _timestamp([1, 2], [T0, T0])
    ),
}


def test_malformed_requests_get_400_and_change_nothing(
    triton_a: Any, http: httpx.Client, store: redis.Redis
) -> None:
    key = stream_key("fcst", "default", "v2:31337")
    v2_infer(
        triton_a, "demo-lstm", np.ones((1, 2, FEATURES), np.float32), sequence_id=31337, start=True
    )
    before = store.get(key)
    assert before is not None

    for case, (body, headers, fragment) in MALFORMED.items():
        r = http.post("/v2/models/demo-lstm/infer", content=body, headers=headers)
        assert r.status_code == 400, (case, r.text)
        error = r.json()["error"]
        assert isinstance(error, str), case
        assert fragment in error, (case, error)
        assert store.get(key) == before, case

    # A step on a sequence that was never started creates nothing.
    unknown = {"inputs": [_x([1, 1, 2], [1, 2])], "parameters": {"sequence_id": 777}}
    r = http.post("/v2/models/demo-lstm/infer", json=unknown)
    assert r.status_code == 400
    assert "not active" in r.json()["error"]
    assert store.get(stream_key("fcst", "default", "v2:777")) is None

    # A sequence belongs to the model that started it.
    r = http.post(
        "/v2/models/demo-gru/infer",
        json={"inputs": [_x([1, 1, 2], [1, 2])], "parameters": SEQ},
    )
    assert r.status_code == 400
    assert "demo-lstm" in r.json()["error"]
    assert store.get(key) == before

    # tritonclient sees the same errors as exceptions carrying the status and the message.
    wrong = httpclient.InferInput("x", [1, 1, FEATURES], "FP64")
    wrong.set_data_from_numpy(np.ones((1, 1, FEATURES), np.float64))
    with pytest.raises(InferenceServerException) as caught:
        triton_a.infer("demo-lstm", [wrong], sequence_id=31337)
    assert caught.value.status() == "400"
    assert "datatype FP32" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        v2_infer(triton_a, "no-such-model", np.ones((1, 1, FEATURES), np.float32))
    assert caught.value.status() == "404"
    assert store.get(key) == before

    # The same stream still takes a good step, which does change it.
    v2_infer(triton_a, "demo-lstm", np.ones((1, 1, FEATURES), np.float32), sequence_id=31337)
    assert store.get(key) != before


# --- tenants ------------------------------------------------------------------------------

KEYS = {"acme": "acme-key-0123456789", "globex": "globex-key-0123456789"}


async def test_sequence_ids_are_scoped_to_the_callers_tenant(repository: Path) -> None:
    """The same sequence id from two tenants names two streams; errors keep the v2 form."""
    from litestar.testing import AsyncTestClient

    from service.app import create_app
    from service.settings import Settings

    settings = Settings(
        model_repository=repository,
        providers="cpu",
        api_keys=[{"key": key, "tenant": tenant, "role": "write"} for tenant, key in KEYS.items()],
    )

    def step(value: float, **flags: bool) -> dict[str, Any]:
        x = _x([1, 1, FEATURES], [value, value])
        return {"inputs": [x], "parameters": {"sequence_id": 5, **flags}}

    async with AsyncTestClient(app=create_app(settings)) as client:
        url = "/v2/models/demo-gru/infer"
        acme, globex = ({"x-api-key": KEYS[t]} for t in ("acme", "globex"))
        r = await client.post(url, json=step(1.0, sequence_start=True), headers=acme)
        assert r.status_code == 200, r.text
        # Globex has no sequence 5, whatever acme does.
        r = await client.post(url, json=step(2.0), headers=globex)
        assert r.status_code == 400
        assert "not active" in r.json()["error"]
        r = await client.post(url, json=step(2.0, sequence_start=True), headers=globex)
        assert r.status_code == 200, r.text
        r = await client.post(url, json=step(3.0), headers=acme)
        assert r.status_code == 200, r.text
        seen = {}
        for tenant, headers in (("acme", acme), ("globex", globex)):
            r = await client.get("/v1/streams/v2:5", headers=headers)
            seen[tenant] = r.json()["seq"]
        assert seen == {"acme": 2, "globex": 1}

        r = await client.post(url, json=step(1.0))
        assert r.status_code == 401
        assert isinstance(r.json()["error"], str)
