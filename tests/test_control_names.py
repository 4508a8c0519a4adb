"""One store, one name: "control store" (`ControlStore`, `open_control_store`, `control_url`,
`--control`, `[control]`, `$DUALSAVER_CONTROL_URL`). Its older names ("phase record":
`PhaseRecord`, `open_phase_record`, `record_url`, `--record`, `[phase_record]`,
`$DUALSAVER_PHASE_RECORD`) still work, so no user's code, settings file or script breaks."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from dualsaver.cli import build_parser
from dualsaver.control import settings as settings_module
from dualsaver.control.phase import Phase
from dualsaver.control.record import open_control_store
from dualsaver.control.settings import Settings
from tests.ops_support import cli_env, run_cli

URL = "redis://control.example:6379/0"


def test_the_settings_older_field_names_are_the_same_fields():
    older = Settings(record_url=URL, record_name="billing")
    assert older == Settings(control_url=URL, control_name="billing")
    assert (older.record_url, older.record_name) == (URL, "billing")
    assert replace(older, record_url="redis://other:6379/0").control_url == "redis://other:6379/0"
    assert replace(older, control_url="redis://other:6379/0").record_url == "redis://other:6379/0"


@pytest.mark.parametrize("section", ["control", "phase_record"])
def test_the_settings_file_section_under_either_name(section):
    parsed = settings_module.parse({section: {"url": URL, "name": "billing", "poll_interval": 0.5}})
    assert (parsed.control_url, parsed.control_name, parsed.poll_interval) == (URL, "billing", 0.5)


def test_the_environment_variable_under_either_name_the_new_one_first():
    older = settings_module.current(environ={"DUALSAVER_PHASE_RECORD": URL})
    assert older.control_url == URL
    both = settings_module.current(environ={"DUALSAVER_PHASE_RECORD": URL, "DUALSAVER_CONTROL_URL": "redis://new:1/0"})
    assert both.control_url == "redis://new:1/0"


def test_the_python_names_are_the_same_objects():
    from dualsaver import control
    from dualsaver.cli import options
    from dualsaver.control import record

    assert control.open_phase_record is control.open_control_store is record.open_control_store
    assert control.PhaseRecord is control.ControlStore
    assert record.PostgresPhaseRecord is record.PostgresControlStore
    assert record.RedisPhaseRecord is record.RedisControlStore
    assert options.control_record is options.control_store


@pytest.mark.parametrize("command", [
    ["status"], ["phase", "show"], ["phase", "set", "backfill"], ["throttle", "--max-rate", "5"],
    ["backfill", "--old", "memory://", "--new", "memory://"], ["check", "--old", "memory://", "--new", "memory://"],
    ["repair", "--journal"],
])
def test_every_command_takes_record_as_control_and_says_it_is_deprecated(command, capsys):
    args = build_parser().parse_args([*command, "--record", URL])
    assert args.control == URL
    assert "--record is deprecated; use --control" in capsys.readouterr().err
    assert build_parser().parse_args([*command, "--control", URL]).control == URL
    assert "deprecated" not in capsys.readouterr().err


@pytest.mark.parametrize("command", [["status"], ["phase", "show"], ["phase", "set"], ["backfill"]])
def test_help_names_only_control(command):
    done = run_cli(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "--control" in done.stdout and "--record" not in done.stdout


def test_an_operator_script_with_the_older_names_still_runs(tmp_path, redis_url):
    with open_control_store(redis_url, name="billing") as control:
        control.set_phase(Phase.BACKFILL, expected_version=0, by="op")
    env = cli_env(DUALSAVER_PHASE_RECORD=redis_url)
    shown = run_cli("phase", "show", "--name", "billing", "--json", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["phase"] == "backfill"
    status = run_cli("status", "--record", redis_url, "--json", cwd=tmp_path, env=cli_env())
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["record"]["reachable"] and doc["phase"]["origin"].startswith("phase record redis://")
    assert "--record is deprecated; use --control" in status.stderr
    text = run_cli("status", "--control", redis_url, cwd=tmp_path, env=cli_env())
    assert "\ncontrol:  redis://" in text.stdout and "outcomes kept in: control store redis://" in text.stdout
    assert "deprecated" not in text.stderr
