"""``python -m pipeline.artifacts``: list, show, promote, rollback, prune and their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.artifacts import manage as cli
from pipeline.artifacts.store import ArtifactStore
from pipeline.series import SeriesId
from tests.helpers.artifacts import write_version
from tests.helpers.prices import random_walk_prices

SERIES = SeriesId("bitcoin", "usd", "1d")
SEL = ["--series", "bitcoin-usd-1d"]


def write(store: ArtifactStore, model: str = "naive", mase: float = 1.0, n: int = 60) -> str:
    y = random_walk_prices(n)
    return write_version(store, SERIES, model, y, horizon=5, metrics={"mase": mase}).version


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_versions_metrics_and_the_champion(
    store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = write(store, mase=1.25), write(store, "drift", mase=0.9876)
    store.promote(SERIES, "drift", v2)
    code, out, _ = run(["list"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["series", "model", "version", "created_at", "mase", "points"]
    drift = next(line for line in lines if v2 in line)
    naive = next(line for line in lines if v1 in line)
    assert drift.startswith("*") and "0.9876" in drift and "bitcoin-usd-1d" in drift
    assert not naive.startswith("*") and "1.2500" in naive and " 60" in naive
    code, out, _ = run(["list", "--model", "naive", "--coin", "bitcoin"], capsys)
    assert code == 0 and v1 in out and v2 not in out


def test_list_of_an_empty_folder(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["list"], capsys)
    assert code == 0 and "no model versions" in out


def test_show_prints_champion_metadata_and_verifies(
    store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    version = write(store)
    store.promote(SERIES, "naive", version)
    code, out, _ = run(["show", *SEL], capsys)
    assert code == 0
    shown = json.loads(out)
    assert shown["version"] == version and shown["champion"] is True
    assert shown["path"].endswith(f"bitcoin-usd-1d/naive/{version}")
    code, out, _ = run(["show", "--coin", "bitcoin", "--freq", "1d", "--model", "naive"], capsys)
    assert code == 0 and json.loads(out)["version"] == version


def test_show_of_a_tampered_version_exits_1(
    store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    version = write(store)
    (store.version_dir(SERIES, "naive", version) / "baseline.json").write_text("{}", "utf-8")
    code, _, err = run(["show", *SEL, "--model", "naive", "--version", version], capsys)
    assert code == 1 and "baseline.json: checksum mismatch" in err


def test_promote_latest_and_rollback(
    store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = write(store), write(store)
    code, out, _ = run(["promote", *SEL, "--model", "naive", "--version", v1], capsys)
    assert code == 0 and f"naive/{v1}" in out
    code, out, _ = run(["promote", *SEL, "--model", "naive", "--reason", "hand-picked"], capsys)
    assert code == 0
    champ = store.champion(SERIES)
    assert champ is not None and champ.version == v2 and champ.reason == "hand-picked"
    code, out, _ = run(["rollback", *SEL], capsys)
    assert code == 0 and f"naive/{v1}" in out
    champ = store.champion(SERIES)
    assert champ is not None and champ.version == v1
    code, _, err = run(["rollback", *SEL], capsys)
    assert code == 1 and "no previous champion" in err


def test_prune_keeps_the_champion_and_last_n(
    store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    versions = [write(store) for _ in range(4)]
    store.promote(SERIES, "naive", versions[0])
    code, out, _ = run(["prune", "--keep", "1"], capsys)
    assert code == 0 and "removed 2 version(s)" in out
    assert store.list_versions(SERIES, "naive") == [versions[0], versions[3]]


def test_models_dir_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = ArtifactStore(tmp_path / "other-models")
    version = write(other)
    code, out, _ = run(["list", "--models-dir", str(other.root)], capsys)
    assert code == 0 and version in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["show", *SEL], 1, "no champion yet"),
        (["show", *SEL, "--model", "arima"], 1, "no versions"),
        (["promote", *SEL], 2, "promote needs --model"),
        (["promote", *SEL, "--model", "naive"], 1, "no versions"),
        (["promote", *SEL, "--model", "naive", "--version", "../../../x"], 1, "outside the models"),
        (["rollback"], 2, "give --series"),
        (["rollback", "--coin", "bitcoin"], 2, "both --coin and --freq"),
        (["show", "--series", "nonsense"], 2, "invalid series name"),
        (["prune", "--keep", "0"], 2, "--keep must be >= 1"),
    ],
)
def test_errors_and_exit_codes(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got, _, err = run(argv, capsys)
    assert got == code
    assert message in err


def test_missing_subcommand_is_usage() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
