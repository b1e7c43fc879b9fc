"""Repairing drifted stores from Postgres, the source of truth.

Qdrant points and graph nodes are derived data: every field of them is in Postgres (chunks with
their vectors, books with their chapters). A book whose points or nodes differ from its Postgres
rows (a failed or killed write, a restore from an old backup, a hand edit) is rewritten from those
rows; books that exist only in Qdrant or the graph (an interrupted removal) are deleted. Nothing is
re-read, re-chunked or re-embedded, and the per-book artifacts are not needed.
"""

from dataclasses import dataclass

import numpy as np
from dagster import Config, MetadataValue, OpExecutionContext, ResourceParam, job, op
from psycopg import Connection
from pydantic import Field
from qdrant_client import QdrantClient

from corpus_assets import sync
from corpus_assets.assets.embeddings import BookEmbeddings
from corpus_assets.assets.graph import SimilarChunksConfig, relink_similar, replace_book_graph, similar_version
from corpus_assets.assets.qdrant import replace_book_points
from corpus_assets.books.chapters import Section
from corpus_assets.books.chunking import Chunk
from corpus_assets.removal import remove_book
from resources.artifacts import BookArtifactIOManager
from resources.graph import GraphResource, GraphSession
from resources.postgres import PostgresResource
from resources.qdrant import QdrantResource, chunk_ids_per_book


@dataclass(frozen=True)
class StoredBook:
    """What the stores keep of a book (the fields of `BookText` they use), as Postgres holds it."""

    book_id: str
    title: str
    author: str | None
    language: str | None
    source_file: str
    content_sha256: str
    encoding: str
    sections: list[Section]


_BOOK = """
SELECT id, title, author, language, source_file, content_sha256, encoding, chapters FROM books WHERE id = %s
"""
_CHUNKS = """
SELECT id, book_id, ordinal, chapter_index, chapter, text, token_count, char_start, char_end, content_sha256,
       embedding, model
FROM chunks WHERE book_id = %s ORDER BY ordinal
"""


def load_book(conn: Connection, book_id: str) -> tuple[StoredBook, list[Chunk], BookEmbeddings]:
    row = conn.execute(_BOOK, (book_id,)).fetchone()
    if row is None:
        raise KeyError(f"book {book_id!r} is not in Postgres")
    rows = conn.execute(_CHUNKS, (book_id,)).fetchall()
    chunks = [Chunk(*r[:10]) for r in rows]
    if row[7] is not None:
        sections = [Section(*chapter) for chapter in row[7]]
    else:  # written before books.chapters existed: the chapters that have chunks
        sections = [Section(index, title, 0, 0) for index, title in sorted({(c.chapter_index, c.chapter) for c in chunks})]
    models = {r[11] for r in rows}
    embeddings = BookEmbeddings(
        model=models.pop() if len(models) == 1 else "mixed",
        chunk_ids=[c.id for c in chunks],
        vectors=np.stack([r[10].to_numpy() for r in rows]).astype(np.float32) if rows else np.empty((0, 0), np.float32),
    )
    return StoredBook(*row[:7], sections), chunks, embeddings


def resync_book(conn: Connection, book_id: str, qdrant: QdrantResource, client: QdrantClient, session: GraphSession,
                postgres: PostgresResource, similar: SimilarChunksConfig) -> dict[str, int]:
    """Rewrite the book's Qdrant points, graph and SIMILAR edges from its Postgres rows."""
    book, chunks, embeddings = load_book(conn, book_id)
    version = sync.book_version(book, chunks, embeddings.model)
    stale_points = replace_book_points(client, qdrant.collection, chunks, embeddings) if chunks else 0
    sync.record(conn, book_id, "qdrant", version)
    graph = replace_book_graph(session, book, chunks)
    sync.record(conn, book_id, "graph", version)
    edges, _ = relink_similar(session, postgres, book_id, similar.top_k, similar.min_score)
    sync.record(conn, book_id, "similar", similar_version(conn, book_id, similar.top_k, similar.min_score))
    return {"points": len(chunks), "stale points deleted": stale_points, "graph chunks": graph["chunks"],
            "stale graph chunks deleted": graph["stale chunks deleted"], "similar edges": edges}


class RepairConfig(Config):
    book_ids: list[str] = Field(default=[], description="Books to rewrite in Qdrant and the graph; empty: every "
                                                       "book whose stores differ from Postgres, and orphans.")


_GRAPH_BOOKS = "MATCH (b:Book) RETURN b.id AS id UNION MATCH (c:Chunk) RETURN DISTINCT c.book_id AS id"
_GRAPH_CHUNK_IDS = "MATCH (c:Chunk {book_id: $book_id}) RETURN c.id AS id"


@op(description="Rewrite drifted books in Qdrant and the graph from Postgres; delete books only they hold.")
def resync_stores_from_postgres(
    context: OpExecutionContext,
    config: RepairConfig,
    postgres: PostgresResource,
    qdrant: QdrantResource,
    graph: GraphResource,
    io_manager: ResourceParam[BookArtifactIOManager],
) -> None:
    similar = SimilarChunksConfig()
    with postgres.connect() as conn:
        in_postgres = {book_id: set() for (book_id,) in conn.execute("SELECT id FROM books")}
        for book_id, chunk_id in conn.execute("SELECT book_id, id FROM chunks"):
            in_postgres[book_id].add(chunk_id)
    with qdrant.client() as client, graph.session() as session, postgres.connect() as conn:
        exists = client.collection_exists(qdrant.collection)
        dimension = int(conn.execute("SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass "
                                     "AND attname = 'embedding'").fetchone()[0])
        qdrant.ensure_collection(client, dimension)
        if config.book_ids:
            unknown = [b for b in config.book_ids if b not in in_postgres]
            if unknown:
                raise ValueError(f"not in Postgres, nothing to repair from: {', '.join(unknown)}")
            drifted, orphans = list(config.book_ids), []
        else:
            in_qdrant_ids = chunk_ids_per_book(client, qdrant.collection, sorted(in_postgres))
            drifted = [
                book_id for book_id, ids in sorted(in_postgres.items())
                if not exists or in_qdrant_ids[book_id] != ids
                or {r["id"] for r in session.run(_GRAPH_CHUNK_IDS, {"book_id": book_id})} != ids
            ]
            in_qdrant = {hit.value for hit in client.facet(qdrant.collection, "book_id", limit=1_000_000).hits} if exists else set()
            in_graph = {row["id"] for row in session.run(_GRAPH_BOOKS) if row["id"] is not None}
            orphans = sorted((in_qdrant | in_graph) - set(in_postgres))
        rows = []
        for book_id in drifted:
            counts = resync_book(conn, book_id, qdrant, client, session, postgres, similar)
            context.log.info(f"book {book_id!r} rewritten from Postgres: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
            rows.append(f"| {book_id} | rewritten | " + ", ".join(f"{n} {k}" for k, n in counts.items()) + " |")
    for book_id in orphans:  # its own clients: remove_book opens the stores itself
        removed = remove_book(book_id, postgres, qdrant, graph, io_manager)
        context.log.info(f"book {book_id!r} is in no Postgres row: removed ({removed})")
        rows.append(f"| {book_id} | orphan removed | " + ", ".join(f"{n} {k}" for k, n in removed.items()) + " |")
    context.add_output_metadata({
        "books checked": len(config.book_ids or in_postgres),
        "books rewritten": len(drifted),
        "orphans removed": len(orphans),
        "books": MetadataValue.md("| book | action | counts |\n|---|---|---|\n" + "\n".join(rows)) if rows else "none",
    })


@job(description="Reconcile Qdrant and the graph with Postgres: rewrite drifted books from their rows, drop orphans.")
def repair_stores():
    resync_stores_from_postgres()
