"""Kubernetes does not run here; the manifests in config/k8s/ are parsed and checked against
the code (flags, settings keys, variable names), and then every pod's command of the
sharded backfill and check Jobs is run for real, each index in a directory of its own, with
the ConfigMap's settings file pointed at the test's servers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dualsaver.cli import build_parser
from dualsaver.control import settings as settings_module
from dualsaver.stores import open_saver
from tests.backfill_support import run_threads
from tests.ops_support import cli_env, run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
DOCS = [doc for path in sorted((REPO / "config" / "k8s").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]
KINDS = {(d["kind"], d["metadata"]["name"]): d for d in DOCS}
JOBS = [d for d in DOCS if d["kind"] == "Job"]
PODS = [d["spec"]["template"]["spec"] for d in DOCS if d["kind"] in ("Job", "Deployment")]
SETTINGS_TEXT = KINDS[("ConfigMap", "dualsaver-settings")]["data"]["dualsaver.toml"]
SECRET = KINDS[("Secret", "dualsaver-urls")]["stringData"]
INDEX = "$(JOB_COMPLETION_INDEX)"
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _container(job: dict) -> dict:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def _shards(job: dict) -> int:
    args = _container(job)["args"]
    index, count = args[args.index("--shard") + 1].split("/")
    assert index == INDEX
    return int(count)


def _args(job: dict, index: int, reports: Path | None = None) -> list[str]:
    args = [a.replace(INDEX, str(index)) for a in _container(job)["args"]]
    return [a.replace("/reports", str(reports)) if reports else a for a in args]


@pytest.mark.parametrize("job", JOBS, ids=lambda j: j["metadata"]["name"])
def test_jobs_are_indexed_one_pod_per_shard(job):
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == _shards(job) and spec["parallelism"] <= spec["completions"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # needed by backoffLimitPerIndex
    assert spec["backoffLimitPerIndex"] >= 1
    for rule in spec.get("podFailurePolicy", {}).get("rules", []):
        assert rule["onExitCodes"]["containerName"] == _container(job)["name"]
    assert _container(job)["command"] == ["dualsaver"]


@pytest.mark.parametrize("job", JOBS, ids=lambda j: j["metadata"]["name"])
def test_every_pods_arguments_parse_and_name_no_store(job):
    container = _container(job)
    defined = {e["name"] for e in container.get("env", [])} | {"JOB_COMPLETION_INDEX"}
    for arg in container["args"]:
        assert set(REFERENCE.findall(arg)) <= defined, arg
        assert "://" not in arg  # URLs (and their passwords) come from the settings file
    for index in range(job["spec"]["completions"]):
        args = build_parser().parse_args(_args(job, index))
        assert args.shard == (index, job["spec"]["completions"])


@pytest.mark.parametrize("pod", PODS, ids=lambda p: p["containers"][0]["name"])
def test_every_pod_reads_the_settings_and_the_passwords(pod):
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    settings_dir, file_name = env[settings_module.ENV_SETTINGS].rsplit("/", 1)
    config_map = KINDS[("ConfigMap", mounts[settings_dir]["configMap"]["name"])]
    assert file_name in config_map["data"]
    assert [s["secretRef"]["name"] for s in container["envFrom"]] == ["dualsaver-urls"]
    for volume in volumes.values():
        if claim := volume.get("persistentVolumeClaim"):
            assert ("PersistentVolumeClaim", claim["claimName"]) in KINDS


def test_the_settings_and_the_secret_together_name_everything(tmp_path):
    # The URLs (passwords inside) come only from the Secret, as the variables the code reads.
    assert set(SECRET) == {settings_module.ENV_OLD_URL, settings_module.ENV_NEW_URL, settings_module.ENV_CONTROL}
    assert "://" not in SETTINGS_TEXT
    (tmp_path / "dualsaver.toml").write_text(SETTINGS_TEXT)
    loaded = settings_module.current(tmp_path / "dualsaver.toml", environ=SECRET)
    assert (loaded.old_url, loaded.new_url, loaded.record_url) == (
        SECRET["DUALSAVER_OLD_URL"], SECRET["DUALSAVER_NEW_URL"], SECRET["DUALSAVER_CONTROL_URL"])
    assert loaded.phase is None  # every pod follows the phase record
    present = {f"{s}.{k}" for s, table in tomllib.loads(SETTINGS_TEXT).items() for k in table}
    assert settings_module.keys_read() - present == {
        "migration.phase", "stores.old", "stores.new", "control.url", "tiered.durable", "tiered.hot",
        "stores.store_old", "stores.store_new", "store.index",  # the long-term store: optional here
    }


@pytest.mark.slow
def test_the_jobs_commands_migrate_for_real(tmp_path, pg_url_factory, redis_url):
    old_url, control_url = pg_url_factory(), pg_url_factory()
    with open_saver(old_url) as old:
        run_threads(old, [f"t{i:02d}" for i in range(16)], turns=2)
    # The ConfigMap's file as it is; the Secret's variables naming this test's servers.
    (tmp_path / "dualsaver.toml").write_text(SETTINGS_TEXT)
    urls = {"DUALSAVER_OLD_URL": old_url, "DUALSAVER_NEW_URL": redis_url, "DUALSAVER_CONTROL_URL": control_url}
    assert set(urls) == set(SECRET)
    env = cli_env(DUALSAVER_SETTINGS=str(tmp_path / "dualsaver.toml"), **urls)
    reports = tmp_path / "reports"
    reports.mkdir()

    def run_job(name: str) -> list[int]:
        job = KINDS[("Job", name)]
        pods = []
        for index in range(job["spec"]["completions"]):
            pod_dir = tmp_path / f"{name}-{index}"
            pod_dir.mkdir()
            pods.append(subprocess.Popen([sys.executable, "-m", "dualsaver.cli", *_args(job, index, reports)],
                                         cwd=pod_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        codes = [p.wait(timeout=300) for p in pods]
        assert codes == [0] * len(pods), [p.stderr.read().decode()[-2000:] for p in pods]
        return codes

    for phase in ("shadow-write", "backfill"):
        assert run_cli("phase", "set", phase, "--reason", "test", env=env, cwd=tmp_path).returncode == 0
    run_job("dualsaver-backfill")
    run_job("dualsaver-check")
    assert sorted(p.name for p in reports.iterdir()) == [f"check-{i}.{ext}" for i in range(4) for ext in ("json", "md")]
    switched = run_cli("phase", "set", "read-switch", "--reason", "sharded check clean", env=env, cwd=tmp_path)
    assert switched.returncode == 0, switched.stderr
