"""What every Qdrant backend offers the pipeline: one collection of chunk points.

A point per chunk: id = uuid5(chunk id), so a re-run overwrites, never duplicates; the vector;
payload `book_id` (indexed), `chunk_id`, `ordinal`, `chapter`, `text`. Cosine distance, HNSW m=16.
"""

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

POINT_ID_NAMESPACE = uuid.UUID("5b0c1a53-6f0e-4f3b-9a43-2f6d7c0c9d10")
HNSW_M = 16
# Points per upsert, built lazily one batch at a time (a 90k-point book never exists as points at once).
UPLOAD_BATCH = 1024


def point_id(chunk_id: str) -> str:
    """Qdrant point id of a chunk: uuid5 of the chunk id, so re-runs overwrite, never duplicate."""
    return str(uuid.uuid5(POINT_ID_NAMESPACE, chunk_id))


class ChunkLike(Protocol):
    id: str
    book_id: str
    ordinal: int
    chapter: str
    text: str


def payload(chunk: ChunkLike) -> dict:
    return {"book_id": chunk.book_id, "chunk_id": chunk.id, "ordinal": chunk.ordinal, "chapter": chunk.chapter,
            "text": chunk.text}


@dataclass(frozen=True)
class PointHit:
    chunk_id: str
    book_id: str
    chapter: str
    ordinal: int
    text: str
    score: float  # cosine similarity


class QdrantCollection(Protocol):
    """The chunk collection, opened for one piece of work by `QdrantResource.open()`."""

    backend: str

    def ensure_collection(self, dimension: int) -> None: ...

    def upsert(self, chunks: Sequence[ChunkLike], vectors: np.ndarray) -> None: ...

    def delete_book_except(self, book_id: str, keep_chunk_ids: Collection[str]) -> int: ...

    def delete_book(self, book_id: str) -> int: ...

    def points_per_book(self, book_ids: Sequence[str]) -> dict[str, int]: ...

    def chunk_ids_per_book(self, book_ids: Sequence[str]) -> dict[str, set[str]]: ...

    def book_ids(self) -> set[str]: ...

    def count(self) -> int: ...

    def status(self) -> str: ...

    def search(self, vector: np.ndarray, limit: int, book_id: str | None = None) -> list[PointHit]: ...
