"""One replica of the fleet test: a real graph over a DualSaver that follows the phase record.

    python -m tests.fleet_replica INDEX OUT_DIR      (URLs in $FLEET_OLD_URL, $FLEET_NEW_URL,
                                                     $FLEET_RECORD_URL: never on a command line)

It runs turns of the demo support agent round-robin over its own conversations until
OUT_DIR/stop exists. After every turn that returned (an acknowledged turn) it appends one
JSON line to OUT_DIR/acks-INDEX.jsonl: the thread, the checkpoint id the turn ended on, the
message count the graph returned and the phase the turn ran in. A turn that raised goes to
OUT_DIR/errors-INDEX.jsonl instead.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from dualsaver import DualSaver
from dualsaver.demo.app import QUESTIONS, build_support_agent, say
from dualsaver.observability.logs import configure_logging
from dualsaver.control.sources import PollingPhaseSource
from dualsaver.control.record import open_phase_record
from dualsaver.stores import open_saver

THREADS_PER_REPLICA = 3


def main() -> int:
    index, out = int(sys.argv[1]), Path(sys.argv[2])
    configure_logging(fmt="json", log_file=out / f"replica-{index}.log")
    source = PollingPhaseSource(
        open_phase_record(os.environ["FLEET_RECORD_URL"]),
        interval=float(os.environ.get("FLEET_POLL_INTERVAL", "0.1")),
        replica_id=f"replica-{index}",
    )
    acks = (out / f"acks-{index}.jsonl").open("a")
    errors = (out / f"errors-{index}.jsonl").open("a")
    with open_saver(os.environ["FLEET_OLD_URL"]) as old, open_saver(os.environ["FLEET_NEW_URL"]) as new:
        saver = DualSaver(old, new, phase=source, journal=out / f"journal-{index}.sqlite", secondary_timeout=30)
        app = build_support_agent(saver)
        turn = 0
        while not (out / "stop").exists():
            thread_id = f"replica{index}-conversation{turn % THREADS_PER_REPLICA}"
            phase = saver.phase.value
            try:
                result = say(app, thread_id, QUESTIONS[turn % len(QUESTIONS)])
                config = {"configurable": {"thread_id": thread_id}}
                checkpoint_id = app.get_state(config).config["configurable"]["checkpoint_id"]
            except Exception as exc:
                errors.write(json.dumps({"thread": thread_id, "phase": phase, "error": repr(exc)}) + "\n")
                errors.flush()
                time.sleep(0.05)
                continue
            record = {
                "thread": thread_id,
                "checkpoint_id": checkpoint_id,
                "messages": len(result["messages"]),
                "phase": phase,
            }
            acks.write(json.dumps(record) + "\n")
            acks.flush()
            turn += 1
        saver.close()
    source.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
