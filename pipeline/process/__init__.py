"""Processing stage: raw prices -> regular grid, features and stationarity in data/processed/."""
