"""Logging set-up: JSON lines for machines, readable text on a terminal. Call once, in main().

Every line goes through one :class:`RedactingFilter`: the values of the secret settings
(``API_KEY``, ``ADMIN_API_KEY``, ``COINGECKO_API_KEY``, ``ALERT_WEBHOOK_URL``) and the password of
any ``scheme://user:password@host`` URL are replaced by ``****`` in the message, its arguments,
the context fields and exception traces, whatever the format.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from pipeline.config import Settings

# Record attributes that are not context: the standard ones, and uvicorn's ANSI-coloured copy of
# the message (``color_message``), which would only add escape codes to JSON logs.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}

#: What a secret is replaced with.
MASK = "****"
#: Secret values shorter than this are not scrubbed from text (they would mask ordinary words).
MIN_SECRET_LENGTH = 4
#: The password of ``scheme://user:password@host`` (any scheme, known secret or not).
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]+@")


def redact_url(url: str) -> str:
    """``scheme://host[:port]/****``: a secret URL without its credentials, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment
    return f"{parts.scheme}://{host}" + (f"/{MASK}" if hidden else "")


def url_secrets(url: str) -> list[str]:
    """A secret URL and the parts of it that also travel alone: its password, and its path and
    query (error texts often quote only those, e.g. ``Max retries exceeded with url: /path``)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return [url]
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    return [url, *(piece for piece in (password, tail) if piece and piece != "/")]


def secret_values(settings: Settings) -> list[str]:
    """The plain values of every :class:`~pydantic.SecretStr` setting (and of a secret URL's
    password and path), for :func:`configure_logging` and error messages."""
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            plain = value.get_secret_value()
            values.extend(url_secrets(plain) if "://" in plain else [plain])
    return values


class Redactor:
    """Replaces known secret values and URL passwords in text by :data:`MASK`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, known))) if known else None

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(MASK, text)
        if "@" in text and "://" in text:
            text = _USERINFO.sub(rf"\g<head>:{MASK}@", text)
        return text

    def value(self, value: object) -> object:
        """``value`` itself when its text holds no secret, else its redacted text."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, int | float | bool | type(None)):
            return value
        text = str(value)
        clean = self(text)
        return value if clean == text else clean


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with ``secrets`` and URL passwords replaced by :data:`MASK`."""
    return Redactor(secrets)(text)


class RedactingFilter(logging.Filter):
    """Scrubs secrets from a record before any formatter sees it (message, arguments, context
    fields, exception and stack text). Built once; per record it only runs two regexes."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redactor = Redactor(secrets)
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        clean = self.redactor
        if isinstance(record.msg, str):
            record.msg = clean(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {k: clean.value(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(clean.value(a) for a in record.args)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the handler's to report
            return True
        if clean(message) != message:  # a secret built from message and arguments together
            record.msg, record.args = clean(message), ()
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                setattr(record, key, clean.value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = clean(record.exc_text)
        if record.stack_info:
            record.stack_info = clean(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_text:  # the (redacted) text the filter prepared
            payload["exc_info"] = record.exc_text
        elif record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack_info"] = record.stack_info
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = {
            k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")
        }
        if extras:
            text += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return text


def _configured_secrets() -> list[str]:
    """The secrets of the process-wide settings; none when they cannot be loaded."""
    from pipeline.config import get_settings
    from pipeline.errors import UsageError

    try:
        return secret_values(get_settings())
    except UsageError:
        return []


def configure_logging(
    level: str = "INFO", fmt: str = "auto", *, secrets: Iterable[str] | None = None
) -> None:
    """Configure the root logger once: ``fmt`` is ``json``, ``text`` or ``auto`` (text on a tty).

    ``secrets`` are scrubbed from every line (default: the secret settings, read once now).
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(RedactingFilter(_configured_secrets() if secrets is None else secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Quiet chatty libraries; their warnings still come through.
    for name in ("cmdstanpy", "prophet", "urllib3", "matplotlib", "distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
