"""Serializer names: "default" and "encrypted" only. A typo is refused with the names it could
have been, before a store is opened or a process started, never read as the default."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dualsaver import abackfill, acheck, backfill, check
from dualsaver.cli import main
from dualsaver.stores import open_saver
from dualsaver.stores.serde import SERDES, serde_from_name

UNKNOWN = "unknown serializer 'defualt' \\(known: default, encrypted\\)"


def test_the_known_names_and_a_typo(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SERDES == ("default", "encrypted") and serde_from_name("default") is None
    monkeypatch.setenv("LANGGRAPH_AES_KEY", "0123456789abcdef")
    assert type(serde_from_name("encrypted")).__name__ == "EncryptedSerializer"
    for typo in ("defualt", "", "Default", "encrypt"):
        with pytest.raises(ValueError, match="known: default, encrypted"):
            serde_from_name(typo)


@pytest.fixture
def urls(tmp_path: Path) -> tuple[str, str]:
    pair = (f"sqlite:///{tmp_path / 'old.sqlite'}", f"sqlite:///{tmp_path / 'new.sqlite'}")
    for url in pair:
        with open_saver(url):
            pass
    return pair


def test_check_and_backfill_refuse_it_before_any_process_starts(urls: tuple[str, str], tmp_path: Path) -> None:
    old, new = urls
    with pytest.raises(ValueError, match=UNKNOWN):
        check(old, new, processes=2, serdes=("defualt", "default"))
    with pytest.raises(ValueError, match=UNKNOWN):
        backfill(old, new, processes=2, serdes=("default", "defualt"), state_path=tmp_path / "p.sqlite")
    with pytest.raises(ValueError, match=UNKNOWN):
        asyncio.run(acheck(old, new, processes=2, serdes=("defualt", "default")))
    with pytest.raises(ValueError, match=UNKNOWN):
        asyncio.run(abackfill(old, new, processes=2, serdes=("defualt", "default"), state_path=tmp_path / "p.sqlite"))
    assert not (tmp_path / "p.sqlite").exists(), "nothing was started"


def test_in_one_process_too(urls: tuple[str, str], tmp_path: Path) -> None:
    """Without processes the savers are given and `serdes` unused; a typo is still a typo."""
    with open_saver(urls[0]) as old, open_saver(urls[1]) as new:
        with pytest.raises(ValueError, match=UNKNOWN):
            check(old, new, serdes=("defualt", "default"))
        with pytest.raises(ValueError, match=UNKNOWN):
            backfill(old, new, serdes=("defualt", "default"), state_path=tmp_path / "p.sqlite")


@pytest.mark.parametrize("command", ["check", "repair", "backfill", "preflight"])
def test_the_cli_gives_argparses_usual_error(command: str, urls: tuple[str, str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--old", urls[0], "--new", urls[1], "--old-serde", "defualt"])
    assert exited.value.code == 2
    assert "invalid choice: 'defualt' (choose from" in capsys.readouterr().err
