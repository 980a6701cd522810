"""scripts/audit.py (make audit): which files it audits and how it reads pip-audit's report,
with skipped packages asked on their project page of a real HTTP feed on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_script", ROOT / "scripts" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


audit = load_audit()

#: Project pages of the fake feed: the latest release and its vulnerabilities.
PROJECTS: dict[str, dict[str, Any]] = {
    "ecdsa": {
        "info": {"version": "0.19.2"},
        "vulnerabilities": [
            {"id": "PYSEC-1", "aliases": ["CVE-1", "GHSA-1"], "fixed_in": []},
            {"id": "GHSA-1", "aliases": ["CVE-1", "PYSEC-1"], "fixed_in": []},  # same advisory
            {"id": "OLD-1", "aliases": [], "fixed_in": ["0.1"], "withdrawn": "2026-01-01"},
        ],
    },
    "requests": {"info": {"version": "2.34.2"}, "vulnerabilities": []},
    "jinja2": {"info": {"version": "3.2.0"}, "vulnerabilities": []},
}


class FeedHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        name = self.path.strip("/").split("/")[0]
        body = json.dumps(PROJECTS[name]).encode() if name in PROJECTS else b"{}"
        self.send_response(200 if name in PROJECTS else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def feed_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FeedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def skipped(name: str, version: str) -> dict[str, str]:
    reason = f"Dependency not found on PyPI and could not be audited: {name} ({version})"
    return {"name": name, "skip_reason": reason}


def test_a_file_included_by_another_is_audited_through_it(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("requests==2.34.2\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\npytest==9.2.0\n")
    (tmp_path / "requirements-mlflow.txt").write_text("mlflow==3.18.0\n")
    paths = [tmp_path / n for n in ("requirements.txt", "requirements-dev.txt")]
    paths.append(tmp_path / "requirements-mlflow.txt")
    assert audit.covered_files(paths) == paths[1:]


def test_pip_audit_findings_are_reported_with_their_fixes(feed_url: str) -> None:
    report = {
        "dependencies": [
            {"name": "fastapi", "version": "0.165.0", "vulns": []},
            {
                "name": "starlette",
                "version": "1.9.0",
                "vulns": [{"id": "GHSA-x", "aliases": ["CVE-x"], "fix_versions": ["1.10.0"]}],
            },
        ]
    }
    found = audit.summarize(report, audit.pypi_feed(feed_url))
    assert found.audited == 2 and not found.not_audited
    assert found.vulnerable == {"starlette==1.9.0": ["GHSA-x, CVE-x: fixed in 1.10.0"]}


def test_skipped_packages_are_audited_on_their_project_page_when_the_pin_is_latest(
    feed_url: str,
) -> None:
    report = {
        "dependencies": [
            skipped("ecdsa", "0.19.2"),  # latest, with one advisory (two records) + a withdrawn
            skipped("requests", "2.34.2"),  # latest, clean
            skipped("jinja2", "3.1.6"),  # older than the latest: the page cannot answer for it
            skipped("private-pkg", "1.0"),  # no project page
            {"name": "local", "skip_reason": "Dependency not on PyPI (editable)"},
        ]
    }
    found = audit.summarize(report, audit.pypi_feed(feed_url))
    assert found.audited == 2
    assert found.vulnerable == {"ecdsa==0.19.2": ["PYSEC-1, CVE-1, GHSA-1: no fix yet"]}
    assert found.not_audited == {
        "jinja2": "pinned 3.1.6, older than latest 3.2.0",
        "private-pkg": skipped("private-pkg", "1.0")["skip_reason"],
        "local": "Dependency not on PyPI (editable)",
    }
