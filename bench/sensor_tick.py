"""How long a library-sensor tick takes on a folder of many books (default 10,000 files).

Tick 1 sees every file for the first time (stat + sha256 + partition and run requests); tick 2 comes
after every requested book was stored (the runs are not executed: their outcome, the `books` rows, is
written directly), a library at rest (stat only); tick 3 follows an edit of 10 files; tick 4 after
those were stored. Each tick's cursor size is recorded: Dagster stores it with every tick.
Writes bench/results/sensor_tick.json.

    .venv/bin/python bench/sensor_tick.py [--files 10000]
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "sensor_tick.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="corpus-sensor-bench-"))
    library = work / "library"
    library.mkdir()
    os.environ["CORPUS_STATE_DIR"] = str(work / "state")
    sample = (Path(__file__).parents[1] / "data" / "sample_books" / "1952_the-yellow-wallpaper.txt").read_bytes()
    for i in range(args.files):  # real-sized books (51 kB), each with its own content
        (library / f"book_{i:05d}.txt").write_bytes(sample + f"\ncopy {i}\n".encode())

    from dagster import build_sensor_context, instance_for_test

    from resources.library import BookLibrary
    from resources.postgres import EmbeddedPostgresResource, embedded_url, migrate
    from sensors.library_sensor import library_sensor

    migrate(embedded_url())  # the server started and the schema in place before any tick is timed
    resources = {"library": BookLibrary(folder=str(library)), "postgres": EmbeddedPostgresResource()}
    results = {"files": args.files, "file_bytes": len(sample), "cores": os.cpu_count(), "python": platform.python_version()}
    with instance_for_test() as instance:
        cursor = None
        ticks = [("first_tick_seconds", None), ("at_rest_tick_seconds", "stored"), ("ten_edits_tick_seconds", 10),
                 ("edits_stored_tick_seconds", "stored")]
        for name, change in ticks:
            if change == "stored":
                store_books(library)
            for i in range(change if isinstance(change, int) else 0):
                with (library / f"book_{i:05d}.txt").open("ab") as file:
                    file.write(b"\nedited\n")
            started = time.perf_counter()
            with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
                result = library_sensor(context)
            results[name] = round(time.perf_counter() - started, 2)
            results[name.replace("seconds", "runs_requested")] = len(result.run_requests)
            for request in result.dynamic_partitions_requests:
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            cursor = result.cursor
            results[name.replace("seconds", "cursor_bytes")] = len(cursor)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def store_books(library: Path) -> None:
    """The outcome of every requested run, as far as the sensor reads it: each book's row with its
    file's sha256 (what `pgvector_chunks` writes) and each store's record of holding it (`book_sync`)."""
    import hashlib

    import psycopg

    from resources.postgres import embedded_url

    rows = [(p.stem, p.stem, p.name, hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size)
            for p in sorted(library.glob("*.txt"))]
    with psycopg.connect(embedded_url()) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO books (id, title, source_file, content_sha256, bytes, encoding, chapter_count, "
                        "chunk_count) VALUES (%s, %s, %s, %s, %s, 'utf-8', 1, 1) ON CONFLICT (id) DO UPDATE "
                        "SET content_sha256 = EXCLUDED.content_sha256", rows)
        cur.executemany("INSERT INTO book_sync (book_id, target, fingerprint) VALUES (%s, %s, %s) "
                        "ON CONFLICT (book_id, target) DO UPDATE SET fingerprint = EXCLUDED.fingerprint",
                        [(row[0], target, row[3]) for row in rows for target in ("pgvector", "qdrant", "graph", "similar")])


if __name__ == "__main__":
    main()
