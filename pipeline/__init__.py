"""Crypto price forecasting pipeline: ingest -> process -> train -> serve."""

__version__ = "0.1.0"
