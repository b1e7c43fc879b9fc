"""The service's first searches after a Postgres restart whose pages left the OS cache (a reboot),
with and without autoprewarm's list of buffered pages, side by side in one run (issue #19).

Each arm: `corpus serve` runs bench-retrieval's load test once (its traffic fills Postgres' shared
buffers), the server stops cleanly (autoprewarm writes its list), the list is deleted in the
"without" arm, every file of the server's data folder is dropped from the page cache
(posix_fadvise DONTNEED: clean pages, no root needed), and `corpus serve` starts again (and with it
the server): the first pass of the next load test is Postgres' cold start. Qdrant's columns are not a
cold start of the same kind: its shard is warmed by the service itself each time it opens it.

    .venv/bin/python bench/retrieval/cold_start.py bench/.state/scale/state

Writes bench/results/cold_start.{json,md}.
"""

import argparse
import json
import os
import signal
import time
from pathlib import Path

import run as bench

RESULTS = bench.RESULTS.with_name("cold_start")
ARMS = ("without", "with")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", type=Path, help="a state folder built elsewhere (the scale run's)")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    from resources.postgres import embedded

    os.environ["CORPUS_STATE_DIR"] = str(args.state.resolve())
    os.environ.pop("CORPUS_EMBEDDING_MODEL", None)
    pgdata = args.state.resolve() / "postgres"
    queries = [q for path in sorted(bench.QUERIES.glob("*.json")) for q in json.loads(path.read_text())]
    embedded.ensure_server(pgdata)  # with the project's settings (autoprewarm loaded)
    results = {"queries": len(queries), "state": str(args.state)}
    for arm in ARMS:
        bench.load(queries, 1, args.port, "onnx", 1)
        _stop(pgdata)
        listed = pgdata / "autoprewarm.blocks"
        if not listed.exists():
            raise SystemExit(f"cold_start: {pgdata} has no autoprewarm list after a clean stop (is pg_prewarm loaded?)")
        if arm == "without":
            listed.unlink()
        _drop_from_page_cache(pgdata)
        first = bench.load(queries, 1, args.port, "onnx", 1)  # `corpus serve` starts the server again
        results[arm] = {"first_pass": first["warm_up"], "warm": {key: first["one_client"][key] for key in ("p50_ms", "p95_ms")}}
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    RESULTS.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


def _stop(pgdata: Path, timeout: float = 120) -> None:
    """A clean (fast) shutdown; waited for by its pid file (the process may linger as a zombie here)."""
    os.kill(int((pgdata / "postmaster.pid").read_text().split()[0]), signal.SIGINT)
    deadline = time.monotonic() + timeout
    while (pgdata / "postmaster.pid").exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"cold_start: the server of {pgdata} did not stop in {timeout:.0f} s")
        time.sleep(0.2)


def _drop_from_page_cache(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def markdown(r: dict) -> str:
    lines = [f"`corpus serve`'s first pass after a Postgres restart with its pages out of the OS cache, "
             f"{r['queries']} queries once per method, one client, p50 / p95 ms:", "",
             "| method | without autoprewarm | with autoprewarm |", "|---|---|---|"]
    for method in r["with"]["first_pass"]["by_method"]:
        cells = [r[arm]["first_pass"]["by_method"][method] for arm in ARMS]
        lines.append(f"| {method} | " + " | ".join(f"{c['p50_ms']} / {c['p95_ms']}" for c in cells) + " |")
    lines.append("| all | " + " | ".join(f"{r[arm]['first_pass']['p50_ms']} / {r[arm]['first_pass']['p95_ms']}"
                                         for arm in ARMS) + " |")
    lines.append("| all, the pass after (warm) | " + " | ".join(f"{r[arm]['warm']['p50_ms']} / {r[arm]['warm']['p95_ms']}"
                                                               for arm in ARMS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
