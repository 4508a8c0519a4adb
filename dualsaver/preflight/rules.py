"""What each target store can hold faithfully: the preflight's rules, written as data.

A rule names one thing a target cannot hold exactly: its id (``<target kind>.<what>``), its
class (what ``--allow-lossy CLASS`` accepts), the target kinds it applies to, what it detects,
why, and an example. `dualsaver.preflight.classify` holds the predicates; the scan
(`dualsaver.preflight._scan`) applies the rules of the target's kind to every thread of the
source. The measurements behind the official Redis saver's rules (langgraph-checkpoint-redis
0.5.2 on Redis 8) are re-run by `tests/test_preflight_upstream.py` against the bare saver, so a
rule that upstream fixes fails its test and can be dropped.

``python -m dualsaver.preflight --markdown`` prints the table the README shows.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

# the classes the writers refuse themselves
from dualsaver.stores.faithful import NON_FINITE, NUL, SEARCH_SYNTAX, SURROGATE

POSTGRES, REDIS, LANGGRAPH_REDIS, SQLITE = "postgres", "redis", "langgraph-redis", "sqlite"
TARGET_KINDS = (POSTGRES, REDIS, LANGGRAPH_REDIS, SQLITE)  # kinds with rules; memory holds everything

# Targets whose losses no row writer can see (colliding ids): the backfill scans them first by
# default. Every other target's writer refuses, row by row, what it cannot hold exactly.
SCAN_BEFORE_COPY = frozenset({LANGGRAPH_REDIS})

# Limits measured or documented for each encoder and store.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # msgpack and orjson integers: int64 .. uint64
MSGPACK_MAX_DEPTH = 255  # ormsgpack refuses a value nested deeper (containers counted)
ORJSON_MAX_DEPTH = 254  # the official saver's metadata: orjson's limit
REDISJSON_VALUE_MAX_DEPTH = 124  # a channel value inside the official saver's document (RedisJSON: 128)
REDIS_VALUE_MAX_BYTES = 512 * 2**20  # Redis: a string or document past 512 MB is refused
POSTGRES_FIELD_MAX_BYTES = 2**30  # PostgreSQL: a field (text, bytea, jsonb) past 1 GB is refused

# Rule classes (what --allow-lossy accepts)
CASE_FOLD, SPACE_FOLD, KEY_JOIN = "case-fold", "space-fold", "key-join"
EMPTY_ID, EMPTY_NS = "empty-id", "empty-ns"
BIG_INT, DEEP_NESTING, SIZE = "big-int", "deep-nesting", "size"
CLASSES = (CASE_FOLD, SPACE_FOLD, SEARCH_SYNTAX, KEY_JOIN, EMPTY_ID, EMPTY_NS, NUL, SURROGATE, NON_FINITE, BIG_INT,
           DEEP_NESTING, SIZE)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    rule_class: str
    targets: tuple[str, ...]
    detects: str
    why: str
    example: str
    silent: bool  # the bare target changes or loses it quietly (else it refuses it loudly)
    collision: bool = False  # it groups threads that become one in the target


RULES: tuple[Rule, ...] = (
    Rule("langgraph-redis.case-fold", CASE_FOLD, (LANGGRAPH_REDIS,),
         "thread ids that differ only in ASCII letter case",
         "its tag search ignores case: list() of `alice` returns `Alice`'s checkpoints too",
         "`Alice` / `alice`", silent=True, collision=True),
    Rule("langgraph-redis.space-fold", SPACE_FOLD, (LANGGRAPH_REDIS,),
         "thread ids equal once each whitespace character is a space",
         "its tag search reads whitespace as a space: list() of `a\\nb` returns `a b`'s checkpoints",
         "`a\\nb` / `a b`", silent=True, collision=True),
    Rule("langgraph-redis.search-syntax", SEARCH_SYNTAX, (LANGGRAPH_REDIS,),
         "a thread id its tag search cannot find or fails on: `_` alone, a control character, `,`, a backtick,"
         " a leading or trailing space",
         "list() and delete_thread() raise RedisSearchError or find nothing: the thread cannot be read or deleted",
         "`_`, `a,b`, ``a`b``, `a\\tb`", silent=True),
    Rule("langgraph-redis.key-join", KEY_JOIN, (LANGGRAPH_REDIS,),
         "(thread, namespace) pairs whose `:`-joined keys are equal",
         "its keys are `checkpoint:{thread}:{ns}:{id}`: the two share keys, the last write wins",
         "thread `a` in namespace `b:__empty__` / thread `a:b` in the root namespace", silent=True, collision=True),
    Rule("langgraph-redis.empty-id", EMPTY_ID, (LANGGRAPH_REDIS,),
         "the empty thread id beside the zero UUID",
         "an empty id is stored as `00000000-0000-0000-0000-000000000000`: the two threads are one",
         "`` / `00000000-0000-0000-0000-000000000000`", silent=True, collision=True),
    Rule("langgraph-redis.empty-ns", EMPTY_NS, (LANGGRAPH_REDIS,),
         "namespaces `` and `__empty__` in one thread",
         "an empty namespace is stored as `__empty__`: the two namespaces are one",
         "`` / `__empty__`", silent=True, collision=True),
    Rule("langgraph-redis.nul-id", NUL, (LANGGRAPH_REDIS,),
         "a NUL character in a thread id, namespace or checkpoint id",
         "it is stored, but the tag search fails on it: the thread can never be listed again",
         "`a\\x00b`", silent=True),
    Rule("langgraph-redis.json-nul", NUL, (LANGGRAPH_REDIS,),
         "a NUL character in a metadata string",
         "the saver strips it from the metadata JSON", "`{\"note\": \"a\\x00b\"}`", silent=True),
    Rule("langgraph-redis.surrogate", SURROGATE, (LANGGRAPH_REDIS,),
         "a lone surrogate in a thread id, namespace, checkpoint id, write's task id or channel, or in metadata",
         "UTF-8 cannot encode it: the put fails (RedisVL's load, the saver's metadata dump, its write script)",
         "`a\\ud800b`", silent=False),
    Rule("langgraph-redis.json-non-finite", NON_FINITE, (LANGGRAPH_REDIS,),
         "NaN, Infinity or -Infinity in metadata, a channel value or a write",
         "orjson writes them as null: they come back as None", "`{\"score\": NaN}`", silent=True),
    Rule("langgraph-redis.big-int", BIG_INT, (LANGGRAPH_REDIS,),
         f"an integer outside [{INT_MIN}, {INT_MAX}]",
         "orjson and msgpack hold 64-bit integers: the put fails", "`2**64`", silent=False),
    Rule("langgraph-redis.deep-nesting", DEEP_NESTING, (LANGGRAPH_REDIS,),
         f"metadata nested deeper than {ORJSON_MAX_DEPTH} levels, or a channel value deeper than"
         f" {REDISJSON_VALUE_MAX_DEPTH}",
         "orjson's recursion limit; RedisJSON's 128-level document limit: the put fails",
         f"a list nested {REDISJSON_VALUE_MAX_DEPTH + 1} deep", silent=False),
    Rule("langgraph-redis.size", SIZE, (LANGGRAPH_REDIS,),
         "a checkpoint whose values add up past 512 MB (estimated)",
         "a Redis value is at most 512 MB: the put fails", "a 600 MB message history", silent=False),
    Rule("redis.big-int", BIG_INT, (REDIS,),
         f"an integer outside [{INT_MIN}, {INT_MAX}]",
         "msgpack holds 64-bit integers: the put fails", "`2**64`", silent=False),
    Rule("redis.deep-nesting", DEEP_NESTING, (REDIS,),
         f"a value nested deeper than {MSGPACK_MAX_DEPTH} levels",
         "ormsgpack's recursion limit: the put fails", f"a list nested {MSGPACK_MAX_DEPTH + 1} deep", silent=False),
    Rule("redis.surrogate-id", SURROGATE, (REDIS,),
         "a lone surrogate in a thread id, namespace, checkpoint id, or a write's task id or channel",
         "keys and fields are UTF-8, which cannot encode it: the put fails", "`a\\ud800b`", silent=False),
    Rule("redis.surrogate", SURROGATE, (REDIS,),
         "a lone surrogate in a metadata string",
         "the serializer's msgpack writes it as `?` (a lone surrogate in a key fails the put)",
         "`{\"note\": \"a\\ud800b\"}`", silent=True),
    Rule("redis.size", SIZE, (REDIS,),
         "a checkpoint whose values add up past 512 MB (estimated)",
         "a Redis value is at most 512 MB: the put fails", "a 600 MB message history", silent=False),
    Rule("sqlite.surrogate", SURROGATE, (SQLITE,),
         "a lone surrogate in a metadata string or key",
         "SqliteSaver encodes metadata as UTF-8 with errors='ignore': it is dropped (ids with one fail the put)",
         "`{\"note\": \"a\\ud800b\"}`", silent=True),
    Rule("postgres.nul", NUL, (POSTGRES,),
         "a NUL character in an id, a namespace, a channel name or a metadata string",
         "text and JSONB cannot hold NUL: the put fails (a top-level metadata string has it stripped)",
         "`a\\x00b`", silent=False),
    Rule("postgres.surrogate", SURROGATE, (POSTGRES,),
         "a lone surrogate in an id, a namespace, a task id, a channel name, metadata or a string channel value"
         " kept inline",
         "UTF-8 text and JSONB cannot hold it: the put fails (`Unicode low surrogate must follow a high surrogate`)",
         "`a\\ud800b`", silent=False),
    Rule("postgres.json-non-finite", NON_FINITE, (POSTGRES,),
         "NaN, Infinity or -Infinity in metadata or in a channel value kept inline",
         "JSONB has no NaN: PostgresSaver's put fails (`Token \"NaN\" is invalid`)", "`{\"score\": NaN}`",
         silent=False),
    Rule("postgres.size", SIZE, (POSTGRES,),
         "a channel value, a write or the metadata past 1 GB (estimated)",
         "a PostgreSQL field is at most 1 GB: the put fails", "a 1.2 GB blob", silent=False),
)
BY_ID = {rule.id: rule for rule in RULES}


def rules_for(kind: str) -> tuple[Rule, ...]:
    """The rules of a target kind (none for the in-memory saver)."""
    return tuple(rule for rule in RULES if kind in rule.targets)


def parse_classes(text: str | Iterable[str] | None) -> frozenset[str]:
    """`--allow-lossy` classes ("nul,non-finite", or a list); ValueError naming an unknown one."""
    if text is None:
        return frozenset()
    parts = text.split(",") if isinstance(text, str) else list(text)
    classes = frozenset(p.strip() for p in parts if p.strip())
    unknown = sorted(classes - set(CLASSES))
    if unknown:
        raise ValueError(f"unknown lossy class(es) {', '.join(unknown)} (known: {', '.join(CLASSES)})")
    return classes


def markdown_table() -> str:
    """The rule table as Markdown (the README's "What each store can hold")."""
    lines = ["| rule | class | detects | why | example |", "|---|---|---|---|---|"]
    for r in RULES:
        lines.append(f"| `{r.id}` | `{r.rule_class}` | {r.detects} | {r.why} | {r.example} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--markdown"]):
        print("usage: python -m dualsaver.preflight [--markdown]", file=sys.stderr)
        return 2
    sys.stdout.write(markdown_table())
    return 0

