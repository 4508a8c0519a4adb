"""TieredSaver (PostgreSQL durable, Redis hot) against each store alone, side by side in one run.

The demo's support agent (a Send fan-out, a subgraph) runs turn by turn on three
checkpointers, interleaved so drift on a shared machine hits them alike: PostgreSQL alone,
Redis alone, and TieredSaver over a second PostgreSQL database and a second Redis prefix.
Reported, p50 and p99:

- get_tuple as the graph calls it, and a sweep of latest-checkpoint reads over the threads
  (every tiered read checks the hot answer against the durable store's newest key, at the
  same time: see dualsaver/saver/_tier_plans.py);
- invoke latency of a whole turn.

Targets: tiered reads within 1.2x of Redis alone; invoke within 1.1x of PostgreSQL alone.
Both stores are durable (PostgreSQL fsync on; Redis appendonly + appendfsync always), or
neither (--fast).

Then reads under load, sync and async: --threads threads (or tasks), each reading its own
conversation whose state is --state-kib KiB, --load-reads times in each of six ways,
interleaved: the hot read alone (Redis `get_tuple`), the durable probe alone (one prepared
lookup of the newest checkpoint id and write count over libpq), the two in turn, and
TieredSaver's `get_tuple` (the probe sent first, collected after the hot read, which the
Redis saver bounds on the caller's thread: its URL bounds connects too); beside it "tiered
(before)", the same saver reading as it did before this round (the probe through a cursor,
beside a hot read bounded by the shell: a side thread, an asyncio task), for a before/after
in one run, and "tiered, unbounded" (hot_timeout=None).
Target: tiered within 1.25x of the slower of the hot read alone and the probe alone (p50).
Then, sync, each of the hot read, the probe and TieredSaver's read alone on every thread,
in turn (a replica serving only that read: no other way shares the GIL), p50 and reads/s.

    python benchmarks/bench_tiered.py [--turns 200] [--reads 1000] [--fast]
        [--state-kib 176] [--threads 8] [--load-reads 100] [--only-load]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from langgraph.checkpoint.postgres import PostgresSaver

from bench_redis import Timed, percentile
from dualsaver import TieredSaver
from dualsaver.saver._tier_plans import Later
from dualsaver.saver._tiered import DurableProbe, _keyed
from dualsaver.stores import anative_for, aopen_saver, native_for, open_saver
from dualsaver.stores._sql import latest_key
from dualsaver.demo.app import QUESTIONS, build_support_agent, say
from dualsaver.embedded import EmbeddedPostgres, EmbeddedRedis
from dualsaver.redis import aopen_redis_saver, open_redis_saver

# Connects bounded as reads are (<= hot_timeout, 1 s): the Redis saver then bounds a sync read
# on the caller's thread (RedisSaver.bounds_reads_within), as the README advises for a hot URL.
HOT_CONNECT_TIMEOUT = 1.0
WAYS = ("hot alone", "probe alone", "in turn", "tiered", "tiered (before)", "tiered, unbounded")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200, help="graph turns per checkpointer")
    parser.add_argument("--reads", type=int, default=1000, help="get_tuple sweep size per checkpointer")
    parser.add_argument("--fast", action="store_true", help="no fsync on either store")
    parser.add_argument("--state-kib", type=int, default=176, help="state per conversation in the reads under load")
    parser.add_argument("--threads", type=int, default=8, help="threads (tasks) reading at once under load")
    parser.add_argument("--load-reads", type=int, default=100, help="reads per thread and way under load")
    parser.add_argument("--only-load", action="store_true", help="only the reads under load")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    durable = not args.fast
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedPostgres(durable=durable) as pg,
        EmbeddedRedis(appendonly=durable, appendfsync="always") as redis_server,
    ):
        if not args.only_load:
            graph_turns(args, pg, redis_server, Path(tmp))
        reads_under_load(args, pg, redis_server, Path(tmp))


def graph_turns(args: argparse.Namespace, pg: EmbeddedPostgres, redis_server: EmbeddedRedis, tmp: Path) -> None:
    durable = not args.fast
    with (
        PostgresSaver.from_conn_string(pg.create_database("alone")) as pg_alone,
        PostgresSaver.from_conn_string(pg.create_database("tiered")) as pg_durable,
        open_redis_saver(redis_server.url, prefix="alone", socket_connect_timeout=HOT_CONNECT_TIMEOUT) as redis_alone,
        open_redis_saver(redis_server.url, prefix="tiered", socket_connect_timeout=HOT_CONNECT_TIMEOUT) as redis_hot,
    ):
        pg_alone.setup()
        pg_durable.setup()
        tiered = TieredSaver(pg_durable, redis_hot, journal=tmp / "journal.sqlite")
        savers = {"postgres": pg_alone, "redis": redis_alone, "tiered": tiered}
        timed = {name: Timed(saver) for name, saver in savers.items()}
        apps = {name: build_support_agent(saver) for name, saver in timed.items()}
        turns: dict[str, list[float]] = {name: [] for name in savers}
        threads: list[str] = []
        for turn in range(args.turns):
            thread = f"conv-{turn // len(QUESTIONS)}"
            if thread not in threads:
                threads.append(thread)
            for name, app in apps.items():
                began = time.perf_counter()
                say(app, thread, QUESTIONS[turn % len(QUESTIONS)])
                turns[name].append((time.perf_counter() - began) * 1000)

        rng = random.Random(7)
        sweep: dict[str, list[float]] = {name: [] for name in savers}
        for _ in range(args.reads):
            config = {"configurable": {"thread_id": rng.choice(threads), "checkpoint_ns": ""}}
            for name, saver in savers.items():
                began = time.perf_counter()
                assert saver.get_tuple(config) is not None
                sweep[name].append((time.perf_counter() - began) * 1000)
        stats = tiered.stats
        tiered.close()

    print(f"{args.turns} turns on {len(threads)} threads per checkpointer ({'durable' if durable else 'no fsync'})")
    print(f"tiered reads: {stats}")
    header = f"{'latency (ms)':<24}" + "".join(f"{n + ' p50':>14}{'p99':>8}" for n in savers)
    print(header + f"{'tiered/redis':>14}{'tiered/pg':>11}")
    rows = [
        ("get_tuple (graph)", {n: t.samples["get_tuple"] for n, t in timed.items()}),
        ("get_tuple (sweep)", sweep),
        ("invoke (a turn)", turns),
    ]
    for label, samples in rows:
        p50 = {n: percentile(s, 0.5) for n, s in samples.items()}
        p99 = {n: percentile(s, 0.99) for n, s in samples.items()}
        line = f"{label:<24}" + "".join(f"{p50[n]:>14.3f}{p99[n]:>8.3f}" for n in savers)
        line += f"{p50['tiered'] / p50['redis']:>11.2f}x/{p99['tiered'] / p99['redis']:.2f}x"
        line += f"{p50['tiered'] / p50['postgres']:>7.2f}x/{p99['tiered'] / p99['postgres']:.2f}x"
        print(line)
    print("targets: get_tuple within 1.2x of Redis alone; invoke within 1.1x of PostgreSQL alone (p50)")


def big_state(kib: int, seed: str) -> dict[str, Any]:
    """About `kib` KiB of conversation: messages as a chat application keeps them."""
    text = ("the quick brown fox jumps over the lazy dog " * 6)[:240]
    return {"messages": [{"role": "user" if i % 2 else "assistant", "content": f"{seed}-{i} {text}", "n": i}
                         for i in range(max(1, kib * 1024 // 300))]}


def seed_threads(saver: Any, threads: int, kib: int) -> list[dict[str, Any]]:
    """One conversation per thread, written through `saver`: a checkpoint of `kib` KiB and
    two pending writes. Returns each thread's read config."""
    from langgraph.checkpoint.base import empty_checkpoint

    configs = []
    for t in range(threads):
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = big_state(kib, f"t{t}")
        checkpoint["channel_versions"] = {"messages": 1}
        config = {"configurable": {"thread_id": f"load-{t}", "checkpoint_ns": ""}}
        stored = saver.put(config, checkpoint, {"source": "loop", "step": 1}, {"messages": 1})
        saver.put_writes(stored, [("messages", "pending"), ("messages", "more")], "task-1")
        configs.append(config)
    if hasattr(saver, "flush"):
        saver.flush()
    return configs


def reads_under_load(args: argparse.Namespace, pg: EmbeddedPostgres, redis_server: EmbeddedRedis, tmp: Path) -> None:
    durable_url = pg.create_database("load")
    n = args.threads
    with (
        open_saver(durable_url, pool_size=n) as durable,
        open_redis_saver(redis_server.url, prefix="load", socket_connect_timeout=HOT_CONNECT_TIMEOUT) as hot,
    ):
        tiered = TieredSaver(durable, hot, journal=tmp / "journal-load.sqlite")
        configs = seed_threads(tiered, n, args.state_kib)
        probe = DurableProbe(durable)

        def probed(config: Any) -> Any:
            conf = config["configurable"]
            return probe.newest(config, conf["thread_id"], "", None)

        ways: dict[str, Callable[[Any], Any]] = {
            "hot alone": hot.get_tuple, "probe alone": probed,
            "in turn": lambda c: (hot.get_tuple(c), probed(c)), "tiered": tiered.get_tuple,
        }
        before = as_before(TieredSaver(durable, hot, journal=tmp / "journal-before.sqlite"))
        ways["tiered (before)"] = before.get_tuple
        unbounded = TieredSaver(durable, hot, journal=tmp / "journal-unbounded.sqlite", hot_timeout=None)
        ways["tiered, unbounded"] = unbounded.get_tuple
        sync = run_threads(ways, configs, args.load_reads)
        alone = each_alone({w: ways[w] for w in ("hot alone", "probe alone", "tiered")}, configs, args.load_reads)
        before.close()
        unbounded.close()
        stats = tiered.stats
        tiered.close()
    asynchronous = asyncio.run(aread_under_load(durable_url, redis_server.url, configs, args.load_reads, tmp))
    size = len(str(big_state(args.state_kib, "t0"))) / 1024
    print(f"\nreads under load: {n} threads (tasks), each its own conversation of ~{size:.0f} KiB of state,"
          f" {args.load_reads} reads each way, interleaved")
    print(f"tiered reads (sync): {stats}")
    print(f"{'p50 / p99 (ms)':<16}" + "".join(f"{w:>20}" for w in WAYS) + f"{'tiered/slower':>15}{'target':>8}"
          + f"{'unbounded/slower':>18}")
    for label, samples in (("sync", sync), ("async", asynchronous)):
        p50 = {w: percentile(samples[w], 0.5) for w in WAYS}
        p99 = {w: percentile(samples[w], 0.99) for w in WAYS}
        slower = max(p50["hot alone"], p50["probe alone"])
        print(f"{label:<16}" + "".join(f"{p50[w]:>12.3f} /{p99[w]:>6.2f}" for w in WAYS)
              + f"{p50['tiered'] / slower:>14.2f}x{'<=1.25x':>8}{p50['tiered, unbounded'] / slower:>17.2f}x")
    print(f"\nsync, each way alone on all {n} threads (4 rounds in turn), as a replica serving only that read:")
    for way, (samples, rate) in alone.items():
        print(f"  {way:<12} p50 {percentile(samples, 0.5):7.3f} ms  p99 {percentile(samples, 0.99):7.2f} ms"
              f"  {rate:8.0f} reads/s")
    slower = max(percentile(alone[w][0], 0.5) for w in ("hot alone", "probe alone"))
    print(f"  tiered / slower alone (p50): {percentile(alone['tiered'][0], 0.5) / slower:.2f}x")


class CursorProbe(DurableProbe):
    """The probe as it was before this round: never sent ahead, its whole lookup through
    a psycopg cursor (`query`), run beside the hot read (a side thread; an asyncio task)."""

    def send(self, config: Any, thread_id: str, ns: str, checkpoint_id: str | None) -> Any:
        return Later(config, thread_id, ns, checkpoint_id)

    async def asend(self, config: Any, thread_id: str, ns: str, checkpoint_id: str | None) -> Any:
        return Later(config, thread_id, ns, checkpoint_id)

    def newest(self, config: Any, thread_id: str, ns: str, checkpoint_id: str | None) -> Any:
        native = native_for(self.durable)
        return _keyed(latest_key(native.query(*native._latest_query(thread_id, ns, checkpoint_id)[1:])))

    async def anewest(self, config: Any, thread_id: str, ns: str, checkpoint_id: str | None) -> Any:
        native = anative_for(self.durable)
        return _keyed(latest_key(await native.aquery(*native._latest_query(thread_id, ns, checkpoint_id)[1:])))


def as_before(saver: TieredSaver) -> TieredSaver:
    """`saver` as it read before this round, for a before/after in one run: the probe
    through a cursor, beside a hot read bounded by the shell (a side thread; a task)."""
    probe = CursorProbe(saver.durable)
    saver._sync.targets["probe"] = saver._async.targets["probe"] = probe
    saver._hot_bounds_reads = False
    return saver


def run_threads(ways: dict[str, Callable[[Any], Any]], configs: list[Any], reads: int) -> dict[str, list[float]]:
    """Each thread reads its own config `reads` times each way, the ways in turn (in a
    shuffled order each round, so drift hits them alike)."""
    samples: dict[str, list[float]] = {w: [] for w in ways}
    lock, start = threading.Lock(), threading.Barrier(len(configs))

    def reader(config: Any, seed: int) -> None:
        rng, mine = random.Random(seed), {w: [] for w in ways}
        start.wait()
        for _ in range(reads):
            for way in rng.sample(list(ways), len(ways)):
                began = time.perf_counter()
                assert ways[way](config) is not None
                mine[way].append((time.perf_counter() - began) * 1000)
        with lock:
            for w, values in mine.items():
                samples[w] += values

    pool = [threading.Thread(target=reader, args=(c, i)) for i, c in enumerate(configs)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return samples


def each_alone(ways: dict[str, Callable[[Any], Any]], configs: list[Any], reads: int,
               rounds: int = 4) -> dict[str, tuple[list[float], float]]:
    """Each way on every thread by itself, the ways in turn for `rounds` rounds: its samples
    and its best rate (reads a second). Interleaved ways (`run_threads`) share the GIL with
    one another; here a way competes only with itself."""
    found: dict[str, tuple[list[float], float]] = {w: ([], 0.0) for w in ways}
    for _ in range(rounds):
        for way, read in ways.items():
            began = time.perf_counter()
            samples = run_threads({way: read}, configs, reads)[way]
            rate = len(samples) / (time.perf_counter() - began)
            found[way] = (found[way][0] + samples, max(found[way][1], rate))
    return found


async def aread_under_load(
    durable_url: str, redis_url: str, configs: list[Any], reads: int, tmp: Path
) -> dict[str, list[float]]:
    """The same reads from `len(configs)` tasks of one event loop, through the async API."""
    async with (
        aopen_saver(durable_url, pool_size=len(configs)) as durable,
        aopen_redis_saver(redis_url, prefix="load", socket_connect_timeout=HOT_CONNECT_TIMEOUT) as hot,
    ):
        tiered = TieredSaver(durable, hot, journal=tmp / "journal-aload.sqlite")
        probe = DurableProbe(durable)

        async def probed(config: Any) -> Any:
            return await probe.anewest(config, config["configurable"]["thread_id"], "", None)

        async def in_turn(config: Any) -> Any:
            return await hot.aget_tuple(config), await probed(config)

        before = as_before(TieredSaver(durable, hot, journal=tmp / "journal-abefore.sqlite"))
        unbounded = TieredSaver(durable, hot, journal=tmp / "journal-aunbounded.sqlite", hot_timeout=None)
        ways = {"hot alone": hot.aget_tuple, "probe alone": probed, "in turn": in_turn, "tiered": tiered.aget_tuple,
                "tiered (before)": before.aget_tuple, "tiered, unbounded": unbounded.aget_tuple}
        samples: dict[str, list[float]] = {w: [] for w in ways}

        async def reader(config: Any, seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(reads):
                for way in rng.sample(list(ways), len(ways)):
                    began = time.perf_counter()
                    assert await ways[way](config) is not None
                    samples[way].append((time.perf_counter() - began) * 1000)

        await asyncio.gather(*(reader(c, i) for i, c in enumerate(configs)))
        await tiered.aclose()
        await before.aclose()
        await unbounded.aclose()
        return samples


if __name__ == "__main__":
    main()
