"""What a cycle tells others: the API to reload its models, a webhook about problems.

Both are best effort: a cycle's outcome never depends on them, and neither ever raises.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from pydantic import SecretStr
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from pipeline.config import ADMIN_KEY_HEADER, Settings
from pipeline.evaluation.live import live_alert
from pipeline.logs import redact, redact_url, secret_values, url_secrets
from pipeline.scheduling.history import REFRESH, REFRESH_OK, CycleRecord, RefreshRecord

logger = logging.getLogger(__name__)

#: Series outcomes that the alert webhook hears about.
ALERT_STATUSES = frozenset({"failed", "rejected"})
#: How often the webhook is tried before giving up.
ALERT_ATTEMPTS = 3


def notify_api(settings: Settings) -> bool | None:
    """Ask the API to reload its models; ``None`` when API_URL or ADMIN_API_KEY is unset.

    ``True`` when the API answered 200, ``False`` (logged as a warning) otherwise.
    """
    if not settings.api_url or settings.admin_api_key is None:
        return None
    url = settings.api_url.rstrip("/") + "/model/reload"
    secrets = secret_values(settings)
    try:
        resp = requests.post(
            url,
            headers={ADMIN_KEY_HEADER: settings.admin_api_key.get_secret_value()},
            timeout=(settings.http_connect_timeout, settings.http_read_timeout),
        )
    except requests.RequestException as exc:
        logger.warning(
            "could not ask the API to reload (%s): %s", redact(url), redact(str(exc), secrets)
        )
        return False
    if resp.status_code != 200:
        logger.warning(
            "API reload answered %s: %s", resp.status_code, redact(resp.text[:200], secrets)
        )
        return False
    logger.info("API reloaded its models")
    return True


def alert_if_needed(settings: Settings, record: CycleRecord) -> None:
    """POST a JSON alert on failures, rejected promotions and live alerts (retried, bounded,
    never raises).

    Sent only when ALERT_WEBHOOK_URL is set and a series failed, had its candidate rejected or
    raised a live alert (a champion failing the ledger's calibration test,
    :mod:`pipeline.evaluation.live`): that problem carries the ``alert`` text too.
    """
    bad = [o for o in record.series if o.status in ALERT_STATUSES or live_alert(o.metrics)]
    if not settings.alert_webhook_url or not bad:
        return
    payload = {
        "source": "retrain_scheduler",
        "run_id": record.run_id,
        "status": record.status,
        "problems": [
            {"series": o.series, "status": o.status, "reason": o.reason}
            | ({"alert": alert} if (alert := live_alert(o.metrics)) else {})
            for o in bad
        ],
    }
    post_alert(settings, payload)


def alert_refresh(settings: Settings, record: RefreshRecord) -> None:
    """Like :func:`alert_if_needed`, for a refresh with a series that failed or was refused
    (``"kind": "refresh"`` in the payload; each problem names the series and its reasons)."""
    bad = [s for s in record.series if s.get("status") not in REFRESH_OK]
    if not settings.alert_webhook_url or not bad:
        return
    payload = {
        "source": "retrain_scheduler",
        "kind": REFRESH,
        "run_id": record.run_id,
        "status": record.status,
        "problems": [
            {"series": s["series"], "status": s["status"], "reason": s.get("reason", "")}
            for s in bad
        ],
    }
    post_alert(settings, payload)


def post_alert(settings: Settings, payload: dict[str, Any]) -> None:
    """POST ``payload`` to ALERT_WEBHOOK_URL (retried, bounded, never raises).

    The URL is a secret (its path or query usually carries a token): it is read only to make
    the request, and a failure is logged with it and its pieces masked.
    """
    secret = settings.alert_webhook_url
    if not secret:
        return
    # ``model_copy(update=...)`` skips validation and may hand a plain string.
    url = secret.get_secret_value() if isinstance(secret, SecretStr) else str(secret)

    @retry(
        stop=stop_after_attempt(ALERT_ATTEMPTS),
        wait=wait_exponential(multiplier=settings.http_backoff_initial, max=10),
        retry=retry_if_exception_type(requests.RequestException),
        reraise=True,
    )
    def post() -> None:
        resp = requests.post(
            url, json=payload, timeout=(settings.http_connect_timeout, settings.http_read_timeout)
        )
        resp.raise_for_status()

    try:
        post()
    except requests.RequestException as exc:
        logger.error(
            "alert webhook failed after retries: %s (%s)",
            redact(str(exc), [*url_secrets(url), *secret_values(settings)]),
            redact_url(url),
        )
