"""One served model version: its forecast path pre-serialised from the response models.

:func:`build_served` turns a loaded artifact (checksums verified by
:meth:`ArtifactStore.load`) and one issue of its forecast path (:mod:`pipeline.api.issue`) into
a :class:`ServedModel`. An answer starts at the first step of the path strictly after the time
of the request, with its steps numbered from 1 (:mod:`pipeline.api.freshness` finds that step,
once per second). Everything an answer can contain from a given step is serialised once, by the
pydantic models of :mod:`pipeline.api.schemas` (see :mod:`pipeline.api.wire`), when time first
reaches that step; a request only slices the forecast points and joins bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.api.errors import ForecastUnavailable, StepsError
from pipeline.api.freshness import Assessment, Staleness, assess, utc_now
from pipeline.api.issue import ForecastPath, Issue, artifact_issue
from pipeline.api.ops_schemas import ModelSummary
from pipeline.api.schemas import CompatMetadata, CompatPredictResponse, Freshness
from pipeline.api.slices import LEVELS, PathSlice, build_slice, levels_key
from pipeline.api.wire import JsonTemplate, json_list, now_json, utc_second
from pipeline.artifacts.store import LoadedArtifact
from pipeline.errors import PipelineError
from pipeline.series import SeriesId, freq_offset

#: The rules an answer follows when the caller passes none (the settings' defaults).
DEFAULT_STALENESS = Staleness()


@dataclass(frozen=True, slots=True)
class Moment:
    """What one served model answers during one second, under one staleness policy."""

    #: the Unix second and the rules it was assessed under (the cache key)
    second: int
    policy: Staleness
    assessment: Assessment
    #: the answers from the first step after that second; None when no step is left
    part: PathSlice | None
    #: the freshness JSON when the path holds the steps asked, and when it holds fewer
    freshness: bytes
    freshness_short: bytes


@dataclass(eq=False)
class ServedModel:
    """One loaded version answering from one issue of its forecast path.

    A registry that serves a newer issue of a version builds it with
    ``build_served(..., issue=Issue(forecast, issued_at, origin, last_price, source))``; the
    answers then start after "now" on that path and report its ``issued_at`` and ``origin``.
    """

    series: SeriesId
    model: str
    version: str
    is_champion: bool
    horizon: int
    trained_at: datetime
    #: when the served issue (forecast path) was written
    issued_at: datetime
    #: the last observed timestamp the served issue starts from
    origin: datetime
    path: ForecastPath = field(repr=False)
    #: the /model/info answer (and this model's item of /api/v1/models)
    summary: ModelSummary = field(repr=False)
    summary_json: bytes = field(repr=False)
    #: v1: the fixed fields every offset shares
    common: dict[str, Any] = field(repr=False)
    #: compat, per level: open fields predictions, timestamp, confidence_intervals, freshness
    compat_templates: dict[int, JsonTemplate] = field(repr=False)
    _issue: Issue | None = field(repr=False, default=None)
    _artifact: LoadedArtifact | None = field(repr=False, default=None)
    #: one step in seconds, the origin as a Unix second; the caches of the last offset and second
    period: int = field(init=False, repr=False)
    _origin_second: int = field(init=False, repr=False)
    _slice: PathSlice | None = field(init=False, repr=False, default=None)
    _moment: Moment | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self.period = int(freq_offset(self.series.freq).total_seconds())
        self._origin_second = int(self.origin.timestamp())

    @property
    def key(self) -> str:
        return f"{self.series.name}/{self.model}"

    @property
    def artifact(self) -> LoadedArtifact | None:
        """The loaded version behind the answers (None only for a hand-built model)."""
        return self._artifact

    @property
    def issue(self) -> Issue | None:
        """The issue served (None: the version's training path)."""
        return self._issue

    @property
    def age_seconds(self) -> float:
        return (datetime.now(UTC) - self.trained_at).total_seconds()

    def issue_age(self, now: datetime) -> tuple[float, float]:
        """Seconds and periods from the served issue's origin to ``now`` (0 before it)."""
        age = max(0.0, now.timestamp() - self._origin_second)
        return age, age / self.period

    def with_champion(self, is_champion: bool) -> ServedModel:
        """A copy flagged (or not) as its series' champion."""
        if is_champion == self.is_champion:
            return self
        return build_served(
            self.series, self.model, self.version, is_champion, self._artifact, self._issue
        )

    # -- answers ------------------------------------------------------------------------------
    def check_steps(self, steps: int) -> None:
        if steps > self.horizon:
            raise StepsError(
                f"steps={steps} is beyond the horizon of {self.key} ({self.version}): "
                f"the maximum is {self.horizon}",
                self.horizon,
            )

    def predict_json(
        self,
        steps: int,
        levels: Sequence[int] = LEVELS,
        *,
        now: datetime | None = None,
        policy: Staleness = DEFAULT_STALENESS,
        trust: bytes = b"null",
    ) -> bytes:
        """The v1 predict body: up to ``steps`` steps after ``now`` (default: the clock), with
        the ``trust`` block's JSON (:meth:`pipeline.api.trust.TrustCache.block`).

        Raises :class:`StepsError` beyond the horizon and :class:`ForecastUnavailable` when the
        path cannot answer at ``now``.
        """
        part, freshness, count, at = self._answer(steps, now, policy)
        points = part.points[levels_key(levels)]
        return part.predict_template.fill(now_json(at), freshness, json_list(points[:count]), trust)

    def compat_json(
        self,
        steps: int,
        level: int,
        *,
        now: datetime | None = None,
        policy: Staleness = DEFAULT_STALENESS,
    ) -> bytes:
        """The compatibility ``/predict`` body (predictions, intervals at ``level``)."""
        part, freshness, count, at = self._answer(steps, now, policy)
        return self.compat_templates[level].fill(
            json_list(part.means[:count]),
            now_json(at),
            json_list(part.intervals[level][:count]),
            freshness,
        )

    def _answer(
        self, steps: int, now: datetime | None, policy: Staleness
    ) -> tuple[PathSlice, bytes, int, float]:
        """The slice to answer from, the freshness JSON, how many steps and the time."""
        self.check_steps(steps)
        at = (now or utc_now()).timestamp()
        second = int(at)
        moment = self._moment
        if moment is None or moment.second != second or moment.policy is not policy:
            moment = self.moment(second, policy)
        refusal = moment.assessment.refusal
        if refusal is not None:
            raise ForecastUnavailable(*refusal)
        part = moment.part
        assert part is not None  # assess() refuses a path with no step left
        remaining = moment.assessment.remaining
        if steps <= remaining:
            return part, moment.freshness, steps, at
        return part, moment.freshness_short, remaining, at

    def moment(self, second: int, policy: Staleness) -> Moment:
        """What this model answers during the Unix ``second`` (cached for the last one)."""
        cached = self._moment
        if cached is not None and cached.second == second and cached.policy == policy:
            return cached
        assessment = assess(
            second,
            stamps=self.path.seconds,
            origin=self._origin_second,
            period=self.period,
            policy=policy,
            what=f"{self.key} ({self.version})",
            freq=self.series.freq,
        )
        part = self._slice_at(assessment.offset) if assessment.remaining else None
        freshness = self._freshness_json(assessment, assessment.stale)
        short = freshness if assessment.stale else self._freshness_json(assessment, True)
        self._moment = Moment(second, policy, assessment, part, freshness, short)
        return self._moment

    def _freshness_json(self, assessment: Assessment, stale: bool) -> bytes:
        return (
            Freshness(
                issued_at=self.issued_at,
                origin=self.origin,
                age_seconds=assessment.age_seconds,
                age_periods=assessment.age_periods,
                stale=stale,
                steps_available=assessment.remaining,
            )
            .model_dump_json()
            .encode()
        )

    def _slice_at(self, offset: int) -> PathSlice:
        cached = self._slice
        if cached is None or cached.offset != offset:
            cached = self._slice = build_slice(self.path, self.common, offset)
        return cached


def build_served(
    series: SeriesId,
    model: str,
    version: str,
    is_champion: bool,
    art: LoadedArtifact | None,
    issue: Issue | None = None,
) -> ServedModel:
    """Serve one loaded version from ``issue`` (default: the path it was written with)."""
    if art is None:
        raise PipelineError(f"{series.name}/{model}/{version}: no artifact to serve")
    meta = art.metadata
    issue = issue or artifact_issue(art)
    path = ForecastPath.of(issue, int(meta.horizon))
    horizon = len(path.stamps)
    trained_at = meta.created_at if meta.created_at.tzinfo else meta.created_at.replace(tzinfo=UTC)
    metrics = {k: (v if v is None or math.isfinite(v) else None) for k, v in meta.metrics.items()}
    # The fields the v1 answer and the model summary share.
    shared: dict[str, Any] = {
        "series": series.name,
        "coin": series.coin,
        "vs_currency": series.vs,
        "timeframe": series.freq,
        "model": model,
        "is_champion": is_champion,
        "trained_at": utc_second(trained_at),
        "data_end": utc_second(meta.training.last_ds),
        "last_price": float(issue.last_price),
        "horizon": horizon,
    }
    compat_meta = CompatMetadata(
        trained_at=utc_second(trained_at), metrics=metrics, version=version
    )
    compat_templates = {
        lv: JsonTemplate(
            CompatPredictResponse,
            ("predictions", "timestamp", "confidence_intervals", "freshness"),
            model_type=model,
            metadata=compat_meta,
            series=series.name,
            confidence_level=lv / 100,
        )
        for lv in LEVELS
    }
    summary = ModelSummary(
        **shared,
        version=version,
        issued_at=issue.issued_at,
        origin=issue.origin,
        metrics=metrics,
        params=meta.params,
        data_source=meta.data_source,
    )
    served = ServedModel(
        series=series,
        model=model,
        version=version,
        is_champion=is_champion,
        horizon=horizon,
        trained_at=trained_at,
        issued_at=issue.issued_at,
        origin=issue.origin,
        path=path,
        summary=summary,
        summary_json=summary.model_dump_json().encode(),
        common={**shared, "model_version": version},
        compat_templates=compat_templates,
        _issue=issue,
        _artifact=art,
    )
    served._slice_at(0)  # serialised now: a path the response models reject fails the load
    return served
