"""TieredSaver: a hot store (Redis) answers reads, a durable one (PostgreSQL) keeps everything.

Not a second implementation: the tiered route of the routing table (`routing.TIERED`: the
durable store in the "old" role, the hot one in the "new" role), `_plans.write` for every
write and `_tier_plans` for the reads, run by the same shells as `DualSaver`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Any

import structlog
from langgraph.checkpoint.base import BaseCheckpointSaver

from dualsaver.control import settings
from dualsaver.control.journal import Journal
from dualsaver.control.record import open_phase_record
from dualsaver.control.sources import replica_name
from dualsaver.errors import describe_error
from dualsaver.observability import telemetry
from dualsaver.redis.base import BaseRedisSaver
from dualsaver.saver import _plans as plans
from dualsaver.saver import _tier_plans as tier_plans
from dualsaver.saver._breaker import Breaker
from dualsaver.saver._capabilities import class_with_capabilities
from dualsaver.saver._composite import CompositeSaver
from dualsaver.saver._pair import SAVER_METHODS, expect_stores
from dualsaver.saver._recorder import Recorder
from dualsaver.saver._shells import AsyncShell, Operation, SyncShell
from dualsaver.saver._tier_plans import Later
from dualsaver.saver._versions import next_version
from dualsaver.saver.routing import TIERED, Role
from dualsaver.stores import anative_for, native_for

log = structlog.get_logger("dualsaver")


PUBLISH_EVERY = 30.0  # seconds between two reports of a replica's counters to the control store


class TierCounters:
    """The target "tiers": reads (hit, miss, stale) and warm-ups (warmed, warm_failed).
    With a control store, this replica's totals are put there (status key `tiered/<replica>`)
    every `PUBLISH_EVERY` seconds, in the background, and on close: `dualsaver status` sums them."""

    def __init__(self, control: str | None = None, name: str = "default", replica: str = "") -> None:
        self.counts: Counter[str] = Counter()
        self._control, self._name, self.replica = control, name, replica
        self._published = time.monotonic()
        self._publishing = threading.Lock()

    def count(self, event: str) -> None:
        self.counts[event] += 1
        telemetry.tier_events.add(1, {"event": event})
        if self._control and time.monotonic() - self._published > PUBLISH_EVERY and self._publishing.acquire(False):
            self._published = time.monotonic()
            threading.Thread(target=self.publish, name="dualsaver-tiers", daemon=True).start()

    def publish(self, *, held: bool = True) -> None:
        """Put this replica's totals in the control store; never raises (they are counters)."""
        if self._control is None:  # no control store: nothing to publish to
            return
        try:
            with open_phase_record(self._control, name=self._name) as record:
                record.put_status(f"tiered/{self.replica}", {**self.counts, "at": time.time()})
        except Exception as exc:
            log.debug("tier_counters_not_published", error=describe_error(exc))
        finally:
            if held:
                self._publishing.release()

    def close(self) -> None:
        if self._control:
            self.publish(held=False)

    async def acount(self, event: str) -> None:
        self.count(event)


class Newest:
    """What the durable store holds for a read: the checkpoint's (id, number of writes), and
    its whole answer when the probe had to ask for it."""

    __slots__ = ("found", "key")

    def __init__(self, key: tuple[str, int], found: Any = None) -> None:
        self.key, self.found = key, found


class DurableProbe:
    """The target "probe": one index lookup in the durable store where its native adapter
    has one (PostgreSQL, SQLite), else the store's own `get_tuple`.

    `send` asks it without waiting where the adapter can (PostgreSQL over a pool:
    `ask_latest`), so the durable store looks while the hot one answers; `collect` reads
    the answer. Elsewhere `send` asks nothing and `collect` does the whole lookup."""

    def __init__(self, durable: BaseCheckpointSaver) -> None:
        self.durable = durable
        self._native: Any = None
        self._anative: Any = None

    def newest(self, config: Any, thread_id: str, ns: str, checkpoint_id: str | None) -> Newest | None:
        if self._native is None:
            self._native = native_for(self.durable)
        if not hasattr(self._native, "latest"):
            return _whole(self.durable.get_tuple(config))
        return _keyed(self._native.latest(thread_id, ns, checkpoint_id))

    async def anewest(self, config: Any, thread_id: str, ns: str, checkpoint_id: str | None) -> Newest | None:
        if self._anative is None:
            self._anative = anative_for(self.durable)
        if not hasattr(self._anative, "alatest"):
            return _whole(await self.durable.aget_tuple(config))
        return _keyed(await self._anative.alatest(thread_id, ns, checkpoint_id))

    def send(self, config: Any, thread_id: str, ns: str, checkpoint_id: str | None) -> Any:
        if self._native is None:
            self._native = native_for(self.durable)
        ask = getattr(self._native, "ask_latest", None)
        asked = None if ask is None else ask(thread_id, ns, checkpoint_id)
        return Later(config, thread_id, ns, checkpoint_id) if asked is None else asked

    async def asend(self, config: Any, thread_id: str, ns: str, checkpoint_id: str | None) -> Any:
        if self._anative is None:
            self._anative = anative_for(self.durable)
        ask = getattr(self._anative, "aask_latest", None)
        asked = None if ask is None else await ask(thread_id, ns, checkpoint_id)
        return Later(config, thread_id, ns, checkpoint_id) if asked is None else asked

    def collect(self, sent: Any) -> Newest | None:
        if type(sent) is Later:
            return self.newest(*sent.args)
        return _keyed(self._native.answer_latest(sent))

    async def acollect(self, sent: Any) -> Newest | None:
        if type(sent) is Later:
            return await self.anewest(*sent.args)
        return _keyed(await self._anative.aanswer_latest(sent))


def _keyed(key: tuple[str, int] | None) -> Newest | None:
    return None if key is None else Newest(key)


def _whole(found: Any) -> Newest | None:
    return None if found is None else Newest(tier_plans.answer_key(found), found)


class TieredSaver(CompositeSaver):
    """Reads from a hot store, never stale; keeps everything in a durable one.

    Args:
        durable: the store of record (PostgreSQL): written first, its failure fails the call;
            answers history (`list`, DeltaChannel history) and every read the hot store
            cannot answer as fresh.
        hot: the fast store (Redis): written second, within `hot_timeout`; its failures are
            counted, logged and journaled (store "new" in the journal), and open its
            circuit breaker for `circuit_cool_down` seconds.
        hot_ttl: seconds a thread stays in the hot store after its last write (dualsaver's
            Redis savers); None keeps the hot saver's own setting.
        write_behind: on by default: the hot copy of each put and put_writes is written in
            the background, in order, in the application's pauses (as `DualSaver`'s
            shadow-write does), so a turn waits for the durable store only. A read that
            comes before the hot copy landed finds it stale and is answered by the durable
            store. Deletes are always synchronous. `flush()` waits for the queue.
        journal / control: as for `DualSaver`.

    Every `get_tuple` is checked against the durable store's newest checkpoint id and write
    count, read at the same time as the hot answer (see `_tier_plans`): a read never returns
    a checkpoint older than the newest one acknowledged. `stats` counts hits, misses, stale
    answers and warm-ups (also the OpenTelemetry counter `dualsaver.tier.events`).
    """

    _reads = tier_plans  # checked against the durable store; history from it
    _wrapped = ("durable", "hot")

    def __new__(cls, durable: Any = None, hot: Any = None, *args: Any, **kwargs: Any) -> TieredSaver:
        # copy.copy() calls __new__ with no arguments: keep the class it already has.
        if durable is None or hot is None:
            return super().__new__(cls)
        return super().__new__(class_with_capabilities(cls, durable, hot))

    def __init__(
        self,
        durable: BaseCheckpointSaver,
        hot: BaseCheckpointSaver,
        *,
        hot_ttl: float | None = None,
        hot_timeout: float | None = 1.0,
        write_behind: bool = True,
        circuit_cool_down: float | None = 5.0,
        journal: Journal | str | os.PathLike[str] | None = None,
        control: str | None = None,
    ) -> None:
        expect_stores(BaseCheckpointSaver, "open_saver", SAVER_METHODS, durable=durable, hot=hot)
        super().__init__(serde=durable.serde)
        if hot_ttl is not None:
            if not isinstance(hot, BaseRedisSaver):
                raise ValueError("hot_ttl needs dualsaver's Redis saver as the hot store; set the TTL on yours")
            hot.set_ttl(hot_ttl)
        self.durable, self.hot = durable, hot
        # dualsaver's own Redis savers bound a read themselves (sync: with a connect timeout no
        # longer than hot_timeout in the hot URL): a sync read then needs no side thread
        self._hot_bounds_reads = isinstance(hot, BaseRedisSaver) and hot.bounds_reads_within(hot_timeout)
        self.hot_timeout = hot_timeout
        self.write_behind = write_behind
        loaded = settings.current()
        control, replica = control or loaded.control_url, replica_name()
        self.recorder = Recorder(journal, control=control, control_name=loaded.record_name, replica=replica)
        self.breakers: dict[Role, Breaker] = {"old": Breaker(None), "new": Breaker(circuit_cool_down)}
        self.tiers = TierCounters(control, loaded.record_name, replica)
        self._shells()

    def _shells(self) -> None:
        stores = {"old": self.durable, "new": self.hot}
        extra = {"probe": DurableProbe(self.durable), "tiers": self.tiers}
        self._sync = SyncShell(stores, self.recorder, self.hot_timeout, self.breakers)
        self._async = AsyncShell(stores, self.recorder, self.hot_timeout, self.breakers)
        self._sync.targets.update(extra)
        self._async.targets.update(extra)

    @classmethod
    def from_settings(
        cls, durable: BaseCheckpointSaver, hot: BaseCheckpointSaver, path: Any = None, **overrides: Any
    ) -> TieredSaver:
        """A TieredSaver configured by the settings file's [tiered] section (and the
        journal and control store it names); keyword arguments win."""
        loaded = settings.current(path)
        return cls(durable, hot, **{**loaded.tiered_kwargs(), **overrides})

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.tiers.counts)

    def _begin(self, name: str, config: Any = None, thread_id: Any = None) -> tuple[plans.Context, Operation]:
        ctx = plans.Context(TIERED, write_behind=self.write_behind, breakers=self.breakers,
                            hot_bounds_reads=self._hot_bounds_reads)
        if thread_id is None:
            thread_id = plans.thread_of(config)
        return ctx, Operation(name, TIERED.phase.value, None if thread_id is None else str(thread_id))

    # --- versions, allowlist, lifecycle -------------------------------------------------

    def get_next_version(self, current: Any, channel: None = None) -> Any:
        return next_version(current, self.durable, self.hot)

    def _release(self) -> None:
        self.tiers.close()

    def __repr__(self) -> str:
        return f"TieredSaver(durable={type(self.durable).__name__}, hot={type(self.hot).__name__})"
