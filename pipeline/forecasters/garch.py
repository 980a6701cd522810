"""Random-walk (or drift) mean with GARCH-family volatility of log returns, Student-t shocks.

The point forecast is the random walk (``garch``, ``gjr_garch``) or the random walk with the
GARCH model's constant drift (``drift_garch``) on log prices; the *spread* comes from a
GARCH(1,1) or GJR-GARCH(1,1,1) model of the log returns with standardised Student-t innovations,
fitted by maximum likelihood with the ``arch`` library.

Returns are modelled as ``r_t = scale * diff(log price)`` where ``scale`` is 100 (percent) or a
larger power of ten chosen so that the returns' standard deviation is >= 1 (``arch``'s optimiser
is unstable on tiny numbers, e.g. hourly returns in percent).

Intervals:

* step 1: the exact Student-t quantile scaled to the one-step conditional standard deviation;
* steps >= 2: the quantiles of the *cumulative* log return have no closed form, so they are taken
  from ``simulations`` Monte-Carlo paths of the fitted recursion (numpy, fixed seed, antithetic
  shocks), so a forecaster predicts exactly the same path every time, also after save/load.

The simulation is done here, not with ``arch``'s ``forecast(method="simulation")``, so that a
saved model only needs its handful of parameters (no data, no ``arch`` import at load time).
The expected conditional variances (:meth:`GarchForecaster.variance_forecast`) follow the closed
form ``s2[1] = omega + (alpha + gamma*1[e_T<0]) e_T^2 + beta s2_T`` and
``s2[k] = omega + (alpha + gamma/2 + beta) s2[k-1]`` for ``k >= 2``.

:meth:`~pipeline.forecasters.base.Forecaster.update` keeps the fitted parameters and runs the
variance recursion on through the new returns (:func:`extend_garch`), which gives the state a
fixed-parameter fit on the longer series (:func:`filter_garch`) would reach.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.errors import ForecastError, UsageError
from pipeline.forecasters.base import Forecaster

logger = logging.getLogger(__name__)

STATE_FILE = "garch.json"


@dataclass(frozen=True)
class GarchParams:
    """A fitted GJR-GARCH(1,1,1)-t model of scaled log returns (``gamma = 0``: plain GARCH)."""

    mu: float
    omega: float
    alpha: float
    gamma: float
    beta: float
    nu: float
    scale: float
    last_resid: float
    last_sigma2: float

    @property
    def persistence(self) -> float:
        """``alpha + gamma/2 + beta``: how fast the variance forecast reverts (< 1 stationary)."""
        return self.alpha + 0.5 * self.gamma + self.beta

    def next_variance(self) -> float:
        """Conditional variance of the first step after the training data (scaled units)."""
        e = self.last_resid
        return float(
            self.omega + (self.alpha + self.gamma * (e < 0)) * e * e + self.beta * self.last_sigma2
        )


def variance_path(p: GarchParams, h: int) -> np.ndarray:
    """Expected conditional variance of each of the next ``h`` returns (scaled units squared)."""
    out = np.empty(h)
    out[0] = p.next_variance()
    for k in range(1, h):
        out[k] = p.omega + p.persistence * out[k - 1]
    return out


def standardized_t(nu: float, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Student-t draws rescaled to unit variance (``arch``'s ``StudentsT`` distribution)."""
    return rng.standard_t(nu, size=size) * math.sqrt((nu - 2.0) / nu)


def simulate_shocks(p: GarchParams, h: int, n_paths: int, seed: int) -> np.ndarray:
    """``(n_paths, h)`` simulated shocks ``e = sqrt(s2) z`` (scaled units, drift excluded).

    Shocks are antithetic (``z`` and ``-z``), which halves the Monte-Carlo noise of the
    quantiles and makes them exactly symmetric for the plain GARCH model.
    """
    rng = np.random.default_rng(seed)
    half = max(1, n_paths // 2)
    z = standardized_t(p.nu, (half, h), rng)
    z = np.concatenate([z, -z])
    sigma2 = np.full(z.shape[0], p.next_variance())
    out = np.empty_like(z)
    for k in range(h):
        eps = np.sqrt(sigma2) * z[:, k]
        out[:, k] = eps
        sigma2 = p.omega + (p.alpha + p.gamma * (eps < 0)) * eps * eps + p.beta * sigma2
    return out


def simulate_cumulative(p: GarchParams, h: int, n_paths: int, seed: int) -> np.ndarray:
    """``(n_paths, h)`` simulated cumulative shocks: the log-price change minus the drift."""
    return np.cumsum(simulate_shocks(p, h, n_paths, seed), axis=1)


def t_quantile(p: GarchParams, prob: float) -> float:
    """Quantile of the standardised Student-t innovation of the fitted model."""
    return float(stats.t.ppf(prob, p.nu) * math.sqrt((p.nu - 2.0) / p.nu))


def quantile_paths(
    centre: np.ndarray, paths: np.ndarray, sd1: float, p: GarchParams, levels: Iterable[int]
) -> dict[str, np.ndarray]:
    """``mean, lower_L, upper_L`` (scaled units) from simulated paths of the forecast error.

    Step 1 uses the exact Student-t quantile ``centre[0] +- t_q * sd1`` instead of the paths.
    """
    out: dict[str, np.ndarray] = {"mean": centre.copy()}
    levels = list(levels)
    tails = [(1.0 - level / 100.0) / 2.0 for level in levels]
    # One sort of the paths for every probability (np.quantile per level would re-sort).
    q = np.quantile(paths, [*tails, *(1.0 - t for t in tails)], axis=0)
    for i, (level, tail) in enumerate(zip(levels, tails, strict=True)):
        lo = centre + q[i]
        hi = centre + q[len(levels) + i]
        t1 = t_quantile(p, 1.0 - tail) * sd1
        lo[0], hi[0] = centre[0] - t1, centre[0] + t1
        out[f"lower_{level}"] = lo
        out[f"upper_{level}"] = hi
    return out


def choose_scale(log_returns: np.ndarray) -> float:
    """100 (percent) or a larger power of ten so that the scaled returns' sd is >= 1."""
    sd = float(np.std(log_returns))
    if not np.isfinite(sd) or sd <= 0:
        raise ForecastError("GARCH: the prices never change; a volatility model cannot be fitted")
    scale = 100.0
    while sd * scale < 1.0 and scale < 1e8:
        scale *= 10.0
    return scale


def fit_garch(
    returns: np.ndarray, *, scale: float, drift: bool, asymmetric: bool, name: str
) -> GarchParams:
    """Fit ``(GJR-)GARCH(1,1)-t`` to already scaled returns with ``arch``; return its parameters."""
    from arch import arch_model  # lazy: importing arch takes ~2 s
    from arch.utility.exceptions import ConvergenceWarning, DataScaleWarning

    model = arch_model(
        returns,
        mean="Constant" if drift else "Zero",
        vol="GARCH",
        p=1,
        o=1 if asymmetric else 0,
        q=1,
        dist="t",
        rescale=False,
    )
    with warnings.catch_warnings():
        # We check convergence ourselves below; the scale is already chosen by choose_scale.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", DataScaleWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy SLSQP on extreme trial values
        res = model.fit(disp="off", show_warning=False)
    if res.convergence_flag != 0:
        logger.warning(
            "%s: the GARCH optimiser did not converge (flag %s); using its last estimate",
            name,
            res.convergence_flag,
        )
    values = res.params
    resid = np.asarray(res.resid, dtype=float)
    cond_vol = np.asarray(res.conditional_volatility, dtype=float)
    params = GarchParams(
        mu=float(values.get("mu", 0.0)),
        omega=float(values["omega"]),
        alpha=float(values["alpha[1]"]),
        gamma=float(values.get("gamma[1]", 0.0)),
        beta=float(values["beta[1]"]),
        nu=float(values["nu"]),
        scale=scale,
        last_resid=float(resid[-1]),
        last_sigma2=float(cond_vol[-1] ** 2),
    )
    if not all(np.isfinite(list(asdict(params).values()))) or params.nu <= 2.0:
        raise ForecastError(f"{name}: GARCH fit gave invalid parameters {asdict(params)}")
    return params


#: Parameters that ``fixed_params`` must give (``scale`` included: they are in scaled units).
FIXABLE = ("mu", "omega", "alpha", "gamma", "beta", "nu", "scale")
#: Paths per forecast in calibration refits (they only normalise the conformal scores).
CALIBRATION_SIMULATIONS = 1000
#: arch's backcast: exponentially weighted mean of the first squared residuals.
_BACKCAST_TAU = 75


def filter_garch(log_returns: np.ndarray, fixed: dict[str, float]) -> GarchParams:
    """Run the (GJR-)GARCH variance recursion with given parameters over new returns.

    The initial variance is ``arch``'s backcast (weights ``0.94**i`` over the first 75 squared
    residuals), so the result matches ``arch``'s filter with the same parameters.
    """
    e = log_returns * fixed["scale"] - fixed["mu"]
    tau = min(_BACKCAST_TAU, e.size)
    w = 0.94 ** np.arange(tau)
    sigma2 = float(np.sum(w / w.sum() * e[:tau] ** 2))
    omega, alpha, gamma, beta = fixed["omega"], fixed["alpha"], fixed["gamma"], fixed["beta"]
    for t in range(e.size - 1):
        sigma2 = omega + (alpha + gamma * (e[t] < 0)) * e[t] ** 2 + beta * sigma2
    return GarchParams(
        **{k: fixed[k] for k in FIXABLE}, last_resid=float(e[-1]), last_sigma2=float(sigma2)
    )


def extend_garch(p: GarchParams, log_returns: np.ndarray) -> GarchParams:
    """``p`` moved forward through the log returns that followed its last one: the same
    recursion as :func:`filter_garch`, started from ``p``'s last residual and variance."""
    e = np.asarray(log_returns, dtype=float) * p.scale - p.mu
    if e.size == 0:
        return p
    omega, alpha, gamma, beta = p.omega, p.alpha, p.gamma, p.beta
    prev, sigma2 = p.last_resid, p.last_sigma2
    for x in e:
        sigma2 = omega + (alpha + gamma * (prev < 0)) * prev**2 + beta * sigma2
        prev = float(x)
    return replace(p, last_resid=prev, last_sigma2=float(sigma2))


class GarchForecaster(Forecaster):
    """Random-walk log price + GARCH(1,1)-t volatility (registry name ``garch``)."""

    name: ClassVar[str] = "garch"
    min_points: ClassVar[int] = 100
    libraries: ClassVar[tuple[str, ...]] = ("arch",)
    complexity: ClassVar[int] = 2
    updatable: ClassVar[bool] = True
    #: Mean of the returns: False = random walk (zero mean), True = constant drift.
    drift: ClassVar[bool] = False
    #: GJR leverage term (``o=1``).
    asymmetric: ClassVar[bool] = False

    def __init__(
        self,
        *,
        simulations: int = 4000,
        seed: int = 0,
        fixed_params: dict[str, float] | None = None,
    ) -> None:
        if simulations < 100:
            raise UsageError(f"{self.name}: simulations must be >= 100, got {simulations}")
        if fixed_params is not None:
            missing = set(FIXABLE) - set(fixed_params)
            if missing:
                raise UsageError(f"{self.name}: fixed_params lacks {', '.join(sorted(missing))}")
            fixed_params = {k: float(fixed_params[k]) for k in FIXABLE}
        super().__init__(simulations=int(simulations), seed=int(seed), fixed_params=fixed_params)

    # -- fitting ------------------------------------------------------------------------------
    def _fit(self, y: pd.Series) -> None:
        log_returns = np.diff(np.log(y.to_numpy()))
        scale = choose_scale(log_returns)
        self.n_returns_ = len(log_returns)
        fixed = self.params["fixed_params"]
        if fixed is not None:
            self.garch_ = filter_garch(log_returns, fixed)
            return
        self.garch_ = fit_garch(
            log_returns * scale,
            scale=scale,
            drift=self.drift,
            asymmetric=self.asymmetric,
            name=self.name,
        )

    def _update(self, y_new: pd.Series) -> None:
        log_prices = np.log(np.r_[self.last_price_, y_new.to_numpy()])
        self.garch_ = extend_garch(self.garch_, np.diff(log_prices))

    def calibration_params(self) -> dict[str, Any]:
        """Constructor parameters for cheap refits (used by the conformal wrapper): the fitted
        GARCH parameters are kept and only the variance recursion is re-run on new data (with
        fewer simulated paths: calibration forecasts only normalise the conformal scores)."""
        return {
            "fixed_params": {k: getattr(self.garch_, k) for k in FIXABLE},
            "simulations": min(self.params["simulations"], CALIBRATION_SIMULATIONS),
            "seed": self.params["seed"],
        }

    def fitted_params(self) -> dict[str, Any]:
        if not hasattr(self, "garch_"):
            return {}
        return {
            **asdict(self.garch_),
            "persistence": self.garch_.persistence,
            "n_returns": self.n_returns_,
        }

    # -- forecasting ----------------------------------------------------------------------------
    def variance_forecast(self, h: int) -> np.ndarray:
        """Expected conditional variance of each of the next ``h`` log returns (log units^2)."""
        return variance_path(self.garch_, h) / self.garch_.scale**2

    def log_quantiles(self, h: int, levels: Iterable[int]) -> dict[str, np.ndarray]:
        """Centre and bounds of the cumulative log return for steps 1..h (log units)."""
        p = self.garch_
        centre = np.arange(1, h + 1) * p.mu
        paths = simulate_cumulative(p, h, self.params["simulations"], self.params["seed"])
        out = quantile_paths(centre, paths, math.sqrt(p.next_variance()), p, levels)
        return {k: v / p.scale for k, v in out.items()}

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        base = math.log(self.last_price_)
        quantiles = self.log_quantiles(h, levels)
        return pd.DataFrame({k: np.exp(base + v) for k, v in quantiles.items()})

    # -- persistence ----------------------------------------------------------------------------
    def _save_state(self, folder: Path) -> list[str]:
        state = {"garch": asdict(self.garch_), "n_returns": self.n_returns_}
        (folder / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        return [STATE_FILE]

    def _load_state(self, folder: Path) -> None:
        try:
            state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            self.garch_ = GarchParams(**state["garch"])
            self.n_returns_ = int(state["n_returns"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ForecastError(f"{folder / STATE_FILE}: unreadable GARCH state: {exc}") from exc


class GJRGarchForecaster(GarchForecaster):
    """Random-walk log price + GJR-GARCH(1,1,1)-t: bad news raises volatility more."""

    name: ClassVar[str] = "gjr_garch"
    asymmetric: ClassVar[bool] = True


class DriftGarchForecaster(GarchForecaster):
    """Random walk with drift (the GARCH model's constant mean) + GARCH(1,1)-t."""

    name: ClassVar[str] = "drift_garch"
    drift: ClassVar[bool] = True
