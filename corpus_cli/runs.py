"""Launching ingest, removal and repair runs of the `corpus` code location's jobs, as the UI does."""

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import dagster
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
# Dagster has no public Python API to launch a run of a code location's job: `dagster job launch` is
# its CLI form (a code server per call, and a queued run waits for a daemon that a lone `corpus
# ingest` does not have). These are the calls that command and the UI make.
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

from corpus_assets.batches import BOOKS_TAG, books_tag, ensure_pools, range_tags
from corpus_assets.jobs import build_vector_index, defer_vector_index, ingest_books, link_books, load_books
from corpus_assets.library_plan import REMOVE_JOB, RUN_DIED, failure_reason, removal_run_config, run_end_reason
from resources import settings
from resources.postgres.store import BookFailure, CorpusDB

LOCATION = "corpus"  # workspace.yaml's code location
INGEST_JOB, LOAD_JOB, LINK_JOB = ingest_books.name, load_books.name, link_books.name
DEFER_INDEX_JOB, BUILD_INDEX_JOB = defer_vector_index.name, build_vector_index.name
# Each run's Dagster console log (INFO and up, with a failed step's traceback) goes to `runs.log`;
# the terminal shows a progress bar and a summary, with `--verbose` the run's log records as well.
_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
_FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
# The daemon beats every 30 s: one that beat within 75 s serves the run queue; one silent for 150 s
# (`corpus dev` closed; it leaves its last beats behind) leaves a queued run to be launched here.
_DAEMON_ALIVE_SECONDS, _DAEMON_GONE_SECONDS = 75, 150
_CANCEL_WAIT_SECONDS = 20


class CodeLocationRuns:
    """Runs of the code location's jobs: made from the code server's view of the job (so the UI puts them
    in the Overview timeline and re-executes them as its own), queued when a daemon serves the run queue
    (`corpus dev`: its limits and pools apply; the run then executes in its code server, with its
    environment), else launched at once; each runs in its own process. The code server starts with
    the first run (a few seconds), so a command with nothing to run pays nothing, and stops at the end
    of the `with` block.

    The code server and the runs' processes write to `runs.log` in DAGSTER_HOME, not to the terminal:
    Dagster's console log, library warnings, and on Ctrl-C the interrupted helper processes'
    tracebacks. Every run's events are in its event log either way.
    """

    def __init__(self, instance: DagsterInstance):
        self.instance = instance
        self._stack = ExitStack()

    def __enter__(self) -> "CodeLocationRuns":
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    def start(self) -> None:
        """Start the code server now (before a progress display takes the terminal), not at the first run."""
        self._workspace  # noqa: B018

    @cached_property
    def _workspace(self) -> WorkspaceRequestContext:
        target = WorkspaceFileTarget(paths=[str(settings.PROJECT_ROOT / "workspace.yaml")])
        with _children_write_to(Path(os.environ["DAGSTER_HOME"]) / "runs.log"):
            process = self._stack.enter_context(WorkspaceProcessContext(
                instance=self.instance, version=dagster.__version__, read_only=False,
                workspace_load_target=target, code_server_log_level="WARNING",
            ))
        return process.create_request_context()

    def run(self, job_name: str, tags: dict[str, str], run_config: dict,
            on_log: Callable[[str], None] | None = None) -> DagsterRun:
        """Start a run of the job and wait for it to end (`on_log` gets its log records as they come); the run as it ended."""
        run = self._create(job_name, tags, {**_RUN_CONFIG, **run_config})
        self._launch(run.run_id, queued=self._daemon_beat_within(_DAEMON_ALIVE_SECONDS))
        cursor = None
        try:
            while run.status not in _FINISHED:
                time.sleep(0.5)
                cursor = self._pass_on_logs(run.run_id, cursor, on_log)
                run = self.instance.get_run_by_id(run.run_id)
                if run.status == DagsterRunStatus.QUEUED and not self._daemon_beat_within(_DAEMON_GONE_SECONDS):
                    self._launch(run.run_id, queued=False)
        except KeyboardInterrupt:
            self._cancel(run.run_id)
            raise
        self._pass_on_logs(run.run_id, cursor, on_log)
        if run.status != DagsterRunStatus.SUCCESS:
            # A run whose process died (OOM, SIGKILL) keeps its steps' pool slots, and every later run
            # would wait on them; the daemon's run monitoring frees them (dagster.yaml), when a daemon runs.
            self.instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        return run

    def _launch(self, run_id: str, queued: bool) -> None:
        try:
            if queued:
                self.instance.submit_run(run_id, self._workspace)
            else:
                self.instance.launch_run(run_id, self._workspace)
        except Exception as error:  # noqa: BLE001 - a failed run (a launch error is in its event log), not a traceback
            run = self.instance.get_run_by_id(run_id)
            if not run.is_finished:  # `launch_run` fails the run itself; a failed submit leaves it NOT_STARTED
                self.instance.report_run_failed(run, message=f"could not be launched: {error}")

    def _create(self, job_name: str, tags: dict[str, str], run_config: dict) -> DagsterRun:
        location = self._workspace.get_code_location(LOCATION)
        repository = next(iter(location.get_repositories().values()))
        job = repository.get_full_job(job_name)
        plan = location.get_execution_plan(job, run_config, step_keys_to_execute=None, known_state=None,
                                           instance=self.instance)
        return self.instance.create_run(
            job_name=job_name, run_id=None, run_config=run_config, resolved_op_selection=None,
            step_keys_to_execute=None, op_selection=None, status=None, root_run_id=None, parent_run_id=None,
            tags={**job.tags, **tags}, job_snapshot=job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot, parent_job_snapshot=job.parent_job_snapshot,
            remote_job_origin=job.get_remote_origin(), job_code_origin=job.get_python_origin(),
            asset_selection=None, asset_check_selection=None, asset_graph=repository.asset_graph,
        )

    def _daemon_beat_within(self, seconds: float) -> bool:
        beat = self.instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
        return beat is not None and time.time() - beat.timestamp < seconds

    def _pass_on_logs(self, run_id: str, cursor: str | None, on_log: Callable[[str], None] | None) -> str | None:
        """Give `on_log` the run's INFO-and-up log records after `cursor`; the new cursor."""
        if on_log is None:
            return cursor
        page = self.instance.get_records_for_run(run_id, cursor=cursor)
        for record in page.records:
            entry = record.event_log_entry
            message = entry.dagster_event.message if entry.dagster_event else entry.user_message
            if entry.level >= logging.INFO and message:
                on_log(f"{entry.step_key}: {message}" if entry.step_key else message)
        return page.cursor if page.records else cursor

    def _cancel(self, run_id: str) -> None:
        """Ctrl-C: dequeue the run or stop its process, and wait a little for it to end."""
        try:
            self.instance.run_coordinator.cancel_run(run_id)
            deadline = time.monotonic() + _CANCEL_WAIT_SECONDS
            while self.instance.get_run_by_id(run_id).status not in _FINISHED and time.monotonic() < deadline:
                time.sleep(0.5)
        except Exception:  # noqa: BLE001 - the interrupt goes on; `reap_dead_runs` ends a run left behind
            pass


@contextmanager
def _children_write_to(path: Path) -> Iterator[None]:
    """Processes started in this block inherit `path` as their stdout and stderr; this one keeps its own.

    Dagster starts the code server without a choice of its output (the runs' processes inherit it),
    so the descriptors are swapped around its start.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with path.open("ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


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
    runs: CodeLocationRuns,
    book_ids: list[str],
    group: Callable[[list[str]], list[list[str]]],
    record_failures: Callable[[DagsterRun], dict[str, BookFailure]],
    on_log: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] = lambda total: None,
    on_books_done: Callable[[int], None] = lambda count: None,
    job: str = INGEST_JOB,
) -> IngestOutcome:
    """Run `job` (`ingest_books`) for the books, in the runs `group` makes of them; a bad book never holds back another.

    Dagster fails a multi-partition run as a whole (dagster#17836): when a run fails, the books it
    failed for are recorded (`record_failures`) and its other books run again without them. They
    cost little the second time: their embeddings come from the cache and unchanged writes are skipped.
    A run that died naming no book (its process killed: out of memory, most likely) is split in two
    and each half run again, down to the book that fails alone.
    A run cancelled (from the UI) fails its books without recording them: nothing is wrong with them.
    """
    ensure_pools(runs.instance)
    queue = group(book_ids)
    on_start(sum(len(books) for books in queue))
    done: list[BooksRun] = []
    ingested: list[str] = []
    failed: dict[str, BookFailure] = {}
    while queue:
        books = queue.pop(0)
        run = runs.run(job, range_tags(books), {}, on_log)
        done.append(_books_run(runs.instance, run, books))
        if done[-1].success:
            ingested += books
            on_books_done(len(books))
            continue
        named = {} if run.status == DagsterRunStatus.CANCELED else {
            book: f for book, f in record_failures(run).items() if book in books}
        if not named:  # cancelled, or failed naming no book: each of its books failed with it
            named = {book: BookFailure(book, None, "run", done[-1].error or "unknown error", False, run.run_id)
                     for book in books}
        elif len(books) > 1 and all(f.stage == RUN_DIED for f in named.values()):
            half = len(books) // 2
            queue[0:0] = [*group(books[:half]), *group(books[half:])]
            continue
        failed |= named
        on_books_done(len(named))
        queue[0:0] = group([book for book in books if book not in named])
    return IngestOutcome(done, ingested, failed)


def ingest_in_bulk(
    runs: CodeLocationRuns,
    db: CorpusDB,
    book_ids: list[str],
    group: Callable[[list[str]], list[list[str]]],
    group_links: Callable[[list[str]], list[list[str]]],
    record_failures: Callable[[DagsterRun], dict[str, BookFailure]],
    on_log: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] = lambda total: None,
    on_books_done: Callable[[int], None] = lambda count: None,
) -> IngestOutcome:
    """A bulk load (`library_plan.bulk_load`): the HNSW index dropped (`defer_vector_index`), every book
    loaded without it (`load_books`), the index built once (`build_vector_index`), then the loaded books'
    SIMILAR edges and index checks (`link_books`), each phase in runs as `ingest_in_runs` makes them (the
    last in the larger runs `group_links` makes).
    `on_start` gets twice the books: each is counted when loaded and when linked.

    Cut short anywhere, nothing is lost: a book not linked is not whole (`complete_book_hashes` wants its
    SIMILAR edges), so the next ingest plans it again, builds the index first if it is still missing
    (`ensure_vector_index`) and redoes only what is left.
    """
    on_start(2 * len(book_ids))
    dropped = _books_run(runs.instance, runs.run(DEFER_INDEX_JOB, books_tag(book_ids), {}, on_log), book_ids)
    if not dropped.success:
        on_books_done(2 * len(book_ids))
        return _all_failed(dropped, [dropped], book_ids, "dropping the HNSW index")
    loaded = ingest_in_runs(runs, book_ids, group, record_failures, on_log, on_books_done=on_books_done, job=LOAD_JOB)
    on_books_done(len(loaded.failed))  # not linked
    built = ensure_vector_index(runs, db, on_log)
    done = [dropped, *loaded.runs, *([built] if built else [])]
    if built and not built.success:
        on_books_done(len(loaded.ingested))
        failed = _all_failed(built, done, loaded.ingested, "building the HNSW index")
        return IngestOutcome(done, [], loaded.failed | failed.failed)
    linked = ingest_in_runs(runs, loaded.ingested, group_links, record_failures, on_log, on_books_done=on_books_done,
                            job=LINK_JOB)
    return IngestOutcome([*done, *linked.runs], linked.ingested, loaded.failed | linked.failed)


def ensure_vector_index(runs: CodeLocationRuns, db: CorpusDB, on_log: Callable[[str], None] | None = None
                        ) -> BooksRun | None:
    """Run `build_vector_index` if the HNSW index is missing or invalid (a bulk load's middle step, or a
    bulk load cut short before it); None when the index is there."""
    if db.hnsw_index_state().valid:
        return None
    run = runs.run(BUILD_INDEX_JOB, {BOOKS_TAG: "every book"}, {}, on_log)
    return _books_run(runs.instance, run, [])


def _all_failed(cause: BooksRun, runs: list[BooksRun], books: list[str], step: str) -> IngestOutcome:
    """Every book failed with a run that was not about any one of them (`cause`)."""
    return IngestOutcome(runs, [], {book: BookFailure(book, None, "run", f"{step}: {cause.error}", False, cause.run_id)
                                    for book in books})


def remove_in_run(runs: CodeLocationRuns, book_ids: list[str]) -> BooksRun:
    """Run `remove_books` for the books: every store, their artifacts, then their partitions."""
    run = runs.run(REMOVE_JOB, books_tag(book_ids), removal_run_config(book_ids))
    return _books_run(runs.instance, run, book_ids)


@dataclass(frozen=True)
class RepairRun:
    run_id: str
    success: bool
    error: str | None
    summary: str


def repair_in_run(runs: CodeLocationRuns, book_ids: list[str], on_log: Callable[[str], None]) -> RepairRun:
    """Run `repair_stores` for the books (empty: every drifted book and orphan); `on_log` gets each book's line."""
    run = runs.run("repair_stores", books_tag(book_ids),
                   {"ops": {"resync_stores_from_postgres": {"config": {"book_ids": book_ids}}}}, on_log)
    metadata = {}
    for record in runs.instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_OUTPUT):
        metadata = {k: v.value for k, v in record.dagster_event.step_output_data.metadata.items()}
    summary = ", ".join(f"{metadata.get(k, 0)} {k}" for k in ("books checked", "books rewritten", "orphans removed"))
    ended = _books_run(runs.instance, run, book_ids)
    return RepairRun(run.run_id, ended.success, ended.error, summary)


def _books_run(instance: DagsterInstance, run: DagsterRun, books: list[str]) -> BooksRun:
    success = run.status == DagsterRunStatus.SUCCESS
    return BooksRun(run.run_id, books, success, None if success else _failure_reason(instance, run))


def _failure_reason(instance: DagsterInstance, run: DagsterRun) -> str:
    """Why the run failed: its first failed step's reason (see `failure_reason`); else what ended it."""
    if run.status == DagsterRunStatus.CANCELED:
        return "the run was cancelled"
    step = next(iter(instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)), None)
    return failure_reason(step.dagster_event) if step is not None else run_end_reason(instance, run.run_id)
