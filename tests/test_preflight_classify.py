"""The id and value predicates behind the rules, over their state space (no server): ordinary
ids (UUIDs, slugs) are never flagged by any rule; each rule's predicate matches its examples;
folds collide exactly when the target would see one id; the value walk finds what it names."""

from __future__ import annotations

import string
import uuid
from pathlib import Path


from hypothesis import given
from hypothesis import strategies as st

from dualsaver.preflight import PreflightReport
from dualsaver.preflight import classify as c
from dualsaver.preflight._scan import PreflightRun
from dualsaver.preflight.rules import BY_ID, CLASSES, INT_MAX, INT_MIN, RULES, markdown_table, parse_classes
from dualsaver.stores.native import StoredCheckpoint

from .preflight_support import nested

uuids = st.uuids().map(str)
slugs = st.text(string.ascii_lowercase + string.digits + "-._", min_size=1, max_size=40).filter(lambda s: s != "_")
ordinary_ids = uuids | slugs


def id_rules(thread_ids: list[str], kind: str = "langgraph-redis") -> set[tuple[str, str]]:
    """(rule, thread id) for the id rules a scan would report over these threads."""
    run = PreflightRun(PreflightReport(kind))
    for t in thread_ids:
        run.see_id(t)
        run.check_thread_id(t)
    for t in thread_ids:
        run.see_id_again(t)
    run.finish_collisions()
    return {(f.rule, f.thread_id) for f in run.report.findings}


@given(st.lists(ordinary_ids, unique=True, max_size=30))
def test_ordinary_ids_are_never_flagged(thread_ids: list[str]) -> None:
    for kind in ("langgraph-redis", "postgres", "redis"):
        assert id_rules(thread_ids, kind) == set()


@given(ordinary_ids)
def test_ordinary_ids_are_their_own_folds(thread_id: str) -> None:
    assert c.case_fold(thread_id) == thread_id.lower() == thread_id
    assert c.space_fold(thread_id) == thread_id and not c.search_breaks(thread_id)


@given(st.text(string.ascii_letters, min_size=1, max_size=12))
def test_ascii_case_variants_collide_exactly_when_they_differ(word: str) -> None:
    variants = sorted({word, word.lower(), word.upper()})
    found = {t for rule, t in id_rules(variants) if rule == "langgraph-redis.case-fold"}
    assert found == (set(variants) if len(variants) > 1 else set())


@given(st.text(string.ascii_lowercase, min_size=1, max_size=5), st.sampled_from("\n\r\t\x0b\x0c"),
       st.text(string.ascii_lowercase, min_size=1, max_size=5))
def test_whitespace_variants_collide(left: str, space: str, right: str) -> None:
    pair = [f"{left}{space}{right}", f"{left} {right}"]
    assert {t for rule, t in id_rules(pair) if rule == "langgraph-redis.space-fold"} == set(pair)


@given(st.text(min_size=0, max_size=8), st.text(min_size=0, max_size=8))
def test_storage_keys_collide_only_through_a_colon_or_an_empty_stand_in(thread_id: str, ns: str) -> None:
    key = c.storage_key(thread_id, ns)
    for other_thread, other_ns in ((thread_id + ":x", ns), (thread_id, ns + ":x")):
        if (other_thread, other_ns) != (thread_id, ns) and c.storage_key(other_thread, other_ns) == key:
            assert c.may_join(thread_id, ns) or c.may_join(other_thread, other_ns)


@given(st.text(min_size=1, max_size=6), st.text(min_size=1, max_size=6), st.text(min_size=0, max_size=6))
def test_a_joined_pair_is_always_remembered(a: str, b: str, ns: str) -> None:
    """(a, b:ns) and (a:b, ns) share a key: both are pairs `may_join` keeps."""
    assert c.storage_key(a, f"{b}:{c.storage_ns(ns)}") == c.storage_key(f"{a}:{b}", ns)
    assert c.may_join(a, f"{b}:{ns}") and c.may_join(f"{a}:{b}", ns)


@given(st.integers())
def test_integers_outside_64_bits_are_found(n: int) -> None:
    facts = c.value_facts({"deep": [{"n": n}]})
    assert (facts.big_int == "$.deep[0].n") == (not INT_MIN <= n <= INT_MAX)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_non_finite_floats_are_found(x: float) -> None:
    assert (c.value_facts([1, {"x": x}]).non_finite == "$[1].x") == (x != x or x in (float("inf"), float("-inf")))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


any_text = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates included


@given(any_text, any_text)
def test_a_lone_surrogate_is_found_in_a_string_or_a_key_exactly_when_utf8_refuses_it(text: str, key: str) -> None:
    """Python joins no surrogate pair in a str, so any surrogate is lone: what UTF-8 cannot encode."""
    assert c.has_surrogate(text) == (not _utf8(text))
    facts = c.value_facts({"a": [1, {"b": text}]})
    assert facts.surrogate == ("$.a[1].b" if not _utf8(text) else None)
    in_key = c.value_facts({"a": {key: 1}}).surrogate
    assert (in_key is not None) == (not _utf8(key))
    if in_key is not None:
        assert in_key.startswith("$.a.") and _utf8(in_key), "the path names the key, printable"


@given(any_text)
def test_a_lone_surrogate_in_a_thread_id_is_named_for_every_target_kind(thread_id: str) -> None:
    rules = {"postgres": "postgres.surrogate", "redis": "redis.surrogate-id",
             "langgraph-redis": "langgraph-redis.surrogate"}
    for kind, rule in rules.items():
        assert ((rule, thread_id) in id_rules([thread_id], kind)) == (not _utf8(thread_id))


@given(st.integers(min_value=1, max_value=300))
def test_depth_counts_containers(depth: int) -> None:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    assert c.value_facts(value).depth == depth and c.value_facts({"v": value}).depth == depth + 1


def _row(thread_id: str, metadata: dict, values: dict) -> StoredCheckpoint:
    checkpoint = {"v": 4, "id": "1", "ts": "", "channel_values": values, "channel_versions": {}, "versions_seen": {}}
    return StoredCheckpoint(thread_id, "", "1", None, checkpoint, metadata, ())  # type: ignore[arg-type]


VALUE_EXAMPLES = {  # rule -> (metadata, channel values) its example describes
    "langgraph-redis.json-nul": ({"note": {"text": "a\x00b"}}, {}),
    "langgraph-redis.json-non-finite": ({"score": float("nan")}, {}),
    "langgraph-redis.big-int": ({"n": 2**64}, {}),
    "langgraph-redis.deep-nesting": ({}, {"d": nested(125)}),
    "redis.big-int": ({"n": 2**64}, {}),
    "redis.deep-nesting": ({}, {"d": nested(256)}),
    "postgres.json-non-finite": ({"score": float("nan")}, {}),
    "postgres.nul": ({"note": {"text": "a\x00b"}}, {}),
    "postgres.surrogate": ({"note": {"text": "a\ud800b"}}, {}),
    "redis.surrogate": ({"note": {"text": "a\ud800b"}}, {}),
    "sqlite.surrogate": ({"note": {"text": "a\ud800b"}}, {}),
    "langgraph-redis.surrogate": ({"note": {"text": "a\ud800b"}}, {}),
}


def test_each_value_rule_matches_its_example_and_nothing_else() -> None:
    for rule, (metadata, values) in VALUE_EXAMPLES.items():
        kind = BY_ID[rule].targets[0]
        run = PreflightRun(PreflightReport(kind))
        run.check_thread("t", [_row("t", metadata, values), _row("t", {"score": 0.5, "n": 2**63}, {"d": [[1]]})])
        assert {f.rule for f in run.report.findings} == {rule}, rule
        assert run.report.counts == {rule: 1}


def test_the_rule_table_is_data_that_renders() -> None:
    assert len({r.id for r in RULES}) == len(RULES) and {r.rule_class for r in RULES} == set(CLASSES)
    assert all(r.id.split(".")[0] in r.targets for r in RULES)
    table = markdown_table()
    assert all(f"`{r.id}`" in table for r in RULES) and table.count("\n") == len(RULES) + 2
    assert parse_classes("nul, non-finite") == {"nul", "non-finite"}
    try:
        parse_classes("nul,everything")
    except ValueError as exc:
        assert "everything" in str(exc)
    else:
        raise AssertionError("an unknown class was accepted")


def test_the_writers_name_rules_that_exist() -> None:
    from dualsaver.stores import _langgraph_redis, _postgres, _redis, _sqlite

    for rule in (_postgres.PG_NON_FINITE, _postgres.PG_NUL, _langgraph_redis.LG_NON_FINITE, _langgraph_redis.LG_NUL,
                 _langgraph_redis.LG_SEARCH, _redis.REDIS_SURROGATE, _sqlite.SQLITE_SURROGATE):
        assert rule in BY_ID


def test_uuid_and_zero_uuid() -> None:
    """The zero UUID alone is an ordinary id; beside the empty id it collides."""
    zero = str(uuid.UUID(int=0))
    assert id_rules([zero]) == set()
    assert id_rules(["", zero]) == {("langgraph-redis.empty-id", ""), ("langgraph-redis.empty-id", zero)}


def test_the_readme_table_is_the_generated_one() -> None:
    """The README's "What each store can hold" shows `python -m dualsaver.preflight --markdown`."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert "What each store can hold" in readme, "the README lost its 'What each store can hold' section"
    section = readme.split("What each store can hold", 1)[1]
    assert markdown_table() in section, "regenerate the table: python -m dualsaver.preflight --markdown"


def test_a_sqlite_target_names_a_surrogate_in_a_metadata_key_and_not_in_values_or_ids() -> None:
    """SqliteSaver drops a lone surrogate from a metadata key as from a string; channel values go
    through the serializer (see test_preflight_surrogate) and ids fail the put loudly."""
    run = PreflightRun(PreflightReport("sqlite"))
    run.check_thread("t", [_row("t", {"a\ud800b": 1}, {}), _row("t", {"ok": "é"}, {"v": "a\ud800b"})])
    run.check_thread_id("t\ud800")
    assert [(f.rule, f.what) for f in run.report.findings] == [
        ("sqlite.surrogate", "a lone surrogate in metadata at $.a\\ud800b")]
