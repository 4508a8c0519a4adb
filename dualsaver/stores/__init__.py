"""Stores: opening checkpointers from URLs, and reading and writing each backend's own rows.

- `open_saver(url)` / `aopen_saver(url)`: context managers yielding a ready saver (tables set
  up) for ``sqlite:///``, ``postgresql://`` / ``postgres://``, ``redis://`` / ``rediss://`` /
  ``redis+cluster://`` / ``redis+sentinel://`` (dualsaver's Redis saver),
  ``redis+langgraph://`` (the official langgraph-checkpoint-redis saver),
  ``python:module:factory`` (any saver a factory makes) and ``memory://`` (tests). Anything
  that goes wrong while opening raises `StoreURLError` with one line naming the redacted URL.
- `native_for(saver)` / `anative_for(saver)`: the `NativeStore` / `AsyncNativeStore` that
  reads and writes a saver's rows below the public API (`native.py` has the contract); the
  public-API fallback (``exact=False``) for savers without a native adapter.
- `Capable(saver)` / `offers_capability(saver, name)`: a saver's extended capabilities
  (`delete_for_runs`, `copy_thread`, `prune` and their async forms), its own or done through
  its native store (`_capabilities`).
- `store_identity(saver)`: a stable, password-free name for the store behind a saver;
  `same_store(a, b)`: whether two savers certainly reach one store (`refuse_same_store` raises
  `SameStore`: a backfill, check or repair needs two).
- `probe.probe_store(url)`: whether a store answers and holds checkpoint tables, creating nothing.

The adapters are internal (`_sqlite`, `_postgres`, `_memory`, `_redis`, `_langgraph_redis`,
`_public`), each a set of plans over one backend's schema with a sync and an async shell
(`_sql`); `_factory` and `_langgraph_redis_saver` open savers from URLs.
"""

from dualsaver.errors import StoreUnreachable, StoreURLError
from dualsaver.redact import redact
from dualsaver.stores._adapters import ThreadedStore, anative_for, native_for
from dualsaver.stores._capabilities import CAPABILITIES, Capable, offers_capability
from dualsaver.stores._open import aopen_saver, open_saver
from dualsaver.stores.identity import refuse_same_store, same_store, store_fingerprint, store_identity
from dualsaver.stores.native import (
    AsyncNativeStore,
    NativeStore,
    StoredCheckpoint,
    StoredWrite,
    Unreadable,
    in_shard,
    shard_of,
)

__all__ = [
    "CAPABILITIES",
    "AsyncNativeStore",
    "Capable",
    "NativeStore",
    "StoreURLError",
    "StoreUnreachable",
    "StoredCheckpoint",
    "StoredWrite",
    "ThreadedStore",
    "Unreadable",
    "anative_for",
    "aopen_saver",
    "in_shard",
    "native_for",
    "offers_capability",
    "open_saver",
    "redact",
    "refuse_same_store",
    "same_store",
    "shard_of",
    "store_fingerprint",
    "store_identity",
]
