"""The KServe Open Inference Protocol v2 (HTTP and gRPC), as a thin layer over the core.

Triton, KServe and MLServer clients (``tritonclient``, ``perf_analyzer``) talk to this router
unchanged. Every inference goes through the same :class:`~service.forecaster.Forecaster` as
the REST API: this module only translates tensors and sequence flags into its calls.

How the protocol maps onto the service
--------------------------------------
Tensors (row-major, little-endian; JSON ``data`` flat or nested, or the binary extension):

- input ``x``, FP32, shape ``[B, T, F]``: T new readings of the model's F features for B
  series. Only rank 3 is accepted (the shape the metadata advertises), so a request never
  means two things.
- optional input ``timestamp``, FP64, shape ``[B, T]``: epoch seconds of each reading.
- output ``forecast``, FP32, shape ``[B, H, Q]``: H future steps, Q quantiles (the order of
  the config's ``quantiles`` parameter). The recurrent ``state`` is never exposed.

Without ``parameters.sequence_id`` (or with 0 / ``""``, Triton's "no sequence") an inference
is a stateless forecast of B whole series from the initial state.

With a ``sequence_id`` (unsigned 64-bit integer, or a string of the stream id rule of
``service.ids``: any text of 1-256 UTF-8 bytes without control characters, so ``"Kühlhaus 3"``
and ``"plant/line-1"`` are sequence ids) the request is one step of a stream of the caller's
tenant, and B must be 1 (as in Triton's sequence batcher). Sequence ids live in their own
namespace of stream ids, so they never collide with REST streams: the integer 42 is stream
``v2:42`` and the string ``"pump-7"`` is stream ``v2:s:pump-7``; the REST API can read or
delete them under those ids (percent-encoded in the path).

- ``sequence_start`` (re)creates the stream from the initial state, bound to the model (and
  version) of the URL, then applies the step; a start on an active id resets it.
- A step without start on an unknown (never started, ended or idle-expired) id is a 400.
- ``sequence_end`` applies the step, returns its forecast, then forgets the stream.
- Steps of one sequence apply in arrival order, each exactly once, even when several are in
  flight: within a process a FIFO lock per sequence orders them; across processes the core's
  compare-and-set does.

Time. The core de-duplicates by timestamp (a reading at or before the stream's last one is
skipped), which is what makes at-least-once senders safe. A request carrying ``timestamp``
gets exactly that: a retried step is skipped and answered with the current forecast. Triton
clients send no time at all, so for them the core stamps each step itself, under the same
compare-and-set as the state it makes: the request's last reading one model period after the
stream's last timestamp (0 for a fresh stream), its earlier readings evenly in between. Every
step therefore moves the stream's clock by one period, whatever its T; a step that lost a
race with another replica is stamped again after the winner and applied. Such a step is not
idempotent: a client that retries a step it already sent must send ``timestamp`` to be
de-duplicated.

Load tools: ``perf_analyzer`` fills every input the metadata lists, ``timestamp`` included;
give it ``--input-data`` with ``x`` alone (or real increasing times), or random times will
make most sequence steps duplicates that are skipped rather than applied.

Errors are non-200 with ``{"error": "..."}`` over HTTP (every path under ``/v2``, unknown
routes and methods included; REST keeps problem+json) and a status code with the same message
over gRPC, from one table (``errors``). Bad requests are rejected before any state is touched.

Transports. HTTP routes under ``/v2`` (``http``); gRPC, Triton's ``inference.GRPCInferenceService``
from its published .proto, on ``FORECAST_GRPC_PORT`` (``grpc_server``; off when 0), with
``ModelStreamInfer`` for streamed sequences. Both decode into the same wire model (``wire``),
run the same steps (``sequences``, one lock table per app), describe models the same way
(``describe``) and serve the repository extension on the admin lifecycle (``repository``).
"""

from service.api.kserve.describe import EXTENSIONS, model_config, model_metadata
from service.api.kserve.http import HEADER_LENGTH, KServeController, encode_response, split_body
from service.api.kserve.http import v2_router as v2_router
from service.api.kserve.sequences import STREAM_PREFIX, V2, SequenceLocks, V2Options
from service.api.kserve.wire import INPUT_TIMESTAMP, InferRequest, SequenceControl, check_request

__all__ = [
    "EXTENSIONS",
    "HEADER_LENGTH",
    "INPUT_TIMESTAMP",
    "STREAM_PREFIX",
    "V2",
    "InferRequest",
    "KServeController",
    "SequenceControl",
    "SequenceLocks",
    "V2Options",
    "check_request",
    "encode_response",
    "model_config",
    "model_metadata",
    "split_body",
    "v2_router",
]
