"""The models being served: name -> version -> :class:`ModelRuntime`.

The repository is laid out as Triton's: ``<repository>/<name>/<version>/model.onnx`` and
``model.json``, version directories being positive integers. One broken model never stops the
others: it is refused with a WARNING naming its path and reason, and recorded in
:attr:`ModelRegistry.refused` for the health and metadata endpoints.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from service.errors import ModelRefused, UnknownModel
from service.runtime import ModelRuntime, ProviderSetting, load_runtime

logger = logging.getLogger(__name__)

_VERSION_DIR = re.compile(r"[1-9][0-9]{0,8}")


class ModelRegistry:
    """Loaded model versions by name; the highest version serves unless a request names one."""

    def __init__(self, repository: Path | None = None) -> None:
        self.repository = repository
        #: ``"<name>/<version>"`` of each refused version directory -> why it was refused.
        self.refused: dict[str, str] = {}
        self._models: dict[str, dict[int, ModelRuntime]] = {}

    @classmethod
    def load(
        cls, repository: Path, *, providers: ProviderSetting = "cpu", threads: int = 0
    ) -> ModelRegistry:
        """Load every version directory under ``repository``.

        Raises:
            ModelRefused: only when ``repository`` itself is not a directory; single models
                that fail are logged and listed in :attr:`refused` instead.
        """
        if not repository.is_dir():
            raise ModelRefused(f"model repository {repository} is not a directory")
        registry = cls(repository)
        for model_dir in sorted(repository.iterdir()):
            if not model_dir.is_dir() or model_dir.name.startswith("."):
                logger.debug("ignoring %s: not a model directory", model_dir)
                continue
            for version_dir in sorted(model_dir.iterdir()):
                if not version_dir.is_dir() or not _VERSION_DIR.fullmatch(version_dir.name):
                    logger.debug("ignoring %s: not a positive integer version", version_dir)
                    continue
                registry._load_version(version_dir, providers=providers, threads=threads)
        if not registry._models:
            logger.warning("model repository %s holds no servable model", repository)
        return registry

    def _load_version(self, directory: Path, *, providers: ProviderSetting, threads: int) -> None:
        key = f"{directory.parent.name}/{directory.name}"
        try:
            runtime = load_runtime(directory, providers=providers, threads=threads)
            if (runtime.name, runtime.version) != (directory.parent.name, int(directory.name)):
                runtime.close()
                raise ModelRefused(
                    f"manifest says {runtime.name!r} version {runtime.version}, the directory "
                    f"says {directory.parent.name!r} version {int(directory.name)}"
                )
        except ModelRefused as exc:
            self.refused[key] = str(exc)
            logger.warning("refused model %s: %s", directory, exc)
            return
        self.add(runtime)

    def add(self, runtime: ModelRuntime) -> None:
        """Serve ``runtime``; a runtime already serving the same name and version is replaced.

        The new runtime is in place before the old one is closed, so a reload never leaves a
        gap in which the version is missing.
        """
        versions = self._models.setdefault(runtime.name, {})
        previous = versions.get(runtime.version)
        versions[runtime.version] = runtime
        self.refused.pop(f"{runtime.name}/{runtime.version}", None)
        if previous is not None and previous is not runtime:
            previous.close()

    def get(self, name: str, version: int | None = None) -> ModelRuntime:
        """The runtime of ``name`` at ``version``, or its highest version when None.

        Raises:
            UnknownModel: naming the models or versions that do exist.
        """
        versions = self._models.get(name)
        if not versions:
            available = ", ".join(self.names()) or "none"
            raise UnknownModel(
                f"unknown model {name!r}; models available: {available}", field="model"
            )
        if version is None:
            return versions[max(versions)]
        runtime = versions.get(version)
        if runtime is None:
            available = ", ".join(str(v) for v in sorted(versions))
            raise UnknownModel(
                f"model {name!r} has no version {version}; versions available: {available}",
                field="version",
            )
        return runtime

    def names(self) -> list[str]:
        """Names of the models served, sorted."""
        return sorted(self._models)

    def versions(self, name: str) -> list[ModelRuntime]:
        """Every loaded version of ``name``, lowest first (empty if none)."""
        versions = self._models.get(name, {})
        return [versions[v] for v in sorted(versions)]

    def all(self) -> list[ModelRuntime]:
        """Every loaded runtime, by name then version."""
        return [runtime for name in self.names() for runtime in self.versions(name)]

    def providers_in_use(self) -> list[str]:
        """The execution providers the loaded sessions really use, each once."""
        seen: dict[str, None] = {}
        for runtime in self.all():
            seen.update(dict.fromkeys(runtime.providers))
        return list(seen)

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._models.values())

    def close(self) -> None:
        """Close every runtime and forget them."""
        for runtime in self.all():
            runtime.close()
        self._models.clear()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
