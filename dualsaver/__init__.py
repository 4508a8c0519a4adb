"""dualsaver: move LangGraph checkpoints between checkpointers with no downtime."""

from dualsaver.journal import Journal, JournalEntry
from dualsaver.phase import InvalidPhaseError, Phase, TransitionError
from dualsaver.plans import SecondaryTimeout, SecondaryWriteError
from dualsaver.saver import DualSaver

__all__ = [
    "DualSaver",
    "InvalidPhaseError",
    "Journal",
    "JournalEntry",
    "Phase",
    "SecondaryTimeout",
    "SecondaryWriteError",
    "TransitionError",
]
__version__ = "0.1.0"
