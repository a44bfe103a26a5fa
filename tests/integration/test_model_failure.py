"""A model that fails inside onnxruntime is a 503 on every interface, never a 500.

The graph here passes the load-time trial run (B = 2, T = 3) but needs exactly three
readings per call, so one reading makes onnxruntime raise: a model the service cannot
run on a request the contract accepts. The failure is logged where it happens.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from litestar.testing import TestClient
from onnx import TensorProto, helper, numpy_helper

from service.app import create_app
from service.manifest import ONNX_FILE, Manifest, file_sha256
from service.settings import Settings

T0 = 1_800_000_000.0


def build_fragile_model(directory: Path) -> None:
    directory.mkdir(parents=True)
    consts = [
        numpy_helper.from_array(np.array([0, 3], dtype=np.int64), "shape"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.zeros((1, 2, 3), dtype=np.float32), "zeros"),
    ]
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["three"]),  # [B, 3]: only when T = 3
        helper.make_node("ReduceSum", ["three", "axis1"], ["total"], keepdims=1),
        helper.make_node("Add", ["state", "total"], ["state_out"]),
        helper.make_node("Unsqueeze", ["state_out", "axis2"], ["level"]),
        helper.make_node("Add", ["level", "zeros"], ["forecast"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fragile",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 1]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, ["B", 1]),
        ],
        [
            helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["B", 2, 3]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, ["B", 1]),
        ],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, directory / ONNX_FILE)
    Manifest(
        name="fragile",
        version=1,
        kind="rnn",
        features=["value"],
        target="value",
        frequency=3600.0,
        horizon=2,
        quantiles=[0.1, 0.5, 0.9],
        state_size=1,
        sha256=file_sha256(directory / ONNX_FILE),
        opset=17,
        description="test graph that needs exactly three readings per call",
    ).write(directory)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Any]]:
    repository = tmp_path / "models"
    build_fragile_model(repository / "fragile" / "1")
    settings = Settings(model_repository=repository, providers="cpu")
    with TestClient(app=create_app(settings)) as c:
        yield c


def readings(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"timestamp": T0 + 3600.0 * (start + i), "value": 1.0} for i in range(n)]


def test_a_model_failing_in_onnxruntime_is_a_503_everywhere(
    client: TestClient[Any], caplog: pytest.LogCaptureFixture
) -> None:
    r = client.post("/v1/models/fragile/forecast", json={"series": [{"observations": readings(3)}]})
    assert r.status_code == 200, r.text  # the calls it can make still work
    with caplog.at_level(logging.ERROR, logger="service.runtime"):
        r = client.post(
            "/v1/models/fragile/forecast", json={"series": [{"observations": readings(1)}]}
        )
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "model-failed"
    assert "failed to run" in caplog.text

    assert client.put("/v1/streams/f", json={"model": "fragile"}).status_code == 201
    before = client.get("/v1/streams/f").json()
    r = client.post("/v1/streams/f/observations", json={"observations": readings(1)})
    assert (r.status_code, r.json()["code"]) == (503, "model-failed")
    bulk = {"streams": [{"id": 1, "stream_id": "f", "observations": readings(1)}]}
    (answer,) = client.post("/v1/observations", json=bulk).json()["results"]
    assert (answer["status"], answer["error"]["code"]) == (503, "model-failed")
    with client.websocket_connect("/v1/ws") as ws:
        ws.send_text(json.dumps({"id": "w", "stream_id": "f", "observations": readings(1)}))
        answer = json.loads(ws.receive_text())
    assert (answer["id"], answer["status"]) == ("w", 503)
    step = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 1], "data": [1.0]}]}
    r = client.post("/v2/models/fragile/infer", json=step)
    assert r.status_code == 503
    assert "failed to run" in r.json()["error"]
    assert client.get("/v1/streams/f").json() == before
