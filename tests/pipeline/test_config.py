"""Settings: environment and .env, comma lists, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import get_settings, load_settings
from pipeline.errors import UsageError
from pipeline.series import SeriesId


def test_defaults() -> None:
    settings = load_settings()
    assert settings.coins == ["bitcoin"] and settings.frequencies == ["1d", "1h"]
    assert settings.coingecko_base_url == "https://api.coingecko.com/api/v3"
    assert settings.coingecko_api_key is None
    assert settings.horizon("1d") == 30 and settings.horizon("1h") == 48
    assert settings.gate_config.name == "quality_gate.json" and settings.gate_config.is_file()


def test_environment_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COINS", "bitcoin, ethereum")
    monkeypatch.setenv("FREQUENCIES", "4h")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("COINGECKO_BASE_URL", "http://127.0.0.1:9/api/v3/")
    settings = load_settings()
    assert settings.series() == [
        SeriesId("bitcoin", "usd", "4h"),
        SeriesId("ethereum", "usd", "4h"),
    ]
    assert settings.log_level == "DEBUG"
    assert settings.coingecko_base_url == "http://127.0.0.1:9/api/v3"


def test_dotenv_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATA_DIR")
    (tmp_path / ".env").write_text("DATA_DIR=/srv/prices\nCOINGECKO_API_KEY=abc\n")
    settings = load_settings()
    assert settings.data_dir == Path("/srv/prices")
    assert settings.coingecko_api_key is not None
    assert settings.coingecko_api_key.get_secret_value() == "abc"
    assert "abc" not in repr(settings)  # secrets are not printed


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("FREQUENCIES", "1d,5m", "FREQUENCIES: Value error, unknown frequency ['5m']"),
        ("SOURCE", "ftp", "SOURCE: Value error, use auto, coingecko, sample or csv:PATH"),
        ("API_PORT", "70000", "API_PORT"),
        ("RETRAIN_AT", "2am", "RETRAIN_AT"),
        ("COINS", "Bitcoin!", "COINS: Value error, invalid coin id 'Bitcoin!'"),
        ("COINGECKO_BASE_URL", "api.coingecko.com", "COINGECKO_BASE_URL"),
        ("HTTP_MAX_ATTEMPTS", "0", "HTTP_MAX_ATTEMPTS"),
        ("VS_CURRENCY", "U S D", "VS_CURRENCY: Value error, invalid vs currency 'U S D'"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(UsageError, match=r"invalid setting\(s\): .*" + _escape(message)):
        load_settings()


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("VS_CURRENCY", "eur")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().vs_currency == "eur"


def test_every_frequency_has_a_horizon_setting_defaulting_to_the_table() -> None:
    from pipeline.config import Settings, horizon_field
    from pipeline.series import FREQUENCY_TABLE

    settings = load_settings()
    for name, spec in FREQUENCY_TABLE.items():
        assert Settings.model_fields[horizon_field(name)].default == spec.horizon
        assert settings.horizon(name) == spec.horizon
    assert load_settings(horizon_4h=7).horizon("4h") == 7
    with pytest.raises(UsageError, match="unknown frequency '2h': use one of 1h, 4h, 1d"):
        settings.horizon("2h")


def test_sources_are_one_list() -> None:
    from pipeline.config import SOURCE_CHOICES, SOURCES, Settings, is_valid_source

    assert SOURCE_CHOICES == "auto, coingecko, sample or csv:PATH"
    assert Settings.model_fields["source"].description == "auto | coingecko | sample | csv:PATH"
    assert [is_valid_source(s) for s in ("auto", "csv:x.csv", "csv:", "ftp")] == [
        True,
        True,
        False,
        False,
    ]
    assert all(load_settings(source=s).source == s for s in SOURCES[:-1])


def test_secret_settings_are_secret_types_and_never_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import SecretStr

    hook = "https://hooks.example.test/services/TOKEN-123"
    monkeypatch.setenv("ALERT_WEBHOOK_URL", hook)
    monkeypatch.setenv("API_KEY", "api-key-123")
    monkeypatch.setenv("ADMIN_API_KEY", "admin-key-123")
    settings = load_settings()
    for field in ("alert_webhook_url", "api_key", "admin_api_key", "coingecko_api_key"):
        assert type(settings).model_fields[field].annotation == SecretStr | None, field
    assert settings.alert_webhook_url is not None
    assert settings.alert_webhook_url.get_secret_value() == hook
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "TOKEN-123" not in shown and "key-123" not in shown
    assert load_settings(alert_webhook_url="").alert_webhook_url is None


def test_a_bad_webhook_url_is_refused_without_quoting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "hooks.example.test/TOKEN-123")
    with pytest.raises(
        UsageError, match="ALERT_WEBHOOK_URL: Value error, must start with http"
    ) as exc:
        load_settings()
    assert "TOKEN-123" not in str(exc.value)
