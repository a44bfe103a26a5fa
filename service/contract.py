"""Pure checks of the model contract (DESIGN.md, "The model contract").

Shared by the service, which refuses a non-conforming model at load, and by
``python -m models validate``, which refuses it before it is ever shipped. Nothing here
imports onnx or onnxruntime: a signature is anything with ``name``, ``type`` and ``shape``
(onnxruntime's ``NodeArg`` fits, and so does :class:`TensorSpec`), and a model is any
``run(x, state)`` callable, or ``run(x, state, time)`` for a graph with the time input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from service.errors import ModelRefused
from service.manifest import (
    INPUT_STATE,
    INPUT_TIME,
    INPUT_X,
    OUTPUT_FORECAST,
    OUTPUT_STATE,
    Manifest,
)

#: onnxruntime's spelling of a float32 tensor type.
FLOAT32 = "tensor(float)"
#: ... and of a float64 one (the optional ``time`` input).
FLOAT64 = "tensor(double)"

#: Relative error the step-parity invariant allows (DESIGN.md).
PARITY_TOLERANCE = 1e-4

Dim = int | str | None
FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]
#: ``run(x, state)``, or ``run(x, state, time)`` when a time array is given.
RunFn = Callable[..., tuple[FloatArray, FloatArray]]


class TensorSignature(Protocol):
    """One graph input or output as onnxruntime describes it (``NodeArg``)."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def shape(self) -> Sequence[Dim]: ...


@dataclass(frozen=True)
class TensorSpec:
    """A plain :class:`TensorSignature`, for callers that read the graph without onnxruntime."""

    name: str
    type: str
    shape: Sequence[Dim]


def _is_dynamic(dim: Dim) -> bool:
    # onnxruntime reports a symbolic axis as its name (str) and an unnamed one as None.
    return not isinstance(dim, int)


def check_signature(
    inputs: Sequence[TensorSignature],
    outputs: Sequence[TensorSignature],
    manifest: Manifest,
) -> None:
    """Refuse a graph whose inputs/outputs differ from the contract or from its manifest.

    The graph must have exactly inputs ``x`` float32 [B, T, F] and ``state`` float32 [B, S]
    (plus ``time`` float64 [B, T] when the manifest sets ``time_input``, and never otherwise),
    and exactly outputs ``forecast`` float32 [B, H, Q] and ``state_out`` float32 [B, S], with
    B and T dynamic and F, S, H, Q fixed to the manifest's values.

    Raises:
        ModelRefused: naming the first tensor and axis that breaks the contract.
    """
    n_features = manifest.n_features
    state_size = manifest.state_size
    horizon = manifest.horizon
    n_quantiles = len(manifest.quantiles)
    # Per tensor: the axes in order, each either "dynamic" or the fixed size and its meaning.
    expected_inputs: dict[str, list[tuple[str, int | None]]] = {
        INPUT_X: [("batch", None), ("time", None), ("features F", n_features)],
        INPUT_STATE: [("batch", None), ("state size S", state_size)],
    }
    types = dict.fromkeys((INPUT_X, INPUT_STATE, OUTPUT_FORECAST, OUTPUT_STATE), FLOAT32)
    if manifest.time_input:
        expected_inputs[INPUT_TIME] = [("batch", None), ("time", None)]
        types[INPUT_TIME] = FLOAT64
    expected_outputs: dict[str, list[tuple[str, int | None]]] = {
        OUTPUT_FORECAST: [("batch", None), ("horizon H", horizon), ("quantiles Q", n_quantiles)],
        OUTPUT_STATE: [("batch", None), ("state size S", state_size)],
    }
    _check_group("input", inputs, expected_inputs, types)
    _check_group("output", outputs, expected_outputs, types)


def _check_group(
    role: str,
    tensors: Sequence[TensorSignature],
    expected: dict[str, list[tuple[str, int | None]]],
    types: dict[str, str],
) -> None:
    names = [tensor.name for tensor in tensors]
    missing = [name for name in expected if name not in names]
    extra = [name for name in names if name not in expected]
    if missing or extra or len(names) != len(set(names)):
        wanted = ", ".join(expected)
        raise ModelRefused(
            f"graph {role}s are {names}, the contract needs exactly [{wanted}]"
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {extra})" if extra else "")
        )
    for tensor in tensors:
        axes = expected[tensor.name]
        wanted = types[tensor.name]
        if tensor.type != wanted:
            spelled = "float32" if wanted == FLOAT32 else "float64"
            raise ModelRefused(
                f"{role} {tensor.name!r} is {tensor.type}, the contract needs {spelled} ({wanted})"
            )
        shape = list(tensor.shape)
        if len(shape) != len(axes):
            layout = ", ".join(axis for axis, _ in axes)
            raise ModelRefused(
                f"{role} {tensor.name!r} has rank {len(shape)} (shape {shape}), "
                f"the contract needs rank {len(axes)}: [{layout}]"
            )
        for index, ((axis, size), dim) in enumerate(zip(axes, shape, strict=True)):
            if size is None and not _is_dynamic(dim):
                raise ModelRefused(
                    f"{role} {tensor.name!r} axis {index} ({axis}) is fixed to {dim}; "
                    "it must be dynamic"
                )
            if size is not None and dim != size:
                raise ModelRefused(
                    f"{role} {tensor.name!r} axis {index} ({axis}) is {dim!r}, "
                    f"the manifest says {size}"
                )


def relative_error(actual: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Largest ``|actual - reference| / max(1, |reference|)`` over all elements.

    Relative where the reference is large, absolute where it is near zero, so values close to
    zero (a state component, a centred forecast) neither blow the ratio up nor hide real
    differences. NaN anywhere gives ``inf``; empty arrays give 0.
    """
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    error = np.abs(a - b) / np.maximum(1.0, np.abs(b))
    if not np.all(np.isfinite(error)):
        return float("inf")
    return float(error.max())


def step_parity_error(
    run: RunFn, x: FloatArray, state: FloatArray, time: TimeArray | None = None
) -> float:
    """How far one-step-at-a-time inference drifts from whole-sequence inference.

    Feeds ``x`` [B, T, F] one observation at a time, carrying ``state_out`` into ``state``,
    and compares the last forecast and final state with one call on the whole sequence. The
    result is :func:`relative_error` (whole-sequence call as reference), maximised over the
    forecast and the final state; the contract requires it below :data:`PARITY_TOLERANCE`.
    With ``time`` [B, T] (a graph with the time input), each call gets its steps' times too.
    """
    if x.ndim != 3 or x.shape[1] < 1:
        raise ValueError(f"x must be [B, T, F] with T >= 1, got shape {x.shape}")
    if time is not None and time.shape != x.shape[:2]:
        raise ValueError(f"time must be [B, T] = {list(x.shape[:2])}, got {list(time.shape)}")

    def call(rows: slice, carried: FloatArray) -> tuple[FloatArray, FloatArray]:
        args: list[Any] = [np.ascontiguousarray(x[:, rows, :]), carried]
        if time is not None:
            args.append(np.ascontiguousarray(time[:, rows]))
        return run(*args)

    whole_forecast, whole_state = call(slice(None), state)
    carried = state
    step_forecast = whole_forecast
    for t in range(x.shape[1]):
        step_forecast, carried = call(slice(t, t + 1), carried)
    return max(
        relative_error(step_forecast, whole_forecast),
        relative_error(carried, whole_state),
    )
