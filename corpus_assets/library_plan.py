"""One plan for the library, shared by the library sensor and `corpus ingest`: which books to ingest,
which are unchanged, which are held back, which to remove; and what a failed batch run leaves to do.

A book is ingested when its file's content differs from what every store holds whole (Postgres's
`books.content_sha256`, and the same book version recorded for Qdrant and the graph in `book_sync`;
a run cut short or a store that was down leaves it unequal) — unless a run is already on it, or its
file failed for bad input and has not changed since. Dagster
cannot fail one partition of a multi-partition run (dagster#17836): a failed batch run is read back
here from its event log (each failed step lists its books, `FAILURES_KEY`), its failing books are
recorded in Postgres (`book_failures`), and its other books are simply planned again — as runs of
their own that leave the failing books out.
"""

import hashlib
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from corpus_assets.assets.raw import raw_books
from corpus_assets.batches import PARTITION_TAG, RANGE_START_TAG, books_of_run
from corpus_assets.books.errors import FAILURES_KEY
from resources.postgres.store import BookFailure, CorpusDB, FileHash

# Runs that will still write their books: a book in one of them is not planned again.
_ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


@dataclass(frozen=True)
class LibraryScan:
    present: set[str]  # every book file in the library
    current: dict[str, str]  # book id → sha256 of its file (the files hashed so far)
    deferred: int  # files left to hash (over the time budget)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scan_library(files: dict[str, Path], db: CorpusDB, budget_seconds: float | None = None) -> LibraryScan:
    """Each file's sha256: from the cache in Postgres (`library_files`) while its size and mtime are
    unchanged, else read (until `budget_seconds` is spent: the rest waits for the next scan)."""
    started = time.monotonic()
    cached = db.library_files()
    current: dict[str, str] = {}
    hashed: list[FileHash] = []
    deferred = 0
    for book_id, path in files.items():
        try:
            stat = path.stat()
        except FileNotFoundError:  # deleted while the library was listed
            continue
        known = cached.get(book_id)
        if known and known.size == stat.st_size and known.mtime_ns == stat.st_mtime_ns:
            current[book_id] = known.sha256
        elif budget_seconds is None or time.monotonic() - started < budget_seconds:
            try:
                hashed.append(FileHash(book_id, stat.st_size, stat.st_mtime_ns, file_sha256(path)))
            except FileNotFoundError:
                continue
            current[book_id] = hashed[-1].sha256
        else:
            deferred += 1
    db.record_library_files(hashed, [book_id for book_id in cached if book_id not in files])
    return LibraryScan(set(files), current, deferred)


@dataclass(frozen=True)
class LibraryPlan:
    ingest: list[str]  # new or changed content, cut short in some store, or failed not by the file's fault
    unchanged: list[str]
    held_back: dict[str, BookFailure]  # failed for bad input on this very content
    in_flight: list[str]  # a run is on them
    new_partitions: list[str]
    vanished: list[str]  # registered or stored, file gone: to remove
    cleared: list[str]  # books whose recorded failure no longer holds: tried again, or stored whole since


def plan_library(
    scan: LibraryScan,
    stored: Collection[str],
    complete: dict[str, str],
    registered: Collection[str],
    failures: dict[str, BookFailure],
    in_flight: Collection[str],
) -> LibraryPlan:
    ingest, unchanged, held_back, busy = [], [], {}, []
    for book_id, sha in scan.current.items():
        failure = failures.get(book_id)
        if book_id in in_flight:
            busy.append(book_id)
        elif complete.get(book_id) == sha:
            unchanged.append(book_id)  # stored whole: a failure recorded for it is from before
        elif failure is not None and failure.bad_input and failure.sha256 == sha:
            held_back[book_id] = failure
        else:
            ingest.append(book_id)
    registered = set(registered)
    return LibraryPlan(
        ingest=ingest,
        unchanged=unchanged,
        held_back=held_back,
        in_flight=busy,
        new_partitions=sorted(book_id for book_id in scan.current if book_id not in registered),
        vanished=vanished_books(registered, stored, scan.present),
        cleared=[book_id for book_id in [*ingest, *unchanged] if book_id in failures],
    )


def vanished_books(registered: Collection[str], stored: Collection[str], files: Collection[str]) -> list[str]:
    """Books registered or stored whose file is no longer in the library: to remove from every store."""
    return sorted((set(registered) | set(stored)) - set(files))


def books_in_flight(instance: DagsterInstance, partitions: list[str]) -> set[str]:
    """The books of every queued or running run over book partitions (any job: sensor, CLI, UI)."""
    books: set[str] = set()
    for run in instance.get_runs(RunsFilter(statuses=_ACTIVE)):
        if RANGE_START_TAG in run.tags or PARTITION_TAG in run.tags:
            books.update(books_of_run(run, partitions))
    return books


def failures_of_run(instance: DagsterInstance, run: DagsterRun, partitions: list[str]) -> dict[str, tuple[str, str, bool]]:
    """Book id → (stage, problem, bad input) for every book the run failed for.

    A step that failed book by book names its books (`FAILURES_KEY`); a check step failed by its
    blocking checks names the books they failed on; a step that failed as a whole (a store down
    before any book was tried) failed every book of the run that no step named.
    """
    named: dict[str, tuple[str, str, bool]] = {}
    whole: tuple[str, str, bool] | None = None
    blocked = _failed_blocking_checks(instance, run.run_id)
    for record in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.step_failure_data.user_failure_data
        entry = data.metadata.get(FAILURES_KEY) if data is not None else None
        if record.step_key in blocked:
            for book_id, problem in blocked[record.step_key].items():
                named.setdefault(book_id, (record.step_key, problem, False))
            continue
        if entry is None:
            whole = whole or (record.step_key, failure_reason(record.dagster_event), False)
            continue
        for book_id, failure in entry.value.items():
            named.setdefault(book_id, (failure["stage"], failure["problem"], failure["bad_input"]))
    if whole is not None:
        named |= {book_id: whole for book_id in books_of_run(run, partitions) if book_id not in named}
    return named


def _failed_blocking_checks(instance: DagsterInstance, run_id: str) -> dict[str, dict[str, str]]:
    """Check step → {book: what failed} for the blocking checks that failed on a book in the run."""
    failed: dict[str, dict[str, str]] = {}
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.blocking and evaluation.partition:
            problems = failed.setdefault(record.step_key, {})
            problems[evaluation.partition] = "; ".join(
                filter(None, [problems.get(evaluation.partition), f"check {evaluation.check_name} failed"]))
    return failed


def failure_reason(step_failure: DagsterEvent) -> str:
    """A failed step's own description (for `Failure`s: which books and why); after retries ran
    out, the error that caused the last one rather than "Exceeded max_retries"."""
    data = step_failure.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    if error is not None and error.message.startswith("Exceeded max_retries") and error.cause is not None:
        error = error.cause  # the last attempt's own error
    return error.message.strip() if error else "unknown error"


def read_hashes(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """The sha256 of the bytes the run read for each book that passed `raw_books`."""
    hashes = {}
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = record.asset_materialization
        if materialization is not None and materialization.asset_key == raw_books.key and "sha256" in materialization.metadata:
            hashes[materialization.partition] = materialization.metadata["sha256"].value
    return hashes


def record_failed_run(
    db: CorpusDB, instance: DagsterInstance, run: DagsterRun, partitions: list[str], current: dict[str, str]
) -> dict[str, BookFailure]:
    """Record in Postgres each book the run failed for, against the content the run read (else, for a
    book that failed in `raw_books`, its file's content `current` as last scanned)."""
    read = read_hashes(instance, run.run_id)
    failures = {
        book_id: BookFailure(book_id, read.get(book_id, current.get(book_id)), stage, problem, bad_input, run.run_id)
        for book_id, (stage, problem, bad_input) in failures_of_run(instance, run, partitions).items()
    }
    db.record_book_failures(list(failures.values()))
    return failures


def failed_runs_since(instance: DagsterInstance, cursor: str | None, limit: int = 200) -> tuple[list[DagsterRun], str | None]:
    """The runs over book partitions that failed after `cursor` (a position in Dagster's run-status
    events), oldest first, and the new cursor."""
    result = instance.fetch_run_status_changes(DagsterEventType.RUN_FAILURE, limit=limit, cursor=cursor, ascending=True)
    run_ids = [record.event_log_entry.run_id for record in result.records]
    runs = instance.get_runs(RunsFilter(run_ids=run_ids)) if run_ids else []
    by_id = {run.run_id: run for run in runs if RANGE_START_TAG in run.tags or PARTITION_TAG in run.tags}
    return [by_id[run_id] for run_id in run_ids if run_id in by_id], (result.cursor if result.records else cursor)
