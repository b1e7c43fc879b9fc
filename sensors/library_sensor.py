"""The library sensor: new, changed and removed book files become ingest and removal runs.

Each tick applies the library's plan (`corpus_assets.library_plan`, the same one `corpus ingest`
follows): the books whose file differs from what Postgres stores are ingested, several per run,
unless a run is already on them or their file failed for bad input and has not changed since; the
books whose file is gone are removed. Failed runs since the last tick are read back first, so a bad
book is recorded and left out, and the good books of its batch go into the next runs by themselves.
The cursor, which Dagster stores with every tick, holds only a position in Dagster's run-failure
events and the books being removed.
"""

import hashlib
import json
import time
from dataclasses import dataclass, field

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from corpus_assets.assets.files import file_observations
from corpus_assets.batches import BOOKS_TAG, books_tag, ensure_pools, partition_ranges, range_tags, reap_dead_runs
from corpus_assets.jobs import ingest_books
from corpus_assets.library_plan import (
    books_in_flight,
    failed_runs_since,
    plan_library,
    record_failed_run,
    scan_library,
)
from corpus_assets.partitions import BOOKS_PER_RUN, books_partitions
from corpus_assets.removal import remove_books
from resources.library import BookLibrary
from resources.postgres import PostgresResource

# Reading files is the slow part of a tick; past this budget the rest is hashed on the next tick,
# keeping every tick well inside Dagster's 60 s sensor limit on any library size.
HASH_BUDGET_SECONDS = 20.0
PLAN_TAG = "corpus/library"


@dataclass
class LibraryCursor:
    failures_after: str | None = None  # Dagster's cursor over run-failure events: failed runs read up to here
    removing: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, raw: str | None) -> "LibraryCursor":
        state = json.loads(raw) if raw else {}
        # Older cursors also hold "files" and "requested": dropped (Postgres and Dagster's runs know).
        return cls(failures_after=state.get("failures_after"), removing=state.get("removing", []))

    def dump(self) -> str:
        return json.dumps({"failures_after": self.failures_after, "removing": self.removing}, separators=(",", ":"))


@sensor(
    jobs=[ingest_books, remove_books],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Ingests new and changed book files and removes deleted ones, several books per run; "
    "a bad book is left out of later runs until its file changes.",
)
def library_sensor(context: SensorEvaluationContext, library: BookLibrary, postgres: PostgresResource) -> SensorResult:
    started = time.monotonic()
    instance = context.instance
    cursor = LibraryCursor.load(context.cursor)
    files = library.books()
    partitions = instance.get_dynamic_partitions(books_partitions.name)
    ensure_pools(instance)  # before the runs it requests start side by side
    for run in reap_dead_runs(instance):
        context.log.warning(f"run {run.run_id} had died (its process is gone): marked failed; its books are planned again")
    failed_runs, cursor.failures_after = failed_runs_since(instance, cursor.failures_after)
    with postgres.db() as db:
        scan = scan_library(files, db, HASH_BUDGET_SECONDS)
        for run in failed_runs:
            failed = record_failed_run(db, instance, run, partitions, scan.current)
            context.log.info(f"run {run.run_id} failed for {len(failed)} books: {', '.join(failed) or 'none by name'}")
        plan = plan_library(scan, db.book_ids(), db.complete_book_hashes(), partitions, db.book_failures(),
                            books_in_flight(instance, partitions))
        db.forget_book_failures(plan.cleared)  # a new failure is recorded if its next run fails

    summary = (f"{len(files)} files ({scan.deferred} left to hash next tick): {len(plan.ingest)} to ingest, "
               f"{len(plan.unchanged)} unchanged, {len(plan.held_back)} held back (bad file, unchanged), "
               f"{len(plan.in_flight)} in runs, {len(plan.vanished)} gone")
    # A new partition is appended at the end of the order, so the new books form ranges of their own.
    runs = partition_ranges([*partitions, *plan.new_partitions], plan.ingest, BOOKS_PER_RUN)
    # No run_key: a book's runs are told apart by Dagster's own run records (`books_in_flight`), and
    # a book retried after a failure must be requested again with the same content.
    run_requests = [
        RunRequest(job_name=ingest_books.name, tags={**range_tags(books), PLAN_TAG: summary}) for books in runs
    ]
    removed = [book_id for book_id in plan.vanished if book_id not in cursor.removing]
    if removed:
        run_requests.append(
            RunRequest(
                job_name=remove_books.name,
                run_key=f"remove:{_digest(removed)}",
                tags=books_tag(removed),
                run_config={"ops": {"remove_books_from_stores": {"config": {"book_ids": removed}}}},
            )
        )
    cursor.removing = sorted((set(cursor.removing) | set(removed)) & set(plan.vanished))
    context.log.info(f"{summary}; {len(runs)} runs; {time.monotonic() - started:.1f} s"
                     + "".join(f"; {verb} {books_tag(books)[BOOKS_TAG]}" for verb, books in
                               (("ingesting", plan.ingest), ("removing", removed)) if books))
    return SensorResult(
        run_requests=run_requests,
        # New and changed files: their books' data versions, so the UI shows them unsynced until ingested.
        asset_events=file_observations({book_id: scan.current[book_id] for book_id in plan.ingest}),
        dynamic_partitions_requests=[AddDynamicPartitionsRequest(books_partitions.name, plan.new_partitions)]
        if plan.new_partitions else [],
        cursor=cursor.dump(),
    )


def _digest(values: list[str]) -> str:
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:16]
