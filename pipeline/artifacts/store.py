"""The artifact store: versioned model folders, typed metadata, checksums, champion pointers.

Layout under the models folder::

    <coin>-<vs>-<freq>/
        champion.json                  # which version to serve (replaced atomically, last)
        <model>/<version>/
            state.json, <model file>   # from Forecaster.save
            forecast.csv               # precomputed forecast path with intervals
            metadata.json              # ArtifactMetadata, written last inside the folder
            issues/<issue_id>/         # later forecast paths (see pipeline.artifacts.issues)

A version folder is written whole into a hidden temporary sibling and renamed into place, so a
crash never leaves a half-written version visible. Loading verifies every file's sha256 and the
versions of the libraries the model file depends on. What ``metadata.json`` and ``champion.json``
hold is defined in :mod:`pipeline.artifacts.metadata`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from pipeline.artifacts.issues import (
    IssueInfo,
    latest_issue,
    list_issues,
    prune_issues,
    training_issue,
    write_issue,
)
from pipeline.artifacts.metadata import (
    METADATA_FILE,
    SCHEMA_VERSION,
    TRACKED_LIBRARIES,
    ArtifactMetadata,
    ChampionPointer,
    TrainingWindow,
    code_version,
    describe_version,
    library_versions,
    read_forecast_file,
    read_metadata_file,
)
from pipeline.errors import ArtifactError
from pipeline.fileio import atomic_write_json, no_room_error, sha256_file
from pipeline.forecasters import Forecaster, forecaster_class
from pipeline.series import SeriesId
from pipeline.storage.publish import published, published_issue, withdrawn

logger = logging.getLogger(__name__)

FORECAST_FILE = "forecast.csv"
CHAMPION_FILE = "champion.json"

#: Metadata names (defined in :mod:`pipeline.artifacts.metadata`) are re-exported here.
__all__ = [
    "CHAMPION_FILE",
    "FORECAST_FILE",
    "METADATA_FILE",
    "SCHEMA_VERSION",
    "TRACKED_LIBRARIES",
    "ArtifactError",
    "ArtifactMetadata",
    "ArtifactStore",
    "ChampionPointer",
    "IssueInfo",
    "LoadedArtifact",
    "TrainingWindow",
    "code_version",
    "describe_version",
    "library_versions",
    "new_version",
    "read_metadata_file",
]


@dataclass
class LoadedArtifact:
    """A verified version: its metadata, precomputed forecast, folder and (if asked) model."""

    metadata: ArtifactMetadata
    forecast: pd.DataFrame
    path: Path
    forecaster: Forecaster | None = None


def new_version(now: datetime | None = None) -> str:
    """A sortable, unique version id such as ``20261121T101500123456Z-3fa2c1``.

    Microseconds keep versions written within the same second in creation order (listing,
    ``latest`` and ``prune`` sort by name).
    """
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


def _track_champion(series: SeriesId, model: str, version: str) -> None:
    """Move the MLflow ``champion`` alias (only when MLFLOW_TRACKING_URI is set)."""
    from pipeline.train.tracking import promoted

    promoted(series, model, version)


class ArtifactStore:
    """Read and write model versions under ``root`` (the configured models folder)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- paths --------------------------------------------------------------------------------
    def series_dir(self, series: SeriesId) -> Path:
        return self.root / series.name

    def version_dir(self, series: SeriesId, model: str, version: str) -> Path:
        path = (self.series_dir(series) / model / version).resolve()
        if self.root.resolve() not in path.parents:
            raise ArtifactError(f"refusing to read outside the models folder: {path}")
        return path

    # -- writing ------------------------------------------------------------------------------
    def write_version(
        self,
        series: SeriesId,
        forecaster: Forecaster,
        y: pd.Series,
        *,
        horizon: int,
        metrics: dict[str, float | None] | None = None,
        data_file: Path | None = None,
        data_source: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ArtifactMetadata:
        """Write a fitted forecaster, its forecast path and metadata as a new version."""
        version = new_version()
        model_dir = self.series_dir(series) / forecaster.name
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
        try:
            names = forecaster.save(tmp)
            forecast = forecaster.predict(horizon)
            forecast.to_csv(tmp / FORECAST_FILE, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
            names.append(FORECAST_FILE)
            meta = describe_version(
                series,
                forecaster,
                y,
                version=version,
                horizon=horizon,
                files={name: sha256_file(tmp / name) for name in names},
                metrics=metrics,
                data_file=data_file,
                data_source=data_source,
                extra=extra,
            )
            (tmp / METADATA_FILE).write_text(meta.model_dump_json(indent=2) + "\n", "utf-8")
            for name in [*names, METADATA_FILE]:
                with open(tmp / name, "rb") as fh:
                    os.fsync(fh.fileno())
            os.replace(tmp, model_dir / version)
            published(self.root, model_dir / version)  # an s3:// store: files, metadata last
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and (clear := no_room_error(exc, tmp)) is not None:
                raise clear from exc
            raise
        logger.info(
            "wrote %s/%s/%s", series.name, forecaster.name, version,
            extra={"series": series.name, "model": forecaster.name, "version": version},
        )  # fmt: skip
        return meta

    # -- reading ------------------------------------------------------------------------------
    def list_series(self) -> list[SeriesId]:
        if not self.root.is_dir():
            return []
        found = []
        for child in sorted(self.root.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                try:
                    found.append(SeriesId.parse(child.name))
                except Exception:  # noqa: BLE001 - foreign folders are skipped, not fatal
                    logger.debug("skipping %s: not a series folder", child)
        return found

    def list_models(self, series: SeriesId) -> list[str]:
        base = self.series_dir(series)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))

    def list_versions(self, series: SeriesId, model: str) -> list[str]:
        """Complete versions of ``model`` (oldest first); hidden temporary folders are ignored."""
        base = self.series_dir(series) / model
        if not base.is_dir():
            return []
        return sorted(
            p.name
            for p in base.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / METADATA_FILE).is_file()
        )

    def latest(self, series: SeriesId, model: str) -> str | None:
        versions = self.list_versions(series, model)
        return versions[-1] if versions else None

    def read_metadata(self, series: SeriesId, model: str, version: str) -> ArtifactMetadata:
        path = self.version_dir(series, model, version) / METADATA_FILE
        return read_metadata_file(path)

    def verify(self, series: SeriesId, model: str, version: str) -> ArtifactMetadata:
        """Check metadata, every file's checksum and the library versions; return the metadata."""
        folder = self.version_dir(series, model, version)
        meta = self.read_metadata(series, model, version)
        if meta.schema_version > SCHEMA_VERSION:
            raise ArtifactError(
                f"{folder}: metadata schema {meta.schema_version} is newer than this code "
                f"supports ({SCHEMA_VERSION}); upgrade the pipeline"
            )
        if (meta.series, meta.model, meta.version) != (series.name, model, version):
            raise ArtifactError(
                f"{folder / METADATA_FILE}: describes {meta.series}/{meta.model}/{meta.version}, "
                "not this folder; the version was copied or edited by hand"
            )
        if FORECAST_FILE not in meta.files:
            raise ArtifactError(f"{folder / METADATA_FILE}: lists no checksum for {FORECAST_FILE}")
        for name, expected in meta.files.items():
            if Path(name).name != name or name in {"", ".", ".."}:
                raise ArtifactError(f"{folder / METADATA_FILE}: invalid file name {name!r}")
            path = folder / name
            if not path.is_file():
                raise ArtifactError(f"{path}: file listed in metadata is missing")
            actual = sha256_file(path)
            if actual != expected:
                raise ArtifactError(
                    f"{path}: checksum mismatch (expected {expected[:12]}…, got {actual[:12]}…); "
                    "the file is corrupt or was modified: retrain or roll back"
                )
        try:
            needed = forecaster_class(meta.model).libraries
        except Exception as exc:  # unknown model name or a model module that fails to import
            raise ArtifactError(f"{folder}: cannot use model {meta.model!r}: {exc}") from exc
        current = library_versions()
        for lib in needed:
            saved = meta.libraries.get(lib)
            if saved is not None and current.get(lib) != saved:
                raise ArtifactError(
                    f"{folder}: saved with {lib} {saved} but {lib} {current.get(lib)} is "
                    "installed; retrain the model or install the matching version"
                )
        return meta

    def load(
        self, series: SeriesId, model: str, version: str, *, with_model: bool = False
    ) -> LoadedArtifact:
        """Verify and load a version: metadata and forecast path, and the model if asked."""
        meta = self.verify(series, model, version)
        folder = self.version_dir(series, model, version)
        forecast = read_forecast_file(folder / FORECAST_FILE)
        forecaster = None
        if with_model:
            try:
                forecaster = forecaster_class(model).load(folder, meta.params)
            except ArtifactError:
                raise
            except Exception as exc:
                raise ArtifactError(f"{folder}: cannot load the {model} model: {exc}") from exc
        return LoadedArtifact(meta, forecast, folder, forecaster)

    # -- issues (see pipeline.artifacts.issues) -----------------------------------------------
    def served_versions(self, series: SeriesId) -> list[tuple[str, str]]:
        """``(model, version)`` of what the API serves: the champion's version, then the latest
        version of every other model."""
        pointer = self.champion(series)
        served = [(pointer.model, pointer.version)] if pointer is not None else []
        for model in self.list_models(series):
            latest = self.latest(series, model)
            if latest is not None and (pointer is None or model != pointer.model):
                served.append((model, latest))
        return served

    def write_issue(
        self, series: SeriesId, model: str, version: str, forecast: pd.DataFrame, *,
        origin: datetime, last_price: float, n_new: int, issued_at: datetime | None = None,
    ) -> IssueInfo:  # fmt: skip
        """Write ``forecast`` (starting one step after ``origin``) as a new issue, atomically."""
        folder, ident = self.version_dir(series, model, version), (series.name, model, version)
        return published_issue(self.root, write_issue(
            folder, ident, forecast, origin=origin, last_price=last_price, n_new=n_new,
            issued_at=issued_at,
        ))  # fmt: skip

    def list_issues(self, series: SeriesId, model: str, version: str) -> list[str]:
        """Issue ids of a version, oldest first (a cheap, unverified listing)."""
        return list_issues(self.version_dir(series, model, version))

    def latest_issue(self, series: SeriesId, model: str, version: str) -> IssueInfo | None:
        """The newest issue of a version that verifies, or ``None`` (then its training
        ``forecast.csv`` is current). Cheap: one directory listing and, for the newest issue,
        one small JSON, a sha256 and a parse of its forecast; damaged issues are skipped."""
        return latest_issue(self.version_dir(series, model, version), (series.name, model, version))

    def current_issue(self, artifact: LoadedArtifact) -> IssueInfo:
        """What to serve for a loaded version: its latest issue, else its training forecast."""
        meta = artifact.metadata
        latest = self.latest_issue(meta.series_id, meta.model, meta.version)
        return latest if latest is not None else training_issue(artifact)

    def prune_issues(self, series: SeriesId, model: str, version: str, keep: int) -> list[Path]:
        """Keep the newest ``keep`` issues of a version (call under the cycle lock)."""
        return withdrawn(self.root, prune_issues(self.version_dir(series, model, version), keep))

    # -- champion -----------------------------------------------------------------------------
    def champion(self, series: SeriesId) -> ChampionPointer | None:
        path = self.series_dir(series) / CHAMPION_FILE
        if not path.is_file():
            return None
        try:
            return ChampionPointer.model_validate_json(path.read_text("utf-8"))
        except (OSError, ValidationError) as exc:
            raise ArtifactError(f"{path}: unreadable champion pointer: {exc}") from exc

    def promote(self, series: SeriesId, model: str, version: str, reason: str = "") -> None:
        """Point the champion at a complete, verified version (atomic replace)."""
        self.verify(series, model, version)
        current = self.champion(series)
        history = []
        if current is not None:
            history = [{"model": current.model, "version": current.version}, *current.previous]
        pointer = ChampionPointer(
            model=model,
            version=version,
            promoted_at=datetime.now(UTC),
            reason=reason,
            previous=history[:20],
        )
        atomic_write_json(self.series_dir(series) / CHAMPION_FILE, pointer.model_dump(mode="json"))
        published(self.root, self.series_dir(series) / CHAMPION_FILE)  # after its version
        logger.info(
            "champion of %s is now %s/%s (%s)", series.name, model, version, reason,
            extra={"series": series.name, "model": model, "version": version},
        )  # fmt: skip
        _track_champion(series, model, version)

    def rollback(self, series: SeriesId) -> ChampionPointer:
        """Point the champion back at the previous one that still verifies."""
        current = self.champion(series)
        if current is None or not current.previous:
            raise ArtifactError(f"{series.name}: no previous champion to roll back to")
        for i, prev in enumerate(current.previous):
            if (prev["model"], prev["version"]) == (current.model, current.version):
                continue
            try:
                self.verify(series, prev["model"], prev["version"])
            except ArtifactError as exc:
                logger.warning("skipping previous champion %s: %s", prev, exc)
                continue
            pointer = ChampionPointer(
                model=prev["model"],
                version=prev["version"],
                promoted_at=datetime.now(UTC),
                reason=f"rollback from {current.model}/{current.version}",
                previous=current.previous[i + 1 :],
            )
            path = self.series_dir(series) / CHAMPION_FILE
            atomic_write_json(path, pointer.model_dump(mode="json"))
            published(self.root, path)
            _track_champion(series, pointer.model, pointer.version)
            return pointer
        raise ArtifactError(f"{series.name}: no previous champion still loads")

    def prune(self, series: SeriesId, keep: int) -> list[Path]:
        """Delete all but the newest ``keep`` versions of each model; never the champion's."""
        champ = self.champion(series)
        protected = set()
        if champ is not None:
            protected.add((champ.model, champ.version))
            protected |= {(p["model"], p["version"]) for p in champ.previous[:1]}
        removed = []
        for model in self.list_models(series):
            versions = self.list_versions(series, model)
            for version in versions[: max(0, len(versions) - keep)]:
                if (model, version) in protected:
                    continue
                path = self.version_dir(series, model, version)
                shutil.rmtree(path)
                removed.append(path)
        return withdrawn(self.root, removed)
