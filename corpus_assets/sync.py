"""Which version of each book every store holds, so that re-running an unchanged book writes nothing.

After each successful write of a book, Postgres (the source of truth) records a fingerprint of what
was written (`CorpusDB.record_sync`), per target: "chunks" (the chunker's inputs), "pgvector", "qdrant", "graph", "similar".
A later run skips a book whose fingerprint is unchanged *and* whose item count in the store still
matches; a count that drifted (points deleted by hand, a write killed midway) is rewritten. The
stores' `rewrite` config forces a write, e.g. to repair drift the checks found.

Each store's copy of a book (`PostgresCopy`, `QdrantCopy`, `GraphCopy`) decides here whether it is
current and how it is written and recorded: the assets and repair (`repair_stores`) go through them alike.
"""

import hashlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from dagster import Config
from pydantic import Field

from corpus_assets.books.book import BookText
from corpus_assets.books.chunking import Chunk
from corpus_assets.books.errors import BookError
from corpus_assets.books.structure import Section
from resources.graph.book_graph import BookGraph
from resources.postgres.store import BookRow, CorpusDB
from resources.qdrant.collection import QdrantCollection

CHUNKS, PGVECTOR, QDRANT, GRAPH, SIMILAR = "chunks", "pgvector", "qdrant", "graph", "similar"  # the targets


class StoreWriteConfig(Config):
    rewrite: bool = Field(
        default=False,
        description="Write every book again even when the store already holds this exact version of it.",
    )


def fingerprint(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\x1f")
    return digest.hexdigest()


def book_version(book: BookText, chunks: Sequence[Chunk], model: str) -> str:
    """Everything the stores keep of a book: its metadata, chapters, chunks (ids hash their text) and model."""
    return fingerprint(
        book.title, book.author, book.language, book.source_file, book.content_sha256, book.encoding,
        [(s.index, s.title, s.kind, s.part) for s in book.sections], [(c.id, c.chapter_index) for c in chunks], model,
    )


class BookLike(Protocol):
    """What the copies read of a book: `BookText` (ingest) and `BookRow` (Postgres, for repair) both have it."""

    title: str
    author: str | None
    language: str | None
    sections: list[Section]


class PostgresCopy:
    """The book's rows in `books` and `chunks` (text, offsets, vectors)."""

    def __init__(self, db: CorpusDB):
        self._db = db

    def is_current(self, book_id: str, chunks: int, chunked_from: str, version: str) -> bool:
        return (self._db.chunk_count(book_id) == chunks and self._db.synced_version(book_id, CHUNKS) == chunked_from
                and self._db.synced_version(book_id, PGVECTOR) == version)

    def write(self, book: BookText, chunks: Sequence[Chunk], vectors: np.ndarray, model: str, chunked_from: str,
              version: str) -> int:
        """Replace the book's rows atomically; return the rows replaced. The chunks' inputs are recorded
        so that an unchanged book reuses its stored chunks."""
        dimension = self._db.embedding_dimension()
        if vectors.shape[1] != dimension:
            raise BookError(f"model {model} gives {vectors.shape[1]}-d vectors, the chunks table stores {dimension}-d")
        row = BookRow(id=book.book_id, title=book.title, author=book.author, language=book.language,
                      source_file=book.source_file, content_sha256=book.content_sha256, bytes=book.bytes,
                      encoding=book.encoding, sections=book.sections, subtitle=book.subtitle,
                      structure_doubts=list(book.doubts))
        return self._db.replace_book_chunks(row, chunks, vectors, model, {CHUNKS: chunked_from, PGVECTOR: version})


class QdrantCopy:
    """The book's points in the Qdrant collection."""

    def __init__(self, collection: QdrantCollection, db: CorpusDB):
        self._collection, self._db = collection, db

    def is_current(self, book_id: str, chunks: int, points: int, version: str) -> bool:
        """`points`: the book's points counted before this run wrote any (one count for all its books)."""
        return points == chunks and self._db.synced_version(book_id, QDRANT) == version

    def write(self, book_id: str, book: BookLike, chunks: Sequence[Chunk], vectors: np.ndarray, version: str,
              may_hold_points: bool = True) -> int:
        """Upsert the book's points, delete those of chunks it no longer has; return how many were deleted.
        `may_hold_points` False (the book had none before this run) skips looking for stale ones."""
        self._collection.upsert(chunks, vectors, book.language)
        stale = self._collection.delete_book_except(book_id, [c.id for c in chunks]) if may_hold_points else 0
        self._db.record_sync(book_id, QDRANT, version)
        return stale


class GraphCopy:
    """The book's lexical graph: Book, Parts, Chapters, Chunks, PART_OF and NEXT."""

    def __init__(self, session: BookGraph, db: CorpusDB):
        self._session, self._db = session, db

    def is_current(self, book_id: str, chunks: int, version: str) -> bool:
        return self._db.synced_version(book_id, GRAPH) == version and self._session.chunk_count(book_id) == chunks

    def write(self, book_id: str, book: BookLike, chunks: Sequence[Chunk], version: str) -> dict[str, int]:
        counts = self._session.replace_book(book_id, book.title, book.author, book.language, book.sections, chunks)
        self._db.record_sync(book_id, GRAPH, version)
        # A rewritten graph may have lost the book's SIMILAR edges (a wiped or drifted store): relinked next.
        self._db.forget_sync(book_id, SIMILAR)
        return counts
