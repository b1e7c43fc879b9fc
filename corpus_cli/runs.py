"""Launching ingest and repair runs of the code location's jobs, several books per ingest run."""

from collections.abc import Callable
from dataclasses import dataclass

from dagster import DagsterEventType, DagsterInstance, DagsterRun

from corpus_assets.batches import books_tag, ensure_pools, partition_ranges, range_tags
from corpus_assets.definitions import defs
from corpus_assets.library_plan import failure_reason
from corpus_assets.partitions import books_partitions
from resources.postgres.store import BookFailure

# The terminal shows a progress bar and a summary; Dagster's own console log (INFO and up, with a
# failed step's traceback) only with `--verbose`. Every event stays in the run's event log.
_QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
_INFO_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass(frozen=True)
class BooksRun:
    """One Dagster run over some books (an ingest batch or a removal) and how it ended."""

    run_id: str
    book_ids: list[str]
    success: bool
    error: str | None


@dataclass(frozen=True)
class IngestOutcome:
    runs: list[BooksRun]
    ingested: list[str]
    failed: dict[str, BookFailure]  # each failed book's stage and problem


def ingest_in_runs(
    instance: DagsterInstance,
    book_ids: list[str],
    per_run: int,
    record_failures: Callable[[DagsterRun], dict[str, BookFailure]],
    verbose: bool = False,
    on_start: Callable[[int], None] = lambda total: None,
    on_books_done: Callable[[int], None] = lambda count: None,
) -> IngestOutcome:
    """Run `ingest_books` for the books, `per_run` books per run; a bad book never holds back another.

    Dagster fails a multi-partition run as a whole (dagster#17836): when a run fails, the books it
    failed for are recorded (`record_failures`) and its other books run again without them. They
    cost little the second time: their embeddings come from the cache and unchanged writes are skipped.
    """
    job = defs.resolve_job_def("ingest_books")
    ensure_pools(instance)
    all_keys = instance.get_dynamic_partitions(books_partitions.name)
    queue = partition_ranges(all_keys, book_ids, per_run)
    on_start(sum(len(books) for books in queue))
    runs: list[BooksRun] = []
    ingested: list[str] = []
    failed: dict[str, BookFailure] = {}
    while queue:
        books = queue.pop(0)
        result = job.execute_in_process(
            instance=instance, tags=range_tags(books), raise_on_error=False,
            run_config=_INFO_LOGS if verbose else _QUIET_LOGS,
        )
        runs.append(BooksRun(result.run_id, books, result.success, _failure_reason(result)))
        if result.success:
            ingested += books
            on_books_done(len(books))
            continue
        named = {book: f for book, f in record_failures(result.dagster_run).items() if book in books}
        if not named:  # the run failed as a whole, naming no book: each of its books failed with it
            named = {book: BookFailure(book, None, "run", runs[-1].error or "unknown error", False, result.run_id)
                     for book in books}
        failed |= named
        on_books_done(len(named))
        queue[0:0] = partition_ranges(all_keys, [book for book in books if book not in named], per_run)
    return IngestOutcome(runs, ingested, failed)


def remove_in_run(instance: DagsterInstance, book_ids: list[str]) -> BooksRun:
    """Run `remove_books` for the books: every store, their artifacts, then their partitions."""
    result = defs.resolve_job_def("remove_books").execute_in_process(
        instance=instance, raise_on_error=False, tags=books_tag(book_ids),
        run_config={**_QUIET_LOGS, "ops": {"remove_books_from_stores": {"config": {"book_ids": book_ids}}}},
    )
    return BooksRun(result.run_id, book_ids, result.success, _failure_reason(result))


@dataclass(frozen=True)
class RepairRun:
    run_id: str
    success: bool
    error: str | None
    summary: str


def repair_in_run(instance: DagsterInstance, book_ids: list[str]) -> RepairRun:
    """Run `repair_stores` for the books (empty: every drifted book and orphan) as a Dagster run."""
    result = defs.resolve_job_def("repair_stores").execute_in_process(
        instance=instance, raise_on_error=False, tags=books_tag(book_ids),
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
