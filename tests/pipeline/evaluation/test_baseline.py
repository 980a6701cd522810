"""The quality baseline file: what it records, and when a run may be compared with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.evaluation.baseline import (
    baseline_entry,
    check_comparable,
    read_baseline,
    series_fingerprint,
    write_baseline,
)
from tests.helpers.backtests import small_protocol
from tests.helpers.backtests import summary_row as row
from tests.helpers.paths import ROOT
from tests.helpers.prices import random_walk_prices


def test_baseline_round_trip_and_comparability(tmp_path: Path) -> None:
    y = random_walk_prices(200)
    protocol = small_protocol(y).to_dict()
    path = tmp_path / "baseline.json"
    fp = series_fingerprint(y)
    summary = {"naive": {**row(1.0, 0.9), "wis": 12.3456789, "wis_ratio": 1.0}}
    write_baseline(
        path, "a", protocol=protocol, summary=summary, fingerprint=fp, data="d", champion="naive"
    )
    write_baseline(
        path, "b", protocol=protocol, summary=summary, fingerprint=fp, data="d", champion="naive"
    )
    entry = read_baseline(path)["series"]["a"]
    assert set(read_baseline(path)["series"]) == {"a", "b"}
    assert entry["models"] == {
        "naive": {"mase": 1.0, "coverage_95": 0.9, "winkler_95": 100.0, "wis": 12.345679}
    }
    check_comparable(entry, protocol, fp, path)
    with pytest.raises(UsageError, match="protocol differs"):
        check_comparable(entry, {**protocol, "horizon": 9}, fp, path)
    with pytest.raises(UsageError, match="data differs"):
        check_comparable(entry, protocol, series_fingerprint(y * 1.01), path)
    with pytest.raises(UsageError, match="has no entry for c \\(has: a, b\\)"):
        baseline_entry(read_baseline(path), "c", path)


def test_the_committed_baseline_records_wis_for_every_model() -> None:
    baseline = read_baseline(ROOT / "quality_baseline.json")
    assert set(baseline["series"]) == {"bitcoin-usd-1d", "bitcoin-usd-1h", "ethereum-usd-1d"}
    for entry in baseline["series"].values():
        for scores in entry["models"].values():
            assert scores["wis"] > 0 and scores["winkler_95"] > scores["wis"]
