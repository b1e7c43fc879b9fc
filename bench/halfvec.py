"""`make bench-halfvec`: the pgvector HNSW index over `vector` against one over `halfvec`, side by side (#33).

A bulk load builds the index once in maintenance_work_mem; past what that holds, the rest of the rows
go in at insert cost (93k rows: 52 s in memory, 304 s spilled). halfvec (16-bit floats) halves each
vector, so more rows fit the same memory and the index reads fewer pages per search. This measures
what it costs in recall, on a state folder a bench left: each index built in the same memory, rows
held in 16MB (from pgvector's notice when the graph stops fitting), build seconds, size, and search
p50 / p95 and recall@10 by id against exact float32 search, for the same queries (first sentences of
sampled chunks, encoded by the state's model) at the SIMILAR search's ef 40 and search's ef 200.

    .venv/bin/python bench/halfvec.py --state bench/.state/eval/default/state [--model PATH] --label real
    .venv/bin/python bench/halfvec.py --rows 1390000   # the shipped build at the mission's size

The state's own index is dropped first (each variant is built alone, under its own name) and built
again at the end.
Writes bench/results/halfvec_<label>.json; bench/results/halfvec.md holds every label measured.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "bench"))

from resources.postgres.store import BUILD_WORKERS, GRAPH_SPILLED, HNSW_INDEX, CorpusDB  # noqa: E402
from scale import Truth, corpus_connection, own_servers, stored_vectors, timed  # noqa: E402

RESULTS = PROJECT / "bench" / "results"
QUERIES = 200
EF = (40, 200)
PROBE_MEMORY = "16MB"  # small enough that the graph stops fitting early; the probe is then cancelled
BUILD_MEMORY = "1GB"  # both variants' graphs of every state measured here fit in it
WITH = "WITH (m = 16, ef_construction = 128)"  # the shipped index's parameters
VARIANTS = {
    "vector": {"index": "chunks_embedding_vector_bench", "expression": "embedding", "ops": "vector_cosine_ops",
               "order": "embedding <=> %s::vector"},
    "halfvec": {"index": "chunks_embedding_halfvec_bench", "expression": "(embedding::halfvec(384))",
                "ops": "halfvec_cosine_ops", "order": "embedding::halfvec(384) <=> %s::halfvec(384)"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, help="a CORPUS_STATE_DIR a bench left")
    parser.add_argument("--model", help="the state's embedding model (CORPUS_EMBEDDING_MODEL), if not the default")
    parser.add_argument("--label")
    parser.add_argument("--rows", type=int, help="instead: the shipped build over this many random vectors")
    args = parser.parse_args()
    if args.rows:
        return build_at_size(args.rows)
    if not (args.state and args.label):
        parser.error("--state and --label, or --rows")
    os.environ.update({"CORPUS_STATE_DIR": str(args.state.resolve()), "HF_HUB_OFFLINE": "1"})
    if args.model:
        os.environ["CORPUS_EMBEDDING_MODEL"] = args.model
    own_servers(args.state.resolve())
    with corpus_connection() as conn:
        ids, _, corpus = stored_vectors(conn)
        queries, warm = query_vectors(conn, ids)
        truth = Truth(corpus, ids, {chunk: row for row, chunk in enumerate(ids)}, queries)
        db = CorpusDB(conn)
        db.drop_hnsw_index()  # each variant alone: the planner then uses the one its ORDER BY names
        notices: list[str] = []
        conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
        result = {"label": args.label, "rows": len(ids), "dimensions": int(corpus.shape[1]), "variants": {}}
        for name, variant in VARIANTS.items():
            result["variants"][name] = measure(conn, variant, truth, warm, notices)
            print(name, json.dumps(result["variants"][name]), flush=True)
        for variant in VARIANTS.values():
            conn.execute(f"DROP INDEX IF EXISTS {variant['index']}")
        db.build_hnsw_index(BUILD_MEMORY)  # the state as it was
    (RESULTS / f"halfvec_{args.label}.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown()


def build_at_size(rows: int) -> None:
    """The index as shipped (`CorpusDB.build_hnsw_index`, CORPUS_INDEX_BUILD_MEMORY's default) over `rows`
    random unit vectors in a scratch state: whether its graph fit in memory, the build's seconds, its size.
    (Random vectors measure memory and time; recall on them says nothing of books.)"""
    from resources import settings

    state = PROJECT / "bench" / ".state" / "halfvec_build"
    shutil.rmtree(state, ignore_errors=True)
    os.environ["CORPUS_STATE_DIR"] = str(state)
    own_servers(state)
    memory = settings.current().index_build_memory
    with corpus_connection() as conn:
        db = CorpusDB(conn)
        db.drop_hnsw_index()
        conn.execute("INSERT INTO books (id, title, source_file, content_sha256, bytes, encoding, chapter_count, "
                     "chunk_count) VALUES ('b', 'B', 'b.txt', repeat('0', 64), 1, 'utf-8', 1, %s)", (rows,))
        started = time.perf_counter()
        for first in range(0, rows, 50_000):
            conn.execute(
                "INSERT INTO chunks (id, book_id, ordinal, chapter_index, chapter, text, token_count, char_start, "
                "char_end, content_sha256, embedding, model, text_config) "
                "SELECT 'c' || n, 'b', n, 0, '', '', 1, 0, 1, repeat('0', 64), l2_normalize("
                "(SELECT array_agg(random_normal()) FROM generate_series(1, 384) WHERE n >= 0)::vector(384)), 'm', "
                "'simple' FROM generate_series(%s::int, %s::int) n", (first, min(first + 50_000, rows) - 1))
        loading = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE chunks")
        started = time.perf_counter()
        build = db.build_hnsw_index(memory)
        seconds = time.perf_counter() - started
        (size,) = conn.execute("SELECT pg_relation_size(%s::regclass)", (HNSW_INDEX,)).fetchone()
    result = {"rows": rows, "maintenance_work_mem": memory, "parallel_workers": BUILD_WORKERS,
              "graph_fit_in_memory": build.rows_in_memory is None,
              "rows_in_memory": rows if build.rows_in_memory is None else build.rows_in_memory,
              "build_seconds": round(seconds, 1), "index_mb": round(size / 2**20, 1),
              "load_seconds": round(loading, 1)}
    print(json.dumps(result), flush=True)
    (RESULTS / f"halfvec_build_{rows}.json").write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(state, ignore_errors=True)
    write_markdown()


def query_vectors(conn, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from resources.embedding import EmbeddingModel

    sample = np.random.default_rng(7).choice(len(ids), 2 * QUERIES, replace=False)
    texts = dict(conn.execute("SELECT id, text FROM chunks WHERE id = ANY(%s)", (list(ids[sample]),)).fetchall())
    encoded = EmbeddingModel().load().encode([texts[i].split(". ")[0][:300] for i in ids[sample]],
                                             normalize_embeddings=True, convert_to_numpy=True)
    return encoded[QUERIES:], encoded[:QUERIES]


def measure(conn, variant: dict, truth: Truth, warm: np.ndarray, notices: list[str]) -> dict:
    # Rows the probe memory holds: pgvector says when the graph stops fitting; the build is then cut short.
    conn.execute(f"DROP INDEX IF EXISTS {variant['index']}")
    notices.clear()
    conn.execute("SET statement_timeout = '60s'")
    with contextlib.suppress(psycopg.errors.QueryCanceled):  # the timeout is the point
        build(conn, variant, PROBE_MEMORY, workers=0)
    conn.execute("RESET statement_timeout")
    held = [int(m.group(1)) for m in map(GRAPH_SPILLED.search, notices) if m]
    conn.execute(f"DROP INDEX IF EXISTS {variant['index']}")
    started = time.perf_counter()
    build(conn, variant, BUILD_MEMORY)
    seconds = time.perf_counter() - started
    (size,) = conn.execute("SELECT pg_relation_size(%s::regclass)", (variant["index"],)).fetchone()
    searches = {}
    for ef in EF:
        conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef),))
        searches[f"ef {ef}"] = timed(lambda q: [r[0] for r in conn.execute(
            f"SELECT id FROM chunks ORDER BY {variant['order']} LIMIT 10", (q,), prepare=False)], warm, truth)
    return {"rows_in_16MB": held[0] if held else None,
            "bytes_per_row_in_memory": round(16 * 2**20 / held[0]) if held else None,
            "build_seconds": round(seconds, 1), "index_mb": round(size / 2**20, 1), "search": searches}


def build(conn, variant: dict, memory: str, workers: int = BUILD_WORKERS) -> None:
    with conn.transaction():
        conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (memory,))
        conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, true)", (str(workers),))
        conn.execute(f"CREATE INDEX {variant['index']} ON chunks USING hnsw ({variant['expression']} "
                     f"{variant['ops']}) {WITH}")


def write_markdown() -> None:
    lines = ["pgvector HNSW over `vector` and over `halfvec` (`bench/halfvec.py`), each built in the same state "
             f"(m 16, ef_construction 128, {BUILD_MEMORY}); recall@10 by id against exact float32 search, "
             f"{QUERIES} queries; p50 / p95 ms.", "",
             "| state | rows | index | bytes a row in memory | build s | index MB | ef 40 | ef 200 |",
             "|---|---|---|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("halfvec_*.json")):
        if path.name.startswith("halfvec_build_"):
            continue
        r = json.loads(path.read_text())
        for name, v in r["variants"].items():
            cells = [f"{s['p50_ms']} / {s['p95_ms']}, {s['recall_at_10']}" for s in v["search"].values()]
            lines.append(f"| {r['label']} | {r['rows']:,} | {name} | {v['bytes_per_row_in_memory']} | "
                         f"{v['build_seconds']} | {v['index_mb']} | " + " | ".join(cells) + " |")
    builds = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("halfvec_build_*.json"))]
    if builds:
        lines += ["", "The shipped build (`--rows N`: random unit vectors, the default CORPUS_INDEX_BUILD_MEMORY):", "",
                  "| rows | maintenance_work_mem | graph in memory | build s | index MB |", "|---|---|---|---|---|"]
        for b in builds:
            held = "all" if b["graph_fit_in_memory"] else f"{b['rows_in_memory']:,} rows"
            lines.append(f"| {b['rows']:,} | {b['maintenance_work_mem']} | {held} | {b['build_seconds']} | "
                         f"{b['index_mb']} |")
    (RESULTS / "halfvec.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
