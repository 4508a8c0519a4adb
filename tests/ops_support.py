"""Helpers for the operations tests: run the real `dualsaver` command, wait for a condition,
build checkpoints to write straight into a store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint

REPO = Path(__file__).resolve().parent.parent
CLEAN_PREFIXES = ("DUALSAVER_", "OTEL_")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: this one without DUALSAVER_* / OTEL_*, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEAN_PREFIXES)}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["DUALSAVER_OPERATOR"] = "tester@ci"
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """`dualsaver ARGS...` in a fresh interpreter; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "dualsaver.cli", *args],
        cwd=cwd,
        env=env if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sqlite_migration(
    tmp_path: Path, control_url: str
) -> tuple[dict[str, str], dict[str, str], Callable[..., tuple[int, str]]]:
    """Two SQLite stores, their URLs in the environment of `dualsaver` runs (`cli`, which
    returns the exit status and the output) beside a control store."""
    urls = {side: f"sqlite:///{tmp_path / f'{side}.sqlite'}" for side in ("old", "new")}
    env = cli_env(DUALSAVER_CONTROL_URL=control_url, DUALSAVER_OLD_URL=urls["old"], DUALSAVER_NEW_URL=urls["new"])

    def cli(*args: str) -> tuple[int, str]:
        done = run_cli(*args, cwd=tmp_path, env=env)
        return done.returncode, done.stdout + done.stderr

    return urls, env, cli


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines among `text`'s lines."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def eventually(predicate: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy. The bound is a liveness guard, not a performance claim."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(every)


def put_marker(saver: Any, thread_id: str, marker: str, checkpoint_id: str | None = None) -> dict:
    """Write one checkpoint whose channel `marker` says which store it was written to."""
    checkpoint = empty_checkpoint()
    if checkpoint_id is not None:
        checkpoint["id"] = checkpoint_id
    checkpoint["channel_values"] = {"marker": marker}
    checkpoint["channel_versions"] = {"marker": 1}
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    return saver.put(config, checkpoint, {"source": "input", "step": 0}, {"marker": 1})


def marker_of(tup: Any) -> str | None:
    return None if tup is None else tup.checkpoint["channel_values"].get("marker")
