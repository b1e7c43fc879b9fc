"""Stage 5: each book's chunks and vectors in Postgres, replaced atomically."""

import time

from dagster import AssetExecutionContext

from corpus_assets import sync
from corpus_assets.assets._per_book import POSTGRES_WORKERS, STORE_RETRY, for_each_book
from corpus_assets.assets.chunks import chunking_inputs
from corpus_assets.assets.embeddings import BookEmbeddings
from corpus_assets.books.book import BookText
from corpus_assets.books.chunking import Chunk
from corpus_assets.partitions import book_asset
from resources.embedding import EmbeddingModel
from resources.postgres import PostgresResource


@book_asset(
    code_version="1",
    kinds={"postgres"},
    group_name="indexes",
    retry_policy=STORE_RETRY,
)
def pgvector_chunks(
    context: AssetExecutionContext,
    config: sync.StoreWriteConfig,
    postgres: PostgresResource,
    embedding_model: EmbeddingModel,
    book_text: dict[str, BookText],
    book_chunks: dict[str, list[Chunk]],
    chunk_embeddings: dict[str, BookEmbeddings],
) -> None:
    """Rows in `books` and `chunks` (text, offsets, vector(384)), searchable through the HNSW index."""

    def write(book_id: str) -> tuple[None, dict]:
        started = time.perf_counter()
        book, chunks, embeddings = book_text[book_id], book_chunks[book_id], chunk_embeddings[book_id]
        embeddings.require_match(chunks)
        chunked_from = chunking_inputs(book, embedding_model)
        version = sync.book_version(book, chunks, embeddings.model)
        with postgres.db() as db:
            copy = sync.PostgresCopy(db)
            unchanged = not config.rewrite and copy.is_current(book_id, len(chunks), chunked_from, version)
            deleted = 0 if unchanged else copy.write(book, chunks, embeddings.vectors, embeddings.model, chunked_from,
                                                     version)
        return None, {
            "rows": len(chunks),
            "unchanged (not rewritten)": unchanged,
            "rows replaced": deleted,
            "table": "chunks",
            "seconds": round(time.perf_counter() - started, 2),
            "first chunk id": chunks[0].id,
        }

    # Longest first, so the last book to finish is a short one.
    by_size = sorted(context.partition_keys, key=lambda book_id: -len(book_chunks[book_id]))
    for_each_book(context, by_size, write, workers=POSTGRES_WORKERS)
