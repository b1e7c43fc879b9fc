"""`make bench-bulk`: a cold ingest by the per-book path against a bulk load, side by side (issue #33).

The same synthetic books (bench-scale's: real prose recombined, ~150 chunks per book, stand-in encoder)
go into an empty library twice, each in a fresh state folder, with `corpus ingest` as users run it:
once with CORPUS_BULK_LOAD=never (every run writes rows into the HNSW index as it grows, then links
its books), once with CORPUS_BULK_LOAD=always (rows in with the index dropped, the index built once,
then the SIMILAR edges and the index's checks). Milliseconds per chunk of every stage and check but
the encoder, and whether both libraries agree: chunk ids per book in every store, each chunk's SIMILAR
neighbours, every check's result.

    .venv/bin/python bench/bulk_load.py [--books 600] [--books-per-run 100]   # ~30 min on 2 cores

Writes bench/results/bulk_load.json and .md.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "bench"))

from scale import ENCODE_STAGE, Truth, non_encode_ms, own_servers, stored_vectors, timed, timed_ingest  # noqa: E402
from scale_library import build_standin_model, paragraph_pool, write_book  # noqa: E402

RESULTS = PROJECT / "bench" / "results"
WORK = PROJECT / "bench" / ".state" / "bulk_load"
ARMS = {"per-book": "never", "bulk": "always"}
EF = (40, 200)  # pgvector's default hnsw.ef_search (the SIMILAR search) and corpus's (CORPUS_EF_SEARCH)
QUERIES = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=600)
    parser.add_argument("--books-per-run", type=int, default=100)
    parser.add_argument("--chars", type=int, default=86_000, help="characters of text per book (~150 chunks)")
    args = parser.parse_args()
    started = time.perf_counter()
    shutil.rmtree(WORK, ignore_errors=True)
    library = WORK / "library"
    library.mkdir(parents=True)
    pool = paragraph_pool()
    model = build_standin_model(PROJECT / "bench" / ".state" / "standin-minilm-calibrated", pool)
    for number in range(args.books):
        write_book(library, number, pool, args.chars)
    base_env = dict(os.environ)
    arms = {}
    for arm, setting in ARMS.items():
        os.environ.clear()
        os.environ.update(base_env)
        os.environ.update({"CORPUS_STATE_DIR": str(WORK / arm), "CORPUS_LIBRARY_DIR": str(library),
                           "CORPUS_EMBEDDING_MODEL": str(model), "CORPUS_BOOKS_PER_RUN": str(args.books_per_run),
                           "CORPUS_BULK_LOAD": setting, "HF_HUB_OFFLINE": "1"})
        own_servers(WORK / arm)
        ingest = timed_ingest(f"{arm}: {args.books} books into an empty library")
        arms[arm] = {**ingest, "non_encode_ms_per_chunk": round(non_encode_ms(ingest), 3), "library": library_state()}
        if arm == "per-book":
            # The per-book path links each book to the books in the library when it ran; the bulk load,
            # to every book. Relinked once all are in, the per-book library is what a bulk load should equal.
            relinking = time.perf_counter()
            relink_every_book()
            arms[arm]["relinked"] = {"seconds": round(time.perf_counter() - relinking, 1),
                                     "similar": similar_neighbours(list(arms[arm]["library"]["similar"]))}
        print(json.dumps({k: v for k, v in arms[arm].items() if k not in ("library", "relinked")}, indent=1), flush=True)
    write(args, arms, time.perf_counter() - started)


def library_state() -> dict:
    """What both arms must agree on, read from the stores of the current state folder."""
    from corpus_assets.checks import graph_chunk_ids, qdrant_chunk_ids
    from resources.graph import FalkorDBResource
    from resources.qdrant import QdrantEdgeResource

    from scale import corpus_connection

    with corpus_connection() as conn:
        rows = conn.execute("SELECT book_id, id FROM chunks ORDER BY book_id, id").fetchall()
        index = conn.execute("SELECT pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                             "WHERE c.relname = 'chunks_embedding_hnsw_idx' AND i.indisvalid").fetchall()
    ids: dict[str, list[str]] = {}
    for book, chunk in rows:
        ids.setdefault(book, []).append(chunk)
    books = sorted(ids)
    qdrant, graph = QdrantEdgeResource(), FalkorDBResource()
    return {
        "books": len(books), "chunks": len(rows), "index": index[0][0] if index else "missing",
        "postgres_ids_sha256": digest(ids),
        "qdrant_ids_sha256": digest({book: sorted(qdrant_chunk_ids(qdrant, book)) for book in books}),
        "graph_ids_sha256": digest({book: sorted(graph_chunk_ids(graph, book)) for book in books}),
        "similar": similar_neighbours([chunk for _, chunk in rows]), "checks": check_results(),
        "recall": index_recall(),
    }


def similar_neighbours(chunk_ids: list[str]) -> dict[str, list[str]]:
    """Each chunk's SIMILAR chunks, either direction, from the graph."""
    from resources.graph import FalkorDBResource

    similar = {}
    with FalkorDBResource().session() as session:
        for first in range(0, len(chunk_ids), 2000):
            for chunk, found in session.neighbours(chunk_ids[first:first + 2000]).items():
                similar[chunk] = sorted(other for other, _ in found.similar)
    return similar


def index_recall() -> dict:
    """Top-10 through the HNSW index against exact search, over the whole library: the same QUERIES
    first sentences of stored chunks in both arms, encoded by the library's model."""
    import numpy as np

    from resources.embedding import EmbeddingModel
    from resources.postgres.store import NEAREST_TO_QUERY
    from scale import corpus_connection

    with corpus_connection() as conn:
        ids, _, corpus = stored_vectors(conn)
        order = np.argsort(ids)
        ids, corpus = ids[order], corpus[order]
        sample = np.random.default_rng(7).choice(len(ids), 2 * QUERIES, replace=False)
        texts = dict(conn.execute("SELECT id, text FROM chunks WHERE id = ANY(%s)", (list(ids[sample]),)).fetchall())
        encoded = EmbeddingModel().load().encode([texts[i].split(". ")[0][:300] for i in ids[sample]],
                                                 normalize_embeddings=True, convert_to_numpy=True)
        truth = Truth(corpus, ids, {chunk: row for row, chunk in enumerate(ids)}, encoded[QUERIES:])
        found = {}
        for ef in EF:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef),))
            found[f"ef {ef}"] = timed(lambda q: [r[0] for r in conn.execute(
                f"SELECT id FROM chunks ORDER BY {NEAREST_TO_QUERY} LIMIT 10", {"query": q}, prepare=False)],
                encoded[:QUERIES], truth)
        return found


def relink_every_book() -> None:
    from dagster import build_resources

    from corpus_assets.assets.graph import SimilarChunksConfig, relink_similar
    from resources.graph import FalkorDBResource
    from resources.postgres import EmbeddedPostgresResource

    config = SimilarChunksConfig()
    with build_resources({"postgres": EmbeddedPostgresResource(), "graph": FalkorDBResource()}) as stores:
        with stores.postgres.db() as db:
            books = db.book_ids()
        with stores.graph.session() as session:
            for book in books:
                relink_similar(session, stores.postgres, book, config.top_k, config.min_score)


def check_results() -> dict[str, int]:
    """How many (check, book) latest results each status has."""
    import psycopg

    from resources.postgres import embedded_url

    with psycopg.connect(embedded_url("dagster")) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM (SELECT DISTINCT ON (check_name, partition) execution_status AS status "
            "FROM asset_check_executions WHERE partition IS NOT NULL ORDER BY check_name, partition, id DESC) latest "
            "GROUP BY status").fetchall()
    return dict(rows)


def jaccard(one: dict[str, list[str]], other: dict[str, list[str]]) -> float:
    """Of the SIMILAR edges (either direction) in either library, the share in both."""
    def edges(similar: dict[str, list[str]]) -> set[tuple[str, str]]:
        return {tuple(sorted((chunk, linked))) for chunk, links in similar.items() for linked in links}

    a, b = edges(one), edges(other)
    return round(len(a & b) / max(len(a | b), 1), 4)


def digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def write(args: argparse.Namespace, arms: dict, seconds: float) -> None:
    per_book, bulk = arms["per-book"], arms["bulk"]
    a, b = per_book.pop("library"), bulk.pop("library")
    relinked = per_book.pop("relinked")

    def same_similar(mine: dict) -> float:
        return round(sum(mine.get(chunk) == others for chunk, others in b["similar"].items()) / max(len(mine), 1), 4)

    agreement = {
        "chunks": [a["chunks"], b["chunks"]],
        "postgres, qdrant and graph chunk ids equal": all(a[k] == b[k] for k in
                                                          ("postgres_ids_sha256", "qdrant_ids_sha256", "graph_ids_sha256")),
        "chunks with the same SIMILAR neighbours as the per-book path's, as it ingested them": same_similar(a["similar"]),
        "... as it relinked every book once all were in": same_similar(relinked["similar"]),
        "SIMILAR edges (per-book, relinked, bulk)": [sum(map(len, x.values()))
                                                     for x in (a["similar"], relinked["similar"], b["similar"])],
        "per-book relink of every book, seconds": relinked["seconds"],
        "SIMILAR edges in both (Jaccard, bulk against per-book relinked)": jaccard(relinked["similar"], b["similar"]),
        "check results (latest per book)": [a["checks"], b["checks"]],
        "the same HNSW index definition": a["index"] == b["index"],
    }
    chunks = per_book["chunks"]
    stages = sorted(set(per_book["stages_s"]) | set(bulk["stages_s"]))
    result = {
        "books": args.books, "books_per_run": args.books_per_run, "bench_seconds": round(seconds),
        "arms": arms, "agreement": agreement, "index_definition": b["index"],
        "pgvector_top10": {"per-book": a["recall"], "bulk": b["recall"]},
        "ratio_non_encode": round(bulk["non_encode_ms_per_chunk"] / per_book["non_encode_ms_per_chunk"], 3),
        "ratio_wall": round(bulk["wall_s"] / per_book["wall_s"], 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bulk_load.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"`make bench-bulk`: {args.books} synthetic books ({chunks:,} chunks, stand-in encoder) into an empty "
             f"library, {args.books_per_run} books per run, per-book path then bulk load, {os.cpu_count()} cores", "",
             "| | per-book | bulk | bulk / per-book |", "|---|---|---|---|",
             f"| wall | {per_book['wall_s']} s | {bulk['wall_s']} s | {result['ratio_wall']}x |",
             f"| every stage and check but the encoder | {per_book['non_encode_ms_per_chunk']} ms/chunk | "
             f"{bulk['non_encode_ms_per_chunk']} ms/chunk | {result['ratio_non_encode']}x |",
             f"| runs | {per_book['runs']} | {bulk['runs']} | |",
             f"| peak RSS | {per_book['peak_rss']['gib']} GiB ({per_book['peak_rss']['process']}) | "
             f"{bulk['peak_rss']['gib']} GiB ({bulk['peak_rss']['process']}) | |", "",
             "ms per chunk, per step (all runs of the ingest):", "", "| step | per-book | bulk |", "|---|---|---|"]
    lines += [f"| {stage} | {1000 * per_book['stages_s'].get(stage, 0) / chunks:.3f} | "
              f"{1000 * bulk['stages_s'].get(stage, 0) / chunks:.3f} |" for stage in stages if stage != ENCODE_STAGE]
    lines += ["", "Both libraries:", ""] + [f"- {key}: {value}" for key, value in agreement.items()]
    lines += ["", f"pgvector top-10 over the whole library through each library's HNSW index, against exact search "
              f"({QUERIES} queries; p50 / p95 ms, recall@10 by id):", "", "| hnsw.ef_search | per-book | bulk |",
              "|---|---|---|"]
    lines += [f"| {ef} | " + " | ".join(f"{r['p50_ms']} / {r['p95_ms']} ms, {r['recall_at_10']}"
                                         for r in (a["recall"][f"ef {ef}"], b["recall"][f"ef {ef}"])) + " |"
              for ef in EF]
    (RESULTS / "bulk_load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
