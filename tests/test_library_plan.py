"""The library plan's guards (issue #32) on a real Postgres and Dagster instance: a file or folder that
cannot be read fails alone and removes nothing; removals beyond the limits wait for confirmation; runs
are bounded in bytes; a run killed for memory is split down to the book that fails alone; a book that
keeps failing is held back instead of planned forever."""

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, instance_for_test

from corpus_assets.batches import partition_ranges, reap_dead_runs
from corpus_assets.books.library import LibraryListing
from corpus_assets.library_plan import RUN_DIED, plan_library, record_failed_run, removal_of
from corpus_assets.partitions import books_partitions
from corpus_cli.runs import ingest_in_runs
from resources import settings
from resources.library import BookLibrary
from resources.postgres import PostgresResource
from resources.postgres.store import BookFailure

WORDS = "A small book of plain words. " * 50


@pytest.fixture
def planning(tmp_path, database_url, opened):
    library = tmp_path / "library"
    library.mkdir()
    instance = DagsterInstance.ephemeral()

    @contextmanager
    def corpus_db():
        with opened(PostgresResource(database_url=database_url)) as postgres, postgres.db() as db:
            yield db

    def plan(**kwargs):
        with corpus_db() as db:
            return plan_library(instance, BookLibrary(folder=str(library)), db, **kwargs)

    plan.db = corpus_db
    return library, instance, plan


def test_a_file_that_cannot_be_read_fails_alone_and_is_neither_ingested_nor_removed(planning, monkeypatch):
    library, instance, plan = planning
    for name in ("locked", "open"):
        (library / f"{name}.txt").write_text(WORDS)
    instance.add_dynamic_partitions(books_partitions.name, ["locked", "open"])  # both known before
    real_open = Path.open

    def refusing(path, *args, **kwargs):
        # As root every file is readable: the refusal another user's file gives is injected.
        if path.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing)
    planned = plan()
    assert planned.ingest == ["open"] and planned.removal.books == []
    assert [(p.name, p.problem) for p in planned.problems] == [("locked.txt", "cannot be read: Permission denied")]


def test_a_folder_that_cannot_be_listed_removes_none_of_the_books_it_may_hold(planning, monkeypatch):
    library, instance, plan = planning
    (library / "shelf").mkdir()
    (library / "shelf" / "inside.txt").write_text(WORDS)
    (library / "outside.txt").write_text(WORDS)
    inside_id = next(iter(set(plan().listing.files) - {"outside"}))
    instance.add_dynamic_partitions(books_partitions.name, [inside_id, "outside"])
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                        if Path(path).name == "shelf" else scandir(path))
    planned = plan()
    assert planned.removal.books == [inside_id] and not planned.removal.allowed
    assert "cannot be listed (shelf)" in planned.removal.reason
    assert not plan(confirm_removal=True).removal.allowed  # not even when confirmed: nobody knows what is gone


def test_removals_past_the_limits_wait_for_confirmation(monkeypatch):
    listing = LibraryListing(Path("/lib"), files={f"b{i}": Path(f"/lib/b{i}.txt") for i in range(90)})
    assert removal_of(listing, [f"g{i}" for i in range(10)], 100).allowed  # 10 books: not over 10
    assert removal_of(listing, [f"g{i}" for i in range(11)], 1000).allowed  # 1.1 %: not over 5 %
    held = removal_of(listing, [f"g{i}" for i in range(11)], 100)
    assert not held.allowed and "11 of 100 books would be removed" in held.reason and "--confirm-removal" in held.reason
    assert removal_of(listing, [f"g{i}" for i in range(11)], 100, confirmed=True).allowed
    monkeypatch.setenv(settings.MAX_REMOVAL_BOOKS_ENV, "50")
    assert removal_of(listing, [f"g{i}" for i in range(11)], 100).allowed
    empty = LibraryListing(Path("/lib"))
    assert not removal_of(empty, ["a"], 1).allowed and removal_of(empty, ["a"], 1, confirmed=True).allowed
    missing = LibraryListing(Path("/lib"), unavailable="the library folder /lib does not exist")
    assert not removal_of(missing, ["a"], 1, confirmed=True).allowed


def test_runs_are_bounded_in_bytes_and_books_that_died_run_alone():
    keys = [f"b{i}" for i in range(8)]
    sizes = {key: 10 for key in keys} | {"b3": 100}
    assert partition_ranges(keys, keys, 20) == [keys]
    assert partition_ranges(keys, keys, 20, sizes, max_bytes=30) == [
        ["b0", "b1", "b2"], ["b3"], ["b4", "b5", "b6"], ["b7"]]
    assert partition_ranges(keys, keys, 20, sizes, max_bytes=1000, alone={"b5"}) == [
        ["b0", "b1", "b2", "b3", "b4"], ["b5"], ["b6", "b7"]]


class RunsThatDieOn:
    """Runs that end as a run killed for memory does (FAILURE, no step failed) when they hold `killer`.

    The OOM killer cannot be made to strike one book of a batch on cue; the runs are real runs of the
    instance, only their processes are not started."""

    def __init__(self, instance: DagsterInstance, killer: str):
        self.instance, self.killer, self.launched = instance, killer, []

    def run(self, job_name, tags, run_config, on_log=None):
        books = self.instance.get_dynamic_partitions(books_partitions.name)
        covered = books[books.index(tags["dagster/asset_partition_range_start"]):
                        books.index(tags["dagster/asset_partition_range_end"]) + 1]
        self.launched.append(covered)
        status = DagsterRunStatus.FAILURE if self.killer in covered else DagsterRunStatus.SUCCESS
        return self.instance.add_run(DagsterRun(job_name=job_name, tags=tags, status=status))


def test_a_run_killed_for_memory_is_split_down_to_the_book_that_fails_alone(database_url, opened):
    instance = DagsterInstance.ephemeral()
    keys = [f"book{i}" for i in range(8)]
    instance.add_dynamic_partitions(books_partitions.name, keys)
    runs = RunsThatDieOn(instance, "book5")
    with opened(PostgresResource(database_url=database_url)) as postgres, postgres.db() as db:
        outcome = ingest_in_runs(runs, keys, lambda books: partition_ranges(keys, books, 20),
                                 record_failures=lambda run: record_failed_run(db, instance, run, keys, {}))
        failures = db.book_failures()
    assert set(outcome.failed) == {"book5"} and outcome.failed["book5"].stage == RUN_DIED
    assert sorted(outcome.ingested) == sorted(set(keys) - {"book5"})
    # Halves, not one run per book: the killer found in 3 splits, the others ingested on the way.
    assert runs.launched == [keys, keys[:4], keys[4:], ["book4", "book5"], ["book4"], ["book5"], ["book6", "book7"]]
    assert failures["book5"].attempts == 1  # its own run died: counted; the batches' deaths were not


def test_a_book_that_keeps_failing_not_by_an_outage_is_held_back_until_its_file_changes(planning, monkeypatch):
    library, instance, plan = planning
    (library / "flaky.txt").write_text(WORDS)
    sha = plan().scan.current["flaky"]
    instance.add_dynamic_partitions(books_partitions.name, ["flaky"])
    failure = BookFailure("flaky", sha, "pgvector_chunks", "ValueError: no", False, "run")
    with plan.db() as db:
        for attempt in range(1, 4):
            assert plan().ingest == ["flaky"]  # tried again while it has attempts left
            db.record_book_failures([failure], counted=["flaky"])
            assert db.book_failures()["flaky"].attempts == attempt
        db.record_book_failures([failure], counted=[])  # an outage: not counted
        assert db.book_failures()["flaky"].attempts == 3
    planned = plan()
    assert planned.ingest == [] and list(planned.held_back) == ["flaky"]
    (library / "flaky.txt").write_text(WORDS + "Edited. ")
    planned = plan()
    assert planned.ingest == ["flaky"] and planned.cleared == ["flaky"]  # new content: a fresh start


def test_a_run_whose_worker_died_while_it_was_being_cancelled_ends_and_frees_its_pool_slot():
    # `corpus ingest` stopped (SIGTERM) while a step sat in native code: the run was left CANCELING, and
    # its worker killed after. It held its `qdrant` slot for ever, and every later run waited on it.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with instance_for_test() as instance:
        run = instance.add_run(DagsterRun(job_name="ingest_books", status=DagsterRunStatus.NOT_STARTED))
        instance.report_dagster_event(DagsterEvent(DagsterEventType.RUN_START.value, "ingest_books", pid=dead.pid),
                                      run.run_id)
        instance.report_run_canceling(instance.get_run_by_id(run.run_id))
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELING
        instance.event_log_storage.initialize_concurrency_limit_to_default("qdrant")
        instance.event_log_storage.set_concurrency_slots("qdrant", 1)
        assert instance.event_log_storage.claim_concurrency_slot("qdrant", run.run_id, "qdrant_points").is_claimed
        assert [r.run_id for r in reap_dead_runs(instance)] == [run.run_id]
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED
        assert instance.event_log_storage.get_concurrency_info("qdrant").active_slot_count == 0
