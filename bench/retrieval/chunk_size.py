"""Chunk size for retrieval (#19): do smaller chunks, or searching sub-chunk windows, find passages better?

all-MiniLM-L6-v2 was trained on inputs of up to 128 tokens; the pipeline's chunks are up to 254. On
bench-retrieval's evaluation set and books (its state folder: run `make bench-retrieval` first), the
books' cleaned text is chunked again by the project's chunker, and three ways of searching compared:

- `chunks_254`: the pipeline's chunks (their vectors read from Postgres, the ones search uses);
- `chunks_128`: chunks of up to 128 tokens (+ the 2 special tokens), embedded by the same model;
- `windows_128`: the pipeline's chunks returned, each scored by the best of the 128-token chunks
  whose middle lies in it (they are cut from the same sections, so a window may reach past its chunk).

Each with dense (exact cosine over every vector: the method, not the index), keyword (BM25 over the
units' words, the same plain tokenizer for every variant) and hybrid (both top 50, reciprocal rank
fusion as `retrieval.fusion`). A hit is judged in characters, the same for every variant: a result
whose middle lies within the passage's region (each pipeline chunk holding the passage's phrase with
its two neighbours: bench-retrieval's rule), and, stricter, a result whose text holds the phrase
(harder for short units: a phrase cut by their boundary is in neither).

    .venv/bin/python bench/retrieval/chunk_size.py     (make bench-chunk-size)

128-token vectors are cached in bench/.state/chunk_size; the first run embeds ~40k chunks (~30 min on
2 cores). Writes bench/results/chunk_size.json and .md.
"""

import hashlib
import json
import math
import os
import pickle
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from run import DEPTH, PROJECT, QUERIES, normalized, scores  # bench-retrieval's evaluation set and scores

STATE = PROJECT / "bench" / ".state" / "retrieval" / "state"
CACHE = PROJECT / "bench" / ".state" / "chunk_size"
RESULTS = PROJECT / "bench" / "results" / "chunk_size"
SMALL = 128
FUSION_DEPTH = 50
WORD = re.compile(r"\w+")


def main() -> None:
    if not (STATE / "artifacts" / "book_text").is_dir():
        sys.exit("bench-chunk-size reads the books of bench-retrieval: run `make bench-retrieval` first")
    os.environ["CORPUS_STATE_DIR"] = str(STATE)
    from corpus_assets.assets.chunks import indexed_sections
    from corpus_assets.books.chunking import chunk_book
    from corpus_cli.instance import code_location_resources
    from resources.embedding import token_counter

    queries = [q for path in sorted(QUERIES.glob("*.json")) for q in json.loads(path.read_text())]
    texts = {path.stem: pickle.loads(path.read_bytes()) for path in (STATE / "artifacts" / "book_text").glob("*.pickle")}
    with code_location_resources("postgres", "embedding_model") as stores:
        model = stores.embedding_model
        with stores.postgres.db() as db:
            stored = {book_id: db.stored_vectors(book_id) for book_id in sorted(texts)}
        models = {m for book_id in texts for m in stored[book_id].models}
        if models != {model.model_name}:
            sys.exit(f"the stored vectors were made by {models}, not {model.model_name}: not comparable")
        large = [c for book_id in sorted(texts) for c in stored[book_id].chunks]
        large_vectors = np.vstack([stored[book_id].vectors for book_id in sorted(texts)])
        count = token_counter(model.model_name)
        started = time.perf_counter()
        small = [c for book_id, book in sorted(texts.items())
                 for c in chunk_book(book_id, book.text, indexed_sections(book), count, SMALL, model.max_token_chars())]
        chunking_s = time.perf_counter() - started
        small_vectors = cached_vectors(model, small)
        query_vectors = model.encode([q["query"] for q in queries])  # as search encodes them (the same vectors)

    regions = [passage_region(large, q) for q in queries]
    lost = [q["passage"] for q, region in zip(queries, regions, strict=True) if not region]
    if lost:
        sys.exit(f"passages in no chunk: {lost}")
    parents = windows_of(large, small)
    variants = {
        "chunks_254": (large, large_vectors, None),
        "chunks_128": (small, small_vectors, None),
        "windows_128": (large, small_vectors, parents),
    }
    results = {"queries": len(queries), "books": len(texts), "chunks_254": len(large), "chunks_128": len(small),
               "tokens_per_chunk_mean": {"chunks_254": round(np.mean([c.token_count for c in large]), 1),
                                         "chunks_128": round(np.mean([c.token_count for c in small]), 1)},
               "chunking_128_seconds": round(chunking_s, 1), "methods": {}}
    keyword_small, keyword_large = Bm25(small), Bm25(large)
    for variant, (units, vectors, parent_of) in variants.items():
        keyword = keyword_large if variant != "chunks_128" else keyword_small
        for mode in ("dense", "keyword", "hybrid"):
            near, holds = [], []
            for i, query in enumerate(queries):
                ranking = search(mode, query_vectors[i], query["query"], vectors, parent_of, keyword, len(units))
                hits = [units[j] for j in ranking[:DEPTH]]
                near.append(first_rank(hits, lambda c: c.book_id == query["book"] and any(
                    start <= (c.char_start + c.char_end) / 2 <= end for start, end in regions[i])))
                holds.append(first_rank(hits, lambda c: c.book_id == query["book"] and
                                        normalized(query["passage"]) in normalized(c.text)))
            if variant == "windows_128" and mode == "keyword":
                continue  # keyword search over windows is keyword search over their chunks: chunks_254's
            results["methods"][f"{variant}_{mode}"] = {"variant": variant, "mode": mode, **scores(near),
                                                       "holds_phrase": scores(holds)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    RESULTS.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


def cached_vectors(model, chunks) -> np.ndarray:
    """The chunks' vectors, embedded by the model once and kept by chunk id."""
    CACHE.mkdir(parents=True, exist_ok=True)
    name = f"{SMALL}_{hashlib.sha256(model.model_name.encode()).hexdigest()[:8]}"
    ids_path, vectors_path = CACHE / f"ids_{name}.json", CACHE / f"vectors_{name}.npy"
    ids = [c.id for c in chunks]
    if ids_path.exists() and json.loads(ids_path.read_text()) == ids:
        return np.load(vectors_path)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    vectors = model.encode([c.text for c in chunks], log=logging.getLogger("chunk_size"))
    np.save(vectors_path, vectors)
    ids_path.write_text(json.dumps(ids))
    return vectors


def passage_region(large, query) -> list[tuple[int, int]]:
    """Characters of each pipeline chunk holding the phrase with its neighbours."""
    book = [c for c in large if c.book_id == query["book"]]
    return [(book[max(0, k - 1)].char_start, book[min(len(book) - 1, k + 1)].char_end)
            for k, c in enumerate(book) if normalized(query["passage"]) in normalized(c.text)]


def windows_of(large, small) -> np.ndarray:
    """For each small chunk, the pipeline chunk of the same book holding its middle."""
    parent = np.empty(len(small), dtype=np.int64)
    by_book: dict[str, list[int]] = {}
    for k, c in enumerate(large):
        by_book.setdefault(c.book_id, []).append(k)
    for j, s in enumerate(small):
        middle = (s.char_start + s.char_end) / 2
        candidates = by_book[s.book_id]
        parent[j] = min(candidates, key=lambda k: (not large[k].char_start <= middle <= large[k].char_end,
                                                    abs((large[k].char_start + large[k].char_end) / 2 - middle)))
    return parent


def search(mode: str, query_vector, query: str, vectors, parent_of, keyword: "Bm25", units: int) -> list[int]:
    """Unit indexes, best first."""
    from retrieval.fusion import reciprocal_rank_fusion

    depth = DEPTH if mode != "hybrid" else FUSION_DEPTH
    dense = keyword_list = []
    if mode != "keyword":
        similarity = vectors @ query_vector
        if parent_of is not None:  # a chunk scores as its best window
            best = np.full(units, -np.inf, dtype=np.float32)
            np.maximum.at(best, parent_of, similarity)
            similarity = best
        dense = list(np.argsort(-similarity)[:depth])
    if mode != "dense":
        keyword_list = keyword.top(query, depth)
    if mode == "dense":
        return dense
    if mode == "keyword":
        return keyword_list
    return [item for item, _ in reciprocal_rank_fusion([dense, keyword_list])]


class Bm25:
    """Plain BM25 (k1 1.2, b 0.75) over lower-cased words; the same for every variant."""

    def __init__(self, units):
        self.postings: dict[str, list[tuple[int, int]]] = {}
        self.lengths = np.zeros(len(units))
        for k, unit in enumerate(units):
            words = Counter(WORD.findall(unit.text.lower()))
            self.lengths[k] = sum(words.values())
            for word, n in words.items():
                self.postings.setdefault(word, []).append((k, n))
        self.mean = self.lengths.mean()

    def top(self, query: str, depth: int) -> list[int]:
        score = np.zeros(len(self.lengths))
        for word in set(WORD.findall(query.lower())):
            postings = self.postings.get(word, [])
            if not postings:
                continue
            idf = math.log(1 + (len(self.lengths) - len(postings) + 0.5) / (len(postings) + 0.5))
            for k, n in postings:
                score[k] += idf * n * 2.2 / (n + 1.2 * (0.25 + 0.75 * self.lengths[k] / self.mean))
        ranked = np.argsort(-score)[:depth]
        return [int(k) for k in ranked if score[k] > 0]


def first_rank(hits, is_hit) -> int | None:
    return next((rank for rank, c in enumerate(hits, 1) if is_hit(c)), None)


def markdown(r: dict) -> str:
    lines = [f"Chunk size for retrieval (`make bench-chunk-size`): {r['queries']} queries of bench-retrieval over "
             f"{r['books']} books; {r['chunks_254']} pipeline chunks (mean {r['tokens_per_chunk_mean']['chunks_254']} "
             f"tokens) against {r['chunks_128']} chunks of up to {SMALL} tokens (mean "
             f"{r['tokens_per_chunk_mean']['chunks_128']}); exact dense search, plain BM25, top {DEPTH}. Ten "
             f"128-token results show about half the text of ten pipeline chunks.", "",
             "| variant | mode | passage hit@1 | passage hit@10 | MRR | result holds the phrase: hit@10 / MRR |",
             "|---|---|---|---|---|---|"]
    for m in r["methods"].values():
        lines.append(f"| {m['variant']} | {m['mode']} | {m['passage_hit_at_1']} | {m['passage_hit_at_10']} | {m['mrr']} | "
                     f"{m['holds_phrase']['passage_hit_at_10']} / {m['holds_phrase']['mrr']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
