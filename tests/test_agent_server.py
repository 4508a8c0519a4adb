"""`dualsaver.agent_server.checkpointer`: the langgraph.json factory, built from the settings
file and the environment alone, as LangGraph Agent Server enters it."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.conformance.capabilities import DetectedCapabilities

from dualsaver import DualSaver, Phase, TieredSaver
from dualsaver.agent_server import checkpointer
from dualsaver.errors import ServerStartError

EXTENDED = {"delete_for_runs", "copy_thread", "prune"}


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in ("DUALSAVER_SETTINGS", "DUALSAVER_PHASE", "DUALSAVER_CONTROL_URL", "DUALSAVER_PHASE_RECORD",
                 "DUALSAVER_OLD_URL", "DUALSAVER_NEW_URL", "DUALSAVER_DURABLE_URL", "DUALSAVER_HOT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # the default journal lands here
    return monkeypatch


async def test_a_migration_from_the_environment_alone(env, tmp_path, pg_url, capsys):
    env.setenv("DUALSAVER_OLD_URL", f"sqlite:///{tmp_path}/old.sqlite")
    env.setenv("DUALSAVER_NEW_URL", pg_url)
    env.setenv("DUALSAVER_PHASE", "read-switch")
    async with checkpointer() as saver:
        assert isinstance(saver, DualSaver) and saver.phase is Phase.READ_SWITCH
        assert {c.value for c in DetectedCapabilities.from_instance(saver).detected} >= EXTENDED
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        assert await saver.aget_tuple(config) is None
    logged = capsys.readouterr()
    text = logged.out + logged.err
    assert "agent_server_checkpointer" in text and "read-switch" in text
    password = pg_url.split(":")[2].split("@")[0]
    assert password not in text


async def test_tiered_mode_from_the_settings_file(env, tmp_path, pg_url, redis_url):
    settings = tmp_path / "dualsaver.toml"
    settings.write_text(f'[tiered]\nenabled = true\ndurable = "{pg_url}"\nhot = "{redis_url}"\nhot_timeout = 2.0\n')
    env.setenv("DUALSAVER_SETTINGS", str(settings))
    async with checkpointer() as saver:
        assert isinstance(saver, TieredSaver) and saver.hot_timeout == 2.0
        assert {c.value for c in DetectedCapabilities.from_instance(saver).detected} >= EXTENDED


@pytest.mark.parametrize("case", ["missing-url", "bad-phase", "unreachable"])
async def test_a_misconfiguration_fails_start_up_with_one_line(env, tmp_path, case, capsys):
    env.setenv("DUALSAVER_OLD_URL", f"sqlite:///{tmp_path}/old.sqlite")
    if case != "missing-url":
        env.setenv("DUALSAVER_NEW_URL", "postgresql://u:hunter2@127.0.0.1:1/db" if case == "unreachable"
                   else f"sqlite:///{tmp_path}/new.sqlite")
    if case == "bad-phase":
        env.setenv("DUALSAVER_PHASE", "half-way")
    with pytest.raises(ServerStartError) as caught:
        async with checkpointer():
            pass
    message = str(caught.value)
    assert "\n" not in message and "hunter2" not in message
    assert {"missing-url": "DUALSAVER_NEW_URL", "bad-phase": "half-way", "unreachable": "127.0.0.1"}[case] in message
    assert caught.value.__cause__ is None
