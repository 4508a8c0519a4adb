"""What every composite over two stores shares, whatever it wraps (checkpointers or long-term
stores): the recorder and its journal, flushing and closing (`StorePair`); and, for the ones
routed by the migration phase (`DualSaver`, `DualStore`), the phase source, the settings
and the circuit breakers (`PhasedPair`). Written once here so that a DualSaver and a
DualStore of one application are configured, routed and closed alike.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import structlog

from dualsaver.control import settings
from dualsaver.control.journal import Journal
from dualsaver.control.phase import Phase
from dualsaver.control.sources import StaticPhase, phase_source, replica_name
from dualsaver.redact import redact
from dualsaver.saver import _plans as plans
from dualsaver.saver._breaker import Breaker
from dualsaver.saver._recorder import Recorder
from dualsaver.saver._shells import AsyncShell, SyncShell
from dualsaver.saver.routing import Role, route_for

log = structlog.get_logger("dualsaver")


SAVER_METHODS = ("get_tuple", "put")  # what a checkpointer answers (or their async forms)


def expect_stores(kind: type, opener: str, methods: tuple[str, ...], **stores: Any) -> None:
    """A TypeError naming the argument that is not a `kind` (a URL, None), raised when the
    composite is built rather than at its first write. Judged by `methods` (each, or its
    async form), so a proxy that forwards to a real store passes."""
    for name, value in stores.items():
        if not all(callable(getattr(value, m, None)) or callable(getattr(value, "a" + m, None)) for m in methods):
            got = (f"the string {redact(value)!r}: open it with {opener}(url)" if isinstance(value, str)
                   else type(value).__name__)
            raise TypeError(f"{name} must be a {kind.__name__}, got {got}")


class StorePair:
    """Two stores behind the sync and async shells, a recorder, and their lifecycle."""

    recorder: Recorder
    _sync: SyncShell
    _async: AsyncShell

    def _release(self) -> None:
        """What a subclass stops or hands over on close (after the shells and the journal)."""

    def _shells(self) -> None:
        """Build the sync and async shells over the wrapped stores."""
        raise NotImplementedError

    @property
    def journal(self) -> Journal:
        return self.recorder.journal

    @property
    def secondary_failures(self) -> Counter[str]:
        return self.recorder.secondary_failures

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until secondary writes queued behind have landed; False on timeout."""
        return self._sync.queue.drain(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        return await self._async.queue.adrain(timeout)

    def close(self) -> None:
        """Land (within the secondary timeout) or journal the writes queued by sync calls,
        stop the worker threads, close the journal, then what the subclass started; the
        wrapped stores stay open. Writes queued by async calls are closed by `aclose()` (or
        `async with`), which needs the event loop."""
        self._sync.close()
        self.recorder.close()
        self._release()

    async def aclose(self) -> None:
        """`close()`, after landing (within the secondary timeout) or journaling the writes
        queued by async calls."""
        await self._async.aclose()
        self.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class PhasedPair(StorePair):
    """Old and new, routed by the migration phase read at the start of every call."""

    old: Any
    new: Any

    def _pair(
        self, old: Any, new: Any, phase: Any, *, strict: bool, secondary_timeout: float | None,
        journal: Journal | str | os.PathLike[str] | None, write_behind: bool, circuit_cool_down: float | None,
        control: str | None,
    ) -> None:
        self.old = old
        self.new = new
        # The argument, $DUALSAVER_PHASE, the settings file, or the fleet's shared record.
        self.phase_source: Any = phase_source(phase)
        self._owns_phase_source = self.phase_source is not cast(Any, phase)  # a source passed in is the caller's
        self.strict = strict
        self.write_behind = write_behind
        self.secondary_timeout = secondary_timeout
        loaded = settings.current()
        replica = getattr(self.phase_source, "replica_id", None) or replica_name()
        self.recorder = Recorder(journal, control=control or loaded.control_url, control_name=loaded.record_name,
                                 replica=replica)
        if hasattr(self.phase_source, "follow_journal"):  # the fleet sees this replica's unshipped entries
            self.phase_source.follow_journal(self.recorder)
        self.breakers: dict[Role, Breaker] = {"old": Breaker(circuit_cool_down), "new": Breaker(circuit_cool_down)}
        self._shells()

    @classmethod
    def _from_settings(cls, old: Any, new: Any, path: Any, kwargs: dict[str, Any], overrides: dict[str, Any]) -> Any:
        loaded = settings.current(path)
        kwargs = {**kwargs, **overrides}
        phase = kwargs.pop("phase", None)
        made_here = phase is None
        if made_here:
            phase = phase_source(None, settings=loaded)
        # PhasedPair has no constructor of its own (it mixes into BaseCheckpointSaver or BaseStore);
        # each subclass's takes (old, new, phase, **keyword settings).
        construct: Callable[..., Any] = cls
        pair = construct(old, new, phase, **kwargs)
        # A source made here is the pair's own: closed with it (a polling source would otherwise
        # keep heartbeating as a live replica after the pair closed).
        pair._owns_phase_source = pair._owns_phase_source or made_here
        return pair

    @property
    def phase(self) -> Phase:
        return self.phase_source.current()

    @phase.setter
    def phase(self, value: Phase | str) -> None:
        self._leave_phase_source()
        self.phase_source, self._owns_phase_source = StaticPhase(value, "set at runtime"), True
        log.info("phase_changed", phase=str(self.phase))

    @property
    def phase_origin(self) -> str:
        return str(getattr(self.phase_source, "origin", "phase source"))

    def store(self, role: Role) -> Any:
        return self.old if role == "old" else self.new

    def _context(self, phase: Phase, **options: Any) -> plans.Context:
        """What a plan knows, for a call that started in `phase`."""
        behind = self.write_behind and phase is Phase.SHADOW_WRITE
        return plans.Context(route_for(phase), self.strict, write_behind=behind, breakers=self.breakers, **options)

    def _leave_phase_source(self) -> None:
        """Stop counting this pair's journal in the source's heartbeat, and stop a polling
        source this pair created once no other pair follows it (`release`). A source passed in
        belongs to the caller."""
        source = self.phase_source
        if hasattr(source, "unfollow_journal"):
            source.unfollow_journal(self.recorder)
        if self._owns_phase_source:
            if hasattr(source, "release"):
                source.release()
            elif hasattr(source, "close"):
                source.close()

    def _release(self) -> None:
        self._leave_phase_source()
