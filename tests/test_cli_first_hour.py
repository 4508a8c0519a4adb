"""What a new user meets first, run as they run it: the `dualsaver` command in a subprocess.

Each test is one mistake or gap a newcomer hit (issue 19): a refused phase move must be a
refusal (exit 1) even before any store exists, a typo in $DUALSAVER_PHASE one line, a missing
extra named with the pip command that installs it, a Redis without modules called that.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A PostgreSQL nobody listens on: a command that opened it would fail with exit 2.
NOWHERE = "postgresql://app:SECRET@127.0.0.1:9/app"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without dualsaver's variables of the surrounding shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUALSAVER_")}
    return {**env, **extra}


def run_clean(*argv: str, cwd: Path, blocked: tuple[str, ...] = (), **extra: str):
    code = (
        "import sys\n"
        f"for name in {list(blocked)!r}: sys.modules[name] = None\n"
        "from dualsaver.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**clean_env(**extra), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


# ----------------------------------------------------------------- phase moves judged first


def test_read_switch_straight_from_shadow_write_is_refused_before_any_store_is_opened(redis_url, tmp_path):
    moved = run_clean("phase", "set", "shadow-write", cwd=tmp_path, DUALSAVER_CONTROL_URL=redis_url)
    assert moved.returncode == 0, moved.stderr
    refused = run_clean(
        "phase", "set", "read-switch", cwd=tmp_path, DUALSAVER_CONTROL_URL=redis_url,
        DUALSAVER_OLD_URL=f"sqlite:///{tmp_path / 'absent.sqlite'}", DUALSAVER_NEW_URL=NOWHERE,
    )
    assert refused.returncode == 1, refused.stderr
    assert "one step at a time" in refused.stderr
    assert "cannot open" not in refused.stderr and "SECRET" not in refused.stderr


def test_read_switch_before_any_backfill_is_refused_as_such(redis_url, tmp_path):
    for phase in ("shadow-write", "backfill"):
        assert run_clean("phase", "set", phase, cwd=tmp_path, DUALSAVER_CONTROL_URL=redis_url).returncode == 0
    refused = run_clean(
        "phase", "set", "read-switch", cwd=tmp_path, DUALSAVER_CONTROL_URL=redis_url,
        DUALSAVER_OLD_URL=f"sqlite:///{tmp_path / 'absent.sqlite'}", DUALSAVER_NEW_URL=NOWHERE,
    )
    assert refused.returncode == 1, refused.stderr
    assert "no backfill has been recorded" in refused.stderr


def test_phase_set_records_who_from_the_system_when_the_environment_names_nobody(redis_url, tmp_path):
    env = {k: v for k, v in clean_env().items() if k not in ("USER", "LOGNAME", "LNAME", "USERNAME")}
    env["PYTHONPATH"] = str(ROOT)
    code = "import sys\nfrom dualsaver.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    moved = subprocess.run(
        [sys.executable, "-c", code, "phase", "set", "shadow-write", "--control", redis_url],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert moved.returncode == 0, moved.stderr
    expected = f"{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"
    assert f"by {expected})" in moved.stdout
    named = run_clean("phase", "set", "backfill", cwd=tmp_path, DUALSAVER_CONTROL_URL=redis_url,
                      DUALSAVER_OPERATOR="alice@laptop")
    assert "by alice@laptop)" in named.stdout


# ----------------------------------------------------------------- a typo in $DUALSAVER_PHASE


@pytest.mark.parametrize("command", [
    ("status",),
    ("backfill", "--old", "memory://a", "--new", "memory://b"),
    ("check", "--old", "memory://a", "--new", "memory://b"),
])
def test_an_unknown_phase_in_the_environment_is_one_line(command, tmp_path):
    result = run_clean(*command, cwd=tmp_path, DUALSAVER_PHASE="readswitch")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "$DUALSAVER_PHASE" in lines[0] and "'readswitch'" in lines[0] and "read-switch" in lines[0]


# ----------------------------------------------------------------- missing extras named


def test_a_missing_sqlite_extra_is_named_by_backfill_and_status(tmp_path):
    source = tmp_path / "old.sqlite"
    import sqlite3

    sqlite3.connect(source).execute("CREATE TABLE checkpoints (x)").connection.close()
    blocked = ("langgraph.checkpoint.sqlite",)
    backfill = run_clean("backfill", "--old", f"sqlite:///{source}", "--new", "memory://", cwd=tmp_path,
                         blocked=blocked)
    assert backfill.returncode == 2
    assert "Traceback" not in backfill.stderr
    assert "pip install 'dualsaver[sqlite]'" in backfill.stderr
    status = run_clean("status", "--json", cwd=tmp_path, blocked=blocked, DUALSAVER_OLD_URL=f"sqlite:///{source}")
    import json

    old = json.loads(status.stdout)["stores"]["old"]
    assert old["reachable"] is False
    assert "pip install 'dualsaver[sqlite]'" in old["detail"]
    assert status.returncode == 1


def test_a_missing_postgres_driver_is_named(tmp_path):
    result = run_clean("check", "--old", "memory://a", "--new", NOWHERE, cwd=tmp_path, blocked=("psycopg",))
    assert result.returncode == 2
    assert "pip install 'dualsaver[postgres]'" in result.stderr
    assert "SECRET" not in result.stderr


def test_the_demo_without_langgraph_names_the_demo_extra(tmp_path):
    result = run_clean("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path, blocked=("langgraph.graph",))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "pip install 'dualsaver[demo]'" in result.stderr


# ----------------------------------------------------------------- a Redis without modules


def test_the_official_saver_on_a_redis_without_modules_says_so(redis_url, tmp_path):
    plain = redis_url.replace("redis://", "redis+langgraph://", 1)
    for must_exist in (False, True):
        from dualsaver.errors import StoreURLError
        from dualsaver.stores import open_saver

        with pytest.raises(StoreURLError, match="this Redis lacks RediSearch/RedisJSON"):
            with open_saver(plain, must_exist=must_exist):
                pass
    result = run_clean("backfill", "--old", "memory://x", "--new", plain, cwd=tmp_path)
    assert result.returncode == 2
    assert "this Redis lacks RediSearch/RedisJSON" in result.stderr


# ----------------------------------------------------------------- version, factory modules


def test_version(tmp_path):
    from dualsaver import __version__

    result = run_clean("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"dualsaver {__version__}"


def test_a_factory_module_in_the_current_directory_is_found(tmp_path):
    (tmp_path / "my_savers.py").write_text(
        "from langgraph.checkpoint.memory import InMemorySaver\n"
        "def make():\n    return InMemorySaver()\n"
    )
    result = run_clean("check", "--old", "python:my_savers:make", "--new", "memory://other", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Safe to switch reads: yes" in result.stdout
    # read through its public API, the comparison is approximate, and the check says so
    assert "comparison is APPROXIMATE (old read through the public API" in result.stderr.splitlines()[-1]
