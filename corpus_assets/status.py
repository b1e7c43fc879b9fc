"""What is stored: books, chunks and index health, read from Postgres."""

import os
from dataclasses import dataclass

from resources.postgres import PostgresResource
from resources.settings import DATABASE_URL_ENV


@dataclass(frozen=True)
class BookStats:
    id: str
    title: str
    author: str | None
    chapters: int
    chunks: int
    tokens: int


@dataclass(frozen=True)
class CorpusSummary:
    books: list[BookStats]
    chunks: int
    hnsw_index_valid: bool


def corpus_summary(postgres: PostgresResource | None = None) -> CorpusSummary:
    postgres = postgres or PostgresResource(database_url=os.environ.get(DATABASE_URL_ENV))
    with postgres.connect() as conn:
        books = [
            BookStats(*row)
            for row in conn.execute(
                """
                SELECT b.id, b.title, b.author, b.chapter_count, count(c.id), coalesce(sum(c.token_count), 0)
                FROM books b LEFT JOIN chunks c ON c.book_id = b.id
                GROUP BY b.id ORDER BY b.id
                """
            )
        ]
        valid = conn.execute(
            """
            SELECT coalesce(bool_and(i.indisvalid), false)
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE c.relname = 'chunks_embedding_hnsw_idx'
            """
        ).fetchone()[0]
    return CorpusSummary(books=books, chunks=sum(b.chunks for b in books), hnsw_index_valid=valid)
