"""Evaluation: rolling-origin backtests, metrics, the champion decision, the gate, reports."""
