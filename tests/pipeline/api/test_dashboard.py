"""The dashboard page, its assets and the model card endpoint, in process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.api.routes.dashboard import ASSETS, STATIC_DIR
from pipeline.artifacts.store import ArtifactStore
from pipeline.forecasters import make_forecaster
from tests.helpers.serving import BTC_1D, BTC_1H, Metas, TestClient, prices, processed_file


def test_the_page_and_its_assets_ship_inside_the_package() -> None:
    assert STATIC_DIR.parent.name == "api" and STATIC_DIR.parent.parent.name == "pipeline"
    for name in ASSETS:
        assert (STATIC_DIR / name).is_file(), name


def test_the_page_is_served_with_a_same_origin_policy(client: TestClient) -> None:
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert response.headers["cache-control"] == "no-cache"
    page = response.text
    assert '<script src="/dashboard/static/dashboard.js" defer></script>' in page
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_assets_are_served_with_their_type_and_a_validator(client: TestClient, name: str) -> None:
    path = "/dashboard" if name == "dashboard.html" else f"/dashboard/static/{name}"
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == ASSETS[name]
    assert response.content == (STATIC_DIR / name).read_bytes()
    again = client.get(path, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_nothing_else_is_served_from_the_static_folder(client: TestClient) -> None:
    for name in ("../app.py", "dashboard.map", "%2e%2e%2fapp.py"):
        assert client.get(f"/dashboard/static/{name}").status_code == 404


def test_the_script_loads_nothing_from_elsewhere() -> None:
    script = (STATIC_DIR / "dashboard.js").read_text("utf-8")
    css = (STATIC_DIR / "dashboard.css").read_text("utf-8")
    assert "http://" not in script.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in script and "@import" not in css and "url(" not in css


def test_the_service_index_stays_json_and_links_the_page(client: TestClient) -> None:
    body = client.get("/").json()
    assert body["links"]["dashboard"] == "/dashboard"
    assert body["links"]["feed"] == "/ws"


def test_model_card_of_a_champion(client: TestClient, metas: Metas) -> None:
    response = client.get("/api/v1/model-card", params={"timeframe": "1h"})
    assert response.status_code == 200
    card = response.json()
    champion = metas[f"{BTC_1H.name}/drift"]
    assert card["series"] == BTC_1H.name
    assert card["champion"]["model"] == "drift"
    assert card["champion"]["version"] == champion.version
    assert card["champion"]["reason"] == "test"  # what the test helpers promote with
    assert card["champion"]["promoted_at"] is not None
    assert card["models"] == ["drift", "naive"]
    assert card["backtest"] is None  # the test versions carry no backtest
    assert card["data"]["status"] == "missing"
    assert card["accuracy_url"] is None


def test_model_card_backtest_against_naive_and_data_age(
    make_client: Callable[..., TestClient], store: ArtifactStore
) -> None:
    protocol = {"origins": 6, "horizon": 30, "window": "sliding", "train_window": 182}
    figures = {
        "naive": {"mase": 2.0, "wis": 100.0, "winkler_95": 1000.0, "coverage_80": 0.8},
        "drift": {"mase": 1.8, "wis": 110.0, "winkler_95": 900.0, "coverage_95": 0.94},
    }
    y = prices(BTC_1D)
    versions = {}
    for model, metrics in figures.items():
        fitted = make_forecaster(model).fit(y)
        versions[model] = store.write_version(
            BTC_1D,
            fitted,
            y,
            horizon=30,
            extra={"backtest": {"protocol": protocol, "metrics": metrics}},
        )
    store.promote(BTC_1D, "drift", versions["drift"].version, "drift wins: MASE 0.900x naive")
    processed_file(store.root.parent / "data", BTC_1D)
    client = make_client()
    card = client.get("/api/v1/model-card", params={"coin": "bitcoin", "timeframe": "1d"}).json()
    assert card["champion"]["reason"] == "drift wins: MASE 0.900x naive"
    assert card["backtest"]["protocol"] == protocol
    rows = {row["model"]: row for row in card["backtest"]["rows"]}
    assert [row["model"] for row in card["backtest"]["rows"]] == ["drift", "naive"]
    assert rows["drift"]["is_champion"] is True
    assert rows["drift"]["figures"]["coverage_80"] is None
    assert rows["drift"]["figures"]["coverage_95"] == 0.94
    assert rows["drift"]["vs_naive"] == {"mase": 0.9, "wis": 1.1, "winkler_95": 0.9}
    assert rows["naive"]["vs_naive"] == {"mase": 1.0, "wis": 1.0, "winkler_95": 1.0}
    assert card["data"]["status"] == "ok"
    assert card["data"]["age_seconds"] >= 0


def test_model_card_errors(metas: Metas, make_client: Callable[..., TestClient]) -> None:
    client = make_client(API_KEY="card-key-for-tests")
    assert client.get("/api/v1/model-card").status_code == 401
    headers = {"X-API-Key": "card-key-for-tests"}
    missing = client.get("/api/v1/model-card", params={"coin": "dogecoin"}, headers=headers)
    assert missing.status_code == 404
    assert missing.json()["available"] == [BTC_1D.name, BTC_1H.name]
    bad = client.get("/api/v1/model-card", params={"timeframe": "2m"}, headers=headers)
    assert bad.status_code == 422
    assert client.get("/api/v1/model-card", headers=headers).status_code == 200
