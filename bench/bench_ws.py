"""The /ws live feed: pushing one event to 200 subscribers (target under 50 ms).

Two measurements:

* **hub**: :meth:`pipeline.api.feed.FeedHub.publish` of one real ``forecast`` event (a 48-step
  path) to 200 subscribers of its series, in process: the cost the event loop pays per event;
* **end to end**: a real ``api_service.py`` on 127.0.0.1 with 200 WebSocket clients (one
  process, the ``websockets`` client) subscribed to one series; each round promotes a new
  version and reloads, and every client notes when the event arrived. The delivery time of a
  client is its arrival time minus the event's ``published_at`` (the server's clock when the
  hub pushed it; same machine, same clock); the round's figure is the slowest client's.

``python bench/bench_ws.py [--clients 200] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.api.feed import FeedHub, Subscriber  # noqa: E402
from pipeline.api.feed_schemas import ForecastEvent, PathPoint  # noqa: E402
from pipeline.artifacts.store import ArtifactStore  # noqa: E402
from pipeline.forecasters import make_forecaster  # noqa: E402
from pipeline.series import SeriesId, freq_offset  # noqa: E402

SERIES = SeriesId("bitcoin", "usd", "1h")
TARGET_MS = 50.0
ADMIN_KEY = "bench-ws-admin-key"


def prices(seed: int, n: int = 500) -> pd.Series:
    step = freq_offset(SERIES.freq)
    end = pd.Timestamp.now(tz="UTC").floor(step)
    rng = np.random.default_rng(seed)
    y = 30000.0 * np.exp(np.cumsum(0.004 * rng.standard_normal(n)))
    return pd.Series(y, index=pd.date_range(end=end, periods=n, freq=step, name="ds"), name="y")


def write(store: ArtifactStore, model: str, seed: int) -> str:
    y = prices(seed)
    meta = store.write_version(SERIES, make_forecaster(model).fit(y), y, horizon=48)
    store.promote(SERIES, model, meta.version, "bench")
    return meta.version


def sample_event() -> str:
    now = datetime.now(UTC)
    points = [
        PathPoint(
            timestamp=now,
            step=i + 1,
            mean=30000.0 + i,
            lower_80=29000.0,
            upper_80=31000.0,
            lower_95=28000.0,
            upper_95=32000.0,
        )  # fmt: skip
        for i in range(48)
    ]
    event = ForecastEvent(
        series=SERIES.name, change="new_champion", champion=None, models=[], forecast=points,
        published_at=now,
    )  # fmt: skip
    return event.model_dump_json()


async def hub_publish(clients: int, repeats: int = 200) -> tuple[float, float, int]:
    """Median and worst microseconds of one publish to ``clients`` subscribers, event bytes."""
    hub = FeedHub(runtime=None)  # type: ignore[arg-type]  # publish needs no runtime
    subs = [Subscriber() for _ in range(clients)]
    for sub in subs:
        hub.subscribers.add(sub)
        hub.subscribe(sub, [SERIES.name])
    text = sample_event()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        delivered = hub.publish(SERIES.name, text)
        times.append((time.perf_counter() - start) * 1e6)
        assert delivered == clients
        for sub in subs:
            sub.queue.get_nowait()
    return statistics.median(times), max(times), len(text.encode())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(models: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MODELS_DIR": str(models),
        "DATA_DIR": str(models.parent / "data"),
        "ADMIN_API_KEY": ADMIN_KEY,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("w") as out:
        cmd = [sys.executable, str(ROOT / "api_service.py"), "--host", "127.0.0.1"]
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], cwd=models.parent, env=env, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API exited: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the API did not start in 90 s")


async def next_of(ws: Any, kind: str) -> tuple[dict[str, Any], float]:
    while True:
        raw = await asyncio.wait_for(ws.recv(), 60)
        arrived = time.time()
        message: dict[str, Any] = json.loads(raw)
        if message["type"] == kind:
            return message, arrived


async def end_to_end(store: ArtifactStore, port: int, clients: int, rounds: int) -> list[float]:
    """The slowest client's delivery time (ms) of each round."""
    from websockets.asyncio.client import connect

    uri = f"ws://127.0.0.1:{port}/ws"
    conns = await asyncio.gather(*(connect(uri, open_timeout=60) for _ in range(clients)))
    worst = []
    try:
        await asyncio.gather(*(next_of(ws, "hello") for ws in conns))
        message = json.dumps({"action": "subscribe", "series": [SERIES.name]})
        await asyncio.gather(*(ws.send(message) for ws in conns))
        await asyncio.gather(*(next_of(ws, "subscribed") for ws in conns))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            for index in range(rounds):
                model = ("naive", "drift")[index % 2]
                await asyncio.to_thread(write, store, model, 100 + index)
                waiting = [asyncio.create_task(next_of(ws, "forecast")) for ws in conns]
                reload = await http.post("/model/reload", headers={"X-Admin-Key": ADMIN_KEY})
                assert reload.status_code == 200, reload.text
                results = await asyncio.gather(*waiting)
                sent = datetime.fromisoformat(results[0][0]["published_at"]).timestamp()
                delays = sorted((arrived - sent) * 1000 for _, arrived in results)
                worst.append(delays[-1])
                print(
                    f"  reload {index + 1}: first client {delays[0]:.1f} ms, median "
                    f"{statistics.median(delays):.1f} ms, slowest {delays[-1]:.1f} ms",
                    flush=True,
                )
    finally:
        await asyncio.gather(*(ws.close() for ws in conns))
    return worst


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    median_us, worst_us, size = asyncio.run(hub_publish(args.clients))
    print(f"hub publish of one forecast event ({size:,} bytes) to {args.clients} subscribers:")
    print(f"  median {median_us:.0f} µs, worst {worst_us:.0f} µs (200 repeats)")
    print(f"  load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())} (1 / 5 / 15 min)")
    print(f"end to end over loopback, {args.clients} WebSocket clients, {args.rounds} reloads:")
    with tempfile.TemporaryDirectory(prefix="bench-ws-") as tmp:
        models = Path(tmp) / "models"
        store = ArtifactStore(models)
        write(store, "drift", 1)
        port = free_port()
        proc = start_api(models, port, Path(tmp) / "api.log")
        try:
            worst = asyncio.run(end_to_end(store, port, args.clients, args.rounds))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print("  slowest client per reload (ms): " + ", ".join(f"{ms:.1f}" for ms in worst))
    best = statistics.median(worst)
    verdict = "meets" if best < TARGET_MS else "MISSES"
    print(f"  median of the rounds {best:.1f} ms: {verdict} the {TARGET_MS:.0f} ms target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
