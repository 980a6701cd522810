"""Forecast issues: the forecast path of a version recomputed from a later price.

A version's own ``forecast.csv`` is its *training issue*: the path from the last price it was
trained on. A refresh (:mod:`pipeline.refresh`) updates the fitted model with the prices that
arrived since and writes a new issue of the same version, without touching the model files,
the metadata or the champion pointer::

    <model>/<version>/issues/<issue_id>/
        forecast.csv        # ds, mean, lower_L, upper_L (the same layout as the version's)
        issue.json          # IssueRecord: origin, issued_at, horizon, levels, sha256, ...

``issue_id`` is ``<origin>-<issued_at>-<random>`` (UTC, e.g.
``20261121T200000Z-20261121T200212345678Z-3fa2c1``): sorting by name sorts by origin, then by
the time of issue. An issue is written whole into a hidden temporary sibling and renamed into
place with ``os.replace``, so readers see either the previous newest issue or a complete new
one. Readers verify the forecast's sha256 and skip an issue that is incomplete or corrupt,
falling back to the previous one and finally to the training issue.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from pydantic import BaseModel, ValidationError

from pipeline.errors import ArtifactError
from pipeline.fileio import no_room_error
from pipeline.forecasters.base import interval_columns

if TYPE_CHECKING:
    from pipeline.artifacts.store import LoadedArtifact

logger = logging.getLogger(__name__)

ISSUES_DIR = "issues"
ISSUE_FILE = "issue.json"
ISSUE_FORECAST_FILE = "forecast.csv"
#: Version of the ``issue.json`` layout; readers skip a newer one.
ISSUE_SCHEMA_VERSION = 1
#: The ``issue_id`` of the forecast a version was trained with (its own ``forecast.csv``).
TRAINING_ISSUE = "training"
_DS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_ID_TIME = "%Y%m%dT%H%M%S"


class IssueRecord(BaseModel):
    """``issue.json``: what one issue is, where it starts and how to check it."""

    schema_version: int = ISSUE_SCHEMA_VERSION
    issue_id: str
    series: str
    model: str
    version: str
    issued_at: datetime
    origin: datetime  # the last observed ds the path starts from (step 1 is one step later)
    last_price: float  # the price at the origin
    n_new: int  # observations after the version's training end that the update absorbed
    horizon: int
    levels: list[int]
    forecast_sha256: str


@dataclass(frozen=True, eq=False)
class IssueInfo:
    """A verified issue: its record, folder and forecast path (``ds`` as UTC timestamps).
    Compare issues by :attr:`record` (the frame makes ``==`` ambiguous)."""

    record: IssueRecord
    path: Path
    forecast: pd.DataFrame

    @property
    def issue_id(self) -> str:
        return self.record.issue_id

    @property
    def origin(self) -> datetime:
        return self.record.origin

    @property
    def issued_at(self) -> datetime:
        return self.record.issued_at


def new_issue_id(origin: datetime, issued_at: datetime) -> str:
    """``<origin>Z-<issued_at with microseconds>Z-<6 hex>``: sorts by origin, then issue time."""
    origin_utc, issued_utc = origin.astimezone(UTC), issued_at.astimezone(UTC)
    return f"{origin_utc:{_ID_TIME}}Z-{issued_utc:{_ID_TIME}%f}Z-{secrets.token_hex(3)}"


def levels_of(frame: pd.DataFrame) -> list[int]:
    """The interval levels of a forecast frame, from its ``lower_L`` columns."""
    return sorted(int(c.removeprefix("lower_")) for c in frame.columns if c.startswith("lower_"))


def write_issue(
    version_dir: Path,
    ident: tuple[str, str, str],
    forecast: pd.DataFrame,
    *,
    origin: datetime,
    last_price: float,
    n_new: int,
    issued_at: datetime | None = None,
) -> IssueInfo:
    """Write ``forecast`` as a new issue of the version in ``version_dir`` (atomically).

    ``ident`` is ``(series name, model, version)``. The forecast must have the columns of
    :func:`~pipeline.forecasters.base.interval_columns`; its ``ds`` are written as UTC.
    """
    issued_at = issued_at or datetime.now(UTC)
    levels = levels_of(forecast)
    frame = forecast[interval_columns(levels)]
    issue_id = new_issue_id(origin, issued_at)
    base = version_dir / ISSUES_DIR
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{issue_id}-", dir=base))
    try:
        text = frame.to_csv(index=False, date_format=_DS_FORMAT, lineterminator="\n")
        data = text.encode("utf-8")
        record = IssueRecord(
            issue_id=issue_id,
            series=ident[0],
            model=ident[1],
            version=ident[2],
            issued_at=issued_at.astimezone(UTC),
            origin=origin.astimezone(UTC),
            last_price=float(last_price),
            n_new=int(n_new),
            horizon=len(frame),
            levels=levels,
            forecast_sha256=hashlib.sha256(data).hexdigest(),
        )
        _write_synced(tmp / ISSUE_FORECAST_FILE, data)
        _write_synced(tmp / ISSUE_FILE, (record.model_dump_json(indent=2) + "\n").encode())
        os.replace(tmp, base / issue_id)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and (clear := no_room_error(exc, tmp)) is not None:
            raise clear from exc
        raise
    return IssueInfo(record, base / issue_id, _parse_forecast(data, base / issue_id))


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def list_issues(version_dir: Path) -> list[str]:
    """The ids of the complete-looking issues of a version, oldest first (not verified)."""
    base = version_dir / ISSUES_DIR
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return []
    return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def read_issue(version_dir: Path, ident: tuple[str, str, str], issue_id: str) -> IssueInfo:
    """Read and verify one issue; an :class:`ArtifactError` says what is wrong with it."""
    folder = version_dir / ISSUES_DIR / issue_id
    try:
        record = IssueRecord.model_validate_json((folder / ISSUE_FILE).read_text("utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: {ISSUE_FILE} is missing") from None
    except (OSError, ValidationError, ValueError) as exc:
        raise ArtifactError(f"{folder / ISSUE_FILE}: invalid issue record: {exc}") from exc
    if record.schema_version > ISSUE_SCHEMA_VERSION:
        raise ArtifactError(
            f"{folder}: issue schema {record.schema_version} is newer than this code"
        )
    if (record.series, record.model, record.version, record.issue_id) != (*ident, issue_id):
        raise ArtifactError(
            f"{folder / ISSUE_FILE}: describes {record.series}/{record.model}/{record.version}/"
            f"{record.issue_id}, not this folder; the issue was copied or edited by hand"
        )
    try:
        data = (folder / ISSUE_FORECAST_FILE).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{folder / ISSUE_FORECAST_FILE}: unreadable: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != record.forecast_sha256:
        raise ArtifactError(
            f"{folder / ISSUE_FORECAST_FILE}: checksum mismatch (expected "
            f"{record.forecast_sha256[:12]}…, got {actual[:12]}…); the file is corrupt or was "
            "modified"
        )
    return IssueInfo(record, folder, _parse_forecast(data, folder))


def _parse_forecast(data: bytes, folder: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.BytesIO(data))
        frame["ds"] = pd.to_datetime(frame["ds"], utc=True, format="ISO8601")
    except (ValueError, KeyError) as exc:
        raise ArtifactError(f"{folder / ISSUE_FORECAST_FILE}: unreadable forecast: {exc}") from exc
    return frame


def latest_issue(version_dir: Path, ident: tuple[str, str, str]) -> IssueInfo | None:
    """The newest issue that verifies, or ``None`` when there is none (serve the training one).

    Issues that fail verification are logged and skipped, so a damaged newest issue falls back
    to the one before it.
    """
    for issue_id in reversed(list_issues(version_dir)):
        try:
            return read_issue(version_dir, ident, issue_id)
        except ArtifactError as exc:
            logger.warning(
                "skipping issue %s: %s",
                issue_id,
                exc,
                extra={"series": ident[0], "model": ident[1], "version": ident[2]},
            )
    return None


def training_issue(artifact: LoadedArtifact) -> IssueInfo:
    """The forecast a version was trained with, described as an issue (id ``training``)."""
    meta = artifact.metadata
    record = IssueRecord(
        issue_id=TRAINING_ISSUE,
        series=meta.series,
        model=meta.model,
        version=meta.version,
        issued_at=meta.created_at,
        origin=meta.training.last_ds,
        last_price=meta.last_price,
        n_new=0,
        horizon=len(artifact.forecast),
        levels=levels_of(artifact.forecast),
        forecast_sha256=meta.files.get(ISSUE_FORECAST_FILE, ""),
    )
    return IssueInfo(record, artifact.path, artifact.forecast)


def prune_issues(version_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` issues, and temporary folders left by a killed write.

    Call it only while holding the cycle lock (no issue is being written then).
    """
    base = version_dir / ISSUES_DIR
    issues = list_issues(version_dir)
    doomed = [base / name for name in issues[: max(0, len(issues) - keep)]]
    if base.is_dir():
        doomed += [p for p in base.iterdir() if p.name.startswith(".tmp-") and p.is_dir()]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
