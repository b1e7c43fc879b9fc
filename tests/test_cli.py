"""The `corpus` command as a user runs it, against Postgres for both the corpus and Dagster."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import psycopg
import pytest

from corpus_assets.checks import graph_chunk_ids, postgres_chunk_ids, qdrant_chunk_ids
from resources.graph import FalkorDBResource, falkordb_server
from resources.postgres import PostgresResource, embedded
from resources.qdrant import QdrantEdgeResource
from resources.settings import SAMPLE_LIBRARY_DIR

BOOK = "1952_the-yellow-wallpaper"


@pytest.fixture
def run_cli(tmp_path, database_url):
    library = tmp_path / "library"
    library.mkdir()
    shutil.copy(SAMPLE_LIBRARY_DIR / f"{BOOK}.txt", library)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CORPUS_STATE_DIR": str(tmp_path / "state"),
        "CORPUS_LIBRARY_DIR": str(library),
        "COLUMNS": "200",  # rich wraps at 80 columns when not on a terminal
    }
    corpus = os.path.join(os.path.dirname(sys.executable), "corpus")

    def run(*args, **more_env):
        return subprocess.run([corpus, *args], env={**env, **more_env}, capture_output=True, text=True, timeout=600)

    run.env, run.corpus = env, corpus
    yield run
    falkordb_server.stop_server(tmp_path / "state" / "falkordb")  # the CLI left it running for others


def test_ingest_status_and_search(run_cli, database_url):
    ingest = run_cli("ingest")
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "1 newly registered" in ingest.stdout
    assert "ingested 1 books" in ingest.stdout
    assert "library report: 1 books, 0 whose stores disagree" in ingest.stdout

    with psycopg.connect(database_url) as conn:
        chunks = conn.execute("SELECT count(*) FROM chunks WHERE book_id = %s", (BOOK,)).fetchone()[0]
        # Dagster's run storage lives in the same Postgres (dagster-postgres), not in local files. The
        # run was launched from the `corpus` code location (as the UI launches: in its timeline, and
        # re-executed as its own), and names its book.
        runs = conn.execute(
            "SELECT status, run_body::json #>> '{external_pipeline_origin,external_repository_origin,"
            "repository_location_origin,location_name}', run_body::json #>> '{tags,corpus/books}' FROM runs"
        ).fetchall()
    assert chunks > 30
    assert runs == [("SUCCESS", "corpus", BOOK)]  # the library report after it is a run-less materialization

    status = run_cli("status")
    assert status.returncode == 0, status.stderr
    assert "The Yellow Wallpaper" in status.stdout and f"{chunks}" in status.stdout
    assert "stores agree: yes; HNSW index: valid" in status.stdout
    assert "SUCCESS" in status.stdout and "asset checks: none failing" in status.stdout

    for store, more in (("pgvector", ()), ("qdrant", ("--expand",))):
        search = run_cli("search", "creeping women behind the wallpaper pattern", "-k", "2", "--store", store, *more)
        assert search.returncode == 0, search.stderr
        assert f"{store}, hybrid:" in search.stdout and "The Yellow Wallpaper" in search.stdout and "score" in search.stdout
    assert "previous (chunk " in search.stdout or "next (chunk " in search.stdout  # --expand: the graph's context
    # --store and --mode take their choices only, as the shell completes them: a usage error names them.
    fuzzy = run_cli("search", "cat", "--mode", "fuzzy")
    assert fuzzy.returncode == 2 and "'fuzzy' is not one of 'dense', 'keyword', 'hybrid'" in fuzzy.stderr
    for args, reason in [(("  ",), "the query is empty"), (("cat", "-k", "0"), "k must be between 1 and 1000"),
                         (("cat", "--book", "nope"), "unknown book 'nope'"), (("cat", "--book", "../*"), "not a book id")]:
        refused = run_cli("search", *args)
        assert refused.returncode == 2 and reason in refused.stdout, refused.stdout + refused.stderr
        assert "Traceback" not in refused.stdout + refused.stderr and len(refused.stdout.strip().splitlines()) == 1
    # Refused before any store opens (the database is unreachable), an unknown book before the model loads.
    empty = run_cli("search", "  ", DATABASE_URL="postgresql://nobody@127.0.0.1:9/none")
    assert empty.returncode == 2 and "the query is empty" in empty.stdout, empty.stdout + empty.stderr
    unknown = run_cli("search", "cat", "--book", "nope", CORPUS_EMBEDDING_MODEL=str(run_cli.env["CORPUS_STATE_DIR"]) + "/no-model")
    assert unknown.returncode == 2 and "unknown book 'nope'" in unknown.stdout, unknown.stdout + unknown.stderr

    # With `corpus serve` running for the same stores, `corpus search` asks it.
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    service = subprocess.Popen([run_cli.corpus, "serve", "--port", str(port)], env=run_cli.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not _answers(f"{url}/health"):
            assert service.poll() is None and time.monotonic() < deadline, "corpus serve did not start"
            time.sleep(0.5)
        served = run_cli("search", "creeping women behind the wallpaper pattern", "-k", "2", CORPUS_SERVE_URL=url)
        assert served.returncode == 0 and "The Yellow Wallpaper" in served.stdout, served.stdout + served.stderr
        assert httpx.get(f"{url}/stats").json()["queries"] == 1
        assert httpx.get(f"{url}/search", params={"q": "cat", "k": 5000}).status_code == 422
        # The service's refusal, printed by `corpus search` as its own.
        refused = run_cli("search", "cat", "--book", "nope", CORPUS_SERVE_URL=url)
        assert refused.returncode == 2 and refused.stdout.strip() == (
            "corpus search: unknown book 'nope': `corpus status` lists the books"), refused.stdout
    finally:
        service.terminate()
        service.wait(timeout=30)

    again = run_cli("ingest")  # nothing new to register; the book is re-run and converges
    assert again.returncode == 0 and "0 newly registered" in again.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == chunks


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_service_that_fails_mid_query_is_one_line_not_a_traceback(monkeypatch):
    """`corpus search` asks a service that answers /health for its stores, then fails on /search: an
    error page that is not JSON, or a connection dropped. Both are StoreUnavailable, naming the service."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from corpus_cli.serve import ask_service, state_identity
    from resources.errors import StoreUnavailable

    class Failing(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path.startswith("/health"):
                body = json.dumps({"status": "ok", "state": state_identity()}).encode()
                self.send_response(200)
            elif "drop" in self.path:
                self.wfile.flush()
                self.connection.close()
                return
            else:
                body = b"<html><body>Internal   Server Error</body></html>"
                self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("CORPUS_SERVE_URL", url)
    try:
        with pytest.raises(StoreUnavailable, match=f"^corpus serve at {url} answered 500: <html><body>Internal Server"):
            ask_service({"q": "cat", "k": 5})
        with pytest.raises(StoreUnavailable, match=f"^corpus serve at {url}: RemoteProtocolError"):
            ask_service({"q": "drop", "k": 5})
    finally:
        server.shutdown()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


HOSTILE = {  # file name → (bytes, the book id it gets, the stage it fails in, words of its reason)
    "empty.txt": (b"", "empty", "raw_books", "is empty"),
    "binary.txt": (bytes(range(256)) * 40, "binary", "book_text", "binary, not text"),
    "only spaces.txt": (b"   \r\n\n\t  \n", "only-spaces", "book_text", "only whitespace"),
    "markers only; DROP TABLE books;--.txt": (
        b"*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\n",
        None, "book_text", "no text between the Project Gutenberg start and end markers"),
}


def test_one_ingest_gets_every_good_book_in_and_names_each_bad_one_then_a_deleted_file_never_blocks(
    run_cli, tmp_path, database_url
):
    library = tmp_path / "library"
    (library / "a-small-good-book.txt").write_text(
        "A Small Good Book\n\n" + "The keeper of the lighthouse counted the ships that passed each night. " * 150,
        encoding="utf-8")
    for name, (data, *_) in HOSTILE.items():
        (library / name).write_bytes(data)

    result = run_cli("ingest")  # every book in one batch: the bad ones fail alone

    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "dagster._core" not in out
    assert "ingested 2 books, 0 unchanged, 0 removed, 4 failed" in out
    for name, (_, book_id, stage, reason) in HOSTILE.items():
        line = next((line for line in out.splitlines() if reason in line), out)
        assert stage in line and (book_id is None or book_id in line), line
    for book in (BOOK, "a-small-good-book"):
        chunks = _everywhere(tmp_path, database_url, book)
        assert chunks[0] > 10 and chunks[0] == chunks[1] == chunks[2], (book, chunks)
    status = run_cli("status")
    assert "4 books failed in their last run" in status.stdout and "when its file changes" in status.stdout

    again = run_cli("ingest")  # nothing changed: no run, the bad books listed as held back
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ingested 0 books, 2 unchanged, 0 removed, 0 failed" in again.stdout and "(0 runs" in again.stdout
    assert again.stdout.count("held back: failed before, file unchanged") == 4

    (library / "empty.txt").unlink()
    (library / "binary.txt").write_text("Now it is a real book about a ship at sea. " * 200, encoding="utf-8")
    fixed = run_cli("ingest")  # the deleted book is removed, the mended one ingested
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "removed 1 books (its file is gone): empty" in fixed.stdout
    assert "ingested 1 books, 2 unchanged, 1 removed, 0 failed" in fixed.stdout
    chunks = _everywhere(tmp_path, database_url, "binary")
    assert chunks[0] > 0 and chunks[0] == chunks[1] == chunks[2]
    assert "empty" not in _everywhere(tmp_path, database_url, "empty")[3]


def test_a_deleted_file_is_removed_by_the_next_ingest_and_remove_takes_a_book_out(run_cli, tmp_path, database_url):
    assert run_cli("ingest").returncode == 0
    book_file = tmp_path / "library" / f"{BOOK}.txt"
    kept = book_file.read_bytes()
    book_file.unlink()

    # Its file was the library's only one: an empty folder (a share not mounted?) removes nothing.
    held = run_cli("ingest")
    assert held.returncode == 3 and f"not removed: 1 books whose files were not found ({BOOK})" in held.stdout
    assert "holds no book files" in held.stdout and _everywhere(tmp_path, database_url)[0] > 0
    after_delete = run_cli("ingest", "--confirm-removal")  # the same plan as the sensor's, confirmed
    assert after_delete.returncode == 0, after_delete.stdout + after_delete.stderr
    assert f"removed 1 books (its file is gone): {BOOK}" in after_delete.stdout
    assert _everywhere(tmp_path, database_url) == (0, 0, 0, [])
    again = run_cli("ingest")
    assert again.returncode == 0 and "its file is gone" not in again.stdout

    book_file.write_bytes(kept)
    assert run_cli("ingest").returncode == 0
    chunks = _everywhere(tmp_path, database_url)[0]
    assert chunks > 30 and _everywhere(tmp_path, database_url) == (chunks, chunks, chunks, [BOOK])
    removed = run_cli("remove", BOOK)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert f"removed 1 books (as asked): {BOOK}" in removed.stdout and "is still in the library" in removed.stdout
    assert _everywhere(tmp_path, database_url) == (0, 0, 0, [])
    unknown = run_cli("remove", "no-such-book")
    assert unknown.returncode == 2 and "no such book: no-such-book" in unknown.stdout


def _everywhere(tmp_path, database_url, book=BOOK) -> tuple[int, int, int, list[str]]:
    """The book's chunks in Postgres, points in Qdrant, Chunk nodes in the graph, and the registered partitions."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM chunks WHERE book_id = %s", (book,)).fetchone()[0]
        partitions = [r[0] for r in conn.execute(
            "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'books'")]
    with QdrantEdgeResource(path=str(tmp_path / "state" / "qdrant-edge")).open() as collection:
        points = collection.points_per_book([book])[book]
    with FalkorDBResource(folder=str(tmp_path / "state" / "falkordb")).session() as session:
        nodes = session.chunk_count(book)
    return rows, points, nodes, partitions


# The record each store write ends with (book_sync, in Postgres): held, it stops the write after the
# store was written and before the write is recorded or, for Postgres, committed. In run order.
KILLED_WRITES = {"pgvector_chunks": "chunks", "book_graph": "graph", "qdrant_points": "qdrant"}


def test_ingests_killed_inside_each_store_write_are_resumed_and_every_store_converges(
    run_cli, tmp_path, database_url, monkeypatch, blocked_store_write, opened
):
    """SIGKILL while Postgres's transaction is open, after the graph's writes, after Qdrant's upsert.

    Each write is stopped at a known point by holding its book_sync row lock from the test, so the
    kill lands inside the write every time, not around it.
    """
    assert run_cli("ingest").returncode == 0
    book_file = tmp_path / "library" / f"{BOOK}.txt"
    book_file.write_text(book_file.read_text(encoding="utf-8").replace("John", "Jonathan"), encoding="utf-8")
    corpus = os.path.join(os.path.dirname(sys.executable), "corpus")
    env = {**os.environ, "DATABASE_URL": database_url, "CORPUS_STATE_DIR": str(tmp_path / "state"),
           "CORPUS_LIBRARY_DIR": str(tmp_path / "library")}
    monkeypatch.setenv("CORPUS_STATE_DIR", str(tmp_path / "state"))  # the CLI's Qdrant folder and graph server
    qdrant, graph = QdrantEdgeResource(), FalkorDBResource()
    with opened(PostgresResource(database_url=database_url)) as postgres:
        _kill_inside_each_store_write(corpus, env, database_url, blocked_store_write, postgres, graph)

    resumed = run_cli("ingest")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "had died (its process is gone): marked failed" in resumed.stdout  # its pool slots are free again

    with opened(PostgresResource(database_url=database_url)) as postgres:
        in_postgres = postgres_chunk_ids(postgres, BOOK)
    assert in_postgres and in_postgres == qdrant_chunk_ids(qdrant, BOOK) == graph_chunk_ids(graph, BOOK)
    with psycopg.connect(database_url) as conn:  # the edited version, once: no duplicates or orphans anywhere
        texts = [row[0] for row in conn.execute("SELECT text FROM chunks WHERE book_id = %s", (BOOK,))]
        assert any("Jonathan" in text for text in texts) and not any("John " in text for text in texts)
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM chunks").fetchone() == (len(in_postgres),) * 2
    with qdrant.open() as collection:
        assert collection.count() == len(in_postgres)
    with graph.session() as session:
        assert sum(session.chunk_counts().values()) == len(in_postgres)


def _kill_inside_each_store_write(corpus, env, database_url, blocked_store_write, postgres, graph) -> None:
    for step, record in KILLED_WRITES.items():
        with psycopg.connect(database_url) as holder:  # a transaction, open until the kill
            assert holder.execute("SELECT 1 FROM book_sync WHERE book_id = %s AND target = %s FOR UPDATE",
                                  (BOOK, record)).fetchone()
            worker = subprocess.Popen([corpus, "ingest"], env=env, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                writer = blocked_store_write(database_url, timeout=300)
            finally:
                os.killpg(worker.pid, signal.SIGKILL)  # no clean-up of any kind, as in an OOM kill or power cut
                worker.wait()
            assert _running_step(database_url) == step
            if step == "pgvector_chunks":
                assert writer["backend_xid"] is not None  # its transaction had written the new rows
            if step == "book_graph":  # the new version was in the graph, not yet recorded as such
                assert graph_chunk_ids(graph, BOOK) == postgres_chunk_ids(postgres, BOOK)
            holder.rollback()


def _running_step(database_url) -> str:
    """The step the latest run started last, from Dagster's event log (in the same Postgres)."""
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT step_key FROM event_logs WHERE dagster_event_type = 'STEP_START' "
                            "ORDER BY id DESC LIMIT 1").fetchone()[0]


def test_a_run_whose_process_is_killed_fails_with_the_systems_reason_and_frees_its_pool_slots(run_cli, database_url):
    """The run's own process killed (as by the kernel's OOM killer), the CLI and code server alive."""
    ingest = subprocess.Popen([run_cli.corpus, "ingest"], env=run_cli.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    with psycopg.connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 300
        while not (worker := _embedding_run_pid(conn)):
            assert ingest.poll() is None and time.monotonic() < deadline, "the run did not reach chunk_embeddings"
            time.sleep(0.2)
        os.kill(worker, signal.SIGKILL)
        output = ingest.communicate(timeout=300)[0]
        held = conn.execute("SELECT count(*) FROM concurrency_slots WHERE run_id IS NOT NULL").fetchone()[0]
    assert ingest.returncode == 1 and "terminated by signal 9" in " ".join(output.split()), output
    assert held == 0  # the `embedding` slot it held is free: the next run does not wait on it forever
    again = run_cli("ingest")
    assert again.returncode == 0 and "ingested 1 books" in again.stdout, again.stdout + again.stderr


@pytest.mark.slow
def test_postgres_killed_under_an_ingest_is_one_line_and_the_next_ingest_converges(run_cli, tmp_path):
    """The embedded Postgres (the corpus tables and Dagster's storage alike) killed while `corpus ingest`
    waits on its run: one line naming Dagster's storage, never a traceback (before: 552 lines); the next
    command starts the server again, the run's own retries carry it through, and the book is in."""
    env = {key: value for key, value in run_cli.env.items() if key not in ("DATABASE_URL", "CORPUS_DAGSTER_PG_URL")}
    ingest = subprocess.Popen([run_cli.corpus, "ingest"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    server = tmp_path / "state" / "postgres"
    deadline = time.monotonic() + 300
    while True:
        assert ingest.poll() is None and time.monotonic() < deadline, "the run did not reach chunk_embeddings"
        try:
            with psycopg.connect(embedded.url(server, "dagster"), autocommit=True) as conn:
                if _embedding_run_pid(conn):
                    break
        except psycopg.OperationalError:  # the server is not up yet
            pass
        time.sleep(0.3)
    os.kill(int((server / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
    output = ingest.communicate(timeout=300)[0]
    assert ingest.returncode == 2 and "Traceback" not in output, output
    assert output.strip().splitlines()[-1].startswith("corpus: Dagster's storage (Postgres) stopped answering"), output
    deadline = time.monotonic() + 300
    while "1 unchanged" not in (again := subprocess.run([run_cli.corpus, "ingest"], env=env, capture_output=True,
                                                       text=True, timeout=600)).stdout:
        assert time.monotonic() < deadline and "Traceback" not in again.stdout + again.stderr, again.stdout + again.stderr
        time.sleep(5)
    with psycopg.connect(embedded.url(server, "corpus"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM chunks WHERE book_id = %s", (BOOK,)).fetchone()[0] > 0
    os.kill(int((server / "postmaster.pid").read_text().split()[0]), signal.SIGINT)  # the test's own server: stopped


def _embedding_run_pid(conn) -> int | None:
    """The process of the run that has started `chunk_embeddings`, from Dagster's event log (once it exists)."""
    try:
        row = conn.execute(
            "SELECT (s.event::json #>> '{dagster_event,pid}')::int FROM event_logs s JOIN event_logs e "
            "ON e.run_id = s.run_id AND e.dagster_event_type = 'STEP_START' AND e.step_key = 'chunk_embeddings' "
            "WHERE s.dagster_event_type = 'PIPELINE_START'").fetchone()
    except psycopg.errors.UndefinedTable:  # Dagster has not made its tables yet
        return None
    return row[0] if row else None


def test_corpus_env_hides_the_password_unless_asked(tmp_path):
    corpus = os.path.join(os.path.dirname(sys.executable), "corpus")
    env = {**os.environ, "CORPUS_STATE_DIR": str(tmp_path / "state"),
           "DATABASE_URL": "postgresql://alice:pa/ss#SECRET@db.example:5432/corp"}
    hidden = subprocess.run([corpus, "env"], env=env, capture_output=True, text=True, timeout=120)
    assert hidden.returncode == 0 and "SECRET" not in hidden.stdout + hidden.stderr and "alice:***@" in hidden.stdout
    shown = subprocess.run([corpus, "env", "--show-secrets"], env=env, capture_output=True, text=True, timeout=120)
    assert "pa/ss#SECRET" in shown.stdout
