"""`make bench-chunking`: chunking with one tokenization per section against tokenizing every piece the
chunker weighs (issue #33: "chunking that tokenizes once"), side by side on the same books.

Every book of ../shared/corpus (70 books, ten languages; the sample books without it) is chunked both
ways, the two alternated book by book, in this one process. Milliseconds per chunk each way, and
whether the chunks are identical (they must be: the count is exact, `resources/tokenizer.py`).

    .venv/bin/python bench/chunking.py      # ~3 min on 2 cores

Writes bench/results/chunking.json and .md.
"""

import hashlib
import json
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from corpus_assets.assets.chunks import indexed_sections  # noqa: E402
from corpus_assets.books.book import RawBook, clean_book  # noqa: E402
from corpus_assets.books.chunking import chunk_book  # noqa: E402
from resources.embedding import EmbeddingModel, span_counters, token_counter  # noqa: E402
from resources.settings import SAMPLE_LIBRARY_DIR  # noqa: E402

SHARED = PROJECT.parent / "shared" / "corpus"
RESULTS = PROJECT / "bench" / "results"


def main() -> None:
    paths = sorted(SHARED.glob("*/*.txt")) or sorted(SAMPLE_LIBRARY_DIR.glob("*.txt"))
    model = EmbeddingModel()
    count = token_counter(model.model_name)
    ways = {"every piece tokenized": lambda text: count, "one tokenization per section": span_counters(model.model_name)}
    seconds = dict.fromkeys(ways, 0.0)
    chunks, differing = 0, []
    for path in paths:
        data = path.read_bytes()
        book = clean_book(RawBook(path.stem, path.name, data, hashlib.sha256(data).hexdigest()))
        made = {}
        for way, counter_for in ways.items():
            started = time.perf_counter()
            made[way] = chunk_book(path.stem, book.text, indexed_sections(book), counter_for, model.max_chunk_tokens(),
                                   model.max_token_chars())
            seconds[way] += time.perf_counter() - started
        chunks += len(made["every piece tokenized"])
        if len({tuple(m) for m in map(tuple, made.values())}) != 1:
            differing.append(path.name)
        print(f"{path.parent.name}/{path.name}: {len(made['every piece tokenized'])} chunks", flush=True)
    per_chunk = {way: round(1000 * s / chunks, 3) for way, s in seconds.items()}
    result = {"books": len(paths), "chunks": chunks, "ms_per_chunk": per_chunk, "books_with_different_chunks": differing,
              "ratio": round(per_chunk["one tokenization per section"] / per_chunk["every piece tokenized"], 3)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chunking.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"Chunking {len(paths)} books ({chunks:,} chunks), both ways alternated book by book, one process "
             "(bench/chunking.py)", "", "| counting | ms per chunk |", "|---|---|"]
    lines += [f"| {way} | {ms} |" for way, ms in per_chunk.items()]
    lines += ["", f"one tokenization / every piece: {result['ratio']}x; books whose chunks differ: "
              f"{', '.join(differing) or 'none'}"]
    (RESULTS / "chunking.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
