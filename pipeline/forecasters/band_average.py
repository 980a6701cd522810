"""Quantile averaging of the random-walk-median volatility bands (registry name ``band_average``).

The members -- by default ``naive`` (the random walk's own empirical band), ``garch`` and
``gjr_garch`` (GARCH(1,1) and GJR-GARCH(1,1) with Student-t innovations on log returns) -- all
forecast the last price as their median; they differ only in their bands. This model averages
each quantile of the members in log price with equal weights (Vincentization, see
:mod:`pipeline.forecasters.ensemble`), so its median is the random walk's and its band lies
between the members' bands, step by step.

Why equal weights: on the replay of BTC daily, BTC hourly and ETH daily 2018-2021
(``docs/results/replay.md``) the equal-weight average scored a lower WIS than every member and
than weights proportional to each member's inverse trailing WIS (any power of it): three
members' bands are too close to tell apart on a few origins, and estimated weights only add
noise. The ensemble's ``combine`` and ``member_params`` remain available for other choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pipeline.errors import UsageError
from pipeline.forecasters.composite import refit_params
from pipeline.forecasters.ensemble import Ensemble

#: The bands averaged by default: every member's median is the last observed price.
BAND_MEMBERS = ("naive", "garch", "gjr_garch")


class BandAverage(Ensemble):
    """Equal-weight quantile average of random-walk-median bands (naive, GARCH, GJR-GARCH)."""

    name: ClassVar[str] = "band_average"
    libraries: ClassVar[tuple[str, ...]] = ("arch",)
    complexity: ClassVar[int] = 2

    def __init__(
        self,
        *,
        members: Sequence[str] = BAND_MEMBERS,
        member_params: Sequence[dict[str, Any]] | None = None,
        combine: str = "mean",
        weight_origins: int = 20,
        horizon: int | None = None,
    ) -> None:
        if "band_average" in [str(m) for m in members]:
            raise UsageError("band_average: a band average cannot contain itself")
        super().__init__(
            members=members,
            member_params=member_params,
            combine=combine,
            weight_origins=weight_origins,
            horizon=horizon,
        )

    def calibration_params(self) -> dict[str, Any]:
        """Constructor parameters for cheap refits (used by the conformal wrapper): every
        member refits the way its own ``calibration_params`` says (the GARCH members keep their
        fitted parameters and only re-run the variance recursion); the weights stay equal."""
        chosen: list[dict[str, Any]] = []
        members = zip(self.classes_, self.params["member_params"], self.members_, strict=True)
        for cls, own, fitted in members:
            chosen.append({**own, **refit_params(cls, fitted)})
        return {"member_params": chosen}


__all__ = ["BAND_MEMBERS", "BandAverage"]
