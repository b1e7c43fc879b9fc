"""Semantic search over the pgvector index or the Qdrant collection, with context from the graph."""

from dataclasses import dataclass

from resources import settings
from resources.embedding import EmbeddingModel
from resources.graph import GraphResource
from resources.postgres import PostgresResource
from resources.postgres.store import SearchHit
from resources.qdrant import QdrantResource


def search_chunks(
    postgres: PostgresResource, model: EmbeddingModel, query: str, limit: int = 5, book_id: str | None = None
) -> list[SearchHit]:
    """The `limit` chunks closest in meaning to `query` in pgvector, optionally within one book."""
    vector = model.encode([query])[0]
    with postgres.db() as db:
        return db.search(vector, limit, book_id, settings.current().ef_search)


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
    with qdrant.open() as collection:
        points = collection.search(vector, limit, book_id)
    with postgres.db() as db:
        titles = db.titles([p.book_id for p in points])
    return [SearchHit(p.chunk_id, p.book_id, titles.get(p.book_id, p.book_id), p.chapter, p.ordinal, p.text, p.score)
            for p in points]


@dataclass(frozen=True)
class Neighbour:
    relation: str  # "previous", "next" (reading order) or "similar" (another book)
    hit: SearchHit  # score: cosine similarity for "similar", 1.0 for reading-order neighbours


def expand(
    graph: GraphResource, postgres: PostgresResource, hits: list[SearchHit], similar: int = 2
) -> dict[str, list[Neighbour]]:
    """Context for each hit from the graph: the chunks before and after it, and its `similar` most
    similar chunks in other books (each once, whichever way its edge points); texts come from
    Postgres. Keyed by the hit's chunk id."""
    with graph.session() as session:
        found = session.neighbours([h.chunk_id for h in hits])
    wanted = {
        hit_id: [("previous", n.previous, 1.0), ("next", n.next, 1.0)]
        + [("similar", other, score) for other, score in n.similar[:similar]]
        for hit_id, n in found.items()
    }
    ids = {chunk_id for links in wanted.values() for _, chunk_id, _ in links if chunk_id}
    with postgres.db() as db:
        chunks = db.chunks_by_id(list(ids))
    return {
        hit_id: [Neighbour(relation, SearchHit(**{**chunks[chunk_id].__dict__, "score": score}))
                 for relation, chunk_id, score in links if chunk_id in chunks]
        for hit_id, links in wanted.items()
    }
