"""The reads of a `TieredSaver`, as plans (its writes are `_plans.write` on the tiered route).

Never stale: every `get_tuple` asks, at the same time, the hot store for its answer and the
durable store for the newest checkpoint of the thread (or the one named) and how many
pending writes it has, one index lookup (target "probe"). Where the durable store can, the
probe is sent first and its answer collected after the hot read (one thread, no wait:
the lookup ran in the database meanwhile); elsewhere the two run side by side (`Both`).
The hot answer is returned only when it is that checkpoint with that many writes.
Otherwise the durable store answers, and the hot one is warmed with what `get_tuple` needs
(the checkpoint and its writes, not the thread's history). So whatever the hot store lost
or missed (a failed write, a restart with or without its data, a TTL that expired
mid-conversation, a delete it did not get, another replica's newer write), a read costs a
durable read instead of returning the past.
History (`list`, DeltaChannel history) always comes from the durable store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dualsaver.errors import SecondaryTimeout
from dualsaver.sansio import Both, Call, Plan, relay
from dualsaver.saver._plans import Context, guarded, settled, thread_of


def _one(call: Call) -> Plan[Any]:
    return (yield call)


class Later:
    """A probe the durable store could not send ahead (see `DurableProbe.send`): its
    collect asks the whole of it, at the same time as the hot read."""

    __slots__ = ("args",)

    def __init__(self, *args: Any) -> None:
        self.args = args


def answer_key(found: Any) -> tuple[str, int]:
    """What a `get_tuple` answer is checked by: its checkpoint id and its number of writes."""
    return str(found.config["configurable"]["checkpoint_id"]), len(found.pending_writes or ())


def get_tuple(ctx: Context, config: Any) -> Plan[Any]:
    thread_id = thread_of(config)
    if thread_id is None:
        return (yield Call("old", "get_tuple", (config,)))
    conf = config["configurable"]
    # The probe is sent first: the durable store looks while the hot one answers, and
    # collecting its answer after the hot read costs no wait (see DurableProbe).
    sent = yield Call("probe", "send", (config, thread_id, conf.get("checkpoint_ns", ""), conf.get("checkpoint_id")))
    # The hot read is bounded as a whole: by the hot store itself where it can (a wait on
    # its socket, no thread), else by the shell (the sync one: one thread hop, not two).
    if ctx.hot_bounds_reads:
        hot_read = guarded(ctx.breakers, Call("new", "get_tuple_within", (config,), bounded=True))
    else:
        hot_read = guarded(ctx.breakers, Call("new", "get_tuple", (config,)))
    collect = _one(Call("probe", "collect", (sent,)))
    hot, newest = yield Both(hot_read, collect, bounded=not ctx.hot_bounds_reads, collects=type(sent) is not Later)
    truth = newest.get()  # the durable store is the truth: its failure fails the read
    if isinstance(hot.error, SecondaryTimeout):
        ctx.breakers["new"].failed()  # it did not answer in time: skip it for a while
    answer = hot.value if hot.error is None else None
    if truth is None:  # nothing acknowledged (a hot copy would be of a deleted thread)
        yield Call("tiers", "count", ("miss" if answer is None else "stale",))
        return None
    if answer is not None and answer_key(answer) == truth.key:
        yield Call("tiers", "count", ("hit",))
        return answer
    yield Call("tiers", "count", ("miss" if answer is None else "stale",))
    found = truth.found if truth.found is not None else (yield Call("old", "get_tuple", (config,)))
    if found is not None:
        yield from warm(ctx, found)
    return found


def warm(ctx: Context, found: Any) -> Plan[None]:
    """Write one durable answer into the hot store, as put and put_writes would have; a
    failure is counted, never raised (the read has its answer)."""
    conf = found.config["configurable"]
    target = {"configurable": {"thread_id": conf["thread_id"], "checkpoint_ns": conf.get("checkpoint_ns", "")}}
    if found.parent_config:
        target["configurable"]["checkpoint_id"] = found.parent_config["configurable"]["checkpoint_id"]
    versions = dict(found.checkpoint.get("channel_versions") or {})
    by_task: dict[str, list[tuple[str, Any]]] = {}
    for task_id, channel, value in found.pending_writes or ():
        by_task.setdefault(task_id, []).append((channel, value))
    try:
        stored = yield from guarded(
            ctx.breakers, Call("new", "put", (target, found.checkpoint, found.metadata, versions), bounded=True)
        )
        for task_id, writes in by_task.items():
            yield from guarded(ctx.breakers, Call("new", "put_writes", (stored, writes, task_id, ""), bounded=True))
    except Exception:
        yield Call("tiers", "count", ("warm_failed",))
        return
    yield Call("tiers", "count", ("warmed",))


def list_(ctx: Context, config: Any, kwargs: Mapping[str, Any]) -> Plan[int]:
    yield from settled(ctx)
    return (yield from relay("old", "list", config, **kwargs))


def delta_history(ctx: Context, config: Any, channels: Any) -> Plan[Any]:
    return (yield Call("old", "get_delta_channel_history", (), {"config": config, "channels": channels}))
