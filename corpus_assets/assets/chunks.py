"""Stage 3: token-bounded, overlapping chunks that never cross a chapter boundary.

A book whose text, chapters and tokenizer are unchanged since its chunks were stored in Postgres
reuses them instead of chunking again (tokenizing is most of this stage's cost).
"""

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from dagster import AssetExecutionContext, MetadataValue

from corpus_assets.assets._per_book import STORE_RETRY, for_each_book
from corpus_assets.books.safe_text import md_cell
from corpus_assets.books.book import BookText
from corpus_assets.books.chunking import CHUNKER_VERSION, OVERLAP, Chunk, chunk_book_timed
from corpus_assets.books.errors import BookError
from corpus_assets.books.structure import BODY, Section
from corpus_assets.partitions import book_asset
from corpus_assets.sync import CHUNKS, fingerprint
from resources import settings
from resources.embedding import EmbeddingModel, span_counters
from resources.postgres import PostgresResource
from resources.postgres.store import CorpusDB


def indexed_sections(book: BookText) -> list[Section]:
    """The sections whose text is chunked and searched: the body, and front and back matter
    (contents, transcriber's notes, indexes...) only with CORPUS_INDEX_MATTER=1."""
    include_matter = settings.current().index_matter
    return [s for s in book.sections if s.kind == BODY or include_matter]


def chunking_inputs(book: BookText, embedding_model: EmbeddingModel) -> str:
    """The fingerprint of everything a book's chunks are computed from."""
    return fingerprint(
        CHUNKER_VERSION, OVERLAP, embedding_model.model_name, embedding_model.max_chunk_tokens(),
        book.text, [(s.index, s.title, s.start, s.end, s.kind) for s in indexed_sections(book)],
    )


def stored_chunks(db: CorpusDB, book_id: str, inputs: str) -> list[Chunk] | None:
    """The book's chunks as Postgres holds them, if they were made from these exact inputs and all are there."""
    if db.synced_version(book_id, CHUNKS) != inputs:
        return None
    expected = db.chunk_counts([book_id]).get(book_id)
    chunks = db.book_chunks(book_id)
    return chunks if expected and chunks and len(chunks) == expected else None


@book_asset(
    code_version="2",  # 2: front and back matter are not chunked
    kinds={"python"},
    group_name="books",
    retry_policy=STORE_RETRY,
)
def book_chunks(
    context: AssetExecutionContext,
    book_text: dict[str, BookText],
    embedding_model: EmbeddingModel,
    postgres: PostgresResource,
) -> dict[str, list[Chunk]]:
    """Chunks sized by the embedding model's own tokenizer, with character offsets into the text."""
    max_tokens = embedding_model.max_chunk_tokens()
    counting = (span_counters(embedding_model.model_name), max_tokens, embedding_model.max_token_chars())
    with postgres.db() as db:
        stored = {book_id: stored_chunks(db, book_id, chunking_inputs(book, embedding_model))
                  for book_id, book in book_text.items()}
    # Longest first, so the last book to finish is a short one.
    to_chunk = sorted((book_id for book_id, chunks in stored.items() if chunks is None),
                      key=lambda book_id: -len(book_text[book_id].text))
    workers = min(len(to_chunk), os.cpu_count() or 1)
    # Tokenizing holds the GIL, so books are chunked side by side in processes (spawned: the run
    # process has threads), one per core; a single book is chunked in place.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    pending = {book_id: pool.submit(chunk_book_timed, book_id, book_text[book_id].text,
                                    indexed_sections(book_text[book_id]), *counting)
               for book_id in to_chunk} if pool else {}

    def chunk(book_id: str) -> tuple[list[Chunk], dict]:
        reused = stored[book_id] is not None
        if reused:
            chunks, seconds = stored[book_id], 0.0
        elif book_id in pending:
            chunks, seconds = pending[book_id].result()
        else:
            book = book_text[book_id]
            chunks, seconds = chunk_book_timed(book_id, book.text, indexed_sections(book), *counting)
        if not chunks:
            raise BookError("the cleaned text has no words to chunk")
        tokens = [c.token_count for c in chunks]
        preview = "\n".join(
            f"| {c.ordinal} | {md_cell(c.chapter, 30)} | {c.token_count} | {md_cell(c.text, 80)} |"
            for c in chunks[:5]
        )
        return chunks, {
            "chunks": len(chunks),
            "reused from postgres": reused,
            "tokens": sum(tokens),
            "tokens per chunk (mean)": round(sum(tokens) / len(tokens), 1),
            "tokens per chunk (max)": max(tokens),
            "token budget": max_tokens,
            "overlap": OVERLAP,
            "chunking seconds": round(seconds, 2),
            "first chunks": MetadataValue.md(
                f"| # | chapter | tokens | text |\n|---|---|---|---|\n{preview}"
            ),
            "chunk lengths": MetadataValue.md(length_histogram(tokens, max_tokens)),
        }

    try:
        return for_each_book(context, context.partition_keys, chunk)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


def length_histogram(tokens: list[int], max_tokens: int, bins: int = 8) -> str:
    """A markdown histogram of chunk lengths in tokens: how full the chunks are."""
    width = -(-max_tokens // bins)
    counts = [0] * bins
    for count in tokens:
        counts[min(count // width, bins - 1)] += 1
    peak = max(counts)
    rows = "\n".join(
        f"| {i * width}–{min((i + 1) * width - 1, max_tokens)} | {n} | {'█' * round(20 * n / peak)} |"
        for i, n in enumerate(counts)
    )
    return f"| tokens | chunks | |\n|---|---|---|\n{rows}"
