"""Stage 5: each book's chunks and vectors in Postgres, replaced atomically."""

import time

from dagster import AssetExecutionContext

from corpus_assets import sync
from corpus_assets.assets._per_book import POSTGRES_WORKERS, STORE_RETRY, for_each_book
from corpus_assets.assets.chunks import chunking_inputs
from corpus_assets.assets.embeddings import BookEmbeddings
from corpus_assets.assets.text import BookText
from corpus_assets.books.chunking import Chunk
from corpus_assets.books.errors import BookError
from corpus_assets.partitions import book_asset
from resources.embedding import EmbeddingModel
from resources.postgres import PostgresResource
from resources.postgres.store import BookRow, CorpusDB


def book_row(book: BookText) -> BookRow:
    return BookRow(id=book.book_id, title=book.title, author=book.author, language=book.language,
                   source_file=book.source_file, content_sha256=book.content_sha256, bytes=book.bytes,
                   encoding=book.encoding, sections=book.sections, subtitle=book.subtitle,
                   structure_doubts=list(book.doubts))


def holds_version(db: CorpusDB, book: BookText, chunks: list[Chunk], model: str, chunked_from: str) -> bool:
    """Whether Postgres already holds exactly this version of the book, all rows present."""
    return (
        db.chunk_count(book.book_id) == len(chunks)
        and db.synced_version(book.book_id, "chunks") == chunked_from
        and db.synced_version(book.book_id, "pgvector") == sync.book_version(book, chunks, model)
    )


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
        with postgres.db() as db:
            unchanged = not config.rewrite and holds_version(db, book, chunks, embeddings.model, chunked_from)
            deleted = 0
            if not unchanged:
                dimension = db.embedding_dimension()
                if embeddings.vectors.shape[1] != dimension:
                    raise BookError(f"model {embeddings.model} gives {embeddings.vectors.shape[1]}-d vectors, "
                                    f"the chunks table stores {dimension}-d")
                # The chunks' inputs are recorded so an unchanged book reuses its stored chunks.
                deleted = db.replace_book_chunks(
                    book_row(book), chunks, embeddings.vectors, embeddings.model,
                    {"chunks": chunked_from, "pgvector": sync.book_version(book, chunks, embeddings.model)},
                )
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
