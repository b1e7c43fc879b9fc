"""Semantic search over the pgvector index or the Qdrant collection."""

from dataclasses import dataclass

from resources.embedding import EmbeddingModel
from resources.postgres import PostgresResource
from resources.qdrant import QdrantResource, book_filter

# Candidates the HNSW search keeps per query; 40 (pgvector's default) loses recall at 100k+ rows.
EF_SEARCH = 100

_SEARCH = """
WITH hits AS (
    SELECT id, book_id, ordinal, chapter, text, embedding <=> %(query)s AS distance
    FROM chunks
    WHERE %(book_id)s::text IS NULL OR book_id = %(book_id)s
    ORDER BY embedding <=> %(query)s
    LIMIT %(limit)s
)
SELECT hits.id, hits.book_id, books.title, hits.chapter, hits.ordinal, hits.text, 1 - hits.distance
FROM hits JOIN books ON books.id = hits.book_id
ORDER BY hits.distance
"""


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str
    book_id: str
    title: str
    chapter: str
    ordinal: int
    text: str
    score: float  # cosine similarity


def search_chunks(
    postgres: PostgresResource, model: EmbeddingModel, query: str, limit: int = 5, book_id: str | None = None
) -> list[SearchHit]:
    """The `limit` chunks closest in meaning to `query` in pgvector, optionally within one book."""
    vector = model.encode([query])[0]
    with postgres.connect() as conn, conn.transaction():
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(EF_SEARCH),))
        # A filtered HNSW scan stops at ef_search candidates and can return too few rows unless
        # it may keep scanning.
        conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        rows = conn.execute(_SEARCH, {"query": vector, "book_id": book_id, "limit": limit}).fetchall()
    return [SearchHit(*row) for row in rows]


def search_qdrant(
    qdrant: QdrantResource,
    postgres: PostgresResource,
    model: EmbeddingModel,
    query: str,
    limit: int = 5,
    book_id: str | None = None,
) -> list[SearchHit]:
    """The same search answered by Qdrant; book titles come from Postgres."""
    vector = model.encode([query])[0]
    with qdrant.client() as client:
        points = client.query_points(
            qdrant.collection, query=vector.tolist(), query_filter=book_filter(book_id) if book_id else None,
            limit=limit, with_payload=True,
        ).points
    with postgres.connect() as conn:
        titles = dict(conn.execute("SELECT id, title FROM books WHERE id = ANY(%s)", ([p.payload["book_id"] for p in points],)))
    return [
        SearchHit(p.payload["chunk_id"], p.payload["book_id"], titles.get(p.payload["book_id"], p.payload["book_id"]),
                  p.payload["chapter"], p.payload["ordinal"], p.payload["text"], p.score)
        for p in points
    ]
