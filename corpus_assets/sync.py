"""Which version of each book every store holds, so that re-running an unchanged book writes nothing.

After each successful write of a book, Postgres (the source of truth) records a fingerprint of what
was written (`CorpusDB.record_sync`), per target: "chunks" (the chunker's inputs), "pgvector", "qdrant", "graph", "similar".
A later run skips a book whose fingerprint is unchanged *and* whose item count in the store still
matches; a count that drifted (points deleted by hand, a write killed midway) is rewritten. The
stores' `rewrite` config forces a write, e.g. to repair drift the checks found.
"""

import hashlib
from collections.abc import Sequence

from dagster import Config
from pydantic import Field

from corpus_assets.assets.text import BookText
from corpus_assets.books.chunking import Chunk


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
