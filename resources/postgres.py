"""Postgres + pgvector: the source of truth for books and chunks."""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from dagster import ConfigurableResource
from pgvector.psycopg import register_vector
from pydantic import Field

from resources import embedded_postgres, settings
from resources.errors import reaching

# Advisory-lock key that serializes schema migrations across processes ("corpus" in ASCII).
_MIGRATION_LOCK_KEY = 0x636F72707573
_migrated_urls: set[str] = set()
_migration_guard = threading.Lock()


def corpus_database_url(database_url: str | None = None) -> str:
    """The URL of the corpus database: `database_url` if given, else the embedded server's."""
    if database_url:
        return database_url
    socket_dir = embedded_postgres.ensure_server(settings.state_dir() / "postgres")
    return embedded_postgres.url(socket_dir, "corpus")


def dagster_storage_url() -> str:
    """The SQLAlchemy URL Dagster's own storage uses (dagster.yaml reads it from the environment).

    SQLAlchemy 2.1 needs the driver named (`postgresql+psycopg2://`): with a bare `postgresql://`
    dagster-postgres fails on NOTIFY with `syntax error at or near "$1"`.
    """
    if explicit := os.environ.get(settings.DAGSTER_PG_URL_ENV):
        return explicit
    if database_url := os.environ.get(settings.DATABASE_URL_ENV):
        # Same database as the corpus tables; Alembic version tables are kept apart by name.
        return "postgresql+psycopg2://" + database_url.split("://", 1)[1]
    socket_dir = embedded_postgres.ensure_server(settings.state_dir() / "postgres")
    return embedded_postgres.url(socket_dir, "dagster", driver="postgresql+psycopg2")


def to_sqlalchemy_url(url: str) -> str:
    """Name the psycopg 3 driver in a plain `postgresql://` URL, for SQLAlchemy and Alembic."""
    scheme, rest = url.split("://", 1)
    return url if "+" in scheme else f"postgresql+psycopg://{rest}"


def migrate(url: str) -> None:
    """Bring the schema to Alembic `head`, once per process and serialized across processes."""
    with _migration_guard:
        if url in _migrated_urls:
            return
        from alembic import command
        from alembic.config import Config

        config = Config(str(settings.PROJECT_ROOT / "alembic.ini"))
        config.set_main_option("script_location", str(settings.PROJECT_ROOT / "migrations"))
        config.attributes["database_url"] = url
        with psycopg.connect(url, autocommit=True) as lock_conn:
            lock_conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
            try:
                command.upgrade(config, "head")
            finally:
                lock_conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
        _migrated_urls.add(url)


class PostgresResource(ConfigurableResource):
    """Postgres with pgvector. Unset `database_url` means the embedded server in the state folder."""

    database_url: str | None = Field(
        default=None,
        description="postgresql:// URL of a server with pgvector; unset starts the embedded one.",
    )

    def url(self) -> str:
        return corpus_database_url(self.database_url)

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection (use `conn.transaction()`) with pgvector types, on a migrated schema."""
        url = self.url()
        with reaching("Postgres", url, psycopg.OperationalError):
            migrate(url)
            conn = psycopg.connect(url, autocommit=True)
        with conn:
            register_vector(conn)
            yield conn
