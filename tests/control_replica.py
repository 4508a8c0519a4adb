"""One replica of the control-store fleet test, in its own working directory (no shared disk).

    python -m tests.control_replica INDEX     (URLs in $CTRL_OLD_URL, $CTRL_NEW_URL and
                                              $DUALSAVER_CONTROL_URL; start time in $CTRL_START_AT)

All replicas start at the same moment against fresh databases (the stores' and the control
store's tables are created by whoever comes first). The secondary (new) is down: every write
to it fails, so each is journaled, to the control store, through this replica's spool. The
replica prints the threads it talked on, one JSON line, and exits (closing ships the spool).
"""

from __future__ import annotations

import json
import os
import sys
import time

from dualsaver import DualSaver, Phase
from dualsaver.demo.app import QUESTIONS, build_support_agent, say
from dualsaver.stores import open_saver
from tests.faulty import Faulty


def main() -> int:
    index = int(sys.argv[1])
    time.sleep(max(0.0, float(os.environ["CTRL_START_AT"]) - time.time()))
    threads = [f"replica{index}-conversation{n}" for n in range(2)]
    with open_saver(os.environ["CTRL_OLD_URL"]) as old, open_saver(os.environ["CTRL_NEW_URL"]) as healthy_new:
        new = Faulty(healthy_new)
        new.mode = "raise"  # the secondary is down for this whole run
        with DualSaver(old, new, Phase.BACKFILL, circuit_cool_down=None) as saver:
            app = build_support_agent(saver)
            for turn in range(int(os.environ.get("CTRL_TURNS", "2"))):
                for thread_id in threads:
                    say(app, thread_id, QUESTIONS[turn % len(QUESTIONS)])
            missed = saver.secondary_failures.total()
    print(json.dumps({"threads": threads, "missed": missed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
