"""What ``docker-compose.yml`` says, in the form a native test starts it in.

Only what cannot be the same outside Docker is swapped: host names, ports and the model
directory (the image's copy of ``models/repository``). Everything else is read from the file,
so a setting changed there is a setting changed in the tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.support.service_process import GRPC_PORT_AUTO, ROOT

COMPOSE = ROOT / "docker-compose.yml"
NGINX_SITE = ROOT / "deploy" / "nginx" / "forecast.conf"
#: The image copies models/repository to the compose file's FORECAST_MODEL_REPOSITORY.
MODEL_REPOSITORY = ROOT / "models" / "repository"


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    return services


def replica_env(redis_url: str) -> dict[str, str]:
    """The compose file's environment for the service, with the container-only values local.

    ``FORECAST_PORT`` is left out: each replica binds a free port of its own here, and a
    gRPC port the file turns on becomes one of each replica's own too.
    """
    env = {str(k): str(v) for k, v in compose_services()["forecast"]["environment"].items()}
    local = {
        "FORECAST_HOST": "127.0.0.1",
        "FORECAST_STORE_URL": redis_url,
        "FORECAST_MODEL_REPOSITORY": str(MODEL_REPOSITORY),
    }
    missing = set(local) - set(env)
    if missing:
        raise ValueError(f"the compose file no longer sets what the tests swap: {missing}")
    del env["FORECAST_PORT"]
    if env.get("FORECAST_GRPC_PORT", "0") != "0":
        env["FORECAST_GRPC_PORT"] = GRPC_PORT_AUTO
    return {**env, **local}


def redis_args() -> tuple[str, ...]:
    """The compose file's redis-server arguments (given last, so they win)."""
    command = compose_services()["redis"]["command"]
    if command[0] != "redis-server":
        raise ValueError(f"the compose redis command is not redis-server: {command}")
    return tuple(str(a) for a in command[1:])


def baked_model(kind: str = "lstm") -> tuple[str, Path]:
    """Name and newest version directory of a one-feature model of ``kind`` the image bakes in.

    Read from the repository, so the tests follow it when its models change.
    """
    for model in sorted(p for p in MODEL_REPOSITORY.iterdir() if p.is_dir()):
        versions = sorted(
            (p for p in model.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        if not versions:
            continue
        manifest = json.loads((versions[-1] / "model.json").read_text(encoding="utf-8"))
        if manifest["kind"] == kind and len(manifest["features"]) == 1:
            return str(manifest["name"]), versions[-1]
    raise LookupError(f"no one-feature {kind} model in {MODEL_REPOSITORY}")
