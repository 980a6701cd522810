"""The README and .env.example keep up with the code."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# Set by api_service.py for its workers; documented, but not something to put in .env.
INTERNAL = {"PROMETHEUS_MULTIPROC_DIR"}


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert "make run" in first_block and "make test" in first_block


def test_every_setting_is_documented_in_the_readme() -> None:
    missing = [n.upper() for n in Settings.model_fields if f"`{n.upper()}`" not in README]
    assert missing == []


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^# ([A-Z0-9_]+)=", text, flags=re.M))
    expected = {n.upper() for n in Settings.model_fields} - INTERNAL
    assert listed == expected


def test_every_make_target_in_the_readme_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))
    mentioned = set(re.findall(r"`make ([a-z][a-z-]*)", README))
    assert mentioned - targets == set()
