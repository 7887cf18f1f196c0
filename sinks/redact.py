"""The one redaction helper: what a log line, an error message or a page may show of a secret.

``redact(text)`` masks, wherever they appear in free text:

- the password of a URL (``scheme://user:***@host``), as in FOODRISK_CLICKHOUSE_URL or an
  Alertmanager URL with basic-auth credentials;
- HTTP credentials: ``Bearer ***``, ``Basic ***``;
- foodrisk tokens (``frk_<id>_***`` for devices, ``fra_<id>_***`` for analysts: the public id
  stays, it names the token without being usable);
- secret-looking query parameters (``?token=***``, ``&signature=***``, ...);
- every value registered with :func:`register_secret` (the shell registers the secrets of its
  settings at start: SASL password, webhook secret and URL, ...), replaced by ``***``.

:func:`install_log_redaction` applies it to every log record of the process (a log-record
factory, so it holds whatever handlers a library installs later): the message and the formatted
traceback are redacted before any handler sees them. It lives in ``sinks/`` so that every floor
above (agents, the shell) and the sinks themselves can use it; it imports only the standard
library.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*):[^@\s'\"]*@")
# A credential after the scheme word: at least 8 characters with a digit, `_`, `+`, `/` or `=` in
# them, so that prose ("basic checks", "missing bearer token") stays readable.
_AUTH_HEADER = re.compile(
    r"(?i)\b(?P<scheme>bearer|basic)(?P<sep>\s+)(?=[A-Za-z0-9._~+/\-]*[0-9_+/=])[A-Za-z0-9._~+/\-]{8,}=*"
)
_TOKEN = re.compile(r"\b(?P<head>fr[ak]_[0-9a-f]{8,16})_[A-Za-z0-9_\-]+")
_QUERY_SECRET = re.compile(
    r"(?i)(?P<head>[?&;](?:token|access_token|api_key|apikey|key|secret|password|passwd|sig|signature)=)[^&#\s'\"]+"
)

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on (no-op for None and very short values)."""
    global _secrets
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value not in _secrets:
            # Longest first, so a secret that contains another is masked whole.
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


def forget_secrets() -> None:
    """Drop every registered value (tests)."""
    global _secrets
    with _lock:
        _secrets = ()


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret it carries masked (see the module docstring)."""
    for value in (*_secrets, *extra):
        if value and len(value) >= _MIN_SECRET_LEN and value in text:
            text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    text = _AUTH_HEADER.sub(rf"\g<scheme>\g<sep>{MASK}", text)
    text = _TOKEN.sub(rf"\g<head>_{MASK}", text)
    return _QUERY_SECRET.sub(rf"\g<head>{MASK}", text)


def redact_url(url: str) -> str:
    """``url`` with its password (and secret query parameters) masked."""
    return redact(url)


_installed = False


def install_log_redaction() -> None:
    """Redact every log record this process makes from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string is logging's to report, not ours
        return
    clean = redact(message)
    if clean != message or record.args:
        # An empty tuple, not None: some formatters (mode's, under Faust) turn None into (None,)
        # and format the message with it again.
        record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
