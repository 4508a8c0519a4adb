"""The package as a PyPI user gets it: an sdist and a wheel built from this tree, the wheel
installed alone in a fresh virtual environment (the base requirements only, no extra).

It must run `dualsaver --help` and `--version`, and each command that needs an extra must
name it (`pip install 'dualsaver[...]'`) instead of ending in a bare ModuleNotFoundError. The
sdist must carry what its own tests read (config/, docs/, tests/).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".dualsaver",
                              ".hypothesis", ".pytest_cache", "*.sqlite")

pytestmark = pytest.mark.slow


def sh(*argv: str | Path, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # the venv's own only
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """A fresh venv with only the wheel and its base requirements; the sdist and wheel files."""
    where = tmp_path_factory.mktemp("packaging")
    source = where / "source"
    shutil.copytree(ROOT, source, ignore=SKIP)
    venv = where / "venv"
    sh(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    sh(python, "-m", "pip", "install", "-q", "build")
    sh(python, "-m", "build", "-q", "--sdist", "--wheel", "--outdir", where / "dist", source)
    wheel = next((where / "dist").glob("dualsaver-*.whl"))
    sdist = next((where / "dist").glob("dualsaver-*.tar.gz"))
    sh(python, "-m", "pip", "install", "-q", wheel)
    return {"venv": venv, "wheel": wheel, "sdist": sdist, "work": where}


def test_the_wheel_alone_runs_help_and_version(built):
    dualsaver = built["venv"] / "bin" / "dualsaver"
    helped = sh(dualsaver, "--help", cwd=built["work"])
    for command in ("dev", "seed", "demo", "backfill", "check", "repair", "phase", "status"):
        assert command in helped.stdout
    version = sh(dualsaver, "--version", cwd=built["work"]).stdout.strip()
    assert version.startswith("dualsaver ")
    # installed alone: no extra came with it
    missing = sh(built["venv"] / "bin" / "python", "-c", "import langgraph.checkpoint.sqlite", check=False)
    assert missing.returncode != 0
    where = sh(built["venv"] / "bin" / "python", "-c", "import dualsaver; print(dualsaver.__file__)",
               cwd=built["work"]).stdout
    assert where.startswith(str(built["venv"]))  # the installed wheel, not this tree


def test_without_extras_each_command_names_the_extra_it_needs(built):
    dualsaver, work = built["venv"] / "bin" / "dualsaver", built["work"]
    demo = sh(dualsaver, "demo", "--dir", work / "demo", cwd=work, check=False)
    assert demo.returncode == 2 and "Traceback" not in demo.stderr
    assert "pip install 'dualsaver[" in demo.stderr and "dualsaver[demo]" in demo.stderr
    source = work / "old.sqlite"
    sqlite3.connect(source).execute("CREATE TABLE IF NOT EXISTS checkpoints (x)").connection.close()
    backfill = sh(dualsaver, "backfill", "--old", f"sqlite:///{source}", "--new", "memory://", cwd=work, check=False)
    assert backfill.returncode == 2 and "Traceback" not in backfill.stderr
    assert "pip install 'dualsaver[sqlite]'" in backfill.stderr
    check = sh(dualsaver, "check", "--old", "memory://a", "--new", "postgresql://u@127.0.0.1:9/db", cwd=work,
               check=False)
    assert check.returncode == 2 and "pip install 'dualsaver[postgres]'" in check.stderr


def test_the_wheel_declares_its_license_types_and_urls(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "dualsaver/py.typed" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata and "Classifier: Typing :: Typed" in metadata
    assert "Project-URL: Source, " in metadata


def test_the_sdist_carries_what_its_tests_read(built):
    with tarfile.open(built["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("LICENSE", "config/k8s/backfill-job.yaml", "config/k8s/README.md", "config/dualsaver.toml",
                   "docs/architecture.md", "docker-compose.yml", "tests/conftest.py", "dualsaver/py.typed"):
        assert needed in names, needed
