""".pre-commit-config.yaml: it parses, uses only the project's own tools, and its hooks catch
what ``make lint`` catches, offline, in a throw-away git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".pre-commit-config.yaml"
VENV_BIN = Path(sys.executable).parent
PRE_COMMIT = VENV_BIN / "pre-commit"
HOOKS = {"ruff", "ruff-format", "mypy", "hadolint"}


def hooks() -> list[dict[str, Any]]:
    config = yaml.safe_load(CONFIG.read_text("utf-8"))
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def test_config_is_valid_for_pre_commit() -> None:
    result = subprocess.run(
        [str(PRE_COMMIT), "validate-config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hook_is_local_and_runs_a_tool_of_the_venv() -> None:
    config = yaml.safe_load(CONFIG.read_text("utf-8"))
    assert [repo["repo"] for repo in config["repos"]] == ["local"]  # nothing to download
    assert {hook["id"] for hook in hooks()} == HOOKS
    for hook in hooks():
        assert hook["language"] == "system", hook["id"]
        tool = hook["entry"].split()[0]
        assert tool.startswith(".venv/bin/"), hook["id"]
        assert (VENV_BIN / Path(tool).name).exists(), f"{tool} is not installed"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with the project's hook and tool configuration and its .venv."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    shutil.copy(CONFIG, tmp_path / CONFIG.name)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    # The files mypy checks (pyproject's [tool.mypy] files) must exist: empty and well typed.
    with (ROOT / "pyproject.toml").open("rb") as fh:
        for name in tomllib.load(fh)["tool"]["mypy"]["files"]:
            path = tmp_path / name
            if path.suffix == ".py":
                path.write_text("", "utf-8")
            else:
                path.mkdir()
                (path / "__init__.py").write_text("", "utf-8")
    return tmp_path


def run_hooks(repo: Path, *files: str) -> subprocess.CompletedProcess[str]:
    subprocess.run(["git", "add", "--", *files], cwd=repo, check=True, timeout=30)
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(repo / ".pre-commit-home"),
        # Offline: a hook that tried to fetch anything would fail here.
        "GIT_ALLOW_PROTOCOL": "file",
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "PIP_NO_INDEX": "1",
    }
    return subprocess.run(
        [str(PRE_COMMIT), "run", "--color", "never", "--files", *files],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_hooks_fail_on_lint_format_type_and_dockerfile_errors_then_pass(repo: Path) -> None:
    module = repo / "pipeline" / "__init__.py"
    module.write_text('import os\n\n\ndef half(x: int) -> int:\n    return x / 2 # "float"\n')
    (repo / "Dockerfile").write_text("FROM debian:bookworm\nRUN cd /tmp && apt-get update\n")
    failed = run_hooks(repo, "pipeline/__init__.py", "Dockerfile")
    report = failed.stdout + failed.stderr
    assert failed.returncode == 1, report
    assert "F401" in report  # ruff: os imported but unused
    assert "Incompatible return value type" in report  # mypy
    assert "DL3003" in report  # hadolint: use WORKDIR instead of cd
    assert "files were modified by this hook" in report  # ruff format rewrote the comment

    module.write_text("def half(x: int) -> float:\n    return x / 2\n")
    (repo / "Dockerfile").write_text('FROM debian:bookworm-20250520\nWORKDIR /tmp\nCMD ["true"]\n')
    passed = run_hooks(repo, "pipeline/__init__.py", "Dockerfile")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert not (repo / ".pre-commit-home" / "repos").exists()  # no hook environment was made
