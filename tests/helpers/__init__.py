"""Plain helpers for the tests (no fixtures, no tests): paths, price series, fakes, processes."""
