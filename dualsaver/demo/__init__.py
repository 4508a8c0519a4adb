"""`dualsaver demo`: a full migration on embedded stores, narrated (`_walkthrough`), with the
small LangGraph support agent it runs (`app`, also used by the benchmarks and tests)."""

from dualsaver.demo._walkthrough import run_demo
from dualsaver.demo.app import QUESTIONS, build_support_agent, say

__all__ = ["QUESTIONS", "build_support_agent", "run_demo", "say"]
