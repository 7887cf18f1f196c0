"""Debian's ZooKeeper (3.8, ``apt-get install zookeeper``) as a plain Java process, for a local
ClickHouse cluster: replication and ON CLUSTER DDL need it.

``ZooKeeperServer(workdir).start()`` writes ``zoo.cfg`` (loopback, a free client port, data under
``workdir``), starts ``QuorumPeerMain`` and waits until the ``srvr`` four-letter command answers
with a ``Mode:`` line. ``ruok`` answers ``imok`` too early: ClickHouse servers started then failed
4 times in 5 (shared/STACK.md); after ``srvr`` they started every time.
"""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path

from pipeline.localstack.process import ChildProcess, ManagedServer, StartupError, free_port, port_open

log = logging.getLogger(__name__)

INSTALL_HINT = "apt-get update && apt-get install -y zookeeper"
ZOOKEEPER_JARS = (Path("/usr/share/java/zookeeper.jar"), Path("/usr/share/java/zookeeper-jute.jar"),
                  Path("/usr/share/java/slf4j-api.jar"), Path("/usr/share/java/slf4j-simple.jar"))
# Debian's zookeeper.jar names the rest of its runtime (netty, jute, ...) in its manifest
# Class-Path, so these four are the whole class path.


class ZooKeeperMissing(StartupError):
    """Debian's zookeeper package (or java) is not installed."""


def four_letter(host: str, port: int, word: str, timeout: float = 1.0) -> str:
    """The answer of a ZooKeeper four-letter command ('' when it does not answer)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode(errors="replace")


class ZooKeeperServer(ManagedServer):
    """One standalone ZooKeeper on 127.0.0.1; ``stop()`` and ``start()`` keep port and data."""

    def __init__(self, workdir: Path, *, host: str = "127.0.0.1", port: int | None = None,
                 heap_mb: int = 256, tick_ms: int = 1000, ready_timeout: float = 60.0) -> None:
        self.workdir = Path(workdir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.heap_mb = heap_mb
        self.tick_ms = tick_ms  # sessions may be as short as 2 ticks: ClickHouse's replicas time out sooner
        self.ready_timeout = ready_timeout
        self._child: ChildProcess | None = None

    def ready(self) -> bool:
        return "Mode:" in four_letter(self.host, self.port, "srvr")

    def start(self) -> ZooKeeperServer:
        if self.running:
            return self
        java = shutil.which("java")
        missing = [str(j) for j in ZOOKEEPER_JARS if not j.is_file()]
        if java is None or missing:
            what = ", ".join(missing) or "java"
            raise ZooKeeperMissing(f"ZooKeeper needs java and Debian's zookeeper package ({what} missing); "
                                   f"run: {INSTALL_HINT}")
        if port_open(self.host, self.port):
            raise StartupError(f"zookeeper: port {self.host}:{self.port} is already taken by another process")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "zoo.cfg"
        cfg.write_text(
            "# Written by foodrisk (pipeline/localstack/zookeeper.py) at every start.\n"
            f"tickTime={self.tick_ms}\ndataDir={data}\nclientPort={self.port}\nclientPortAddress={self.host}\n"
            "admin.enableServer=false\n4lw.commands.whitelist=ruok,stat,mntr,srvr\nmaxClientCnxns=0\n"
        )
        self._child = ChildProcess(
            "zookeeper",
            [java, "-Xms64m", f"-Xmx{self.heap_mb}m", "-Dzookeeper.admin.enableServer=false",
             "-cp", ":".join(str(j) for j in ZOOKEEPER_JARS),
             "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)],
            log_path=self.workdir / "zookeeper.log",
            ready=self.ready,
            ready_timeout=self.ready_timeout,
            cwd=self.workdir,
        )
        self._child.start()
        log.info("zookeeper on %s:%s (pid %s)", self.host, self.port, self.pid)
        return self

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"ZooKeeperServer({self.host}:{self.port}, {state}, {self.workdir})"
