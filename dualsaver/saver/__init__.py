"""The live composite saver: `DualSaver(old, new)` is a `BaseCheckpointSaver` that writes to
both stores and reads from the phase's read store.

- `routing`: the per-phase routing table (pure data);
- `_plans`: every operation written once, as a plan; `_shells`: the sync and async shells
  that run them; `_recorder`: counting, logging and journaling what a store missed;
- `_writebehind`: the background queue of shadow-write; `_capabilities`: extended methods
  present only when both stores have them; `_versions`: channel versions across formats;
  `_shadow`: shadow-read comparison and the canary's hash.
"""

from dualsaver.saver._dual import DualSaver
from dualsaver.saver.routing import ROUTES, Role, Route, route_for

__all__ = ["DualSaver", "ROUTES", "Role", "Route", "route_for"]
