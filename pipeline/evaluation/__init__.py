"""Evaluation: rolling-origin backtests, metrics, the champion decision, the gate, reports.

``protocol`` (where the origins are) -> ``folds`` (one fit, its forecasts) -> ``parallel``
(joblib / Dask) -> ``backtest`` (results) -> ``champion`` (the decision, every threshold) and
``gate`` (the quality gate) -> ``report`` and ``plots``; ``compare`` runs them for
``compare_models.py``.
"""
