"""Postgres + pgvector: the source of truth for books and chunks."""

import atexit
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from dagster import ConfigurableResource
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool
from pydantic import Field

from resources import embedded_postgres, settings
from resources.errors import reaching, where

# Advisory-lock key that serializes schema migrations across processes ("corpus" in ASCII).
_MIGRATION_LOCK_KEY = 0x636F72707573
_migrated_urls: set[str] = set()
_migration_guard = threading.Lock()

# Connections per process and database. A run holds at most two at once (two books written side by
# side, `CORPUS_POSTGRES_WORKERS`); the rest is headroom for threads (the webserver, the sensor).
POOL_SIZE = int(os.environ.get("CORPUS_PG_POOL_SIZE", "4"))
# How long a caller waits for a connection before the store counts as unavailable.
POOL_TIMEOUT_SECONDS = float(os.environ.get("CORPUS_PG_POOL_TIMEOUT", "10"))
# Keyed by process too: a forked child must never use its parent's sockets.
_pools: dict[tuple[int, str], ConnectionPool] = {}
_pool_guard = threading.Lock()


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


def connection_pool(url: str) -> ConnectionPool:
    """This process's pool for `url`, opened on first use.

    Every checkout is re-validated (`check`): a connection the server dropped (restart, idle
    timeout, failover) is replaced instead of failing the caller's first statement.
    """
    key = (os.getpid(), url)
    with _pool_guard:
        if key not in _pools:
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=POOL_SIZE,
                timeout=POOL_TIMEOUT_SECONDS,
                kwargs={"autocommit": True, "application_name": "corpus"},
                configure=register_vector,
                check=ConnectionPool.check_connection,
                name=where(url),  # the pool's logs never show credentials
                open=True,
            )
            try:
                pool.wait(POOL_TIMEOUT_SECONDS)  # the first connection, or a clear error if there is none
            except Exception:
                pool.close(timeout=1)
                raise
            _pools[key] = pool
        return _pools[key]


@atexit.register
def close_pools(url: str | None = None) -> None:
    """Close this process's pools (connections and worker threads): all, or the one for `url`.

    Close a database's pool before dropping the database, or it keeps trying to reconnect.
    """
    with _pool_guard:
        mine = [key for key in _pools if key[0] == os.getpid() and url in (None, key[1])]
        for key in mine:
            _pools.pop(key).close(timeout=1)


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
        """A pooled autocommit connection (use `conn.transaction()`) with pgvector types, on a migrated schema.

        Session settings do not outlive the checkout only if set transaction-locally
        (`set_config(..., true)`), as every caller here does.
        """
        url = self.url()
        with reaching("Postgres", url, psycopg.OperationalError):  # PoolTimeout is one
            migrate(url)
            conn = connection_pool(url).getconn()
        try:
            yield conn
        finally:
            # A connection left broken or mid-transaction is discarded by the pool, not reused.
            connection_pool(url).putconn(conn)
