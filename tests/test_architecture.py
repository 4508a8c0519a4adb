"""The shape of the code, checked: the layering contracts, one driver that behaves the same
sync and async, one error tree, one canonical ladder, and the public API as documented."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import importlib
import inspect
import pkgutil
import subprocess
import sys
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, NamedTuple

from hypothesis import given
from hypothesis import strategies as st
from langgraph.checkpoint.memory import InMemorySaver

import dualsaver
from dualsaver import sansio
from dualsaver.checker.canonical import canonical_json, digest
from dualsaver.errors import DualSaverError, describe_error
from dualsaver.sansio import END, AsyncTargets, Call, Emit, Next, Targets

from .backfill_support import run_threads

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    """pyproject.toml's import-linter contracts: layers, no cycles, private modules private."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_the_public_api_is_callable_as_documented(tmp_path: Path) -> None:
    old, new = InMemorySaver(), InMemorySaver()
    run_threads(old, ["a", "b"], turns=1)
    result = dualsaver.backfill(old, new, state_path=tmp_path / "progress.sqlite")
    assert result.threads == 2 and not result.failed
    report = dualsaver.check(old, new)
    assert report.clean and report.summary["threads_compared"] == 2
    new.delete_thread("a")
    report = dualsaver.check(old, new)
    assert not report.clean
    repaired = dualsaver.repair(old, new, repairs=dualsaver.repairs_from_report(report))
    assert repaired.ok and dualsaver.check(old, new).clean
    for name in ("abackfill", "acheck", "arepair", "aopen_saver"):
        assert inspect.iscoroutinefunction(getattr(dualsaver, name)) or inspect.isasyncgenfunction(
            getattr(getattr(dualsaver, name), "__wrapped__", None)
        )


def _modules() -> list[Any]:
    names = [m.name for m in pkgutil.walk_packages(dualsaver.__path__, "dualsaver.") if ".cli.__main__" not in m.name]
    return [importlib.import_module(n) for n in names]


def test_every_exception_dualsaver_defines_is_in_the_one_tree() -> None:
    defined = {
        obj
        for module in _modules()
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__.startswith("dualsaver")
    }
    assert len(defined) >= 14
    assert [c.__name__ for c in defined if not issubclass(c, DualSaverError)] == []
    tree = Path(dualsaver.errors.__file__).read_text()
    drawn = [c.__name__ for c in defined if c.__module__ == "dualsaver.errors" and c.__name__ != "DualSaverError"]
    assert [name for name in drawn if f"── {name} (" not in tree] == []  # every class drawn in the docstring


def test_error_text_is_one_bounded_line_without_passwords() -> None:
    exc = ConnectionError("connect to postgresql://app:s3cret@db:5432/app failed\npassword=hunter2 " + "x" * 500)
    text = describe_error(exc, secrets=["tok-123"])
    assert text.startswith("ConnectionError: ") and "\n" not in text
    assert "s3cret" not in text and "hunter2" not in text and len(text) <= 220
    assert describe_error(ValueError("tok-123 leaked"), secrets=["tok-123"]) == "ValueError: *** leaked"


# --------------------------------------------------------------------------- one driver


class Box:
    """A target with each method in both forms: `get`/`aget`, `items`/`aitems`."""

    def get(self, value: Any) -> Any:
        if isinstance(value, Exception):
            raise value
        return value

    async def aget(self, value: Any) -> Any:
        await asyncio.sleep(0)
        return self.get(value)

    def items(self, values: list[Any]) -> Any:
        for v in values:
            yield self.get(v)

    async def aitems(self, values: list[Any]) -> Any:
        for v in values:
            await asyncio.sleep(0)
            yield self.get(v)


step = st.one_of(
    st.tuples(st.just("call"), st.one_of(st.integers(), st.builds(KeyError, st.integers()))),
    st.tuples(st.just("emit"), st.lists(st.integers(), max_size=3)),
    st.tuples(st.just("stream"), st.lists(st.one_of(st.integers(), st.builds(KeyError, st.integers())), max_size=4)),
)


def _plan(script: list[tuple[str, Any]], trace: list[Any]) -> sansio.Plan[int]:
    for kind, value in script:
        try:
            if kind == "call":
                trace.append(("got", (yield Call("box", "get", (value,)))))
            elif kind == "emit":
                yield Emit(value)
            else:
                items = yield Call("box", "items", (value,), stream=True)
                while (item := (yield Next(items))) is not END:
                    trace.append(("item", item))
        except KeyError as exc:  # a target's failure arrives where the plan asked
            trace.append(("failed", exc.args))
    return len(trace)


@given(st.lists(step, max_size=8))
def test_the_sync_and_async_drivers_do_the_same(script: list[tuple[str, Any]]) -> None:
    sync_trace: list[Any] = []
    sync_out = list(sansio.stream(_plan(script, sync_trace), Targets(box=Box())))

    async def main() -> list[Any]:
        return [x async for x in sansio.astream(_plan(script, async_trace), AsyncTargets(box=Box()))]

    async_trace: list[Any] = []
    async_out = asyncio.run(main())
    assert (sync_out, sync_trace) == (async_out, async_trace)
    assert sync_out == [x for kind, v in script if kind == "emit" for x in v]
    without_emits = [s for s in script if s[0] != "emit"]
    assert sansio.run(_plan(without_emits, []), Targets(box=Box())) == len(sync_trace)


# --------------------------------------------------------------------------- one ladder


class Colour(enum.Enum):
    RED = 1
    BLUE = "blue"


class Pair(NamedTuple):
    a: Any
    b: Any


@dataclasses.dataclass
class Note:
    text: Any


class Plain:
    def __init__(self, value: Any) -> None:
        self.value = value


leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=4),
    st.binary(max_size=4), st.sampled_from(list(Colour)), st.dates(), st.timedeltas(),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.lists(inner, max_size=3).map(deque),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
        st.dictionaries(st.text(max_size=3), inner, max_size=3).map(OrderedDict),
        st.frozensets(st.integers(0, 9), max_size=3),
        st.builds(Pair, inner, inner),
        st.builds(Note, inner),
        st.builds(Plain, inner),
    ),
    max_leaves=8,
)


@given(values, values)
def test_digests_and_canonical_forms_agree(a: Any, b: Any) -> None:
    """Equal canonical forms (what a report shows) if and only if equal digests (what the
    check compares): both come from one ladder."""
    assert (canonical_json(a) == canonical_json(b)) == (digest(a) == digest(b))
    assert digest(a) == digest(a)


def test_the_ladder_tells_types_apart_and_keeps_content() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    assert digest(when) != digest(when.isoformat())
    assert digest(Pair(1, 2)) != digest([1, 2])
    assert digest(Plain(1)) != digest(Plain(2))
    assert digest(OrderedDict(a=1)) == digest({"a": 1})
