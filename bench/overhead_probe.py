"""The flow-run command of ``bench_overhead.py``'s process work pool: it runs Prefect's own
engine command (``python -m prefect.engine``, or the module named by its argument) as its
child and writes, for the flow run, the child's wall time and CPU seconds (its rusage) into
``$OVERHEAD_PROBE_DIR/<run id>.json``.

Only the standard library is imported here, so the probe adds a bare interpreter's start
(about 20 ms of wall time, none of the measured CPU) to what the worker would do anyway.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    started = time.time()
    module = sys.argv[1] if len(sys.argv) > 1 else "prefect.engine"
    done = subprocess.run([sys.executable, "-m", module], check=False)
    ended = time.time()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    run_id = os.environ.get("PREFECT__FLOW_RUN_ID", "unknown")
    out = Path(os.environ["OVERHEAD_PROBE_DIR"]) / f"{run_id}.json"
    out.write_text(
        json.dumps(
            {
                "started": started,
                "ended": ended,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "max_rss_kb": usage.ru_maxrss,
                "returncode": done.returncode,
            }
        ),
        encoding="utf-8",
    )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
