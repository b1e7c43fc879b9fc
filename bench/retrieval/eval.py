"""Search measured on queries it was never tuned on, over the whole library of real books, at several
library sizes (`make bench-retrieval-eval`, issue #35).

The queries (bench/retrieval/eval/queries.json: 300 over the 70 books of ../shared/corpus, written by
readers who had not seen the code; 100 of them set aside at random as the test split) are searched by
every method of both stores through `retrieval.engine.Searcher`, the code `corpus search` and `corpus
serve` run. A hit is the chunk that holds the query's phrase, or the chunk before or after it.

Library size: each query is searched in the whole library (70 books) and, with the search's own book
filter, in random smaller libraries that hold its book (10 and 35 books, drawn per query with a fixed
seed): the same index, so the trend of every figure with the library's size is visible without a
second ingest (keyword search's word statistics stay the whole library's).

    .venv/bin/python bench/retrieval/eval.py [--split dev|test|all] [--model NAME] [--shared ../shared/corpus]

The dev split is what may be tuned on; `--split test` is to be run once, at the end. Writes
bench/results/retrieval_eval_<split>.{json,md}; the test split's figures also go into
bench/results/retrieval.json (`test_queries`, `test`).
"""

import argparse
import functools
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CORPUS, DEPTH, METHODS, PROJECT, passage_chunks, rank_of, scores  # noqa: E402

QUERIES = PROJECT / "bench" / "retrieval" / "eval" / "queries.json"
RESULTS = PROJECT / "bench" / "results"
SIZES = (10, 35, None)  # books in the library searched (None: all of them)
SEED = 35


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=PROJECT.parent / "shared" / "corpus")
    parser.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    parser.add_argument("--model", help="CORPUS_EMBEDDING_MODEL to ingest and search with (default: the default)")
    parser.add_argument("--work", type=Path, default=PROJECT / "bench" / ".state" / "eval")
    parser.add_argument("--sweep", action="store_true",
                        help="instead of the methods: hybrid's fusion settings side by side (dev split only)")
    args = parser.parse_args()
    if args.sweep and args.split != "dev":
        parser.error("--sweep tunes: on the dev split only")
    queries = [q for q in json.loads(QUERIES.read_text()) if args.split == "all" or q["split"] == args.split]
    files = {p.stem: p for folder in ("dev", "more", "wide") for p in (args.shared / folder).glob("*.txt")}
    missing = sorted({q["book"] for q in queries} - set(files))
    if missing:
        sys.exit(f"the evaluation needs the books of {args.shared}: {', '.join(missing)} not found")

    work = args.work / (args.model.replace("/", "--") if args.model else "default")
    library = work / "library"
    library.mkdir(parents=True, exist_ok=True)
    for path in files.values():
        copy = library / path.name
        if not copy.exists():
            try:
                os.link(path, copy)
            except OSError:
                shutil.copy2(path, copy)
    os.environ.update({"CORPUS_STATE_DIR": str(work / "state"), "CORPUS_LIBRARY_DIR": str(library)})
    if args.model:
        os.environ["CORPUS_EMBEDDING_MODEL"] = args.model
    started = time.perf_counter()
    subprocess.run([CORPUS, "ingest"], check=True)
    ingest_seconds = round(time.perf_counter() - started, 1)

    if args.sweep:
        sweep = {"split": args.split, "model": args.model or "default", **fusion_sweep(queries, sorted(files))}
        out = RESULTS / "retrieval_fusion_sweep"
        out.with_suffix(".json").write_text(json.dumps(sweep, indent=1) + "\n")
        out.with_suffix(".md").write_text(sweep_markdown(sweep))
        print(sweep_markdown(sweep))
        return
    results = {"split": args.split, "queries": len(queries), "books": len(files), "model": args.model or "default",
               "ingest_seconds": ingest_seconds, **evaluate(queries, sorted(files))}
    out = RESULTS / f"retrieval_eval_{args.split}"
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    if args.split == "test":
        whole = json.loads((RESULTS / "retrieval.json").read_text())
        whole["test_queries"] = len(queries)
        whole["test"] = {name: {**m["sizes"]["all"]} for name, m in results["methods"].items()}
        (RESULTS / "retrieval.json").write_text(json.dumps(whole, indent=1) + "\n")
    print(markdown(results))


def evaluate(queries: list[dict], books: list[str]) -> dict:
    from corpus_cli.instance import code_location_resources
    from retrieval.engine import Searcher

    with code_location_resources("postgres", "qdrant", "graph", "embedding_model") as stores:
        with stores.postgres.db() as db:
            db.vacuum_and_reindex()  # ANALYZE: keyword search's word statistics, as the nightly upkeep keeps them
            targets = [passage_chunks(db.book_chunks(q["book"]), q["passage"]) for q in queries]
        lost = [q["id"] for q, t in zip(queries, targets, strict=True) if not t]
        kept = [(q, t) for q, t in zip(queries, targets, strict=True) if t]
        libraries = {size: [_library(q, books, size) for q, _ in kept] for size in SIZES}
        searcher = Searcher(stores.postgres, stores.qdrant, stores.graph, stores.embedding_model)
        methods = {}
        for store, mode in METHODS:
            name = f"{store}_{mode}"
            sized = {}
            for size in SIZES:
                rows = []
                for (query, target), within in zip(kept, libraries[size], strict=True):
                    hits = searcher.search(query["query"], DEPTH, store=store, mode=mode, within=within).hits
                    rows.append((query, rank_of(hits, query["book"], target), bool(hits) and hits[0].book_id == query["book"]))
                sized[str(size or "all")] = _figures(rows)
                if size is None:
                    methods[name] = {"store": store, "mode": mode, "by": _by(rows)}
            methods[name]["sizes"] = sized
    return {"passages_in_no_chunk": lost, "scored": len(kept), "sizes": [s or len(books) for s in SIZES],
            "methods": methods}


# Hybrid's settings tried side by side by `--sweep`, each from the same two lists per query: candidates
# per method, the fusion's constant, the keyword list's weight against the dense one's, and how much
# a passage gains from its book's share of the fused candidates (finding the likely book first).
SWEEP_DEPTHS = (20, 50, 100)
SWEEP_KS = (10, 60)
SWEEP_KEYWORD_WEIGHTS = (0.5, 1.0, 2.0)
SWEEP_BOOK_BOOSTS = (0.0, 0.5, 1.0, 2.0)


def fusion_sweep(queries: list[dict], books: list[str]) -> dict:
    """Passage hit@10 / MRR of hybrid search under each fusion setting, whole library and 10 books."""
    from corpus_cli.instance import code_location_resources
    from retrieval.engine import Searcher
    from retrieval.fusion import reciprocal_rank_fusion

    with code_location_resources("postgres", "qdrant", "graph", "embedding_model") as stores:
        with stores.postgres.db() as db:
            db.vacuum_and_reindex()
            targets = [passage_chunks(db.book_chunks(q["book"]), q["passage"]) for q in queries]
        kept = [(q, t) for q, t in zip(queries, targets, strict=True) if t]
        searcher = Searcher(stores.postgres, stores.qdrant, stores.graph, stores.embedding_model)
        lists = {}
        for store in ("pgvector", "qdrant"):
            for size in (10, None):
                lists[store, size] = [
                    (query, target, *(searcher.search(query["query"], max(SWEEP_DEPTHS), store=store, mode=mode,
                                                      within=_library(query, books, size)).hits
                                      for mode in ("dense", "keyword")))
                    for query, target in kept]
    settings = {}
    for depth in SWEEP_DEPTHS:
        for k in SWEEP_KS:
            for weight in SWEEP_KEYWORD_WEIGHTS:
                for boost in SWEEP_BOOK_BOOSTS:
                    name = f"depth {depth}, k {k}, keyword weight {weight}, book boost {boost}"
                    settings[name] = {}
                    for (store, size), per_query in lists.items():
                        rows = []
                        for query, target, dense, keyword in per_query:
                            by_id = {h.chunk_id: h for h in [*keyword[:depth], *dense[:depth]]}
                            fused = reciprocal_rank_fusion([[h.chunk_id for h in dense[:depth]],
                                                            [h.chunk_id for h in keyword[:depth]]], k, [1.0, weight])
                            mass: dict[str, float] = defaultdict(float)
                            for chunk_id, score in fused:
                                mass[by_id[chunk_id].book_id] += score
                            total = sum(mass.values()) or 1.0
                            ranked = sorted(fused, key=lambda pair: -pair[1] * (1 + boost * mass[by_id[pair[0]].book_id] / total))
                            hits = [by_id[chunk_id] for chunk_id, _ in ranked[:DEPTH]]
                            rows.append((query, rank_of(hits, query["book"], target),
                                         bool(hits) and hits[0].book_id == query["book"]))
                        settings[name][f"{store}, {size or 'all'} books"] = _figures(rows)
    return {"queries": len(kept), "settings": settings}


def sweep_markdown(r: dict) -> str:
    columns = list(next(iter(r["settings"].values())))
    lines = [f"Hybrid's fusion settings side by side (`bench/retrieval/eval.py --sweep`), {r['queries']} dev-split "
             f"queries, passage hit@10 / MRR; the product's setting: depth 50, k 60, weights 1, no book boost.", "",
             "| setting | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, figures in sorted(r["settings"].items(), key=lambda item: -sum(v["mrr"] for v in item[1].values())):
        lines.append(f"| {name} | " + " | ".join(f"{figures[c]['passage_hit_at_10']} / {figures[c]['mrr']}"
                                                for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _library(query: dict, books: list[str], size: int | None) -> list[str] | None:
    """The query's book and `size - 1` others, drawn with a seed of the query's own: the same each run."""
    if size is None:
        return None
    others = [b for b in books if b != query["book"]]
    return [query["book"], *random.Random(f"{SEED}:{query['id']}:{size}").sample(others, size - 1)]


def _figures(rows: list[tuple[dict, int | None, bool]]) -> dict:
    return {**scores([rank for _, rank, _ in rows]),
            "book_hit_at_1": round(sum(first for _, _, first in rows) / max(len(rows), 1), 4), "queries": len(rows)}


def _by(rows: list[tuple[dict, int | None, bool]]) -> dict:
    """The figures by kind of query, and by whether the book is in English."""
    groups: dict[str, list] = defaultdict(list)
    for row in rows:
        query = row[0]
        groups[f"kind:{query['kind']}"].append(row)
        groups["book in English" if _english(query["book"]) else "book not in English"].append(row)
        groups[f"query in {'English' if query['lang'] == 'en' else 'the book language'}"].append(row)
    return {name: _figures(group) for name, group in sorted(groups.items())}


def _english(book: str) -> bool:
    return _wide_languages().get(book, "English") == "English"


@functools.cache
def _wide_languages() -> dict[str, str]:
    """The language of each book of ../shared/corpus/wide (the other folders hold English books only),
    read once."""
    manifest = PROJECT.parent / "shared" / "corpus" / "wide" / "MANIFEST.tsv"
    return {line.split("\t")[0].removesuffix(".txt"): line.split("\t")[4]
            for line in manifest.read_text().splitlines()[1:]} if manifest.exists() else {}


def markdown(r: dict) -> str:
    sizes = [str(s) for s in r["sizes"][:-1]] + ["all"]
    lines = [f"Search on unseen queries (`bench/retrieval/eval.py --split {r['split']}`): {r['scored']} queries "
             f"({len(r['passages_in_no_chunk'])} whose passage is in no chunk left out) over {r['books']} books, "
             f"model {r['model']}, top {DEPTH}.", "",
             "| method | " + " | ".join(f"{s} books: hit@10 / MRR" for s in r["sizes"]) + " | book hit@1 (all) | hit@1 (all) |",
             "|---|" + "---|" * (len(sizes) + 2)]
    for name, m in r["methods"].items():
        cells = [f"{m['sizes'][s]['passage_hit_at_10']} / {m['sizes'][s]['mrr']}" for s in sizes]
        whole = m["sizes"]["all"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {whole['book_hit_at_1']} | {whole['passage_hit_at_1']} |")
    groups = next(iter(r["methods"].values()))["by"]
    lines += ["", "By kind of query and language, whole library (passage hit@10 / MRR, queries):", "",
              "| method | " + " | ".join(f"{g} ({v['queries']})" for g, v in groups.items()) + " |",
              "|---|" + "---|" * len(groups)]
    for name, m in r["methods"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v['passage_hit_at_10']} / {v['mrr']}" for v in m["by"].values()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
