"""The CLI on the long-term store: backfill, check and repair with --store-old/--store-new,
alone and beside the checkpoints' pair; the read-switch guard asks for the store's evidence."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from dualsaver.items import check_items, open_item_store

REPO = Path(__file__).resolve().parents[1]
SETTINGS = """
[migration]
status_file = "{status}"

[stores]
store_old = "sqlite:///{old}"
store_new = "{new}"

[store.index]
dims = 8
fields = ["text"]
embed = "python:tests.items_support:embed"
"""


def dualsaver(*args, env=None, cwd=None):
    import os

    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "dualsaver.cli", *args], capture_output=True, text=True, env=full,
                          cwd=cwd or REPO, timeout=300)


def _fill(url):
    from tests.items_support import INDEX, plant

    with open_item_store(url, index=INDEX) as store:
        plant(store)


def test_backfill_check_and_repair_of_the_store_alone_end_to_end(tmp_path, pg_url):
    old = tmp_path / "store.sqlite"
    settings = tmp_path / "dualsaver.toml"
    settings.write_text(SETTINGS.format(status=tmp_path / "status.json", old=old, new=pg_url))
    _fill(f"sqlite:///{old}")
    base = ["--config", str(settings)]
    state = ["--state", str(tmp_path / "progress.sqlite")]

    done = dualsaver("backfill", *base, *state, "--json", "--no-progress")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["store"]
    assert (result["items"], result["bad"], result["exact"], result["vectors"]) == (40, 0, True, "copied")
    assert "store: copied 40 item(s)" in done.stderr
    again = dualsaver("backfill", *base, *state, "--json", "--no-progress")
    assert json.loads(again.stdout)["store"]["items"] == 0

    clean = dualsaver("check", *base, "--report", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "Safe to switch reads (the store): yes" in clean.stdout

    from tests.items_support import INDEX

    with open_item_store(pg_url, index=INDEX) as new:  # damage the copy
        new.delete(("users", "u1"), "k001")
        new.put(("users", "u2"), "k002", {"text": "changed"})
    dirty = dualsaver("check", *base, "--report", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"))
    assert dirty.returncode == 1
    kinds = {d["kind"] for d in json.loads((tmp_path / "r.json").read_text())["divergences"]}
    assert kinds >= {"item_missing_in_new", "item_value_mismatch"}
    assert "store item missing in new" in (tmp_path / "r.md").read_text()

    status = dualsaver("status", *base, "--json")
    doc = json.loads(status.stdout)
    assert (doc["store_backfill"]["items"], doc["store_check"]["clean"]) == (0, False)  # the last run of each
    assert re.search(r"store check: \d+ DIVERGENCE\(S\)", dualsaver("status", *base).stdout)

    fixed = dualsaver("repair", *base, "--report", str(tmp_path / "r.json"))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "re-check of 2 item(s): clean" in fixed.stdout
    with open_item_store(f"sqlite:///{old}", index=INDEX) as o, open_item_store(pg_url, index=INDEX) as n:
        assert check_items(o, n).clean


def test_the_store_urls_come_from_the_command_line_and_the_environment(tmp_path):
    old, new = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    _fill(f"sqlite:///{old}")
    env = {"DUALSAVER_STORE_OLD_URL": f"sqlite:///{old}", "DUALSAVER_STATUS": str(tmp_path / "s.json")}
    done = dualsaver("backfill", "--store-new", f"sqlite:///{new}", "--state", str(tmp_path / "p.sqlite"),
                     "--no-progress", env=env)
    assert done.returncode == 0, done.stderr
    assert "store: copied 40 item(s)" in done.stderr
    assert "vectors none" in done.stderr  # no [store.index]: the stores hold no vectors here
    one = dualsaver("check", "--store-old", f"sqlite:///{old}", env={"DUALSAVER_STATUS": str(tmp_path / "s.json")})
    assert one.returncode == 2 and "both --store-old and --store-new" in one.stderr


def test_read_switch_needs_a_clean_store_check_when_a_store_pair_is_configured():
    from dualsaver.control.phase import Evidence, Phase, guard_transition
    from dualsaver.errors import TransitionError

    ready = {"backfill_at": 10.0, "backfill_ok": True, "check_at": 11.0, "check_clean": True}
    guard_transition(Phase.BACKFILL, Phase.READ_SWITCH, Evidence(**ready))
    for store, words in [
        ({}, "no complete backfill"),
        ({"store_backfill_at": 10.0, "store_backfill_ok": True}, "no check of the long-term store"),
        ({"store_backfill_at": 10.0, "store_backfill_ok": True, "store_check_at": 11.0,
          "store_check_divergences": 2}, "found 2 divergence"),
        # a clean check of items from before the fleet left shadow-write (DualStore wrote behind)
        ({"store_backfill_at": 10.0, "store_backfill_ok": True, "store_check_at": 10.6, "store_check_clean": True,
          "left_shadow_write_at": 10.8}, "since the fleet left shadow-write"),
        # ... or one started while a replica still reported shadow-write
        ({"store_backfill_at": 10.0, "store_backfill_ok": True, "store_check_at": 11.0, "store_check_clean": True,
          "store_check_writing_behind": "1 live replica(s) still reported shadow-write (r1)"},
         "when the last check of the long-term store started, 1 live replica(s) still reported shadow-write"),
    ]:
        try:
            guard_transition(Phase.BACKFILL, Phase.READ_SWITCH, Evidence(**{**ready, "store_required": True, **store}))
        except TransitionError as exc:
            assert words in str(exc)
        else:
            raise AssertionError(f"read-switch allowed with {store}")
    guard_transition(Phase.BACKFILL, Phase.READ_SWITCH, Evidence(
        **ready, store_required=True, store_backfill_at=10.0, store_backfill_ok=True, store_check_at=11.0,
        store_check_clean=True))


def test_in_read_switch_a_report_repair_never_deletes_an_item_only_old_holds(tmp_path):
    """From read-switch on the repair copies from new, but an item new lacks is answered from
    old by read-switch (and new may have lost it): the repair of the check's report deleted
    it from old, losing the memory everywhere. It is named for attention instead."""
    old, new = f"sqlite:///{tmp_path / 'a.sqlite'}", f"sqlite:///{tmp_path / 'b.sqlite'}"
    _fill(old)
    env = {"DUALSAVER_STORE_OLD_URL": old, "DUALSAVER_STORE_NEW_URL": new, "DUALSAVER_PHASE": "read-switch",
           "DUALSAVER_STATUS": str(tmp_path / "s.json")}
    assert dualsaver("backfill", "--state", str(tmp_path / "p.sqlite"), "--phase", "shadow-write", "--no-progress",
                     env=env).returncode == 0
    from tests.items_support import INDEX

    with open_item_store(new, index=INDEX) as store:
        store.delete(("users", "u1"), "k001")  # new lost it: read-switch answers it from old
        store.put(("users", "u2"), "k002", {"text": "changed in new"})
    assert dualsaver("check", "--report", str(tmp_path / "r.json"), env=env).returncode == 1

    done = dualsaver("repair", "--report", str(tmp_path / "r.json"), env=env)
    assert done.returncode == 1, done.stdout + done.stderr  # still divergent, and why
    assert "only old holds" in done.stdout and "dualsaver backfill --store-prefix users.u1" in done.stdout
    with open_item_store(old, index=INDEX) as store:
        assert store.get(("users", "u1"), "k001") is not None  # kept
        assert store.get(("users", "u2"), "k002").value == {"text": "changed in new"}  # new's value, copied
    assert dualsaver("backfill", "--state", str(tmp_path / "p2.sqlite"), "--store-prefix", "users.u1",
                     "--no-progress", env=env).returncode == 0
    assert dualsaver("check", env=env).returncode == 0
