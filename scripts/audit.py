"""Known vulnerabilities in the pinned requirements: pip-audit, with one fallback.

    python scripts/audit.py requirements.txt requirements-dev.txt ...   (make audit)

pip-audit resolves each requirements file (a file that another one includes with ``-r`` is
covered by it) and asks PyPI's vulnerability feed about every resolved package version
(``/pypi/NAME/VERSION/json``). Where that per-version answer is unavailable (pip-audit then
skips the package as "not found on PyPI"; some mirrors and proxies serve only the project
pages), the project page ``/pypi/NAME/json`` is asked instead: its ``vulnerabilities`` are
those of the latest release, so they answer for a pin that *is* the latest release. Any other
skipped package is listed as not audited.

Exit status: 0 no known vulnerability, 1 a vulnerability was found, 2 pip-audit failed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

PYPI = "https://pypi.org/pypi"
_SKIPPED_VERSION = re.compile(r"\((?P<version>[^()\s]+)\)\s*$")
#: Reads a project page of the feed: name -> parsed JSON, or None when there is none.
ProjectFeed = Callable[[str], dict[str, Any] | None]


@dataclass
class Findings:
    vulnerable: dict[str, list[str]] = field(default_factory=dict)  # "name==version" -> lines
    audited: int = 0
    not_audited: dict[str, str] = field(default_factory=dict)  # "name" -> why


def covered_files(paths: Sequence[Path]) -> list[Path]:
    """``paths`` less the files another one of them includes with ``-r``."""
    included: set[Path] = set()
    for path in paths:
        for line in path.read_text("utf-8").splitlines():
            match = re.match(r"\s*(?:-r|--requirement)\s+(\S+)", line)
            if match:
                included.add((path.parent / match.group(1)).resolve())
    return [p for p in paths if p.resolve() not in included]


def pypi_feed(base: str = PYPI, timeout: float = 20) -> ProjectFeed:
    def read(name: str) -> dict[str, Any] | None:
        response = requests.get(f"{base}/{name}/json", timeout=timeout)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    return read


def _vuln_lines(vulns: Sequence[tuple[str, Sequence[str], Sequence[str]]]) -> list[str]:
    """One line per vulnerability ``(id, aliases, fixed versions)``; an advisory that is an
    alias of one already listed (the PYSEC and GHSA records of one CVE) is not repeated."""
    seen: set[str] = set()
    lines = []
    for vuln_id, aliases, fixed in vulns:
        if vuln_id in seen:
            continue
        seen.update([vuln_id, *aliases])
        names = ", ".join([vuln_id, *aliases])
        lines.append(f"{names}: fixed in {', '.join(fixed)}" if fixed else f"{names}: no fix yet")
    return lines


def summarize(report: dict[str, Any], feed: ProjectFeed) -> Findings:
    """What a pip-audit JSON report says, with skipped packages asked on their project page."""
    found = Findings()
    asked = [
        d["name"]
        for d in report["dependencies"]
        if _SKIPPED_VERSION.search(d.get("skip_reason", ""))
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:  # one request each, mostly waiting
        pages = dict(zip(asked, pool.map(feed, asked), strict=True))
    for dep in report["dependencies"]:
        name = dep["name"]
        if "skip_reason" not in dep:
            found.audited += 1
            lines = _vuln_lines([(v["id"], v["aliases"], v["fix_versions"]) for v in dep["vulns"]])
            if lines:
                found.vulnerable[f"{name}=={dep['version']}"] = lines
            continue
        match = _SKIPPED_VERSION.search(dep["skip_reason"])
        project = pages.get(name)
        if project is None or match is None:
            found.not_audited[name] = dep["skip_reason"]
            continue
        latest = project["info"]["version"]
        if latest != match.group("version"):
            found.not_audited[name] = f"pinned {match.group('version')}, older than latest {latest}"
            continue
        found.audited += 1
        vulns = project.get("vulnerabilities") or []
        lines = _vuln_lines(
            [
                (v["id"], v.get("aliases", []), v.get("fixed_in", []))
                for v in vulns
                if not v.get("withdrawn")
            ]
        )
        if lines:
            found.vulnerable[f"{name}=={latest}"] = lines
    return found


def pip_audit(requirements: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "-f", "json"]
    command += ["--progress-spinner", "off"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    # pip-audit exits 1 when it found vulnerabilities; its JSON is on stdout either way.
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise RuntimeError(f"pip-audit -r {requirements} failed:\n{result.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requirements", nargs="+", type=Path)
    parser.add_argument("--pypi-url", default=PYPI, help="the feed's base URL (default: PyPI)")
    args = parser.parse_args(argv)
    feed = pypi_feed(args.pypi_url)
    status = 0
    for path in covered_files(args.requirements):
        try:
            found = summarize(pip_audit(path), feed)
        except (RuntimeError, requests.RequestException, ValueError) as exc:
            print(f"audit: {path}: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
            return 2
        total = found.audited + len(found.not_audited)
        print(f"{path}: {found.audited} of {total} packages audited")  # noqa: T201
        for pin, lines in sorted(found.vulnerable.items()):
            status = 1
            for line in lines:
                print(f"  VULNERABLE {pin}: {line}")  # noqa: T201
        for name, why in sorted(found.not_audited.items()):
            print(f"  not audited: {name}: {why}")  # noqa: T201
    print("audit: known vulnerabilities found" if status else "audit: no known vulnerabilities")  # noqa: T201
    return status


if __name__ == "__main__":
    raise SystemExit(main())
