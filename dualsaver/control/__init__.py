"""Phase control: the phase and its rules, where a process's phase comes from, the settings
file, the fleet's control store, the migration's evidence, and the secondary-failure journal.

- `phase`: `Phase` and the transition rules (pure; imports only the error tree);
- `settings`: the TOML settings file a fleet shares;
- `sources`: where a DualSaver reads its phase (argument, environment, settings, control store);
- `record`: the control store in PostgreSQL or Redis (`ControlStore`, `open_control_store`; the
  older names `PhaseRecord` and `open_phase_record` still work);
- `evidence`: what the backfill and the check recorded, for the read-switch guard;
- `journal`: the durable record of writes a store missed, for repair.
"""

from dualsaver.control.journal import Journal, JournalEntry
from dualsaver.control.phase import Evidence, Phase, check_transition, guard_transition
from dualsaver.control.record import ControlStore, PhaseRecord, open_control_store, open_phase_record
from dualsaver.control.settings import Settings
from dualsaver.control.sources import PhaseSource, PollingPhaseSource, StaticPhase, phase_source, resolve_phase

__all__ = [
    "ControlStore",
    "Evidence",
    "Journal",
    "JournalEntry",
    "Phase",
    "PhaseRecord",
    "PhaseSource",
    "PollingPhaseSource",
    "Settings",
    "StaticPhase",
    "check_transition",
    "guard_transition",
    "open_control_store",
    "open_phase_record",
    "phase_source",
    "resolve_phase",
]
