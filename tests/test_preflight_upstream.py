"""The rules stay honest: each rule's example is run against the bare target saver (no
dualsaver in the way), and the test fails the day the saver holds it faithfully, so the rule
can be dropped. Sizes (512 MB, 1 GB) are documented limits, not re-measured here."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from dualsaver.preflight.rules import RULES
from dualsaver.stores import open_saver

from .preflight_support import nested

NOT_MEASURED = {"langgraph-redis.size", "redis.size", "postgres.size"}


def cfg(thread_id: str, ns: str = "") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}


def put(saver: Any, thread_id: str, ns: str = "", *, marker: str = "", metadata: dict | None = None,
        values: dict | None = None, checkpoint_id: str | None = None) -> str:
    checkpoint = empty_checkpoint()
    if checkpoint_id:
        checkpoint["id"] = checkpoint_id
    checkpoint["channel_values"] = dict(values or {})
    checkpoint["channel_versions"] = dict.fromkeys(checkpoint["channel_values"], "1")
    meta = {"source": "input", "step": 1, "marker": marker or thread_id, **(metadata or {})}
    saver.put(cfg(thread_id, ns), checkpoint, meta, checkpoint["channel_versions"])
    return checkpoint["id"]


def markers(saver: Any, thread_id: str, ns: str | None = None) -> list[str]:
    config = cfg(thread_id, ns) if ns is not None else {"configurable": {"thread_id": thread_id}}
    return [c.metadata.get("marker") for c in saver.list(config)]


def faithful(test: Callable[[], bool]) -> bool:
    """The saver holds the example faithfully: no error, and everything reads back as written."""
    try:
        return test()
    except Exception:
        return False


def threads_apart(saver: Any, *ids: str) -> bool:
    """Each id is its own thread: listed alone, and deleting one leaves the others."""
    for thread_id in ids:
        put(saver, thread_id)
    if any(markers(saver, t) != [t] for t in ids):
        return False
    saver.delete_thread(ids[0])
    return markers(saver, ids[0]) == [] and all(markers(saver, t) == [t] for t in ids[1:])


def round_trips(saver: Any, *, metadata: dict | None = None, values: dict | None = None) -> bool:
    put(saver, "value", metadata=metadata, values=values)
    got = saver.get_tuple(cfg("value"))
    same_meta = all(_same(got.metadata.get(k), v) for k, v in (metadata or {}).items())
    return same_meta and all(_same(got.checkpoint["channel_values"].get(k), v) for k, v in (values or {}).items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    return a == b


def keys_apart(saver: Any) -> bool:
    checkpoint_id = put(saver, "a", "b:__empty__", marker="first")
    put(saver, "a:b", "", marker="second", checkpoint_id=checkpoint_id)
    return markers(saver, "a", "b:__empty__") == ["first"] and markers(saver, "a:b", "") == ["second"]


def namespaces_apart(saver: Any) -> bool:
    put(saver, "q", "", marker="root")
    put(saver, "q", "__empty__", marker="named")
    return markers(saver, "q", "") == ["root"] and markers(saver, "q", "__empty__") == ["named"]


def namespace_holds(saver: Any, ns: str) -> bool:
    put(saver, "in-ns", ns, marker="named")
    return markers(saver, "in-ns", ns) == ["named"]


def checkpoint_id_holds(saver: Any, checkpoint_id: str) -> bool:
    put(saver, "by-id", checkpoint_id=checkpoint_id)
    got = saver.get_tuple(cfg("by-id"))
    return got is not None and got.config["configurable"]["checkpoint_id"] == checkpoint_id


def write_channel_holds(saver: Any, channel: str) -> bool:
    put(saver, "writes")
    saved = saver.get_tuple(cfg("writes")).config
    saver.put_writes(saved, [(channel, 1)], "task-1")
    return [w[1] for w in saver.get_tuple(saved).pending_writes] == [channel]


def any_holds(*checks: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """One rule, several fields: the saver holds the example if it holds any of them (so the
    test fails as soon as upstream fixes one, and the rule's text can be narrowed)."""
    return lambda saver: any(faithful(lambda check=check: check(saver)) for check in checks)


SURROGATE = "a\ud800b"  # a lone surrogate: UTF-8 cannot encode it
EXAMPLES: dict[str, Callable[[Any], bool]] = {
    "langgraph-redis.case-fold": lambda s: threads_apart(s, "Alice", "alice"),
    "langgraph-redis.space-fold": lambda s: threads_apart(s, "a\nb", "a b"),
    "langgraph-redis.search-syntax": lambda s: all(threads_apart(s, t) for t in ("_", "a,b", "a`b", "a\tb", " a")),
    "langgraph-redis.key-join": keys_apart,
    "langgraph-redis.empty-id": lambda s: threads_apart(s, "", "00000000-0000-0000-0000-000000000000"),
    "langgraph-redis.empty-ns": namespaces_apart,
    "langgraph-redis.nul-id": lambda s: threads_apart(s, "a\x00b"),
    "langgraph-redis.json-nul": lambda s: round_trips(s, metadata={"note": {"text": "a\x00b"}}),
    "langgraph-redis.json-non-finite": lambda s: round_trips(s, metadata={"score": float("nan")}),
    "langgraph-redis.big-int": lambda s: round_trips(s, metadata={"n": 2**64}),
    "langgraph-redis.deep-nesting": lambda s: round_trips(s, values={"d": nested(125)}),
    "redis.big-int": lambda s: round_trips(s, metadata={"n": 2**64}),
    "redis.deep-nesting": lambda s: round_trips(s, values={"d": nested(256)}),
    "postgres.nul": lambda s: threads_apart(s, "a\x00b"),
    "postgres.json-non-finite": lambda s: round_trips(s, metadata={"score": float("inf")}),
    "postgres.surrogate": any_holds(
        lambda s: threads_apart(s, SURROGATE), lambda s: namespace_holds(s, SURROGATE),
        lambda s: checkpoint_id_holds(s, SURROGATE), lambda s: write_channel_holds(s, SURROGATE),
        lambda s: round_trips(s, metadata={"note": {"text": SURROGATE}}),
        lambda s: round_trips(s, metadata={SURROGATE: 1}), lambda s: round_trips(s, values={"v": SURROGATE}),
    ),
    "redis.surrogate-id": any_holds(
        lambda s: threads_apart(s, SURROGATE), lambda s: namespace_holds(s, SURROGATE),
        lambda s: checkpoint_id_holds(s, SURROGATE), lambda s: write_channel_holds(s, SURROGATE),
    ),
    "redis.surrogate": lambda s: round_trips(s, metadata={"note": {"text": SURROGATE}}),
    "sqlite.surrogate": any_holds(
        lambda s: round_trips(s, metadata={"note": {"text": SURROGATE}}),
        lambda s: round_trips(s, metadata={SURROGATE: 1}),
    ),
    "langgraph-redis.surrogate": any_holds(
        lambda s: threads_apart(s, SURROGATE), lambda s: namespace_holds(s, SURROGATE),
        lambda s: checkpoint_id_holds(s, SURROGATE), lambda s: write_channel_holds(s, SURROGATE),
        lambda s: round_trips(s, metadata={"note": {"text": SURROGATE}}),
        lambda s: round_trips(s, metadata={SURROGATE: 1}),
    ),
}
URL_FIXTURE = {"langgraph-redis": "langgraph_redis_url", "redis": "redis_url", "postgres": "pg_url",
               "sqlite": "sqlite_url"}


@pytest.fixture
def sqlite_url(sqlite_path) -> str:
    """A fresh file for the bare `SqliteSaver`."""
    return f"sqlite:///{sqlite_path}"


def test_every_rule_has_an_example_or_is_a_documented_limit() -> None:
    assert set(EXAMPLES) | NOT_MEASURED == {r.id for r in RULES}


@pytest.mark.parametrize("rule", sorted(EXAMPLES))
def test_the_bare_saver_cannot_hold_the_example(rule: str, request: pytest.FixtureRequest) -> None:
    kind = rule.split(".")[0]
    url = request.getfixturevalue(URL_FIXTURE[kind])
    with open_saver(url) as saver:
        assert not faithful(lambda: EXAMPLES[rule](saver)), f"{rule}: the bare saver now holds its example; drop it"


@pytest.mark.parametrize("kind", sorted(URL_FIXTURE))
def test_the_harness_sees_a_faithful_saver(kind: str, request: pytest.FixtureRequest) -> None:
    """Ordinary ids and values pass the same checks, so a failure above is the rule's, not the harness's."""
    with open_saver(request.getfixturevalue(URL_FIXTURE[kind])) as saver:
        assert threads_apart(saver, "user-1", "user-2")
        assert round_trips(saver, metadata={"score": 0.5, "n": 2**63}, values={"d": nested(3)})
        assert namespace_holds(saver, "ns-é") and checkpoint_id_holds(saver, "1f0-é")
        assert write_channel_holds(saver, "chan-é") and round_trips(saver, metadata={"é": "😀"})
