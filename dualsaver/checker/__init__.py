"""The consistency checker: a streaming diff of two stores, re-checked before it reports.

- `check(old, new)` / `acheck(...)`: the run (`_run`: plans and shells; `_bookkeeping`:
  rounds, suspects, the summary); `processes=N` runs it as N processes, one shard each
  (`_processes`), whose reports merge into one (`_merge`);
- `findings`: the six kinds of divergence, `Divergence` and `DivergenceReport`;
- `_diff`: the pure per-thread diff of fingerprints;
- `canonical`: canonical forms and digests, so stores with different serializers compare
  by content, and reports show digests rather than conversation values.
"""

from dualsaver.checker._bookkeeping import CheckProgress
from dualsaver.checker._run import DEFAULT_BACKOFF, acheck, check
from dualsaver.checker.canonical import canonical, digest
from dualsaver.checker.findings import KINDS, Divergence, DivergenceReport
from dualsaver.errors import CheckError

__all__ = [
    "CheckError",
    "CheckProgress",
    "DEFAULT_BACKOFF",
    "Divergence",
    "DivergenceReport",
    "KINDS",
    "acheck",
    "canonical",
    "check",
    "digest",
]
