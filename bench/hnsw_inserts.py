"""Why pgvector_chunks grows per chunk at scale: HNSW insert cost as the index grows, side by side.

Vectors: the chunk vectors of a `make bench-scale` state (default bench/.state/scale; any corpus
database works), copied into scratch tables of the same server. For each way of writing, rows are
added in steps of `--step` and each step's seconds per 1,000 rows are recorded:
- `efc128_1_writer`: the migrations' index (m 16, ef_construction 128), one COPY at a time;
- `efc128_2_writers`: the same, two connections copying side by side (as pgvector_chunks does);
- `efc64_1_writer`: ef_construction 64;
- `bulk_then_build`: every row copied with no index, then the index built once (maintenance_work_mem 1GB).
Writes bench/results/hnsw_inserts.json and .md.

    .venv/bin/python bench/hnsw_inserts.py [--state bench/.state/scale] [--rows 150000] [--step 30000]
"""

import argparse
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "bench" / "results" / "hnsw_inserts"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=PROJECT / "bench" / ".state" / "scale" / "state")
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--step", type=int, default=30_000)
    args = parser.parse_args()
    os.environ["CORPUS_STATE_DIR"] = str(args.state)
    import psycopg
    from pgvector.psycopg import register_vector

    from resources.postgres import embedded_url

    url = embedded_url()
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        vectors = np.stack([r[0].to_numpy() for r in conn.execute(
            "SELECT embedding FROM chunks ORDER BY md5(id) LIMIT %s", (args.rows,))])
    print(f"{len(vectors)} vectors of {vectors.shape[1]} dims", flush=True)
    results = {"rows": len(vectors), "step": args.step, "cores": os.cpu_count()}
    for name, efc, writers in (("efc128_1_writer", 128, 1), ("efc128_2_writers", 128, 2), ("efc64_1_writer", 64, 1)):
        results[name] = incremental(url, vectors, args.step, efc, writers)
        print(name, results[name], flush=True)
    results["bulk_then_build"] = bulk_then_build(url, vectors)
    print("bulk_then_build", results["bulk_then_build"], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    RESULTS.with_suffix(".md").write_text(markdown(results))


def scratch_table(conn, efc: int | None) -> None:
    conn.execute("DROP TABLE IF EXISTS bench_hnsw")
    conn.execute(f"CREATE TABLE bench_hnsw (id bigint PRIMARY KEY, embedding vector({DIMS}))")
    if efc is not None:
        conn.execute("CREATE INDEX ON bench_hnsw USING hnsw (embedding vector_cosine_ops) "
                     f"WITH (m = 16, ef_construction = {int(efc)})")


DIMS = 384


def copy_rows(url: str, vectors: np.ndarray, first: int) -> None:
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(url) as conn:
        register_vector(conn)
        with conn.cursor().copy("COPY bench_hnsw (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "vector"])
            for offset, vector in enumerate(vectors):
                copy.write_row((first + offset, vector))


def incremental(url: str, vectors: np.ndarray, step: int, efc: int, writers: int) -> dict:
    """Seconds per 1,000 rows added, step by step, into a table that has the index from the start."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        scratch_table(conn, efc)
    per_step = {}
    for first in range(0, len(vectors), step):
        rows = vectors[first:first + step]
        parts = np.array_split(np.arange(len(rows)), writers)
        threads = [threading.Thread(target=copy_rows, args=(url, rows[part], first + int(part[0])))
                   for part in parts if len(part)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        per_step[first + len(rows)] = round(1000 * (time.perf_counter() - started) / len(rows), 3)
    return {"s_per_1000_rows_at_size": per_step}


def bulk_then_build(url: str, vectors: np.ndarray) -> dict:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        scratch_table(conn, None)
        started = time.perf_counter()
        copy_rows(url, vectors, 0)
        copied = time.perf_counter() - started
        conn.execute("SET maintenance_work_mem = '1GB'")
        started = time.perf_counter()
        conn.execute("CREATE INDEX ON bench_hnsw USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128)")
        built = time.perf_counter() - started
        conn.execute("DROP TABLE bench_hnsw")
    return {"copy_s": round(copied, 1), "build_s": round(built, 1),
            "s_per_1000_rows": round(1000 * (copied + built) / len(vectors), 3)}


def markdown(r: dict) -> str:
    sizes = list(r["efc128_1_writer"]["s_per_1000_rows_at_size"])
    header = "| rows in the table | " + " | ".join(f"{int(s):,}" for s in sizes) + " |"
    lines = [f"HNSW inserts, seconds per 1,000 rows added (`bench/hnsw_inserts.py`, {r['cores']} cores, "
             f"{r['rows']:,} stand-in chunk vectors)", "", header, "|---" * (len(sizes) + 1) + "|"]
    for name in ("efc128_1_writer", "efc128_2_writers", "efc64_1_writer"):
        values = r[name]["s_per_1000_rows_at_size"].values()
        lines.append(f"| {name} | " + " | ".join(str(v) for v in values) + " |")
    b = r["bulk_then_build"]
    lines += ["", f"bulk_then_build: COPY {b['copy_s']} s + index build {b['build_s']} s = "
              f"{b['s_per_1000_rows']} s per 1,000 rows for all {r['rows']:,}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
