"""Real local fakes of external services for tests (no network)."""
