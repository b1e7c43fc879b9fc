"""Launching ingest runs of several books each, as a batched backfill would."""

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy.exc
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from corpus_assets.partitions import EMBEDDING_POOL, QDRANT_POOL, books_partitions


# Step-level DEBUG events stay in the event log; the terminal shows INFO and above.
_INFO_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass(frozen=True)
class IngestRun:
    run_id: str
    book_ids: list[str]
    success: bool
    error: str | None


def partition_ranges(all_keys: list[str], selected: list[str], per_run: int) -> list[list[str]]:
    """Split `selected` into runs of at most `per_run` books that are contiguous in `all_keys`.

    A run covers a partition *range* (first...last in the partitions' order), so a run may only
    hold books that sit next to each other in that order.
    """
    position = {key: i for i, key in enumerate(all_keys)}
    unknown = [key for key in selected if key not in position]
    if unknown:
        raise ValueError(f"books not registered: {', '.join(unknown)} (run `corpus register`)")
    runs: list[list[str]] = []
    for key in sorted(set(selected), key=position.__getitem__):
        current = runs[-1] if runs else None
        if current and len(current) < per_run and position[key] == position[current[-1]] + 1:
            current.append(key)
        else:
            runs.append([key])
    return runs


def ingest_in_runs(
    instance: DagsterInstance,
    book_ids: list[str] | None,
    per_run: int,
    on_start: Callable[[int], None] = lambda total: None,
    on_run_done: Callable[[IngestRun], None] = lambda run: None,
) -> list[IngestRun]:
    """Run `ingest_books` for the books (default: all registered), `per_run` books per run."""
    from corpus_assets.definitions import defs

    job = defs.resolve_job_def("ingest_books")
    ensure_pools(instance)
    all_keys = instance.get_dynamic_partitions(books_partitions.name)
    runs = partition_ranges(all_keys, book_ids or all_keys, per_run)
    on_start(sum(len(run) for run in runs))
    results = []
    for books in runs:
        result = job.execute_in_process(
            instance=instance,
            tags={ASSET_PARTITION_RANGE_START_TAG: books[0], ASSET_PARTITION_RANGE_END_TAG: books[-1]},
            raise_on_error=False,
            run_config=_INFO_LOGS,
        )
        results.append(IngestRun(result.run_id, books, result.success, _failure_reason(result)))
        on_run_done(results[-1])
    return results


def ensure_pools(instance: DagsterInstance) -> None:
    """Create the pools' limit rows before any run uses them.

    Dagster creates a pool's row when a run first needs it; on Postgres, when two runs do that at
    once, the loser's insert conflict aborts its transaction and fails its run (dagster 1.13). Once
    the row exists no run creates it again, so this only has to win once, whoever wins.
    """
    storage = instance.event_log_storage
    for pool in (EMBEDDING_POOL, QDRANT_POOL):
        for attempt in range(5):
            if pool in storage.get_concurrency_keys():
                break
            try:
                storage.initialize_concurrency_limit_to_default(pool)
            except sqlalchemy.exc.DBAPIError:  # another process created it first
                time.sleep(0.1 * (attempt + 1))


@dataclass(frozen=True)
class RepairRun:
    run_id: str
    success: bool
    error: str | None
    summary: str


def repair_in_run(instance: DagsterInstance, book_ids: list[str]) -> RepairRun:
    """Run `repair_stores` for the books (empty: every drifted book and orphan) as a Dagster run."""
    from corpus_assets.definitions import defs

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


def reap_dead_runs(instance: DagsterInstance) -> list[DagsterRun]:
    """Fail the runs whose worker process on this machine died (SIGKILL, OOM, reboot).

    Such a run stays STARTED and keeps its concurrency-pool slots, so every later run would wait
    on the `embedding` or `qdrant` pool forever. Only for local run workers (the embedded default);
    elsewhere Dagster's run monitoring is the tool.
    """
    if not isinstance(instance.run_launcher, DefaultRunLauncher):
        return []
    reaped = []
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        starts = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_START)
        pid = starts[-1].dagster_event.pid if starts and starts[-1].dagster_event else None
        if pid is None or _alive(pid):
            continue
        instance.report_run_failed(run, message=f"the run's process (pid {pid}) is gone; marked failed so it can be re-run")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reaped.append(run)
    return reaped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def books_of_run(run: DagsterRun, all_keys: list[str]) -> list[str]:
    """The books a batched run covers (its partition range), in partition order."""
    start, end = run.tags.get(ASSET_PARTITION_RANGE_START_TAG), run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if start not in all_keys or end not in all_keys:
        return [run.tags["dagster/partition"]] if "dagster/partition" in run.tags else []
    return all_keys[all_keys.index(start) : all_keys.index(end) + 1]
