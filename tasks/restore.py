"""Tasks of a restore: refuse early, finish an interrupted one, stage, swap (or discard)."""

from __future__ import annotations

from prefect import get_run_logger, task

from daai_backup import operations
from daai_backup.moments import MomentPlan
from daai_backup.operations import EngineContext, RestoreOutcome, StagedOutcome
from daai_backup.repository.catalog import BackupEntry
from daai_backup.tenants import Tenant
from tasks.common import DATA_TASK, report_progress, retry_if_transient

CHECK_TIMEOUT_SECONDS = 300
RESTORE_TIMEOUT_SECONDS = 12 * 3600
#: A swap by copy (servers whose rename loses options) is O(data), like a restore.
SWAP_TIMEOUT_SECONDS = RESTORE_TIMEOUT_SECONDS


@task(
    name="preflight-restore",
    task_run_name="preflight-restore-{tenant.id}",
    timeout_seconds=CHECK_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def preflight_restore(
    ctx: EngineContext, tenant: Tenant, filename: str, actor: str | None
) -> BackupEntry:
    """Refuse a restore that must not start (permission, file, key, safety backup possible)."""
    entry = operations.preflight_restore(ctx, tenant, filename, actor=actor)
    get_run_logger().info("tenant %s: %s can be restored by %s", tenant.id, filename, actor)
    return entry


@task(
    name="finish-interrupted-restore",
    task_run_name="finish-interrupted-restore-{tenant.id}",
    timeout_seconds=SWAP_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def finish_interrupted_restore(ctx: EngineContext, tenant: Tenant) -> bool:
    """Finish the swap of an earlier restore that stopped midway (idempotent, so retried)."""
    finished = operations.finish_interrupted_restore(ctx, tenant)
    if finished:
        get_run_logger().warning(
            "tenant %s: finished the interrupted swap of an earlier restore of database %s",
            tenant.id,
            tenant.database,
        )
    return finished


@task(
    name="clean-abandoned-restore",
    task_run_name="clean-abandoned-restore-{tenant.id}",
    timeout_seconds=SWAP_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def clean_abandoned_restore(ctx: EngineContext, tenant: Tenant) -> str | None:
    """Drop a killed restore's staged copy, or finish its swap (idempotent, so retried).

    Never from inside a restore: its own staged copy would look abandoned.
    """
    done = operations.clean_abandoned_restore(ctx, tenant)
    if done:
        get_run_logger().warning("tenant %s: %s", tenant.id, done)
    return done


@task(
    name="stage-restore",
    task_run_name="stage-restore-{tenant.id}",
    timeout_seconds=RESTORE_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def stage_restore(ctx: EngineContext, tenant: Tenant, filename: str) -> StagedOutcome:
    """Load the backup beside the live data and verify it whole; nothing live changes."""
    staged = operations.stage_restore(ctx, tenant, filename, progress=report_progress)
    get_run_logger().info(
        "tenant %s: staged %s: %d collections, %d documents, verified, in %.1f s",
        tenant.id,
        filename,
        staged.collections,
        staged.documents,
        staged.duration_s,
    )
    return staged


@task(
    name="swap-restore",
    task_run_name="swap-restore-{tenant.id}",
    timeout_seconds=SWAP_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def swap_restore(ctx: EngineContext, tenant: Tenant, staged: StagedOutcome) -> RestoreOutcome:
    """Put the staged copy in place (a retry finishes a swap a failure interrupted)."""
    outcome = operations.swap_restore(ctx, tenant, staged)
    get_run_logger().info(
        "tenant %s: restored %s: %d collections, %d documents, %d dropped, in %.1f s",
        tenant.id,
        staged.file,
        outcome.collections,
        outcome.documents,
        len(outcome.dropped),
        outcome.duration_s,
    )
    return outcome


@task(
    name="discard-restore",
    task_run_name="discard-restore-{tenant.id}",
    timeout_seconds=CHECK_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def discard_restore(ctx: EngineContext, tenant: Tenant, staged: StagedOutcome) -> bool:
    """Drop a staged copy that will not be swapped in (live data was never touched)."""
    dropped = operations.discard_restore(ctx, tenant, staged)
    if dropped:
        get_run_logger().info("tenant %s: dropped the staged copy of %s", tenant.id, staged.file)
    return dropped


@task(
    name="plan-moment",
    task_run_name="plan-moment-{tenant.id}",
    timeout_seconds=CHECK_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def plan_moment(ctx: EngineContext, tenant: Tenant, at: str) -> MomentPlan:
    """Pick the snapshot a restore to the moment ``at`` starts from; refuse an uncovered one."""
    plan = operations.plan_moment(ctx, tenant, at)
    get_run_logger().info(
        "tenant %s: %s is reached from %s plus the captured changes",
        tenant.id,
        plan.moment.isoformat(),
        plan.file,
    )
    return plan


@task(
    name="replay-changes",
    task_run_name="replay-changes-{tenant.id}",
    timeout_seconds=RESTORE_TIMEOUT_SECONDS,
    # Not retried: a failed replay drops the staged copy, so only a new staging can follow.
    **{**DATA_TASK, "retries": 0},
)
def replay_changes(
    ctx: EngineContext, tenant: Tenant, staged: StagedOutcome, plan: MomentPlan
) -> StagedOutcome:
    """Replay the captured changes onto the staged copy up to the moment; verify it again."""
    replayed = operations.replay_to_moment(ctx, tenant, staged, plan)
    get_run_logger().info(
        "tenant %s: replayed %d change events onto the staged copy: %d collections, "
        "%d documents, verified",
        tenant.id,
        replayed.replayed_events,
        replayed.collections,
        replayed.documents,
    )
    return replayed
