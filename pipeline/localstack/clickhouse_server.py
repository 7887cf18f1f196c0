"""A real ClickHouse server as a child process: Debian's ``clickhouse-server`` (18.16), for tests.

``ClickHouseServer(workdir).start()`` writes a small config.xml and users.xml into ``workdir``
(loopback only, free TCP and HTTP ports chosen once, data, tmp and logs under ``workdir``), starts
the server and waits until its native port answers ``SELECT 1``. ``stop()`` and ``start()`` again
reuse the same ports and data, so a test can take the server away mid-stream and bring it back.
The process is registered with :mod:`pipeline.localstack.process`: stopped by PID at exit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

from pipeline.localstack.process import ChildProcess, ManagedServer, StartupError, free_port, log_tail, port_open
from sinks.clickhouse import DriverBackend
from sinks.errors import ClickHouseError

log = logging.getLogger(__name__)

INSTALL_HINT = "apt-get update && apt-get install -y clickhouse-server clickhouse-client"

_CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("/usr/sbin/clickhouse-server",),
    ("/usr/bin/clickhouse-server",),
    ("/usr/bin/clickhouse", "server"),
)


class ServerBinaryMissing(StartupError):
    """No clickhouse-server binary on this machine."""


def find_server_command() -> list[str]:
    """The argv prefix that runs a ClickHouse server, or :class:`ServerBinaryMissing`."""
    found = shutil.which("clickhouse-server")
    if found:
        return [found]
    for candidate in _CANDIDATES:
        if os.access(candidate[0], os.X_OK):
            return list(candidate)
    found = shutil.which("clickhouse")
    if found:
        return [found, "server"]
    raise ServerBinaryMissing(f"clickhouse-server is not installed (no clickhouse-server binary); run: {INSTALL_HINT}")


def _config_xml(workdir: Path, host: str, tcp_port: int, http_port: int, extra: str = "") -> str:
    def d(name: str) -> str:
        return escape(str(workdir / name)) + "/"

    logs = workdir / "log"
    return f"""<?xml version="1.0"?>
<!-- Written by foodrisk (pipeline/localstack/clickhouse_server.py); rewritten at every start. -->
<yandex>
    <logger>
        <level>information</level>
        <log>{escape(str(logs / "clickhouse-server.log"))}</log>
        <errorlog>{escape(str(logs / "clickhouse-server.err.log"))}</errorlog>
        <size>10M</size>
        <count>2</count>
        <console>0</console>
    </logger>
    <listen_host>{escape(host)}</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <!-- no interserver_http_port, https_port or tcp_port_secure: nothing else listens -->
    <path>{d("data")}</path>
    <tmp_path>{d("tmp")}</tmp_path>
    <user_files_path>{d("user_files")}</user_files_path>
    <format_schema_path>{d("format_schemas")}</format_schema_path>
    <users_config>{escape(str(workdir / "users.xml"))}</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>{extra}
</yandex>
"""


_USERS_XML = """<?xml version="1.0"?>
<!-- Written by foodrisk (pipeline/localstack/clickhouse_server.py). -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
            <!-- An idle connection checks for shutdown every poll_interval seconds (default 10):
                 with 1, SIGTERM stops the server in about a second instead of ten. -->
            <poll_interval>1</poll_interval>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


def _users_xml(extra: dict[str, str], profile: dict[str, str] | None = None) -> str:
    """The users file: ``default`` without a password, plus ``extra`` users with SHA-256 passwords;
    ``profile`` adds settings to the default profile."""
    base = _USERS_XML
    if profile:
        added = "".join(f"<{escape(k)}>{escape(v)}</{escape(k)}>" for k, v in profile.items())
        base = base.replace("            <poll_interval>1</poll_interval>",
                            f"            <poll_interval>1</poll_interval>\n            {added}", 1)
    if not extra:
        return base
    entries = "".join(
        f"""
        <{name}>
            <password_sha256_hex>{hashlib.sha256(password.encode()).hexdigest()}</password_sha256_hex>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </{name}>"""
        for name, password in extra.items()
    )
    return base.replace("    </users>", entries + "\n    </users>", 1)


class ClickHouseServer(ManagedServer):
    """Debian's clickhouse-server on 127.0.0.1, data and logs under ``workdir``.

    Ports are picked when the object is made and kept for its life, so ``stop()`` then
    ``start()`` brings the same server back on the same ports with the same data.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        tcp_port: int | None = None,
        http_port: int | None = None,
        ready_timeout: float = 30.0,
        command: list[str] | None = None,
        users: dict[str, str] | None = None,
        extra_config: str = "",
    ) -> None:
        self.workdir = Path(workdir).resolve()
        # XML elements added inside <yandex> (a cluster member's remote_servers, zookeeper, macros)
        self.extra_config = extra_config
        self.profile_settings: dict[str, str] = {}  # added to the default profile (users.xml)
        self.users = dict(users or {})  # extra users (name -> plain password), e.g. for secret-handling drills
        self.host = host
        self.tcp_port = tcp_port or free_port(host)
        self.http_port = http_port or free_port(host)
        while self.http_port == self.tcp_port:
            self.http_port = free_port(host)
        self.ready_timeout = ready_timeout
        self._command = command
        self._child: ChildProcess | None = None

    @property
    def url(self) -> str:
        """``clickhouse://default:@HOST:PORT/foodrisk`` for :func:`sinks.clickhouse.connect_clickhouse`."""
        return f"clickhouse://default:@{self.host}:{self.tcp_port}/foodrisk"

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.xml"

    @property
    def log_path(self) -> Path:
        """The server's own log (its stdout and stderr go to ``stdout.log`` beside it)."""
        return self.workdir / "log" / "clickhouse-server.log"

    def write_config(self) -> None:
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(_config_xml(self.workdir, self.host, self.tcp_port, self.http_port,
                                                 self.extra_config))
        (self.workdir / "users.xml").write_text(_users_xml(self.users, self.profile_settings))

    def start(self) -> ClickHouseServer:
        """Start (or start again) and wait until ``SELECT 1`` answers. Raises StartupError."""
        if self.running:
            return self
        command = self._command or find_server_command()
        for port in (self.tcp_port, self.http_port):
            if port_open(self.host, port):
                raise StartupError(f"clickhouse-server: port {self.host}:{port} is already taken by another process")
        self.write_config()
        self._child = ChildProcess(
            "clickhouse-server",
            [*command, f"--config-file={self.config_path}"],
            log_path=self.workdir / "log" / "stdout.log",
            ready=self.answers,
            ready_timeout=self.ready_timeout,
            cwd=self.workdir,
        )
        try:
            self._child.start()
        except StartupError as exc:
            errlog = self.workdir / "log" / "clickhouse-server.err.log"
            raise StartupError(f"{exc}\nserver error log {errlog}:\n{log_tail(errlog)}") from exc
        log.info("clickhouse-server on %s:%s (http %s), pid %s", self.host, self.tcp_port, self.http_port, self.pid)
        return self

    def answers(self, timeout: float = 1.0) -> bool:
        """True when the native port answers ``SELECT 1``."""
        if not port_open(self.host, self.tcp_port, timeout=timeout):
            return False
        probe = DriverBackend(
            self.host,
            self.tcp_port,
            database="default",
            create_database=False,
            connect_timeout=timeout,
            send_receive_timeout=timeout,
            sync_request_timeout=timeout,
        )
        try:
            return bool(probe.query("SELECT 1").scalar() == 1)
        except ClickHouseError:
            return False
        finally:
            probe.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"ClickHouseServer({self.host}:{self.tcp_port}, http {self.http_port}, {state}, {self.workdir})"


def start_clickhouse_server(workdir: Path, *, ready_timeout: float = 30.0) -> ClickHouseServer:
    """A started :class:`ClickHouseServer` under ``workdir``."""
    return ClickHouseServer(workdir, ready_timeout=ready_timeout).start()
