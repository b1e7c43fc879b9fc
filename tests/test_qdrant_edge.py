"""Qdrant Edge, the embedded Qdrant, through the store layer: past its exact-search size, shared
between holders, and its point bookkeeping (the pipeline's own tests run on it end to end)."""

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from filelock import FileLock
import qdrant_edge as edge

from resources.errors import SchemaOutOfDate, StoreUnavailable
from resources.qdrant import QdrantEdgeResource
from resources.qdrant import collection as qdrant_collection
from resources.qdrant import edge as edge_module
from resources.qdrant.collection import SPARSE_VECTOR, document_words, payload, point_id
from resources.qdrant.edge import FULL_SCAN_THRESHOLD, MAX_SEGMENT_KB, SEGMENTS, EdgeCollection
from schedules.upkeep import merge_qdrant

DIMENSION = 384


def _chunks(book_id: str, count: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(id=f"{book_id}-{i}", book_id=book_id, ordinal=i, chapter="One", text=f"text {i}")
            for i in range(count)]


def _vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_collection_past_the_exact_search_size_is_indexed_and_every_point_is_found(qdrant: QdrantEdgeResource):
    big, small = _chunks("big", FULL_SCAN_THRESHOLD + 2_000), _chunks("small", 50)
    big_vectors, small_vectors = _vectors(len(big), 1), _vectors(len(small), 2)
    with qdrant.open() as collection:
        assert collection.status() == "missing" and collection.count() == 0
        collection.ensure_collection(DIMENSION)
        collection.upsert(big, big_vectors, "English")
        collection.upsert(small, small_vectors, "English")
        collection.upsert(small, small_vectors, "English")  # a re-run overwrites, never duplicates

    shard = edge.EdgeShard.load(str(qdrant.folder()))  # closed above after building its HNSW index
    try:
        assert shard.info().indexed_vectors_count >= FULL_SCAN_THRESHOLD
    finally:
        shard.close()
    assert qdrant.segments_behind_settings() == 0  # memory-mapped, as the settings say

    with qdrant.open() as collection:
        assert collection.status() == "green"
        assert collection.count() == len(big) + len(small)
        assert collection.points_per_book(["big", "small", "absent"]) == {"big": len(big), "small": 50, "absent": 0}
        # Asked for more books than a filter serves well: every book gone over, the asked ones kept.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(qdrant_collection, "FILTER_MAX_BOOKS", 1)
            assert collection.points_per_book(["small", "absent"]) == {"small": 50, "absent": 0}
            assert collection.chunk_ids_per_book(["small", "absent"]) == {"small": {c.id for c in small}, "absent": set()}
        ids = collection.chunk_ids_per_book(["big", "small"])  # more than one scroll page
        assert ids == {"big": {c.id for c in big}, "small": {c.id for c in small}}
        assert collection.book_ids() == {"big", "small"}
        for row in (0, 7_777, len(big) - 1):
            hit = collection.search(big_vectors[row], limit=1)[0]
            assert (hit.chunk_id, hit.book_id) == (big[row].id, "big") and hit.score > 0.999
        within = collection.search(big_vectors[3], limit=10, books=["small"])
        assert len(within) == 10 and {hit.book_id for hit in within} == {"small"}

        assert collection.delete_book_except("small", [c.id for c in small[:20]]) == 30
        assert collection.delete_book("big") == len(big)
        assert collection.points_per_book(["big", "small"]) == {"big": 0, "small": 20}


def _bytes_in_page_cache(files: list[str]) -> int:
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", *files],
                         capture_output=True, text=True, check=True).stdout
    return sum(int(size) for size in out.split())


@pytest.mark.skipif(shutil.which("fincore") is None, reason="needs util-linux's fincore")
def test_a_long_lived_reader_reads_the_vectors_back_into_the_page_cache_edge_drops_on_close(
        qdrant: QdrantEdgeResource):
    chunks, vectors = _chunks("big", FULL_SCAN_THRESHOLD + 2_000), _vectors(FULL_SCAN_THRESHOLD + 2_000, 5)
    with qdrant.open() as collection:
        collection.ensure_collection(DIMENSION)
        collection.upsert(chunks, vectors, "English")
    files = [str(path) for path in qdrant.folder().glob("segments/*/vector_storage/matrix.dat")]
    size = sum(Path(file).stat().st_size for file in files)
    assert size > 0 and _bytes_in_page_cache(files) < size / 2  # dropped when the writer closed the shard

    with qdrant.shared_reads() as reads:
        with reads.open():
            pass
        assert reads.wait_warm(timeout=60)
        assert _bytes_in_page_cache(files) >= 0.9 * size
        with reads.open() as collection:
            assert collection.search(vectors[9], limit=1)[0].chunk_id == chunks[9].id


def test_a_second_holder_waits_for_the_shard_instead_of_failing(qdrant: QdrantEdgeResource):
    with qdrant.open() as collection:
        collection.ensure_collection(DIMENSION)
        collection.upsert(_chunks("one", 5), _vectors(5, 3), "English")
    held = threading.Event()

    def writer():
        with qdrant.open() as collection:
            held.set()
            time.sleep(1.5)
            collection.upsert(_chunks("two", 5), _vectors(5, 4), "English")

    thread = threading.Thread(target=writer)
    thread.start()
    assert held.wait(30)
    started = time.monotonic()
    with qdrant.open() as collection:  # the same process: Edge refuses a second open (WouldBlock) until closed
        waited = time.monotonic() - started
        # Only after the writer closed: its points are all there.
        assert collection.points_per_book(["one", "two"]) == {"one": 5, "two": 5}
    thread.join()
    assert waited > 0.5


def _stored_config(qdrant: QdrantEdgeResource) -> dict:
    return json.loads((qdrant.folder() / "edge_config.json").read_text())


def test_a_shard_from_before_keyword_search_is_refused_until_migrate_rebuilds_it(qdrant):
    """A shard whose points lack the bm25 sparse vectors cannot gain them in place: opening it says to
    run `corpus migrate`, which deletes it (and rebuilds it from Postgres); the new shard has the
    scale settings (memory-mapped vectors and graph, capped segments) and keyword vectors."""
    qdrant.folder().mkdir(parents=True)
    edge.EdgeShard.create(str(qdrant.folder()), edge.EdgeConfig(
        vectors=edge.EdgeVectorParams(size=DIMENSION, distance=edge.Distance.Cosine),
        hnsw_config=edge.HnswIndexConfig(m=16, ef_construct=128, full_scan_threshold=FULL_SCAN_THRESHOLD))).close()
    with pytest.raises(SchemaOutOfDate, match="predates keyword search.*run `corpus migrate`"), qdrant.open():
        pass

    assert qdrant.drop_if_before_keyword_search() and not qdrant.folder().exists()
    assert not qdrant.drop_if_before_keyword_search()  # nothing left to drop
    vectors = _vectors(5, 5)
    with qdrant.open() as collection:
        collection.ensure_collection(DIMENSION)
        collection.upsert(_chunks("new", 5), vectors, "English")
    config = _stored_config(qdrant)
    assert config["vectors"][""] == {"size": DIMENSION, "distance": "Cosine", "memory": "cold"}
    assert config["hnsw_config"]["memory"] == "cold" and "bm25" in config["sparse_vectors"]
    assert (config["optimizers"]["max_segment_size"], config["optimizers"]["default_segment_number"]) == (
        MAX_SEGMENT_KB, SEGMENTS)
    with qdrant.open() as collection:
        assert collection.search(vectors[2], limit=1)[0].chunk_id == "new-2"


def test_segments_that_hold_the_keyword_index_in_ram_are_rebuilt_once_by_apply_settings(qdrant: QdrantEdgeResource):
    """A shard optimized before the keyword index was memory-mapped keeps it in RAM in every process that
    opens it; `apply_settings` (run by `corpus migrate`) rebuilds those segments once, and searches
    find the same points before and after."""
    chunks = [SimpleNamespace(id=f"old-{i}", book_id="old", ordinal=i, chapter="One",
                              text=f"a lighthouse keeper counts gulls {i}" if i % 50 == 0 else f"plain words {i}")
              for i in range(2_000)]
    vectors = _vectors(len(chunks), 6)
    qdrant.folder().mkdir(parents=True)
    shard = edge.EdgeShard.create(str(qdrant.folder()), edge.EdgeConfig(  # the settings of the previous release
        vectors=edge.EdgeVectorParams(size=DIMENSION, distance=edge.Distance.Cosine, memory=edge.Memory.Cold),
        sparse_vectors={SPARSE_VECTOR: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
        hnsw_config=edge.HnswIndexConfig(m=16, ef_construct=128, full_scan_threshold=FULL_SCAN_THRESHOLD,
                                         memory=edge.Memory.Cold),
        optimizers=edge.EdgeOptimizersConfig(default_segment_number=SEGMENTS, max_segment_size=MAX_SEGMENT_KB,
                                             indexing_threshold=100)))
    shard.update(edge.UpdateOperation.upsert_points([
        edge.Point(point_id(c.id), {"": v.tolist(), SPARSE_VECTOR: document_words(c.text, "English")}, payload(c))
        for c, v in zip(chunks, vectors, strict=True)]))
    shard.optimize()
    shard.close()
    assert qdrant.segments_behind_settings() >= 1
    with qdrant.open() as collection:
        words = document_words("lighthouse gulls", "English")
        before = ([h.chunk_id for h in collection.keyword_search(words, limit=40)],
                  [h.chunk_id for h in collection.search(vectors[123], limit=5)])

    assert qdrant.segments_behind_settings() >= 1  # a read-only open leaves them (no optimize)
    assert qdrant.apply_settings() == 0 == qdrant.segments_behind_settings()
    with qdrant.open() as collection:
        assert collection.count() == len(chunks)
        after = ([h.chunk_id for h in collection.keyword_search(words, limit=40)],
                 [h.chunk_id for h in collection.search(vectors[123], limit=5)])
    assert sorted(after[0]) == sorted(before[0]) == sorted(c.id for c in chunks[::50])
    assert after[1][0] == before[1][0] == "old-123"  # its own vector (the rest: HNSW before, exact after)


def test_a_shard_held_longer_than_its_patience_is_a_store_unavailable_not_a_traceback(qdrant: QdrantEdgeResource):
    with qdrant.open() as first:
        first.ensure_collection(DIMENSION)
        first.upsert(_chunks("a", 3), _vectors(3, 1), "English")
    with qdrant.open():  # held, as a long write holds it
        with pytest.raises(StoreUnavailable, match="held by another process"):
            with EdgeCollection(qdrant.folder(), qdrant.hnsw_ef_construct, qdrant.hnsw_ef, patience=0.5):
                pass


def _segments(qdrant: QdrantEdgeResource) -> int:
    shard = edge.EdgeShard.load(str(qdrant.folder()))
    try:
        return shard.info().segments_count
    finally:
        shard.close()


def _left_beside(qdrant: QdrantEdgeResource) -> list[Path]:
    """A merge's copy or replaced shard left beside the shard."""
    return [path for name in (".chunks.merging", ".chunks.replaced") if (path := qdrant.folder().parent / name).exists()]


def test_an_upkeep_merge_swaps_in_a_merged_copy_while_a_reader_keeps_searching(qdrant: QdrantEdgeResource, monkeypatch):
    """The shard's segments are merged in a copy while `corpus serve`'s reader goes on searching the shard,
    then the copy takes its place: same points, same answers, few segments; later writes land in it."""
    monkeypatch.setattr(edge_module, "INDEXING_THRESHOLD_KB", 100)  # a small shard built of many segments
    monkeypatch.setattr(edge_module, "MAX_SEGMENT_KB", 300)
    books = {f"book{n}": (_chunks(f"book{n}", 500), _vectors(500, 10 + n)) for n in range(8)}
    for chunks, vectors in books.values():  # one ingest step per book, each closing (and optimizing) the shard
        with qdrant.open() as collection:
            collection.ensure_collection(DIMENSION)
            collection.upsert(chunks, vectors, "English")
    before = _segments(qdrant)
    assert before > edge_module.MERGE_ABOVE_SEGMENTS
    probe_chunks, probe_vectors = books["book3"]

    answers, busy, stop = [], [], threading.Event()
    with qdrant.shared_reads() as reads:
        def read() -> None:
            while not stop.is_set():
                try:
                    with reads.open() as collection:
                        answers.append((time.monotonic(), collection.search(probe_vectors[7], limit=1)[0].chunk_id))
                except StoreUnavailable:  # the moments the merge holds the shard
                    busy.append(1)
                time.sleep(0.01)

        with reads.open():
            pass
        reader = threading.Thread(target=read)
        reader.start()
        started = time.monotonic()
        run = merge_qdrant.execute_in_process(resources={"qdrant": qdrant})  # the weekly upkeep job
        ended = time.monotonic()
        stop.set()
        reader.join()

    (output,) = [event for event in run.all_events if event.is_successful_output]
    merge = {key: value.value for key, value in output.step_output_data.metadata.items()}
    assert (merge["outcome"], merge["segments before"], merge["points"]) == ("merged", before, 4_000)
    assert merge["segments after"] <= edge_module.MERGED_SEGMENTS < before
    # Refused only while the merge held the shard (reading its state, then the swap), answered while the
    # copy was merged, and always right.
    assert {chunk_id for _, chunk_id in answers} == {probe_chunks[7].id} and len(busy) < len(answers)
    assert any(started + (ended - started) / 4 < at < ended - (ended - started) / 4 for at, _ in answers)
    assert _segments(qdrant) == merge["segments after"]
    assert not _left_beside(qdrant)
    with qdrant.open() as collection:
        assert collection.chunk_ids_per_book(sorted(books)) == {book: {c.id for c in chunks}
                                                             for book, (chunks, _) in books.items()}
        collection.upsert(_chunks("later", 500), _vectors(500, 99), "English")  # an ingest after the merge
        assert collection.search(probe_vectors[7], limit=1)[0].chunk_id == probe_chunks[7].id
    assert _segments(qdrant) <= edge_module.MERGED_SEGMENTS + 2  # the merged segments are not split again
    assert qdrant.merge_segments().outcome == "not needed"

    # A merge killed between its two renames: the shard beside, none in place. The next opener puts it back.
    qdrant.folder().rename(qdrant.folder().parent / ".chunks.replaced")
    with qdrant.open() as collection:
        assert collection.points_per_book(["book3", "later"]) == {"book3": 500, "later": 500}
    assert not _left_beside(qdrant)
    # Killed after the swap, while deleting the shard it replaced: the next merge deletes the rest and goes on.
    (qdrant.folder().parent / ".chunks.replaced" / "segments").mkdir(parents=True)
    assert qdrant.merge_segments().outcome == "not needed" and not _left_beside(qdrant)


def test_a_merge_whose_shard_is_written_meanwhile_keeps_the_shard_and_its_write(qdrant: QdrantEdgeResource, monkeypatch):
    monkeypatch.setattr(edge_module, "INDEXING_THRESHOLD_KB", 100)
    monkeypatch.setattr(edge_module, "MAX_SEGMENT_KB", 300)
    for n in range(8):
        with qdrant.open() as collection:
            collection.ensure_collection(DIMENSION)
            collection.upsert(_chunks(f"book{n}", 500), _vectors(500, n), "English")
    before = _segments(qdrant)
    with FileLock(qdrant.folder().parent / ".chunks.merge.lock"):  # another merge of the shard is running
        assert qdrant.merge_segments().outcome == "held back: another merge of this shard is running"
    load = edge.EdgeShard.load

    class MergedWhileWritten:  # the copy being merged, while a writer that ignores the pool writes the shard
        def __init__(self, shard):
            self._shard = shard

        def optimize(self):
            with qdrant.open() as collection:
                collection.upsert(_chunks("written-meanwhile", 5), _vectors(5, 50), "English")
            return self._shard.optimize()

        def __getattr__(self, name):
            return getattr(self._shard, name)

    monkeypatch.setattr(edge_module, "EdgeShard", SimpleNamespace(
        create=edge.EdgeShard.create,
        load=lambda path, config=None: (MergedWhileWritten if ".merging" in path else lambda shard: shard)(load(path, config))))
    merge = qdrant.merge_segments()
    assert merge.outcome == "abandoned: the shard was written while it was merged" and merge.went_wrong
    with qdrant.open() as collection:
        assert collection.points_per_book(["written-meanwhile", "book0"]) == {"written-meanwhile": 5, "book0": 500}
    assert _segments(qdrant) >= before - 1 and not _left_beside(qdrant)
