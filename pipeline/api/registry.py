"""The in-memory model registry: load once, answer from memory, swap atomically.

:func:`load_registry` reads every series' champion and the latest version of every other model
through :meth:`ArtifactStore.load` (checksums verified; the model file is never unpickled: the
API serves a precomputed forecast path) and pre-serialises each as a
:class:`~pipeline.api.served.ServedModel`. :class:`RegistryHolder` owns the current
:class:`Registry`; a reload builds a new one beside it and replaces the reference in one
assignment, so a request sees either the old or the new registry, never a mix.

Each version is served from its newest verified *issue* (a forecast path the refresh stage
re-issued from a newer price, :meth:`ArtifactStore.latest_issue`), else from the path it was
trained with. A new issue changes the store signature, so polling and ``/model/reload`` pick
it up like a new version.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.api.errors import NotServedError
from pipeline.api.issue import Issue
from pipeline.api.ops_schemas import ModelsResponse
from pipeline.api.served import ServedModel, build_served
from pipeline.api.wire import utc_second
from pipeline.artifacts.store import CHAMPION_FILE, ArtifactStore
from pipeline.errors import PipelineError
from pipeline.series import SeriesId
from pipeline.storage.sync import pull_store

logger = logging.getLogger(__name__)


@dataclass
class Registry:
    """An immutable snapshot of everything served; replaced whole on reload."""

    models: dict[tuple[str, str], ServedModel]
    champions: dict[str, str]
    loaded_at: datetime
    errors: list[str]
    signature: tuple[Any, ...]
    models_json: bytes = b""
    #: (series, model) carried over from the previous registry because its new version failed
    #: to load, with the load error (the fallbacks of pipeline.api.fallback say so)
    kept: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.models

    def series_names(self) -> list[str]:
        return sorted({name for name, _ in self.models})

    def get(self, series: SeriesId, model: str = "champion") -> ServedModel:
        """The served model, or :class:`NotServedError` listing what is available."""
        names = self.series_names()
        if series.name not in names:
            raise NotServedError(
                f"no model is loaded for {series.name}; available series: "
                f"{', '.join(names) or 'none (no artifacts: run the pipeline first)'}",
                names,
            )
        if model == "champion":
            champ = self.champions.get(series.name)
            if champ is None:
                available = self.model_names(series.name)
                raise NotServedError(
                    f"{series.name} has no champion; ask for a model by name: "
                    f"{', '.join(available)}",
                    available,
                )
            model = champ
        served = self.models.get((series.name, model))
        if served is None:
            available = ["champion", *self.model_names(series.name)]
            raise NotServedError(
                f"model {model!r} is not loaded for {series.name}; available: "
                f"{', '.join(available)}",
                available,
            )
        return served

    def find(self, series_name: str, model: str = "champion") -> ServedModel | None:
        """Fast lookup by series name; None when absent (then :meth:`get` explains)."""
        if model == "champion":
            champ = self.champions.get(series_name)
            if champ is None:
                return None
            model = champ
        return self.models.get((series_name, model))

    def model_names(self, series_name: str) -> list[str]:
        return sorted(m for s, m in self.models if s == series_name)


def store_signature(store: ArtifactStore) -> tuple[Any, ...]:
    """A cheap fingerprint of what is on disk: champion pointers, the latest versions and the
    newest issue of every served version."""
    parts: list[Any] = []
    for series in store.list_series():
        pointer = store.series_dir(series) / CHAMPION_FILE
        try:
            stat = pointer.stat()
            parts.append((series.name, CHAMPION_FILE, stat.st_mtime_ns, stat.st_size))
        except FileNotFoundError:
            parts.append((series.name, CHAMPION_FILE, None))
        for model in store.list_models(series):
            parts.append((series.name, model, store.latest(series, model)))
        try:
            served = store.served_versions(series)
        except PipelineError:  # an unreadable pointer: its stat above already fingerprints it
            served = []
        for model, version in served:
            parts.append(
                (series.name, model, version, tuple(store.list_issues(series, model, version)[-1:]))
            )
    return tuple(parts)


def load_served(
    store: ArtifactStore, series: SeriesId, model: str, version: str, is_champion: bool
) -> ServedModel:
    """Load and serve one version from its newest verified issue."""
    art = store.load(series, model, version)
    info = store.latest_issue(series, model, version)
    issue = None
    if info is not None:
        issue = Issue(
            forecast=info.forecast,
            issued_at=info.issued_at,
            origin=info.origin,
            last_price=float(info.record.last_price),
            source=str(info.path),
        )
    return build_served(series, model, version, is_champion, art, issue)


def _issue_label(served: ServedModel) -> str:
    return f"{served.version} (origin {served.origin:%Y-%m-%dT%H:%M}Z)"


class _Loader:
    """Builds the models of a new registry, falling back to ``previous`` on failures."""

    def __init__(self, store: ArtifactStore, previous: Registry | None) -> None:
        self.store = store
        self.previous = previous
        self.models: dict[tuple[str, str], ServedModel] = {}
        self.champions: dict[str, str] = {}
        self.errors: list[str] = []
        self.kept: dict[tuple[str, str], str] = {}

    def fail(self, what: str, exc: Exception, series: SeriesId, model: str | None) -> None:
        self.errors.append(str(exc))
        logger.error("cannot load %s: %s", what, exc, extra={"series": series.name, "model": model})

    def keep_previous(self, series: SeriesId, model: str | None, champion: bool) -> None:
        if self.previous is None:
            return
        if model is None:
            model = self.previous.champions.get(series.name)
        old = self.previous.models.get((series.name, model)) if model else None
        if model is None or old is None:
            return
        self.models[(series.name, model)] = old
        self.kept[(series.name, model)] = self.errors[-1] if self.errors else "failed to load"
        if champion and self.previous.champions.get(series.name) == model:
            self.champions[series.name] = model
        logger.warning(
            "keeping %s/%s version %s",
            series.name,
            model,
            old.version,
            extra={"series": series.name, "model": model, "version": old.version},
        )

    def load_champion(self, series: SeriesId) -> None:
        try:
            pointer = self.store.champion(series)
        except PipelineError as exc:
            self.fail(f"the champion pointer of {series.name}", exc, series, None)
            self.keep_previous(series, None, champion=True)
            return
        if pointer is None:
            return
        try:
            self.models[(series.name, pointer.model)] = load_served(
                self.store, series, pointer.model, pointer.version, True
            )
            self.champions[series.name] = pointer.model
        except PipelineError as exc:
            what = f"the champion {series.name}/{pointer.model}/{pointer.version}"
            self.fail(what, exc, series, pointer.model)
            self.keep_previous(series, None, champion=True)

    def load_others(self, series: SeriesId) -> None:
        for model in self.store.list_models(series):
            if (series.name, model) in self.models:
                continue
            version = self.store.latest(series, model)
            if version is None:
                continue
            try:
                self.models[(series.name, model)] = load_served(
                    self.store, series, model, version, False
                )
            except PipelineError as exc:
                self.fail(f"{series.name}/{model}/{version}", exc, series, model)
                self.keep_previous(series, model, champion=False)


def load_registry(store: ArtifactStore, previous: Registry | None = None) -> Registry:
    """Load every champion and the latest version of every other model.

    A version that fails to load (missing, corrupt, tampered, wrong library versions) is logged
    and listed in ``errors``; when ``previous`` served that series/model, its old version is kept
    (and the old champion stays champion), so a bad new artifact never takes a model away.
    """
    signature = store_signature(store)
    loader = _Loader(store, previous)
    for series in store.list_series():
        loader.load_champion(series)
        loader.load_others(series)
    models, champions, errors = loader.models, loader.champions, loader.errors
    # A model carried over as non-champion must not keep a stale champion flag, and vice versa.
    for key, served in list(models.items()):
        should = champions.get(key[0]) == key[1]
        if served.is_champion != should:
            models[key] = served.with_champion(should)
    registry = Registry(
        models=models,
        champions=champions,
        loaded_at=datetime.now(UTC),
        errors=errors,
        signature=signature,
        kept=loader.kept,
    )
    registry.models_json = (
        ModelsResponse(
            models=[registry.models[k].summary for k in sorted(registry.models)],
            champions=champions,
            loaded_at=utc_second(registry.loaded_at),
            load_errors=errors,
        )
        .model_dump_json()
        .encode()
    )
    return registry


@dataclass
class ReloadResult:
    outcome: str
    message: str
    models: int
    changed: list[str]
    failures: list[str]
    duration_ms: float


class RegistryHolder:
    """Owns the current registry; :meth:`reload` swaps in a new one atomically."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self.registry: Registry = Registry({}, {}, datetime.now(UTC), [], ())

    def pull(self) -> None:
        """An s3:// MODELS_DIR: bring the working copy up to date with the verified versions
        and pointers of the store (a no-op for a local folder). A store that does not answer
        is logged and the working copy keeps serving."""
        try:
            pull_store(self.store.root)
        except PipelineError as exc:
            logger.error("cannot pull the models from the object store: %s", exc)

    def load_initial(self) -> Registry:
        self.pull()
        self.registry = load_registry(self.store)
        return self.registry

    def needs_reload(self) -> bool:
        """True when the champion pointers, latest versions or served issues changed on disk
        (after a pull, for an object store)."""
        self.pull()
        return store_signature(self.store) != self.registry.signature

    def reload(self) -> ReloadResult:
        """Load beside the current registry, then swap; failures keep the old versions."""
        start = time.perf_counter()
        self.pull()
        with self._lock:
            old = self.registry
            try:
                new = load_registry(self.store, previous=old)
            except Exception as exc:  # noqa: BLE001 - anything unexpected keeps the old registry
                logger.exception("reload failed; the previous models keep serving")
                return ReloadResult(
                    "failure",
                    "reload failed; the previous models keep serving",
                    len(old.models),
                    [],
                    [f"{type(exc).__name__}: {exc}"],
                    (time.perf_counter() - start) * 1000,
                )
            changed = sorted(
                f"{s}/{m}: {_issue_label(old.models[(s, m)]) if (s, m) in old.models else 'none'}"
                f" -> {_issue_label(served)}"
                for (s, m), served in new.models.items()
                if (s, m) not in old.models
                or (
                    old.models[(s, m)].version,
                    old.models[(s, m)].issued_at,
                    old.models[(s, m)].origin,
                )
                != (served.version, served.issued_at, served.origin)
            )
            changed += sorted(
                f"{s}/{m}: {old.models[(s, m)].version} -> removed"
                for (s, m) in old.models
                if (s, m) not in new.models
            )
            self.registry = new  # the atomic swap
        duration = (time.perf_counter() - start) * 1000
        if new.errors:
            message = (
                f"{len(new.errors)} artifact(s) failed to load and keep their previous version "
                "(if any); other changes were applied"
            )
            logger.error(message, extra={"failures": new.errors})
            return ReloadResult("failure", message, len(new.models), changed, new.errors, duration)
        message = f"loaded {len(new.models)} model(s); {len(changed)} changed"
        logger.info(message, extra={"changed": changed})
        return ReloadResult("success", message, len(new.models), changed, [], duration)


__all__ = [
    "Registry",
    "RegistryHolder",
    "ReloadResult",
    "load_registry",
    "load_served",
    "store_signature",
]
