"""The analyst query port without a worker: request parsing, tokens, the bounded queue, its
OpenAPI document and its logs (aiohttp's test server, a fake ClickHouse connection)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.ingest.tokens import ANALYSTS, TokenRegistry, add_device, add_token
from pipeline.query.server import (
    HTTP_LOG,
    MAX_BODY_BYTES,
    RUNNER_OPTIONS,
    AnalystQueries,
    Refused,
    build_query_app,
    parse_query_request,
    query_openapi_document,
)
from pipeline.settings import Settings
from sinks.clickhouse import QueryResult
from sinks.redact import install_log_redaction


class FakeClickHouse:
    """Answers every query with one row; ``gate`` (when set) holds each query until it is set."""

    opened = 0

    def __init__(self, gate: threading.Event | None = None) -> None:
        FakeClickHouse.opened += 1
        self.gate = gate
        self.seen: list[tuple[str, Any]] = []

    def query(self, sql: str, params: Any = None) -> QueryResult:
        self.seen.append((sql, params))
        if self.gate is not None:
            assert self.gate.wait(20)
        return QueryResult(columns=["x"], rows=[(1,)], types=["UInt8"])

    def close(self) -> None:
        pass


# -- parsing: never a 500 -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b'{"sql": "SELECT 1", "max_rows": Infinity}',
    b'{"sql": "SELECT 1", "max_rows": 1e400}',
    b'{"sql": "SELECT 1", "max_rows": NaN}',
    b'{"sql": "SELECT 1", "max_rows": 1e3}',
    b'{"sql": "SELECT 1", "max_rows": "10"}',
    b'{"sql": "SELECT 1", "max_rows": true}',
    b'{"sql": "SELECT 1", "max_rows": 0}',
    b'{"sql": "SELECT 1", "max_rows": 1000001}',
    b'{"sql": "SELECT 1", "max_rows": 18446744073709551616}',
    b'{"sql": "SELECT 1", "params": {"a": 1e400}}',
    b'{"sql": "SELECT 1", "params": {"a": [[1]]}}',
    b'{"sql": "SELECT 1", "params": {"a": {"b": 1}}}',
    b'{"sql": "SELECT 1", "params": {"a b": 1}}',
    b'{"sql": "SELECT 1", "params": [1]}',
    b'{"sql": 1}', b'{"sql": ""}', b'{"sql": ["SELECT 1"]}', b"{}", b'{"sql": "SELECT 1", "extra": 1}',
    b"[]", b'"SELECT 1"', b"1", b"null", b"", b"\xff\xfe", b"{",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"sql": "SELECT 1", "params": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
])
def test_a_bad_body_is_a_400_with_a_reason(body: bytes) -> None:
    with pytest.raises(Refused) as info:
        parse_query_request(body)
    assert info.value.status == 400 and info.value.error


def test_a_good_body_is_parsed() -> None:
    req = parse_query_request(b'{"sql": "SELECT %(a)s", "params": {"a": [1, "x", null, 2.5]}, "max_rows": 5}')
    assert (req.sql, req.params, req.max_rows) == ("SELECT %(a)s", {"a": [1, "x", None, 2.5]}, 5)
    assert parse_query_request(b'{"sql": "SELECT 1", "params": null}').params is None


# -- the app ---------------------------------------------------------------------------------------------


def run_app(tmp_path: Path, test: Callable[[TestClient[Any, Any], dict[str, str], AnalystQueries], Awaitable[None]],
            *, gate: threading.Event | None = None, running: int = 1, waiting: int = 4) -> None:
    analysts, devices = tmp_path / "analysts.json", tmp_path / "devices.json"
    tokens = {"analyst": add_token(analysts, ANALYSTS, "ana"), "device": add_device(devices, "dev-1")}
    settings = Settings(data_dir=tmp_path, analyst_tokens_file=analysts, ingest_tokens_file=devices)
    queries = AnalystQueries(lambda: FakeClickHouse(gate), running=running, waiting=waiting)  # type: ignore[arg-type, return-value]
    app = build_query_app(settings, queries, TokenRegistry(analysts, kind=ANALYSTS, check_every_s=0))

    async def main() -> None:
        server = TestServer(app)
        await server.start_server(**RUNNER_OPTIONS)  # as the worker runs it (TestServer drops its own kwargs)
        async with TestClient(server) as client:
            await test(client, tokens, queries)
        queries.close()

    asyncio.run(main())


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_only_an_analyst_token_opens_the_query_port(tmp_path: Path) -> None:
    async def test(client: TestClient[Any, Any], tokens: dict[str, str], _: AnalystQueries) -> None:
        body = orjson.dumps({"sql": "SELECT 1"})
        ok = await client.post("/v1/query", data=body, headers=bearer(tokens["analyst"]))
        assert ok.status == 200, await ok.text()
        assert await ok.json() == {"columns": ["x"], "rows": [[1]], "truncated": False}
        for headers in ({}, bearer(tokens["device"]), bearer(tokens["analyst"] + "x"), {"Authorization": "Basic x"},
                        bearer("fra_0000000000000000_" + "a" * 43)):
            ans = await client.post("/v1/query", data=body, headers=headers)
            assert ans.status == 401, headers
            assert ans.headers["WWW-Authenticate"].startswith("Bearer")
            assert "analyst" in (await ans.json())["error"]
            assert tokens["device"] not in await ans.text()

    run_app(tmp_path, test)


def test_parsing_failures_on_the_wire_are_4xx_never_500(tmp_path: Path) -> None:
    async def test(client: TestClient[Any, Any], tokens: dict[str, str], _: AnalystQueries) -> None:
        auth = bearer(tokens["analyst"])
        for body in (b'{"sql": "SELECT 1", "max_rows": Infinity}', b'{"sql": "SELECT 1", "max_rows": 1e400}',
                     b"[" * 30_000 + b"]" * 30_000, b"[]", b'{"sql": "DROP TABLE x"}', b"not json"):
            ans = await client.post("/v1/query", data=body, headers=auth)
            assert ans.status == 400, (body[:40], await ans.text())
            assert "error" in await ans.json()
        for big_body in (b" " * (MAX_BODY_BYTES + 1), b"[" * 100_000 + b"]" * 100_000):
            big = await client.post("/v1/query", data=big_body, headers=auth)
            assert big.status == 413 and "limit" in (await big.json())["error"]

        async def chunks() -> Any:
            for _ in range(MAX_BODY_BYTES // 4096 + 2):
                yield b" " * 4096

        streamed = await client.post("/v1/query", data=chunks(), headers=auth)
        assert streamed.status == 413
        assert (await client.get("/v1/query")).status == 405
        missing = await client.get("/router/")
        assert missing.status == 404 and "error" in await missing.json()

    run_app(tmp_path, test)


def test_the_queue_is_bounded_and_past_it_429_says_when_to_retry(tmp_path: Path) -> None:
    gate = threading.Event()

    async def test(client: TestClient[Any, Any], tokens: dict[str, str], queries: AnalystQueries) -> None:
        body = orjson.dumps({"sql": "SELECT 1"})
        auth = bearer(tokens["analyst"])
        admitted = [asyncio.create_task(client.post("/v1/query", data=body, headers=auth)) for _ in range(3)]
        await wait_until(lambda: queries.admitted == 3)  # 1 running, 2 waiting
        over = await client.post("/v1/query", data=body, headers=auth)
        assert over.status == 429
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        assert "FOODRISK_QUERY_QUEUE" in (await over.json())["error"]
        gate.set()
        assert [r.status for r in await asyncio.gather(*admitted)] == [200, 200, 200]
        assert queries.admitted == 0
        assert (await client.post("/v1/query", data=body, headers=auth)).status == 200

    run_app(tmp_path, test, gate=gate, running=1, waiting=2)


def test_a_query_whose_client_left_keeps_its_turn_until_clickhouse_is_done(tmp_path: Path) -> None:
    gate = threading.Event()

    async def test(client: TestClient[Any, Any], tokens: dict[str, str], queries: AnalystQueries) -> None:
        body = orjson.dumps({"sql": "SELECT 1"})
        task = asyncio.create_task(client.post("/v1/query", data=body, headers=bearer(tokens["analyst"])))
        await wait_until(lambda: queries.admitted == 1)
        task.cancel()
        await asyncio.sleep(0.3)
        assert queries.admitted == 1  # the thread is still busy with it
        gate.set()
        await wait_until(lambda: queries.admitted == 0)

    run_app(tmp_path, test, gate=gate, running=1, waiting=0)


def test_a_malformed_authorization_header_is_logged_without_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[str] = []

    async def test(client: TestClient[Any, Any], tokens: dict[str, str], _: AnalystQueries) -> None:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        secret = tokens["analyst"]
        sent.append(secret)
        writer.write(b"POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                     b"Authorization: Bearer " + secret.encode() + b"\x01\r\n\r\n{}")
        await writer.drain()
        status = await reader.readline()
        writer.close()
        assert status.split()[1] == b"400", status

    install_log_redaction()  # what `foodrisk worker` does at start (pipeline/cli.py)
    with caplog.at_level(logging.DEBUG):
        run_app(tmp_path, test)
    assert "Invalid header value char" in caplog.text  # the line is there...
    secret = sent[0]
    assert secret not in caplog.text and secret.split("_", 2)[2] not in caplog.text  # ...the token is not
    assert any(r.name == HTTP_LOG.name for r in caplog.records)


def test_openapi_lists_every_status_the_endpoint_answers() -> None:
    doc = query_openapi_document(Settings())
    post = doc["paths"]["/v1/query"]["post"]
    assert set(post["responses"]) == {"200", "400", "401", "413", "429", "503"}
    assert "Retry-After" in post["responses"]["429"]["headers"] and "Retry-After" in post["responses"]["503"]["headers"]
    req = doc["components"]["schemas"]["QueryRequest"]
    assert req["properties"]["max_rows"] == {**req["properties"]["max_rows"], "type": "integer", "minimum": 1,
                                             "maximum": 1_000_000}
    assert req["required"] == ["sql"] and req["additionalProperties"] is False
    assert doc["components"]["schemas"]["QueryResponse"]["required"] == ["columns", "rows", "truncated"]
    assert post["security"] == [{"analystToken": []}]
    text = orjson.dumps(doc).decode()
    for ref in __import__("re").findall(r'"\$ref":"#/components/schemas/([^"]+)"', text):
        assert ref in doc["components"]["schemas"]


def test_query_settings_are_validated() -> None:
    from pipeline.settings import SettingsError, load_settings

    s = load_settings(query_port=0, web_port=6066)
    assert (s.query_host, s.query_concurrency, s.query_queue) == ("127.0.0.1", 1, 4)
    with pytest.raises(SettingsError, match="FOODRISK_QUERY_PORT"):
        load_settings(query_port=6066, web_port=6066)
    for bad in ({"query_port": 70000}, {"query_concurrency": 0}, {"query_queue": -1}):
        with pytest.raises(SettingsError, match="FOODRISK_QUERY_"):
            load_settings(**bad)


def test_the_worker_writes_a_private_local_analyst_token_each_start(tmp_path: Path) -> None:
    import os
    import stat

    from pipeline.query.client import analyst_token
    from pipeline.worker import issue_local_analyst_token

    settings = Settings(data_dir=tmp_path)
    issue_local_analyst_token(settings)
    first = analyst_token(settings)
    assert first is not None and first.startswith("fra_")
    assert stat.S_IMODE(os.stat(settings.local_analyst_token_path).st_mode) == 0o600
    issue_local_analyst_token(settings)  # the next start replaces it
    second = analyst_token(settings)
    reg = TokenRegistry(settings.analyst_tokens_path, kind=ANALYSTS, check_every_s=0)
    assert reg.device_for(second or "") == "local" and reg.device_for(first) is None
    assert analyst_token(settings.with_overrides(analyst_token="fra_from_env")) == "fra_from_env"


def test_plan_parameters_are_checked_never_a_500() -> None:
    import datetime as dt

    from pipeline.query.server import parse_plan_request

    assert parse_plan_request({"date": "2026-12-01"}) == (dt.date(2026, 12, 1), None, None)
    assert parse_plan_request({"date": "2026-12-01", "district": "天河", "seed": "42"}) == (
        dt.date(2026, 12, 1), "天河", 42)
    for query in ({}, {"date": ""}, {"date": "2026-13-01"}, {"date": "2026-12-01", "seed": "-1"},
                  {"date": "2026-12-01", "seed": "1e3"}, {"date": "2026-12-01", "seed": "9" * 30},
                  {"date": "2026-12-01", "district": "a\nb"}, {"date": "2026-12-01", "sql": "x"}):
        with pytest.raises(Refused) as info:
            parse_plan_request(query)
        assert info.value.status == 400 and info.value.error


def test_openapi_describes_the_plan_endpoint() -> None:
    doc = query_openapi_document(Settings())
    get = doc["paths"]["/v1/plan"]["get"]
    assert set(get["responses"]) == {"200", "400", "401", "429", "503"}
    assert get["security"] == [{"analystToken": []}]
    assert [p["name"] for p in get["parameters"]] == ["date", "district", "seed"]
    assert get["parameters"][0]["required"] is True
    assert "rows" in doc["components"]["schemas"]["PlanResponse"]["required"]
