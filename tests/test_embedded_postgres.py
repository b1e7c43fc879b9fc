import os
import signal
import time

import psycopg

from resources.postgres import embedded as embedded_postgres


def select_one(socket_dir):
    with psycopg.connect(embedded_postgres.url(socket_dir, "corpus")) as conn:
        return conn.execute("SELECT 1").fetchone()[0]


def test_server_is_reused_and_restarts_after_a_crash(pg_socket, state_dir):
    pgdata = state_dir / "postgres"
    assert embedded_postgres.ensure_server(pgdata) == pg_socket  # reused, not started twice
    assert select_one(pg_socket) == 1

    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)  # a crash: no clean shutdown, a stale postmaster.pid left behind
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)

    socket_dir = embedded_postgres.ensure_server(pgdata)
    assert select_one(socket_dir) == 1
    assert int((pgdata / "postmaster.pid").read_text().split()[0]) != pid


def test_server_listens_on_a_unix_socket_only_with_its_settings(pg_socket):
    with psycopg.connect(embedded_postgres.url(pg_socket, "postgres")) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == ""
        assert conn.execute("SHOW shared_buffers").fetchone()[0] == embedded_postgres.SERVER_SETTINGS["shared_buffers"]


def test_buffered_pages_are_read_back_after_a_restart(pg_socket, state_dir, database_url):
    """autoprewarm: an index in shared buffers at shutdown is in them again after the restart, unread by
    any query (what a search service finds after a reboot)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_buffercache")
        # No autovacuum: it would read the table back itself after the restart.
        conn.execute("CREATE TABLE pages (id int PRIMARY KEY, body text) WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO pages SELECT i, repeat('x', 200) FROM generate_series(1, 20000) i")
        assert _buffered(conn, "pages") > 0 and _buffered(conn, "pages_pkey") > 0  # written through the buffers

    embedded_postgres.restart_server(state_dir / "postgres")  # a clean shutdown saves the list of pages
    with psycopg.connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 10  # read back by a background worker after the start
        while time.monotonic() < deadline and not (_buffered(conn, "pages") and _buffered(conn, "pages_pkey")):
            time.sleep(0.2)
        assert _buffered(conn, "pages") > 0
        assert _buffered(conn, "pages_pkey") > 0


def _buffered(conn, relation: str) -> int:
    return conn.execute("SELECT count(*) FROM pg_buffercache WHERE relfilenode = pg_relation_filenode(%s::regclass) "
                        "AND reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())",
                        (relation,)).fetchone()[0]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
