"""What every Qdrant backend offers the pipeline: one collection of chunk points.

A point per chunk: id = uuid5(chunk id), so a re-run overwrites, never duplicates; the dense vector
(unnamed; cosine, HNSW m=16) and the `bm25` sparse vector of its words (Qdrant's BM25: the server
applies IDF), payload `book_id` (indexed), `chunk_id`, `ordinal`, `chapter`, `text`.
"""

import functools
import re
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from qdrant_edge import Bm25, Bm25Config, SparseVector

POINT_ID_NAMESPACE = uuid.UUID("5b0c1a53-6f0e-4f3b-9a43-2f6d7c0c9d10")
HNSW_M = 16
# Points per upsert, built lazily one batch at a time (a 90k-point book never exists as points at once).
UPLOAD_BATCH = 1024


SPARSE_VECTOR = "bm25"
# A query's words, as Qdrant's BM25 tokenizer splits them (on anything not a letter or digit).
_WORD = re.compile(r"\w+")
# A facet over every book: a limit above any library's number of books.
ALL_BOOKS = 1_000_000
# A filter listing book ids costs Qdrant more per point the more ids it lists (Edge, 1.4M points,
# exact facet: 100 books 0.06 s, 1,000 books 4.2 s, 9,099 books 273 s; every book, unfiltered, 0.8 s).
# Counts for more books than this go over every book and keep the asked ones; scrolls filter on this
# many at a time (all 9,099 books' chunk ids, 1.4M points: 27.6 s, unfiltered 38.7 s).
FILTER_MAX_BOOKS = 200


@functools.cache
def _bm25(language: str | None) -> Bm25:
    """Qdrant's BM25 analyzer (Edge's embedder; the server's text search uses the same tokens and
    formula) for a book language: its stemmer and stop words, English for a language it lacks."""
    try:
        return Bm25(Bm25Config(language=(language or "english").lower()))
    except Exception:  # "unsupported language": qdrant_edge raises a bare Exception
        return Bm25(Bm25Config(language="english"))


def document_words(text: str, language: str | None) -> SparseVector:
    """A chunk's words as BM25 term weights (term frequency, saturated and length-normalized)."""
    return _bm25(language).embed_document(text)


def query_analysis(query: str, languages: Iterable[str | None]) -> dict[str, list[tuple[str, list[int]]]]:
    """A query's words as the collection's books index them, under each of their languages:
    {language: [(word, its terms: none for a stop word)]}."""
    words = _WORD.findall(query)
    return {language or "english": [(word, list(_bm25(language).embed_query(word).indices)) for word in words]
            for language in set(languages) or {None}}


def query_vector(terms: Iterable[int]) -> SparseVector:
    """The sparse query of these terms (Qdrant's BM25 weighs them by their IDF)."""
    indices = sorted(set(terms))
    return SparseVector(indices=indices, values=[1.0] * len(indices))


def filter_books(book_ids: Collection[str]) -> list[str] | None:
    """The book ids for a count to filter on, or None when they are too many to: count every book."""
    return list(book_ids) if len(book_ids) <= FILTER_MAX_BOOKS else None


def book_batches(book_ids: Collection[str]) -> Iterator[list[str]]:
    """The book ids, at most FILTER_MAX_BOOKS at a time, for scrolls filtered on them."""
    ids = list(book_ids)
    for start in range(0, len(ids), FILTER_MAX_BOOKS):
        yield ids[start:start + FILTER_MAX_BOOKS]


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
class SegmentMerge:
    """What an upkeep merge of the collection's segments did (`QdrantResource.merge_segments`)."""

    outcome: str  # "merged", "not needed", "no shard", or what went wrong
    segments_before: int
    segments_after: int
    points: int
    seconds: float

    @property
    def went_wrong(self) -> bool:
        return not self.outcome.startswith(("merged", "not needed", "no shard"))


@dataclass(frozen=True)
class PointHit:
    chunk_id: str
    book_id: str
    chapter: str
    ordinal: int
    text: str
    score: float  # cosine similarity, or BM25 for keyword search


def as_hits(points) -> list[PointHit]:
    """Scored points (either backend's) as hits, from their payloads."""
    return [PointHit(p.payload["chunk_id"], p.payload["book_id"], p.payload["chapter"], p.payload["ordinal"],
                     p.payload["text"], p.score) for p in points]


class QdrantCollection(Protocol):
    """The chunk collection, opened for one piece of work by `QdrantResource.open()`."""

    backend: str

    def ensure_collection(self, dimension: int) -> None: ...

    def upsert(self, chunks: Sequence[ChunkLike], vectors: np.ndarray, language: str | None) -> None: ...

    def delete_book_except(self, book_id: str, keep_chunk_ids: Collection[str]) -> int: ...

    def delete_book(self, book_id: str) -> int: ...

    def points_per_book(self, book_ids: Sequence[str]) -> dict[str, int]: ...

    def chunk_ids_per_book(self, book_ids: Sequence[str]) -> dict[str, set[str]]: ...

    def book_ids(self) -> set[str]: ...

    def count(self) -> int: ...

    def status(self) -> str: ...

    def search(self, vector: np.ndarray, limit: int, books: Sequence[str] | None = None) -> list[PointHit]: ...

    def keyword_search(self, words: SparseVector, limit: int, books: Sequence[str] | None = None) -> list[PointHit]: ...
