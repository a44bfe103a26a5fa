"""The one v2 error table: every domain error has an HTTP status and a real gRPC code."""

from __future__ import annotations

import grpc
import pytest

from service import errors
from service.api.kserve.errors import HTTP_TO_GRPC, STATUS, UNEXPECTED, status_of


def leaves(cls: type[errors.ForecastError]) -> list[type[errors.ForecastError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += leaves(sub)
    return found


@pytest.mark.parametrize("kind", leaves(errors.ForecastError)[1:], ids=lambda k: k.__name__)
def test_every_domain_error_has_a_v2_status(kind: type[errors.ForecastError]) -> None:
    assert any(c in STATUS for c in kind.__mro__), f"{kind.__name__} falls through the table"
    exc = kind.__new__(kind)
    status = status_of(exc)
    assert 400 <= status.http < 600
    assert grpc.StatusCode[status.grpc] is not grpc.StatusCode.OK


def test_transport_refusals_and_the_unexpected_map_to_real_codes() -> None:
    for name in [*HTTP_TO_GRPC.values(), UNEXPECTED.grpc]:
        assert grpc.StatusCode[name] is not grpc.StatusCode.OK
    # A client's mistakes and the server's state are told apart on both transports.
    assert status_of(errors.InvalidInput("x")).grpc == "INVALID_ARGUMENT"
    assert status_of(errors.StoreUnavailable("x")).grpc == "UNAVAILABLE"
    assert status_of(errors.UnknownModel("x")).http == 404
