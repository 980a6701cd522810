"""The dashboard in a real headless Chromium against a real API process on 127.0.0.1.

Each test records what the page requested (every URL must be this server's), its console
errors (there must be none), and writes screenshots (see the ``screenshots`` fixture). The
first load's transferred bytes and render time are printed (``-s``) and kept as test
properties: they are measured, not asserted as timings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.feed import promote_new
from tests.helpers.serving import BTC_1D, BTC_1H

from .conftest import Api

pytestmark = pytest.mark.slow

#: The first load may transfer at most this much (page, script, style, icon and the JSON).
BUDGET_BYTES = 1_500_000

_TRANSFER = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const res = performance.getEntriesByType("resource");
  return {bytes: nav.transferSize + res.reduce((sum, r) => sum + r.transferSize, 0),
          requests: res.length + 1};
}"""


@dataclass
class Watched:
    """A page and what it did: requests, WebSockets, console errors, documents loaded."""

    page: Any
    urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)

    def chart(self, name: str) -> str:
        value: str = self.page.eval_on_selector("#chart", f"svg => svg.dataset.{name}")
        return value


def open_page(browser: Any, api: Api, fragment: str = "") -> Watched:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    watched = Watched(page)
    page.on("request", lambda request: watched.urls.append(request.url))
    page.on("websocket", lambda ws: watched.urls.append(ws.url))
    page.on("console", lambda msg: watched.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
    page.on(
        "request",
        lambda r: watched.documents.append(r.url) if r.resource_type == "document" else None,
    )
    page.goto(f"{api.base}/dashboard{fragment}")
    page.wait_for_selector("body[data-state=ready]", timeout=20_000)
    return watched


def served_steps(api: Api, timeframe: str) -> int:
    """How many steps the API answers for the series' whole horizon right now."""
    horizon = {"1d": 30, "1h": 48}[timeframe]
    body = {"timeframe": timeframe, "steps": horizon}
    forecasts = httpx.post(f"{api.base}/api/v1/predict", json=body).json()["forecasts"]
    assert len(forecasts) in (horizon - 1, horizon)  # one fewer if a period closed just now
    return len(forecasts)


def fan_points(watched: Watched) -> tuple[int, int]:
    """(step markers, points of the median line) drawn in the chart."""
    page = watched.page
    markers = page.locator("#chart circle.pt").count()
    median = page.eval_on_selector("#chart polyline.median", "p => p.points.numberOfItems")
    return markers, median


def assert_only_loopback(watched: Watched, api: Api) -> None:
    allowed = (f"http://127.0.0.1:{api.port}/", f"ws://127.0.0.1:{api.port}/")
    assert watched.urls, "the page made no request"
    outside = [url for url in watched.urls if not url.startswith(allowed)]
    assert outside == [], f"requests left 127.0.0.1:{api.port}: {outside}"


def test_the_fan_renders_switches_series_and_stays_on_loopback(
    browser: Any,
    start_api: Callable[..., Api],
    screenshots: Path,
    record_property: Callable[[str, object], None],
) -> None:
    api = start_api()
    watched = open_page(browser, api)
    page = watched.page
    transfer = page.evaluate(_TRANSFER)
    render_ms = int(page.evaluate("document.body.dataset.renderMs"))
    record_property("first_load_bytes", transfer["bytes"])
    record_property("first_load_render_ms", render_ms)
    print(
        f"\ndashboard first load: {transfer['bytes']} bytes in {transfer['requests']} "
        f"requests, rendered {render_ms} ms after navigation start"
    )
    assert transfer["bytes"] < BUDGET_BYTES

    # The default series: the first served one, with the champion's whole horizon ahead.
    assert watched.chart("series") == BTC_1D.name
    steps = served_steps(api, "1d")
    assert fan_points(watched) == (steps, steps + 1)  # the median starts at the last price
    assert watched.chart("steps") == str(steps)
    assert watched.chart("model") == "drift"
    assert watched.chart("version") == api.metas[f"{BTC_1D.name}/drift"].version
    assert int(watched.chart("history")) == 90  # three horizons of recent prices
    assert page.locator("#chart path.band80").count() == 1
    assert page.locator("#chart path.band95").count() == 1
    assert "champion drift" in page.inner_text("#title")
    assert "issued at" in page.inner_text("#issued")
    assert "drift" in page.inner_text("#card") and page.text_content("#reason-text") == "test"
    assert page.is_hidden("#accuracy")  # no live accuracy is served by this API
    legend = page.inner_text("#legend")
    assert "80% band" in legend and "95% band" in legend and "median (drift)" in legend

    # Hover read-out over the fan.
    box = page.locator("#chart").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.85, box["y"] + box["height"] * 0.5)
    page.wait_for_selector("#tooltip:not([hidden])")
    tip = page.inner_text("#tooltip")
    assert "median" in tip and "80%" in tip and "95%" in tip and "UTC" in tip
    page.screenshot(path=str(screenshots / "dashboard-1d.png"))

    # Another model's median, toggled on.
    page.check("#others input[value=naive]")
    page.wait_for_function("() => document.getElementById('chart').dataset.others === '1'")
    assert page.locator("#chart polyline.other[data-model=naive]").count() == 1
    assert "naive median" in page.inner_text("#legend")

    # Switching series changes the fan; the page subscribes to the new series.
    page.select_option("#timeframe", BTC_1H.name)
    page.wait_for_function(
        f"() => document.getElementById('chart').dataset.series === '{BTC_1H.name}'"
    )
    steps_1h = served_steps(api, "1h")
    assert fan_points(watched) == (steps_1h, steps_1h + 1)
    assert steps_1h != steps
    assert page.evaluate("location.hash") == f"#{BTC_1H.name}"
    page.wait_for_function(f"() => document.body.dataset.subscribed === '{BTC_1H.name}'")
    page.screenshot(path=str(screenshots / "dashboard-1h.png"), full_page=True)

    assert watched.errors == []
    assert_only_loopback(watched, api)
    assert len(watched.documents) == 1


def test_a_promotion_pushed_over_the_feed_updates_the_chart_without_a_reload(
    browser: Any, start_api: Callable[..., Api], screenshots: Path
) -> None:
    api = start_api()
    watched = open_page(browser, api, f"#{BTC_1H.name}")
    page = watched.page
    assert watched.chart("model") == "drift"
    page.wait_for_function(f"() => document.body.dataset.subscribed === '{BTC_1H.name}'")
    page.evaluate("window.__sameDocument = 42")

    new = promote_new(api.store, BTC_1H, "naive", end=None)
    changed = api.reload()["changed"]
    assert any(line.startswith(f"{BTC_1H.name}/naive") for line in changed)
    page.wait_for_function(
        "() => document.getElementById('chart').dataset.model === 'naive' "
        "&& document.body.dataset.updates === '1'",
        timeout=20_000,
    )
    assert watched.chart("version") == new.version
    assert page.evaluate("document.body.dataset.lastEvent") == "forecast:new_champion"
    assert page.evaluate("window.__sameDocument") == 42  # the same document: no reload
    assert len(watched.documents) == 1
    assert "champion naive" in page.inner_text("#title")
    assert new.version in page.inner_text("#card")
    steps = served_steps(api, "1h")
    assert fan_points(watched) == (steps, steps + 1)
    page.screenshot(path=str(screenshots / "dashboard-pushed.png"))
    assert watched.errors == []
    assert_only_loopback(watched, api)
