"""EmbeddedSentinel: a real Redis Sentinel deployment on 127.0.0.1 — a master, its replicas
and three sentinels (``redis-server --sentinel``) — for failover tests.

Redis Sentinel is how Redis gets automatic failover without a cluster: the sentinels watch
the master, agree (a quorum) that it is down, promote a replica and tell clients where the
master now is. A client that asks the sentinels (redis-py's ``Sentinel.master_for``, i.e. a
``redis+sentinel://`` URL) reconnects to the new master on its own.

    with EmbeddedSentinel(password="pw") as group:
        url = group.url                  # redis+sentinel://:pw@127.0.0.1:S1,.../mymaster/0
        old = group.kill_master()        # SIGKILL the master
        group.wait_for_failover(old)     # until the sentinels name a promoted replica

``stack=True`` runs the data nodes with RedisJSON and RediSearch (`EmbeddedRedisStack`), for
the official LangGraph Redis saver (``group.langgraph_url``).
"""

from __future__ import annotations

import time
from urllib.parse import quote

from ._process import LOCALHOST, EmbeddedServerError, log_tail
from .redis import EmbeddedRedis, _RedisProcess, _RedisReplyError
from .redis_stack import EmbeddedRedisStack


class _SentinelProcess(_RedisProcess):
    name = "redis-sentinel"
    extra_args = ("--sentinel",)

    def _pong(self) -> bool:
        return self.command("PING") == "PONG"


class EmbeddedSentinel:
    """A master with `replicas` replicas, watched by `sentinels` sentinels (quorum: a
    majority). Sentinels declare the master down after `down_after_ms` without an answer."""

    def __init__(
        self,
        service: str = "mymaster",
        *,
        replicas: int = 1,
        sentinels: int = 3,
        password: str | None = None,
        stack: bool = False,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        start_timeout: float = 60.0,
    ) -> None:
        if replicas < 1 or sentinels < 1:
            raise ValueError("a Sentinel deployment needs at least one replica and one sentinel")
        self.service = service
        self.password = password
        self.start_timeout = start_timeout
        self._kinds = (replicas, sentinels, stack, down_after_ms, failover_timeout_ms)
        self.data_nodes: list[EmbeddedRedis] = []
        self.sentinels: list[_SentinelProcess] = []

    def __repr__(self) -> str:
        return f"EmbeddedSentinel(service={self.service!r}, data={self.data_ports}, sentinels={self.sentinel_ports})"

    # -- addresses ----------------------------------------------------------------------

    @property
    def data_ports(self) -> list[int]:
        return [n.port for n in self.data_nodes]

    @property
    def sentinel_ports(self) -> list[int]:
        return [s.port for s in self.sentinels]

    def _url(self, scheme: str) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        hosts = ",".join(f"{LOCALHOST}:{p}" for p in self.sentinel_ports)
        return f"{scheme}://{auth}{hosts}/{self.service}/0"

    @property
    def url(self) -> str:
        """For dualsaver's Redis saver (and the control store)."""
        return self._url("redis+sentinel")

    @property
    def langgraph_url(self) -> str:
        """For the official LangGraph Redis saver (needs ``stack=True``)."""
        return self._url("redis+sentinel+langgraph")

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> EmbeddedSentinel:
        if self.sentinels:
            return self
        replicas, sentinels, stack, down_after_ms, failover_timeout_ms = self._kinds
        deadline = time.monotonic() + self.start_timeout
        node_class = EmbeddedRedisStack if stack else EmbeddedRedis
        try:
            for n in range(1 + replicas):
                node = node_class(password=self.password, start_timeout=self.start_timeout)
                if self.password is not None:
                    node.config["masterauth"] = _quoted(self.password)
                if n:
                    node.config["replicaof"] = f"{LOCALHOST} {self.data_nodes[0].port}"
                self.data_nodes.append(node)
                node.start()
            self._wait(deadline, "replicas in sync", lambda: self._replicas_online() == replicas)
            monitor = [
                f"monitor {self.service} {LOCALHOST} {self.data_nodes[0].port} {sentinels // 2 + 1}",
                f"down-after-milliseconds {self.service} {down_after_ms}",
                f"failover-timeout {self.service} {failover_timeout_ms}",
                f"parallel-syncs {self.service} 1",
            ]
            if self.password is not None:
                monitor += [f"auth-pass {self.service} {_quoted(self.password)}",
                    f"sentinel-pass {_quoted(self.password)}"]
            for _ in range(sentinels):
                sentinel = _SentinelProcess(None, None, {"sentinel": list(monitor)}, self.password, self.start_timeout)
                self.sentinels.append(sentinel)
                sentinel.start()
            self._wait(deadline, "sentinels that know each other and the replicas", lambda: self._settled(replicas))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        errors = []
        for server in [*self.sentinels, *self.data_nodes]:
            try:
                server.stop()
            except Exception as err:  # stop the others anyway
                errors.append(err)
        self.sentinels, self.data_nodes = [], []
        if errors:
            raise errors[0]

    def __enter__(self) -> EmbeddedSentinel:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- failover -----------------------------------------------------------------------

    def master(self) -> EmbeddedRedis:
        """The data node the sentinels currently name master."""
        port = self._master_port()
        return next(n for n in self.data_nodes if n.port == port)

    def kill_master(self) -> EmbeddedRedis:
        """SIGKILL the current master; returns it (dead)."""
        master = self.master()
        master.kill()
        return master

    def wait_for_failover(self, old: EmbeddedRedis, timeout: float = 60.0) -> EmbeddedRedis:
        """Wait until every sentinel names another master and it answers as a master."""

        def promoted() -> bool:
            ports = {self._master_port(s) for s in self.sentinels}
            if len(ports) != 1 or old.port in ports:
                return False
            return self._role(next(iter(ports))) == "master"

        self._wait(time.monotonic() + timeout, "a failover", promoted)
        return self.master()

    # -- inside -------------------------------------------------------------------------

    def _master_port(self, sentinel: _SentinelProcess | None = None) -> int:
        ask = sentinel or next(s for s in self.sentinels if s.running)
        _host, port = ask.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(port)

    def _role(self, port: int) -> str | None:
        node = next((n for n in self.data_nodes if n.port == port and n.running), None)
        try:
            return node.command("ROLE")[0] if node is not None else None
        except (OSError, _RedisReplyError):
            return None

    def _replicas_online(self) -> int:
        info = self.data_nodes[0].command("INFO", "replication")
        return sum(1 for line in info.splitlines() if line.startswith("slave") and "state=online" in line)

    def _settled(self, replicas: int) -> bool:
        for sentinel in self.sentinels:
            if len(sentinel.command("SENTINEL", "REPLICAS", self.service)) < replicas:
                return False
            if len(sentinel.command("SENTINEL", "SENTINELS", self.service)) < len(self.sentinels) - 1:
                return False
        return True

    def _wait(self, deadline: float, what: str, ready) -> None:
        delay = 0.05
        while True:
            try:
                if ready():
                    return
            except (OSError, _RedisReplyError, StopIteration):
                pass
            if time.monotonic() > deadline:
                tail = log_tail(self.sentinels[0].log_path) if self.sentinels else "(no sentinel)"
                raise EmbeddedServerError(f"redis sentinel: no {what} in time; first sentinel's log:\n{tail}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
