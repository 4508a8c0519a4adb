"""Throttling a long job against production load, as gh-ost and pt-online-schema-change do.

- `max_rate`: at most this many checkpoints a second. Each unit of work (a batch written, a
  thread checked) pays for itself after it is done, so a run of N checkpoints takes at least
  N / max_rate seconds, whatever the machine.
- `max_load_ms`: back off while the 95th percentile latency of the job's store calls (a batch
  written to the target, a batch read from the source, a thread read by the check) over the
  last `window` seconds is above this. While backing off the job makes no calls, so the
  window empties and the next unit of work is the probe that decides whether to go on.

The decisions are pure (`Throttle.after`, `Throttle.observe`); the caller sleeps (a plan
yields `Call("clock", "sleep", ...)`). The limits can change while a job runs: a
`LimitsSource` is asked again at most once a second: `ThrottleFile` reads
`.dualsaver/throttle.json` on one machine, `FleetThrottle` the control store, for every job
of the fleet (both written by `dualsaver throttle`). A job run as N processes follows its
source in the parent, which relays each process's `share()` of the limits through shared
memory (`Relay`, `SharedLimits`): each process's throttle follows that as its source.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from dualsaver.errors import describe_error
from dualsaver.observability import telemetry

log = structlog.get_logger("dualsaver.throttle")

DEFAULT_FILE = ".dualsaver/throttle.json"
ENV_FILE = "DUALSAVER_THROTTLE_FILE"
BACKOFF = 0.5  # seconds a job waits while the store is too slow, before it looks again
WINDOW = 5.0  # seconds of latencies the p95 is taken over
REFRESH = 1.0  # seconds between two looks at the limits' source


@dataclass(frozen=True)
class Limits:
    max_rate: float | None = None  # checkpoints per second
    max_load_ms: float | None = None  # p95 store-call latency above which the job backs off

    def describe(self) -> str:
        parts = [
            f"max rate {self.max_rate:g}/s" if self.max_rate else "",
            f"max load {self.max_load_ms:g} ms" if self.max_load_ms else "",
        ]
        return ", ".join(p for p in parts if p) or "unthrottled"


def share(limits: Limits | None, processes: int) -> Limits | None:
    """Each of a job's `processes` part of its limits: the rate is the whole job's, split
    evenly; the load limit is each one's. None when nothing is limited."""
    if limits is None or (limits.max_rate is None and limits.max_load_ms is None):
        return None
    rate = limits.max_rate / processes if limits.max_rate else None
    return Limits(max_rate=rate, max_load_ms=limits.max_load_ms)


class LimitsSource(Protocol):
    def current(self) -> Limits | None: ...


@dataclass(frozen=True)
class Wait:
    """Why a job waits now: for its rate, or for the store's p95 latency (ms) to come down."""

    rate: bool = False
    p95_ms: float | None = None

    def reason(self, limits: Limits) -> str | None:
        """The progress line's words for it, under these limits (a job's, not a process's share)."""
        if self.p95_ms is not None and limits.max_load_ms:
            return f"p95 store latency {self.p95_ms:.0f} ms > {limits.max_load_ms:g} ms"
        if self.rate and limits.max_rate:
            return f"rate {limits.max_rate:g} checkpoints/s"
        return None


class Throttle:
    """The throttle of one job; shared by its workers (thread-safe)."""

    def __init__(
        self,
        limits: Limits = Limits(),
        *,
        source: LimitsSource | None = None,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.source = source
        self.window = window
        self.clock = clock
        self.reason: str | None = None  # why the job waits right now, for the progress line
        self.told: Callable[[Wait], None] | None = None  # told why after each unit of work (a process's parent)
        self.throttled_s = 0.0  # seconds waited in all
        self._samples: deque[tuple[float, float]] = deque()  # (when, seconds)
        self._next = 0.0  # when the rate allows the next unit of work to start
        self._looked = -REFRESH
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        """One store call took `seconds`."""
        with self._lock:
            now = self.clock()
            self._samples.append((now, seconds))
            self._forget(now)

    def after(self, checkpoints: int) -> float:
        """Seconds to wait now that a unit of `checkpoints` is done: the rate's due, or the
        backoff while the store is slow. 0: go on."""
        with self._lock:
            now = self.clock()
            self._refresh(now)
            delay, wait = 0.0, Wait()
            rate = self.limits.max_rate
            if rate:
                self._next = max(self._next, now) + checkpoints / rate
                delay = self._next - now
                if delay > 0:
                    wait = Wait(rate=True)
            load = self.limits.max_load_ms
            p95 = self._p95(now) if load else None
            if load and p95 is not None and p95 * 1000 > load and delay < BACKOFF:
                delay = BACKOFF
                wait = Wait(p95_ms=p95 * 1000)
            self.reason = wait.reason(self.limits)
            delay = max(delay, 0.0)
            if delay:
                self.throttled_s += delay
                telemetry.throttled.add(delay, {"reason": "load" if wait.p95_ms else "rate"})
        if self.told is not None:
            self.told(wait)
        return delay

    def current(self) -> Limits:
        """The limits now, from the source when it is time to ask it again: a throttle is
        itself a `LimitsSource` (a job's parent follows its own for its processes)."""
        with self._lock:
            self._refresh(self.clock())
            return self.limits

    def _forget(self, now: float) -> None:
        """Drop the latencies older than the window (sorted only when a load limit asks)."""
        while self._samples and self._samples[0][0] < now - self.window:
            self._samples.popleft()

    def _p95(self, now: float) -> float | None:
        self._forget(now)
        if not self._samples:
            return None
        ordered = sorted(s for _, s in self._samples)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]

    def _refresh(self, now: float) -> None:
        if self.source is None or now - self._looked < REFRESH:
            return
        self._looked = now
        changed = self.source.current()
        if changed is not None and changed != self.limits:
            self.limits = changed


class SharedLimits:
    """Limits in shared memory, written by a job's parent and read by its processes (each
    one's throttle takes it as its source). Created before the processes start, and handed
    to them at their start (it cannot cross later). NaN: no limit."""

    def __init__(self, context: Any, limits: Limits, processes: int = 1) -> None:
        self._values = context.Array("d", 2)  # max_rate, max_load_ms
        # why each process waits (`Wait`), for the parent's progress line: 0 it does not,
        # -1 for its rate, else the p95 latency (ms) it waits to come down
        self._waits = context.Array("d", processes)
        self.set(limits)

    def set(self, limits: Limits) -> None:
        with self._values.get_lock():
            self._values[:] = [math.nan if v is None else float(v) for v in (limits.max_rate, limits.max_load_ms)]

    def current(self) -> Limits:
        with self._values.get_lock():
            rate, load = self._values[:]
        return Limits(max_rate=None if math.isnan(rate) else rate, max_load_ms=None if math.isnan(load) else load)

    def throttle(self, index: int = 0) -> Throttle:
        """In process `index`: its throttle, following what the parent relays and telling it
        why it waits."""
        throttle = Throttle(self.current(), source=self)
        throttle.told = lambda wait: self._tell(index, wait)
        return throttle

    def _tell(self, index: int, wait: Wait) -> None:
        self._waits[index] = wait.p95_ms if wait.p95_ms is not None else (-1.0 if wait.rate else 0.0)

    def waiting(self) -> Wait:
        """Why the job waits, from its processes: the store's latency if any waits for it
        (the highest), else the rate if any waits for that."""
        waits = list(self._waits[:])
        if (p95 := max(waits, default=0.0)) > 0:
            return Wait(p95_ms=p95)
        return Wait(rate=any(w < 0 for w in waits))


class Relay:
    """In the parent of a job run as `processes` processes (`context`: how they start): its
    throttle followed (and through it the job's source, at most once a second), each
    change passed on as each process's `share()` (`relay()`, called where the parent waits
    on them). `shared` is what the processes follow; None when the job has no throttle."""

    def __init__(self, throttle: Throttle | None, processes: int, context: Any) -> None:
        self.throttle, self.processes = throttle, processes
        self._sent = self._share()
        self.shared = SharedLimits(context, self._sent, processes) if throttle is not None else None

    def relay(self) -> None:
        """The limits passed on, and the processes' reason to wait taken back (the job's
        throttle's `reason`, which its progress line shows)."""
        if self.shared is None or self.throttle is None:
            return
        limits = self._share()
        if limits != self._sent:
            self.shared.set(limits)
            self._sent = limits
        self.throttle.reason = self.shared.waiting().reason(self.throttle.limits)

    def _share(self) -> Limits:
        return share(self.throttle.current() if self.throttle is not None else None, self.processes) or Limits()


class ThrottleFile:
    """Limits an operator changes while jobs run (`dualsaver throttle`), in a small JSON file.
    A job follows only changes made after it started, so yesterday's file cannot slow today's
    run; removing the file (`dualsaver throttle --clear`) returns a job to its own limits."""

    def __init__(self, path: str | os.PathLike[str] | None = None, own: Limits = Limits()) -> None:
        self.path = Path(path or os.environ.get(ENV_FILE) or DEFAULT_FILE)
        self.where = f"file {self.path}"
        self.own = own
        self.started = time.time()

    def current(self) -> Limits:
        try:
            if self.path.stat().st_mtime < self.started:
                return self.own
        except OSError:
            return self.own
        return self.stored() or self.own

    def stored(self) -> Limits | None:
        """What the file says, however old (None: no file)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return Limits(max_rate=data.get("max_rate"), max_load_ms=data.get("max_load_ms"))

    def write(self, limits: Limits) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(limits)))
        os.replace(tmp, self.path)

    def clear(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


class FleetThrottle:
    """Limits set for every job of the fleet, kept in the control store (`control`) until
    cleared: a shard that starts later, on another node, follows them too. Read in the
    background, so a slow or absent control store never holds a job up (it keeps the limits
    it knew)."""

    KEY = "throttle"

    def __init__(self, control: Any, own: Limits = Limits()) -> None:
        self.control = control
        self.own = own
        self.where = f"control store {control.where}"
        self._limits = own
        self._reading = threading.Lock()

    def started(self) -> FleetThrottle:
        """Take the first look now, before the job starts (the next ones go behind it)."""
        self._reading.acquire()
        self._read()
        return self

    def current(self) -> Limits:
        if self._reading.acquire(blocking=False):
            threading.Thread(target=self._read, name="dualsaver-throttle", daemon=True).start()
        return self._limits

    def _read(self) -> None:
        try:
            self._limits = self.stored() or self.own
        except Exception as exc:  # the control store away: keep what we knew
            log.debug("throttle_not_read", where=self.where, error=describe_error(exc))
        finally:
            self._reading.release()

    def stored(self) -> Limits | None:
        value = self.control.get_status(self.KEY)
        if not value or value.get("cleared"):
            return None
        return Limits(max_rate=value.get("max_rate"), max_load_ms=value.get("max_load_ms"))

    def write(self, limits: Limits) -> None:
        self.control.put_status(self.KEY, {**asdict(limits), "set_at": time.time()})

    def clear(self) -> bool:
        had = self.stored() is not None
        self.control.put_status(self.KEY, {"cleared": True, "set_at": time.time()})
        return had


def throttle_for(
    max_rate: float | None, max_load_ms: float | None, path: str | None = None, *, control: Any = None
) -> Throttle:
    """The throttle of a CLI job: its own limits, changeable through the control store's
    (`control`, when the job has one) or else the throttle file."""
    own = Limits(max_rate, max_load_ms)
    source = FleetThrottle(control, own).started() if control is not None else ThrottleFile(path, own)
    return Throttle(own, source=source)
