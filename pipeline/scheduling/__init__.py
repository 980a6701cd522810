"""Scheduling: the nightly cycle, its history and lock, notifications and metrics."""
