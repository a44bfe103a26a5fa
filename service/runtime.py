"""One ONNX model version: its onnxruntime session, provider choice and checked I/O.

A session is created once per model version at start-up (before readiness), checked against
the manifest and the contract, and then only ``run``: onnxruntime sessions are stateless and
safe to call from several threads, so every stream's state travels in and out as arrays.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import hashlib
import logging
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import ValidationError

from service import tracing
from service.contract import check_signature
from service.errors import InvalidInput, ModelFailed, ModelNotReady, ModelRefused
from service.manifest import (
    INPUT_STATE,
    INPUT_TIME,
    INPUT_X,
    MANIFEST_FILE,
    ONNX_FILE,
    OUTPUT_FORECAST,
    OUTPUT_STATE,
    Manifest,
)

logger = logging.getLogger(__name__)

ProviderSetting = Literal["auto", "cuda", "cpu"]
FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
#: onnxruntime log severity for our sessions: errors only (3), no per-node placement chatter.
_SESSION_LOG_SEVERITY = 3
#: A call of at least this many batch x time steps hands its arena growth back afterwards.
#: onnxruntime's CPU arena otherwise keeps the peak of the largest call for the life of the
#: process (measured here: a 100-window stateless call of T = 512 on taylor-lstm left 130 MB
#: resident for good); one-step updates stay far below this and keep the arena warm.
_SHRINK_ARENA_STEPS = 4096


class ModelRuntime:
    """A loaded, contract-checked model version, ready to run."""

    def __init__(self, manifest: Manifest, session: ort.InferenceSession) -> None:
        self.manifest = manifest
        self.name = manifest.name
        self.version = manifest.version
        #: sha256 of the ONNX file; a stream's state is only fed back to the same fingerprint.
        self.fingerprint = manifest.sha256
        #: Execution providers the session really uses, best first.
        self.providers: list[str] = list(session.get_providers())
        self.n_features = manifest.n_features
        self.state_size = manifest.state_size
        self.horizon = manifest.horizon
        self.n_quantiles = len(manifest.quantiles)
        #: The graph reads each observation's time (input ``time``, float64 epoch seconds).
        self.takes_time = manifest.time_input
        initial = (
            np.zeros(self.state_size, dtype=np.float32)
            if manifest.initial_state is None
            else np.asarray(manifest.initial_state, dtype=np.float32)
        )
        initial.setflags(write=False)  # shared by every new stream: nobody may edit it
        #: State row [S] of a stream that has seen no observation yet.
        self.initial_state: FloatArray = initial
        self._session: ort.InferenceSession | None = session
        self._outputs = [OUTPUT_FORECAST, OUTPUT_STATE]
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def __repr__(self) -> str:
        return (
            f"ModelRuntime({self.name!r}, version={self.version}, "
            f"fingerprint={self.fingerprint[:12]}, providers={self.providers})"
        )

    @property
    def closed(self) -> bool:
        return self._session is None

    def initial_states(self, batch: int) -> FloatArray:
        """A fresh [batch, S] state matrix, every row the initial state."""
        return np.tile(self.initial_state, (batch, 1))

    def run(
        self, x: npt.ArrayLike, state: npt.ArrayLike, time: npt.ArrayLike | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Apply ``x`` [B, T, F] to ``state`` [B, S]: forecast [B, H, Q] and state_out [B, S].

        ``time`` [B, T] holds each observation's epoch seconds. The service always has them
        and always passes them; only a graph with the time input (``takes_time``) gets them,
        and such a graph cannot run without them.

        Arrays that are already C-contiguous float32 (float64 for ``time``) pass through
        without a copy. Values are not checked for NaN here (that is the request layer's job,
        once per request).

        Raises:
            InvalidInput: a shape that does not fit the model, or no times for a graph that
                reads them.
            ModelNotReady: the runtime was closed.
            ModelFailed: onnxruntime failed (logged with its traceback).
        """
        session = self._session
        if session is None:
            raise ModelNotReady(f"model {self.name!r} version {self.version} is unloaded")
        x_arr = np.ascontiguousarray(x, dtype=np.float32)
        state_arr = np.ascontiguousarray(state, dtype=np.float32)
        if x_arr.ndim != 3 or x_arr.shape[2] != self.n_features or 0 in x_arr.shape[:2]:
            raise InvalidInput(
                f"x must be [B, T, {self.n_features}] with B, T >= 1, got {list(x_arr.shape)}",
                field=INPUT_X,
            )
        if state_arr.shape != (x_arr.shape[0], self.state_size):
            raise InvalidInput(
                f"state must be [{x_arr.shape[0]}, {self.state_size}], got {list(state_arr.shape)}",
                field=INPUT_STATE,
            )
        feeds: dict[str, npt.NDArray[np.float32] | TimeArray] = {
            INPUT_X: x_arr,
            INPUT_STATE: state_arr,
        }
        if self.takes_time:
            if time is None:
                raise InvalidInput(
                    f"model {self.name!r} reads each observation's time; none was given",
                    field=INPUT_TIME,
                )
            time_arr = np.ascontiguousarray(time, dtype=np.float64)
            if time_arr.shape != x_arr.shape[:2]:
                raise InvalidInput(
                    f"time must be [{x_arr.shape[0]}, {x_arr.shape[1]}], got "
                    f"{list(time_arr.shape)}",
                    field=INPUT_TIME,
                )
            feeds[INPUT_TIME] = time_arr
        with tracing.span(
            f"infer {self.name}",
            {
                "model.name": self.name,
                "model.version": self.version,
                "model.batch": int(x_arr.shape[0]),
                "model.steps": int(x_arr.shape[1]),
            },
        ):
            try:
                large = x_arr.shape[0] * x_arr.shape[1] >= _SHRINK_ARENA_STEPS
                forecast, state_out = session.run(
                    self._outputs, feeds, self._shrink if large else None
                )
            except Exception as exc:  # onnxruntime raises its own pybind classes, no public base
                logger.exception("model %s version %s failed to run", self.name, self.version)
                raise ModelFailed(
                    f"model {self.name!r} version {self.version} failed to run: {_first_line(exc)}"
                ) from exc
        return forecast, state_out

    async def run_async(
        self, x: npt.ArrayLike, state: npt.ArrayLike, time: npt.ArrayLike | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """:meth:`run` in a worker thread; onnxruntime releases the GIL, the loop stays free."""
        return await asyncio.to_thread(self.run, x, state, time)

    def close(self) -> None:
        """Drop the session; calls in flight finish, later ones raise ModelNotReady."""
        self._session = None


def load_runtime(
    directory: Path, *, providers: ProviderSetting = "cpu", threads: int = 0
) -> ModelRuntime:
    """Load the model version in ``directory`` (``model.json`` + ``model.onnx``).

    Args:
        directory: A version directory of a model repository.
        providers: ``"cpu"``; ``"auto"`` (CUDA when it really works, else CPU, quietly);
            ``"cuda"`` (CUDA, falling back to CPU with a WARNING when it cannot be used).
        threads: onnxruntime intra-op threads; 0 lets onnxruntime choose.

    Raises:
        ModelRefused: the manifest is missing or invalid, the ONNX file's sha256 differs from
            the manifest's, onnxruntime cannot load the graph, or the graph breaks the
            contract. The message says which.
    """
    manifest = _read_manifest(directory)
    onnx_path = directory / ONNX_FILE
    try:
        model_bytes = onnx_path.read_bytes()
    except OSError as exc:
        raise ModelRefused(f"cannot read {onnx_path}: {exc.strerror or exc}") from exc
    # Hash the very bytes the session is built from: no window for the file to change between.
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != manifest.sha256:
        raise ModelRefused(
            f"{onnx_path} has sha256 {digest}, the manifest says {manifest.sha256}: "
            "the graph is not the one the manifest describes"
        )

    session = _create_session(model_bytes, onnx_path, manifest, providers, threads)
    check_signature(session.get_inputs(), session.get_outputs(), manifest)
    runtime = ModelRuntime(manifest, session)
    _smoke_test(runtime)
    logger.info(
        "loaded model %s version %d (%s, sha256 %s) on %s",
        manifest.name,
        manifest.version,
        manifest.kind,
        manifest.sha256[:12],
        ", ".join(runtime.providers),
    )
    return runtime


def _create_session(
    model_bytes: bytes,
    onnx_path: Path,
    manifest: Manifest,
    setting: ProviderSetting,
    threads: int,
) -> ort.InferenceSession:
    """A session on the providers ``setting`` asks for, falling back from CUDA to CPU."""
    options = ort.SessionOptions()
    options.log_severity_level = _SESSION_LOG_SEVERITY
    if threads > 0:
        options.intra_op_num_threads = threads
    # onnxruntime's worker threads otherwise spin for a while after every call, taking the
    # cores the event loop and the store need (measured here: the store's compare-and-set
    # ~30% slower right after a model call, the model call itself no faster).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    wanted = _wanted_providers(setting, manifest)
    try:
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=wanted)
    except Exception as exc:  # onnxruntime raises its own pybind classes, not a public base
        if CUDA not in wanted:
            raise ModelRefused(f"onnxruntime cannot load {onnx_path}: {_first_line(exc)}") from exc
        _report_no_cuda(setting, manifest, f"the CUDA session failed: {_first_line(exc)}")
        return _create_session(model_bytes, onnx_path, manifest, "cpu", threads)
    # onnxruntime may quietly drop CUDA while creating the session: its list has the last say.
    if CUDA in wanted and CUDA not in session.get_providers():
        _report_no_cuda(setting, manifest, "onnxruntime fell back to CPU creating the session")
    return session


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_FILE
    try:
        return Manifest.read(directory)
    except FileNotFoundError as exc:
        raise ModelRefused(f"no manifest: {path} does not exist") from exc
    except OSError as exc:
        raise ModelRefused(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'document'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ModelRefused(f"invalid manifest {path}: {problems}") from exc


def _wanted_providers(setting: ProviderSetting, manifest: Manifest) -> list[str]:
    if setting == "cpu":
        return [CPU]
    usable, reason = cuda_usable()
    if not usable:
        _report_no_cuda(setting, manifest, reason)
        return [CPU]
    return [CUDA, CPU]


def _report_no_cuda(setting: ProviderSetting, manifest: Manifest, reason: str) -> None:
    # Asking for CUDA explicitly and not getting it deserves a warning; "auto" just says so.
    level = logging.WARNING if setting == "cuda" else logging.DEBUG
    logger.log(
        level,
        "CUDA requested (providers=%s) for model %s version %d but it cannot be used: %s; "
        "running on CPU",
        setting,
        manifest.name,
        manifest.version,
        reason,
    )


@functools.cache
def cuda_usable() -> tuple[bool, str]:
    """Whether a CUDA session can possibly work here, and why not (checked once per process).

    onnxruntime-gpu lists ``CUDAExecutionProvider`` as available whether or not the machine
    has a GPU, and trying it without one prints error lines from native code. So before
    trying, ask the CUDA driver itself (``cuInit`` + ``cuDeviceGetCount``) for a device.
    Even when this says yes, the session's own provider list has the last word.
    """
    if CUDA not in ort.get_available_providers():
        return False, f"this onnxruntime build has no {CUDA}"
    candidates = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    found = ctypes.util.find_library("cuda")
    if found:
        candidates.append(found)
    driver: ctypes.CDLL | None = None
    for candidate in candidates:
        try:
            driver = ctypes.CDLL(candidate)
            break
        except OSError:
            continue
    if driver is None:
        return False, "no CUDA driver library (libcuda) on this machine"
    try:
        status = driver.cuInit(0)
        if status != 0:
            return False, f"the CUDA driver failed to initialise (cuInit error {status})"
        count = ctypes.c_int(0)
        status = driver.cuDeviceGetCount(ctypes.byref(count))
    except AttributeError:
        return False, "the CUDA driver library lacks cuInit/cuDeviceGetCount"
    if status != 0:
        return False, f"the CUDA driver cannot count devices (error {status})"
    if count.value < 1:
        return False, "the CUDA driver sees no GPU"
    return True, f"{count.value} GPU(s) visible to the CUDA driver"


def _smoke_test(runtime: ModelRuntime) -> None:
    """Run B=2, T=3 once: shape inference can lie, a real call cannot."""
    batch, steps = 2, 3
    x = np.zeros((batch, steps, runtime.n_features), dtype=np.float32)
    # Any real times will do: an hour apart, from 2026-01-01 UTC.
    time = np.broadcast_to(1_767_225_600.0 + 3600.0 * np.arange(steps), (batch, steps))
    try:
        forecast, state_out = runtime.run(x, runtime.initial_states(batch), time)
    except Exception as exc:
        raise ModelRefused(
            f"model {runtime.name} version {runtime.version} fails a trial run with "
            f"batch {batch}, time {steps}: {exc}"
        ) from exc
    expected_forecast = (batch, runtime.horizon, runtime.n_quantiles)
    if forecast.shape != expected_forecast or state_out.shape != (batch, runtime.state_size):
        raise ModelRefused(
            f"model {runtime.name} version {runtime.version} returned forecast "
            f"{list(forecast.shape)} and state_out {list(state_out.shape)} for batch {batch}, "
            f"expected {list(expected_forecast)} and {[batch, runtime.state_size]}"
        )
    if forecast.dtype != np.float32 or state_out.dtype != np.float32:
        raise ModelRefused(f"model {runtime.name} returned non-float32 outputs")
    if not (np.all(np.isfinite(forecast)) and np.all(np.isfinite(state_out))):
        raise ModelRefused(
            f"model {runtime.name} version {runtime.version} returns non-finite values "
            "from its initial state"
        )
