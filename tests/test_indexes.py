"""Qdrant, the graph and the asset checks, on the real embedded stores."""

import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import jsonschema
import pandas as pd
import psycopg
import pytest
from dagster import AssetSelection, build_resources, build_schedule_context, instance_for_test, materialize
from fastapi.testclient import TestClient
from qdrant_edge import EdgeShard, Point, UpdateOperation

from corpus_assets.assets.chunks import book_chunks
from corpus_assets.assets.embeddings import chunk_embeddings
from corpus_assets.assets.graph import book_graph, similar_chunks
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.qdrant import qdrant_points
from corpus_assets.assets.raw import raw_books
from corpus_assets.assets.report import library_report
from corpus_assets.assets.text import book_text
from corpus_assets.batches import RANGE_END_TAG, RANGE_START_TAG
from corpus_assets.checks import book_checks, graph_chunk_ids, hnsw_index_is_valid, postgres_chunk_ids, qdrant_chunk_ids
from corpus_assets.library_plan import Failed, failures_of_run
from corpus_assets.repair import repair_stores
from corpus_cli.status import FailingCheck, failing_checks
from resources.embedding import EmbeddingModel
from resources.graph import falkordb_server
from resources.postgres import store
from resources.qdrant.collection import point_id
from resources.settings import SAMPLE_LIBRARY_DIR
from retrieval import QueryError
from retrieval.engine import Searcher
from retrieval.service import create_app
from schedules.upkeep import maintain_postgres, nightly_checks

CHECK_KEYS = [key for check in book_checks for key in check.check_keys]
ASSETS = [raw_books, book_text, book_chunks, chunk_embeddings, pgvector_chunks, qdrant_points, book_graph, similar_chunks]
WALLPAPER = "1952_the-yellow-wallpaper"
ALICE = "11_alices-adventures-in-wonderland"


@pytest.fixture
def stores(book_resources, materialize_books, qdrant, graph):
    # Persistent (SQLite in a temp folder): schedule contexts need an instance they can reference.
    # `live`: the same stores opened for the test's own reads (runs open their own).
    with instance_for_test() as instance, build_resources(
        {"postgres": book_resources["postgres"], "qdrant": qdrant, "graph": graph}
    ) as live:
        yield _stores(instance, book_resources, materialize_books, qdrant, graph, live)


def _stores(instance, book_resources, materialize_books, qdrant, graph, live):
    resources = {**book_resources, "qdrant": qdrant, "graph": graph}

    def ingest(*book_ids, selection=None):
        return materialize_books([*ASSETS, *book_checks], instance, resources, book_ids, selection=selection)

    def ids(book_id):
        return (postgres_chunk_ids(live.postgres, book_id), qdrant_chunk_ids(live.qdrant, book_id),
                graph_chunk_ids(live.graph, book_id))

    def graph_counts(book_id):
        with live.graph.session() as session:
            return session.structure_counts(book_id)

    # A namespace, not a class: resources set as class attributes turn into descriptors.
    return SimpleNamespace(postgres=resources["postgres"], qdrant=qdrant, graph=graph, ingest=ingest, ids=ids,
                           graph_counts=graph_counts, instance=instance, resources=resources, live=live)


def raw_cypher(stores, cypher, params=None):
    """Cypher straight to the test's graph, bypassing the store layer (to break it, or to look)."""
    import falkordb

    socket = falkordb_server.ensure_server(stores.graph.server_folder(), 60)
    db = falkordb.FalkorDB(unix_socket_path=str(socket))
    try:
        result = db.select_graph(stores.graph.graph_name).query(cypher, params or {})
        names = [column[1] for column in result.header]
        return [dict(zip(names, row, strict=True)) for row in result.result_set]
    finally:
        db.connection.close()


@contextmanager
def raw_qdrant(stores) -> Iterator[EdgeShard]:
    """The test's Qdrant Edge shard opened straight, bypassing the store layer."""
    shard = EdgeShard.load(str(stores.qdrant.folder()))
    try:
        yield shard
    finally:
        shard.close()


def evaluations(result):
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_one_book_in_every_store_with_every_check_green(stores):
    result = stores.ingest(WALLPAPER)
    assert result.success
    postgres_ids, qdrant_ids, graph_ids = stores.ids(WALLPAPER)
    assert len(postgres_ids) > 30 and postgres_ids == qdrant_ids == graph_ids
    counts = stores.graph_counts(WALLPAPER)
    assert counts == {"chapters": 1, "parts": 0, "next_edges": len(postgres_ids) - 1, "part_of": len(postgres_ids)}
    checks = evaluations(result)
    assert len(checks) == len(CHECK_KEYS) == 8
    assert all(e.passed for e in checks.values()), {n: e.metadata for n, e in checks.items() if not e.passed}
    assert checks["chunks_are_findable"].metadata["share found"].value == 1.0

    again = stores.ingest(WALLPAPER)  # a re-run changes nothing and writes nothing
    assert again.success
    assert stores.ids(WALLPAPER) == (postgres_ids, qdrant_ids, graph_ids)
    assert stores.graph_counts(WALLPAPER) == counts
    with stores.live.qdrant.open() as collection:
        assert collection.count() == len(postgres_ids)
    for store in ("pgvector_chunks", "qdrant_points", "book_graph", "similar_chunks"):
        assert materialization_metadata(again, store)["unchanged (not rewritten)"] is True, store
    # A rate only over a write that happened; the graph assets are tagged with the backend that runs them.
    assert "points written per second" in materialization_metadata(result, "qdrant_points")
    assert "points written per second" not in materialization_metadata(again, "qdrant_points")
    assert [spec.kinds for spec in book_graph.specs] == [{"falkordb"}]


@pytest.mark.parametrize("breakage", ["delete a Qdrant point", "drop a Chunk node"])
def test_a_rerun_rewrites_a_store_that_lost_items(stores, breakage):
    assert stores.ingest(WALLPAPER).success
    expected = stores.ids(WALLPAPER)
    BREAKERS[breakage][0](stores, WALLPAPER)
    assert stores.ids(WALLPAPER) != expected

    result = stores.ingest(WALLPAPER)

    assert result.success and stores.ids(WALLPAPER) == expected
    assert all(e.passed for e in result.get_asset_check_evaluations())
    store = "qdrant_points" if "Qdrant" in breakage else "book_graph"
    assert materialization_metadata(result, store)["unchanged (not rewritten)"] is False
    assert materialization_metadata(result, "pgvector_chunks")["unchanged (not rewritten)"] is True


def materialization_metadata(result, asset):
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {key: value.value for key, value in events[-1].materialization.metadata.items()}


def test_an_edited_book_leaves_no_stale_chunks_anywhere(stores, library):
    assert stores.ingest(WALLPAPER).success
    old_ids = stores.ids(WALLPAPER)[0]
    path = library / f"{WALLPAPER}.txt"
    text = path.read_text(encoding="utf-8")
    middle = text.index("*** END OF")
    path.write_text(text[: middle // 2] + "\n\n" + text[middle:], encoding="utf-8")  # drop the second half

    result = stores.ingest(WALLPAPER)

    assert result.success
    postgres_ids, qdrant_ids, graph_ids = stores.ids(WALLPAPER)
    assert len(postgres_ids) < len(old_ids) and postgres_ids == qdrant_ids == graph_ids
    assert stores.graph_counts(WALLPAPER)["next_edges"] == len(postgres_ids) - 1
    assert all(e.passed for e in result.get_asset_check_evaluations())


def _delete_a_point(stores, book_id):
    chunk_id = sorted(stores.ids(book_id)[0])[0]
    with raw_qdrant(stores) as shard:
        shard.update(UpdateOperation.delete_points([point_id(chunk_id)]))


def _graph(cypher):
    def breaker(stores, book_id):
        raw_cypher(stores, cypher, {"book_id": book_id})
    return breaker


def _sql(statement):
    def breaker(stores, book_id):
        with psycopg.connect(stores.postgres.url(), autocommit=True) as conn:
            conn.execute(statement, {"book_id": book_id})
    return breaker


BREAKERS = {
    "delete a Qdrant point": (_delete_a_point, "qdrant_matches_postgres"),
    "drop a Chunk node": (_graph("MATCH (c:Chunk {book_id: $book_id, ordinal: 3}) DETACH DELETE c"), "graph_matches_postgres"),
    "break the NEXT chain": (_graph("MATCH (:Chunk {book_id: $book_id, ordinal: 3})-[r:NEXT]->() DELETE r"), "graph_is_well_formed"),
    "detach a chunk from its book": (_graph("MATCH (:Chunk {book_id: $book_id, ordinal: 0})-[r:PART_OF]->() DELETE r"), "graph_is_well_formed"),
    "a SIMILAR edge inside the book": (
        _graph("MATCH (a:Chunk {book_id: $book_id, ordinal: 0}), (z:Chunk {book_id: $book_id, ordinal: 9}) CREATE (a)-[:SIMILAR {score: 1.0}]->(z)"),
        "similar_edges_cross_books",
    ),
    "drop the HNSW index": (_sql("DROP INDEX chunks_embedding_hnsw_idx"), "hnsw_index_is_valid"),
    "a vector that is not unit length": (
        _sql("UPDATE chunks SET embedding = array_fill(0.5, ARRAY[384])::vector WHERE book_id = %(book_id)s AND ordinal = 2"),
        "vectors_are_sane",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKERS))
def test_each_check_fails_on_the_state_it_guards(stores, breakage):
    assert stores.ingest(WALLPAPER).success
    break_store, check_name = BREAKERS[breakage]
    break_store(stores, WALLPAPER)

    check_key = next(key for key in CHECK_KEYS if key.name == check_name)
    result = stores.ingest(WALLPAPER, selection=AssetSelection.checks(check_key))

    evaluation = evaluations(result)[check_name]
    assert not evaluation.passed
    assert evaluation.metadata["book"].value == WALLPAPER


def test_similar_edges_link_chunks_of_different_books(stores, library):
    shutil.copy(SAMPLE_LIBRARY_DIR / f"{ALICE}.txt", library)
    result = stores.ingest(ALICE, WALLPAPER)
    assert result.success
    rows = raw_cypher(
        stores, "MATCH (a:Chunk)-[s:SIMILAR]->(z:Chunk) RETURN a.book_id AS source, z.book_id AS target, s.score AS score"
    )
    assert {r["source"] for r in rows} == {ALICE, WALLPAPER}
    assert all(r["source"] != r["target"] and r["score"] >= 0.5 for r in rows)
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_a_run_of_two_books_records_each_books_own_check_results_on_its_partition(stores, library):
    """A run over a range of books resolves every book's planned check execution with that book's own
    result (Dagster records an AssetCheckResult on a partition only for single-partition steps)."""
    shutil.copy(SAMPLE_LIBRARY_DIR / f"{ALICE}.txt", library)
    result = stores.ingest(ALICE, WALLPAPER)
    assert result.success
    recorded = {(e.check_name, e.partition) for e in result.get_asset_check_evaluations()}
    assert recorded == {(key.name, book) for key in CHECK_KEYS for book in (ALICE, WALLPAPER)}
    assert partition_statuses(stores) == {(key.name, book): "SUCCEEDED" for key in CHECK_KEYS
                                          for book in (ALICE, WALLPAPER)}

    _delete_a_point(stores, ALICE)
    checks_only = stores.ingest(ALICE, WALLPAPER, selection=AssetSelection.all_asset_checks())

    statuses = partition_statuses(stores)
    assert statuses[("qdrant_matches_postgres", ALICE)] == "FAILED"
    assert statuses[("qdrant_matches_postgres", WALLPAPER)] == "SUCCEEDED"
    assert {status for (name, _), status in statuses.items() if name != "qdrant_matches_postgres"} == {"SUCCEEDED"}
    failed = [e for e in checks_only.get_asset_check_evaluations() if not e.passed]
    assert [(e.check_name, e.partition) for e in failed] == [("qdrant_matches_postgres", ALICE)]
    assert failed[0].metadata["missing from Qdrant"].value == 1
    assert failing_checks(stores.instance, {ALICE, WALLPAPER}) == [
        FailingCheck("qdrant_matches_postgres", "qdrant_points", [ALICE])]
    # The blocking check failed its step; the library plan holds only the book it failed on as failed.
    failed_run = stores.instance.get_run_by_id(checks_only.run_id)
    assert not checks_only.success
    assert failures_of_run(stores.instance, failed_run, sorted([ALICE, WALLPAPER])) == {
        ALICE: Failed("qdrant_checks", "check qdrant_matches_postgres failed", bad_input=False)}


def partition_statuses(stores) -> dict[tuple[str, str], str]:
    """Each (check, book)'s latest execution status as Dagster stores it (what the UI shows)."""
    return {(info.check_key.name, info.partition_key): info.latest_execution_status.value
            for info in stores.instance.event_log_storage.get_asset_check_partition_info(CHECK_KEYS)}


def test_the_nightly_schedule_checks_every_book_without_rebuilding_it(stores):
    assert stores.ingest(WALLPAPER).success
    with build_schedule_context(instance=stores.instance) as context:
        requests = nightly_checks(context)
    assert [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in requests] == [
        (WALLPAPER, WALLPAPER)
    ]
    result = materialize([*ASSETS, *book_checks], selection=AssetSelection.all_asset_checks(), tags=requests[0].tags,
                         instance=stores.instance, resources=stores.resources)
    assert result.success and not result.get_asset_materialization_events()
    assert len(evaluations(result)) == len(CHECK_KEYS) and all(e.passed for e in evaluations(result).values())


def test_weekly_maintenance_rebuilds_an_invalid_hnsw_index(stores):
    assert stores.ingest(WALLPAPER).success
    with psycopg.connect(stores.postgres.url(), autocommit=True) as conn:
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'chunks_embedding_hnsw_idx'::regclass")
    assert not evaluations(stores.ingest(WALLPAPER, selection=AssetSelection.checks(hnsw_index_is_valid)))[
        "hnsw_index_is_valid"].passed

    assert maintain_postgres.execute_in_process(resources={"postgres": stores.postgres}).success

    assert evaluations(stores.ingest(WALLPAPER, selection=AssetSelection.checks(hnsw_index_is_valid)))[
        "hnsw_index_is_valid"].passed


def test_every_nearest_neighbour_query_can_go_through_the_hnsw_index(stores):
    """The index is over `embedding::halfvec(384)`: a query ordering by any other expression scans the whole
    table, right but ~100x slower at a million chunks, and nothing else would fail."""
    assert stores.ingest(WALLPAPER).success
    with psycopg.connect(stores.postgres.url(), autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")  # the index whenever the planner can use it
        (vector,) = conn.execute("SELECT embedding::text FROM chunks LIMIT 1").fetchone()
        params = {"query": vector, "books": None, "limit": 10, "k": 5, "book_id": WALLPAPER, "min_score": 0.5,
                  "book_ids": [WALLPAPER], "per_book": 3}
        for name in ("_SEARCH", "_NEIGHBOURS_IN_OTHER_BOOKS", "_FINDABLE"):
            query = getattr(store, name).replace("%(query)s", "%(query)s::vector")
            plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN {query}", params))
            assert f"Index Scan using {store.HNSW_INDEX}" in plan, (name, plan)


def test_search_finds_a_famous_line_and_the_graph_gives_its_context(stores, library):
    shutil.copy(SAMPLE_LIBRARY_DIR / f"{ALICE}.txt", library)
    assert stores.ingest(ALICE, WALLPAPER).success
    searcher = Searcher(stores.live.postgres, stores.live.qdrant, stores.live.graph, EmbeddingModel())

    hits = searcher.search("the furious queen shouts that someone's head must be cut off", 3, mode="dense").hits
    assert any(h.book_id == ALICE and "Off with" in h.text for h in hits), [h.text[:80] for h in hits]
    qdrant_hits = searcher.search("the rabbit took a watch out of its waistcoat-pocket", 3, store="qdrant",
                                  mode="dense").hits
    assert any(h.book_id == ALICE and "waistcoat-pocket" in h.text for h in qdrant_hits), [h.text[:80] for h in qdrant_hits]

    top = hits[0]
    context = searcher.expand([top], similar=3)[top.chunk_id]
    by_relation = {}
    for neighbour in context:
        by_relation.setdefault(neighbour.relation, []).append(neighbour.hit)
    assert [h.ordinal for h in by_relation["previous"]] == [top.ordinal - 1]
    assert [h.ordinal for h in by_relation["next"]] == [top.ordinal + 1]
    assert all(h.book_id == top.book_id and h.text for h in by_relation["previous"] + by_relation["next"])
    similar = by_relation.get("similar", [])
    assert len(similar) <= 3 and all(h.book_id != top.book_id and h.score >= 0.5 for h in similar)
    assert len({h.chunk_id for h in similar}) == len(similar)


def test_keyword_and_hybrid_search_in_both_stores_the_service_and_bad_queries(stores, library, monkeypatch):
    shutil.copy(SAMPLE_LIBRARY_DIR / f"{ALICE}.txt", library)
    assert stores.ingest(ALICE, WALLPAPER).success
    searcher = Searcher(stores.live.postgres, stores.live.qdrant, stores.live.graph, EmbeddingModel())
    with stores.live.postgres.db() as db:
        db.vacuum_and_reindex()  # ANALYZE: keyword search's word frequencies, as the nightly upkeep keeps them
        assert db.word_stats().shares  # the frequencies are there to weigh words with
        configs = db.conn.execute("SELECT corpus_text_config('French'), corpus_text_config(NULL), "
                                  "corpus_text_config('Klingon')").fetchone()
    assert configs == ("french", "english", "english")  # no stemmer of its own: English rules, not none

    # A rare word found by keyword in both stores, through the stemmer ("grinning" / "grin").
    for store in ("pgvector", "qdrant"):
        keyword = searcher.search("Cheshire cat grinning", 5, store=store, mode="keyword")
        texts = [h.text.lower() for h in keyword.hits]
        assert len(texts) == 5 and "cheshire" in texts[0] and all("cat" in t or "grin" in t for t in texts), (store, texts)
        assert [h.score for h in keyword.hits] == sorted((h.score for h in keyword.hits), reverse=True)
        assert "encode" not in keyword.timings_ms and keyword.timings_ms["search"] > 0
        hybrid = searcher.search("Cheshire cat grinning", 5, store=store, mode="hybrid")
        assert "cheshire" in hybrid.hits[0].text.lower() and len({h.chunk_id for h in hybrid.hits}) == 5
        within = searcher.search("the pattern of the paper", 10, book=WALLPAPER, store=store, mode="keyword").hits
        assert within and {h.book_id for h in within} == {WALLPAPER}

    # Postgres' BM25, scored from each candidate's tsvector cut to the query's words, equals BM25
    # computed here from the whole tsvector (every query word counted, no other word).
    weights = {"cheshir": 2.0, "cat": 1.0, "grin": 1.5, "alic": 0.5}
    with stores.live.postgres.db() as db:
        hits = db.keyword_search(weights, ["cheshir", "grin"], 10, None, avg_tokens=150.0)
        rows = db.conn.execute(
            "SELECT c.id, c.token_count, t.lexeme, cardinality(t.positions) FROM chunks c, unnest(c.text_search) t "
            "WHERE c.id = ANY(%s)", ([h.chunk_id for h in hits],)).fetchall()
    expected: dict[str, float] = {}
    for chunk_id, tokens, lexeme, count in rows:
        if lexeme in weights:
            expected[chunk_id] = expected.get(chunk_id, 0.0) + weights[lexeme] * count * 2.2 / (
                count + 1.2 * (0.25 + 0.75 * tokens / 150.0))
    assert len(hits) == 10 and {h.chunk_id: h.score for h in hits} == pytest.approx(expected, rel=1e-9)
    assert any(sum(lexeme in weights for i, _, lexeme, _ in rows if i == h.chunk_id) >= 3 for h in hits)

    assert searcher.search("Cheshire cat grinning", 5).cached_embedding  # the query's vector, from the cache
    assert searcher.cache_stats()["hits"] >= 1

    # The search runs checked_query's checks (tests/test_retrieval.py) and looks the book up.
    for query, k, book, message in [("   ", 5, None, "the query is empty"), ("cat", 100_000, None, "k must be"),
                                     ("cat", 5, "no_such_book", "unknown book 'no_such_book'")]:
        with pytest.raises(QueryError, match=message):
            searcher.search(query, k, book)

    # The service: answers with timings, refuses bad queries with 422, counts the cache, logs slow queries.
    with stores.live.qdrant.shared_reads() as reads:
        service = Searcher(stores.live.postgres, reads, stores.live.graph, EmbeddingModel())
        client = TestClient(create_app(service, state="test", slow_ms=0))
        answer = client.get("/search", params={"q": "a rabbit with a pocket watch", "k": 3, "store": "qdrant"}).json()
        assert len(answer["hits"]) == 3 and answer["hits"][0]["rank"] == 1 and answer["mode"] == "hybrid"
        assert set(answer["timings_ms"]) == {"encode", "search", "total"}
        again = client.get("/search", params={"q": "a rabbit with a pocket watch", "k": 3, "expand": True}).json()
        assert again["cached_embedding"] and again["hits"][0]["context"]
        assert client.get("/search", params={"q": " "}).status_code == 422
        assert client.get("/search", params={"q": "cat", "k": 0}).json() == {"detail": "k must be between 1 and 1000, not 0"}
        # Abuse is refused cleanly: a pasted page (1,200 characters), a book id that is a pattern.
        too_long = client.get("/search", params={"q": "cat " * 300})
        assert too_long.status_code == 422 and "over the limit of 1,000" in too_long.json()["detail"]
        assert client.get("/search", params={"q": "cat", "book": "../*"}).status_code == 422
        stats = client.get("/stats").json()
        assert stats["queries"] == 2 and stats["errors"] == 4 and stats["slow_queries"] == 2
        assert stats["embedding_cache"]["hits"] == 1
        # FastAPI's own refusals are one line too: which parameter, and why.
        malformed = client.get("/search", params={"k": "abc"})
        assert malformed.status_code == 422 and isinstance(malformed.json()["detail"], str)
        assert "q: Field required" in malformed.json()["detail"] and "k: " in malformed.json()["detail"]
        assert client.get("/health").json() | {"model": None} == {"status": "ok", "model": None, "query_encoding": "onnx", "state": "test"}

        # A search held up (here by a lock the test holds on the chunks) is stopped at the time limit: 504.
        monkeypatch.setenv("CORPUS_SEARCH_TIMEOUT_MS", "500")
        with psycopg.connect(stores.live.postgres.url()) as locker:
            locker.execute("LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE")
            for mode in ("dense", "keyword"):
                stopped = client.get("/search", params={"q": "the Queen of Hearts " + mode, "mode": mode})
                assert stopped.status_code == 504 and "stopped" in stopped.json()["detail"], stopped.text
        monkeypatch.delenv("CORPUS_SEARCH_TIMEOUT_MS")
        assert client.get("/search", params={"q": "the Queen of Hearts", "mode": "keyword"}).json()["hits"]

        # The service holds the Qdrant Edge shard between queries and hands it over to a writer.
        started = time.monotonic()
        with stores.live.qdrant.open() as writer:
            assert writer.count() > 0
        assert time.monotonic() - started < 5
        assert client.get("/search", params={"q": "the Queen of Hearts", "store": "qdrant"}).json()["hits"]


def test_repair_rewrites_drifted_books_from_postgres_alone_and_removes_orphans(stores, tmp_path):
    assert stores.ingest(WALLPAPER).success
    expected = stores.ids(WALLPAPER)
    _delete_a_point(stores, WALLPAPER)
    _graph("MATCH (c:Chunk {book_id: $book_id, ordinal: 3}) DETACH DELETE c")(stores, WALLPAPER)
    with raw_qdrant(stores) as shard:  # a book only Qdrant and the graph hold (an interrupted removal)
        shard.update(UpdateOperation.upsert_points([Point(
            point_id("orphan-chunk"), [1.0] + [0.0] * 383, {"book_id": "orphan", "chunk_id": "orphan-chunk"})]))
    _graph("CREATE (:Book {id: $book_id})<-[:PART_OF]-(:Chunk {id: 'orphan-chunk', book_id: $book_id})")(stores, "orphan")
    failing = evaluations(stores.ingest(WALLPAPER, selection=AssetSelection.checks(*CHECK_KEYS)))
    assert "corpus repair 1952_the-yellow-wallpaper" in failing["qdrant_matches_postgres"].metadata["to repair"].value
    shutil.rmtree(tmp_path / "artifacts")  # no per-book artifacts: the repair reads Postgres only

    result = repair_stores.execute_in_process(instance=stores.instance, resources=stores.resources)

    assert result.success
    assert stores.ids(WALLPAPER) == expected
    assert stores.ids("orphan")[1:] == (set(), set())
    assert raw_cypher(stores, "MATCH (b:Book {id: 'orphan'}) RETURN count(b) AS n")[0]["n"] == 0
    output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT").step_output_data.metadata
    assert (output["books rewritten"].value, output["orphans removed"].value) == (1, 1)
    checks = evaluations(stores.ingest(WALLPAPER, selection=AssetSelection.checks(*CHECK_KEYS)))
    assert all(e.passed for e in checks.values()), {n: e.metadata for n, e in checks.items() if not e.passed}
    again = stores.ingest(WALLPAPER)  # the repair recorded what it wrote: the next ingest writes nothing
    assert again.success
    for store in ("qdrant_points", "book_graph", "similar_chunks"):
        assert materialization_metadata(again, store)["unchanged (not rewritten)"] is True, store

    # A book that drifted in Qdrant alone is rewritten there alone: its graph is not touched.
    _delete_a_point(stores, WALLPAPER)
    result = repair_stores.execute_in_process(instance=stores.instance, resources=stores.resources)
    output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT").step_output_data.metadata
    assert result.success and stores.ids(WALLPAPER) == expected
    assert (output["books rewritten in Qdrant"].value, output["books rewritten in the graph"].value) == (1, 0)
    assert "rewritten in qdrant |" in output["books"].value and "graph chunks" not in output["books"].value


HOSTILE_TITLE = "<script>alert('x')</script> [/bold] *Not* markup"


def test_the_pages_readers_use_and_an_openapi_schema_that_matches_the_answers(stores, library):
    shutil.copy(SAMPLE_LIBRARY_DIR / f"{ALICE}.txt", library)
    (library / "hostile.txt").write_text(
        f"Title: {HOSTILE_TITLE}\nAuthor: A. Hostile\nLanguage: French\n\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n"
        + "CHAPTER I\n\n" + "The rabbit <b>ran</b> past the <script>alert(2)</script> hedge and the watch. " * 60
        + "\n\nCHAPTER II\n\n" + "A second chapter about the Queen and her garden. " * 60 + "\n", encoding="utf-8")
    assert stores.ingest(ALICE, WALLPAPER, "hostile").success
    with stores.live.postgres.db() as db:
        db.vacuum_and_reindex()
    with stores.live.qdrant.shared_reads() as reads:
        client = TestClient(create_app(Searcher(stores.live.postgres, reads, stores.live.graph, EmbeddingModel()), "t"))
        page = client.get("/", params={"q": "the rabbit ran past the hedge <script>"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        # Every book-given or typed value is text: the hostile title and the query are escaped, never markup.
        assert "<script>alert" not in page.text, re.findall(r".{200}<script>alert.{20}", page.text, re.S)
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text, re.findall(r".{60}script&gt;.{60}", page.text)
        assert 'value="the rabbit ran past the hedge &lt;script&gt;"' in page.text
        assert "<mark>rabbit</mark>" in page.text and "A. Hostile" in page.text and "CHAPTER I" in page.text
        first = re.search(r'href="/passages/([0-9a-f]+)"', page.text).group(1)
        passage = client.get(f"/passages/{first}")
        assert passage.status_code == 200 and "next passage" in passage.text
        # Filters: an author, a language; store and mode behind "advanced".
        by_author = client.get("/", params={"q": "rabbit", "author": "Lewis Carroll"}).text
        assert "Alice" in by_author and "A. Hostile" not in by_author.split("</form>", 1)[1]
        french = client.get("/", params={"q": "rabbit", "language": "French", "store": "qdrant", "mode": "keyword"}).text
        assert "<details class=\"advanced\" open>" in french and "Lewis Carroll" not in french.split("</form>", 1)[1]
        # The French book's English words are rare words under French rules; an English query's stop words
        # are no words at all, in any book: they match nothing (before #35: only that book, in both stores).
        for store in ("pgvector", "qdrant"):
            stop_words = client.get("/search", params={"q": "in by the of and", "store": store, "mode": "keyword"})
            assert stop_words.json()["hits"] == [], (store, stop_words.json()["hits"][:1])
        nothing = client.get("/", params={"q": "in by the of and", "mode": "keyword"}).text
        assert "No passage found. Keyword search skips a language's stop words" in nothing
        book = client.get(f"/books/{ALICE}").text
        assert "CHAPTER I. Down the Rabbit-Hole" in book and f'/books/{ALICE}/chapters/' in book
        chapter_link = re.search(rf'href="(/books/{ALICE}/chapters/\d+)"', book).group(1)
        assert "passage" in client.get(chapter_link).text
        books = client.get("/books").text
        assert "Books by language" in books and "<svg" in books and "&lt;script&gt;" in books and "French" in books
        assert client.get("/books/..%2Fetc").status_code == 404 and client.get("/passages/nope").status_code == 404

        # The OpenAPI schema says what the service answers: real answers validate against it.
        spec = client.get("/openapi.json").json()

        def valid(response, path, status=200):
            declared = spec["paths"][path]["get"]["responses"][str(status)]["content"]["application/json"]["schema"]
            jsonschema.validate(response.json(), {**declared, "components": spec["components"]})
            assert response.status_code == status

        valid(client.get("/search", params={"q": "rabbit", "k": 3, "expand": True}), "/search")
        valid(client.get("/search", params={"q": "rabbit", "store": "qdrant", "mode": "keyword"}), "/search")
        valid(client.get("/health"), "/health")
        assert client.head("/health").status_code == 200 and set(spec["paths"]["/health"]) == {"get"}
        valid(client.get("/stats"), "/stats")
        valid(client.get("/search", params={"q": " "}), "/search", 422)
        valid(client.get("/search", params={"q": "cat", "mode": "fuzzy"}), "/search", 422)
        parameters = {p["name"]: p for p in spec["paths"]["/search"]["get"]["parameters"]}
        enum = spec["components"]["schemas"]["Mode"]["enum"] if "$ref" in parameters["mode"]["schema"] else None
        assert enum == ["dense", "keyword", "hybrid"] and {"503", "504"} <= set(spec["paths"]["/search"]["get"]["responses"])
        assert parameters["k"]["schema"]["minimum"] == 1 and "/" not in spec["paths"]  # the pages are HTML for people

        # A reader's mistake is a page that says so; an odd id is a 404; the pages tell the browser to run nothing.
        mistake = client.get("/", params={"q": "rabbit", "k": "abc", "mode": "fuzzy"})
        assert mistake.status_code == 422 and mistake.headers["content-type"].startswith("text/html")
        assert "results must be a number" in mistake.text
        assert client.get("/passages/%00").status_code == 404 and client.get("/books/x/chapters/abc").status_code == 404
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "<bdi>" in page.text  # a title's right-to-left override stays inside it


def test_the_library_report_lists_every_book_and_its_check_names_those_whose_stores_disagree(stores, library, tmp_path,
                                                                                              monkeypatch):
    monkeypatch.setenv("CORPUS_STATE_DIR", str(tmp_path / "state"))
    shutil.copy(SAMPLE_LIBRARY_DIR / f"{ALICE}.txt", library)
    assert stores.ingest(ALICE, WALLPAPER).success
    resources = {key: stores.resources[key] for key in ("postgres", "qdrant", "graph")}
    report = materialize([library_report], instance=stores.instance, resources=resources)
    assert report.success
    metadata = report.asset_materializations_for_node("library_report")[0].metadata
    assert metadata["books"].value == 2 and metadata["books whose stores disagree"].value == 0
    rows = {r.data["book"]: r.data for r in metadata["book table"].value.records}
    assert rows[ALICE]["title"] == "Alice’s Adventures in Wonderland" and rows[ALICE]["stores_agree"] is True
    frame = pd.read_csv(tmp_path / "state" / "library_report.csv")
    assert sorted(frame["book"]) == sorted([ALICE, WALLPAPER]) and frame["chunks"].sum() == sum(
        r["chunks"] for r in rows.values())
    assert [e.passed for e in report.get_asset_check_evaluations()] == [True]

    _delete_a_point(stores, WALLPAPER)  # Qdrant loses a point of one book
    broken = materialize([library_report], instance=stores.instance, resources=resources)
    (evaluation,) = broken.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["disagreeing"].value == 1
    assert WALLPAPER in evaluation.metadata["disagreeing books"].value
