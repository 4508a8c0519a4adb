"""Secrets stay secret: real passwords in every URL, every command run, every output captured
(stdout, stderr, log files, report files, status files); the password never appears."""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import quote

import pytest
import structlog

from dualsaver.embedded import EmbeddedRedis, free_port
from dualsaver.observability.logs import configure_logging, redact_value
from dualsaver.stores import open_saver
from dualsaver.stores.urls import password_of
from tests.ops_support import cli_env, put_marker, run_cli

REDIS_PASSWORD = "r3dis-S3cret!pw"
DEAD_PASSWORD = "dead-Server-pw9"


@pytest.fixture(scope="module")
def secret_redis():
    with EmbeddedRedis(password=REDIS_PASSWORD) as server:
        yield server


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe="")}


def test_no_password_in_any_output_of_any_command(tmp_path, pg_url, secret_redis):
    pg_password = password_of(pg_url)
    assert pg_password and REDIS_PASSWORD in secret_redis.url.replace("%21", "!")
    old_url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    with open_saver(old_url) as old:
        for t in ("t1", "t2"):
            put_marker(old, t, "old")
    dead_pg = f"postgresql://app:{DEAD_PASSWORD}@127.0.0.1:{free_port()}/app"
    dead_redis = f"redis://:{DEAD_PASSWORD}@127.0.0.1:{free_port()}/0"
    config = tmp_path / "dualsaver.toml"
    config.write_text(
        '[migration]\nstatus_file = "status.json"\n'
        f'[stores]\nold = "{old_url}"\nnew = "${{NEW_URL}}"\n'
        '[phase_record]\nurl = "${RECORD_URL}"\n'
    )
    log_file = tmp_path / "logs" / "dualsaver.jsonl"
    env = cli_env(
        NEW_URL=pg_url, RECORD_URL=secret_redis.url, DUALSAVER_SETTINGS=str(config),
        DUALSAVER_LOG_FILE=str(log_file), DUALSAVER_LOG_LEVEL="debug",
        DUALSAVER_STATUS=str(tmp_path / "status.json"), OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="console",
    )
    reports = {name: tmp_path / name for name in ("check.json", "check.md", "check.html")}
    commands = [
        ["phase", "set", "backfill", "--reason", "go"],
        ["phase", "set", "decommission"],  # refused
        ["phase", "set", "read-switch", "--force", "--reason", "hand-checked"],
        ["phase", "show"],
        ["phase", "show", "--json"],
        ["phase", "show", "--record", dead_redis],  # unreachable record
        ["phase", "set", "backfill", "--record", dead_pg],  # unreachable record in PostgreSQL
        ["phase", "show", "--record", f"postgresql://app:{DEAD_PASSWORD}@/nohost"],  # bad URL
        ["status"],
        ["status", "--json"],
        ["status", "--new", dead_pg, "--record", dead_redis],
        ["status", "--json", "--new", dead_pg, "--old", dead_redis],
        ["backfill", "--old", old_url, "--new", pg_url, "--no-progress", "--state", str(tmp_path / "bf.sqlite")],
        ["check", "--old", old_url, "--new", pg_url, "--report", str(reports["check.json"]),
         "--markdown", str(reports["check.md"]), "--html", str(reports["check.html"])],
        ["check", "--old", old_url, "--new", dead_pg],
        ["backfill", "--old", old_url, "--new", dead_pg, "--no-progress"],
        ["check", "--old", old_url, "--new", f"host=127.0.0.1 user=app password={DEAD_PASSWORD}"],  # not a URL
    ]
    outputs: list[tuple[str, str]] = []  # (where, text)
    codes = []
    for args in commands:
        done = run_cli(*args, cwd=tmp_path, env=env)
        codes.append(done.returncode)
        outputs.append((" ".join(args[:2]), done.stdout + done.stderr))
    assert all(c in (0, 1, 2) for c in codes), list(zip(codes, outputs))  # answers, no crash

    files = [log_file, *reports.values(), tmp_path / "status.json", *tmp_path.glob(".dualsaver/*")]
    outputs += [(str(p), p.read_text(errors="replace")) for p in files if p.is_file()]
    assert log_file.read_text().strip(), "the commands logged nothing: the log check would prove nothing"
    assert reports["check.html"].read_text().strip()
    assert sum("***" in text for _, text in outputs) >= 5  # URLs were shown, masked
    for secret in _forms(pg_password) | _forms(REDIS_PASSWORD) | _forms(DEAD_PASSWORD):
        for where, text in outputs:
            assert secret not in text, f"a password leaked in {where}"

def test_log_lines_are_redacted_everywhere():
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    try:
        log = structlog.get_logger("dualsaver.test")
        url = f"postgresql://app:{DEAD_PASSWORD}@db:5432/app"
        log.warning("connecting", url=url, detail=f"dsn host=db password={DEAD_PASSWORD} user=app",
                    options={"token": "tok-123", "nested": [{"api_key": "key-456", "ok": 1}]})
        try:
            raise ConnectionError(f"cannot reach redis://:{DEAD_PASSWORD}@cache:6379/0")
        except ConnectionError:
            log.exception("outage")
        logging.getLogger("psycopg").warning("from the driver: %s", url)  # a standard-library logger
    finally:
        configure_logging(fmt="json", stream=io.StringIO())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["connecting", "outage", f"from the driver: {url.replace(DEAD_PASSWORD, '***')}"]
    text = stream.getvalue()
    for secret in (DEAD_PASSWORD, "tok-123", "key-456"):
        assert secret not in text
    assert lines[0]["url"] == "postgresql://app:***@db:5432/app"
    assert lines[0]["options"] == {"token": "***", "nested": [{"api_key": "***", "ok": 1}]}
    assert "Traceback" in lines[1]["exception"] and "redis://:***@cache:6379/0" in lines[1]["exception"]


def test_redaction_keeps_what_is_not_secret():
    event = {"thread_id": "t-1", "phase": "backfill", "count": 3, "path": "/var/lib/x", "author": "ana"}
    assert redact_value(event) == event


@pytest.mark.parametrize("url, secret", [
    ("postgresql://app@127.0.0.1:1/app?sslmode=require&sslpassword=KEY-pw-71", "KEY-pw-71"),  # libpq's key password
    ("redis://127.0.0.1:1/0?sentinel_password=SENT-pw-72", "SENT-pw-72"),  # not an option of ours: still a secret
    ("redis+sentinel://127.0.0.1:1/svc/0?auth_token=TOK-73", "TOK-73"),
])
def test_every_secret_named_parameter_is_masked(url, secret, tmp_path):
    """Not only `password=`: a URL parameter named as a secret never reaches a message,
    a log line or a command's output (the store is unreachable, so the error quotes it)."""
    with pytest.raises(Exception) as caught:
        with open_saver(url):
            pass
    assert secret not in str(caught.value) and "***" in str(caught.value)
    assert secret not in redact_value({"url": url, "detail": f"connection failed: {url}"}).__repr__()
    done = run_cli("check", "--old", url, "--new", f"sqlite:///{tmp_path / 'n.sqlite'}", cwd=tmp_path)
    assert done.returncode == 2 and secret not in done.stdout + done.stderr, done.stderr
