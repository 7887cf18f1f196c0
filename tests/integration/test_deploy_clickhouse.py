"""deploy/clickhouse/users.d/foodrisk-users.xml on a real server, without Docker.

Debian's clickhouse-server 18.16 loads the compose stack's users file from the users.d folder
beside its users.xml, with the passwords from its environment (``from_env``), as the
clickhouse/clickhouse-server image does. The writer migrates and inserts; the analyst reads,
may change query settings (Grafana does), and cannot write, create, drop or read another
database; wrong passwords are refused. The same file on the modern image: test_containers.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.localstack.clickhouse_server import ClickHouseServer, ServerBinaryMissing, find_server_command
from sinks.clickhouse import DriverBackend
from sinks.ddl import migrate
from sinks.errors import ClickHouseError
from tests.conftest import unavailable

pytestmark = pytest.mark.integration

USERS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "clickhouse" / "users.d" / "foodrisk-users.xml"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClickHouseServer]:
    try:
        find_server_command()
    except ServerBinaryMissing as exc:
        unavailable(str(exc))
    monkeypatch.setenv("CLICKHOUSE_WRITER_PASSWORD", "w-secret")
    monkeypatch.setenv("CLICKHOUSE_ANALYST_PASSWORD", "a-secret")
    (tmp_path / "users.d").mkdir()
    shutil.copy(USERS_FILE, tmp_path / "users.d" / USERS_FILE.name)
    s = ClickHouseServer(tmp_path).start()
    try:
        yield s
    finally:
        s.stop()


def test_writer_and_read_only_analyst_accounts(server: ClickHouseServer) -> None:
    writer = DriverBackend(server.host, server.tcp_port, user="foodrisk", password="w-secret", database="foodrisk")
    try:
        assert migrate(writer, "foodrisk")
        writer.execute("INSERT INTO results (result_id, verdict) SELECT 'r-1', 'compliant'")
        with pytest.raises(ClickHouseError, match="Access denied to database other"):
            writer.execute("CREATE DATABASE other")
    finally:
        writer.close()
    admin = DriverBackend(server.host, server.tcp_port, database="other")  # the local default user
    admin.execute("CREATE TABLE IF NOT EXISTS other.t (a UInt8) ENGINE = Memory")
    admin.close()

    analyst = DriverBackend(server.host, server.tcp_port, user="analyst", password="a-secret",
                            database="foodrisk", create_database=False)
    try:
        assert analyst.query("SELECT count() FROM results FINAL").scalar() == 1
        analyst.execute("SET max_threads = 2")  # readonly=2: settings may change (the Grafana plugin does)
        refused = {
            "INSERT INTO results (result_id) SELECT 'x'": "readonly",
            "DROP TABLE results": "readonly",
            "CREATE TABLE t (a UInt8) ENGINE = Memory": "readonly",
            "SELECT count() FROM other.t": "Access denied to database other",
        }
        for statement, why in refused.items():
            with pytest.raises(ClickHouseError, match=why):
                analyst.execute(statement)
    finally:
        analyst.close()
    for user in ("analyst", "foodrisk"):
        intruder = DriverBackend(server.host, server.tcp_port, user=user, password="guess",
                                 database="foodrisk", create_database=False)
        with pytest.raises(ClickHouseError, match="password"):
            intruder.query("SELECT 1")
        intruder.close()
