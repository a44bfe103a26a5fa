"""Typed names of the app-wide dependencies that handlers receive (provided in ``app.py``)."""

from __future__ import annotations

from litestar.di import NamedDependency

from service.forecaster import Forecaster
from service.registry import ModelRegistry

ForecasterDep = NamedDependency[Forecaster]
RegistryDep = NamedDependency[ModelRegistry]
TenantDep = NamedDependency[str]
MaxSeriesDep = NamedDependency[int]
