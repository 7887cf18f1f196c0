"""A real Prometheus Alertmanager as a child process (Debian's ``prometheus-alertmanager`` 0.25).

``AlertmanagerServer(workdir, config_file).start()`` runs::

    prometheus-alertmanager --config.file=CONFIG --storage.path=WORKDIR/data
        --web.listen-address=127.0.0.1:PORT --cluster.listen-address=

(an empty cluster address: no gossip, a single instance) and waits until ``/-/ready`` answers 200.
The port is chosen once, so ``stop()`` then ``start()`` brings it back at the same URL (silences
and notification logs persist under ``storage.path``; alerts do not: Alertmanager keeps them in
memory, and senders re-post them). Stopped by PID at exit like every ChildProcess.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pipeline.localstack.process import ChildProcess, ManagedServer, StartupError, free_port, http_ok, port_open

log = logging.getLogger(__name__)

INSTALL_HINT = "apt-get update && apt-get install -y prometheus-alertmanager"
_NAMES = ("prometheus-alertmanager", "alertmanager")
_PATHS = ("/usr/bin/prometheus-alertmanager", "/usr/local/bin/alertmanager")


class AlertmanagerMissing(StartupError):
    """No Alertmanager binary on this machine."""


def find_alertmanager() -> str:
    """The path of the Alertmanager binary, or :class:`AlertmanagerMissing`."""
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    for path in _PATHS:
        if os.access(path, os.X_OK):
            return path
    raise AlertmanagerMissing(f"Alertmanager is not installed (no prometheus-alertmanager binary); run: {INSTALL_HINT}")


def find_amtool() -> str | None:
    """``amtool`` (Debian ships it with prometheus-alertmanager), or None."""
    return shutil.which("amtool") or (("/usr/bin/amtool") if os.access("/usr/bin/amtool", os.X_OK) else None)


class AlertmanagerServer(ManagedServer):
    """One Alertmanager on ``host:port`` with ``config_file``, its state under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        config_file: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        ready_timeout: float = 30.0,
        binary: str | None = None,
        web_config: Path | None = None,
        basic_auth: tuple[str, str] | None = None,
    ) -> None:
        """``web_config``: Alertmanager's ``--web.config.file`` (e.g. ``basic_auth_users``); then
        ``basic_auth`` is the user and password the readiness probe sends."""
        self.workdir = Path(workdir).resolve()
        self.config_file = Path(config_file).resolve()
        self.web_config = Path(web_config).resolve() if web_config is not None else None
        self.basic_auth = basic_auth
        self.host = host
        self.port = port or free_port(host)
        self.ready_timeout = ready_timeout
        self._binary = binary
        self._child: ChildProcess | None = None

    @property
    def url(self) -> str:
        """The base URL, as FOODRISK_ALERTMANAGER_URL takes it."""
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "alertmanager.log"

    def argv(self) -> list[str]:
        return [
            self._binary or find_alertmanager(),
            f"--config.file={self.config_file}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--cluster.listen-address=",
            "--log.level=info",
            *([f"--web.config.file={self.web_config}"] if self.web_config is not None else []),
        ]

    def ready(self, timeout: float = 1.0) -> bool:
        """True when ``/-/ready`` answers 200."""
        return http_ok(f"{self.url}/-/ready", timeout, basic_auth=self.basic_auth)

    def start(self) -> AlertmanagerServer:
        """Start (or start again) and wait until ready. Raises StartupError (AlertmanagerMissing)."""
        if self.running:
            return self
        argv = self.argv()
        if not self.config_file.is_file():
            raise StartupError(f"Alertmanager: config file {self.config_file} does not exist")
        if port_open(self.host, self.port):
            raise StartupError(f"Alertmanager: port {self.host}:{self.port} is already taken by another process")
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self._child = ChildProcess(
            "alertmanager",
            argv,
            log_path=self.log_path,
            ready=self.ready,
            ready_timeout=self.ready_timeout,
            cwd=self.workdir,
        )
        self._child.start()
        log.info("Alertmanager at %s (pid %s, log %s)", self.url, self.pid, self.log_path)
        return self

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"AlertmanagerServer({self.url}, {state}, {self.workdir})"
