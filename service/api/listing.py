"""``GET /v1/streams``: the caller's tenant's streams, a page at a time (``service.listing``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import get
from litestar.params import QueryParameter

from service.api.deps import ForecasterDep, TenantDep
from service.api.schemas import ModelRef, from_epoch
from service.ids import MAX_ID_BYTES
from service.listing import MAX_LIMIT, list_streams


class StreamSummaryOut(msgspec.Struct):
    stream_id: str
    model: ModelRef
    seq: Annotated[
        int, msgspec.Meta(description="Observations applied since the stream was created.")
    ]
    last_timestamp: Annotated[
        datetime | None, msgspec.Meta(description="Time of its last reading (null: none yet).")
    ]


class StreamListOut(msgspec.Struct):
    streams: Annotated[
        list[StreamSummaryOut],
        msgspec.Meta(description="Streams of this page, in no particular order."),
    ]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(
            description=(
                "Pass as ?cursor= for the next page; null when this page is the last. A "
                "page may hold fewer than limit streams (even none) and still have a next."
            )
        ),
    ]


@get(
    "/v1/streams",
    summary="List the tenant's streams, a page at a time",
    tags=["streams"],
    description=(
        "Pages through the streams of the caller's tenant (never another's): each with its "
        "model, version, position (seq) and last reading's time. Filter by id prefix; follow "
        "next_cursor until it is null. A stream that exists for the whole listing is listed; "
        "one created or deleted meanwhile may or may not be. An unknown or altered cursor "
        "is answered 400 (code invalid-cursor)."
    ),
)
async def list_streams_page(
    forecaster: ForecasterDep,
    tenant: TenantDep,
    prefix: Annotated[
        str,
        QueryParameter(
            description="Only streams whose id begins with this text.",
            max_length=MAX_ID_BYTES,
        ),
    ] = "",
    limit: Annotated[
        int, QueryParameter(ge=1, le=MAX_LIMIT, description="Most streams in the page.")
    ] = 100,
    cursor: Annotated[
        str | None,
        QueryParameter(
            description="next_cursor of the previous page; absent for the first.",
            max_length=16 * MAX_ID_BYTES,
        ),
    ] = None,
) -> StreamListOut:
    streams, following = await list_streams(
        forecaster.store,
        forecaster.key_prefix,
        tenant,
        prefix=prefix,
        limit=limit,
        cursor=cursor,
    )
    return StreamListOut(
        streams=[
            StreamSummaryOut(
                stream_id=s.stream_id,
                model=ModelRef(name=s.model, version=s.version),
                seq=s.seq,
                last_timestamp=from_epoch(s.last_ts),
            )
            for s in streams
        ],
        next_cursor=following,
    )
