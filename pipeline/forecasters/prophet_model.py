"""Prophet on log prices, with seasonality chosen per frequency and seeded intervals.

Seasonality (each can be forced on or off with the matching parameter):

* hourly and 4-hourly data: daily and weekly seasonality, no yearly;
* daily data: no daily or weekly seasonality (crypto trades 24/7 and day-of-week effects in daily
  closes are weak), yearly seasonality only when the history covers more than two years.

Intervals are quantiles of ``uncertainty_samples`` draws from Prophet's posterior predictive
distribution (trend changes plus observation noise) of the log price, drawn with a fixed seed so
that a saved model predicts identically after loading. The point forecast is Prophet's ``yhat``
(trend plus seasonality). Note that Prophet's trend is fitted over the whole history, so its
forecast does not start at the last observed price, and its intervals are usually too narrow on
crypto prices (the holdout coverage in the metadata shows by how much).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.errors import ForecastError
from pipeline.forecasters.base import Forecaster

if TYPE_CHECKING:
    from prophet import Prophet

logger = logging.getLogger(__name__)

MODEL_FILE = "prophet.json"
_DAY = pd.Timedelta(days=1)
_TWO_YEARS = pd.Timedelta(days=730)


def _drop_plotly_notice(record: logging.LogRecord) -> bool:
    return "Importing plotly failed" not in record.getMessage()


def import_prophet() -> type[Prophet]:
    """Import Prophet quietly: no plotly notice, no cmdstanpy INFO lines per fit."""
    logging.getLogger("prophet.plot").addFilter(_drop_plotly_notice)
    from cmdstanpy.utils import get_logger
    from prophet import Prophet

    # prophet sets its logger to INFO on import; cmdstanpy sets its own to DEBUG (and adds an
    # INFO handler when the root logger has none) the first time get_logger() runs: run it now,
    # then quiet both. Two INFO lines per fit ("Chain [1] start processing") stay out of our logs.
    get_logger()
    for name in ("prophet", "cmdstanpy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return Prophet


class ProphetForecaster(Forecaster):
    """Prophet (linear trend, additive seasonality) on log prices."""

    name: ClassVar[str] = "prophet"
    min_points: ClassVar[int] = 30
    libraries: ClassVar[tuple[str, ...]] = ("prophet",)
    complexity: ClassVar[int] = 3

    def __init__(
        self,
        uncertainty_samples: int = 500,
        seed: int = 42,
        changepoint_prior_scale: float = 0.05,
        daily_seasonality: bool | None = None,
        weekly_seasonality: bool | None = None,
        yearly_seasonality: bool | None = None,
    ) -> None:
        if uncertainty_samples < 100:
            raise ForecastError(
                f"{self.name}: uncertainty_samples must be >= 100 to estimate intervals"
            )
        super().__init__(
            uncertainty_samples=uncertainty_samples,
            seed=seed,
            changepoint_prior_scale=changepoint_prior_scale,
            daily_seasonality=daily_seasonality,
            weekly_seasonality=weekly_seasonality,
            yearly_seasonality=yearly_seasonality,
        )

    def seasonality_for(self, step: pd.Timedelta, span: pd.Timedelta) -> dict[str, bool]:
        """Seasonalities used for a series with this step and history span."""
        intraday = step < _DAY
        auto = {"daily": intraday, "weekly": intraday, "yearly": not intraday and span > _TWO_YEARS}
        return {
            key: auto[key]
            if self.params[f"{key}_seasonality"] is None
            else bool(self.params[f"{key}_seasonality"])
            for key in auto
        }

    def fitted_params(self) -> dict[str, Any]:
        if not hasattr(self, "model_"):
            return {}
        return {
            "seasonalities": sorted(self.model_.seasonalities),
            "n_changepoints": int(self.model_.n_changepoints),
        }

    def _fit(self, y: pd.Series) -> None:
        prophet_cls = import_prophet()
        span = y.index[-1] - y.index[0]
        seasons = self.seasonality_for(self.step_, span)
        model = prophet_cls(
            growth="linear",
            changepoint_prior_scale=self.params["changepoint_prior_scale"],
            daily_seasonality=False,
            weekly_seasonality=seasons["weekly"],
            yearly_seasonality=seasons["yearly"],
            uncertainty_samples=self.params["uncertainty_samples"],
        )
        if seasons["daily"]:
            per_day = int(_DAY / self.step_)
            # Fourier terms above per_day/2 cycles a day alias on a coarse grid (4h: 6 a day).
            model.add_seasonality(
                "daily", period=1, fourier_order=max(1, min(4, (per_day - 1) // 2))
            )
        frame = pd.DataFrame({"ds": y.index.tz_convert(None), "y": np.log(y.to_numpy())})
        try:
            model.fit(frame)
        except (RuntimeError, ValueError) as exc:
            raise ForecastError(f"{self.name}: Stan could not fit the model: {exc}") from exc
        self.model_ = model
        logger.debug("%s fitted: seasonalities=%s", self.name, sorted(model.seasonalities))

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        future = pd.DataFrame({"ds": self.future_index(h).tz_convert(None)})
        model = self.model_
        prepared = model.setup_dataframe(future.copy())
        components = model.predict_seasonal_components(prepared)
        point = (
            model.predict_trend(prepared) * (1 + components["multiplicative_terms"].to_numpy())
            + components["additive_terms"].to_numpy()
        )
        # Prophet samples with numpy's global generator: seed it, then put it back as it was.
        saved = np.random.get_state()
        np.random.seed(self.params["seed"])
        try:
            samples = model.predictive_samples(future)["yhat"]
        finally:
            np.random.set_state(saved)
        out: dict[str, np.ndarray] = {"mean": np.exp(np.asarray(point, dtype=float))}
        for level in levels:
            lo, hi = np.percentile(samples, [50 - level / 2, 50 + level / 2], axis=1)
            out[f"lower_{level}"] = np.exp(lo)
            out[f"upper_{level}"] = np.exp(hi)
        return pd.DataFrame(out)

    def _save_state(self, folder: Path) -> list[str]:
        from prophet.serialize import model_to_json

        (folder / MODEL_FILE).write_text(model_to_json(self.model_), encoding="utf-8")
        return [MODEL_FILE]

    def _load_state(self, folder: Path) -> None:
        import_prophet()
        from prophet.serialize import model_from_json

        self.model_ = model_from_json((folder / MODEL_FILE).read_text(encoding="utf-8"))
