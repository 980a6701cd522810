"""A real S3-compatible server (moto's standalone server) on 127.0.0.1 for the storage tests.

``moto_server`` runs as a separate process on a free port (never moto's in-process mock): the
pipeline talks to it over HTTP with s3fs, as it would to AWS S3 or MinIO.
"""

from __future__ import annotations

import importlib.util
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pipeline.series import SeriesId
from tests.helpers.processes import free_port, stop

#: The series of the storage tests.
SERIES = SeriesId("bitcoin", "usd", "1d")
#: moto accepts any credentials; these are what the tests pass as S3_* settings.
KEY, SECRET, REGION = "testing-key", "testing-secret", "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen[bytes]
    log: Path

    def env(self) -> dict[str, str]:
        """The settings (environment variables) that point the pipeline at this server."""
        return {
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_ACCESS_KEY_ID": KEY,
            "S3_SECRET_ACCESS_KEY": SECRET,
            "S3_REGION": REGION,
        }

    def settings(self) -> dict[str, str]:
        """The same as :meth:`env`, as ``load_settings`` keyword arguments."""
        return {k.lower(): v for k, v in self.env().items()}

    def client(self) -> Any:
        """A boto3 client of this server (for test set-up and for looking at the bucket)."""
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=KEY,
            aws_secret_access_key=SECRET, region_name=REGION,
        )  # fmt: skip

    def keys(self, bucket: str) -> list[str]:
        """Every object key in ``bucket``, sorted."""
        listed = self.client().list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(item["Key"] for item in listed)

    def new_bucket(self) -> str:
        name = f"test-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        stop(self.proc)


def start_server(timeout: float = 60.0) -> S3Server | str:
    """Start ``moto_server``; a string says why it cannot (moto missing, or it did not start)."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        return "moto[server] is not installed (pip install -r requirements-dev.txt)"
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="moto-")) / "moto.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"moto_server exited at start: {log.read_text()[-500:]}"
        try:
            if httpx.get(f"{endpoint}/moto-api/", timeout=2).status_code < 500:
                return S3Server(endpoint, proc, log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop(proc)
    return f"moto_server did not answer on {endpoint} within {timeout:g} s"


def fresh_champion(
    s3: S3Server, bucket: str, cache: Path, series: SeriesId = SERIES
) -> tuple[str, str] | None:
    """(model, version) that a new reader (empty cache) of ``s3://bucket/models`` serves as the
    champion of ``series`` after one pull, or None."""
    from pipeline.api.registry import load_registry
    from pipeline.artifacts.store import ArtifactStore
    from pipeline.config import load_settings
    from pipeline.storage.mirror import attach_all, detach_all
    from pipeline.storage.pull import pull_models

    detach_all()
    settings = load_settings(
        models_dir=f"s3://{bucket}/models", storage_cache_dir=cache, **s3.settings()
    )
    pull_models(attach_all(settings)["models_dir"])
    registry = load_registry(ArtifactStore(settings.models_dir))
    model = registry.champions.get(series.name)
    if model is None:
        return None
    return model, registry.models[(series.name, model)].version
