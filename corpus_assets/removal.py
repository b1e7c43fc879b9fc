"""Removing books: every trace of a book leaves every store, then its partition goes."""

from dagster import Config, OpExecutionContext, ResourceParam, job, op
from pydantic import Field

from corpus_assets.assets.graph import delete_in_batches
from resources.artifacts import BookArtifactIOManager
from resources.graph import GraphResource
from resources.postgres import PostgresResource
from resources.qdrant import QdrantResource, book_filter

_DELETE_BOOK_NODES = """
MATCH (n) WHERE (n:Chunk OR n:Chapter) AND n.book_id = $book_id
WITH n LIMIT $limit DETACH DELETE n RETURN count(*) AS deleted
"""
_DELETE_BOOK_NODE = "MATCH (b:Book {id: $book_id}) WITH b LIMIT $limit DETACH DELETE b RETURN count(*) AS deleted"


def remove_book(
    book_id: str, postgres: PostgresResource, qdrant: QdrantResource, graph: GraphResource, artifacts: BookArtifactIOManager
) -> dict[str, int]:
    """Delete the book from the graph, Qdrant, its artifacts, then Postgres (the source of truth goes
    last, so an interrupted removal is found and finished by the next one)."""
    with graph.session() as session:
        nodes = delete_in_batches(session, _DELETE_BOOK_NODES, book_id=book_id)
        nodes += delete_in_batches(session, _DELETE_BOOK_NODE, book_id=book_id)
    with qdrant.client() as client:
        points = 0
        if client.collection_exists(qdrant.collection):
            points = client.count(qdrant.collection, count_filter=book_filter(book_id), exact=True).count
            client.delete(qdrant.collection, points_selector=book_filter(book_id), wait=True)
    files = artifacts.delete_book(book_id)
    with postgres.connect() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (book_id,))
        rows = conn.execute("DELETE FROM chunks WHERE book_id = %s", (book_id,)).rowcount
        conn.execute("DELETE FROM books WHERE id = %s", (book_id,))
    return {"postgres chunks": rows, "qdrant points": points, "graph nodes": nodes, "artifact files": files}


class RemoveBooksConfig(Config):
    book_ids: list[str] = Field(description="Books to remove from every store.")


@op
def remove_books_from_stores(
    context: OpExecutionContext,
    config: RemoveBooksConfig,
    postgres: PostgresResource,
    qdrant: QdrantResource,
    graph: GraphResource,
    io_manager: ResourceParam[BookArtifactIOManager],  # the IO manager owns the artifact files
) -> None:
    for book_id in config.book_ids:
        removed = remove_book(book_id, postgres, qdrant, graph, io_manager)
        context.log.info(f"book {book_id!r} removed: " + ", ".join(f"{n} {what}" for what, n in removed.items()))
    for book_id in config.book_ids:
        if context.instance.has_dynamic_partition("books", book_id):
            context.instance.delete_dynamic_partition("books", book_id)


@job(description="Remove books (run config: book_ids) from Postgres, Qdrant, the graph and the artifacts.")
def remove_books():
    remove_books_from_stores()
