"""One plan for the library, shared by the library sensor, `corpus ingest` and `corpus status`: which
books to ingest (and in which runs), which are unchanged, which are held back, which to remove, and
which library entries cannot be books; and what a failed batch run leaves to do.

A book is ingested when its file's content differs from what every store holds whole (Postgres's
`books.content_sha256`, and the same book version recorded for Qdrant and the graph in `book_sync`;
a run cut short or a store that was down leaves it unequal) — unless a run is already on it, or its
file failed for bad input (or failed `max_attempts` times, not by an outage) and has not changed
since. Dagster cannot fail one partition of a multi-partition run (dagster#17836): a failed batch run
is read back here from its event log (each failed step lists its books, `FAILURES_KEY`), its failing
books are recorded in Postgres (`book_failures`), and its other books are simply planned again — as
runs of their own that leave the failing books out. A run that died naming no book (its process
killed: out of memory) fails each of its books, and each then runs alone.

Absence is never deletion by default (`Removal`): a library that cannot be read, or read whole, removes
nothing; a plan that would remove more than a small share of the library waits for confirmation.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from dagster import (
    AssetObservation,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
)

from corpus_assets.assets.files import file_observations
from corpus_assets.assets.raw import raw_books
from corpus_assets.batches import PARTITION_TAG, RANGE_START_TAG, books_of_run, partition_ranges
from corpus_assets.books.errors import FAILURES_KEY
from corpus_assets.books.library import EntryProblem, LibraryListing
from corpus_assets.library_files import LibraryScan, hash_files
from corpus_assets.partitions import books_partitions
from corpus_assets.removal import remove_books, remove_books_from_stores
from resources import settings
from resources.library import BookLibrary
from resources.postgres.store import BookFailure, CorpusDB
from resources.settings import MAX_REMOVAL_BOOKS_ENV, MAX_REMOVAL_SHARE_ENV

# Runs that will still write their books: a book in one of them is not planned again.
ACTIVE_RUNS = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
REMOVE_JOB, REMOVE_OP = remove_books.name, remove_books_from_stores.name
# The stage recorded for books of a run that died without a step naming them (its process killed).
RUN_DIED = "run"
CONFIRM_FLAG = "--confirm-removal"
# A bulk load links books in runs this many times larger than its loading runs: each run pays a process
# and its imports, and linking holds nothing per book in memory.
LINK_RUNS_LARGER = 10


@dataclass(frozen=True)
class Removal:
    """Books whose file is gone, and whether the plan removes them now (else why not, and how to)."""

    books: list[str]
    allowed: bool = True
    reason: str | None = None


def bulk_load(planned: int, stored: int) -> bool:
    """Whether `corpus ingest` loads `planned` books into a library of `stored` in bulk: rows in with the
    HNSW index dropped, the index built once, then SIMILAR edges and the index's checks (`load_books`,
    `build_vector_index`, `link_books`). `CORPUS_BULK_LOAD=auto` does so when the plan is big and at least
    doubles the library: the rebuild reads every row, which pays off only against that many inserts
    (bench/results/bulk_load.md); meanwhile searches read the table exactly."""
    config = settings.current()
    if config.bulk_load in ("always", "never"):
        return config.bulk_load == "always" and planned > 0
    return planned >= config.bulk_min_books and planned >= stored


def removal_of(listing: LibraryListing, gone: list[str], library_size: int, confirmed: bool = False) -> Removal:
    """Whether books whose files were not found may be removed: never while the library cannot be read
    whole; with confirmation only when the folder holds no books at all, or when more than
    `max_removal_share` of the library and more than `max_removal_books` books would go."""
    if not gone:
        return Removal([])
    if listing.unavailable:
        return Removal(gone, False, f"{listing.unavailable}: the {len(gone)} stored books are kept")
    if listing.unlisted_folders:
        folders = ", ".join(listing.unlisted_folders[:5]) + (" …" if len(listing.unlisted_folders) > 5 else "")
        return Removal(gone, False, f"{len(listing.unlisted_folders)} folders of the library cannot be listed "
                                    f"({folders}): the {len(gone)} books not found are kept until they can be")
    if confirmed:
        return Removal(gone)
    config = settings.current()
    how = (f"if they are meant to go, run `corpus ingest {CONFIRM_FLAG}` (or `corpus remove BOOK ...`); else point "
           f"the library at the right folder")
    if not listing.files:
        return Removal(gone, False, f"the library folder {listing.root} holds no book files, and {len(gone)} books are "
                                    f"stored: nothing is removed (an empty folder is often a share not mounted); {how}")
    if len(gone) > config.max_removal_books and len(gone) > config.max_removal_share * library_size:
        return Removal(gone, False, f"{len(gone)} of {library_size} books would be removed, over the limit of "
                                    f"{config.max_removal_share:.0%} and {config.max_removal_books} books "
                                    f"({MAX_REMOVAL_SHARE_ENV}, {MAX_REMOVAL_BOOKS_ENV}); {how}")
    return Removal(gone)


@dataclass(frozen=True)
class LibraryPlan:
    listing: LibraryListing
    scan: LibraryScan
    order: list[str]  # the books' partitions in order, new ones last
    ingest: list[str]  # new or changed content, cut short in some store, or failed not by the file's fault
    unchanged: list[str]
    held_back: dict[str, BookFailure]  # failed for bad input (or too often) on this very content
    in_flight: list[str]  # a run is on them
    new_partitions: list[str]
    removal: Removal  # registered or stored, file gone
    cleared: list[str]  # books whose recorded failure no longer holds: stored whole since, or the file changed
    books_per_run: int
    alone: frozenset[str] = frozenset()  # books that run one per run (their last run died)
    recorded: dict[str, dict[str, BookFailure]] = field(default_factory=dict)  # failed run id → its books' failures

    def group(self, books: list[str]) -> list[list[str]]:
        """`books` in runs: contiguous partitions, at most `books_per_run` and `CORPUS_RUN_MB` of files each."""
        return partition_ranges(self.order, books, self.books_per_run, sizes=self.listing.sizes,
                                max_bytes=int(settings.current().run_mb * 2**20), alone=self.alone)

    def group_links(self, books: list[str]) -> list[list[str]]:
        """`books` in the runs of a bulk load's last step (`link_books`): it reads no file and no artifact,
        so a run holds `LINK_RUNS_LARGER` times as many books, whatever their size."""
        return partition_ranges(self.order, books, LINK_RUNS_LARGER * self.books_per_run, alone=self.alone)

    @property
    def runs(self) -> list[list[str]]:
        return self.group(self.ingest)

    @property
    def problems(self) -> list[EntryProblem]:
        """Every library entry that is not ingested because it cannot be: listed or read."""
        return [*self.listing.problems,
                *(EntryProblem(self.listing.name_of(book), why) for book, why in self.scan.unreadable.items())]

    def observations(self) -> list[AssetObservation]:
        """The new and changed files' versions, so the UI shows their books unsynced until ingested."""
        return file_observations({book_id: self.scan.current[book_id] for book_id in self.ingest})

    def summary(self) -> str:
        """One line: what the plan found and does."""
        removal = (f"{len(self.removal.books)} gone" if self.removal.allowed or not self.removal.books
                   else f"{len(self.removal.books)} gone but kept (removal needs confirmation)")
        return (f"{len(self.listing.files)} files ({self.scan.deferred} left to hash): {len(self.ingest)} to ingest, "
                f"{len(self.unchanged)} unchanged, {len(self.held_back)} held back, {len(self.in_flight)} in runs, "
                f"{removal}, {len(self.problems)} entries skipped")

    def tag(self) -> str:
        """The plan in a few words, for a run's tag (the UI shows a tag's first ~60 characters)."""
        return f"{len(self.ingest)} new or changed of {len(self.listing.files)} files"


def plan_library(instance: DagsterInstance, library: BookLibrary, db: CorpusDB, *, failed_runs: Sequence[DagsterRun] = (),
                 budget_seconds: float | None = None, confirm_removal: bool = False,
                 books_per_run: int | None = None) -> LibraryPlan:
    """List and hash the library, record the `failed_runs`' books, and plan: the one call the sensor and
    `corpus ingest` make. Failures that no longer hold are forgotten; nothing else is written."""
    config = settings.current()
    listing = library.listing()
    partitions = instance.get_dynamic_partitions(books_partitions.name)
    scan = hash_files(listing, db, budget_seconds)
    recorded = {run.run_id: record_failed_run(db, instance, run, partitions, scan.current) for run in failed_runs}
    failures = db.book_failures()
    in_flight = books_in_flight(instance, partitions)
    complete = db.complete_book_hashes()
    ingest, unchanged, held_back, busy, cleared = [], [], {}, [], []
    for book_id, sha in scan.current.items():
        failure = failures.get(book_id)
        if book_id in in_flight:
            busy.append(book_id)
        elif complete.get(book_id) == sha:
            unchanged.append(book_id)  # stored whole: a failure recorded for it is from before
            if failure is not None:
                cleared.append(book_id)
        elif failure is not None and failure.sha256 == sha and (failure.bad_input or failure.attempts >= config.max_attempts):
            held_back[book_id] = failure
        else:
            ingest.append(book_id)
            if failure is not None and failure.sha256 != sha:
                cleared.append(book_id)  # new content: a fresh start
    db.forget_book_failures(cleared)
    stored = set(db.book_ids())
    known = set(partitions) | stored
    gone = sorted(book_id for book_id in known - scan.present - in_flight)
    new_partitions = sorted(book_id for book_id in scan.current if book_id not in set(partitions))
    alone = frozenset(book_id for book_id, failure in failures.items() if failure.stage == RUN_DIED)
    return LibraryPlan(
        listing=listing, scan=scan, order=[*partitions, *new_partitions], ingest=ingest, unchanged=unchanged,
        held_back=held_back, in_flight=busy, new_partitions=new_partitions,
        removal=removal_of(listing, gone, len(known), confirm_removal), cleared=cleared,
        books_per_run=books_per_run or config.books_per_run, alone=alone, recorded=recorded,
    )


def books_in_flight(instance: DagsterInstance, partitions: list[str]) -> set[str]:
    """The books of every queued or running run over book partitions (any job: sensor, CLI, UI), and of
    every removal run: a book is planned again (ingested, or removed) only once no run is on it."""
    books: set[str] = set()
    for run in instance.get_runs(RunsFilter(statuses=ACTIVE_RUNS)):
        if RANGE_START_TAG in run.tags or PARTITION_TAG in run.tags:
            books.update(books_of_run(run, partitions))
        elif run.job_name == REMOVE_JOB:
            books.update(removal_books(run.run_config))
    return books


def removal_run_config(book_ids: list[str]) -> dict:
    """The run config of a `remove_books` run for the books."""
    return {"ops": {REMOVE_OP: {"config": {"book_ids": book_ids}}}}


def removal_books(run_config: dict) -> list[str]:
    return run_config.get("ops", {}).get(REMOVE_OP, {}).get("config", {}).get("book_ids", [])


@dataclass(frozen=True)
class Failed:
    """Why a run failed a book: the stage, the problem, whether the file is at fault (`bad_input`), and
    whether the failure counts towards the book's attempts (not an outage of a store)."""

    stage: str
    problem: str
    bad_input: bool
    counts: bool = True


def failures_of_run(instance: DagsterInstance, run: DagsterRun, partitions: list[str]) -> dict[str, Failed]:
    """Book id → why, for every book the run failed for.

    A step that failed book by book names its books (`FAILURES_KEY`); a check step failed by its
    blocking checks names the books they failed on; a step that failed as a whole (a store down
    before any book was tried) failed every book of the run that no step named; a run that died with
    no step failed (its process killed) failed each of its books, as stage `RUN_DIED`.
    """
    named: dict[str, Failed] = {}
    whole: Failed | None = None
    blocked = _failed_blocking_checks(instance, run.run_id)
    step_failures = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
    for record in step_failures:
        data = record.dagster_event.step_failure_data.user_failure_data
        entry = data.metadata.get(FAILURES_KEY) if data is not None else None
        if record.step_key in blocked:
            for book_id, problem in blocked[record.step_key].items():
                named.setdefault(book_id, Failed(record.step_key, problem, False))
            continue
        if entry is None:
            whole = whole or Failed(record.step_key, failure_reason(record.dagster_event), False, counts=False)
            continue
        for book_id, failure in entry.value.items():
            named.setdefault(book_id, Failed(failure["stage"], failure["problem"], failure["bad_input"],
                                             not failure.get("transient", False)))
    if not step_failures and run.status == DagsterRunStatus.FAILURE:
        # Each book then runs alone; a book whose own run dies counts it (out of memory, most likely),
        # a batch's death counts for none of its books.
        books = books_of_run(run, partitions)
        whole = Failed(RUN_DIED, run_end_reason(instance, run.run_id), False, counts=len(books) == 1)
    if whole is not None:
        named |= {book_id: whole for book_id in books_of_run(run, partitions) if book_id not in named}
    return named


def run_end_reason(instance: DagsterInstance, run_id: str) -> str:
    """What ended a run that no step failed: the engine's last word before the run's end (a launch
    error, a process killed by the system) and the end."""
    engine_said, end_said = None, None
    for record in instance.all_logs(run_id, of_type={DagsterEventType.RUN_FAILURE, DagsterEventType.ENGINE_EVENT}):
        event = record.dagster_event
        if event.event_type == DagsterEventType.RUN_FAILURE:
            end_said = event.message
            break
        engine_said = event.message or engine_said
    return " ".join(word for word in (engine_said, end_said) if word) or "the run failed with no step failing"


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
    failed = failures_of_run(instance, run, partitions)
    failures = {
        book_id: BookFailure(book_id, read.get(book_id, current.get(book_id)), f.stage, f.problem, f.bad_input, run.run_id)
        for book_id, f in failed.items()
    }
    db.record_book_failures(list(failures.values()), counted=[book_id for book_id, f in failed.items() if f.counts])
    return db.book_failures(list(failures))


def failed_runs_since(instance: DagsterInstance, cursor: str | None, limit: int = 200) -> tuple[list[DagsterRun], str | None]:
    """The runs over book partitions that failed after `cursor` (a position in Dagster's run-status
    events), oldest first, and the new cursor."""
    result = instance.fetch_run_status_changes(DagsterEventType.RUN_FAILURE, limit=limit, cursor=cursor, ascending=True)
    run_ids = [record.event_log_entry.run_id for record in result.records]
    runs = instance.get_runs(RunsFilter(run_ids=run_ids)) if run_ids else []
    by_id = {run.run_id: run for run in runs if RANGE_START_TAG in run.tags or PARTITION_TAG in run.tags}
    return [by_id[run_id] for run_id in run_ids if run_id in by_id], (result.cursor if result.records else cursor)
