"""Faults, for real: stores that refuse connections, a graph server killed mid-life, concurrent runs.

Nothing listens on 127.0.0.1:9, so a store pointed there refuses every connection as a stopped
server would. Retries are shortened for the suite (conftest: CORPUS_STORE_RETRY_DELAY).
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from dagster import DagsterEventType, DagsterInstance

from corpus_assets.assets._per_book import STORE_RETRY
from corpus_assets.assets.chunks import book_chunks
from corpus_assets.assets.embeddings import chunk_embeddings
from corpus_assets.assets.graph import book_graph, similar_chunks
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.qdrant import qdrant_points
from corpus_assets.assets.raw import raw_books
from corpus_assets.assets.text import book_text
from corpus_assets.checks import graph_chunk_ids, postgres_chunk_ids, qdrant_chunk_ids
from corpus_cli.runs import failure_reason
from resources.graph import FalkorDBResource, Neo4jResource, falkordb_server
from resources.postgres import PostgresResource
from resources.qdrant import QdrantEdgeResource, QdrantServerResource
from resources.settings import SAMPLE_LIBRARY_DIR

ALL_ASSETS = [raw_books, book_text, book_chunks, chunk_embeddings, pgvector_chunks, qdrant_points, book_graph,
              similar_chunks]
WALLPAPER = "1952_the-yellow-wallpaper"
ALICE = "11_alices-adventures-in-wonderland"

REFUSING = "127.0.0.1:9"
OUTAGES = {
    "Qdrant": ("qdrant", QdrantServerResource(url=f"http://{REFUSING}"), "qdrant_points"),
    "Neo4j": ("graph", Neo4jResource(uri=f"bolt://{REFUSING}", password="not-logged", retry_seconds=0.5), "book_graph"),
    "Postgres": ("postgres", PostgresResource(database_url=f"postgresql://corpus:not-logged@{REFUSING}/corpus"),
                 "book_chunks"),
}


def stored_ids(database_url: str, book_id: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM chunks WHERE book_id = %s", (book_id,))}


def step_failures(result) -> dict[str, str]:
    """Each failed step's reason, as `corpus ingest` prints it."""
    return {e.step_key: failure_reason(e) for e in result.all_events if e.is_step_failure}


@pytest.mark.parametrize("store", list(OUTAGES))
# qdrant-client warns that it cannot read the version of a server that is down, as it is here on purpose.
@pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")
def test_a_store_that_is_down_fails_its_assets_clearly_after_retries_and_the_next_run_recovers(
    store, book_resources, materialize_books, qdrant, graph, opened
):
    key, down, first_failing = OUTAGES[store]
    instance = DagsterInstance.ephemeral()
    working = {**book_resources, "qdrant": qdrant, "graph": graph}

    result = materialize_books(ALL_ASSETS, instance, {**working, key: down}, [WALLPAPER])

    assert not result.success
    failures = step_failures(result)
    assert first_failing in failures
    assert f"{store} at " in failures[first_failing] and f"{REFUSING}" in failures[first_failing]
    assert "is unavailable" in failures[first_failing]
    assert "not-logged" not in str([e.message for e in instance.all_logs(result.run_id)])  # no password anywhere
    retries = [e for e in instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
               if e.step_key == first_failing]
    assert len(retries) == STORE_RETRY.max_retries
    with opened(working["postgres"]) as postgres:
        if store != "Postgres":  # the other stores were written; only the down store's assets failed
            assert set(failures) == {first_failing}
            assert postgres_chunk_ids(postgres, WALLPAPER)

        again = materialize_books(ALL_ASSETS, instance, working, [WALLPAPER])  # the store is back

        assert again.success
        ids = postgres_chunk_ids(postgres, WALLPAPER)
    assert ids and ids == qdrant_chunk_ids(qdrant, WALLPAPER) == graph_chunk_ids(graph, WALLPAPER)


def test_pooled_postgres_connections_dropped_by_the_server_are_replaced_on_checkout(database_url, opened):
    """What a server restart or failover does to a pool: every connection it holds is cut."""
    with opened(PostgresResource(database_url=database_url)) as postgres:
        _pooled_connections_survive_a_cut(postgres, database_url)


def _pooled_connections_survive_a_cut(postgres, database_url):
    backend = "SELECT pg_backend_pid()"
    with postgres.db() as db:
        first = db.conn.execute(backend).fetchone()[0]
    with postgres.db() as db:
        assert db.conn.execute(backend).fetchone()[0] == first  # pooled: the same server session again

    with psycopg.connect(database_url, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'corpus'"
        ).fetchone()[0]
    assert cut >= 1

    with postgres.db() as db:  # no error: the dead connection is found at checkout and replaced
        assert db.conn.execute(backend).fetchone()[0] != first
        assert db.book_ids() == []
    assert postgres.pool_stats().get("connections_lost", 0) >= 1


def test_a_book_whose_write_is_cut_fails_alone_while_the_book_beside_it_commits_and_the_retry_converges(
    library, database_url, book_resources, materialize_books, qdrant, graph, blocked_store_write
):
    """`pgvector_chunks` writes two books side by side: Alice's server session is terminated in the
    middle of its transaction while The Yellow Wallpaper's write commits beside it."""
    shutil.copy(SAMPLE_LIBRARY_DIR / f"{ALICE}.txt", library)
    books = [ALICE, WALLPAPER]
    instance = DagsterInstance.ephemeral()
    resources = {**book_resources, "qdrant": qdrant, "graph": graph}
    assert materialize_books(ALL_ASSETS, instance, resources, books).success
    expected = {book: stored_ids(database_url, book) for book in books}
    rewrite = {"ops": {"pgvector_chunks": {"config": {"rewrite": True}}}}

    # The lock holder closes first on the way out, so a failing assertion never leaves the run blocked.
    with ThreadPoolExecutor(1) as background, psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM book_sync WHERE book_id = %s AND target = 'chunks' FOR UPDATE", (ALICE,))
        started = holder.execute("SELECT clock_timestamp()").fetchone()[0]
        run = background.submit(materialize_books, ALL_ASSETS, instance, resources, books,
                                selection=[pgvector_chunks], run_config=rewrite)
        alice_write = blocked_store_write(database_url, timeout=120)
        with psycopg.connect(database_url) as conn:  # the other book committed while Alice's write waits
            deadline = time.monotonic() + 60
            while not conn.execute("SELECT synced_at > %s FROM book_sync WHERE book_id = %s AND target = 'pgvector'",
                                   (started, WALLPAPER)).fetchone()[0]:
                assert time.monotonic() < deadline, "the second book was not written beside the first"
                time.sleep(0.05)
                conn.rollback()
        assert alice_write["backend_xid"] is not None  # inside its transaction: old rows deleted, new ones copied
        holder.execute("SELECT pg_terminate_backend(%s)", (alice_write["pid"],))
        holder.rollback()
        result = run.result(timeout=300)

    assert result.success  # the step's retry wrote Alice again
    [retry] = instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
    message = retry.dagster_event.event_specific_data.error.to_string()  # the retry request and its cause
    assert "1 of 2 books failed in pgvector_chunks" in message and ALICE in message and WALLPAPER not in message
    for book in books:
        assert stored_ids(database_url, book) == expected[book]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM chunks").fetchone() == (
            sum(map(len, expected.values())),) * 2


def test_the_embedded_graph_server_killed_by_sigkill_restarts_and_keeps_its_graph(
    state_dir, book_resources, materialize_books, qdrant, graph
):
    instance = DagsterInstance.ephemeral()
    resources = {**book_resources, "qdrant": qdrant, "graph": graph}
    assert materialize_books(ALL_ASSETS, instance, resources, [WALLPAPER]).success
    before = graph_chunk_ids(graph, WALLPAPER)
    folder = state_dir / "falkordb"
    os.kill(int((folder / "falkordb.pid").read_text()), signal.SIGKILL)

    result = materialize_books(ALL_ASSETS, instance, resources, [WALLPAPER])

    assert result.success
    assert graph_chunk_ids(graph, WALLPAPER) == before == stored_ids(resources["postgres"].url(), WALLPAPER)
    graph_write = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "book_graph"]
    # The append-only file kept every node: nothing had to be rewritten after the restart.
    assert graph_write[0].materialization.metadata["unchanged (not rewritten)"].value is True
    assert falkordb_server._answers(folder / falkordb_server.SOCKET_NAME)


@pytest.mark.slow  # ~90 s on 2 cores (four processes, each loading torch and the model): `make test-slow`
def test_four_ingest_processes_at_once_on_the_same_stores_converge(tmp_path, database_url, monkeypatch, opened):
    """Four `corpus ingest` processes, one book each, all started together on one state folder."""
    library = tmp_path / "library"
    library.mkdir()
    text = (SAMPLE_LIBRARY_DIR / f"{WALLPAPER}.txt").read_text(encoding="utf-8")
    paragraphs = [p for p in text.split("\n\n") if len(p) > 200]
    books = [f"part-{i}" for i in range(4)]
    for i, book in enumerate(books):  # four different small books
        (library / f"{book}.txt").write_text("\n\n".join(paragraphs[i * 12 : (i + 1) * 12]), encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": database_url, "CORPUS_STATE_DIR": str(tmp_path / "state"),
           "CORPUS_LIBRARY_DIR": str(library)}
    corpus = os.path.join(os.path.dirname(sys.executable), "corpus")
    try:
        with ThreadPoolExecutor(4) as pool:
            runs = list(pool.map(lambda book: subprocess.run([corpus, "ingest", book], env=env, capture_output=True,
                                                             text=True, timeout=600), books))
        for run in runs:
            assert run.returncode == 0, run.stdout + run.stderr

        monkeypatch.setenv("CORPUS_STATE_DIR", str(tmp_path / "state"))  # the processes' Qdrant folder and graph server
        qdrant, graph = QdrantEdgeResource(), FalkorDBResource()
        total = 0
        with opened(PostgresResource(database_url=database_url)) as postgres:
            for book in books:
                ids = postgres_chunk_ids(postgres, book)
                assert ids and ids == qdrant_chunk_ids(qdrant, book) == graph_chunk_ids(graph, book), book
                total += len(ids)
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT count(*), count(DISTINCT id) FROM chunks").fetchone() == (total, total)
            assert conn.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'").fetchone() == (4,)
        with qdrant.open() as collection:
            assert collection.count() == total
    finally:
        falkordb_server.stop_server(tmp_path / "state" / "falkordb")
