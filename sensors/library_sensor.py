"""The library sensor: new, changed and removed book files become ingest and removal runs.

Each tick follows the library's plan (`corpus_assets.library_plan.plan_library`, the one `corpus
ingest` follows): the books whose file differs from what Postgres stores are ingested, several per
run, unless a run is already on them or their file failed for bad input and has not changed since;
the books whose file is gone are removed, unless the plan holds the removal back (the library cannot
be read whole, or too many books would go): then the tick says why in its log and in its skip
reason, ingests the rest, and plans the removal again on every tick until it is confirmed
(`corpus ingest --confirm-removal`) or the files are back. Failed runs since the last tick are read
back first, so a bad book is recorded and left out, and the good books of its batch go into the next
runs by themselves. The cursor, which Dagster stores with every tick, holds only a position in
Dagster's run-failure events; the books being removed are Dagster's own run records, so a removal
that failed is asked again by the next tick.
"""

import json
import time
from dataclasses import dataclass

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from corpus_assets.batches import BOOKS_TAG, books_tag, ensure_pools, range_tags, reap_dead_runs
from corpus_assets.jobs import build_vector_index, ingest_books
from corpus_assets.library_plan import ACTIVE_RUNS, failed_runs_since, plan_library, removal_run_config
from corpus_assets.partitions import books_partitions
from corpus_assets.removal import remove_books
from resources.library import BookLibrary
from resources.postgres import PostgresResource
from resources.postgres.store import CorpusDB

# Reading files is the slow part of a tick; past this budget the rest is hashed on the next tick,
# keeping every tick well inside Dagster's 60 s sensor limit on any library size.
HASH_BUDGET_SECONDS = 20.0
PLAN_TAG = "corpus/library"


@dataclass
class LibraryCursor:
    failures_after: str | None = None  # Dagster's cursor over run-failure events: failed runs read up to here

    @classmethod
    def load(cls, raw: str | None) -> "LibraryCursor":
        # Older cursors also hold "files", "requested" and "removing": dropped (Postgres and Dagster's runs know).
        return cls(failures_after=(json.loads(raw) if raw else {}).get("failures_after"))

    def dump(self) -> str:
        return json.dumps({"failures_after": self.failures_after}, separators=(",", ":"))


def _held_for_the_index(context: SensorEvaluationContext, db: CorpusDB) -> SensorResult | None:
    """The tick's result while the HNSW index is not there to link books with: a bulk load (`corpus ingest`)
    is running, or one was cut short before it built the index again (then this tick asks for the build);
    None otherwise."""
    if db.bulk_load_running():
        return SensorResult(skip_reason="a bulk load (`corpus ingest`) is running: new books wait for it",
                            cursor=context.cursor)
    if db.hnsw_index_state().valid:
        return None
    building = context.instance.get_runs(RunsFilter(job_name=build_vector_index.name, statuses=ACTIVE_RUNS), limit=1)
    return SensorResult(
        run_requests=[] if building else [RunRequest(job_name=build_vector_index.name, tags={BOOKS_TAG: "every book"})],
        skip_reason="the HNSW index is being built again (a bulk load was cut short): new books wait for it"
        if building else None, cursor=context.cursor)


@sensor(
    jobs=[ingest_books, remove_books, build_vector_index],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Ingests new and changed book files and removes deleted ones, several books per run; "
    "a bad book is left out of later runs until its file changes; a removal of many books, or while the "
    "library cannot be read whole, waits for confirmation.",
)
def library_sensor(context: SensorEvaluationContext, library: BookLibrary, postgres: PostgresResource) -> SensorResult:
    started = time.monotonic()
    instance = context.instance
    cursor = LibraryCursor.load(context.cursor)
    ensure_pools(instance)  # before the runs it requests start side by side
    for run in reap_dead_runs(instance):
        context.log.warning(f"run {run.run_id} had died (its process is gone): marked failed; its books are planned again")
    with postgres.db() as db:
        held = _held_for_the_index(context, db)
        if held is not None:
            return held
    failed_runs, cursor.failures_after = failed_runs_since(instance, cursor.failures_after)
    with postgres.db() as db:
        plan = plan_library(instance, library, db, failed_runs=failed_runs, budget_seconds=HASH_BUDGET_SECONDS)
    for run_id, failed in plan.recorded.items():
        context.log.info(f"run {run_id} failed for {len(failed)} books: {', '.join(failed) or 'none by name'}")
    for problem in plan.problems[:20]:
        context.log.warning(f"library entry skipped: {problem.name}: {problem.problem}")
    summary = plan.summary()
    # No run_key: a book's runs are told apart by Dagster's own run records (`books_in_flight`), and
    # a book retried after a failure (or removed again after coming back) is requested again.
    run_requests = [RunRequest(job_name=ingest_books.name, tags={**range_tags(books), PLAN_TAG: plan.tag()})
                    for books in plan.runs]
    removal = plan.removal
    if removal.books and removal.allowed:
        run_requests.append(RunRequest(job_name=remove_books.name, tags=books_tag(removal.books),
                                       run_config=removal_run_config(removal.books)))
    elif removal.books:
        context.log.warning(f"removal held back: {removal.reason}")
    context.log.info(f"{summary}; {len(plan.runs)} runs; {time.monotonic() - started:.1f} s"
                     + "".join(f"; {verb} {books_tag(books)[BOOKS_TAG]}" for verb, books in
                               (("ingesting", plan.ingest), ("removing", removal.books if removal.allowed else []))
                               if books))
    return SensorResult(
        run_requests=run_requests,
        skip_reason=None if run_requests else (f"removal held back: {removal.reason}" if removal.books and not removal.allowed
                                               else f"nothing to do: {summary}"),
        # New and changed files: their books' data versions, so the UI shows them unsynced until ingested.
        asset_events=plan.observations(),
        dynamic_partitions_requests=[AddDynamicPartitionsRequest(books_partitions.name, plan.new_partitions)]
        if plan.new_partitions else [],
        cursor=cursor.dump(),
    )
