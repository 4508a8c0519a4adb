"""`dualsaver check` and `dualsaver repair` on the command line: exit codes, reports, secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest

from dualsaver.cli import main
from dualsaver.control.journal import Journal, JournalEntry
from dualsaver.stores import open_saver
from tests import check_support as cs


def sqlite_url(path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def pair(pg_url, sqlite_path):
    """(old URL, new URL): SQLite and PostgreSQL holding the same threads."""
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url) as new:
        cs.populate(old, ["t-a", "t-b"])
        cs.clone(old, new)
    return sqlite_url(sqlite_path), pg_url


def _password(url: str) -> str:
    return urlsplit(url).password or ""


def test_clean_pair_exits_0_and_writes_every_report(pair, tmp_path, capsys):
    old, new = pair
    out = tmp_path / "out"
    code = main([
        "check", "--old", old, "--new", new, "--report", str(out / "r.json"),
        "--html", str(out / "r.html"), "--markdown", str(out / "r.md"), "--workers", "2",
    ])
    captured = capsys.readouterr()
    assert code == 0
    assert "Safe to switch reads: yes" in captured.out
    assert "check:" in captured.err  # progress goes to stderr
    data = json.loads((out / "r.json").read_text())
    assert data["clean"] is True and data["divergences"] == []
    assert data["summary"]["threads_compared"] == 2
    assert "Safe to switch reads: yes" in (out / "r.html").read_text()
    assert "Safe to switch reads: yes" in (out / "r.md").read_text()
    everything = captured.out + captured.err + "".join(p.read_text() for p in out.iterdir())
    assert _password(new) not in everything
    assert "***" in data["summary"]["stores"]["new"]


def test_divergent_pair_exits_1_then_repair_makes_it_clean(pair, tmp_path, capsys):
    old, new = pair
    with open_saver(new) as saver:
        cs.rewrite_thread(saver, "t-b", lambda rows: [cs.with_metadata(rows[0]), *rows[3:]])
    report = tmp_path / "r.json"
    assert main(["check", "--old", old, "--new", new, "--report", str(report), "-q"]) == 1
    data = json.loads(report.read_text())
    assert data["clean"] is False
    assert {d["kind"] for d in data["divergences"]} == {"metadata_mismatch", "missing_in_new"}
    assert {d["thread_id"] for d in data["divergences"]} == {"t-b"}

    # a dry run changes nothing
    assert main(["repair", "--old", old, "--new", new, "--report", str(report), "--dry-run"]) == 0
    assert main(["check", "--old", old, "--new", new, "-q"]) == 1
    # the repair replaces t-b on new, then re-checks it
    assert main(["repair", "--old", old, "--new", new, "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "replace t-b" in out and "re-check of 1 thread(s): clean" in out
    assert main(["check", "--old", old, "--new", new, "-q"]) == 0
    # repairing the primary under live traffic is refused without --force
    assert main(["repair", "--old", old, "--new", new, "--report", str(report), "--source", "new"]) == 2


def test_repair_from_the_journal(pair, tmp_path, capsys):
    old, new = pair
    with open_saver(new) as saver:
        cs.rewrite_thread(saver, "t-a", lambda rows: rows[:2])  # the secondary missed writes
    journal_path = tmp_path / "journal.sqlite"
    journal = Journal(journal_path)
    journal.record(JournalEntry("shadow-write", "new", "put", "t-a", "", "x", None, "StoreDown"))
    journal.record(JournalEntry("read-switch", "old", "put", "t-b", "", "y", None, "StoreDown"))
    journal.close()

    assert main(["repair", "--old", old, "--new", new, "--journal", str(journal_path)]) == 0
    assert "copy    t-a" in capsys.readouterr().out
    assert main(["check", "--old", old, "--new", new, "-q"]) == 0
    journal = Journal(journal_path)
    # t-a's entry is repaired; t-b's names the old store, which this repair did not write
    assert [(e.thread_id, e.store) for e in journal.pending()] == [("t-b", "old")]
    journal.close()


def test_cannot_check_exits_2_in_one_line_without_the_password(pg_url, sqlite_path, capsys):
    parts = urlsplit(pg_url)
    wrong = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":Wr0ngS3cret@"))
    wrong_url = urlunsplit(wrong)
    unreachable = urlunsplit(parts._replace(netloc="u:Wr0ngS3cret@127.0.0.1:1"))
    with open_saver(sqlite_url(sqlite_path)):
        pass
    cases = [
        ["--old", sqlite_url(sqlite_path), "--new", wrong_url],
        ["--old", sqlite_url(sqlite_path), "--new", unreachable],
        ["--old", "not-a-url", "--new", pg_url],
        ["--old", sqlite_url(sqlite_path.parent / "missing.sqlite"), "--new", pg_url],
    ]
    for args in cases:
        assert main(["check", *args, "-q"]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dualsaver check: cannot check:"), lines
        assert "Traceback" not in captured.err
        assert "Wr0ngS3cret" not in captured.err and parts.password not in captured.err


def test_the_command_line_entry_point(pair, tmp_path):
    old, new = pair
    done = subprocess.run(
        [sys.executable, "-m", "dualsaver.cli", "check", "--old", old, "--new", new, "-q"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "dualsaver.cli", "check", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert "examples:" in helped.stdout and "exit status" in helped.stdout


def _counts(url: str, threads) -> dict[str, int]:
    with open_saver(url) as saver:
        return {t: len(cs.items(saver, t)) for t in threads}


def test_in_read_switch_a_report_repair_never_deletes_what_only_old_holds(pair, tmp_path, capsys, monkeypatch):
    """From read-switch on new is the source, but a thread new lacks is answered from old
    (the fallback), and rows only old holds may be what new lost. Deleting them from old, as
    the repair of the check's report did, lost the conversation everywhere. They are named
    for attention instead, with the command that copies them into new."""
    old, new = pair
    monkeypatch.setenv("DUALSAVER_PHASE", "read-switch")
    with open_saver(new) as saver:
        saver.delete_thread("t-a")  # new lost t-a (or never had it): read-switch serves it from old
        cs.rewrite_thread(saver, "t-b", lambda r: cs.drop(r, 1))  # and the newest rows of t-b
    report = tmp_path / "r.json"
    assert main(["check", "--old", old, "--new", new, "--report", str(report), "-q"]) == 1
    before = _counts(old, ("t-a", "t-b"))

    assert main(["repair", "--old", old, "--new", new, "--report", str(report)]) == 1  # still divergent, said why
    out = capsys.readouterr().out
    assert "needs attention: t-a" in out and "dualsaver backfill --thread t-a" in out
    assert _counts(old, ("t-a", "t-b")) == before  # nothing deleted from old

    assert main(["backfill", "--old", old, "--new", new, "--thread", "t-a", "--thread", "t-b", "--no-progress"]) == 0
    assert main(["check", "--old", old, "--new", new, "-q"]) == 0


def test_a_report_is_repaired_in_the_phase_it_was_made_in(pair, tmp_path, capsys, monkeypatch):
    """A check made in read-switch (new the primary) read with the phase unset here (the
    default, shadow-write: old the primary) would copy from old and delete from new what only
    new holds: the writes old missed. Refused, naming both phases' primaries."""
    old, new = pair
    with open_saver(old) as saver:
        cs.rewrite_thread(saver, "t-b", lambda r: cs.drop(r, 1))  # old missed t-b's newest rows
    report = tmp_path / "r.json"
    monkeypatch.setenv("DUALSAVER_PHASE", "read-switch")
    assert main(["check", "--old", old, "--new", new, "--report", str(report), "-q"]) == 1
    before = _counts(new, ("t-b",))

    monkeypatch.delenv("DUALSAVER_PHASE")
    assert main(["repair", "--old", old, "--new", new, "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert "made while new was the primary" in err and "--phase" in err, err
    assert _counts(new, ("t-b",)) == before  # nothing deleted from new

    assert main(["repair", "--old", old, "--new", new, "--report", str(report), "--phase", "read-switch"]) == 0
    assert main(["check", "--old", old, "--new", new, "-q"]) == 0
