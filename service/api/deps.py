"""What handlers receive from the app: typed dependency names, and the app-wide objects read
off the application state.

Only what depends on the request (the caller's tenant) or is rarely called (the registry) is
a Litestar dependency. Litestar resolves two or more dependencies of one handler in an anyio
task group, two tasks per request, which cost the single-reading observe about a tenth of
its time; the forecaster, the same object for every request, is read off the state instead.
"""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import NamedDependency

from service.forecaster import Forecaster
from service.registry import ModelRegistry

RegistryDep = NamedDependency[ModelRegistry]
TenantDep = NamedDependency[str]


def forecaster_of(state: State) -> Forecaster:
    """The app's forecaster (set at start-up, before any request)."""
    forecaster: Forecaster = state.forecaster
    return forecaster


__all__ = ["RegistryDep", "TenantDep", "forecaster_of"]
