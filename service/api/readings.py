"""A stream's recent readings, for ``GET /v1/streams/{id}?readings=N`` (the live page's chart).

A stream's record keeps its last ``FORECAST_HISTORY_LENGTH`` readings as the model was fed
them (for replay under new weights and for gap filling), so showing them costs no new
storage and no extra write: only this read, when a client asks for them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec
import numpy as np
from litestar.params import QueryParameter

from service.api.schemas import AnomalyOut, StreamOut, anomaly_out, from_epoch, stream_out
from service.errors import StateMismatch, UnknownStream
from service.forecaster import Forecaster, StreamView
from service.state.record import RecordError, StreamRecord

#: More than any record keeps (``Settings.history_length`` is at most 4096).
MAX_READINGS: Final = 4096
#: Reads of the record that may lose a race with a writer before the answer gives up on
#: pairing the readings with the same position as the rest of the answer.
_ATTEMPTS: Final = 3

ReadingsQuery = Annotated[
    int,
    QueryParameter(
        ge=0,
        le=MAX_READINGS,
        description=(
            "Also answer the stream's most recent readings, up to this many (oldest first). "
            "The stream keeps the last FORECAST_HISTORY_LENGTH (48 by default) readings as the "
            "model was fed them, gap-filled ones included; 0 (the default) leaves them out."
        ),
    ),
]


class ReadingOut(msgspec.Struct):
    """One reading as the model was fed it."""

    timestamp: datetime
    values: Annotated[
        list[float], msgspec.Meta(description="One value per model feature, in its order.")
    ]
    anomaly: Annotated[
        bool,
        msgspec.Meta(
            description=(
                "Flagged as an anomaly when it arrived (kept for the stream's last 64 rows; "
                "older ones and rows filled into gaps read false)."
            )
        ),
    ] = False


class StreamDetailOut(StreamOut, omit_defaults=True):
    """A stream's position and latest forecast, with its recent readings when asked."""

    readings: Annotated[
        list[ReadingOut] | None,
        msgspec.Meta(
            description="The most recent readings, oldest first (only with ?readings=N > 0)."
        ),
    ] = None
    last_anomaly: Annotated[
        AnomalyOut | None,
        msgspec.Meta(description="The stream's most recent anomalous reading (absent: none)."),
    ] = None


def readings_out(record: StreamRecord, limit: int, until: float | None = None) -> list[ReadingOut]:
    """The last ``limit`` readings the record keeps (those up to ``until`` if given), values
    at float32's own precision."""
    if limit <= 0 or record.history_ts is None or record.history_values is None:
        return []
    times, values = record.history_ts, record.history_values
    total = len(times)
    bits = record.anomaly_bits
    flags = [0 <= total - 1 - r < 64 and bool(bits >> (total - 1 - r) & 1) for r in range(total)]
    if until is not None:
        keep = int(np.searchsorted(times, until, side="right"))
        times, values, flags = times[:keep], values[:keep], flags[:keep]
    # str() of a float32 is its shortest form: 0.1, not 0.10000000149011612.
    rows = [[float(str(v)) for v in row] for row in values[-limit:]]
    times = times[-limit:].tolist()
    return [
        ReadingOut(timestamp=stamp, values=row, anomaly=flag)
        for stamp, row, flag in zip(map(_at, times), rows, flags[-limit:], strict=True)
    ]


def _at(epoch: float) -> datetime:
    at = from_epoch(epoch)
    assert at is not None
    return at


async def stream_with_readings(
    forecaster: Forecaster, tenant: str, stream_id: str, limit: int
) -> StreamDetailOut:
    """The stream as ``GET`` answers it, and its readings from a record at the same position.

    The readings come from a second read of the record (the core's view does not carry
    them). Should a writer land between the two reads, both are read again; should it keep
    landing, the readings are cut at the answer's ``last_timestamp``. Either way they end
    where the rest of the answer says the stream is, never after.
    """
    view = await forecaster.get_stream(tenant, stream_id)
    record = await _record(forecaster, tenant, stream_id)
    for _ in range(_ATTEMPTS - 1):
        if _same_position(view, record):
            break
        view = await forecaster.get_stream(tenant, stream_id)
        record = await _record(forecaster, tenant, stream_id)
    until = None if _same_position(view, record) else view.last_timestamp
    readings = [] if view.last_timestamp is None else readings_out(record, limit, until)
    return detail_out(view, readings)


def detail_out(view: StreamView, readings: list[ReadingOut] | None = None) -> StreamDetailOut:
    """The ``GET`` answer: ``stream_out`` of the view, and the readings when asked for."""
    return StreamDetailOut(
        **msgspec.structs.asdict(stream_out(view)),
        readings=readings,
        last_anomaly=anomaly_out(view.last_anomaly),
    )


def _same_position(view: StreamView, record: StreamRecord) -> bool:
    last = record.last_ts if np.isfinite(record.last_ts) else None
    return view.seq == record.seq and view.last_timestamp == last


async def _record(forecaster: Forecaster, tenant: str, stream_id: str) -> StreamRecord:
    # The core's own key for the stream (its id already checked by get_stream).
    raw = await forecaster.store.get(forecaster._key(tenant, stream_id))
    if raw is None:  # deleted between the two reads
        raise UnknownStream(f"stream {stream_id!r} does not exist", field="stream_id")
    try:
        return StreamRecord.decode(raw)
    except RecordError as exc:
        raise StateMismatch(
            f"stream {stream_id!r} holds a record this service cannot read ({exc}); "
            "re-create it with PUT",
            field="stream_id",
        ) from exc


__all__ = [
    "MAX_READINGS",
    "ReadingOut",
    "ReadingsQuery",
    "StreamDetailOut",
    "detail_out",
    "readings_out",
    "stream_with_readings",
]
