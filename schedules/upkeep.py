"""Upkeep: nightly index-health checks over every book and the library report, weekly Postgres maintenance
and Qdrant segment merge; the library report again after ingests (its automation condition, evaluated by
`library_upkeep`)."""

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    DefaultScheduleStatus,
    OpExecutionContext,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    job,
    op,
    schedule,
)

from corpus_assets.assets.report import library_report
from corpus_assets.batches import partition_ranges, range_tags
from corpus_assets.checks import book_checks
from corpus_assets.partitions import QDRANT_POOL, books_partitions
from resources.postgres import PostgresResource
from resources.qdrant import QdrantResource

# Checks are cheap next to ingest (a few queries per book), so a run covers many books.
BOOKS_PER_CHECK_RUN = 500

check_all_books = define_asset_job(
    "check_all_books",
    selection=AssetSelection.checks(*book_checks),
    description="Every asset check on the selected books, without re-materializing anything.",
)

report_library = define_asset_job(
    "report_library",
    selection=AssetSelection.assets(library_report),
    description="The library report (every book in one table) and its check that the stores agree.",
)

# The report's automation condition (after any book's indexes change, once no run of them is in flight),
# evaluated once a minute: Dagster's default automation sensor starts stopped.
library_upkeep = AutomationConditionSensorDefinition(
    "library_upkeep", target=AssetSelection.assets(library_report), minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Refreshes the library report after ingests (its automation condition).",
)


@schedule(job=check_all_books, cron_schedule="0 3 * * *", default_status=DefaultScheduleStatus.RUNNING)
def nightly_checks(context: ScheduleEvaluationContext):
    """All books' checks every night, BOOKS_PER_CHECK_RUN books per run; failures show per book."""
    books = context.instance.get_dynamic_partitions(books_partitions.name)
    if not books:
        return SkipReason("no books registered yet")
    return [
        RunRequest(tags=range_tags(batch))
        for batch in partition_ranges(books, books, BOOKS_PER_CHECK_RUN)
    ]


@schedule(job=report_library, cron_schedule="30 3 * * *", default_status=DefaultScheduleStatus.RUNNING)
def nightly_library_report(context: ScheduleEvaluationContext):
    """The library report every night, after the nightly checks."""
    return RunRequest()


@op
def vacuum_analyze_and_reindex(context: OpExecutionContext, postgres: PostgresResource) -> None:
    """Refresh planner statistics after large loads and rebuild an HNSW index a crash left invalid."""
    with postgres.db() as db:
        rebuilt = db.vacuum_and_reindex()
    for name in rebuilt:
        context.log.warning(f"index {name} was invalid; rebuilt it")
    context.log.info(f"VACUUM ANALYZE done; {len(rebuilt)} invalid indexes rebuilt")


@job(description="VACUUM ANALYZE the corpus tables and rebuild invalid indexes.")
def maintain_postgres():
    vacuum_analyze_and_reindex()


@schedule(job=maintain_postgres, cron_schedule="0 4 * * 0", default_status=DefaultScheduleStatus.RUNNING)
def weekly_postgres_maintenance(context: ScheduleEvaluationContext):
    return RunRequest()


@op(pool=QDRANT_POOL)  # ingest's Qdrant writes wait while the copy is merged: none is lost in the swap
def merge_qdrant_segments(context: OpExecutionContext, qdrant: QdrantResource) -> None:
    """Merge the Qdrant collection's segments into a few large ones: a search walks one HNSW graph per
    segment. A copy is merged while searches go on, then swapped in."""
    merge = qdrant.merge_segments()
    (context.log.warning if merge.went_wrong else context.log.info)(f"Qdrant segment merge: {merge.outcome}")
    context.add_output_metadata({
        "outcome": merge.outcome, "segments before": merge.segments_before, "segments after": merge.segments_after,
        "points": merge.points, "seconds": merge.seconds,
    })


@job(description="Merge the Qdrant collection's segments (a copy merged while searches go on, then swapped in).")
def merge_qdrant():
    merge_qdrant_segments()


@schedule(job=merge_qdrant, cron_schedule="30 4 * * 0", default_status=DefaultScheduleStatus.RUNNING)
def weekly_qdrant_merge(context: ScheduleEvaluationContext):
    """Sundays after the Postgres maintenance; a shard of few segments is left as it is."""
    return RunRequest()
