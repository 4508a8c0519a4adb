"""The backfill's durable progress record; it lives in `dualsaver.control.progress` (the items'
backfill keeps its progress there too), re-exported here where the checkpoints' job found it."""

from dualsaver.control.progress import (  # noqa: F401
    DEFAULT_PATH, ENV_PATH, BackfillState, FleetProgress, job_key, open_progress,
)
