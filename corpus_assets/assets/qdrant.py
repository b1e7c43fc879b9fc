"""Stage 5b: each book's chunks as Qdrant points (vector + payload)."""

import time

from dagster import AssetExecutionContext
from qdrant_client import QdrantClient, models

from corpus_assets import sync
from corpus_assets.assets._per_book import STORE_RETRY, for_each_book
from corpus_assets.assets.embeddings import BookEmbeddings
from corpus_assets.assets.text import BookText
from corpus_assets.books.chunking import Chunk
from corpus_assets.partitions import QDRANT_POOL, book_asset
from resources.postgres import PostgresResource
from resources.qdrant import LOCAL_MODE_COMFORTABLE_POINTS, QdrantResource, book_filter, point_id, points_per_book

# Points per upsert: local mode writes ~1.5x faster at 1024 than at 128 (565 vs 377 points/s).
# Batches are made here, one at a time: local mode's `upload_points` turns its whole input into a
# list first (a 50 MB book's points as Python objects: GiBs).
UPLOAD_BATCH = 1024


def replace_book_points(
    client: QdrantClient, collection: str, chunks: list[Chunk], embeddings: BookEmbeddings, had_points: bool = True
) -> int:
    """Upsert the book's points, then delete its points for chunks that no longer exist.

    Returns how many stale points were deleted. Point ids derive from chunk ids, so a re-run
    overwrites the same points. `had_points=False` (the book had none before) skips looking for
    stale ones: in local mode that filter is a pass over the whole collection.
    """
    book_id = chunks[0].book_id
    ids = [point_id(c.id) for c in chunks]
    for start in range(0, len(chunks), UPLOAD_BATCH):
        client.upsert(
            collection,
            points=[
                models.PointStruct(
                    id=pid,
                    vector=vector.tolist(),
                    payload={"book_id": c.book_id, "chunk_id": c.id, "ordinal": c.ordinal, "chapter": c.chapter,
                             "text": c.text},
                )
                for pid, c, vector in zip(ids[start : start + UPLOAD_BATCH], chunks[start : start + UPLOAD_BATCH],
                                          embeddings.vectors[start : start + UPLOAD_BATCH], strict=True)
            ],
            wait=True,
        )
    if not had_points:
        return 0
    stale = models.Filter(
        must=book_filter(book_id).must, must_not=[models.HasIdCondition(has_id=ids)]
    )
    stale_count = client.count(collection, count_filter=stale, exact=True).count
    if stale_count:
        client.delete(collection, points_selector=models.FilterSelector(filter=stale), wait=True)
    return stale_count


@book_asset(
    code_version="1",
    kinds={"qdrant"},
    deps=["pgvector_chunks"],  # Postgres, the source of truth, is written first
    group_name="indexes",
    retry_policy=STORE_RETRY,
    pool=QDRANT_POOL,  # local mode allows one process per folder: writers take turns
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
    """One point per chunk in the Qdrant collection, id = uuid5(chunk id), payload indexed by book."""
    with qdrant.client() as client, postgres.connect() as conn:
        dimension = next(iter(chunk_embeddings.values())).vectors.shape[1]
        qdrant.ensure_collection(client, dimension)
        # Before any write; a book's count only changes when that book is written.
        points_before = points_per_book(client, qdrant.collection, context.partition_keys)

        def write(book_id: str) -> None:
            started = time.perf_counter()
            chunks, embeddings = book_chunks[book_id], chunk_embeddings[book_id]
            embeddings.require_match(chunks)
            version = sync.book_version(book_text[book_id], chunks, embeddings.model)
            unchanged = (
                not config.rewrite
                and sync.recorded(conn, book_id, "qdrant") == version
                and points_before[book_id] == len(chunks)
            )
            stale = 0
            if not unchanged:
                stale = replace_book_points(client, qdrant.collection, chunks, embeddings, points_before[book_id] > 0)
                sync.record(conn, book_id, "qdrant", version)
            seconds = time.perf_counter() - started
            context.add_asset_metadata(
                {
                    "points": len(chunks),
                    "unchanged (not rewritten)": unchanged,
                    "stale points deleted": stale,
                    "collection": qdrant.collection,
                    # The same chunk in each store: Postgres chunks.id, Qdrant point id = uuid5(chunk id).
                    "first chunk id": chunks[0].id,
                    "first point id": point_id(chunks[0].id),
                    "backend": "local" if qdrant.is_local else "server",
                    "seconds": round(seconds, 2),
                    "points per second": round(len(chunks) / seconds, 1) if seconds else 0.0,
                },
                partition_key=book_id,
            )

        for_each_book(context, context.partition_keys, write)
        total = client.count(qdrant.collection, exact=True).count
        if qdrant.is_local and total > LOCAL_MODE_COMFORTABLE_POINTS:
            context.log.warning(
                f"Qdrant local mode holds {total:,} points (comfortable up to {LOCAL_MODE_COMFORTABLE_POINTS:,}): "
                "it loads them all on every open and searches by brute force. Set QDRANT_URL to use a server."
            )
