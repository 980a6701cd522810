"""The GitHub workflows parse, follow our rules, and only reference things that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.paths import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


def _triggers(data: dict[str, Any]) -> Any:
    return data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` key as True


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", text, flags=re.MULTILINE))


def _commands(data: dict[str, Any]) -> list[str]:
    out = []
    for job in data["jobs"].values():
        for step in job.get("steps", []):
            run = step.get("run")
            if run:
                # join continued lines, split on newlines and shell separators
                text = run.replace("\\\n", " ")
                for line in text.splitlines():
                    out += [part.strip() for part in re.split(r"&&|\|\||;", line) if part.strip()]
    return out


def test_there_are_ci_and_nightly_workflows() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {"ci.yml", "nightly.yml"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_rules(path: Path) -> None:
    data = _load(path)
    assert data.get("name")
    assert _triggers(data), f"{path.name}: no triggers"
    assert data.get("permissions") == {"contents": "read"}, "minimal permissions at the top"
    for name, job in data["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"{name}: no timeout-minutes"
        assert job["timeout-minutes"] <= 90
        for step in job.get("steps", []):
            uses = step.get("uses")
            if uses:
                assert PINNED.match(uses), f"{name}: action {uses!r} is not pinned to a version"
            if uses and uses.startswith("actions/setup-python"):
                assert step["with"]["cache"] == "pip", f"{name}: setup-python without pip cache"


def test_ci_runs_lint_types_tests_and_gate_on_push_and_pr() -> None:
    data = _load(ROOT / ".github" / "workflows" / "ci.yml")
    triggers = _triggers(data)
    assert "push" in triggers and "pull_request" in triggers
    commands = " ".join(_commands(data))
    for needed in (
        "ruff check",
        "mypy",
        "make test",
        "compare_models.py",
        "--gate",
        "pipeline.ingest",
    ):
        assert needed in commands


def test_nightly_is_scheduled_and_uploads_reports() -> None:
    data = _load(ROOT / ".github" / "workflows" / "nightly.yml")
    assert _triggers(data)["schedule"][0]["cron"]
    steps = [s for job in data["jobs"].values() for s in job["steps"]]
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and "reports/" in uploads[0]["with"]["path"]
    assert uploads[0].get("if") == "always()"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_referenced_target_script_and_module_exists(path: Path) -> None:
    targets = _make_targets()
    for command in _commands(_load(path)):
        words = shlex.split(command)
        for i, word in enumerate(words):
            if word == "make" and i + 1 < len(words):
                assert words[i + 1] in targets, f"{path.name}: no make target {words[i + 1]!r}"
            if word.endswith(".py") and not word.startswith("-"):
                assert (ROOT / word).is_file(), f"{path.name}: no script {word}"
            if word == "-m" and i + 1 < len(words):
                module = words[i + 1].replace(".", "/")
                exists = (ROOT / f"{module}.py").is_file() or (
                    ROOT / module / "__main__.py"
                ).is_file()
                assert exists, f"{path.name}: no module {words[i + 1]}"
            if word.startswith(".venv/bin/"):
                tool = word.removeprefix(".venv/bin/")
                assert tool in {"python", "ruff", "mypy", "pytest"}, f"unexpected tool {tool}"
