"""Stage 5c: the lexical graph of each book, and SIMILAR cross-references between books.

The graph's statements live in `resources.graph.book_graph`; these assets decide what to write.
"""

import time

from dagster import AssetExecutionContext

from corpus_assets import sync
from corpus_assets.assets._per_book import POSTGRES_WORKERS, STORE_RETRY, for_each_book
from corpus_assets.assets.embeddings import BookEmbeddings
from corpus_assets.books.book import BookText
from corpus_assets.books.chunking import Chunk
from corpus_assets.partitions import book_asset
from resources.graph import GraphResource, backend_kind
from resources.graph.book_graph import BATCH, BookGraph
from resources.postgres import PostgresResource
from resources.postgres.store import CorpusDB


@book_asset(
    code_version="1",
    kinds={backend_kind()},
    group_name="indexes",
    retry_policy=STORE_RETRY,
    deps=["pgvector_chunks"],  # Postgres, the source of truth, is written first
)
def book_graph(
    context: AssetExecutionContext,
    config: sync.StoreWriteConfig,
    graph: GraphResource,
    postgres: PostgresResource,
    book_text: dict[str, BookText],
    book_chunks: dict[str, list[Chunk]],
    chunk_embeddings: dict[str, BookEmbeddings],
) -> None:
    """Book → chapters → chunks, chunks PART_OF their book and linked by NEXT in reading order."""
    with graph.session() as session, postgres.db() as db:
        copy = sync.GraphCopy(session, db)

        def write(book_id: str) -> tuple[None, dict]:
            started = time.perf_counter()
            book, chunks = book_text[book_id], book_chunks[book_id]
            version = sync.book_version(book, chunks, chunk_embeddings[book_id].model)
            unchanged = not config.rewrite and copy.is_current(book_id, len(chunks), version)
            counts = copy.write(book_id, book, chunks, version) if not unchanged else {"chunks": len(chunks)}
            return None, {**counts, "unchanged (not rewritten)": unchanged, "backend": session.backend,
                          "seconds": round(time.perf_counter() - started, 2)}

        for_each_book(context, context.partition_keys, write)


class SimilarChunksConfig(sync.StoreWriteConfig):
    top_k: int = 5
    min_score: float = 0.5


def similar_version(db: CorpusDB, book_id: str, top_k: int, min_score: float) -> str:
    """The fingerprint of a book's SIMILAR edges: its version in Postgres and the search settings."""
    return sync.fingerprint(db.synced_version(book_id, sync.PGVECTOR), top_k, min_score)


def relink_similar(session: BookGraph, postgres: PostgresResource, book_id: str, top_k: int,
                   min_score: float) -> tuple[int, int]:
    """Replace the SIMILAR edges from the book's chunks with its nearest chunks of other books
    (through the pgvector HNSW index), and record them; return (edges written, edges replaced).

    Killed midway, the book's edges are partly written and its `similar` record is not: the next run
    replaces them all. One pooled connection at a time: two books are linked side by side.
    """
    with postgres.db() as db:
        version = similar_version(db, book_id, top_k, min_score)
    with postgres.db() as db:
        edges = session.replace_similar(book_id, db.similar_pairs(book_id, top_k, min_score, BATCH))
    with postgres.db() as db:
        db.record_sync(book_id, sync.SIMILAR, version)
    return edges


@book_asset(code_version="1", kinds={backend_kind(), "postgres"}, group_name="indexes",
    retry_policy=STORE_RETRY, deps=["pgvector_chunks", "book_graph"])
def similar_chunks(
    context: AssetExecutionContext,
    config: SimilarChunksConfig,
    graph: GraphResource,
    postgres: PostgresResource,
) -> None:
    """SIMILAR {score} edges from each chunk to its top-k nearest chunks in other books."""

    def link(book_id: str) -> tuple[None, dict]:
        started = time.perf_counter()
        with postgres.db() as db:
            # Only the book's own version: recomputing every book's edges whenever any book changed
            # would cost a full pass over the corpus per edit. Edges to a removed chunk go with its
            # node; edges from other books to the book's new chunks come when those books are rewritten.
            version = similar_version(db, book_id, config.top_k, config.min_score)
            unchanged = not config.rewrite and db.synced_version(book_id, sync.SIMILAR) == version
        if unchanged:  # the edges as they stand, so the latest materialization still says how many
            with graph.session() as session:
                edges, _ = session.similar_edges(book_id)
            return None, {"similar edges": edges, "unchanged (not rewritten)": True}
        with graph.session() as session:
            edges, replaced = relink_similar(session, postgres, book_id, config.top_k, config.min_score)
        return None, {"similar edges": edges, "unchanged (not rewritten)": False, "edges replaced": replaced,
                      "top k": config.top_k, "min score": config.min_score,
                      "seconds": round(time.perf_counter() - started, 2)}

    with postgres.db() as db:
        sizes = db.chunk_counts(context.partition_keys)
    # The nearest-neighbour searches run in Postgres, books side by side (the graph serializes the
    # writes), longest first so the last book to finish is a short one.
    by_size = sorted(context.partition_keys, key=lambda book_id: -sizes.get(book_id, 0))
    for_each_book(context, by_size, link, workers=POSTGRES_WORKERS)
