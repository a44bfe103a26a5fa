"""The body decoders as Litestar DTOs (``dto=``): Litestar hands the handler what a decoder
makes of the raw body, and the OpenAPI document describes the body by its pydantic model."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, ClassVar, Generic, TypeVar

from litestar.dto import AbstractDTO, DTOConfig
from litestar.dto.data_structures import DTOFieldDefinition
from litestar.typing import FieldDefinition
from pydantic import BaseModel

from service.api.decoders import (
    BulkBody,
    CreateBody,
    ForecastBody,
    bulk_body,
    create_body,
    forecast_body,
    observe_body,
)
from service.api.requests import BulkObserveRequest, ForecastRequest, ObserveRequest, StreamCreate
from service.core.observations import Observations

T = TypeVar("T")


class BodyDTO(AbstractDTO[T], Generic[T]):
    """Decodes a request body with ``decoder``; documents it as ``documented``."""

    config: ClassVar[DTOConfig] = DTOConfig()
    documented: ClassVar[type[BaseModel]]

    @staticmethod
    def decode_body(raw: bytes, where: tuple[str, str]) -> Any:
        raise NotImplementedError

    @classmethod
    def generate_field_definitions(
        cls, model_type: type[Any]
    ) -> Generator[DTOFieldDefinition, None, None]:
        yield from ()

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        """Nothing to build: the decoder is plain code."""

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Any:
        documented = FieldDefinition.from_annotation(
            cls.documented, kwarg_definition=field_definition.kwarg_definition
        )
        return schema_creator.for_field_definition(documented)

    def decode_bytes(self, value: bytes) -> Any:
        connection = self.asgi_connection
        where = (str(getattr(connection, "method", "")), connection.url.path)
        return self.decode_body(value, where)


def body_dto(
    model: type[T], documented: type[BaseModel], decoder: Callable[[bytes, tuple[str, str]], T]
) -> type[BodyDTO[T]]:
    """A DTO of one body: ``decoder`` makes the handler's ``data``, ``documented`` its schema."""
    namespace = {
        "model_type": model,
        "documented": documented,
        "decode_body": staticmethod(decoder),
    }
    return type(f"{model.__name__}DTO", (BodyDTO,), namespace)


ObserveDTO = body_dto(Observations, ObserveRequest, observe_body)
CreateDTO = body_dto(CreateBody, StreamCreate, create_body)
ForecastDTO = body_dto(ForecastBody, ForecastRequest, forecast_body)
BulkDTO = body_dto(BulkBody, BulkObserveRequest, bulk_body)
