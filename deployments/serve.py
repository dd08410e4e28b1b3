"""The embedded default: sync, then serve every deployment from this one process.

``python -m deployments.serve`` (started by ``deployments.stack`` with ``PREFECT_API_URL``
pointing at the local server). Runs execute as subprocesses of this process, in the project
directory, with this process's environment (the key and ``DAAI_BACKUP_*`` settings).

``pause_on_shutdown=False``: stopping the stack must not pause every tenant's schedule (the
default of ``serve`` does), or the next ``make up`` would come back with nothing scheduled.
A tenant added to the registry while serving gets its deployment at the next hourly sync, but
runs only once the stack restarts (a served process runs the deployments it was started
with); at scale, workers of a work pool pick up new deployments at once.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from daai_backup.operations import load_context
from deployments.build import desired_specs, load_flows, to_runner
from deployments.sync import sync_deployments


def serve_all(*, limit: int | None = None) -> None:
    """Sync deployments with the registry, create the cluster's limit, serve everything."""
    from prefect import serve

    from deployments.crashed_runs import ensure_crash_detection
    from tasks.common import ensure_limits

    ctx = load_context()
    now = datetime.now(UTC)
    flows = load_flows()
    report = sync_deployments(ctx.registry.values(), settings=ctx.settings, now=now, flows=flows)
    print(f"deployments: {report.summary()}", flush=True)
    ensure_limits(ctx.settings)
    ensure_crash_detection()
    specs = desired_specs(ctx.registry.values(), settings=ctx.settings, now=now)
    runners = [to_runner(spec, flows) for spec in specs]
    print(f"serving {len(runners)} deployments", flush=True)
    serve(*runners, pause_on_shutdown=False, print_starting_message=False, limit=limit)


def main() -> int:
    try:
        serve_all()
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
