"""The phase record in Redis: a few hashes and a list under one hash tag, so a Redis
Cluster keeps them on one node."""

from __future__ import annotations

import json
import time
from typing import Any

from dualsaver.control._record_base import (
    DEFAULT_TIMEOUT,
    PhaseRecord,
    PhaseState,
    ReplicaSeen,
    Transition,
    _state,
    _text,
)
from dualsaver.control.phase import Phase
from dualsaver.errors import ConcurrentChange, RecordUnavailable

# Compare-and-set: the version must still be the expected one; then the hash and the
# history change together (a script runs atomically, and every key shares a hash tag).
_SET_PHASE = """
local v = redis.call('HGET', KEYS[1], 'version') or '0'
if v ~= ARGV[1] then return {0, v, redis.call('HGET', KEYS[1], 'phase') or ''} end
redis.call('HSET', KEYS[1], 'phase', ARGV[2], 'version', ARGV[3], 'changed_at', ARGV[4],
           'changed_by', ARGV[5], 'reason', ARGV[6], 'forced', ARGV[7])
redis.call('RPUSH', KEYS[2], ARGV[8])
return {1, ARGV[3], ARGV[2]}
"""


class RedisPhaseRecord(PhaseRecord):
    """The record under `dualsaver:{name}:*`: standalone Redis or Redis Cluster."""

    def __init__(self, url: str, name: str = "default", timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(url, name, timeout)
        from dualsaver.redis.url import parse_redis_url

        try:
            self._target = parse_redis_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        except ValueError as exc:
            raise RecordUnavailable(self.describe(exc)) from None
        tag = "{" + name + "}"
        self.keys = {
            "phase": f"dualsaver:{tag}:phase",
            "history": f"dualsaver:{tag}:history",
            "replicas": f"dualsaver:{tag}:replicas",
            "status": f"dualsaver:{tag}:status",
        }

    def _connect(self) -> Any:
        from dualsaver.redis.url import sync_client

        return sync_client(self._target)

    def _errors(self) -> tuple[tuple[type[BaseException], ...], ...]:
        import redis
        from redis.exceptions import ClusterError, RedisClusterException

        # ClusterError: no node of the cluster answers
        unreachable = (redis.ConnectionError, redis.TimeoutError, OSError, ClusterError, RedisClusterException)
        return (), unreachable, (redis.RedisError,)

    def read(self) -> PhaseState | None:
        raw = self._run(lambda r: r.hgetall(self.keys["phase"]))
        if not raw:
            return None
        h = {k.decode(): v.decode() for k, v in raw.items()}
        return _state(h["phase"], h["version"], h["changed_at"], h["changed_by"], h.get("reason"), h.get("forced") == "1")

    def set_phase(
        self, phase: Phase, *, expected_version: int, by: str, reason: str = "", forced: bool = False
    ) -> PhaseState:
        now = time.time()
        new_version = expected_version + 1
        entry = {
            "from_phase": None,
            "to_phase": phase.value,
            "version": new_version,
            "changed_at": now,
            "changed_by": by,
            "reason": reason,
            "forced": forced,
        }
        current = self.read()
        entry["from_phase"] = previous = current.phase.value if current else None
        if current is not None and current.version != expected_version or (
            current is None and expected_version != 0
        ):
            raise ConcurrentChange(
                f"the phase changed meanwhile (now {previous}, version"
                f" {current.version if current else 0}); look again with `dualsaver phase show`"
            )
        args = [
            str(expected_version), phase.value, str(new_version), repr(now), by, reason,
            "1" if forced else "0", json.dumps(entry),
        ]
        ok, version, now_phase = self._run(
            lambda r: r.eval(_SET_PHASE, 2, self.keys["phase"], self.keys["history"], *args)
        )
        if int(ok) != 1:
            raise ConcurrentChange(
                f"the phase changed meanwhile (now {_text(now_phase)}, version {_text(version)});"
                " look again with `dualsaver phase show`"
            )
        return PhaseState(phase, new_version, now, by, reason, forced)

    def history(self, limit: int = 20) -> list[Transition]:
        rows = self._run(lambda r: r.lrange(self.keys["history"], -limit, -1))
        return [Transition(**json.loads(row)) for row in rows or []]

    def heartbeat(self, replica: str, phase: Phase, interval: float) -> None:
        value = json.dumps({"phase": phase.value, "seen_at": time.time(), "interval": interval})
        self._run(lambda r: r.hset(self.keys["replicas"], replica, value))

    def forget_replica(self, replica: str) -> None:
        self._run(lambda r: r.hdel(self.keys["replicas"], replica))

    def replicas(self) -> list[ReplicaSeen]:
        raw = self._run(lambda r: r.hgetall(self.keys["replicas"])) or {}
        seen = []
        for key, value in raw.items():
            v = json.loads(value)
            seen.append(ReplicaSeen(_text(key), v["phase"], float(v["seen_at"]), float(v["interval"])))
        return sorted(seen, key=lambda s: s.replica)

    def put_status(self, kind: str, value: dict[str, Any]) -> None:
        payload = json.dumps({"value": value, "recorded_at": time.time()})
        self._run(lambda r: r.hset(self.keys["status"], kind, payload))

    def get_status(self, kind: str) -> dict[str, Any] | None:
        raw = self._run(lambda r: r.hget(self.keys["status"], kind))
        return json.loads(raw)["value"] if raw else None



