"""A server run as a child process: free port, readiness with a deadline, clean stop by PID."""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

log = logging.getLogger(__name__)

_RUNNING: dict[int, ChildProcess] = {}
_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


class StartupError(RuntimeError):
    """A child server did not become ready; the message names the binary and its log."""


_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=4096)
_HANDED_OUT_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now, and not one this process handed out lately.

    A port handed out is only reserved once its server binds it; a process that asks for several
    before starting them (a worker's device and query ports, three workers of a test) could
    otherwise be given the same one twice.
    """
    with _HANDED_OUT_LOCK:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in _HANDED_OUT:
                break
        _HANDED_OUT.append(port)
        return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


class ChildProcess:
    """One server binary run as a child of this process.

    ``ready`` is polled until it returns True or ``ready_timeout`` seconds pass. The child runs in
    its own process group so that a stop reaches anything it forked, and it is stopped at exit.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        ready: Callable[[], bool],
        ready_timeout: float = 30.0,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._ready = ready
        self._ready_timeout = ready_timeout
        self._cwd = cwd
        self._env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._launched = 0.0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> ChildProcess:
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it to be ready."""
        _install_handlers()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        binary = self.argv[0]
        with self.log_path.open("ab") as logf:
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self._cwd,
                    env=self._env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise StartupError(f"{self.name}: cannot run {binary}: {exc}") from exc
        with _LOCK:
            _RUNNING[self._proc.pid] = self
        self._launched = time.monotonic()

    def wait_ready(self) -> ChildProcess:
        """Poll ``ready`` until it holds, ``ready_timeout`` seconds after :meth:`launch`."""
        if self._proc is None:
            raise StartupError(f"{self.name}: wait_ready() before launch()")
        binary = self.argv[0]
        deadline = self._launched + self._ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._forget()
                raise StartupError(
                    f"{self.name}: {binary} exited with code {code} before it was ready; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if self._probe():
                log.info("%s ready (pid %s)", self.name, self._proc.pid)
                return self
            time.sleep(0.05)
        self.stop()
        raise StartupError(
            f"{self.name}: {binary} not ready after {self._ready_timeout:.0f}s; "
            f"log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def _probe(self) -> bool:
        try:
            return bool(self._ready())
        except Exception:  # noqa: BLE001 - any failure of a probe means "not ready yet"
            return False

    def stop(self, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self._forget()

    def kill(self) -> None:
        """SIGKILL, for drills: no chance to clean up."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=5)

    def _forget(self) -> None:
        if self._proc is not None:
            with _LOCK:
                _RUNNING.pop(self._proc.pid, None)

    def __enter__(self) -> ChildProcess:
        return self.start() if not self.running else self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def stop_all() -> None:
    """Stop every child started through this module (idempotent)."""
    with _LOCK:
        children = list(_RUNNING.values())
    for child in reversed(children):
        try:
            child.stop()
        except Exception:  # stopping the others matters more
            log.exception("could not stop %s", child.name)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # A second signal while the children stop (e.g. `timeout` forwarding SIGTERM again) must not
    # cut the clean-up short and leave orphans.
    signal.signal(signum, signal.SIG_IGN)
    stop_all()
    # Restore the default action and re-raise, so the exit status says what happened.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(stop_all)
    if threading.current_thread() is threading.main_thread():
        # SIGINT stays with Python (KeyboardInterrupt unwinds through context managers and atexit);
        # SIGTERM and SIGHUP would otherwise end the process without running atexit.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)


def http_ok(url: str, timeout: float = 1.0, *, basic_auth: tuple[str, str] | None = None) -> bool:
    """True when GET ``url`` answers 200 (readiness probes of HTTP servers)."""
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)  # noqa: S310 - our own loopback servers
    if basic_auth is not None:
        pair = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {pair}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - our own loopback servers
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


class ManagedServer:
    """What the local server wrappers share: one ChildProcess at a time, stopped by PID.

    Subclasses implement ``start()`` (which sets ``self._child`` to a started ChildProcess).
    """

    _child: ChildProcess | None = None

    def start(self) -> Self:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Idempotent."""
        if self._child is not None:
            self._child.stop(timeout=timeout)
            self._child = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, as in a crash."""
        if self._child is not None:
            self._child.kill()
            self._child.stop()
            self._child = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
