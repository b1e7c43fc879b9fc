"""Runs of several books: how books are grouped into runs, and keeping those runs healthy.

Used by the sensor, the schedules and the `corpus` CLI alike.
"""

import os
import time
from collections.abc import Collection, Mapping

import sqlalchemy.exc
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, DefaultRunLauncher, RunsFilter

from corpus_assets.partitions import EMBEDDING_POOL, QDRANT_POOL

# Dagster's tags for a run over a partition range, the form a batched backfill launches. Dagster 1.13
# has no public constant or RunRequest argument for them (they live in dagster/_core/storage/tags.py).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
# A run still STARTING this long after it was made has no worker coming (dagster.yaml's run
# monitoring uses the same start timeout).
START_TIMEOUT_SECONDS = 300
# Which books a run covers, readable in the UI's run list (ingest, removal and repair runs).
BOOKS_TAG = "corpus/books"


def books_tag(books: list[str]) -> dict[str, str]:
    """`corpus/books`: the books by name, or how many and the first and last of the range."""
    if not books:
        return {BOOKS_TAG: "all drifted books"}
    named = ", ".join(books) if len(books) <= 3 else f"{len(books)} books: {books[0]} … {books[-1]}"
    return {BOOKS_TAG: named}


def range_tags(books: list[str]) -> dict[str, str]:
    """The tags of a run over `books`, contiguous in the partitions' order (see `partition_ranges`)."""
    return {RANGE_START_TAG: books[0], RANGE_END_TAG: books[-1], **books_tag(books)}


def partition_ranges(all_keys: list[str], selected: list[str], per_run: int, sizes: Mapping[str, int] | None = None,
                     max_bytes: int | None = None, alone: Collection[str] = ()) -> list[list[str]]:
    """Split `selected` into runs of at most `per_run` books that are contiguous in `all_keys`, and hold
    together at most `max_bytes` of book files (`sizes`; a bigger book runs alone). The books of
    `alone` run one per run. A run's memory grows with the bytes of its books, not their number.

    A run covers a partition *range* (first...last in the partitions' order), so a run may only
    hold books that sit next to each other in that order.
    """
    position = {key: i for i, key in enumerate(all_keys)}
    unknown = [key for key in selected if key not in position]
    if unknown:
        raise ValueError(f"books not registered: {', '.join(unknown)} (run `corpus register`)")
    sizes = sizes or {}
    runs: list[list[str]] = []
    held = 0  # bytes of the last run's books
    for key in sorted(set(selected), key=position.__getitem__):
        current = runs[-1] if runs else None
        fits = max_bytes is None or held + sizes.get(key, 0) <= max_bytes
        if (current and len(current) < per_run and position[key] == position[current[-1]] + 1 and fits
                and key not in alone and current[-1] not in alone):
            current.append(key)
            held += sizes.get(key, 0)
        else:
            runs.append([key])
            held = sizes.get(key, 0)
    return runs


def books_of_run(run: DagsterRun, all_keys: list[str]) -> list[str]:
    """The books a batched run covers (its partition range), in partition order."""
    start, end = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
    if start not in all_keys or end not in all_keys:
        return [run.tags[PARTITION_TAG]] if PARTITION_TAG in run.tags else []
    return all_keys[all_keys.index(start) : all_keys.index(end) + 1]


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


def reap_dead_runs(instance: DagsterInstance) -> list[DagsterRun]:
    """Fail the runs whose worker process on this machine died (SIGKILL, OOM, reboot), and the runs
    that never started a worker (their launcher was killed in between) within `START_TIMEOUT_SECONDS`;
    end as cancelled the runs being cancelled whose worker died before it could stop.

    Such a run stays STARTED (STARTING, CANCELING) and keeps its concurrency-pool slots, so every later run
    would wait on the `embedding` or `qdrant` pool forever, and its books would count as in flight.
    Dagster's run monitoring is the tool when the daemon runs (dagster.yaml), but the DefaultRunLauncher
    of the embedded default does not support run-worker health checks (`supports_check_run_worker_health`
    is False), and a lone `corpus ingest` has no daemon: dead local workers are found by their pid.
    """
    if not isinstance(instance.run_launcher, DefaultRunLauncher):
        return []
    reaped = []
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING,
                                                      DagsterRunStatus.CANCELING])):
        starts = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_START)
        if starts:
            pid = starts[-1].dagster_event.pid if starts[-1].dagster_event else None
            if pid is None or _alive(pid):
                continue
            why = f"the run's process (pid {pid}) is gone"
        else:
            record = instance.get_run_record_by_id(run.run_id)
            if run.status != DagsterRunStatus.STARTING or record is None or \
                    time.time() - record.create_timestamp.timestamp() < START_TIMEOUT_SECONDS:
                continue
            why = f"the run's process never started (in {START_TIMEOUT_SECONDS} s)"
        if run.status == DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message=f"{why} before it stopped; marked cancelled")
        else:
            instance.report_run_failed(run, message=f"{why}; marked failed so it can be re-run")
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
