"""The collection on a Qdrant server, through qdrant-client."""

from collections.abc import Collection, Sequence

import numpy as np
from qdrant_client import QdrantClient, models

from qdrant_edge import SparseVector

from resources.qdrant.collection import (
    ALL_BOOKS,
    HNSW_M,
    SPARSE_VECTOR,
    UPLOAD_BATCH,
    ChunkLike,
    PointHit,
    as_hits,
    book_batches,
    document_words,
    filter_books,
    payload,
    point_id,
)


def _books_filter(book_ids: Sequence[str]) -> models.Filter:
    """Points of any of these books (served by the `book_id` payload index)."""
    return models.Filter(must=[models.FieldCondition(key="book_id", match=models.MatchAny(any=list(book_ids)))])


def _book_filter(book_id: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="book_id", match=models.MatchValue(value=book_id))])


class ClientCollection:
    backend = "server"

    def __init__(self, client: QdrantClient, name: str, ef_construct: int):
        self.client, self.name, self._ef_construct = client, name, ef_construct

    def lacks_keyword_vectors(self) -> bool:
        """A collection made before keyword search, without the `bm25` sparse vectors."""
        if not self.client.collection_exists(self.name):
            return False
        return SPARSE_VECTOR not in (self.client.get_collection(self.name).config.params.sparse_vectors or {})

    def drop(self) -> None:
        """Delete the collection (`corpus migrate` rebuilds one made before keyword search)."""
        self.client.delete_collection(self.name)

    def ensure_collection(self, dimension: int) -> None:
        """Create the collection and its `book_id` payload index before the first upload."""
        if self.client.collection_exists(self.name):
            size = self.client.get_collection(self.name).config.params.vectors.size
            if size != dimension:
                raise ValueError(f"Qdrant collection {self.name!r} holds {size}-d vectors, not {dimension}-d")
            return
        self.client.create_collection(
            self.name,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            hnsw_config=models.HnswConfigDiff(m=HNSW_M, ef_construct=self._ef_construct),
        )
        self.client.create_payload_index(self.name, "book_id", models.PayloadSchemaType.KEYWORD)

    def upsert(self, chunks: Sequence[ChunkLike], vectors: np.ndarray, language: str | None) -> None:
        for start in range(0, len(chunks), UPLOAD_BATCH):
            batch = zip(chunks[start : start + UPLOAD_BATCH], vectors[start : start + UPLOAD_BATCH], strict=True)
            self.client.upsert(self.name, wait=True, points=[
                models.PointStruct(id=point_id(c.id), payload=payload(c), vector={
                    "": v.tolist(), SPARSE_VECTOR: _sparse(document_words(c.text, language))})
                for c, v in batch])

    def delete_book_except(self, book_id: str, keep_chunk_ids: Collection[str]) -> int:
        stale = models.Filter(must=_book_filter(book_id).must,
                              must_not=[models.HasIdCondition(has_id=[point_id(c) for c in keep_chunk_ids])])
        return self._delete(stale)

    def delete_book(self, book_id: str) -> int:
        if not self.client.collection_exists(self.name):
            return 0
        return self._delete(_book_filter(book_id))

    def _delete(self, selection: models.Filter) -> int:
        count = self.client.count(self.name, count_filter=selection, exact=True).count
        if count:
            self.client.delete(self.name, points_selector=models.FilterSelector(filter=selection), wait=True)
        return count

    def points_per_book(self, book_ids: Sequence[str]) -> dict[str, int]:
        """How many points each book has, in one request."""
        counts = dict.fromkeys(book_ids, 0)
        if not counts or not self.client.collection_exists(self.name):
            return counts
        only = filter_books(counts)
        hits = self.client.facet(self.name, "book_id", facet_filter=None if only is None else _books_filter(only),
                                 limit=ALL_BOOKS if only is None else len(only), exact=True).hits
        return counts | {hit.value: hit.count for hit in hits if hit.value in counts}

    def chunk_ids_per_book(self, book_ids: Sequence[str]) -> dict[str, set[str]]:
        """The chunk ids of each book's points, scrolled for many books at once."""
        found: dict[str, set[str]] = {book_id: set() for book_id in book_ids}
        if not found or not self.client.collection_exists(self.name):
            return found
        for batch in book_batches(found):
            offset = None
            while True:
                points, offset = self.client.scroll(self.name, scroll_filter=_books_filter(batch), limit=10_000,
                                                    offset=offset, with_payload=["book_id", "chunk_id"],
                                                    with_vectors=False)
                for point in points:
                    found[point.payload["book_id"]].add(point.payload["chunk_id"])
                if offset is None:
                    break
        return found

    def book_ids(self) -> set[str]:
        if not self.client.collection_exists(self.name):
            return set()
        return {hit.value for hit in self.client.facet(self.name, "book_id", limit=ALL_BOOKS, exact=True).hits}

    def count(self) -> int:
        return self.client.count(self.name, exact=True).count if self.client.collection_exists(self.name) else 0

    def status(self) -> str:
        if not self.client.collection_exists(self.name):
            return "missing"
        return self.client.get_collection(self.name).status.value

    def search(self, vector: np.ndarray, limit: int, books: Sequence[str] | None = None) -> list[PointHit]:
        return as_hits(self.client.query_points(
            self.name, query=vector.tolist(), query_filter=None if books is None else _books_filter(books),
            limit=limit, with_payload=True,
        ).points)

    def keyword_search(self, words: SparseVector, limit: int, books: Sequence[str] | None = None) -> list[PointHit]:
        if not words.indices or not self.client.collection_exists(self.name):
            return []
        return as_hits(self.client.query_points(
            self.name, query=_sparse(words), using=SPARSE_VECTOR,
            query_filter=None if books is None else _books_filter(books), limit=limit, with_payload=True,
        ).points)


def _sparse(words: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(words.indices), values=list(words.values))

