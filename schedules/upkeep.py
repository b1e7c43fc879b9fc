"""Upkeep: nightly index-health checks over every book and the library report, weekly Postgres maintenance;
the library report again after ingests (its automation condition, evaluated by `library_upkeep`)."""

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
from corpus_assets.partitions import books_partitions
from resources.postgres import PostgresResource

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
