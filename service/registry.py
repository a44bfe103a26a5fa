"""The models being served: name -> version -> :class:`ModelRuntime`.

The repository is laid out as Triton's: ``<repository>/<name>/<version>/model.onnx`` and
``model.json``, version directories being positive integers. One broken model never stops the
others: it is refused with a WARNING naming its path and reason, and recorded in
:attr:`ModelRegistry.refused` for the health and metadata endpoints.

Run-time lifecycle (:meth:`ModelRegistry.reload`, :meth:`~ModelRegistry.unload`,
:meth:`~ModelRegistry.load_version`): a new runtime is created and checked before it is
published, and publishing swaps in a new mapping (copy on write), so a reader on the event
loop sees either the old set of versions or the new one, never half of a change. A runtime
taken out of service is *retired*, not closed: a request that already holds it finishes on
it, and its onnxruntime session is released with the last reference to it (CPython frees it
at once; :meth:`~ModelRegistry.retired_alive` counts the ones still held, so a test can show
none leaks). Loading runs in the caller's thread: call these from a worker thread.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from service.errors import ModelRefused, UnknownModel
from service.manifest import MANIFEST_FILE, NAME_PATTERN, ONNX_FILE, Manifest
from service.runtime import ModelRuntime, ProviderSetting, load_runtime

logger = logging.getLogger(__name__)

_VERSION_DIR = re.compile(r"[1-9][0-9]{0,8}")

#: What a version directory's files looked like: (mtime_ns, size) of the manifest and graph.
_Signature = tuple[tuple[int, int], ...]


@dataclass(slots=True)
class ReloadReport:
    """What one re-scan changed, each entry ``"<name>/<version>"``."""

    loaded: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.loaded or self.replaced or self.unloaded)


class ModelRegistry:
    """Loaded model versions by name; the highest version serves unless a request names one."""

    def __init__(
        self,
        repository: Path | None = None,
        *,
        providers: ProviderSetting = "cpu",
        threads: int = 0,
    ) -> None:
        self.repository = repository
        #: How runtimes loaded at run time are created (the same as at start-up).
        self.provider_setting: ProviderSetting = providers
        self.threads = threads
        #: ``"<name>/<version>"`` of each refused version directory -> why it was refused.
        self.refused: dict[str, str] = {}
        # Copy on write: the outer and inner dicts are never changed once published.
        self._models: dict[str, dict[int, ModelRuntime]] = {}
        self._retired: weakref.WeakSet[ModelRuntime] = weakref.WeakSet()
        # Versions an admin unloaded: a re-scan leaves them out until loaded explicitly.
        self._held_out: set[str] = set()
        self._refused_signatures: dict[str, _Signature] = {}
        self._lock = threading.RLock()

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
        registry = cls(repository, providers=providers, threads=threads)
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
            runtime = _load_directory(directory, providers=providers, threads=threads)
        except ModelRefused as exc:
            self._refuse(key, directory, exc)
            return
        self.add(runtime)

    def _refuse(self, key: str, directory: Path, exc: ModelRefused) -> None:
        self.refused = {**self.refused, key: str(exc)}
        self._refused_signatures[key] = _signature(directory)
        logger.warning("refused model %s: %s", directory, exc)

    def add(self, runtime: ModelRuntime) -> None:
        """Serve ``runtime``; a runtime already serving the same name and version is replaced.

        The new runtime is in place before the old one is retired, so a reload never leaves a
        gap in which the version is missing, and a request still running on the old one
        finishes on it (its session is released when the last such request lets go).
        """
        key = f"{runtime.name}/{runtime.version}"
        with self._lock:
            versions = dict(self._models.get(runtime.name, {}))
            previous = versions.get(runtime.version)
            versions[runtime.version] = runtime
            self._models = {**self._models, runtime.name: versions}
            self._held_out.discard(key)
            self._refused_signatures.pop(key, None)
            if key in self.refused:
                self.refused = {k: v for k, v in self.refused.items() if k != key}
        if previous is not None and previous is not runtime:
            self._retire(previous)

    def _remove(self, name: str, version: int) -> ModelRuntime | None:
        with self._lock:
            versions = dict(self._models.get(name, {}))
            removed = versions.pop(version, None)
            models = dict(self._models)
            if versions:
                models[name] = versions
            else:
                models.pop(name, None)
            self._models = models
        if removed is not None:
            self._retire(removed)
        return removed

    def _retire(self, runtime: ModelRuntime) -> None:
        """Take ``runtime`` out of service without closing it under a running request."""
        self._retired.add(runtime)
        logger.info(
            "retired model %s version %d (sha256 %s)",
            runtime.name,
            runtime.version,
            runtime.fingerprint[:12],
        )

    def retired_alive(self) -> int:
        """Retired runtimes still referenced (by requests in flight, or by a leak)."""
        return len(self._retired)

    # -- run-time lifecycle -----------------------------------------------------------------

    def reload(self) -> ReloadReport:
        """Re-scan the repository: load new versions, replace changed ones, drop removed ones.

        A version whose manifest fingerprint equals the one serving is left alone (no new
        session). A changed version that is refused keeps its old runtime serving. Versions
        unloaded by :meth:`unload` stay out until :meth:`load_version`. A refused directory is
        retried only once its files change, so polling does not repeat the same warning.
        Blocking (creates sessions): call it from a worker thread.
        """
        report = ReloadReport()
        if self.repository is None:
            return report
        if not self.repository.is_dir():
            raise ModelRefused(f"model repository {self.repository} is not a directory")
        with self._lock:
            on_disk: set[str] = set()
            for directory in _version_dirs(self.repository):
                key = f"{directory.parent.name}/{directory.name}"
                on_disk.add(key)
                if key in self._held_out:
                    continue
                self._reload_one(directory, key, report)
            for runtime in self.all():
                key = f"{runtime.name}/{runtime.version}"
                if key not in on_disk:
                    self._remove(runtime.name, runtime.version)
                    report.unloaded.append(key)
            for key in [k for k in self.refused if k not in on_disk]:
                self.refused = {k: v for k, v in self.refused.items() if k != key}
                self._refused_signatures.pop(key, None)
        if report.changed:
            logger.info(
                "model repository re-scanned: loaded %s, replaced %s, unloaded %s",
                report.loaded,
                report.replaced,
                report.unloaded,
            )
        return report

    def _reload_one(self, directory: Path, key: str, report: ReloadReport) -> None:
        name, version = directory.parent.name, int(directory.name)
        current = self._models.get(name, {}).get(version)
        if current is not None and _manifest_sha(directory) == current.fingerprint:
            report.unchanged.append(key)
            return
        if key in self.refused and self._refused_signatures.get(key) == _signature(directory):
            report.refused[key] = self.refused[key]
            return
        try:
            runtime = _load_directory(
                directory, providers=self.provider_setting, threads=self.threads
            )
        except ModelRefused as exc:
            self._refuse(key, directory, exc)
            report.refused[key] = str(exc)
            return
        self.add(runtime)
        (report.replaced if current is not None else report.loaded).append(key)

    def load_version(self, name: str, version: int) -> ModelRuntime:
        """Load (or reload, if its files changed) one version from the repository.

        Clears an earlier :meth:`unload`. Blocking: call it from a worker thread.

        Raises:
            UnknownModel: the repository has no such version directory.
            ModelRefused: the directory does not hold a servable model.
        """
        if self.repository is None:
            raise UnknownModel("this registry has no model repository to load from")
        if not re.fullmatch(NAME_PATTERN, name):  # a name from a URL must not leave the repository
            raise UnknownModel(f"no model is named {name!r}", field="name")
        directory = self.repository / name / str(version)
        if not _VERSION_DIR.fullmatch(str(version)) or not directory.is_dir():
            raise UnknownModel(
                f"the model repository has no version {version} of {name!r}", field="version"
            )
        key = f"{name}/{version}"
        with self._lock:
            current = self._models.get(name, {}).get(version)
            if current is not None and _manifest_sha(directory) == current.fingerprint:
                self._held_out.discard(key)
                return current
            try:
                runtime = _load_directory(
                    directory, providers=self.provider_setting, threads=self.threads
                )
            except ModelRefused as exc:
                self._refuse(key, directory, exc)
                raise
            self.add(runtime)
            return runtime

    def unload(self, name: str, version: int) -> ModelRuntime:
        """Stop serving one version; re-scans leave it out until :meth:`load_version`.

        Requests already running on it finish on it.

        Raises:
            UnknownModel: the version is not loaded.
        """
        with self._lock:
            runtime = self.get(name, version)
            self._held_out.add(f"{name}/{version}")
            self._remove(name, version)
        return runtime

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

    def on_disk(self) -> list[tuple[str, int]]:
        """``(name, version)`` of every version directory in the repository, sorted."""
        if self.repository is None or not self.repository.is_dir():
            return []
        return [(d.parent.name, int(d.name)) for d in _version_dirs(self.repository)]

    def held_out(self, name: str, version: int) -> bool:
        """Whether an admin unloaded this version (re-scans leave it out)."""
        return f"{name}/{version}" in self._held_out

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
        """Close every runtime, retired ones still held included, and forget them."""
        with self._lock:
            for runtime in [*self.all(), *self._retired]:
                runtime.close()
            self._models = {}

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _version_dirs(repository: Path) -> list[Path]:
    """Every ``<name>/<version>`` directory, sorted."""
    found: list[Path] = []
    for model_dir in sorted(repository.iterdir()):
        if not model_dir.is_dir() or model_dir.name.startswith("."):
            continue
        found.extend(
            version_dir
            for version_dir in sorted(model_dir.iterdir())
            if version_dir.is_dir() and _VERSION_DIR.fullmatch(version_dir.name)
        )
    return found


def _load_directory(directory: Path, *, providers: ProviderSetting, threads: int) -> ModelRuntime:
    """Load one version directory, refusing a manifest that names another model or version."""
    runtime = load_runtime(directory, providers=providers, threads=threads)
    if (runtime.name, runtime.version) != (directory.parent.name, int(directory.name)):
        runtime.close()
        raise ModelRefused(
            f"manifest says {runtime.name!r} version {runtime.version}, the directory "
            f"says {directory.parent.name!r} version {int(directory.name)}"
        )
    return runtime


def _manifest_sha(directory: Path) -> str | None:
    """The fingerprint the manifest declares, or None when it cannot be read."""
    try:
        return Manifest.read(directory).sha256
    except (OSError, ValidationError, ValueError):
        return None


def _signature(directory: Path) -> _Signature:
    parts: list[tuple[int, int]] = []
    for name in (MANIFEST_FILE, ONNX_FILE):
        try:
            stat = (directory / name).stat()
        except OSError:
            parts.append((-1, -1))
        else:
            parts.append((stat.st_mtime_ns, stat.st_size))
    return tuple(parts)
