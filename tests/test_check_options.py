"""`check` and `acheck` take one set of keywords (`CheckOptions`, defaults in one place): the
same options mean the same run in both shells, and a misspelt one is refused by both."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from dualsaver import acheck, check
from dualsaver.checker._run import _DEFAULTS, CheckOptions
from dualsaver.stores import shard_of
from tests.ops_support import put_marker


def _pair() -> tuple[InMemorySaver, InMemorySaver]:
    old, new = InMemorySaver(), InMemorySaver()
    for i in range(8):
        put_marker(old, f"t{i}", "old")  # every thread missing in new
    return old, new


def test_every_option_has_its_default_in_one_place():
    assert set(_DEFAULTS) == set(CheckOptions.__annotations__)


async def test_the_same_options_mean_the_same_run_in_both_shells():
    old, new = _pair()
    options: CheckOptions = {"shard": (1, 2), "workers": 2, "recheck": False, "old_name": "left", "new_name": "right"}
    sync, async_ = check(old, new, **options), await acheck(old, new, **options)
    threads = {d.thread_id for d in sync.divergences}
    assert threads == {d.thread_id for d in async_.divergences}
    assert threads == {f"t{i}" for i in range(8) if shard_of(f"t{i}", 2) == 1}
    assert sync.summary["stores"] == async_.summary["stores"] == {"old": "left", "new": "right"}


async def test_a_misspelt_option_is_refused_by_both_shells():
    old, new = _pair()
    with pytest.raises(TypeError, match="worker"):
        check(old, new, worker=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="worker"):
        await acheck(old, new, worker=2)  # type: ignore[call-arg]
