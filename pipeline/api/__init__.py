"""Prediction API: FastAPI app serving the forecasts the training stage precomputed."""
