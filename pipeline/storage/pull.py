"""Pulling from an object store into a working copy, trusting only what verifies.

Models (:func:`pull_models`): one listing of the store, then

1. every version whose ``metadata.json`` is there and lists only files that are there is
   downloaded into a hidden temporary folder, each file's sha256 checked against the metadata,
   and renamed into place; a version without metadata (a publish still running, or one that
   crashed) or with a checksum mismatch is ignored and logged once;
2. new issues of the versions we have, the same way (``issue.json`` last);
3. then each champion pointer that changed, only when the version it names is here.

Versions and issues never change once published, so each is downloaded once. Data and report
files (:func:`pull_files`) are downloaded when their ETag (the MD5 of a single PUT) differs
from the local file's.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.fileio import atomic_open
from pipeline.storage.mirror import Mirror
from pipeline.storage.objects import ObjectInfo, md5_file

logger = logging.getLogger(__name__)

METADATA = "metadata.json"
CHAMPION = "champion.json"
ISSUES = "issues"
ISSUE = "issue.json"


@dataclass
class PullReport:
    """What one pull did (paths relative to the working copy)."""

    versions: list[str] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    pointers: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.versions or self.issues or self.pointers or self.files)


def _safe(parts: list[str]) -> bool:
    return all(
        p and p not in {".", ".."} and not p.startswith(".") and "/" not in p and "\\" not in p
        for p in parts
    )


def _refuse(
    mirror: Mirror, report: PullReport, what: str, etag: str, why: str, level: int = logging.WARNING
) -> None:
    report.refused.append(what)
    if (what, etag) not in mirror.refused:
        mirror.refused.add((what, etag))
        logger.log(level, "not pulling %s from %s: %s", what, mirror.url, why)


def _write(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def _download_folder(
    mirror: Mirror, prefix: str, files: dict[str, str | None], last: str, last_bytes: bytes
) -> str | None:
    """Download ``files`` (name -> expected sha256 or None) of ``prefix`` and ``last`` into a
    temporary sibling and rename it into place; returns why it was refused, or None."""
    target = mirror.root / prefix
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".pull-{target.name}-", dir=target.parent))
    try:
        for name, expected in files.items():
            data = mirror.objects.get_bytes(f"{prefix}/{name}")
            if expected is not None and hashlib.sha256(data).hexdigest() != expected:
                return f"{name}: checksum mismatch with {last}"
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        (tmp / last).write_bytes(last_bytes)
        try:
            os.replace(tmp, target)
        except OSError:  # another process pulled it first
            if not (target / last).is_file():
                raise
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pull_version(mirror: Mirror, prefix: str, listed: dict[str, ObjectInfo]) -> str | None:
    from pipeline.artifacts.metadata import ArtifactMetadata

    raw = mirror.objects.get_bytes(f"{prefix}/{METADATA}")
    try:
        meta = ArtifactMetadata.model_validate_json(raw)
    except ValueError as exc:
        return f"unreadable {METADATA}: {str(exc).splitlines()[0]}"
    if (meta.series, meta.model, meta.version) != tuple(prefix.split("/")):
        return f"{METADATA} describes {meta.series}/{meta.model}/{meta.version}"
    missing = sorted(set(meta.files) - set(listed))
    if missing or not _safe(list(meta.files)):
        return f"incomplete: {', '.join(missing) or 'invalid file names'} missing"
    return _download_folder(mirror, prefix, dict(meta.files), METADATA, raw)


def _pull_issue(mirror: Mirror, prefix: str, listed: dict[str, ObjectInfo]) -> str | None:
    from pipeline.artifacts.issues import IssueRecord

    raw = mirror.objects.get_bytes(f"{prefix}/{ISSUE}")
    try:
        record = IssueRecord.model_validate_json(raw)
    except ValueError as exc:
        return f"unreadable {ISSUE}: {str(exc).splitlines()[0]}"
    if "forecast.csv" not in listed:
        return "incomplete: forecast.csv missing"
    return _download_folder(mirror, prefix, {"forecast.csv": record.forecast_sha256}, ISSUE, raw)


def _pull_pointer(mirror: Mirror, series: str) -> str | None:
    from pipeline.artifacts.metadata import ChampionPointer

    raw = mirror.objects.get_bytes(f"{series}/{CHAMPION}")
    try:
        pointer = ChampionPointer.model_validate_json(raw)
    except ValueError as exc:
        return f"unreadable pointer: {str(exc).splitlines()[0]}"
    if not _safe([pointer.model, pointer.version]):
        return "invalid model or version name"
    if not (mirror.root / series / pointer.model / pointer.version / METADATA).is_file():
        return f"it names {pointer.model}/{pointer.version}, which is not complete in the store"
    _write(mirror.root / series / CHAMPION, raw)
    return None


Listed = dict[str, ObjectInfo]
Puller = Callable[[Mirror, str, Listed], "str | None"]


def _group(listing: Listed) -> tuple[dict[str, Listed], dict[str, Listed], Listed]:
    """Versions (``S/M/V``), issues (``S/M/V/issues/I``) and pointers (``S``) of a listing."""
    versions: dict[str, Listed] = defaultdict(dict)
    issues: dict[str, Listed] = defaultdict(dict)
    pointers: Listed = {}
    for key, info in listing.items():
        parts = key.split("/")
        if not _safe(parts):
            continue
        if len(parts) == 2 and parts[1] == CHAMPION:
            pointers[parts[0]] = info
        elif len(parts) == 4:
            versions["/".join(parts[:3])][parts[3]] = info
        elif len(parts) == 6 and parts[3] == ISSUES:
            issues["/".join(parts[:5])][parts[5]] = info
    return versions, issues, pointers


def pull_models(mirror: Mirror, under: str = "") -> PullReport:
    """Bring the working copy of a models folder up to date (see the module docs); only the
    objects under ``under`` (``"<series>/"``: one series) when given."""
    report = PullReport()
    with mirror.lock:
        versions, issues, pointers = _group(mirror.objects.listing(under))
        for prefix, listed in sorted(versions.items()):
            if (mirror.root / prefix / METADATA).is_file():
                continue
            if METADATA not in listed:
                wait = "no metadata.json yet (a publish under way, or one that crashed)"
                _refuse(mirror, report, prefix, "", wait, logging.INFO)
                continue
            _step(mirror, report, report.versions, prefix, listed[METADATA], _pull_version, listed)
        for prefix, listed in sorted(issues.items()):
            version = prefix.rsplit("/", 2)[0]
            if (mirror.root / prefix / ISSUE).is_file() or ISSUE not in listed:
                continue
            if (mirror.root / version / METADATA).is_file():
                _step(mirror, report, report.issues, prefix, listed[ISSUE], _pull_issue, listed)
        for series, info in sorted(pointers.items()):
            if md5_file(mirror.root / series / CHAMPION) == info.etag:
                continue
            why = _pull_pointer(mirror, series)
            if why is None:
                report.pointers.append(series)
            else:
                _refuse(mirror, report, f"{series}/{CHAMPION}", info.etag, why)
    if report.changed:  # (each refusal is logged once, when first met)
        logger.info(
            "pulled %d version(s), %d issue(s), %d pointer(s) from %s; %d refused",
            len(report.versions), len(report.issues), len(report.pointers), mirror.url,
            len(report.refused),
        )  # fmt: skip
    return report


def _step(
    mirror: Mirror,
    report: PullReport,
    done: list[str],
    prefix: str,
    info: ObjectInfo,
    pull: Puller,
    listed: Listed,
) -> None:
    if (prefix, info.etag) in mirror.refused:
        report.refused.append(prefix)
        return
    try:
        why = pull(mirror, prefix, listed)
    except PipelineError as exc:
        why = str(exc)
    if why is None:
        done.append(prefix)
    else:
        _refuse(mirror, report, prefix, info.etag, why)


def pull_files(mirror: Mirror, under: str = "") -> PullReport:
    """Download every file of the store folder (under ``under`` when given) whose content
    differs from the local file's."""
    report = PullReport()
    with mirror.lock:
        for key, info in sorted(mirror.objects.listing(under).items()):
            parts = key.split("/")
            if not _safe(parts) or md5_file(mirror.root / key) == info.etag:
                continue
            _write(mirror.root / key, mirror.objects.get_bytes(key))
            report.files.append(key)
    if report.files:
        logger.info("pulled %d file(s) from %s", len(report.files), mirror.url)
    return report


def push_files(mirror: Mirror) -> list[str]:
    """PUT every local file (not hidden) whose content differs from the store's (reports)."""
    listing = mirror.objects.listing()
    pushed = []
    for path in sorted(p for p in mirror.root.rglob("*") if p.is_file()):
        key = path.relative_to(mirror.root).as_posix()
        if not _safe(key.split("/")):
            continue
        info = listing.get(key)
        if info is None or md5_file(path) != info.etag:
            mirror.objects.put_file(key, path)
            pushed.append(key)
    return pushed
