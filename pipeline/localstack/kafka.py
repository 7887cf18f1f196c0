"""The embedded broker: Apache Kafka 3.9.1 run as a plain Java process from its Maven Central jars.

``fetch_kafka()`` copies the broker's jars once into a cache outside the work tree
(``$FOODRISK_KAFKA_CACHE``, else ``$XDG_CACHE_HOME/foodrisk`` or ``~/.cache/foodrisk``, in
``kafka-3.9.1/``) with Maven and the small pom beside this module; a file lock keeps two processes
from fetching at once and a marker file says the copy is complete.

``KafkaBroker(workdir).start()`` formats a single-node KRaft log dir (one process is broker and
controller), starts ``java ... kafka.Kafka server.properties`` on free loopback ports and waits
until a Metadata request lists the broker. Ports are chosen once per object, so ``stop()`` or
``kill()`` and then ``start()`` bring the same broker back on the same log dir (restart drills).
Logs go to ``workdir/logs``; the process is stopped by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from pipeline.localstack.process import ChildProcess, ManagedServer, StartupError, free_port, log_tail, port_open

log = logging.getLogger(__name__)

KAFKA_VERSION = "3.9.1"
POM = Path(__file__).with_name("kafka-pom.xml")
_MARKER = ".complete"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies"
INSTALL_HINT = "apt-get update && apt-get install -y openjdk-17-jre-headless maven"


class KafkaToolMissing(StartupError):
    """java or mvn is not installed."""


def cache_root() -> Path:
    """Where fetched broker jars live: ``$FOODRISK_KAFKA_CACHE`` or the user's cache directory."""
    explicit = os.environ.get("FOODRISK_KAFKA_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "foodrisk"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise KafkaToolMissing(f"the embedded Kafka broker needs {name}, which is not installed; run: {INSTALL_HINT}")
    return found


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fetch_kafka(root: Path | None = None, *, timeout_s: float = 600.0) -> Path:
    """The directory holding every jar of Kafka KAFKA_VERSION; fetched from Maven Central when absent.

    Safe to call from several processes at once: one fetches, the others wait on the lock and then
    find the marker. A fetch that fails leaves no marker, so the next call tries again.
    """
    home = (root or cache_root()) / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    if (home / _MARKER).is_file():
        return libs
    with _file_lock(home.parent / f"kafka-{KAFKA_VERSION}.lock"):
        if (home / _MARKER).is_file():
            return libs
        mvn = _tool("mvn")
        _tool("java")
        started = time.monotonic()
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(libs, ignore_errors=True)
        home.mkdir(parents=True, exist_ok=True)
        pom = home / "pom.xml"
        shutil.copyfile(POM, pom)  # Maven may write beside its pom: never into the work tree
        argv = [mvn, "-q", "-B", "-f", str(pom), _DEPENDENCY_PLUGIN,
                f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
        log.info("fetching Apache Kafka %s from Maven Central into %s", KAFKA_VERSION, home)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise StartupError(f"fetching Kafka {KAFKA_VERSION} with Maven took over {timeout_s:.0f}s") from exc
        jars = sorted(staging.glob("*.jar")) if staging.is_dir() else []
        if done.returncode != 0 or not any(j.name == f"kafka_2.13-{KAFKA_VERSION}.jar" for j in jars):
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise StartupError(f"fetching Kafka {KAFKA_VERSION} failed (mvn exit {done.returncode}):\n{tail}")
        staging.rename(libs)
        (home / _MARKER).write_text(f"{len(jars)} jars in {time.monotonic() - started:.1f}s\n")
        log.info("Kafka %s: %d jars fetched in %.1fs", KAFKA_VERSION, len(jars), time.monotonic() - started)
    return libs


def new_cluster_id() -> str:
    """A KRaft cluster id as ``StorageTool random-uuid`` prints it (URL-safe base64 of 16 random
    bytes, never starting with '-'), made here to spare a JVM start."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def metadata_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when the broker answers a Metadata request (v1) that lists at least one broker: the
    listener is up and the broker has registered with its controller."""
    return metadata_brokers(host, port, timeout) > 0


def metadata_brokers(host: str, port: int, timeout: float = 1.0) -> int:
    """How many live brokers a Metadata request (v1) to ``host:port`` lists (0: no answer)."""
    client = b"foodrisk-probe"
    body = struct.pack(">i", -1)  # v1: null topic array = no topics, brokers only
    header = struct.pack(">hhih", 3, 1, 7, len(client)) + client
    request = header + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _read_exact(sock, 4))[0]
            payload = _read_exact(sock, size)
    except (OSError, struct.error):
        return 0
    correlation, brokers = struct.unpack(">ii", payload[:8])
    return int(brokers) if correlation == 7 else 0


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return bytes(buf)


# Settings for a local single-node broker. Fast group joins and one partition for the internal
# topics keep test start-up short; nothing here is a workaround for a client.
LOCAL_CONFIG: Mapping[str, str] = {
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
    # After a kill -9 the restarted broker cannot register until its old registration's session
    # expires (DUPLICATE_BROKER_REGISTRATION meanwhile): 9 s by default, 3 s here.
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    "num.partitions": "1",
    "auto.create.topics.enable": "false",
    "log.cleaner.dedupe.buffer.size": "33554432",
    "num.network.threads": "2",
    "num.io.threads": "4",
}

_LOG4J = """\
# Written by foodrisk (pipeline/localstack/kafka.py) at every start.
log4j.rootLogger=INFO, server
log4j.appender.server=org.apache.log4j.RollingFileAppender
log4j.appender.server.File=${kafka.logs.dir}/server.log
log4j.appender.server.MaxFileSize=20MB
log4j.appender.server.MaxBackupIndex=2
log4j.appender.server.layout=org.apache.log4j.PatternLayout
log4j.appender.server.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.storage.internals.log=WARN
log4j.logger.kafka.log=WARN
"""


class KafkaBroker(ManagedServer):
    """Apache Kafka in KRaft combined mode (broker + controller, node 1) on loopback.

    ``config`` adds or overrides server properties. ``heap_mb`` is the JVM heap (-Xms = -Xmx).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        controller_port: int | None = None,
        heap_mb: int = 512,
        config: Mapping[str, str] | None = None,
        ready_timeout: float = 60.0,
        jars: Path | None = None,
        node_id: int = 1,
        voters: str | None = None,
        cluster_id: str | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.node_id = node_id
        self.voters = voters  # controller.quorum.voters; None: this node alone
        self.cluster_id = cluster_id  # the KRaft cluster id the log dir is formatted with; None: a new one
        self.host = host
        self.port = port or free_port(host)
        self.controller_port = controller_port or free_port(host)
        while self.controller_port == self.port:
            self.controller_port = free_port(host)
        self.heap_mb = heap_mb
        self.config = dict(config or {})
        self.ready_timeout = ready_timeout
        self._jars = jars
        self._child: ChildProcess | None = None
        self._started = 0.0
        self.ready_s: float | None = None  # seconds the last start took, JVM start to Metadata answer

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def log_dir(self) -> Path:
        """Kafka's data (``log.dirs``): kept across restarts."""
        return self.workdir / "data"

    @property
    def logs(self) -> Path:
        """The broker's own log files (server.log) and its stdout."""
        return self.workdir / "logs"

    def server_properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters or f"{self.node_id}@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            **LOCAL_CONFIG,
        }
        props.update(self.config)
        return props

    def _write_files(self) -> tuple[Path, Path]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        props = self.workdir / "server.properties"
        props.write_text(
            "# Written by foodrisk (pipeline/localstack/kafka.py) at every start.\n"
            + "".join(f"{k}={v}\n" for k, v in self.server_properties().items())
        )
        log4j = self.workdir / "log4j.properties"
        log4j.write_text(_LOG4J)
        return props, log4j

    def _java(self, libs: Path, log4j: Path, *, heap: bool) -> list[str]:
        argv = [_tool("java")]
        if heap:
            argv += [f"-Xms{self.heap_mb}m", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
        return [
            *argv,
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.logs}",
            f"-Dlog4j.configuration={log4j.as_uri()}",
            "-cp", f"{libs}/*",
        ]

    def _format(self, libs: Path, props: Path, log4j: Path) -> None:
        """Format the KRaft log dir once; a formatted dir (a restart) is left as it is."""
        if (self.log_dir / "meta.properties").is_file():
            return
        argv = [*self._java(libs, log4j, heap=False), "kafka.tools.StorageTool", "format",
                "-t", self.cluster_id or new_cluster_id(), "-c", str(props), "--ignore-formatted"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        (self.logs / "format.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise StartupError(f"kafka StorageTool format failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self) -> KafkaBroker:
        """Start (or start again on the same log dir) and wait until Metadata answers."""
        if self.running:
            return self
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting (:meth:`wait_ready` waits): the members of a
        cluster are launched together, since none is ready before a majority of voters runs."""
        libs = self._jars or fetch_kafka()
        for port in (self.port, self.controller_port):
            if port_open(self.host, port):
                raise StartupError(f"kafka: port {self.host}:{port} is already taken by another process")
        props, log4j = self._write_files()
        self._format(libs, props, log4j)
        self._started = time.monotonic()
        self._child = ChildProcess(
            f"embedded broker (kafka node {self.node_id})",
            [*self._java(libs, log4j, heap=True), "kafka.Kafka", str(props)],
            log_path=self.logs / "stdout.log",
            ready=lambda: metadata_answers(self.host, self.port),
            ready_timeout=self.ready_timeout,
            cwd=self.workdir,
        )
        self._child.launch()

    def wait_ready(self) -> KafkaBroker:
        """Wait until the launched broker answers Metadata (StartupError after ``ready_timeout``)."""
        if self._child is None:
            raise StartupError(f"kafka node {self.node_id}: wait_ready() before launch()")
        try:
            self._child.wait_ready()
        except StartupError as exc:
            self._child = None
            raise StartupError(f"{exc}\nserver log {self.logs / 'server.log'}:\n{log_tail(self.logs / 'server.log')}") \
                from exc
        self.ready_s = time.monotonic() - self._started
        log.info("kafka %s node %d on %s (pid %s) ready in %.1fs", KAFKA_VERSION, self.node_id, self.bootstrap,
                 self.pid, self.ready_s)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a controlled shutdown, a few seconds), SIGKILL after ``timeout``."""
        super().stop(timeout=timeout)

    def rss_mib(self) -> float | None:
        """Resident memory of the broker process, from /proc (None when not running)."""
        pid = self.pid
        if pid is None:
            return None
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"KafkaBroker({self.bootstrap}, controller {self.controller_port}, {state}, {self.workdir})"


# A cluster's internal topics are replicated like the pipeline's own (three copies, two in sync),
# so that losing one broker loses no committed offset.
CLUSTER_CONFIG: Mapping[str, str] = {
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    # a broker that comes back is moved back to leading its preferred partitions soon
    "leader.imbalance.check.interval.seconds": "10",
}


class KafkaCluster:
    """``size`` KRaft nodes on loopback, each broker and controller (combined roles), one voter set
    (``controller.quorum.voters`` lists all of them) and one cluster id; ``brokers[i]`` is node
    ``i + 1`` (a :class:`KafkaBroker`: ``kill()`` and ``start()`` it for drills). The nodes are
    launched together: none answers before a majority of voters runs."""

    def __init__(
        self,
        workdir: Path,
        *,
        size: int = 3,
        host: str = "127.0.0.1",
        heap_mb: int = 384,
        config: Mapping[str, str] | None = None,
        ready_timeout: float = 90.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.workdir = Path(workdir).resolve()
        self.cluster_id = new_cluster_id()
        ports = [(free_port(host), free_port(host)) for _ in range(size)]
        voters = ",".join(f"{i + 1}@{host}:{cport}" for i, (_, cport) in enumerate(ports))
        settings = {**CLUSTER_CONFIG, **(config or {})}
        self.brokers = [
            KafkaBroker(
                self.workdir / f"node{i + 1}", host=host, port=port, controller_port=cport, heap_mb=heap_mb,
                config=settings, ready_timeout=ready_timeout, node_id=i + 1, voters=voters,
                cluster_id=self.cluster_id,
            )
            for i, (port, cport) in enumerate(ports)
        ]

    @property
    def bootstrap(self) -> str:
        """Every node, comma-separated (as kafka-python and aiokafka take it)."""
        return ",".join(b.bootstrap for b in self.brokers)

    @property
    def bootstrap_servers(self) -> list[str]:
        return [b.bootstrap for b in self.brokers]

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def broker(self, node_id: int) -> KafkaBroker:
        return self.brokers[node_id - 1]

    def start(self) -> KafkaCluster:
        """Launch every node that is not running, then wait for each."""
        started = [b for b in self.brokers if not b.running]
        try:
            for b in started:
                b.launch()
            for b in started:
                b.wait_ready()
            self.wait_registered()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_registered(self, timeout_s: float = 60.0) -> float:
        """Until every running node's Metadata lists every running node; returns the seconds waited."""
        started = time.monotonic()
        while True:
            live = [b for b in self.brokers if b.running]
            if all(metadata_brokers(b.host, b.port) >= len(live) for b in live):
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise StartupError(f"kafka cluster: not every node registered within {timeout_s:.0f}s: {self!r}")
            time.sleep(0.1)

    def stop(self) -> None:
        for b in self.brokers:
            b.stop()

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"KafkaCluster({', '.join(repr(b) for b in self.brokers)})"
