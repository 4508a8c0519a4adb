"""A Redis server killed (SIGKILL) mid-traffic, with appendonly yes / appendfsync always,
comes back with every acknowledged checkpoint, and with no checkpoint half-written."""

from __future__ import annotations

import threading
import time

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from dualsaver.embedded import EmbeddedRedis
from dualsaver.redis import open_redis_saver

pytestmark = pytest.mark.slow
CHANNELS = ("a", "b", "c", "d")


def _put(saver, stored, step: int):
    cp = empty_checkpoint()
    cp["channel_values"] = dict.fromkeys(CHANNELS, step)
    cp["channel_versions"] = dict.fromkeys(CHANNELS, step + 1)
    stored = saver.put(stored, cp, {"step": step}, dict(cp["channel_versions"]))
    saver.put_writes(stored, [("a", step), ("b", step)], f"task-{step}", "~0")
    return stored


def test_crash_loses_no_acknowledged_checkpoint() -> None:
    with EmbeddedRedis(appendonly=True, appendfsync="always") as server:
        acknowledged: list[tuple[str, int]] = []
        stop = threading.Event()

        def write() -> None:
            with open_redis_saver(server.url, socket_timeout=5) as saver:
                stored = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
                step = 0
                while not stop.is_set():
                    try:
                        stored = _put(saver, stored, step)
                    except Exception:  # the server is gone: this put was not acknowledged
                        time.sleep(0.01)
                        continue
                    acknowledged.append((stored["configurable"]["checkpoint_id"], step))
                    step += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            deadline = time.monotonic() + 30
            while len(acknowledged) < 100:
                assert time.monotonic() < deadline and writer.is_alive()
                time.sleep(0.01)
            server.restart(crash=True)
            before_stop = len(acknowledged)
        finally:
            stop.set()
            writer.join()
        server.restart(crash=True)  # a second crash after the writer stopped, for good measure

        with open_redis_saver(server.url) as saver:
            present = {t.checkpoint["id"]: t for t in saver.list({"configurable": {"thread_id": "t"}})}
            for checkpoint_id, step in acknowledged:
                tup = present.get(checkpoint_id)
                assert tup is not None, f"acknowledged step {step} lost"
                assert tup.checkpoint["channel_values"] == dict.fromkeys(CHANNELS, step)
                assert tup.pending_writes == [(f"task-{step}", "a", step), (f"task-{step}", "b", step)]
            for tup in present.values():  # nothing acknowledged or not is half there
                assert set(tup.checkpoint["channel_values"]) == set(CHANNELS)
                assert len(set(tup.checkpoint["channel_values"].values())) == 1
            assert before_stop >= 100 and len(present) >= len(acknowledged)
