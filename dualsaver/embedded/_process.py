"""Process plumbing shared by the launchers: free ports, readiness polling, shutdown,
temp dirs that a later run can sweep, and the registry that stops every server at exit."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from collections.abc import Callable

from dualsaver.errors import EmbeddedServerError  # its message ends with the server's log tail

log = logging.getLogger("dualsaver.embedded")

LOCALHOST = "127.0.0.1"
# A cluster node also listens on port + 10000 (the cluster bus), so cluster ports come from a
# range whose bus ports stay valid and below the kernel's ephemeral range.
_CLUSTER_PORT_RANGE = (20000, 30000)


def free_port(*, with_bus_port: bool = False) -> int:
    """A TCP port of 127.0.0.1 that is free right now (and port + 10000 too, if asked)."""
    if not with_bus_port:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOCALHOST, 0))
            return s.getsockname()[1]
    for _ in range(200):
        port = random.randint(*_CLUSTER_PORT_RANGE)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise EmbeddedServerError("no free port pair (port, port + 10000) found")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def log_tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(empty log)"


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to send ``sig`` to the child when its parent dies.

    The kernel ties this to the parent *thread*, so it is only safe from the main thread:
    from a worker thread the server would die with that thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, sig, 0, 0, 0)

    return preexec


def wait_until(
    ready: Callable[[], bool],
    *,
    proc: subprocess.Popen,
    what: str,
    log_path: Path | None,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if proc.poll() is not None:
            raise EmbeddedServerError(
                f"{what} exited with code {proc.returncode} while starting; log tail:\n"
                + log_tail(log_path)
            )
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise EmbeddedServerError(
                f"{what} not ready after {timeout:.0f}s; log tail:\n" + log_tail(log_path)
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def terminate(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    """Send ``sig``; escalate to SIGKILL if the process is still there after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


# Temp dirs carry the pids of the process that made them and of the server run in them, so a
# later launcher can remove what a SIGKILLed run left behind (atexit never ran there).
_PID_FILE = ".dualsaver-pids"
_TEMP_PREFIXES = ("dualsaver-pg-", "dualsaver-redis-")
_swept = False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale_temp_dirs() -> None:
    global _swept
    if _swept:
        return
    _swept = True
    root = Path(tempfile.gettempdir())
    for prefix in _TEMP_PREFIXES:
        for path in root.glob(prefix + "*"):
            try:
                pids = [int(x) for x in (path / _PID_FILE).read_text().split()]
            except (OSError, ValueError):
                continue  # being created right now, or not ours
            if pids and not any(_pid_alive(pid) for pid in pids):
                shutil.rmtree(path, ignore_errors=True)


def make_temp_dir(prefix: str) -> Path:
    _sweep_stale_temp_dirs()
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / _PID_FILE).write_text(f"{os.getpid()}\n")
    return path


def record_server_pid(temp_dir: Path | None, pid: int) -> None:
    if temp_dir is not None:
        with open(temp_dir / _PID_FILE, "a") as f:
            f.write(f"{pid}\n")


# Every running server, so that interpreter exit stops what a crashed test left behind.
_live: set[Server] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


class Server:
    """Start/stop bookkeeping shared by every launcher; subclasses provide _launch/_halt."""

    name = "server"

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    # subclass hooks
    def _launch(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _halt(self, *, crash: bool) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cleanup_files(self) -> None:
        pass

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self):
        if self.running:
            return self
        began = time.monotonic()
        try:
            self._launch()
        except BaseException:
            self._halt_quietly()
            if self.startup_seconds is None:  # a failed restart keeps the data for a look
                self._cleanup_files()
            raise
        self.startup_seconds = time.monotonic() - began
        with _live_lock:
            _live.add(self)
        log.debug("%s started in %.2fs", self.name, self.startup_seconds)
        return self

    def stop(self) -> None:
        """Stop the server and remove its files unless they were given by the caller."""
        self._halt_quietly()
        self._cleanup_files()

    def restart(self, *, crash: bool = False):
        """Stop and start again on the same port and data directory.

        ``crash=True`` kills the server without a clean shutdown (SIGKILL for Redis, an
        immediate shutdown for PostgreSQL), to prove what survives a crash.
        """
        self._halt(crash=crash)
        with _live_lock:
            _live.discard(self)
        return self.start()

    def kill(self) -> None:
        """Crash the server (SIGKILL for Redis): what a failover test does to a master.
        Its files stay until `stop()`."""
        self._halt(crash=True)
        with _live_lock:
            _live.discard(self)

    def _halt_quietly(self) -> None:
        try:
            self._halt(crash=False)
        finally:
            with _live_lock:
                _live.discard(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
