"""The v2 model repository extension (index, load, unload) on the admin model lifecycle.

Triton loads and unloads a model with all its versions; so do these: a load loads every
version directory the repository holds for the name (as the admin ``load`` route does one at
a time), an unload stops serving every version served. An unloaded version stays out of
re-scans until it is loaded again, as with the admin routes. The index lists every version
directory of the repository and every version served: ``READY``, or ``UNAVAILABLE`` with the
reason (unloaded, or why the directory was refused).

Roles: the index needs ``read``; load and unload change what every tenant is served, so
they need ``admin``, as the admin routes do.
"""

from __future__ import annotations

from typing import Any, Final

from service.errors import Conflict, ModelRefused, UnknownModel
from service.lifecycle import ModelLifecycle
from service.registry import ModelRegistry

READY: Final = "READY"
UNAVAILABLE: Final = "UNAVAILABLE"


def index(registry: ModelRegistry, *, ready_only: bool = False) -> list[dict[str, Any]]:
    """Every model version known, ``{"name", "version", "state", "reason"}``, sorted."""
    served = {(r.name, r.version) for r in registry.all()}
    known = sorted(served | set(registry.on_disk()))
    entries: list[dict[str, Any]] = []
    for name, version in known:
        if (name, version) in served:
            state, reason = READY, ""
        else:
            state = UNAVAILABLE
            refused = registry.refused.get(f"{name}/{version}")
            if refused is not None:
                reason = f"refused: {refused}"
            elif registry.held_out(name, version):
                reason = "unloaded"
            else:
                reason = "not loaded yet (the next re-scan loads it)"
        if ready_only and state != READY:
            continue
        entries.append({"name": name, "version": str(version), "state": state, "reason": reason})
    return entries


async def load(lifecycle: ModelLifecycle, name: str) -> list[int]:
    """Load every version of ``name`` the repository holds; the versions now served.

    Raises:
        UnknownModel: the repository has no version directory of ``name``.
        Conflict: a version directory holds no servable model (the others stay loaded).
    """
    versions = [v for n, v in lifecycle.registry.on_disk() if n == name]
    if not versions:
        raise UnknownModel(f"the model repository has no model {name!r}", field="model_name")
    for version in versions:
        try:
            await lifecycle.load(name, version)
        except ModelRefused as exc:
            raise Conflict(
                f"model {name!r} version {version} cannot be served: {exc}", field="model_name"
            ) from exc
    return versions


async def unload(lifecycle: ModelLifecycle, name: str) -> list[int]:
    """Stop serving every version of ``name``; the versions unloaded.

    Raises:
        UnknownModel: no version of ``name`` is served.
    """
    versions = [r.version for r in lifecycle.registry.versions(name)]
    if not versions:
        lifecycle.registry.get(name)  # raises, naming the models that are served
    for version in versions:
        await lifecycle.unload(name, version)
    return versions


__all__ = ["READY", "UNAVAILABLE", "index", "load", "unload"]
