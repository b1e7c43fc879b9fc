"""The library sensor on a real instance: new, changed, unchanged, failing and removed books."""

import hashlib
import json

import pytest
from dagster import DagsterInstance, build_sensor_context, materialize

from corpus_assets.assets.chunks import book_chunks
from corpus_assets.assets.embeddings import chunk_embeddings
from corpus_assets.assets.graph import book_graph, similar_chunks
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.qdrant import qdrant_points
from corpus_assets.assets.raw import raw_books
from corpus_assets.assets.text import book_text
from corpus_assets.batches import RANGE_END_TAG, RANGE_START_TAG
from corpus_assets.checks import graph_chunk_ids, postgres_chunk_ids, qdrant_chunk_ids
from corpus_assets.partitions import books_partitions
from corpus_assets.removal import remove_books
from sensors.library_sensor import library_sensor

ASSETS = [raw_books, book_text, book_chunks, chunk_embeddings, pgvector_chunks, qdrant_points, book_graph, similar_chunks]
WALLPAPER = "1952_the-yellow-wallpaper"


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
        state["cursor"] = result.cursor
        return result

    def run(request):
        if request.job_name == remove_books.name:
            return remove_books.execute_in_process(
                run_config=request.run_config, instance=instance, resources=resources, raise_on_error=False
            )
        return materialize(ASSETS, instance=instance, resources=resources, tags=request.tags, raise_on_error=False)

    def ids(book_id):
        with opened(resources["postgres"]) as postgres:
            return (postgres_chunk_ids(postgres, book_id), qdrant_chunk_ids(qdrant, book_id),
                    graph_chunk_ids(graph, book_id))

    return instance, tick, run, ids


def ranges(result):
    return [(r.tags.get(RANGE_START_TAG), r.tags.get(RANGE_END_TAG)) for r in result.run_requests]


def test_new_unchanged_changed_and_removed_books(world, library, book_resources, opened):
    instance, tick, run, ids = world

    first = tick()  # a new book: a partition and one run
    assert instance.get_dynamic_partitions(books_partitions.name) == [WALLPAPER]
    assert ranges(first) == [(WALLPAPER, WALLPAPER)]
    assert run(first.run_requests[0]).success
    original = ids(WALLPAPER)[0]
    assert original and ids(WALLPAPER) == (original, original, original)

    idle = tick()
    assert idle.run_requests == []  # nothing changed: no run
    # Dagster keeps every tick's cursor: it holds nothing once the book is stored; the file cache is in Postgres.
    assert json.loads(idle.cursor) == {"requested": {}, "removing": []}
    with opened(book_resources["postgres"]) as postgres, postgres.db() as db:
        cached = db.library_files()
    path = library / f"{WALLPAPER}.txt"
    assert list(cached) == [WALLPAPER]
    assert cached[WALLPAPER].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert cached[WALLPAPER].size == path.stat().st_size

    path.write_text(path.read_text(encoding="utf-8").replace("John", "Johnny"), encoding="utf-8")
    (library / "another.txt").write_text("A second book.\n\n" + "It has a few words. " * 200, encoding="utf-8")
    changed = tick()  # the edited book and the new one, adjacent in partition order: one run
    assert ranges(changed) == [(WALLPAPER, "another")] or ranges(changed) == [(WALLPAPER, WALLPAPER), ("another", "another")]
    for request in changed.run_requests:
        assert run(request).success
    assert ids(WALLPAPER)[0] != original and len(set(map(frozenset, ids(WALLPAPER)))) == 1
    assert tick().run_requests == []

    path.unlink()
    removal = tick()
    assert [r.job_name for r in removal.run_requests] == [remove_books.name]
    assert removal.run_requests[0].run_config["ops"]["remove_books_from_stores"]["config"]["book_ids"] == [WALLPAPER]
    assert run(removal.run_requests[0]).success
    assert ids(WALLPAPER) == (set(), set(), set())
    assert ids("another")[0]  # the other book is untouched
    assert instance.get_dynamic_partitions(books_partitions.name) == ["another"]
    assert tick().run_requests == []
    with opened(book_resources["postgres"]) as postgres, postgres.db() as db:
        assert list(db.library_files()) == ["another"]  # the deleted file is forgotten


def test_a_failing_book_is_not_requested_again_until_its_file_changes(world, library):
    instance, tick, run, _ = world
    (library / "zz-broken.txt").write_bytes(b"\x00\x01" * 100)
    first = tick()
    broken_runs = [r for r in first.run_requests if r.tags[RANGE_END_TAG] == "zz-broken"]
    assert broken_runs and not run(broken_runs[0]).success
    assert tick().run_requests == []
    (library / "zz-broken.txt").write_text("Now it is text.\n", encoding="utf-8")
    assert ranges(tick()) == [("zz-broken", "zz-broken")]
