"""A bulk load (`corpus ingest` of many books into a small library: rows first, the HNSW index built once,
then SIMILAR edges) gives the same library as the per-book path, and one cut short is finished by the next
ingest."""

import logging
import os
import subprocess
import sys

import psycopg
import pytest
from dagster import DagsterInstance

from corpus_assets.checks import graph_chunk_ids, qdrant_chunk_ids
from corpus_assets.jobs import build_vector_index
from resources.graph import FalkorDBResource, falkordb_server
from resources.postgres import PostgresResource
from resources.postgres.store import BULK_LOAD_LOCK_KEY
from resources.qdrant import QdrantEdgeResource
from resources.settings import SAMPLE_LIBRARY_DIR

CORPUS = os.path.join(os.path.dirname(sys.executable), "corpus")
CHECKS = {"vectors_are_sane", "hnsw_index_is_valid", "chunks_are_findable", "qdrant_matches_postgres",
          "qdrant_collection_is_green", "graph_matches_postgres", "graph_is_well_formed", "similar_edges_cross_books",
          "stores_agree_on_every_book"}  # the last: the library report's


def ingest(state, database_url: str, bulk: str, exit_code: int = 0, **more_env) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "CORPUS_STATE_DIR": str(state),
           "CORPUS_LIBRARY_DIR": str(SAMPLE_LIBRARY_DIR), "CORPUS_BULK_LOAD": bulk, "COLUMNS": "200", **more_env}
    done = subprocess.run([CORPUS, "ingest"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == exit_code, done.stdout + done.stderr
    return done


def library(state, database_url: str, monkeypatch) -> dict:
    """Everything both paths must agree on: each store's chunk ids per book, each chunk's SIMILAR
    neighbours, and each book's latest result of every check."""
    with psycopg.connect(database_url) as conn:
        books = [row[0] for row in conn.execute("SELECT id FROM books ORDER BY id")]
        rows = conn.execute("SELECT book_id, id FROM chunks").fetchall()
        checks = conn.execute(
            "SELECT DISTINCT ON (check_name, partition) check_name, partition, execution_status "
            "FROM asset_check_executions ORDER BY check_name, partition, id DESC").fetchall()
        index = conn.execute("SELECT indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                             "WHERE c.relname = 'chunks_embedding_hnsw_idx'").fetchall()
    postgres = {book: {chunk for b, chunk in rows if b == book} for book in books}
    monkeypatch.setenv("CORPUS_STATE_DIR", str(state))  # the CLI's Qdrant folder and graph server
    qdrant, graph = QdrantEdgeResource(), FalkorDBResource()
    with graph.session() as session:
        similar = {chunk: sorted(other for other, _ in found.similar)
                   for chunk, found in session.neighbours([c for _, c in rows]).items()}
    return {"books": books, "postgres": postgres, "index valid": index == [(True,)],
            "qdrant": {book: qdrant_chunk_ids(qdrant, book) for book in books},
            "graph": {book: graph_chunk_ids(graph, book) for book in books},
            "similar": similar, "checks": {(name, book): status for name, book, status in checks}}


def job_runs(database_url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT pipeline_name, status, run_body::json #>> '{tags,corpus/books}' FROM runs "
                            "ORDER BY create_timestamp").fetchall()


def test_bulk_load_gives_the_per_book_library_and_finishes_one_cut_short(
        tmp_path, database_url, second_database_url, monkeypatch):
    per_book, bulk = tmp_path / "per-book", tmp_path / "bulk"
    try:
        ingest(per_book, database_url, "never")
        loaded = ingest(bulk, second_database_url, "always")
        assert "bulk load of 3 books" in loaded.stdout and "ingested 3 books" in loaded.stdout
        # The runs say what they did, in order, and which books they cover.
        assert [(job, status) for job, status, _ in job_runs(second_database_url)] == [
            ("defer_vector_index", "SUCCESS"), ("load_books", "SUCCESS"), ("build_vector_index", "SUCCESS"),
            ("link_books", "SUCCESS")]
        assert job_runs(second_database_url)[1][2] == ", ".join(sorted(p.stem for p in SAMPLE_LIBRARY_DIR.glob("*.txt")))

        expected, found = library(per_book, database_url, monkeypatch), library(bulk, second_database_url, monkeypatch)
        assert len(expected["books"]) == 3 and sum(map(len, expected["postgres"].values())) > 600
        assert expected["index valid"] and found["index valid"]
        for part in ("books", "postgres", "qdrant", "graph", "checks"):
            assert found[part] == expected[part], part
        assert set(name for name, _ in found["checks"]) == CHECKS
        assert set(found["checks"].values()) == {"SUCCEEDED"}
        # The HNSW index built at once and the one grown by inserts are both approximate: their
        # neighbours may differ in a tie or a near miss, never in bulk.
        linked = [c for c, others in expected["similar"].items() if others]
        assert len(linked) > 50
        same = sum(found["similar"][chunk] == expected["similar"][chunk] for chunk in expected["similar"])
        assert same / len(expected["similar"]) >= 0.98

        # While a bulk load runs (it holds the lock), no other ingest touches the library, bulk or not.
        with psycopg.connect(second_database_url, autocommit=True) as loading:
            loading.execute("SELECT pg_advisory_lock(%s)", (BULK_LOAD_LOCK_KEY,))
            refused = ingest(bulk, second_database_url, "never", exit_code=2)
        assert "another `corpus ingest` is loading books in bulk" in refused.stdout

        # A bulk load cut short after its rows went in: the index still dropped, no SIMILAR edges recorded.
        with psycopg.connect(second_database_url, autocommit=True) as conn:
            conn.execute("DROP INDEX chunks_embedding_hnsw_idx")
            conn.execute("DELETE FROM book_sync WHERE target = 'similar'")
        bad_memory = ingest(bulk, second_database_url, "always", exit_code=2, CORPUS_INDEX_BUILD_MEMORY="lots")
        assert "CORPUS_INDEX_BUILD_MEMORY='lots' is refused by Postgres" in bad_memory.stdout
        assert job_runs(second_database_url)[-1][0] == "link_books"  # refused before any run
        again = ingest(bulk, second_database_url, "never")
        assert "HNSW index built again" in again.stdout and "ingested 3 books" in again.stdout
        assert [job for job, _, _ in job_runs(second_database_url)][-2:] == ["build_vector_index", "ingest_books"]
        finished = library(bulk, second_database_url, monkeypatch)
        assert finished["index valid"] and finished["postgres"] == expected["postgres"]
        assert set(finished["checks"].values()) == {"SUCCEEDED"}
    finally:
        for state in (per_book, bulk):
            falkordb_server.stop_server(state / "falkordb")


@pytest.mark.parametrize(("setting", "planned", "stored", "bulk"), [
    ("auto", 499, 0, False), ("auto", 500, 0, True), ("auto", 900, 900, True), ("auto", 900, 1800, False),
    ("always", 1, 9000, True), ("always", 0, 0, False), ("never", 9000, 0, False),
])
def test_a_big_plan_into_a_small_library_loads_in_bulk(monkeypatch, setting, planned, stored, bulk):
    from corpus_assets.library_plan import bulk_load

    monkeypatch.setenv("CORPUS_BULK_LOAD", setting)
    assert bulk_load(planned, stored) is bulk


@pytest.mark.parametrize(("name", "value", "says"), [
    ("CORPUS_BULK_LOAD", "sometimes", "corpus: CORPUS_BULK_LOAD is 'sometimes'; it takes auto, always, never"),
    ("CORPUS_BULK_MIN_BOOKS", "many", "corpus: CORPUS_BULK_MIN_BOOKS must be a whole number, not 'many'"),
])
def test_a_bad_bulk_setting_is_one_line_and_changes_nothing(tmp_path, name, value, says):
    env = {**os.environ, "CORPUS_STATE_DIR": str(tmp_path / "state"), name: value}
    done = subprocess.run([CORPUS, "ingest"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout.strip() == says, done.stdout + done.stderr
    assert not (tmp_path / "state").exists()


def test_an_index_build_says_when_its_memory_held_only_part_of_the_graph(database_url, monkeypatch):
    """pgvector builds fast only while the graph fits in maintenance_work_mem; past it, the rest of the rows
    go in at insert cost. The run's metadata and log say so, with the rows the memory held."""
    rows = 1500  # ~1.5 KB a row of halfvec graph: more than 1MB (Postgres's least) holds
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO books (id, title, source_file, content_sha256, bytes, encoding, chapter_count, "
                     "chunk_count) VALUES ('b', 'B', 'b.txt', repeat('0', 64), 1, 'utf-8', 1, %s)", (rows,))
        conn.execute(
            "INSERT INTO chunks (id, book_id, ordinal, chapter_index, chapter, text, token_count, char_start, "
            "char_end, content_sha256, embedding, model, text_config) "
            "SELECT 'c' || n, 'b', n, 0, '', 'text', 1, 0, 1, repeat('0', 64), "
            "(SELECT array_agg(random() - 0.5)::vector(384) FROM generate_series(1, 384) WHERE n > 0), 'm', 'simple' "
            "FROM generate_series(1, %s) n", (rows,))
        conn.execute("DROP INDEX chunks_embedding_hnsw_idx")
    resources = {"postgres": PostgresResource(database_url=database_url)}

    def build(memory: str) -> tuple[dict, list[str]]:
        monkeypatch.setenv("CORPUS_INDEX_BUILD_MEMORY", memory)
        instance = DagsterInstance.ephemeral()
        result = build_vector_index.execute_in_process(resources=resources, instance=instance)
        assert result.success
        (output,) = [event for event in result.all_events if event.event_type_value == "STEP_OUTPUT"]
        metadata = {key: value.value for key, value in output.step_output_data.metadata.items()}
        warnings = [entry.user_message for entry in instance.all_logs(result.run_id) if entry.level == logging.WARNING]
        return metadata, warnings

    spilled, said = build("1MB")
    assert spilled["built"] and spilled["valid"] and spilled["rows"] == rows
    assert 0 < spilled["rows held in memory"] < rows, spilled
    assert any("outgrew CORPUS_INDEX_BUILD_MEMORY=1MB" in line for line in said), said
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP INDEX chunks_embedding_hnsw_idx")
    whole, said = build("64MB")
    assert whole["built"] and whole["rows held in memory"] == rows and not said
