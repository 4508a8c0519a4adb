"""Invoke latency of a real graph: DualSaver in shadow-write against each store alone.

DualSaver runs twice: as it is by default (the caller waits for old, then new) and with
`write_behind=True` (new's copy is written in the background, in order).

Old is SQLite, new is an embedded PostgreSQL (durable settings, as in production). The
three configurations run interleaved, turn by turn, in one process and one run, so drift
on a shared machine hits them alike. Reported: p50/p99 per configuration and the ratio
of DualSaver to the slower store alone (target: at most 1.15x).

    python benchmarks/bench_shadow_write.py [--turns 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver

from dualsaver import DualSaver, Phase
from dualsaver.demo_app import QUESTIONS, build_support_agent, say
from dualsaver.embedded import EmbeddedPostgres


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300, help="turns per configuration")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(durable=True) as pg:
        tmp_path = Path(tmp)
        urls = {name: pg.create_database(name) for name in ("alone", "dual", "behind")}
        with (
            SqliteSaver.from_conn_string(str(tmp_path / "alone.sqlite")) as sqlite_alone,
            SqliteSaver.from_conn_string(str(tmp_path / "dual.sqlite")) as sqlite_dual,
            SqliteSaver.from_conn_string(str(tmp_path / "behind.sqlite")) as sqlite_behind,
            PostgresSaver.from_conn_string(urls["alone"]) as pg_alone,
            PostgresSaver.from_conn_string(urls["dual"]) as pg_dual,
            PostgresSaver.from_conn_string(urls["behind"]) as pg_behind,
        ):
            for saver in (sqlite_alone, sqlite_dual, sqlite_behind, pg_alone, pg_dual, pg_behind):
                saver.setup()
            dual = DualSaver(sqlite_dual, pg_dual, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite")
            behind = DualSaver(sqlite_behind, pg_behind, Phase.SHADOW_WRITE, journal=tmp_path / "j2.sqlite", write_behind=True)
            apps = {
                "sqlite alone": build_support_agent(sqlite_alone),
                "postgres alone": build_support_agent(pg_alone),
                "dualsaver shadow-write": build_support_agent(dual),
                "dualsaver write-behind": build_support_agent(behind),
            }
            samples: dict[str, list[float]] = {name: [] for name in apps}
            for turn in range(args.warmup + args.turns):
                thread = f"conv-{turn // len(QUESTIONS)}"
                text = QUESTIONS[turn % len(QUESTIONS)]
                for name, app in apps.items():
                    started = time.perf_counter()
                    say(app, thread, text)
                    elapsed = time.perf_counter() - started
                    if turn >= args.warmup:
                        samples[name].append(elapsed * 1000)
            caught_up = behind.flush(timeout=120)
            held = {
                "write-behind old": sum(1 for _ in sqlite_behind.list(None)),
                "write-behind new": sum(1 for _ in pg_behind.list(None)),
            }

    print(f"invoke latency over {args.turns} turns each (ms), interleaved in one run")
    print(f"{'configuration':<26}{'p50':>9}{'p99':>9}{'mean':>9}")
    for name, values in samples.items():
        print(f"{name:<26}{percentile(values, 0.5):>9.2f}{percentile(values, 0.99):>9.2f}{statistics.mean(values):>9.2f}")
    slower = max(("sqlite alone", "postgres alone"), key=lambda n: percentile(samples[n], 0.5))
    for name in ("dualsaver shadow-write", "dualsaver write-behind"):
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            ratio = percentile(samples[name], q) / percentile(samples[slower], q)
            print(f"ratio {label}: {name} / {slower} = {ratio:.3f}x (target <= 1.15x)")
    print(f"write-behind caught up after the run: {caught_up}; checkpoints held: {held}")
    failures = dual.secondary_failures.total() + behind.secondary_failures.total()
    print(f"secondary failures during the run: {failures}")


if __name__ == "__main__":
    main()
