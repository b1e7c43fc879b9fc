"""The library sensor on a real instance: new, changed, unchanged, failing and removed books."""

import hashlib
import json

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, build_op_context, build_sensor_context, materialize

from corpus_assets.assets.chunks import book_chunks
from corpus_assets.assets.embeddings import chunk_embeddings
from corpus_assets.assets.files import book_files
from corpus_assets.assets.graph import book_graph, similar_chunks
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.qdrant import qdrant_points
from corpus_assets.assets.raw import raw_books
from corpus_assets.assets.text import book_text
from corpus_assets.batches import BOOKS_TAG, RANGE_END_TAG, RANGE_START_TAG, books_tag
from corpus_assets.checks import graph_chunk_ids, postgres_chunk_ids, qdrant_chunk_ids
from corpus_assets.definitions import defs
from corpus_assets.library_plan import failures_of_run
from corpus_assets.partitions import books_partitions
from corpus_assets.jobs import ingest_books
from corpus_assets.removal import remove_books
from resources.graph import Neo4jResource
from resources.qdrant import QdrantServerResource
from sensors.library_sensor import library_sensor

ASSETS = [raw_books, book_text, book_chunks, chunk_embeddings, pgvector_chunks, qdrant_points, book_graph, similar_chunks]
WALLPAPER = "1952_the-yellow-wallpaper"
DATA_VERSION_TAG = "dagster/data_version"


@pytest.fixture
def world(book_resources, qdrant, graph, opened):
    instance = DagsterInstance.ephemeral()
    resources = {**book_resources, "qdrant": qdrant, "graph": graph}
    state = {"cursor": None}

    def tick():
        with build_sensor_context(instance=instance, cursor=state["cursor"], resources=resources) as context:
            result = library_sensor(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for event in result.asset_events:  # what the daemon records with the tick
            instance.report_runless_asset_event(event)
        state["cursor"] = result.cursor
        return result

    def run(request, **down):
        if request.job_name == remove_books.name:
            return remove_books.execute_in_process(
                run_config=request.run_config, instance=instance, resources={**resources, **down}, raise_on_error=False
            )
        return materialize(ASSETS, instance=instance, resources={**resources, **down}, tags=request.tags,
                           raise_on_error=False)

    def ids(book_id):
        with opened(resources["postgres"]) as postgres:
            return (postgres_chunk_ids(postgres, book_id), qdrant_chunk_ids(qdrant, book_id),
                    graph_chunk_ids(graph, book_id))

    return instance, tick, run, ids


def staleness(instance, book_id, asset="raw_books"):
    """What the UI shows for the book's partition of `asset`: fresh, or stale (unsynced)."""
    # Dagster's public API exposes staleness only through the UI/GraphQL: its resolver is read here.
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._core.loader import LoadingContextForTest

    resolver = CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), LoadingContextForTest(instance))
    return resolver.get_status(AssetKey(asset), book_id).value


def ranges(result):
    return [(r.tags.get(RANGE_START_TAG), r.tags.get(RANGE_END_TAG)) for r in result.run_requests]


def test_new_unchanged_changed_and_removed_books(world, library, book_resources, opened):
    instance, tick, run, ids = world

    first = tick()  # a new book: a partition and one run
    assert instance.get_dynamic_partitions(books_partitions.name) == [WALLPAPER]
    assert ranges(first) == [(WALLPAPER, WALLPAPER)]
    assert first.run_requests[0].tags[BOOKS_TAG] == WALLPAPER  # what the UI's run list shows
    assert run(first.run_requests[0]).success
    original = ids(WALLPAPER)[0]
    assert original and ids(WALLPAPER) == (original, original, original)

    idle = tick()
    assert idle.run_requests == []  # nothing changed: no run
    # Dagster keeps every tick's cursor: it holds a position in the run-failure events; the file cache is
    # in Postgres and the runs in flight (ingests and removals) are Dagster's own records.
    assert set(json.loads(idle.cursor)) == {"failures_after"} and len(idle.cursor) < 100
    with opened(book_resources["postgres"]) as postgres, postgres.db() as db:
        cached = db.library_files()
    path = library / f"{WALLPAPER}.txt"
    assert list(cached) == [WALLPAPER]
    assert cached[WALLPAPER].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert cached[WALLPAPER].size == path.stat().st_size

    assert [e.tags[DATA_VERSION_TAG] for e in first.asset_events] == [cached[WALLPAPER].sha256]
    # "Observe" on book_files in the UI: every registered book's file version, the same.
    with build_op_context(instance=instance, resources={"library": book_resources["library"],
                                                        "postgres": book_resources["postgres"]}) as context:
        observed = book_files.observe_fn(context)
    assert {book: version.value for book, version in observed.data_versions_by_partition.items()} == {
        WALLPAPER: cached[WALLPAPER].sha256}
    assert idle.asset_events == [] and staleness(instance, WALLPAPER) == "FRESH"

    path.write_text(path.read_text(encoding="utf-8").replace("John", "Johnny"), encoding="utf-8")
    (library / "another.txt").write_text("A second book.\n\n" + "It has a few words. " * 200, encoding="utf-8")
    changed = tick()  # the edited book and the new one, adjacent in partition order: one run
    # The edit is observed as a new data version of the book's file: its partitions are unsynced
    # until the run materializes them again.
    assert {e.partition: e.tags[DATA_VERSION_TAG] for e in changed.asset_events}[WALLPAPER] == hashlib.sha256(
        path.read_bytes()).hexdigest()
    assert staleness(instance, WALLPAPER) == "STALE"
    assert ranges(changed) == [(WALLPAPER, "another")] or ranges(changed) == [(WALLPAPER, WALLPAPER), ("another", "another")]
    for request in changed.run_requests:
        assert run(request).success
    assert ids(WALLPAPER)[0] != original and len(set(map(frozenset, ids(WALLPAPER)))) == 1
    assert staleness(instance, WALLPAPER) == "FRESH"
    assert tick().run_requests == []

    path.unlink()
    removal = tick()
    assert [r.job_name for r in removal.run_requests] == [remove_books.name]
    assert removal.run_requests[0].run_config["ops"]["remove_books_from_stores"]["config"]["book_ids"] == [WALLPAPER]
    assert removal.run_requests[0].tags[BOOKS_TAG] == WALLPAPER
    assert run(removal.run_requests[0]).success
    assert ids(WALLPAPER) == (set(), set(), set())
    assert ids("another")[0]  # the other book is untouched
    assert instance.get_dynamic_partitions(books_partitions.name) == ["another"]
    # Every asset of the removed book ends with an event saying so (the OSS event log cannot wipe one
    # partition's history); the other book has none.
    for asset in ("raw_books", "book_text", "pgvector_chunks"):
        observed = instance.fetch_observations(AssetRecordsFilter(asset_key=AssetKey(asset),
                                                                  asset_partitions=[WALLPAPER, "another"]), limit=5)
        assert [(r.partition_key, "removed" in r.asset_observation.metadata) for r in observed.records] == [
            (WALLPAPER, True)], asset
    assert tick().run_requests == []
    with opened(book_resources["postgres"]) as postgres, postgres.db() as db:
        assert list(db.library_files()) == ["another"]  # the deleted file is forgotten


def failures(book_resources, opened):
    with opened(book_resources["postgres"]) as postgres, postgres.db() as db:
        return db.book_failures()


def test_a_bad_book_fails_alone_its_batch_goes_on_and_it_waits_for_its_file_to_change(
    world, library, book_resources, opened
):
    instance, tick, run, ids = world
    (library / "zz-broken.txt").write_bytes(b"\x00\x01" * 100)  # binary: fails in book_text
    (library / "zz-empty.txt").write_bytes(b"")  # fails in raw_books
    (library / "zz-good.txt").write_text("A good small book.\n\n" + "It has a few words. " * 200, encoding="utf-8")
    vanishing = library / "zz-vanishing.txt"
    vanishing.write_text("Here one moment.\n\n" + "Gone the next. " * 200, encoding="utf-8")
    first = tick()
    assert ranges(first) == [(WALLPAPER, "zz-vanishing")]  # every new book in one batch
    vanishing.unlink()  # deleted between the tick and its run
    assert not run(first.run_requests[0]).success

    # Each tick reads the failed runs back: their bad books are recorded and left out, the good ones go on.
    # A batch shows its bad books stage by stage (a book that failed in book_text was never tried in chunks).
    for rounds in range(1, 6):
        requests = tick().run_requests
        if not requests:
            break
        for request in requests:
            run(request)
    assert rounds <= 4, "the library did not settle"
    assert ids(WALLPAPER)[0] and ids("zz-good")[0] and len(set(map(frozenset, ids("zz-good")))) == 1
    assert "zz-vanishing" not in instance.get_dynamic_partitions(books_partitions.name)  # removed with its failure
    failed = failures(book_resources, opened)
    assert {book: f.stage for book, f in failed.items()} == {"zz-broken": "book_text", "zz-empty": "raw_books"}
    assert "binary" in failed["zz-broken"].problem and failed["zz-broken"].bad_input
    assert failed["zz-broken"].sha256 == hashlib.sha256(b"\x00\x01" * 100).hexdigest()  # the bytes its run read
    assert "is empty" in failed["zz-empty"].problem and failed["zz-empty"].bad_input
    # Dagster shows each bad book failed on its own partition and each good book materialized.
    status = instance.get_status_by_partition(book_text.key, ["zz-broken", "zz-empty", "zz-good", WALLPAPER], books_partitions)
    assert {book: s.value for book, s in status.items()} == {
        "zz-broken": "FAILED", "zz-empty": "FAILED", "zz-good": "MATERIALIZED", WALLPAPER: "MATERIALIZED"}

    assert tick().run_requests == []  # the bad files are unchanged: not tried again
    (library / "zz-broken.txt").write_text("Now it is text.\n\n" + "A mended book of words. " * 100, encoding="utf-8")
    mended = tick()
    assert ranges(mended) == [("zz-broken", "zz-broken")]
    assert run(mended.run_requests[0]).success
    assert tick().run_requests == []
    assert list(failures(book_resources, opened)) == ["zz-empty"]  # the mended book's failure is gone

    # Mended between its failed run and the tick that reads the run back: the failure belongs to the
    # bytes the run read, so the mended file is not held back.
    (library / "zz-race.txt").write_bytes(b"\x00" * 500)
    assert not run(tick().run_requests[0]).success
    (library / "zz-race.txt").write_text("Mended in time.\n\n" + "Words again. " * 200, encoding="utf-8")
    assert ranges(tick()) == [("zz-race", "zz-race")]


# qdrant-client warns that it cannot read the version of a server that is down, as it is here on purpose.
@pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")
def test_a_store_outage_is_retried_by_the_next_tick_not_held_back(world, book_resources, opened):
    instance, tick, run, ids = world
    first = tick()
    failed = run(first.run_requests[0], qdrant=QdrantServerResource(url="http://127.0.0.1:9"))  # refused
    assert not failed.success
    failure = failures_of_run(instance, failed.dagster_run, [WALLPAPER])[WALLPAPER]
    assert failure.stage == "qdrant_points" and "unavailable" in failure.problem and not failure.bad_input
    assert not failure.counts  # an outage is never counted against the book
    retry = tick()  # reads the failed run back: Postgres stores the book, its Qdrant write is asked again
    assert ranges(retry) == [(WALLPAPER, WALLPAPER)]
    assert run(retry.run_requests[0]).success
    assert len(set(map(frozenset, ids(WALLPAPER)))) == 1 and ids(WALLPAPER)[0]
    assert tick().run_requests == []


def test_a_runs_books_tag_names_few_books_and_counts_many():
    assert books_tag(["a"]) == {BOOKS_TAG: "a"}
    assert books_tag(["a", "b", "c"]) == {BOOKS_TAG: "a, b, c"}
    assert books_tag([f"book{i:03d}" for i in range(100)]) == {BOOKS_TAG: "100 books: book000 … book099"}


def test_an_emptied_library_removes_nothing_and_the_held_removal_is_planned_again_every_tick(
    world, library, book_resources, monkeypatch
):
    instance, tick, run, ids = world
    assert run(tick().run_requests[0]).success
    book = library / f"{WALLPAPER}.txt"
    book.rename(library.parent / "elsewhere.txt")  # the folder now holds nothing: a share not mounted, say
    for _ in range(2):
        held = tick()
        assert held.run_requests == [] and "holds no book files" in held.skip_reason.skip_message
    assert ids(WALLPAPER)[0]  # still stored everywhere

    # New books are ingested meanwhile; a removal over the limits waits, and is asked again every tick.
    monkeypatch.setenv("CORPUS_MAX_REMOVAL_BOOKS", "0")
    monkeypatch.setenv("CORPUS_MAX_REMOVAL_SHARE", "0")
    (library / "newcomer.txt").write_text("A new book.\n\n" + "It has a few words. " * 200, encoding="utf-8")
    both = tick()
    assert [r.job_name for r in both.run_requests] == [ingest_books.name] and ranges(both) == [("newcomer", "newcomer")]
    assert run(both.run_requests[0]).success
    assert tick().run_requests == [] and ids(WALLPAPER)[0]
    monkeypatch.delenv("CORPUS_MAX_REMOVAL_BOOKS")
    monkeypatch.delenv("CORPUS_MAX_REMOVAL_SHARE")
    removal = tick()  # within the limits now: the same pending removal
    assert [r.job_name for r in removal.run_requests] == [remove_books.name]
    assert run(removal.run_requests[0]).success and ids(WALLPAPER) == (set(), set(), set())


def test_a_failed_removal_is_asked_again_and_a_book_deleted_twice_is_removed_twice(world, library):
    instance, tick, run, ids = world
    book = library / f"{WALLPAPER}.txt"
    (library / "keeper.txt").write_text("A book that stays.\n\n" + "It has a few words. " * 200, encoding="utf-8")
    for request in tick().run_requests:
        assert run(request).success
    saved = book.read_bytes()
    book.unlink()
    first = tick()
    assert [r.job_name for r in first.run_requests] == [remove_books.name]
    assert not run(first.run_requests[0], graph=Neo4jResource(uri="bolt://127.0.0.1:9", retry_seconds=0.5)).success
    assert ids(WALLPAPER)[0]  # the failed removal left Postgres (removed last) as it was
    again = tick()  # the failed removal is asked again, not forgotten
    assert [r.job_name for r in again.run_requests] == [remove_books.name]
    assert run(again.run_requests[0]).success and ids(WALLPAPER) == (set(), set(), set())

    book.write_bytes(saved)  # back, then deleted again: removed again (no run key ties it to the first removal)
    for request in tick().run_requests:
        assert run(request).success
    assert ids(WALLPAPER)[0]
    book.unlink()
    last = tick()
    assert [r.job_name for r in last.run_requests] == [remove_books.name]
    assert run(last.run_requests[0]).success and ids(WALLPAPER) == (set(), set(), set())


def test_the_sensor_waits_for_a_bulk_load_and_builds_the_index_one_left_dropped(world, book_resources, opened):
    from dagster import DagsterRun, DagsterRunStatus

    from corpus_assets.jobs import build_vector_index

    instance, tick, run, ids = world
    assert run(tick().run_requests[0]).success
    with opened(book_resources["postgres"]) as postgres, postgres.db() as loader, postgres.db() as db:
        with loader.bulk_load_held() as held:  # a `corpus ingest` loading in bulk, in another session
            assert held and db.bulk_load_running()
            with db.bulk_load_held() as second:
                assert not second  # a second bulk load waits for the first
            waiting = tick()
            assert waiting.run_requests == [] and "a bulk load (`corpus ingest`) is running" in waiting.skip_reason.skip_message
        assert not db.bulk_load_running()
        # The load killed after it dropped the index: the sensor asks for the index once, new books wait.
        db.drop_hnsw_index()
        build = tick()
        assert [r.job_name for r in build.run_requests] == [build_vector_index.name]
        instance.add_run(DagsterRun(job_name=build_vector_index.name, status=DagsterRunStatus.STARTED))
        building = tick()
        assert building.run_requests == [] and "the HNSW index is being built again" in building.skip_reason.skip_message
        assert build_vector_index.execute_in_process(instance=instance, resources=book_resources).success
        assert db.hnsw_index_state().valid
    assert tick().run_requests == []  # back to the plan: nothing changed
