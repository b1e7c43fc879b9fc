"""Repairing drifted stores from Postgres, the source of truth.

Qdrant points and graph nodes are derived data: every field of them is in Postgres (chunks with
their vectors, books with their chapters). A book whose points or nodes differ from its Postgres
rows (a failed or killed write, a restore from an old backup, a hand edit) is rewritten from those
rows; books that exist only in Qdrant or the graph (an interrupted removal) are deleted. Nothing is
re-read, re-chunked or re-embedded, and the per-book artifacts are not needed.
"""

from dagster import Config, MetadataValue, OpExecutionContext, ResourceParam, job, op
from pydantic import Field

from corpus_assets import sync
from corpus_assets.assets.graph import SimilarChunksConfig, relink_similar
from corpus_assets.removal import remove_book
from corpus_assets.sync import GRAPH, QDRANT
from resources.artifacts import BookArtifactIOManager
from resources.graph import GraphResource
from resources.graph.book_graph import BookGraph
from resources.postgres import PostgresResource
from resources.qdrant import QdrantResource
from resources.qdrant.collection import QdrantCollection


def resync_book(book_id: str, postgres: PostgresResource, collection: QdrantCollection, session: BookGraph,
                similar: SimilarChunksConfig, stores: set[str]) -> dict[str, int]:
    """Rewrite the book's Qdrant points, or its graph and SIMILAR edges, or both, from its Postgres rows."""
    with postgres.db() as db:
        book, stored = db.stored_book(book_id), db.stored_vectors(book_id)
    chunks = stored.chunks
    model = stored.models.pop() if len(stored.models) == 1 else "mixed"
    version = sync.book_version(book, chunks, model)
    counts = {}
    with postgres.db() as db:
        if QDRANT in stores:
            stale_points = sync.QdrantCopy(collection, db).write(book_id, book, chunks, stored.vectors, version)
            counts |= {"points": len(chunks), "stale points deleted": stale_points}
        if GRAPH in stores:
            written = sync.GraphCopy(session, db).write(book_id, book, chunks, version)
            counts |= {"graph chunks": written["chunks"], "stale graph chunks deleted": written["stale chunks deleted"]}
    if GRAPH in stores:
        edges, _ = relink_similar(session, postgres, book_id, similar.top_k, similar.min_score)
        counts["similar edges"] = edges
    return counts


class RepairConfig(Config):
    book_ids: list[str] = Field(default=[], description="Books to rewrite in Qdrant and the graph; empty: every "
                                                       "book whose stores differ from Postgres, and orphans.")


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
    with postgres.db() as db:
        in_postgres = db.chunk_ids_by_book()
        dimension = db.embedding_dimension()
    with qdrant.open() as collection, graph.session() as session:
        exists = collection.status() != "missing"
        collection.ensure_collection(dimension)
        if config.book_ids:
            unknown = [b for b in config.book_ids if b not in in_postgres]  # a book id, or not: never a pattern
            if unknown:
                raise ValueError(f"not in Postgres, nothing to repair from: {', '.join(unknown)}")
            drifted, orphans = {book_id: {QDRANT, GRAPH} for book_id in config.book_ids}, []
        else:  # each book is rewritten in the stores that differ from Postgres, only those
            in_qdrant_ids = collection.chunk_ids_per_book(sorted(in_postgres))
            drifted = {}
            for book_id, ids in sorted(in_postgres.items()):
                stores = {QDRANT} if not exists or in_qdrant_ids[book_id] != ids else set()
                stores |= {GRAPH} if session.chunk_ids(book_id) != ids else set()
                if stores:
                    drifted[book_id] = stores
            orphans = sorted((collection.book_ids() | session.book_ids()) - set(in_postgres))
        rows = []
        for book_id, stores in drifted.items():
            counts = ", ".join(f"{n} {k}" for k, n in resync_book(book_id, postgres, collection, session, similar, stores).items())
            where = " and ".join(sorted(stores))
            context.log.info(f"book {book_id!r} rewritten in {where} from Postgres: {counts}")
            rows.append(f"| {book_id} | rewritten in {where} | {counts} |")
    for book_id in orphans:  # its own clients: remove_book opens the stores itself
        removed = remove_book(book_id, postgres, qdrant, graph, io_manager)
        context.log.info(f"book {book_id!r} is in no Postgres row: removed ({removed})")
        rows.append(f"| {book_id} | orphan removed | " + ", ".join(f"{n} {k}" for k, n in removed.items()) + " |")
    context.add_output_metadata({
        "books checked": len(config.book_ids or in_postgres),
        "books rewritten": len(drifted),
        "books rewritten in Qdrant": sum(QDRANT in stores for stores in drifted.values()),
        "books rewritten in the graph": sum(GRAPH in stores for stores in drifted.values()),
        "orphans removed": len(orphans),
        "books": MetadataValue.md("| book | action | counts |\n|---|---|---|\n" + "\n".join(rows)) if rows else "none",
    })


@job(description="Reconcile Qdrant and the graph with Postgres: rewrite drifted books from their rows, drop orphans.")
def repair_stores():
    resync_stores_from_postgres()
