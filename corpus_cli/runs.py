"""Launching ingest and repair runs of the code location's jobs, several books per ingest run."""

from collections.abc import Callable
from dataclasses import dataclass

from dagster import DagsterEventType, DagsterInstance

from corpus_assets.batches import ensure_pools, partition_ranges, range_tags
from corpus_assets.definitions import defs
from corpus_assets.partitions import books_partitions

# Step-level DEBUG events stay in the event log; the terminal shows INFO and above.
_INFO_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass(frozen=True)
class IngestRun:
    run_id: str
    book_ids: list[str]
    success: bool
    error: str | None


def ingest_in_runs(
    instance: DagsterInstance,
    book_ids: list[str] | None,
    per_run: int,
    on_start: Callable[[int], None] = lambda total: None,
    on_run_done: Callable[[IngestRun], None] = lambda run: None,
) -> list[IngestRun]:
    """Run `ingest_books` for the books (default: all registered), `per_run` books per run."""
    job = defs.resolve_job_def("ingest_books")
    ensure_pools(instance)
    all_keys = instance.get_dynamic_partitions(books_partitions.name)
    runs = partition_ranges(all_keys, book_ids or all_keys, per_run)
    on_start(sum(len(run) for run in runs))
    results = []
    for books in runs:
        result = job.execute_in_process(
            instance=instance,
            tags=range_tags(books),
            raise_on_error=False,
            run_config=_INFO_LOGS,
        )
        results.append(IngestRun(result.run_id, books, result.success, _failure_reason(result)))
        on_run_done(results[-1])
    return results


@dataclass(frozen=True)
class RepairRun:
    run_id: str
    success: bool
    error: str | None
    summary: str


def repair_in_run(instance: DagsterInstance, book_ids: list[str]) -> RepairRun:
    """Run `repair_stores` for the books (empty: every drifted book and orphan) as a Dagster run."""
    result = defs.resolve_job_def("repair_stores").execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={**_INFO_LOGS, "ops": {"resync_stores_from_postgres": {"config": {"book_ids": book_ids}}}},
    )
    metadata = {}
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_OUTPUT:
            metadata = {k: v.value for k, v in event.step_output_data.metadata.items()}
    summary = ", ".join(f"{metadata.get(k, 0)} {k}" for k in ("books checked", "books rewritten", "orphans removed"))
    return RepairRun(result.run_id, result.success, _failure_reason(result), summary)


def _failure_reason(result) -> str | None:
    """Why the run failed: its first failed step's reason (see `failure_reason`), else the run's own error."""
    failure = next((event for event in result.all_events if event.is_step_failure), None)
    if failure is not None:
        return failure_reason(failure)
    run_failure = next((event for event in result.all_events if event.event_type == DagsterEventType.RUN_FAILURE), None)
    return run_failure.message if run_failure else None


def failure_reason(step_failure) -> str:
    """A failed step's own description (for `Failure`s: which books and why); after retries ran
    out, the error that caused the last one rather than "Exceeded max_retries"."""
    data = step_failure.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    if error is not None and error.message.startswith("Exceeded max_retries") and error.cause is not None:
        error = error.cause  # the last attempt's own error
    return error.message.strip() if error else "unknown error"
