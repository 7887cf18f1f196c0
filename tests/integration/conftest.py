"""Integration fixtures: real ClickHouse on both backends.

- ``clickhouse_server`` (session): Debian's clickhouse-server 18.16 started under a tmp dir on free
  ports, stopped by PID at the end. Missing binary: skipped with the reason, or a failure when
  ``CI`` is set (CI must run these).
- ``chdb_path`` (session): the one chdb path of this pytest process. chdb opens one path per
  process at a time, so every chdb use in the test run should go through this path (a test that
  needs another path can open it only while no ChdbBackend on this one is open).
- ``ch`` (per test, parametrized ``chdb`` / ``server``): a connected ClickHouse on a fresh
  database ``foodrisk_t<8 hex>``, dropped afterwards. Not migrated: call ``sinks.ddl.migrate``.
- ``ch_server``: the same on the server backend only.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.localstack.clickhouse_server import ClickHouseServer, ServerBinaryMissing, find_server_command
from sinks.clickhouse import ChdbBackend, ClickHouse, DriverBackend
from sinks.errors import ClickHouseError

CLICKHOUSE_BACKENDS = ["chdb", "server"]


def fresh_database_name() -> str:
    return f"foodrisk_t{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    try:
        find_server_command()
    except ServerBinaryMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the ClickHouse server tests: {exc}")
        pytest.skip(str(exc))
    server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse-server")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb") / "db"


def _open(kind: str, request: pytest.FixtureRequest, database: str) -> ClickHouse:
    if kind == "chdb":
        return ChdbBackend(request.getfixturevalue("chdb_path"), database=database)
    server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
    return DriverBackend(server.host, server.tcp_port, database=database)


def _drop(ch: ClickHouse, database: str, request: pytest.FixtureRequest) -> None:
    if isinstance(ch, DriverBackend):
        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        if not server.running:  # a test stopped it and failed before starting it again
            server.start()
    with contextlib.suppress(ClickHouseError):
        ch.execute(f"DROP DATABASE IF EXISTS `{database}`")
    ch.close()


@pytest.fixture(params=CLICKHOUSE_BACKENDS)
def ch(request: pytest.FixtureRequest) -> Iterator[ClickHouse]:
    database = fresh_database_name()
    backend = _open(str(request.param), request, database)
    try:
        yield backend
    finally:
        _drop(backend, database, request)


@pytest.fixture
def ch_server(request: pytest.FixtureRequest) -> Iterator[ClickHouse]:
    database = fresh_database_name()
    backend = _open("server", request, database)
    try:
        yield backend
    finally:
        _drop(backend, database, request)
