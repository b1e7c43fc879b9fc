"""Semantic search over the pgvector index or the Qdrant collection."""

import os
from dataclasses import dataclass

from resources.embedding import EmbeddingModel
from resources.graph import GraphResource
from resources.postgres import PostgresResource
from resources.qdrant import QdrantResource, book_filter

# Candidates the HNSW search keeps per query; 40 (pgvector's default) loses recall at 100k+ rows.
# Recall falls slowly as the corpus grows: raise it past ~1M chunks (BENCHMARKS.md).
EF_SEARCH = int(os.environ.get("CORPUS_EF_SEARCH", "100"))

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


@dataclass(frozen=True)
class Neighbour:
    relation: str  # "previous", "next" (reading order) or "similar" (another book)
    hit: SearchHit  # score: cosine similarity for "similar", 1.0 for reading-order neighbours


# A hit's reading-order neighbours and its SIMILAR chunks (either direction) from the graph.
_NEIGHBOURS = """
UNWIND $ids AS id
MATCH (c:Chunk {id: id})
OPTIONAL MATCH (p:Chunk)-[:NEXT]->(c)
OPTIONAL MATCH (c)-[:NEXT]->(n:Chunk)
OPTIONAL MATCH (c)-[s:SIMILAR]-(o:Chunk)
RETURN id, p.id AS previous, n.id AS next,
       collect(CASE WHEN o IS NULL THEN NULL ELSE [o.id, s.score] END) AS similar
"""

_CHUNKS_BY_ID = """
SELECT c.id, c.book_id, b.title, c.chapter, c.ordinal, c.text
FROM chunks c JOIN books b ON b.id = c.book_id WHERE c.id = ANY(%s)
"""


def expand(
    graph: GraphResource, postgres: PostgresResource, hits: list[SearchHit], similar: int = 2
) -> dict[str, list[Neighbour]]:
    """Context for each hit from the graph: the chunks before and after it, and its `similar` most
    similar chunks in other books; texts come from Postgres. Keyed by the hit's chunk id."""
    with graph.session() as session:
        rows = session.run(_NEIGHBOURS, {"ids": [h.chunk_id for h in hits]})
    wanted = {
        row["id"]: [("previous", row["previous"], 1.0), ("next", row["next"], 1.0)]
        + [("similar", other, float(score)) for other, score in sorted(row["similar"], key=lambda s: -s[1])[:similar]]
        for row in rows
    }
    ids = {chunk_id for links in wanted.values() for _, chunk_id, _ in links if chunk_id}
    with postgres.connect() as conn:
        chunks = {row[0]: row for row in conn.execute(_CHUNKS_BY_ID, (list(ids),))}
    return {
        hit_id: [Neighbour(relation, SearchHit(*chunks[chunk_id], score)) for relation, chunk_id, score in links
                 if chunk_id in chunks]
        for hit_id, links in wanted.items()
    }
