"""dualsaver: move LangGraph checkpoints between checkpointers with no downtime.

    from dualsaver import DualSaver, backfill, check, repair, open_saver

    graph = builder.compile(checkpointer=DualSaver(old, new))   # the one code change
    backfill(old, new)                                          # copy the history new lacks
    preflight(old, new).findings                                # what new cannot hold faithfully
    report = check(old, new)                                    # do the stores agree?
    repair(old, new, repairs=repairs_from_report(report))       # copy again what differs

The long-term store (LangGraph's `BaseStore`) migrates beside the checkpoints, by the same phase:

    store = DualStore.from_settings(old_store, new_store)        # graph.compile(..., store=store)
    backfill_items(old_store, new_store)                         # every item, its times, TTL, vectors
    report = check_items(old_store, new_store)                   # do the items agree?
    repair_items(old_store, new_store, report.affected_items())  # copy again what differs

Every callable has an async twin (`abackfill`, `apreflight`, `acheck`, `arepair`, `aopen_saver`,
`abackfill_items`, `acheck_items`, `arepair_items`, `aopen_item_store`). Every exception is a
`DualSaverError` (the tree is drawn in `dualsaver.errors`).
"""

from dualsaver.checker import DivergenceReport, acheck, check
from dualsaver.control import Journal, JournalEntry, Phase
from dualsaver.errors import (
    CheckError,
    CircuitOpen,
    ConcurrentChange,
    CopyFailed,
    DualSaverError,
    EmbeddedServerError,
    ServerStartError,
    InvalidPhaseError,
    MissingExtra,
    LossyValue,
    NotReplicated,
    PreflightRefused,
    RecordUnavailable,
    SameStore,
    SecondaryTimeout,
    SecondaryWriteError,
    SettingsError,
    StoreUnreachable,
    StoreURLError,
    TransitionError,
    UnreadableRow,
    WriteAbandoned,
)
from dualsaver.items import (
    abackfill_items,
    acheck_items,
    aopen_item_store,
    arepair_items,
    backfill_items,
    check_items,
    missed_from_journal,
    keys_from_journal,
    open_item_store,
    repair_items,
)
from dualsaver.migrate import abackfill, arepair, backfill, repair, repairs_from_journal, repairs_from_report
from dualsaver.preflight import PreflightReport, apreflight, preflight
from dualsaver.saver import DualSaver, DualStore, TieredSaver
from dualsaver.stores import aopen_saver, open_saver

__all__ = [
    "TieredSaver",
    "CheckError",
    "CircuitOpen",
    "ConcurrentChange",
    "CopyFailed",
    "DivergenceReport",
    "DualSaver",
    "DualStore",
    "DualSaverError",
    "EmbeddedServerError",
    "ServerStartError",
    "InvalidPhaseError",
    "MissingExtra",
    "Journal",
    "JournalEntry",
    "LossyValue",
    "NotReplicated",
    "Phase",
    "PreflightRefused",
    "PreflightReport",
    "RecordUnavailable",
    "SameStore",
    "SecondaryTimeout",
    "SecondaryWriteError",
    "SettingsError",
    "StoreURLError",
    "StoreUnreachable",
    "TransitionError",
    "UnreadableRow",
    "WriteAbandoned",
    "abackfill",
    "abackfill_items",
    "acheck",
    "acheck_items",
    "aopen_item_store",
    "arepair_items",
    "backfill_items",
    "check_items",
    "missed_from_journal",
    "keys_from_journal",
    "open_item_store",
    "repair_items",
    "aopen_saver",
    "apreflight",
    "arepair",
    "backfill",
    "check",
    "open_saver",
    "preflight",
    "repair",
    "repairs_from_journal",
    "repairs_from_report",
]
__version__ = "0.1.0"
