"""A publishing process killed (SIGKILL) at every point of a publish: a fresh reader still
loads the previous champion from the store, and ignores the half-written version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import load_settings
from pipeline.storage.mirror import attach_all
from tests.helpers.artifacts import write_version
from tests.helpers.paths import ROOT
from tests.helpers.s3 import SERIES, S3Server, fresh_champion

#: The publisher: every PUT is announced on stdout and waits for a line on stdin, so the test
#: decides exactly how many PUTs complete before it kills the process.
PUBLISHER = """
import sys
from pipeline.artifacts.store import ArtifactStore
from pipeline.config import get_settings
from pipeline.storage.objects import ObjectStore
from pipeline.storage.sync import before_read
from tests.helpers.artifacts import write_version
from tests.helpers.s3 import SERIES

put = ObjectStore.put_bytes
def paused(self, relative, data):
    sys.stdout.write(f"PUT {relative}\\n"); sys.stdout.flush()
    sys.stdin.readline()
    return put(self, relative, data)
ObjectStore.put_bytes = paused
settings = get_settings()
before_read(settings)
write_version(ArtifactStore(settings.models_dir), SERIES, "drift", promote=True)
sys.stdout.write("DONE\\n"); sys.stdout.flush()
"""


def publish(env: dict[str, str], puts_allowed: int) -> tuple[int, list[str]]:
    """Run the publisher, let ``puts_allowed`` PUTs through, then SIGKILL it at the next one
    (or let it finish); returns its exit code and the PUTs it announced."""
    with subprocess.Popen(
        [sys.executable, "-c", PUBLISHER], cwd=ROOT, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        announced: list[str] = []
        try:
            for line in proc.stdout:  # ends when the process exits
                if line.startswith("PUT "):
                    announced.append(line[4:].strip())
                    if len(announced) > puts_allowed:
                        os.kill(proc.pid, signal.SIGKILL)
                        break
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
            return proc.wait(timeout=120), announced
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_a_publish_killed_at_any_point_leaves_the_old_champion_loadable(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    settings = load_settings(
        models_dir=f"s3://{bucket}/models",
        storage_cache_dir=tmp_path / "w0",
        **s3_server.settings(),
    )
    old = write_version(
        ArtifactStore(attach_all(settings)["models_dir"].root), SERIES, "naive", promote=True
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("S3_", "AWS_"))},
        **s3_server.env(),
        "MODELS_DIR": f"s3://{bucket}/models",
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
    }
    # the whole publish: the version's files, its metadata.json, then the pointer
    code, full = publish({**env, "STORAGE_CACHE_DIR": str(tmp_path / "full")}, 100)
    assert code == 0, full
    assert full[-2].endswith("/metadata.json") and full[-1] == f"{SERIES.name}/champion.json"
    assert fresh_champion(s3_server, bucket, tmp_path / "r-full") is not None
    # back to the old champion, then kill a new publish before each of its PUTs in turn
    s3_server.client().put_object(
        Bucket=bucket, Key=f"models/{SERIES.name}/champion.json",
        Body=(settings.models_dir / SERIES.name / "champion.json").read_bytes(),
    )  # fmt: skip
    for allowed in range(len(full)):
        cache = tmp_path / f"w{allowed + 1}"
        code, announced = publish({**env, "STORAGE_CACHE_DIR": str(cache)}, allowed)
        assert code == -signal.SIGKILL and len(announced) == allowed + 1
        served = fresh_champion(s3_server, bucket, tmp_path / f"r{allowed}")
        assert served == ("naive", old.version), f"killed after {allowed} PUT(s): {served}"
