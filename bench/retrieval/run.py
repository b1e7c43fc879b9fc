"""Retrieval quality: does search find the passage a reader means? (`make bench-retrieval`, issue #19)

The evaluation set (bench/retrieval/queries/*.json, written by reading the books, not by the code):
queries mostly paraphrasing a passage of one of the 25 books of ../shared/corpus, some naming its
people or places; each with its book and a phrase copied from the passage. A hit is the chunk that
holds the phrase (or the chunk before or after it: a passage can straddle a boundary).

The books are ingested as a user would (`corpus ingest`, the default model) into their own state
folder (kept between runs: an unchanged library is not ingested again). Every method of every store
answers every query through `retrieval.engine.Searcher`, the code `corpus search` and `corpus serve`
run; also within the query's own book. Reports book hit@1, passage hit@1 / hit@10 and MRR (of the
passage, within the top 10).

    .venv/bin/python bench/retrieval/run.py [--shared ../shared/corpus] [--work bench/.state/retrieval]

Writes bench/results/retrieval.json and .md. With `--service-at STATE`, only the service's load test,
over a state folder built elsewhere (the 1.35M-chunk scale run's): bench/results/retrieval_at_scale.*.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
QUERIES = PROJECT / "bench" / "retrieval" / "queries"
RESULTS = PROJECT / "bench" / "results" / "retrieval"
CORPUS = str(Path(sys.executable).with_name("corpus"))
DEPTH = 10
METHODS = [(store, mode) for store in ("pgvector", "qdrant") for mode in ("dense", "keyword", "hybrid")]
# The service load-tested side by side: result key → (query encoding, threads per query). `service` is the default.
SERVICE_VARIANTS = {"service": ("onnx", 1), "service_torch": ("torch", 1), "service_two_threads": ("onnx", 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=PROJECT.parent / "shared" / "corpus")
    parser.add_argument("--work", type=Path, default=PROJECT / "bench" / ".state" / "retrieval")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of `corpus serve` in the load test")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--service-at", type=Path, help="only load-test `corpus serve` over this existing state "
                        "folder (the scale run's: bench/.state/scale/state); writes retrieval_at_scale.{json,md}")
    args = parser.parse_args()
    queries = [q for path in sorted(QUERIES.glob("*.json")) for q in json.loads(path.read_text())]
    if args.service_at:
        load_at_scale(queries, args.service_at.resolve(), args.clients, args.port)
        return
    files = {path.stem: path for path in [*args.shared.glob("dev/*.txt"), *args.shared.glob("more/*.txt")]}
    missing = sorted({q["book"] for q in queries} - set(files))
    if missing:
        sys.exit(f"bench-retrieval needs the books of {args.shared}: {', '.join(missing)} not found")

    library = args.work / "library"
    library.mkdir(parents=True, exist_ok=True)
    for stem, path in files.items():
        # Hard links (a copy across file systems): a library never follows a symbolic link out of itself.
        copy = library / path.name
        if copy.is_symlink():  # a library made before that rule
            copy.unlink()
        if not copy.exists():
            try:
                os.link(path, copy)
            except OSError:
                shutil.copy2(path, copy)
    os.environ.update({"CORPUS_STATE_DIR": str(args.work / "state"), "CORPUS_LIBRARY_DIR": str(library)})
    started = time.perf_counter()
    subprocess.run([CORPUS, "ingest"], check=True)
    ingest_seconds = round(time.perf_counter() - started, 1)

    # A library ingested by an earlier run is unchanged and costs nothing: the figure is this run's.
    results = {"queries": len(queries), "books": len(files), "ingest_seconds": ingest_seconds,
               **evaluate(queries), **load_variants(queries, args.clients, args.port)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    RESULTS.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


def load_at_scale(queries: list[dict], state: Path, clients: int, port: int) -> None:
    """The load test on a large state folder: the same queries (their books are not in it: the answers are
    not judged, only timed), encoded by the default model whatever model embedded the chunks."""
    from corpus_cli.instance import code_location_resources

    os.environ["CORPUS_STATE_DIR"] = str(state)
    os.environ.pop("CORPUS_EMBEDDING_MODEL", None)
    with code_location_resources("postgres") as stores, stores.postgres.db() as db:
        chunks = int(db.word_stats().chunks)  # Postgres' estimate (ANALYZE)
    results = {"queries": len(queries), "state": str(state), "chunks": chunks,
               **load_variants(queries, clients, port)}
    out = RESULTS.with_name("retrieval_at_scale")
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    text = (f"`corpus serve` over ~{chunks:,} chunks ({state.name} of {state.parent}), {len(queries)} queries of "
            f"bench-retrieval, every one once per method:\n\n" + service_markdown(results))
    out.with_suffix(".md").write_text(text)
    print(text)


def evaluate(queries: list[dict]) -> dict:
    from corpus_cli.instance import code_location_resources
    from retrieval import DEFAULT_MODE
    from retrieval.engine import Searcher

    with code_location_resources("postgres", "qdrant", "graph", "embedding_model") as stores:
        with stores.postgres.db() as db:
            db.vacuum_and_reindex()  # ANALYZE: keyword search's word statistics, as the nightly upkeep keeps them
            targets = {i: passage_chunks(db.book_chunks(q["book"]), q["passage"]) for i, q in enumerate(queries)}
        lost = [queries[i]["passage"] for i, chunks in targets.items() if not chunks]
        if lost:
            sys.exit(f"passages in no chunk (front matter, or a phrase the cleanup changed): {lost}")
        searcher = Searcher(stores.postgres, stores.qdrant, stores.graph, stores.embedding_model)
        methods, within_book, per_query = {}, {}, []
        for store, mode in METHODS:
            name = f"{store}_{mode}"
            ranks, within, books_first = [], [], []
            for i, query in enumerate(queries):
                hits = searcher.search(query["query"], DEPTH, store=store, mode=mode).hits
                ranks.append(rank_of(hits, query["book"], targets[i]))
                books_first.append(bool(hits) and hits[0].book_id == query["book"])
                book_hits = searcher.search(query["query"], DEPTH, book=query["book"], store=store, mode=mode).hits
                within.append(rank_of(book_hits, query["book"], targets[i]))
            methods[name] = {"store": store, "mode": mode, **scores(ranks),
                             "book_hit_at_1": round(sum(books_first) / len(queries), 4)}
            within_book[name] = scores(within)
            per_query.append((name, ranks))
        by_kind = {}
        for kind in sorted({q["kind"] for q in queries}):
            picked = [i for i, q in enumerate(queries) if q["kind"] == kind]
            by_kind[kind] = {name: scores([ranks[i] for i in picked]) | {"queries": len(picked)}
                             for name, ranks in per_query}
    return {"default_method": f"pgvector_{DEFAULT_MODE}", "methods": methods, "within_book": within_book,
            "by_kind": by_kind,
            "misses": {name: [queries[i]["query"] for i, r in enumerate(ranks) if r is None] for name, ranks in per_query}}


def load_variants(queries: list[dict], clients: int, port: int) -> dict:
    """Every SERVICE_VARIANTS entry's load test, side by side in this run."""
    return {name: load(queries, clients, port, encoding, threads)
            for name, (encoding, threads) in SERVICE_VARIANTS.items()}


def load(queries: list[dict], clients: int, port: int, encoding: str, threads: int) -> dict:
    """End-to-end latency of `corpus serve` (HTTP, encoding included) under `clients` concurrent
    clients: every query once per store and mode, top 10, after a warm-up pass of the same. The embedding cache is off
    (CORPUS_QUERY_CACHE_SIZE=0), so every request encodes its query; p50 / p95 per store and mode.
    `encoding` and `threads`: how the service encodes queries (CORPUS_QUERY_ENCODING) and on how
    many threads each (CORPUS_SERVE_THREADS)."""
    import httpx

    from corpus_cli.serve import CACHE_SIZE_ENV, THREADS_ENV
    from resources.settings import QUERY_ENCODING_ENV

    env = {**os.environ, CACHE_SIZE_ENV: "0", THREADS_ENV: str(threads), QUERY_ENCODING_ENV: encoding}
    server = subprocess.Popen([CORPUS, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("corpus serve did not start") from None
                time.sleep(0.5)
        # Warm-up, timed apart: every query once per method brings the stores' pages into memory (a
        # freshly started Postgres or a newly opened Qdrant shard reads its index from disk), as traffic
        # would in a long-lived service; the passes after it are the service's warm latency.
        warm_up = _load_pass(url, queries, 1)
        single = _load_pass(url, queries, 1)
        result = _load_pass(url, queries, clients)
        result["one_client"] = single
        result["warm_up"] = {key: warm_up[key] for key in ("p50_ms", "p95_ms", "errors")} | {
            "by_method": {method: {key: m[key] for key in ("p50_ms", "p95_ms")} for method, m in warm_up["by_method"].items()}}
        result["stats"] = httpx.get(f"{url}/stats", timeout=10).json()
        result["query_encoding"] = httpx.get(f"{url}/health", timeout=10).json()["query_encoding"]
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)


def _load_pass(url: str, queries: list[dict], clients: int) -> dict:
    from retrieval.service import percentiles

    result = {"clients": clients, "requests": 0, "errors": 0, "by_method": {}}
    every = []
    for store, mode in METHODS:
        latencies, errors = _fire(url, [{"q": q["query"], "k": DEPTH, "store": store, "mode": mode} for q in queries],
                                  clients)
        result["by_method"][f"{store}_{mode}"] = percentiles(latencies) | {"errors": errors}
        result["requests"] += len(queries)
        result["errors"] += errors
        every += latencies
    return result | percentiles(every)


def _fire(url: str, requests: list[dict], clients: int) -> tuple[list[float], int]:
    """The requests sent by `clients` threads, each with its own connection; (latencies ms, errors)."""
    import httpx

    latencies, errors, lock = [], [0], threading.Lock()
    pending = list(requests)

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    if not pending:
                        return
                    params = pending.pop()
                started = time.perf_counter()
                try:
                    ok = http.get(f"{url}/search", params=params).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
                    errors[0] += not ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def normalized(text: str) -> str:
    return " ".join(text.split()).lower()


def passage_chunks(chunks, phrase: str) -> set[int]:
    """Ordinals of the chunks holding the phrase, and of their neighbours."""
    wanted = normalized(phrase)
    holding = {c.ordinal for c in chunks if wanted in normalized(c.text)}
    return {o + step for o in holding for step in (-1, 0, 1)}


def rank_of(hits, book: str, ordinals: set[int]) -> int | None:
    return next((rank for rank, h in enumerate(hits, 1) if h.book_id == book and h.ordinal in ordinals), None)


def scores(ranks: list[int | None]) -> dict:
    n = len(ranks) or 1
    return {"passage_hit_at_1": round(sum(r == 1 for r in ranks) / n, 4),
            "passage_hit_at_10": round(sum(r is not None for r in ranks) / n, 4),
            "mrr": round(sum(1 / r for r in ranks if r) / n, 4)}


def markdown(r: dict) -> str:
    lines = [f"Retrieval quality (`make bench-retrieval`): {r['queries']} queries over {r['books']} books of "
             f"../shared/corpus, top {DEPTH}; default method `{r['default_method']}`", "",
             "| method | book hit@1 | passage hit@1 | passage hit@10 | MRR | within the book: hit@1 / hit@10 / MRR |",
             "|---|---|---|---|---|---|"]
    for name, m in r["methods"].items():
        w = r["within_book"][name]
        lines.append(f"| {name} | {m['book_hit_at_1']} | {m['passage_hit_at_1']} | {m['passage_hit_at_10']} | "
                     f"{m['mrr']} | {w['passage_hit_at_1']} / {w['passage_hit_at_10']} / {w['mrr']} |")
    lines += ["", "By kind of query (passage hit@10 / MRR):", "",
              "| method | " + " | ".join(f"{k} ({v[next(iter(v))]['queries']})" for k, v in r["by_kind"].items()) + " |",
              "|---|" + "---|" * len(r["by_kind"])]
    for name in r["methods"]:
        lines.append(f"| {name} | " + " | ".join(f"{v[name]['passage_hit_at_10']} / {v[name]['mrr']}"
                                               for v in r["by_kind"].values()) + " |")
    return "\n".join(lines) + "\n\n" + service_markdown(r)


def service_markdown(r: dict) -> str:
    service, one = r["service"], r["service"]["one_client"]
    lines = [f"`corpus serve` (HTTP end to end, query encoding included, embedding cache off), every query once "
              f"per method: one client {one['requests']} requests, p50 {one['p50_ms']} / p95 {one['p95_ms']} ms; "
              f"{service['clients']} concurrent clients {service['requests']} requests, {service['errors']} errors, "
              f"p50 {service['p50_ms']} / p95 {service['p95_ms']} ms.", "",
              f"| method | warm-up pass, one client p50 / p95 ms | one client p50 / p95 ms | "
              f"{service['clients']} clients p50 / p95 ms | errors |", "|---|---|---|---|---|"]
    for name, m in service["by_method"].items():
        o, w = one["by_method"][name], service["warm_up"]["by_method"][name]
        lines.append(f"| {name} | {w['p50_ms']} / {w['p95_ms']} | {o['p50_ms']} / {o['p95_ms']} | "
                     f"{m['p50_ms']} / {m['p95_ms']} | {m['errors'] + o['errors']} |")
    lines += ["", "How the service encodes queries, side by side in this run (all methods, p50 / p95 ms):", "",
              f"| query encoding | threads per query | one client | {service['clients']} clients |", "|---|---|---|---|"]
    for name, (encoding, threads) in SERVICE_VARIANTS.items():
        v = r[name]
        lines.append(f"| {v['query_encoding']}{' (default)' if name == 'service' else ''} | {threads} | "
                     f"{v['one_client']['p50_ms']} / {v['one_client']['p95_ms']} | {v['p50_ms']} / {v['p95_ms']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
