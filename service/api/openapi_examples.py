"""Examples of the OpenAPI document's bodies and answers, by schema name (applied by
``service.api.openapi_complete``; each is checked against its schema by the tests).

Times appear in both forms a request may give them: RFC 3339 text and epoch seconds.
"""

from __future__ import annotations

from typing import Any, Final

T1: Final = "2026-11-23T08:00:00Z"
#: One hour after T1, as epoch seconds: both forms of a time appear in the examples.
T2: Final = 1_795_420_800 + 3600
_READINGS: Final = [
    {"timestamp": T1, "values": [412.5, 7.5]},
    {"timestamp": T2, "values": [418.0, 7.1]},
]
_STEP: Final = {
    "step": 1,
    "timestamp": "2026-11-23T10:00:00Z",
    "median": 421.3,
    "quantiles": {"0.1": 401.2, "0.5": 421.3, "0.9": 440.8},
}
_FORECAST: Final = {
    "model": {"name": "demo-lstm", "version": 1},
    "target": "load",
    "origin": "2026-11-23T09:00:00Z",
    "steps": [_STEP],
}
_STREAM: Final = {
    "stream_id": "pump-7",
    "model": {"name": "demo-lstm", "version": 1},
    "seq": 2,
    "last_timestamp": "2026-11-23T09:00:00Z",
    "forecast": _FORECAST,
}
_OBSERVED: Final = {**_STREAM, "applied": 2, "skipped": [], "filled": 0, "missing": 0}
_SUMMARY: Final = {
    "name": "demo-lstm",
    "version": 1,
    "kind": "lstm",
    "features": ["load", "temp"],
    "target": "load",
    "frequency": 3600.0,
    "horizon": 4,
    "quantiles": [0.1, 0.5, 0.9],
    "state_size": 16,
    "fingerprint": "9da219e2b5b273e42634078b6fe6b97b0a7711188da406e0ef084ad40e37c609",
    "providers": ["CPUExecutionProvider"],
    "description": "Hourly load of one plant.",
}

#: Example of each named schema, wherever a body or an answer is of that schema. No nulls:
#: the document's serialiser drops them (an example with one would not fit its schema).
EXAMPLES: Final[dict[str, Any]] = {
    "ObserveRequest": {"observations": _READINGS},
    "StreamCreate": {"model": "demo-lstm", "history": _READINGS},
    "ForecastRequest": {"series": [{"id": "plant-1", "observations": _READINGS}]},
    "BulkObserveRequest": {
        "streams": [{"stream_id": "pump-7", "observations": _READINGS[1:]}],
        "detail": "full",
    },
    "ObserveOut": _OBSERVED,
    "StreamDetailOut": _STREAM,
    "ForecastResponse": {"forecasts": [{"id": "plant-1", **_FORECAST}]},
    "BulkObserveResponse": {
        "results": [
            {
                "stream_id": "pump-7",
                "status": 200,
                "result": _OBSERVED,
            }
        ]
    },
    "StreamListOut": {
        "streams": [
            {
                "stream_id": "pump-7",
                "model": {"name": "demo-lstm", "version": 1},
                "seq": 2,
                "last_timestamp": "2026-11-23T09:00:00Z",
            }
        ],
        "next_cursor": "cHVtcC03",
    },
    "ModelsOut": {"models": [{"name": "demo-lstm", "versions": [1], "latest": _SUMMARY}]},
    "ModelDetailOut": {
        "name": "demo-lstm",
        "latest": 1,
        "versions": [
            {
                **_SUMMARY,
                "training": {"dataset": "taylor", "epochs": 40},
                "accuracy": {"mase": {"1": 0.61, "24": 0.94}},
                "live": {
                    "window_seconds": 3600.0,
                    "replica": "this process only (Prometheus sums every replica)",
                    "scored": 5120,
                    "unscored": 12,
                    "mae": 812.5,
                    "naive_mae": 1331.9,
                    "relative_mae": 0.61,
                    "coverage": 0.78,
                    "mean_pinball": 301.2,
                    "anomalies": 3,
                },
                "headline": "trained: no held-out MASE, live last hour: MAE / naive MAE "
                "0.61, interval coverage 78% over 5120 readings",
            }
        ],
    },
    "ReloadOut": {
        "loaded": ["demo-lstm/2"],
        "replaced": [],
        "unloaded": [],
        "unchanged": ["demo-gru/1"],
        "refused": {},
    },
    "VersionOut": {
        "name": "demo-lstm",
        "version": 2,
        "fingerprint": _SUMMARY["fingerprint"],
        "state": "loaded",
    },
    "LiveStatusOut": {"status": "ok"},
    "ReadinessOut": {
        "status": "ready",
        "models": {"demo-lstm/1": {"providers": ["CPUExecutionProvider"]}},
        "refused": {},
        "store": "ok",
    },
    "ServerMetadataOut": {
        "name": "stateful-forecast",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data", "model_repository", "sequence"],
    },
    "LiveOut": {"live": True},
    "ReadyOut": {"ready": True},
    "ModelMetadataOut": {
        "name": "demo-lstm",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [-1, -1, 2]},
            {"name": "timestamp", "datatype": "FP64", "shape": [-1, -1]},
        ],
        "outputs": [{"name": "forecast", "datatype": "FP32", "shape": [-1, 4, 3]}],
    },
    "ModelReadyOut": {"name": "demo-lstm", "version": "1", "ready": True},
    "ModelConfigOut": {
        "name": "demo-lstm",
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"all": {}},
        "max_batch_size": 64,
        "input": [
            {
                "name": "x",
                "data_type": "TYPE_FP32",
                "format": "FORMAT_NONE",
                "dims": [-1, 2],
                "optional": False,
            }
        ],
        "output": [{"name": "forecast", "data_type": "TYPE_FP32", "dims": [4, 3]}],
        "sequence_batching": {"max_sequence_idle_microseconds": 86_400_000_000},
        "default_model_filename": "model.onnx",
        "parameters": {"quantiles": {"string_value": "0.1,0.5,0.9"}},
    },
    "RepositoryIndexIn": {"ready": True},
    "RepositoryModelIn": {"parameters": {}},
    "RepositoryDoneOut": {},
    "RepositoryEntryOut": {"name": "demo-lstm", "version": "1", "state": "READY", "reason": ""},
}
V2_INFER_EXAMPLE: Final = {
    "id": "step-42",
    "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 2, 2], "data": [412.5, 7.5, 418.0, 7.1]}
    ],
    "parameters": {"sequence_id": 42, "sequence_start": True},
}
V2_ANSWER_EXAMPLE: Final = {
    "model_name": "demo-lstm",
    "model_version": "1",
    "id": "step-42",
    "outputs": [
        {"name": "forecast", "datatype": "FP32", "shape": [1, 1, 3], "data": [401.2, 421.3, 440.8]}
    ],
}


__all__ = ["EXAMPLES", "T1", "T2", "V2_ANSWER_EXAMPLE", "V2_INFER_EXAMPLE"]
