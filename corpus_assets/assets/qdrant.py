"""Stage 5b: each book's chunks as Qdrant points (vector + payload)."""

import time

from dagster import AssetExecutionContext

from corpus_assets import sync
from corpus_assets.assets._per_book import STORE_RETRY, for_each_book
from corpus_assets.assets.embeddings import BookEmbeddings
from corpus_assets.books.book import BookText
from corpus_assets.books.chunking import Chunk
from corpus_assets.partitions import QDRANT_POOL, book_asset
from resources.postgres import PostgresResource
from resources.qdrant import QdrantResource
from resources.qdrant.collection import point_id


@book_asset(
    code_version="2",  # 2: points carry the bm25 sparse vector of their words (keyword search)
    kinds={"qdrant"},
    deps=["pgvector_chunks"],  # Postgres, the source of truth, is written first
    group_name="indexes",
    retry_policy=STORE_RETRY,
    pool=QDRANT_POOL,  # the embedded backend allows one holder per shard folder: writers take turns
)
def qdrant_points(
    context: AssetExecutionContext,
    config: sync.StoreWriteConfig,
    qdrant: QdrantResource,
    postgres: PostgresResource,
    book_text: dict[str, BookText],
    book_chunks: dict[str, list[Chunk]],
    chunk_embeddings: dict[str, BookEmbeddings],
) -> None:
    """One point per chunk in the Qdrant collection, id = uuid5(chunk id), with its dense vector and the
    BM25 weights of its words, payload indexed by book."""
    with qdrant.open() as collection, postgres.db() as db:
        collection.ensure_collection(next(iter(chunk_embeddings.values())).vectors.shape[1])
        # Before any write; a book's count only changes when that book is written.
        points_before = collection.points_per_book(context.partition_keys)

        copy = sync.QdrantCopy(collection, db)

        def write(book_id: str) -> tuple[None, dict]:
            started = time.perf_counter()
            book, chunks, embeddings = book_text[book_id], book_chunks[book_id], chunk_embeddings[book_id]
            embeddings.require_match(chunks)
            version = sync.book_version(book, chunks, embeddings.model)
            unchanged = not config.rewrite and copy.is_current(book_id, len(chunks), points_before[book_id], version)
            stale = 0
            if not unchanged:  # a book that had no points has no stale ones to look for
                stale = copy.write(book_id, book, chunks, embeddings.vectors, version, points_before[book_id] > 0)
            seconds = time.perf_counter() - started
            metadata = {
                "points": len(chunks),
                "unchanged (not rewritten)": unchanged,
                "stale points deleted": stale,
                "collection": qdrant.collection,
                # The same chunk in each store: Postgres chunks.id, Qdrant point id = uuid5(chunk id).
                "first chunk id": chunks[0].id,
                "first point id": point_id(chunks[0].id),
                "backend": collection.backend,
                "seconds": round(seconds, 2),
            }
            if not unchanged:  # a rate only over points actually written
                metadata["points written per second"] = round(len(chunks) / seconds, 1)
            return None, metadata

        for_each_book(context, context.partition_keys, write)
