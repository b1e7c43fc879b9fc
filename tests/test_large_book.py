"""A 50 MB book goes through reading, cleaning, chunking and embedding within bounded memory.

The book is one sample book repeated to 50 MB, so its chunk texts repeat and only the distinct ones
are embedded (a minute, not an hour of encoding); what is measured is the memory of handling 50 MB
of text, ~90k chunks and their vectors in one run. The stages run in a process of their own, whose
peak RSS is the measurement. The store stages and their times at this size: bench/large_book.py.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from dagster import DagsterInstance

from corpus_assets.assets.raw import raw_books
from corpus_assets.books.decode import decode_book
from corpus_assets.books.gutenberg import split_gutenberg
from corpus_cli.runs import failure_reason
from resources.library import BookLibrary
from resources.settings import SAMPLE_LIBRARY_DIR

LARGE_BOOK_MB = 50
PEAK_RSS_LIMIT_MB = 2048  # the model and 50 MB of book must fit in the 2 GiB the benchmark allows War and Peace

# Reads, cleans, chunks and embeds one book in this process; prints the outcome and the peak RSS.
_RUN = textwrap.dedent("""
    import json, resource, sys
    from dagster import DagsterInstance, materialize
    from corpus_assets.assets.chunks import book_chunks
    from corpus_assets.assets.embeddings import chunk_embeddings
    from corpus_assets.assets.raw import raw_books
    from corpus_assets.assets.text import book_text
    from corpus_assets.registration import register_books
    from corpus_cli.runs import failure_reason
    from resources.artifacts import BookArtifactIOManager
    from resources.embedding import EmbeddingModel
    from resources.library import BookLibrary
    from resources.postgres import PostgresResource

    library, artifacts, database_url, book_id = sys.argv[1:]
    instance = DagsterInstance.ephemeral()
    resources = {"library": BookLibrary(folder=library), "postgres": PostgresResource(database_url=database_url),
                 "embedding_model": EmbeddingModel(), "io_manager": BookArtifactIOManager(base_dir=artifacts)}
    register_books(instance, resources["library"])
    result = materialize([raw_books, book_text, book_chunks, chunk_embeddings], instance=instance,
                         resources=resources, partition_key=book_id, raise_on_error=False)
    failure = next((failure_reason(e) for e in result.all_events if e.is_step_failure), None)
    metadata = {node: {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()
                       if isinstance(v.value, (int, float, str, bool))}
                for node in ("raw_books", "book_chunks", "chunk_embeddings")} if result.success else {}
    print(json.dumps({"success": result.success, "failure": failure, "metadata": metadata,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def write_large_book(path, megabytes: int) -> int:
    """A plain-text book of at least `megabytes` MB: Alice's text, chapters and all, over and over."""
    raw = (SAMPLE_LIBRARY_DIR / "11_alices-adventures-in-wonderland.txt").read_bytes()
    body = split_gutenberg(decode_book(raw).text).body.strip() + "\n\n"
    copies = -(-megabytes * 2**20 // len(body.encode()))
    with path.open("w", encoding="utf-8") as file:
        for _ in range(copies):
            file.write(body)
    return copies


@pytest.mark.slow  # benchmark-like (~90 s): `make test-slow`; `make bench-large` measures the same book
@pytest.mark.timeout(600)
def test_a_50_mb_book_is_read_cleaned_chunked_and_embedded_within_bounded_memory(tmp_path, database_url):
    library = tmp_path / "library"
    library.mkdir()
    copies = write_large_book(library / "alice-many-times.txt", LARGE_BOOK_MB)
    size = (library / "alice-many-times.txt").stat().st_size
    assert size >= LARGE_BOOK_MB * 2**20

    run = subprocess.run(
        [sys.executable, "-c", _RUN, str(library), str(tmp_path / "artifacts"), database_url, "alice-many-times"],
        capture_output=True, text=True, timeout=540, env={**os.environ, "CORPUS_STATE_DIR": str(tmp_path / "state")},
    )

    assert run.returncode == 0, run.stderr[-3000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["success"], outcome["failure"]
    metadata = outcome["metadata"]
    assert metadata["raw_books"]["bytes"] == size
    chunks = metadata["book_chunks"]["chunks"]
    assert chunks > 50 * copies  # every copy of the book is chunked, ~60 chunks a copy
    assert metadata["chunk_embeddings"]["chunks in run"] == chunks
    assert 0 < metadata["chunk_embeddings"]["chunks embedded in run"] < chunks / 50  # repeated texts once
    assert outcome["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, outcome["peak_rss_mb"]
    print(f"{size / 2**20:.1f} MB, {chunks} chunks: peak RSS {outcome['peak_rss_mb']:.0f} MB")


def test_a_book_over_the_size_limit_fails_by_name_before_it_is_read(book_resources, materialize_books, library):
    (library / "huge.txt").write_bytes(b"word " * (2**20 // 5 * 3))  # 3 MB, over a 2 MB limit
    resources = {**book_resources, "library": BookLibrary(folder=str(library), max_book_mb=2)}

    result = materialize_books([raw_books], DagsterInstance.ephemeral(), resources, ["1952_the-yellow-wallpaper", "huge"])

    assert not result.success
    reason = failure_reason(next(e for e in result.all_events if e.is_step_failure))
    assert "1 of 2 books failed" in reason
    assert "huge: the file huge.txt is 3.0 MB, over the 2 MB limit for one book" in reason
    assert "CORPUS_MAX_BOOK_MB" in reason
