"""The one redaction helper (sinks/redact.py): each setting that can carry a secret, the log records
of the process, and the reproductions of security findings 6 and 9."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from aiohttp import web

from pipeline.settings import SettingsError, load_settings, secrets_of
from sinks.redact import MASK, forget_secrets, install_log_redaction, redact, register_secret

TOKEN = "frk_0123abcd_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA"  # a made-up token


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        ("clickhouse://writer:s3cr%40t@ch-1:9000/foodrisk", "s3cr%40t", "clickhouse://writer:***@ch-1:9000/foodrisk"),
        ("http://am:pw-9f2c@am-1:9093,http://am:pw-9f2c@am-2:9093", "pw-9f2c", "http://am:***@am-2:9093"),
        (f"Authorization: Bearer {TOKEN}\\x01", TOKEN, "Authorization: Bearer ***"),
        (f"token {TOKEN} refused", "Zm9vYmFyYmF6", "frk_0123abcd_***"),
        ("fra_00112233aabbccdd_c2VjcmV0c2VjcmV0c2VjcmV0", "c2VjcmV0", "fra_00112233aabbccdd_***"),
        ("Authorization: Basic YWxpY2U6cGFzc3dvcmQ=", "YWxpY2U6cGFzc3dvcmQ", "Basic ***"),
        ("https://bot.example/hook?token=abc123&x=1", "abc123", "?token=***&x=1"),
    ],
)
def test_redact_masks_credentials_in_free_text(text: str, gone: str, kept: str) -> None:
    out = redact(text)
    assert gone not in out
    assert kept in out


@pytest.mark.parametrize("prose", ["missing bearer token: send `Authorization: Bearer TOKEN`", "basic checks passed"])
def test_redact_leaves_prose_alone(prose: str) -> None:
    assert redact(prose) == prose


def test_registered_secrets_are_masked_anywhere() -> None:
    register_secret("hunter2-sasl")
    register_secret("ab")  # too short to mask safely: ignored
    assert redact("SASL auth failed for hunter2-sasl") == f"SASL auth failed for {MASK}"
    assert redact("ab cd") == "ab cd"


def test_every_setting_that_carries_a_secret_is_registered() -> None:
    settings = load_settings(
        broker_url="kafka://k1:9092",
        broker_security_protocol="SASL_SSL",
        broker_sasl_username="foodrisk",
        broker_sasl_password="sasl-pass-1",
        clickhouse_url="clickhouse://writer:ch-pass-2@ch-1:9000/foodrisk",
        alertmanager_url="http://am:am-pass-3@am-1:9093,http://am-2:9093",
        webhook_url="https://hooks.example/services/T000/B000/hook-token-4",
        webhook_secret="hmac-key-5",
        analyst_token="analyst-token-6",
        metrics_token="metrics-token-7",
    )
    found = secrets_of(settings)
    for value in ("sasl-pass-1", "ch-pass-2", "am-pass-3", "services/T000/B000/hook-token-4", "hmac-key-5",
                  "analyst-token-6", "metrics-token-7"):
        assert value in found
        assert value not in redact(f"a line carrying {value} somewhere")


@pytest.mark.parametrize(
    ("env", "password"),
    [
        ({"alertmanager_url": "ftp://am:am-pass-9@am-1:9093"}, "am-pass-9"),
        ({"webhook_url": "gopher://bot:wh-pass-8@bot.example/x", "webhook_secret": "k" * 8}, "wh-pass-8"),
        ({"broker_url": "redis://u:br-pass-7@k1:9092"}, "br-pass-7"),
        ({"clickhouse_url": "mysql://u:ch-pass-6@h/db"}, "ch-pass-6"),
    ],
)
def test_finding_9_a_malformed_url_setting_is_named_without_its_password(env: dict[str, str], password: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(**env)
    assert password not in str(err.value)
    assert MASK in str(err.value)


def test_log_records_are_redacted_message_args_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    register_secret("webhook-hmac-key")
    log = logging.getLogger("foodrisk.test.redact")
    with caplog.at_level(logging.INFO):
        log.info("posting with %s to %s", "webhook-hmac-key", "http://u:pw123456@h:1/x")
        try:
            int(f"bad header Bearer {TOKEN}")
        except ValueError:
            log.exception("request failed")
    text = caplog.text
    assert "webhook-hmac-key" not in text
    assert "pw123456" not in text
    assert "Zm9vYmFyYmF6" not in text
    assert "Bearer ***" in text


def test_finding_6_a_bad_header_with_a_valid_token_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp logs the raw header line of a request it cannot parse, at ERROR, with a traceback."""
    install_log_redaction()

    async def scenario() -> bytes:
        async def ok(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\x01\r\n\r\n")
            await writer.drain()
            answer = await reader.read(4096)
            writer.close()
            return answer
        finally:
            await runner.cleanup()

    with caplog.at_level(logging.DEBUG):
        answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.")
    assert b" 400 " in answer.split(b"\r\n", 1)[0]
    assert "Invalid header value char" in caplog.text  # the line that carried the token is still logged
    assert "Zm9vYmFyYmF6" not in caplog.text


def test_redacted_records_format_under_faust_s_formatter() -> None:
    """mode (Faust's logging) turns a record's args None into (None,) and formats again: the
    redacted record must keep formatting (a `foodrisk worker` logged 'not all arguments converted')."""
    from mode.utils.logging import ExtensionFormatter

    install_log_redaction()
    record = logging.getLogger("foodrisk.test.mode").makeRecord(
        "foodrisk.test.mode", logging.INFO, __file__, 1, "[^--Producer]: Creating topic %r at 100%%", ("t1",), None
    )
    assert ExtensionFormatter(fmt="%(message)s").format(record) == "[^--Producer]: Creating topic 't1' at 100%"
