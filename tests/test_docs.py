"""The README, the docs site and .env.example keep up with the code."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from pipeline.config import Settings
from tests.helpers.paths import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
TEXTS = [README, *PAGES]

# Set by api_service.py for its workers; documented, but not something to put in .env.
INTERNAL = {"PROMETHEUS_MULTIPROC_DIR"}
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", flags=re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    return _load(DOCS / "hooks" / "settings_table.py", "settings_table_hook")


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", _read(ROOT / "Makefile"), flags=re.M))


def _anchors(markdown: str) -> set[str]:
    """Heading ids as MkDocs makes them: an explicit ``{#id}``, else the slug of the title."""
    out = set()
    for title in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", markdown), flags=re.M):
        explicit = re.search(r"\{#([\w-]+)\}\s*$", title)
        if explicit:
            out.add(explicit.group(1))
            continue
        text = unicodedata.normalize("NFKD", title.replace("`", "")).encode("ascii", "ignore")
        slug = re.sub(r"[^\w\s-]", "", text.decode()).strip().lower()
        out.add(re.sub(r"[-\s]+", "-", slug))
    return out


# -- the README ---------------------------------------------------------------------------------
def test_readme_starts_with_the_two_commands() -> None:
    text = _read(README)
    first_block = text.split("```")[1]
    assert "make run" in first_block and "make test" in first_block
    assert text.index("```") < text.index("\n## "), "the commands come before the first section"


def test_readme_stays_short() -> None:
    assert len(_read(README).splitlines()) <= 220


def test_readme_shows_how_to_add_a_coin_and_the_other_common_tasks() -> None:
    headings = re.findall(r"^### (.+)$", _read(README), flags=re.M)
    for task in ("Add a coin", "Change the schedule", "Promote or roll back a model", "Deploy"):
        assert task in headings


def test_every_relative_link_in_the_readme_points_at_an_existing_file_and_anchor() -> None:
    broken = []
    for target in LINK.findall(_read(README)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path if path else README
        if not file.exists():
            broken.append(target)
        elif anchor and anchor not in _anchors(_read(file)):
            broken.append(target)
    assert broken == []


# -- settings -----------------------------------------------------------------------------------
def test_the_configuration_page_carries_the_generated_table(hook: ModuleType) -> None:
    assert hook.MARKER in _read(DOCS / "configuration.md")
    assert "docs/hooks/settings_table.py" in _read(ROOT / "mkdocs.yml")


def test_the_generated_table_lists_every_setting_once(hook: ModuleType) -> None:
    table = hook.settings_tables()
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \|", table, flags=re.M)
    assert sorted(rows) == sorted(name.upper() for name in Settings.model_fields)


def test_the_generated_table_shows_defaults_and_bounds(hook: ModuleType) -> None:
    table = hook.settings_tables()
    history = "| `HISTORY_DAYS` | `365` | integer, ≥ 1, ≤ 5000 | days fetched on a first ingest |"
    assert history in table
    assert "| `LOG_FORMAT` | `auto` | one of `auto`, `json`, `text` |" in table
    assert "| `API_KEY` | – | secret, optional |" in table
    assert "`quality_gate.json` (in the project)" in table
    assert str(ROOT) not in table, "no path of this machine in the docs"


def test_the_hook_replaces_the_marker_and_leaves_other_pages_alone(hook: ModuleType) -> None:
    page = f"# Configuration\n\n{hook.MARKER}\n\nmore\n"
    out = hook.on_page_markdown(page, page=None, config=None, files=None)
    assert hook.MARKER not in out and "| `DATA_DIR` |" in out and out.endswith("more\n")
    assert hook.on_page_markdown("# Other\n", page=None, config=None, files=None) == "# Other\n"


def test_every_setting_is_described() -> None:
    """By its Field description (shown in the generated table) or in the configuration text."""
    text = _read(DOCS / "configuration.md")
    missing = [
        name.upper()
        for name, info in Settings.model_fields.items()
        if not info.description and f"`{name.upper()}`" not in text
    ]
    assert missing == []


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    text = _read(ROOT / ".env.example")
    listed = set(re.findall(r"^# ([A-Z0-9_]+)=", text, flags=re.M))
    expected = {n.upper() for n in Settings.model_fields} - INTERNAL
    assert listed == expected


# -- what the text refers to exists -------------------------------------------------------------
@pytest.mark.parametrize("path", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_mentioned_exists(path: Path) -> None:
    mentioned = set(re.findall(r"(?:`|^)make ([a-z][a-z-]*)", _read(path), flags=re.M))
    assert mentioned - _makefile_targets() == set()


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_module_command_mentioned_exists(path: Path) -> None:
    missing = []
    for module in set(re.findall(r"python -m (pipeline(?:\.[a-z_]+)*)", _read(path))):
        try:
            found = importlib.util.find_spec(module) is not None
            # a package runs through its __main__ module
            found = found and importlib.util.find_spec(f"{module}.__main__") is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(module)
    assert missing == []


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_path_mentioned_exists(path: Path) -> None:
    # a path followed by a placeholder (`test_<module>.py`, `crypto-*.service`) counts up to its
    # last complete folder
    pattern = r"\b((?:pipeline|tests|bench|deploy|docs)/[\w./-]*\w)(?![\w<*{…-])"
    mentioned = set(re.findall(pattern, _read(path)))
    assert sorted(m for m in mentioned if not (ROOT / m).exists()) == []


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_examples_are_valid_python(path: Path) -> None:
    for lang, code in FENCE.findall(_read(path)):
        if lang == "python":
            ast.parse(code)


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_text_speaks_about_the_product_not_about_work_items(path: Path) -> None:
    found = re.findall(r"\bissue[- ]?\d+|\bissue's\b|\bthis session\b", _read(path), flags=re.I)
    assert found == []


# -- results pages ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("page", "command"),
    [("forecast-quality.md", "make quality-report"), ("performance.md", "make bench")],
)
def test_results_pages_state_their_date_and_command(page: str, command: str) -> None:
    text = _read(DOCS / "results" / page)
    assert re.search(r"\b20\d\d-\d\d-\d\d\b", text)
    assert f"`{command}`" in text


def test_the_benchmark_runner_writes_the_performance_page(tmp_path: Path) -> None:
    run_all = _load(ROOT / "bench" / "run_all.py", "run_all_under_test")
    runs = [
        run_all.BenchRun("bench_api.py", 0, 12.34, "req/s 8957\n"),
        run_all.BenchRun("bench_new.py", 3, 1.0, ""),
    ]
    when = datetime(2026, 11, 21, 10, 5, tzinfo=UTC)
    text = run_all.render_page(runs, when=when, command="python bench/run_all.py", machine="2 CPUs")
    assert text.startswith("# Performance\n\nMeasured on 2026-11-21 10:05 UTC by `make bench`")
    assert "(`python bench/run_all.py`) on 2 CPUs." in text
    assert "## bench_api.py\n\n" + run_all.ABOUT["bench_api.py"] in text
    assert "ok, 12.3 s wall.\n\n```text\nreq/s 8957\n```" in text
    failed = "## bench_new.py\n\n**failed** (exit 3), 1.0 s wall.\n\n```text\n(no output)\n```"
    assert failed in text
    page = tmp_path / "docs" / "performance.md"
    run_all.write_page(page, text)
    assert page.read_text(encoding="utf-8") == text
    assert [p.name for p in page.parent.iterdir()] == ["performance.md"]
