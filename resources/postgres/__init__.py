"""Postgres + pgvector, the source of truth: a server (`DATABASE_URL`) or the embedded one.

`PostgresResource` talks to a server at a URL; `EmbeddedPostgresResource` first starts the embedded
server in the state folder (shared by every process). The Definitions choose one. Each opens its
connection pool in `setup_for_execution` and closes it in `teardown_after_execution`; code outside
Dagster (the CLI, tests) gets the same lifetime from `dagster.build_resources`. Every query lives
in `store.CorpusDB`. The schema is brought up to date by an explicit step (`migrate`: `corpus
migrate`, the `migrate_corpus_db` job, or the CLI before an ingest); a resource on an out-of-date
schema refuses to work, naming the step.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import sqlalchemy
from psycopg.conninfo import conninfo_to_dict
from dagster import ConfigurableResource, InitResourceContext
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool
from pydantic import Field, PrivateAttr

from resources import settings
from resources.errors import SchemaOutOfDate, reaching, where
from resources.postgres import embedded
from resources.postgres.store import CorpusDB

# Advisory-lock key that serializes schema migrations across processes ("corpus" in ASCII).
_MIGRATION_LOCK_KEY = 0x636F72707573
# Dagster's storage keeps its own `alembic_version`; ours must not collide when they share a database.
VERSION_TABLE = "corpus_alembic_version"


def _alembic_config(url: str):
    from alembic.config import Config

    config = Config(str(settings.PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(settings.PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = url
    return config


def migrate(url: str) -> None:
    """Bring the schema at `url` to Alembic `head`, serialized across processes. A CORPUS_INDEX_BUILD_MEMORY
    Postgres refuses is a SettingError first: a migration or an ingest may build the HNSW index with it."""
    from alembic import command

    with psycopg.connect(url, autocommit=True) as lock_conn:
        if refused := CorpusDB(lock_conn).memory_setting_refused(settings.current().index_build_memory):
            raise settings.SettingError(f"CORPUS_INDEX_BUILD_MEMORY={settings.current().index_build_memory!r} "
                                        f"is refused by Postgres: {refused}")
        lock_conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        try:
            command.upgrade(_alembic_config(url), "head")
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("")).get_current_head()


def schema_revision(conn: psycopg.Connection) -> str | None:
    """The Alembic revision the database is at (None: never migrated)."""
    if conn.execute("SELECT to_regclass(%s)", (VERSION_TABLE,)).fetchone()[0] is None:
        return None
    row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()  # constant identifier
    return row[0] if row else None


def embedded_url(database: str = "corpus", driver: str = "postgresql") -> str:
    """The URL of one database of the embedded server in the state folder, starting it if needed."""
    socket_dir = embedded.ensure_server(settings.current().state_dir / "postgres")
    return embedded.url(socket_dir, database, driver)


def dagster_storage_url() -> str:
    """The SQLAlchemy URL of Dagster's own storage (dagster.yaml reads it from the environment).

    SQLAlchemy 2.1 needs the driver named (`postgresql+psycopg2://`): with a bare `postgresql://`
    dagster-postgres fails on NOTIFY with `syntax error at or near "$1"`.
    """
    config = settings.current()
    if config.dagster_pg_url:
        return config.dagster_pg_url
    if config.database_url:
        # Same database as the corpus tables; the Alembic version tables are kept apart by name.
        if "://" in config.database_url:
            return "postgresql+psycopg2://" + config.database_url.split("://", 1)[1]
        fields = conninfo_to_dict(config.database_url)  # libpq's key=value form
        return sqlalchemy.engine.URL.create(
            "postgresql+psycopg2", username=fields.pop("user", None), password=fields.pop("password", None),
            host=fields.pop("host", None), port=int(fields.pop("port")) if "port" in fields else None,
            database=fields.pop("dbname", None), query={k: str(v) for k, v in fields.items()},
        ).render_as_string(hide_password=False)
    return embedded_url("dagster", driver="postgresql+psycopg2")


def _register_vector(conn: psycopg.Connection) -> None:
    """pgvector's types on a new pooled connection; on a database not migrated yet there are none,
    and the schema check of the first checkout names the step to take (`corpus migrate`)."""
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:  # "vector type not found in the database"
        pass


class PostgresResource(ConfigurableResource):
    """A Postgres server with pgvector, at `database_url`."""

    database_url: str = Field(description="postgresql:// URL of a server with pgvector (env DATABASE_URL).")
    pool_size: int = Field(default_factory=lambda: settings.current().pg_pool_size, description=(
        "Connections pooled per process: a run holds at most two at once (two books written side by side); "
        "the rest is headroom for threads (env CORPUS_PG_POOL_SIZE)."))
    pool_timeout: float = Field(default_factory=lambda: settings.current().pg_pool_timeout, description=(
        "Seconds a caller waits for a connection before the store counts as unavailable (env CORPUS_PG_POOL_TIMEOUT)."))

    _pool: ConnectionPool | None = PrivateAttr(default=None)
    _url: str | None = PrivateAttr(default=None)
    _schema_checked: bool = PrivateAttr(default=False)

    def url(self) -> str:
        if self._url is None:
            self._url = self._resolve_url()
        return self._url

    def _resolve_url(self) -> str:
        return self.database_url

    def setup_for_execution(self, context: InitResourceContext | None = None) -> None:
        url = self.url()
        # Opened without waiting: a server that is down fails the first checkout inside a step,
        # whose RetryPolicy waits it out, rather than the whole run at start.
        self._pool = ConnectionPool(
            url, min_size=0, max_size=self.pool_size, timeout=self.pool_timeout,
            kwargs={"autocommit": True, "application_name": "corpus"},
            configure=_register_vector,
            # Every checkout is re-validated: a connection the server dropped (restart, idle timeout,
            # failover) is replaced instead of failing the caller's first statement.
            check=ConnectionPool.check_connection,
            name=where(url),  # the pool's logs never show credentials
            open=True,
        )

    def teardown_after_execution(self, context: InitResourceContext | None = None) -> None:
        if self._pool is not None:
            self._pool.close(timeout=1)
            self._pool = None

    @contextmanager
    def db(self) -> Iterator[CorpusDB]:
        """The corpus database on a pooled autocommit connection with pgvector types.

        Session settings must be set transaction-locally (`set_config(..., true)`), as the store
        does, so that they never outlive the checkout.
        """
        if self._pool is None:
            raise RuntimeError("PostgresResource used outside execution: open it with dagster.build_resources")
        with reaching("Postgres", self.url(), psycopg.OperationalError):  # PoolTimeout is one
            conn = self._pool.getconn()
        try:
            if not self._schema_checked:
                self._check_schema(conn)
            yield CorpusDB(conn)
        finally:
            # A connection left broken or mid-transaction is discarded by the pool, not reused.
            self._pool.putconn(conn)

    def pool_stats(self) -> dict[str, int]:
        """The pool's counters (connections lost, requests waiting, ...)."""
        return self._pool.get_stats() if self._pool is not None else {}

    def _check_schema(self, conn: psycopg.Connection) -> None:
        found, head = schema_revision(conn), head_revision()
        if found != head:
            # Its connections may have been configured without pgvector's types: new ones once migrated.
            self._pool.drain()
            raise SchemaOutOfDate(
                f"the corpus database at {where(self.url())} is at schema revision {found or 'none'}, the code "
                f"needs {head}: run `corpus migrate` (or the migrate_corpus_db job)"
            )
        self._schema_checked = True


class EmbeddedPostgresResource(PostgresResource):
    """The embedded Postgres + pgvector server in the state folder, started on first use and shared."""

    database_url: str = Field(default="", description="Unused: the URL is the embedded server's.")
    data_dir: str | None = Field(default=None, description="Server data folder; unset: `postgres/` in the state folder.")

    def _resolve_url(self) -> str:
        folder = Path(self.data_dir) if self.data_dir else settings.current().state_dir / "postgres"
        return embedded.url(embedded.ensure_server(folder), "corpus")
