"""Stage 5: each book's chunks and vectors in Postgres, replaced atomically."""

import time

from dagster import AssetExecutionContext
from psycopg import Connection
from psycopg.types.json import Jsonb

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

_UPSERT_BOOK = """
INSERT INTO books (id, title, author, language, source_file, content_sha256, bytes, encoding,
                   chapter_count, chunk_count, chapters)
VALUES (%(id)s, %(title)s, %(author)s, %(language)s, %(source_file)s, %(content_sha256)s, %(bytes)s,
        %(encoding)s, %(chapter_count)s, %(chunk_count)s, %(chapters)s)
ON CONFLICT (id) DO UPDATE SET
    title = EXCLUDED.title, author = EXCLUDED.author, language = EXCLUDED.language,
    source_file = EXCLUDED.source_file, content_sha256 = EXCLUDED.content_sha256,
    bytes = EXCLUDED.bytes, encoding = EXCLUDED.encoding, chapter_count = EXCLUDED.chapter_count,
    chunk_count = EXCLUDED.chunk_count, chapters = EXCLUDED.chapters, updated_at = now()
"""
_COPY_CHUNKS = """
COPY chunks (id, book_id, ordinal, chapter_index, chapter, text, token_count, char_start, char_end,
             content_sha256, embedding, model) FROM STDIN WITH (FORMAT BINARY)
"""
# char(64) has the same binary wire format as text.
_CHUNK_TYPES = ["text", "text", "int4", "int4", "text", "text", "int4", "int4", "int4", "text", "vector", "text"]


def replace_book(
    conn: Connection, book: BookText, chunks: list[Chunk], embeddings: BookEmbeddings, chunked_from: str
) -> int:
    """Replace the book's row and all its chunks in one transaction; return rows deleted.

    Readers see the old chunks or the new ones, never a mix; a second writer of the same book
    waits on the book's advisory lock. `chunked_from` fingerprints the chunks' inputs, recorded so
    an unchanged book reuses its stored chunks.
    """
    embeddings.require_match(chunks)
    dimension = _embedding_dimension(conn)
    if embeddings.vectors.shape[1] != dimension:
        raise BookError(
            f"model {embeddings.model} gives {embeddings.vectors.shape[1]}-d vectors, "
            f"the chunks table stores {dimension}-d"
        )
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (book.book_id,))
        conn.execute(
            _UPSERT_BOOK,
            {
                "id": book.book_id,
                "title": book.title,
                "author": book.author,
                "language": book.language,
                "source_file": book.source_file,
                "content_sha256": book.content_sha256,
                "bytes": book.bytes,
                "encoding": book.encoding,
                "chapter_count": len(book.sections),
                "chunk_count": len(chunks),
                "chapters": Jsonb([[s.index, s.title, s.start, s.end] for s in book.sections]),
            },
        )
        deleted = conn.execute("DELETE FROM chunks WHERE book_id = %s", (book.book_id,)).rowcount
        with conn.cursor().copy(_COPY_CHUNKS) as copy:
            copy.set_types(_CHUNK_TYPES)
            for chunk, vector in zip(chunks, embeddings.vectors, strict=True):
                copy.write_row(
                    (chunk.id, chunk.book_id, chunk.ordinal, chunk.chapter_index, chunk.chapter,
                     chunk.text, chunk.token_count, chunk.char_start, chunk.char_end,
                     chunk.content_sha256, vector, embeddings.model)
                )
        sync.record(conn, book.book_id, "chunks", chunked_from)
        sync.record(conn, book.book_id, "pgvector", sync.book_version(book, chunks, embeddings.model))
    return deleted


def holds_version(conn: Connection, book: BookText, chunks: list[Chunk], model: str, chunked_from: str) -> bool:
    """Whether Postgres already holds exactly this version of the book, all rows present."""
    rows = conn.execute("SELECT count(*) FROM chunks WHERE book_id = %s", (book.book_id,)).fetchone()[0]
    return (
        rows == len(chunks)
        and sync.recorded(conn, book.book_id, "chunks") == chunked_from
        and sync.recorded(conn, book.book_id, "pgvector") == sync.book_version(book, chunks, model)
    )


def _embedding_dimension(conn: Connection) -> int:
    row = conn.execute(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
    ).fetchone()
    return int(row[0])


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

    def write(book_id: str) -> None:
        started = time.perf_counter()
        book, chunks, embeddings = book_text[book_id], book_chunks[book_id], chunk_embeddings[book_id]
        chunked_from = chunking_inputs(book, embedding_model)
        with postgres.connect() as conn:
            unchanged = not config.rewrite and holds_version(conn, book, chunks, embeddings.model, chunked_from)
            deleted = 0 if unchanged else replace_book(conn, book, chunks, embeddings, chunked_from)
        context.add_asset_metadata(
            {
                "rows": len(chunks),
                "unchanged (not rewritten)": unchanged,
                "rows replaced": deleted,
                "table": "chunks",
                "seconds": round(time.perf_counter() - started, 2),
                "first chunk id": chunks[0].id,
            },
            partition_key=book_id,
        )

    # Longest first, so the last book to finish is a short one.
    by_size = sorted(context.partition_keys, key=lambda book_id: -len(book_chunks[book_id]))
    for_each_book(context, by_size, write, workers=POSTGRES_WORKERS)
