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


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
