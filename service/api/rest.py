"""REST handlers: stateless forecasts, streams, and model metadata. Each one is a thin call."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from service.api.bulk import observe_streams
from service.api.decoders import BulkBody, CreateBody, ForecastBody
from service.api.deps import RegistryDep, TenantDep, forecaster_of
from service.api.dto import BulkDTO, CreateDTO, ForecastDTO, ObserveDTO
from service.api.openapi_models import ModelDetailOut, ModelsOut, answers
from service.api.readings import (
    ReadingsQuery,
    StreamDetailOut,
    detail_out,
    stream_with_readings,
)
from service.api.schemas import (
    BulkObserveResponse,
    ForecastResponse,
    ObserveOut,
    observe_out,
    series_forecast_out,
)
from service.core.live import headline
from service.errors import PayloadTooLarge
from service.forecaster import Observations
from service.ids import ID_JSON_PATTERN, ID_RULE, MAX_ID_BYTES
from service.runtime import ModelRuntime

#: The rule is checked by the core (``service.ids``), for every interface alike; the
#: document only describes it (a JSON Schema length counts characters, the rule bytes).
StreamId = Annotated[
    str,
    PathParameter(
        description=f"Stream id, unique within the tenant: {ID_RULE}.",
        schema_extra={"pattern": ID_JSON_PATTERN, "maxLength": MAX_ID_BYTES},
    ),
]


def model_summary(runtime: ModelRuntime) -> dict[str, Any]:
    m = runtime.manifest
    return {
        "name": m.name,
        "version": m.version,
        "kind": m.kind,
        "features": m.features,
        "target": m.target,
        "frequency": m.frequency,
        "horizon": m.horizon,
        "quantiles": m.quantiles,
        "state_size": m.state_size,
        "fingerprint": runtime.fingerprint,
        "providers": runtime.providers,
        "description": m.description,
    }


class ModelController(Controller):
    path = "/v1/models"
    tags = ["models"]

    @get(
        "/",
        summary="List served models",
        responses=answers(ModelsOut, "Every model served, with its latest version's manifest."),
    )
    async def list_models(self, registry: RegistryDep) -> dict[str, Any]:
        return {
            "models": [
                {
                    "name": name,
                    "versions": [r.version for r in registry.versions(name)],
                    "latest": model_summary(registry.get(name)),
                }
                for name in registry.names()
            ]
        }

    @get(
        "/{name:str}",
        summary="One model: every version with its manifest",
        responses=answers(ModelDetailOut, "Every served version of the model."),
    )
    async def get_model(
        self, registry: RegistryDep, state: State, name: FromPath[str]
    ) -> dict[str, Any]:
        latest = registry.get(name)
        live = forecaster_of(state).engine.live
        return {
            "name": name,
            "latest": latest.version,
            "versions": [
                {
                    **model_summary(r),
                    "training": _dump(r.manifest.training),
                    "accuracy": r.manifest.accuracy,
                    "live": (now := live.figures(r.name, r.version, len(r.manifest.quantiles))),
                    "headline": headline(r.manifest.accuracy, now),
                }
                for r in registry.versions(name)
            ],
        }

    @post(
        "/{name:str}/forecast",
        summary="Stateless forecast of whole series",
        status_code=200,
        dto=ForecastDTO,
        return_dto=None,
    )
    async def forecast(
        self, state: State, name: FromPath[str], data: JSONBody[ForecastBody]
    ) -> ForecastResponse:
        max_series: int = state.settings.max_series
        if len(data.series) > max_series:
            raise PayloadTooLarge(
                f"{len(data.series)} series exceed the limit of {max_series}", field="series"
            )
        results = await forecaster_of(state).forecast(name, data.version, data.series)
        return ForecastResponse(
            forecasts=[
                series_forecast_out(f, sid) for sid, f in zip(data.ids, results, strict=True)
            ]
        )


class StreamController(Controller):
    path = "/v1/streams"
    tags = ["streams"]

    @put(
        "/{stream_id:str}",
        summary="Create or reset a stream bound to a model",
        dto=CreateDTO,
        return_dto=None,
    )
    async def put_stream(
        self,
        state: State,
        tenant: TenantDep,
        stream_id: StreamId,
        data: JSONBody[CreateBody],
    ) -> Response[ObserveOut]:
        result = await forecaster_of(state).create_stream(
            tenant, stream_id, data.model, data.version, data.history
        )
        if not result.created:
            return Response(observe_out(result), status_code=HTTP_200_OK)
        location = f"/v1/streams/{quote(stream_id, safe='')}"
        return Response(
            observe_out(result), status_code=HTTP_201_CREATED, headers={"Location": location}
        )

    @get("/{stream_id:str}", summary="A stream's position and latest forecast")
    async def get_stream(
        self,
        state: State,
        tenant: TenantDep,
        stream_id: StreamId,
        readings: ReadingsQuery = 0,
    ) -> StreamDetailOut:
        forecaster = forecaster_of(state)
        if readings:
            return await stream_with_readings(forecaster, tenant, stream_id, readings)
        return detail_out(await forecaster.get_stream(tenant, stream_id))

    @delete("/{stream_id:str}", summary="Forget a stream", status_code=HTTP_204_NO_CONTENT)
    async def delete_stream(self, state: State, tenant: TenantDep, stream_id: StreamId) -> None:
        await forecaster_of(state).delete_stream(tenant, stream_id)

    @post(
        "/{stream_id:str}/observations",
        summary="Apply new readings and return the updated forecast",
        status_code=HTTP_200_OK,
        dto=ObserveDTO,
        return_dto=None,
    )
    async def observe(
        self,
        state: State,
        tenant: TenantDep,
        stream_id: StreamId,
        data: JSONBody[Observations],
    ) -> ObserveOut:
        return observe_out(await forecaster_of(state).observe(tenant, stream_id, data))


def _dump(value: Any) -> Any:
    return None if value is None else value.model_dump(exclude_none=True)


@post(
    "/v1/observations",
    summary="Observe many streams in one request; each answers on its own",
    tags=["streams"],
    status_code=HTTP_200_OK,
    dto=BulkDTO,
    return_dto=None,
)
async def observe_bulk(
    tenant: TenantDep, state: State, data: JSONBody[BulkBody]
) -> BulkObserveResponse:
    limit: int = state.settings.max_observations
    answers = await observe_streams(forecaster_of(state), tenant, data, limit)
    return BulkObserveResponse(results=answers)
