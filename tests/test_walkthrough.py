"""The README's "A migration, step by step", run exactly as written.

The section's first block (`dualsaver dev`) is started in the background, as the reader
starts it in a second terminal; every line of the second block then runs, in order, in one
bash shell (so its `source` and `export` carry on), from the same fresh directory. Nothing
is adapted: if the README changes, this test runs the new text.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## A migration, step by step"


def section_blocks() -> list[list[str]]:
    """The fenced bash blocks of the section: their command lines (comments and blank lines out)."""
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION + "\n")
    end = text.find("\n## ", start + len(SECTION))
    body = text[start: end if end != -1 else None]
    blocks = re.findall(r"```bash\n(.*?)```", body, flags=re.S)
    return [[ln for ln in b.splitlines() if ln.strip() and not ln.lstrip().startswith("#")] for b in blocks]


def user_env() -> dict[str, str]:
    """A shell as a reader's: the installed `dualsaver` on PATH, none of our variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUALSAVER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)  # this tree, whichever dualsaver is installed
    return env


def port_open(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_the_step_by_step_section_runs_as_written(tmp_path):
    dev_block, steps = section_blocks()
    assert dev_block == ["dualsaver dev"]
    assert any(line.startswith("dualsaver phase set read-switch") for line in steps)
    env = user_env()
    dev = subprocess.Popen(["bash", "-c", f"exec {dev_block[0]}"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    env_file = tmp_path / ".dualsaver" / "dev.env"
    try:
        deadline = time.monotonic() + 120
        while not env_file.exists():
            assert dev.poll() is None, dev.stdout.read()
            assert time.monotonic() < deadline, "dualsaver dev did not get ready"
            time.sleep(0.2)
        urls = dict(re.findall(r"export (\w+)=(\S+)", env_file.read_text()))
        assert set(urls) == {"DUALSAVER_NEW_URL", "DUALSAVER_CONTROL_URL"}
        script = "set -e\n" + "".join(
            f"echo '$ '{_quoted(line)}\n{line}\n" for line in steps
        )
        run = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        ran = [ln[2:] for ln in run.stdout.splitlines() if ln.startswith("$ ")]
        assert run.returncode == 0, f"failed at: {ran[-1] if ran else '?'}\n{run.stdout}\n{run.stderr}"
        assert ran == steps  # every line ran
        out = run.stdout
        assert "seeded 12 conversation(s)" in out
        assert "Safe to switch reads: yes" in out
        assert "-> read-switch" in out and "-> decommission" in out
        assert re.search(r"phase:\s+decommission", out)
        assert re.search(r"backfill: complete; 12 thread\(s\) copied", out)
        assert (tmp_path / "check.html").exists() and (tmp_path / "check.json").exists()
        assert "Traceback" not in run.stderr
    finally:
        dev.send_signal(signal.SIGINT)  # the reader's Ctrl-C
        output, _ = dev.communicate(timeout=120)
    assert dev.returncode == 0, output
    assert "stopping" in output
    assert not env_file.exists()
    assert not port_open(urls["DUALSAVER_NEW_URL"]) and not port_open(urls["DUALSAVER_CONTROL_URL"])


def test_dev_stops_on_sigterm_too(tmp_path):
    dev = subprocess.Popen(["dualsaver", "dev", "--env-file", "dev.env"], cwd=tmp_path, env=user_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    env_file = tmp_path / "dev.env"
    try:
        deadline = time.monotonic() + 120
        while not env_file.exists():
            assert dev.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        text = env_file.read_text()
        lines = text.splitlines()
        assert all(line.startswith("export DUALSAVER_") for line in lines)
    finally:
        dev.send_signal(signal.SIGTERM)
        output, _ = dev.communicate(timeout=120)
    assert dev.returncode == 0, output
    for line in lines:  # the export lines are printed for pasting, as written to the file
        assert line in output
    url = dict(re.findall(r"export (\w+)=(\S+)", text))["DUALSAVER_NEW_URL"]
    assert not port_open(url)


def _quoted(line: str) -> str:
    return "'" + line.replace("'", "'\"'\"'") + "'"
