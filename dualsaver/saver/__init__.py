"""The live composite saver: `DualSaver(old, new)` is a `BaseCheckpointSaver` that writes to
both stores and reads from the phase's read store.

- `routing`: the per-phase routing table and the tiered route (pure data);
- `_tiered`: `TieredSaver(durable, hot)`, the tiered route made permanent; `_tier_plans`: its
  reads, checked against the durable store so they are never stale;
- `_plans`: every operation written once, as a plan; `_shells`: the sync and async shells
  that run them; `_recorder`: counting, logging and journaling what a store missed;
- `_writebehind`: the background queue of shadow-write; `_capabilities`: extended methods
  present only when both stores have them; `_versions`: channel versions across formats;
  `_shadow`: shadow-read comparison and the canary's hash;
- `_dual_store`: `DualStore(old, new)`, the long-term store's composite (a `BaseStore`) on the
  same table, phase, recorder and shells; `_store_plans`: its batch as a plan; `_item_copy`:
  its lazy copy of items; `_pair`: what the composites share (phase, recorder, lifecycle).
"""

from dualsaver.saver._dual import DualSaver
from dualsaver.saver._dual_store import DualStore
from dualsaver.saver._tiered import TieredSaver
from dualsaver.saver.routing import ROUTES, TIERED, Mode, Role, Route, route_for

__all__ = ["DualSaver", "DualStore", "TieredSaver", "ROUTES", "TIERED", "Mode", "Role", "Route", "route_for"]
