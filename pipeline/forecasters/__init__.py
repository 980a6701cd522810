"""Forecaster registry: names -> classes, imported lazily (prophet and statsmodels are slow)."""

from __future__ import annotations

import importlib
from typing import Any

from pipeline.errors import UsageError
from pipeline.forecasters.base import DEFAULT_LEVELS, Forecaster, interval_columns, takes_param

#: name -> "module:Class" (module under pipeline.forecasters)
REGISTRY: dict[str, str] = {
    "naive": "baselines:Naive",
    "drift": "baselines:Drift",
    "arima": "arima:AutoARIMA",
    "prophet": "prophet_model:ProphetForecaster",
    "garch": "garch:GarchForecaster",
    "gjr_garch": "garch:GJRGarchForecaster",
    "drift_garch": "garch:DriftGarchForecaster",
    "arima_garch": "arima_garch:ArimaGarch",
    "conformal_naive": "conformal:ConformalNaive",
    "conformal_garch": "conformal:ConformalGarch",
    "aci_naive": "conformal:AdaptiveConformalNaive",
    "aci_garch": "conformal:AdaptiveConformalGarch",
    "ensemble": "ensemble:Ensemble",
    "band_average": "band_average:BandAverage",
    "calibrated_band_average": "level_calibrated:CalibratedBandAverage",
}

#: What training and the nightly cycle fit by default: the baselines, the classical models, the
#: volatility models, their calibrated versions, the combination, the band average (the anchor of
#: champion selection, see pipeline.evaluation.champion) and the band average with a calibrated
#: 80% band (the anchor of intraday series). The remaining registered models (drift_garch,
#: aci_*) compete in compare_models / the quality report when named.
DEFAULT_MODELS: tuple[str, ...] = (
    "naive",
    "drift",
    "arima",
    "prophet",
    "garch",
    "gjr_garch",
    "arima_garch",
    "conformal_naive",
    "conformal_garch",
    "ensemble",
    "band_average",
    "calibrated_band_average",
)


def forecaster_class(name: str) -> type[Forecaster]:
    """The class registered under ``name``."""
    try:
        module_name, class_name = REGISTRY[name].split(":")
    except KeyError:
        raise UsageError(f"unknown model {name!r}: choose from {', '.join(REGISTRY)}") from None
    module = importlib.import_module(f"pipeline.forecasters.{module_name}")
    cls: type[Forecaster] = getattr(module, class_name)
    return cls


def horizon_params(model: str | type[Forecaster], horizon: int) -> dict[str, int]:
    """``{"horizon": horizon}`` for a model that calibrates over a horizon (its constructor
    takes ``horizon``: the conformal models and the ensemble), else ``{}``.

    Callers that know the served horizon merge this into the model's parameters, so those
    models calibrate the horizon that will be served rather than the frequency's default.
    """
    cls = forecaster_class(model) if isinstance(model, str) else model
    return {"horizon": int(horizon)} if takes_param(cls, "horizon") else {}


def make_forecaster(name: str, **params: Any) -> Forecaster:
    """A fresh, unfitted forecaster."""
    return forecaster_class(name)(**params)


def parse_models(text: str | None) -> list[str]:
    """``"naive,arima"`` -> ``["naive", "arima"]``, validated; ``None`` -> all defaults."""
    if not text:
        return list(DEFAULT_MODELS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in REGISTRY:
            raise UsageError(f"unknown model {name!r}: choose from {', '.join(REGISTRY)}")
    return names


__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_MODELS",
    "REGISTRY",
    "Forecaster",
    "forecaster_class",
    "horizon_params",
    "interval_columns",
    "make_forecaster",
    "parse_models",
]
