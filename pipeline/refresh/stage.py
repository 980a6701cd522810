"""The refresh stage: re-issue every served forecast from the latest price, without retraining.

For each series: ingest its raw file incrementally (the normal validated path, once per raw
file), rebuild the processed series, then for every served version (the champion's and the
latest version of every other model: :meth:`ArtifactStore.served_versions`) load the fitted
model, ``update()`` it with the processed points after its training end, predict the version's
horizon, check the path (:mod:`pipeline.refresh.checks`) and write it as a new *issue* of the
same version (:mod:`pipeline.artifacts.issues`). Model files, metadata and the champion pointer
are never changed.

A version ends in one of :data:`VERSION_STATUSES`; anything refused or failed keeps its previous
issue served and says why. One code path for ``python -m pipeline.refresh`` and the scheduler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.artifacts.issues import levels_of
from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings
from pipeline.errors import ForecastError, PipelineError
from pipeline.forecasters import forecaster_class
from pipeline.refresh.checks import RefusedError, check_continues, check_forecast, new_points
from pipeline.scheduling.history import REFRESH_OK
from pipeline.series import SeriesId, freq_offset

logger = logging.getLogger("pipeline.refresh.stage")

#: issued: a new issue was written; current: no new price since the served origin;
#: not_updated: the model cannot update without refitting and keeps its issue; refused: the
#: data or the recomputed path broke a rule; failed: the version could not be loaded or used.
VERSION_STATUSES: tuple[str, ...] = ("issued", "current", "not_updated", "refused", "failed")
#: Version outcomes that make a refresh fail (exit code 1, an alert from the scheduler).
PROBLEMS: frozenset[str] = frozenset({"refused", "failed"})

Clock = Callable[[], datetime]
SeriesStage = Callable[[SeriesId, Settings], Any]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class VersionRefresh:
    """What a refresh did with one served version."""

    model: str
    version: str
    status: str = "failed"  # one of VERSION_STATUSES
    reason: str = ""
    issue_id: str | None = None
    origin: str | None = None  # the origin now served (ISO, UTC)
    n_new: int = 0
    seconds: float = 0.0


@dataclass
class SeriesRefresh:
    """What a refresh did for one series: ``refreshed`` (new issues, nothing refused),
    ``current`` (nothing new), ``partial`` (some versions refused or failed) or ``failed``."""

    series: str
    status: str = "failed"
    stage: str | None = None  # where a series-level failure happened: ingest, process, load
    reason: str = ""
    versions: list[VersionRefresh] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def issued(self) -> int:
        return sum(v.status == "issued" for v in self.versions)

    @property
    def problems(self) -> list[VersionRefresh]:
        return [v for v in self.versions if v.status in PROBLEMS]

    @property
    def ok(self) -> bool:
        return self.status in REFRESH_OK

    def conclude(self) -> str:
        """Set and return :attr:`status` (and a reason) from the version outcomes."""
        problems = self.problems
        if problems:
            self.status = "failed" if len(problems) == len(self.versions) else "partial"
            self.reason = "; ".join(v.reason for v in problems)
        else:
            self.status = "refreshed" if self.issued else "current"
            counts = {s: sum(v.status == s for v in self.versions) for s in VERSION_STATUSES}
            self.reason = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or (
                "no trained version to refresh"
            )
        return self.status

    def summary(self) -> dict[str, Any]:
        """A compact record for the run history: counts, and the versions worth a look."""
        return {
            "series": self.series,
            "status": self.status,
            "stage": self.stage,
            "reason": self.reason,
            "issued": self.issued,
            "seconds": self.seconds,
            "versions": [
                asdict(v) for v in self.versions if v.status in PROBLEMS | {"not_updated"}
            ],
        }


def refresh_version(
    store: ArtifactStore,
    series: SeriesId,
    model: str,
    version: str,
    y: pd.Series,
    settings: Settings,
    clock: Clock = _utc_now,
) -> VersionRefresh:
    """Update one served version with the points of ``y`` after its training end and write the
    new issue. Never raises: the outcome says what happened."""
    started = time.perf_counter()
    out = VersionRefresh(model, version)
    label = f"{series.name}/{model}/{version}"
    try:
        meta = store.read_metadata(series, model, version)
        latest = store.latest_issue(series, model, version)
        origin = latest.origin if latest is not None else meta.training.last_ds
        out.origin = pd.Timestamp(origin).isoformat()
        what = "the served issue's origin" if latest is not None else "the training end"
        check_continues(y, origin, label, what=what)
        if y.index[-1] == pd.Timestamp(origin):
            out.status, out.reason = "current", f"no new price since {out.origin}"
        elif not forecaster_class(model).updatable:
            out.status = "not_updated"
            out.reason = f"{label}: {model} cannot update without refitting; it keeps the issue "
            out.reason += f"from {out.origin} until the next training"
        else:
            _issue(store, series, meta.training.last_ds, y, settings, clock, out, label)
    except RefusedError as exc:
        out.status, out.reason = "refused", str(exc)
    except PipelineError as exc:
        out.status, out.reason = "failed", f"{label}: {exc}"
    except Exception as exc:  # noqa: BLE001 - one version failing must not stop the others
        logger.exception("%s: unexpected refresh failure", label)
        out.status, out.reason = "failed", f"{label}: {type(exc).__name__}: {exc}"
    out.seconds = round(time.perf_counter() - started, 4)
    level = logging.WARNING if out.status in PROBLEMS else logging.DEBUG
    logger.log(level, "%s: %s %s", label, out.status, out.reason,
               extra={"series": series.name, "model": model, "version": version})  # fmt: skip
    return out


def _issue(
    store: ArtifactStore,
    series: SeriesId,
    data_end: datetime,
    y: pd.Series,
    settings: Settings,
    clock: Clock,
    out: VersionRefresh,
    label: str,
) -> None:
    new = new_points(y, data_end, freq_offset(series.freq), label)
    art = store.load(series, out.model, out.version, with_model=True)
    assert art.forecaster is not None
    try:
        art.forecaster.update(new)
        levels = levels_of(art.forecast)
        frame = art.forecaster.predict(art.metadata.horizon, levels)
    except ForecastError as exc:
        raise RefusedError(f"{label}: refused, the update failed: {exc}") from exc
    origin = new.index[-1]
    check_forecast(frame, origin, freq_offset(series.freq), art.metadata.horizon, levels, label)
    info = store.write_issue(
        series, out.model, out.version, frame, origin=origin.to_pydatetime(),
        last_price=float(new.iloc[-1]), n_new=len(new), issued_at=clock(),
    )  # fmt: skip
    store.prune_issues(series, out.model, out.version, settings.refresh_keep_issues)
    out.status, out.issue_id, out.n_new = "issued", info.issue_id, len(new)
    out.origin, out.reason = origin.isoformat(), f"new issue from {origin.isoformat()}"


def default_ingest(series: SeriesId, settings: Settings) -> Any:
    """The ingest stage as the refresh runs it: incremental, from ``settings.source``."""
    from pipeline.ingest import ingest_series

    return ingest_series(series, settings)


def default_process(series: SeriesId, settings: Settings) -> Any:
    from pipeline.process.stage import process_series

    return process_series(series, settings)


def refresh_series(
    series: SeriesId,
    settings: Settings,
    *,
    store: ArtifactStore | None = None,
    ingest: Callable[[SeriesId], None] | None = None,
    process: SeriesStage = default_process,
    clock: Clock = _utc_now,
) -> SeriesRefresh:
    """Refresh every served version of one series. ``ingest`` is given the series (it ingests
    ``series.raw``; ``None`` skips ingestion). Never raises."""
    from pipeline.process.stage import load_training_series

    started = time.perf_counter()
    store = store or ArtifactStore(Path(settings.models_dir))
    out = SeriesRefresh(series.name)
    stage = "ingest"
    try:
        if ingest is not None:
            ingest(series)
        stage = "process"
        process(series, settings)
        stage = "load"
        served = store.served_versions(series)
        y = load_training_series(Path(settings.data_dir), series, use_all=True) if served else None
    except Exception as exc:  # noqa: BLE001 - one series failing must not stop the others
        out.status, out.stage, out.reason = "failed", stage, f"{series.name}: {stage}: {exc}"
        logger.error("refresh of %s failed at %s: %s", series.name, stage, exc,
                     extra={"series": series.name, "stage": stage})  # fmt: skip
    else:
        for model, version in served:
            assert y is not None
            out.versions.append(refresh_version(store, series, model, version, y, settings, clock))
        out.conclude()
        logger.info("refreshed %s: %s (%s)", series.name, out.status, out.reason,
                    extra={"series": series.name, "issued": out.issued})  # fmt: skip
    out.seconds = round(time.perf_counter() - started, 3)
    return out


class IngestOnce:
    """Ingests each raw file at most once per refresh (4h and 1h share the hourly file); a
    failure fails every series built from it, with the same reason."""

    def __init__(self, settings: Settings, ingest: SeriesStage = default_ingest) -> None:
        self.settings, self.ingest = settings, ingest
        self.done: dict[SeriesId, Exception | None] = {}

    def __call__(self, series: SeriesId) -> None:
        raw = series.raw
        if raw not in self.done:
            try:
                self.ingest(raw, self.settings)
            except Exception as exc:
                self.done[raw] = exc
                raise
            self.done[raw] = None
        error = self.done[raw]
        if error is not None:
            raise error


def refresh_many(
    series_list: Sequence[SeriesId],
    settings: Settings,
    *,
    ingest: SeriesStage | None = default_ingest,
    process: SeriesStage = default_process,
    clock: Clock = _utc_now,
) -> list[SeriesRefresh]:
    """Refresh each series in turn (``ingest=None``: use the raw files as they are)."""
    store = ArtifactStore(Path(settings.models_dir))
    once = IngestOnce(settings, ingest) if ingest is not None else None
    return [
        refresh_series(s, settings, store=store, ingest=once, process=process, clock=clock)
        for s in series_list
    ]
