"""Saver factories named by ``python:tests.factory_savers:<name>`` store URLs in the tests.

They take no arguments, as a factory URL's must, so the server comes from the environment
(``FACTORY_REDIS_URL``, a plain ``redis://`` URL of a Redis with RedisJSON and RediSearch),
as an application's factory would read its own settings.
"""

from __future__ import annotations

import os
from typing import Any

from langgraph.checkpoint.redis import RedisSaver
from langgraph.checkpoint.redis.aio import AsyncRedisSaver


def official() -> Any:
    """A context manager of the official sync saver (not set up: open_saver does it)."""
    return RedisSaver.from_conn_string(os.environ["FACTORY_REDIS_URL"])


def official_async() -> Any:
    """An async context manager of the official async saver (entering it sets it up)."""
    return AsyncRedisSaver.from_conn_string(os.environ["FACTORY_REDIS_URL"])


def not_a_saver() -> Any:
    return {"a": "dict"}
