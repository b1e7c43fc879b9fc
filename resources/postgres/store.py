"""Every query corpus makes to its Postgres database, named for what it does.

Postgres is the source of truth: `books` (one row per book, with its chapters), `chunks` (text,
offsets and vector per chunk, HNSW-indexed) and `book_sync` (which version of each book every
store holds). Rows come back as dataclasses by column name. All values are parameters; the only
identifiers in SQL text are constants of this module or names read from the catalog.
"""

import os
import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import psycopg
from psycopg import Connection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from corpus_assets.books.structure import BODY, STRUCTURE_VERSION, Section
from corpus_assets.books.chunking import Chunk
from corpus_assets.books.errors import BookError
from resources.errors import SearchTimeout
from resources.settings import SEARCH_TIMEOUT_ENV

HNSW_INDEX = "chunks_embedding_hnsw_idx"
EMBEDDING_DIM = 384  # chunks.embedding is vector(384) (migration 0001)
# The index holds each vector as halfvec (16-bit floats): 1,483 bytes a row in a build's memory instead
# of 2,252 and an index 0.57x the size, at the same recall@10 (ef 200: 0.981 against 0.977 over float32,
# 66,853 MiniLM chunks, bench/halfvec.py). A nearest-neighbour query orders by this expression (any other
# is an exact scan of the table) and scores with the stored float32 vector.
_HALF = f"embedding::halfvec({EMBEDDING_DIM})"
NEAREST_TO_QUERY = f"{_HALF} <=> %(query)s::halfvec({EMBEDDING_DIM})"  # ORDER BY it, with the vector as `query`
# The index as migration 0011 defines it (m 16, ef_construction 128), for a bulk load's rebuild.
_CREATE_HNSW_INDEX = (f"CREATE INDEX IF NOT EXISTS {HNSW_INDEX} ON chunks "
                      f"USING hnsw (({_HALF}) halfvec_cosine_ops) WITH (m = 16, ef_construction = 128)")
# One worker beside the leader per further core, as Postgres sizes a parallel build.
BUILD_WORKERS = max((os.cpu_count() or 1) - 1, 0)
# pgvector's NOTICE when a build's graph outgrows maintenance_work_mem: the rest go in at insert cost.
GRAPH_SPILLED = re.compile(r"hnsw graph no longer fits into maintenance_work_mem after (\d+) tuples")
# Held (a session advisory lock) by the `corpus ingest` that loads in bulk, for its whole length: the
# library sensor waits meanwhile, and a dropped connection (the command killed) lets it go ("bulk" in ASCII).
BULK_LOAD_LOCK_KEY = 0x62756C6B
# Chunks keyword search scores with BM25, out of those holding the most (idf-weighted) query words.
KEYWORD_CANDIDATES = 300
CHUNK_COLUMNS = "id, book_id, ordinal, chapter_index, chapter, text, token_count, char_start, char_end, content_sha256"
_COPY_CHUNKS = f"COPY chunks ({CHUNK_COLUMNS}, embedding, model, text_config) FROM STDIN WITH (FORMAT BINARY)"
# char(64) has the same binary wire format as text.
_CHUNK_TYPES = ["text", "text", "int4", "int4", "text", "text", "int4", "int4", "int4", "text", "vector", "text", "text"]
_UPSERT_BOOK = """
INSERT INTO books (id, title, subtitle, author, language, source_file, content_sha256, bytes, encoding,
                   chapter_count, chunk_count, chapters, structure_version, structure_doubts)
VALUES (%(id)s, %(title)s, %(subtitle)s, %(author)s, %(language)s, %(source_file)s, %(content_sha256)s, %(bytes)s,
        %(encoding)s, %(chapter_count)s, %(chunk_count)s, %(chapters)s, %(structure_version)s, %(structure_doubts)s)
ON CONFLICT (id) DO UPDATE SET
    structure_version = EXCLUDED.structure_version, structure_doubts = EXCLUDED.structure_doubts, title = EXCLUDED.title, subtitle = EXCLUDED.subtitle, author = EXCLUDED.author, language = EXCLUDED.language,
    source_file = EXCLUDED.source_file, content_sha256 = EXCLUDED.content_sha256,
    bytes = EXCLUDED.bytes, encoding = EXCLUDED.encoding, chapter_count = EXCLUDED.chapter_count,
    chunk_count = EXCLUDED.chunk_count, chapters = EXCLUDED.chapters, updated_at = now()
"""
# For every chunk of the book, its nearest chunks of other books through the HNSW index.
_NEIGHBOURS_IN_OTHER_BOOKS = f"""
SELECT c.id AS from_id, n.id AS to_id, 1 - n.distance AS score
FROM chunks c
CROSS JOIN LATERAL (
    SELECT o.id, o.embedding <=> c.embedding AS distance
    FROM chunks o
    WHERE o.book_id <> c.book_id
    ORDER BY o.{_HALF} <=> c.{_HALF}
    LIMIT %(k)s
) n
WHERE c.book_id = %(book_id)s AND 1 - n.distance >= %(min_score)s
"""
# Keyword search: the query's words under each configuration the library's languages use; their
# document frequencies from ANALYZE's statistics of text_search; then BM25 over KEYWORD_CANDIDATES
# chunks (approximate: the candidates are those holding the most idf of the selecting words,
# `retrieval.keyword.weigh`).
# Each word of the query with its lexemes under each configuration (none: a stop word there).
_QUERY_ANALYSIS = """
SELECT c.config::text AS config, d.token, d.lexemes
FROM (SELECT DISTINCT corpus_text_config(language)::regconfig AS config
      FROM unnest(%(languages)s::text[]) AS languages(language)) c,
     ts_debug(c.config, %(query)s) d
WHERE d.lexemes IS NOT NULL
"""
_WORD_STATS = """
SELECT (SELECT reltuples FROM pg_class WHERE oid = 'chunks'::regclass) AS chunks,
       (SELECT avg(token_count) FROM (SELECT token_count FROM chunks LIMIT 10000) s) AS avg_tokens,
       (SELECT most_common_elems::text::text[] FROM pg_stats
        WHERE schemaname = current_schema() AND tablename = 'chunks' AND attname = 'text_search') AS words,
       (SELECT most_common_elem_freqs FROM pg_stats
        WHERE schemaname = current_schema() AND tablename = 'chunks' AND attname = 'text_search') AS shares
"""
_KEYWORD_SEARCH = """
WITH words AS (
    SELECT * FROM unnest(%(words)s::text[], %(idfs)s::float8[], %(queries)s::tsquery[]) AS w(word, idf, query)
),
-- Candidates: the chunks holding the selecting words, by the sum of their idfs (one GIN lookup per
-- word, no tsvector read); then BM25 (term frequency, saturated and length-normalized) on those only,
-- from each candidate's tsvector cut to the query's words first (setweight marks them, ts_filter keeps
-- them: C functions; unnesting the whole tsvector made ~100 rows per chunk to join: 18 -> 12 ms p50 at 944k chunks).
candidates AS (
    SELECT c.id, sum(w.idf) AS weight
    FROM words w
    CROSS JOIN LATERAL (
        SELECT id FROM chunks
        WHERE text_search @@ w.query AND (%(books)s::text[] IS NULL OR book_id = ANY(%(books)s))
    ) c
    WHERE w.query IS NOT NULL
    GROUP BY c.id
    ORDER BY weight DESC, c.id
    LIMIT %(candidates)s
),
scored AS (
    SELECT m.id, sum(w.idf * cardinality(t.positions) * (%(k1)s + 1) / (cardinality(t.positions)
               + %(k1)s * (1 - %(b)s + %(b)s * m.token_count / %(avg_tokens)s))) AS score
    FROM candidates k JOIN chunks m ON m.id = k.id
    CROSS JOIN LATERAL unnest(ts_filter(setweight(m.text_search, 'A', %(words)s::text[]), '{a}')) AS t
    JOIN words w ON w.word = t.lexeme
    GROUP BY m.id
    ORDER BY score DESC, m.id
    LIMIT %(limit)s
)
SELECT c.id AS chunk_id, c.book_id, b.title, c.chapter, c.ordinal, c.text, s.score::float8 AS score
FROM scored s JOIN chunks c ON c.id = s.id JOIN books b ON b.id = c.book_id
ORDER BY s.score DESC, s.id
"""
_FINDABLE = f"""
WITH sample AS (
    SELECT id, book_id, embedding FROM (
        SELECT id, book_id, embedding, row_number() OVER (PARTITION BY book_id ORDER BY md5(id)) AS n
        FROM chunks WHERE book_id = ANY(%(book_ids)s)
    ) numbered
    WHERE n <= %(per_book)s
)
SELECT s.book_id, count(*) AS queried, count(*) FILTER (WHERE EXISTS (
    SELECT 1 FROM (
        SELECT o.id, o.embedding <=> s.embedding AS distance FROM chunks o
        ORDER BY o.{_HALF} <=> s.{_HALF}
        LIMIT 10
    ) top
    WHERE top.id = s.id OR top.distance < 1e-6
)) AS found
FROM sample s
GROUP BY s.book_id
"""
_SEARCH = f"""
WITH hits AS (
    SELECT id, book_id, ordinal, chapter, text, embedding <=> %(query)s AS distance
    FROM chunks
    WHERE %(books)s::text[] IS NULL OR book_id = ANY(%(books)s)
    ORDER BY {NEAREST_TO_QUERY}
    LIMIT %(limit)s
)
SELECT hits.id AS chunk_id, hits.book_id, books.title, hits.chapter, hits.ordinal, hits.text,
       1 - hits.distance AS score
FROM hits JOIN books ON books.id = hits.book_id
ORDER BY hits.distance
"""


@dataclass(frozen=True)
class BookRow:
    """A book as the `books` table holds it."""

    id: str
    title: str
    author: str | None
    language: str | None
    source_file: str
    content_sha256: str
    bytes: int
    encoding: str
    sections: list[Section]
    subtitle: str | None = None
    structure_doubts: list[str] = field(default_factory=list)


def _ids(books: Sequence[str] | None) -> list[str] | None:
    if isinstance(books, str):
        raise TypeError("books is a list of book ids, not one id")
    return None if books is None else list(books)


def _tsquery(word: str) -> str:
    """A word as a tsquery literal: quoted, its quotes and backslashes doubled (tsquery syntax)."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class WordStats:
    chunks: float
    avg_tokens: float
    shares: dict[str, float]  # share of chunks holding the word, for the most common words
    rarest_listed: float  # a word not in `shares` is held by fewer chunks than this share


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str
    book_id: str
    title: str
    chapter: str
    ordinal: int
    text: str
    score: float  # cosine similarity (vector search), BM25 (keyword) or fused rank score (hybrid)


@dataclass(frozen=True)
class BookSummary:
    id: str
    title: str
    author: str | None
    language: str | None
    chapters: int
    chunks: int
    tokens: int
    doubts: list[str]  # why its chapters may be wrong
    updated_at: datetime  # when its rows were last written


@dataclass(frozen=True)
class FileHash:
    book_id: str
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class BookFailure:
    """A book's last failure: the stage, the problem, and whether its file is at fault (not retried
    until the file changes) or something else was (a store down: retried)."""

    book_id: str
    sha256: str | None
    stage: str
    problem: str
    bad_input: bool
    run_id: str
    attempts: int = 0  # failures of this content that count (not the file's fault, nor a store's outage)


@dataclass(frozen=True)
class IndexState:
    exists: bool
    valid: bool
    definition: str


@dataclass(frozen=True)
class IndexBuild:
    built: bool  # False: a valid index was there
    rows_in_memory: int | None  # the rows the build's memory held, if the graph outgrew it (None: all)


@dataclass(frozen=True)
class VectorStats:
    chunks: int
    null_embeddings: int
    min_dims: int | None
    max_dims: int | None
    min_norm: float | None
    max_norm: float | None
    models: list[str]


@dataclass(frozen=True)
class StoredVectors:
    """A book's chunks with their vectors, in reading order, as Postgres holds them."""

    chunks: list[Chunk]
    models: set[str]
    vectors: np.ndarray  # float32 (chunks, dimension)


class CorpusDB:
    """The corpus database on one pooled autocommit connection (use `transaction()` for atomic work)."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def transaction(self):
        return self.conn.transaction()

    # --- books -------------------------------------------------------------------------------

    def complete_book_hashes(self) -> dict[str, str]:
        """The file sha256 of every book that each store holds whole, at the version Postgres holds:
        Qdrant and the graph recorded the same book version as pgvector, and SIMILAR edges were written,
        all from the current book parser. (A book missing here was cut short: a run killed after its
        Postgres write, a store down; or it was parsed by an older version of the parser.)"""
        return dict(self.conn.execute(
            "SELECT b.id, b.content_sha256 FROM books b "
            "JOIN book_sync p ON p.book_id = b.id AND p.target = 'pgvector' "
            "JOIN book_sync q ON q.book_id = b.id AND q.target = 'qdrant' AND q.fingerprint = p.fingerprint "
            "JOIN book_sync g ON g.book_id = b.id AND g.target = 'graph' AND g.fingerprint = p.fingerprint "
            "JOIN book_sync s ON s.book_id = b.id AND s.target = 'similar' "
            "WHERE b.structure_version = %s", (STRUCTURE_VERSION,)
        ))

    def book_ids(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT id FROM books ORDER BY id")]

    # --- the library sensor's file cache -----------------------------------------------------

    def library_files(self) -> dict[str, FileHash]:
        """What the sensor last saw of each book file (a cache: a file's bytes decide, not this)."""
        with self.conn.cursor(row_factory=class_row(FileHash)) as cur:
            return {row.book_id: row for row in cur.execute(
                "SELECT book_id, size, mtime_ns, sha256 FROM library_files")}

    def record_library_files(self, seen: Sequence[FileHash], gone: Sequence[str]) -> None:
        """Upsert the files hashed this tick and forget the files no longer in the library."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            if seen:
                cur.executemany(
                    "INSERT INTO library_files (book_id, size, mtime_ns, sha256) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (book_id) DO UPDATE SET size = EXCLUDED.size, mtime_ns = EXCLUDED.mtime_ns, "
                    "sha256 = EXCLUDED.sha256",
                    [(f.book_id, f.size, f.mtime_ns, f.sha256) for f in seen],
                )
            if gone:
                cur.execute("DELETE FROM library_files WHERE book_id = ANY(%s)", (list(gone),))

    # --- each book's last failure -------------------------------------------------------------

    def book_failures(self, book_ids: Sequence[str] | None = None) -> dict[str, BookFailure]:
        """Each book's last failure (of `book_ids`, if given)."""
        with self.conn.cursor(row_factory=class_row(BookFailure)) as cur:
            return {row.book_id: row for row in cur.execute(
                "SELECT book_id, sha256, stage, problem, bad_input, run_id, attempts FROM book_failures "
                "WHERE %(ids)s::text[] IS NULL OR book_id = ANY(%(ids)s)",
                {"ids": None if book_ids is None else list(book_ids)})}

    def record_book_failures(self, failures: Sequence[BookFailure], counted: Collection[str] = ()) -> None:
        """Each book's latest failure replaces its earlier one; the books in `counted` add one to their
        attempts on the same content (a new content starts again)."""
        if not failures:
            return
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO book_failures (book_id, sha256, stage, problem, bad_input, run_id, attempts) "
                "VALUES (%(book_id)s, %(sha256)s, %(stage)s, %(problem)s, %(bad_input)s, %(run_id)s, %(add)s) "
                "ON CONFLICT (book_id) DO UPDATE SET sha256 = EXCLUDED.sha256, "
                "stage = EXCLUDED.stage, problem = EXCLUDED.problem, bad_input = EXCLUDED.bad_input, "
                "run_id = EXCLUDED.run_id, failed_at = now(), attempts = EXCLUDED.attempts + CASE "
                "WHEN book_failures.sha256 IS NOT DISTINCT FROM EXCLUDED.sha256 THEN book_failures.attempts ELSE 0 END",
                [{"book_id": f.book_id, "sha256": f.sha256, "stage": f.stage, "problem": f.problem,
                  "bad_input": f.bad_input, "run_id": f.run_id, "add": int(f.book_id in counted)} for f in failures],
            )

    def forget_book_failures(self, book_ids: Sequence[str]) -> None:
        """The books succeeded, or are gone."""
        self.conn.execute("DELETE FROM book_failures WHERE book_id = ANY(%s)", (list(book_ids),))

    def chunk_counts(self, book_ids: Sequence[str]) -> dict[str, int]:
        """The chunk count each book's row records (books not stored are absent)."""
        return dict(self.conn.execute("SELECT id, chunk_count FROM books WHERE id = ANY(%s)", (list(book_ids),)))

    def languages(self) -> list[str | None]:
        """The languages of the library's books (their Gutenberg headers'), each once."""
        return [language for (language,) in self.conn.execute("SELECT DISTINCT language FROM books")]

    def titles(self, book_ids: Sequence[str]) -> dict[str, str]:
        return dict(self.conn.execute("SELECT id, title FROM books WHERE id = ANY(%s)", (list(book_ids),)))

    def stored_book(self, book_id: str) -> BookRow | None:
        row = self.conn.execute(
            "SELECT id, title, author, language, source_file, content_sha256, bytes, encoding, chapters, subtitle, "
            "structure_doubts FROM books WHERE id = %s", (book_id,),
        ).fetchone()
        if row is None:
            return None
        # chapters is NULL for books written before it existed: the chapters that have chunks.
        sections = [Section(*chapter) for chapter in row[8]] if row[8] is not None else [
            Section(index, title, 0, 0) for index, title in self.conn.execute(
                "SELECT DISTINCT chapter_index, chapter FROM chunks WHERE book_id = %s ORDER BY 1", (book_id,))
        ]
        return BookRow(*row[:8], sections=sections, subtitle=row[9], structure_doubts=row[10])

    def book_summaries(self) -> list[BookSummary]:
        """Per book: chapters, chunks and tokens as stored."""
        with self.conn.cursor(row_factory=class_row(BookSummary)) as cursor:
            return cursor.execute(
                """
                SELECT b.id, b.title, b.author, b.language, b.chapter_count AS chapters, count(c.id) AS chunks,
                       coalesce(sum(c.token_count), 0) AS tokens, b.structure_doubts AS doubts, b.updated_at
                FROM books b LEFT JOIN chunks c ON c.book_id = b.id
                GROUP BY b.id ORDER BY b.id
                """
            ).fetchall()

    # --- chunks ------------------------------------------------------------------------------

    def book_chunks(self, book_id: str) -> list[Chunk]:
        """The book's chunks in reading order."""
        with self.conn.cursor(row_factory=class_row(Chunk)) as cursor:
            return cursor.execute(
                f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE book_id = %s ORDER BY ordinal", (book_id,)
            ).fetchall()

    def has_chunks(self) -> bool:
        return self.conn.execute("SELECT EXISTS (SELECT 1 FROM chunks)").fetchone()[0]

    def total_chunks(self) -> int:
        return self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def chunk_count(self, book_id: str) -> int:
        return self.conn.execute("SELECT count(*) FROM chunks WHERE book_id = %s", (book_id,)).fetchone()[0]

    def chunk_ids(self, book_id: str) -> set[str]:
        return {row[0] for row in self.conn.execute("SELECT id FROM chunks WHERE book_id = %s", (book_id,))}

    def chunk_ids_by_book(self) -> dict[str, set[str]]:
        """Every stored book's chunk ids (books without chunks included, with none)."""
        found: dict[str, set[str]] = {book_id: set() for book_id in self.book_ids()}
        for book_id, chunk_id in self.conn.execute("SELECT book_id, id FROM chunks"):
            found[book_id].add(chunk_id)
        return found

    def stored_vectors(self, book_id: str) -> StoredVectors:
        rows = self.conn.execute(
            f"SELECT {CHUNK_COLUMNS}, embedding, model FROM chunks WHERE book_id = %s ORDER BY ordinal", (book_id,)
        ).fetchall()
        vectors = (np.stack([r[10].to_numpy() for r in rows]).astype(np.float32) if rows
                   else np.empty((0, 0), np.float32))
        return StoredVectors([Chunk(*r[:10]) for r in rows], {r[11] for r in rows}, vectors)

    def cached_vectors(self, model: str, content_hashes: set[str]) -> dict[str, np.ndarray]:
        """Stored vectors by chunk-text sha256, for texts this model has embedded before."""
        rows = self.conn.execute(
            "SELECT DISTINCT ON (content_sha256) content_sha256, embedding FROM chunks "
            "WHERE model = %s AND content_sha256 = ANY(%s)",
            (model, list(content_hashes)),
        )
        return {sha: vector.to_numpy().astype(np.float32, copy=False) for sha, vector in rows}

    def embedding_dimension(self) -> int:
        """The dimension of the `chunks.embedding` column (vector(n))."""
        return int(self.conn.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        ).fetchone()[0])

    def replace_book_chunks(
        self, book: BookRow, chunks: Sequence[Chunk], vectors: np.ndarray, model: str, synced: dict[str, str]
    ) -> int:
        """Replace the book's row and all its chunks in one transaction; return chunk rows deleted.

        Readers see the old chunks or the new ones, never a mix; a second writer of the same book
        waits on the book's advisory lock. `synced` ({target: fingerprint}) is recorded in the same
        transaction, so the record never claims more than was committed.
        """
        try:
            return self._replace_book_chunks(book, chunks, vectors, model, synced)
        except (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded) as error:
            # Postgres refuses this text (a character it cannot store, a text too long to index): the
            # same bytes fail the same way every time, so it is the file's fault, not a retry.
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise BookError(f"Postgres refused the book's text: {reason}") from None

    def _replace_book_chunks(
        self, book: BookRow, chunks: Sequence[Chunk], vectors: np.ndarray, model: str, synced: dict[str, str]
    ) -> int:
        with self.conn.transaction():
            self._lock_book(book.id)
            self.conn.execute(_UPSERT_BOOK, {
                "id": book.id, "title": book.title, "subtitle": book.subtitle, "author": book.author,
                "language": book.language,
                "source_file": book.source_file, "content_sha256": book.content_sha256, "bytes": book.bytes,
                "encoding": book.encoding, "chapter_count": sum(s.kind == BODY for s in book.sections), "chunk_count": len(chunks),
                "chapters": Jsonb([[s.index, s.title, s.start, s.end, s.kind, s.part] for s in book.sections]),
                "structure_version": STRUCTURE_VERSION, "structure_doubts": book.structure_doubts,
            })
            deleted = self.conn.execute("DELETE FROM chunks WHERE book_id = %s", (book.id,)).rowcount
            # The text search configuration (stemming, stop words) of the book's language.
            (text_config,) = self.conn.execute("SELECT corpus_text_config(%s)", (book.language,)).fetchone()
            with self.conn.cursor().copy(_COPY_CHUNKS) as copy:
                copy.set_types(_CHUNK_TYPES)
                for chunk, vector in zip(chunks, vectors, strict=True):
                    copy.write_row((chunk.id, chunk.book_id, chunk.ordinal, chunk.chapter_index, chunk.chapter,
                                    chunk.text, chunk.token_count, chunk.char_start, chunk.char_end,
                                    chunk.content_sha256, vector, model, text_config))
            for target, version in synced.items():
                self.record_sync(book.id, target, version)
        return deleted

    def delete_book(self, book_id: str) -> int:
        """Delete the book's row, chunks and last failure (its sync records cascade); return chunk rows deleted."""
        with self.conn.transaction():
            self._lock_book(book_id)
            deleted = self.conn.execute("DELETE FROM chunks WHERE book_id = %s", (book_id,)).rowcount
            self.conn.execute("DELETE FROM books WHERE id = %s", (book_id,))
            self.conn.execute("DELETE FROM book_failures WHERE book_id = %s", (book_id,))
        return deleted

    def _lock_book(self, book_id: str) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (book_id,))

    # --- which version each store holds ------------------------------------------------------

    def synced_version(self, book_id: str, target: str) -> str | None:
        row = self.conn.execute(
            "SELECT fingerprint FROM book_sync WHERE book_id = %s AND target = %s", (book_id, target)
        ).fetchone()
        return row[0] if row else None

    def record_sync(self, book_id: str, target: str, version: str) -> None:
        """Note that `target` now holds `version` of the book (whose `books` row must exist)."""
        self.conn.execute(
            "INSERT INTO book_sync (book_id, target, fingerprint) VALUES (%s, %s, %s) "
            "ON CONFLICT (book_id, target) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, synced_at = now()",
            (book_id, target, version),
        )

    def forget_sync(self, book_id: str, target: str) -> None:
        """Note that `target` may no longer hold what was recorded, so the next run writes it."""
        self.conn.execute("DELETE FROM book_sync WHERE book_id = %s AND target = %s", (book_id, target))

    # --- search ------------------------------------------------------------------------------

    def search(self, vector: np.ndarray, limit: int, books: Sequence[str] | None, ef_search: int) -> list[SearchHit]:
        """The `limit` chunks nearest to `vector` (cosine) through the HNSW index, optionally in some books."""
        with self.conn.transaction():
            self._hnsw_settings(ef_search)
            if books is not None:
                # A filter drops index candidates of other books: the scan goes on until `limit` pass it.
                self.conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            with self.conn.cursor(row_factory=class_row(SearchHit)) as cursor:
                return cursor.execute(_SEARCH, {"query": vector, "books": _ids(books), "limit": limit}).fetchall()

    @contextmanager
    def bounded(self, timeout_ms: float | None) -> Iterator["CorpusDB"]:
        """A transaction whose statements Postgres stops after `timeout_ms` each (`SearchTimeout`): a
        search never holds a connection and a core for long, whatever it asks."""
        try:
            with self.conn.transaction():
                if timeout_ms:
                    self.conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(timeout_ms)}ms",))
                yield self
        except psycopg.errors.QueryCanceled:
            raise SearchTimeout(f"the search took over {timeout_ms:.0f} ms and was stopped "
                                f"({SEARCH_TIMEOUT_ENV})") from None

    def query_analysis(self, query: str, languages: Sequence[str | None]) -> dict[str, list[tuple[str, list[str]]]]:
        """The query's words as keyword search indexes them, under the configuration of each of
        `languages` (the library's, from `languages()`): {configuration: [(word, its lexemes: none
        for a stop word)]}."""
        analysis: dict[str, list[tuple[str, list[str]]]] = {}
        for config, token, lexemes in self.conn.execute(_QUERY_ANALYSIS, {"query": query, "languages": list(languages)}):
            analysis.setdefault(config, []).append((token, lexemes))
        return analysis

    def word_stats(self) -> WordStats:
        """What BM25 needs: chunks, their mean token count, and the share of chunks holding each of
        the most common words (ANALYZE's statistics of text_search)."""
        chunks, avg_tokens, words, shares = self.conn.execute(_WORD_STATS).fetchone()
        listed = dict(zip(words or [], shares or [], strict=False))  # the shares end with min, max, nulls
        return WordStats(chunks=max(float(chunks or 0), 1.0), avg_tokens=float(avg_tokens or 1.0), shares=listed,
                         rarest_listed=min(listed.values(), default=0.0))

    def keyword_search(self, words: dict[str, float], matching: list[str], limit: int,
                       books: Sequence[str] | None, avg_tokens: float, k1: float = 1.2, b: float = 0.75) -> list[SearchHit]:
        """The `limit` chunks with the best BM25 score for `words` ({word: idf}) among the best
        candidates holding words of `matching`, optionally in some books."""
        if not matching:
            return []
        selecting = set(matching)
        with self.conn.cursor(row_factory=class_row(SearchHit)) as cursor:
            return cursor.execute(_KEYWORD_SEARCH, {
                "words": list(words), "idfs": list(words.values()),
                "queries": [_tsquery(w) if w in selecting else None for w in words],
                "limit": limit, "candidates": max(KEYWORD_CANDIDATES, 2 * limit), "books": _ids(books),
                "avg_tokens": avg_tokens, "k1": k1, "b": b,
            }).fetchall()

    def chapter_passages(self, book_id: str, chapter_index: int) -> list[SearchHit]:
        """A chapter's chunks in reading order (score 0)."""
        with self.conn.cursor(row_factory=class_row(SearchHit)) as cursor:
            return cursor.execute(
                "SELECT c.id AS chunk_id, c.book_id, b.title, c.chapter, c.ordinal, c.text, 0.0::float8 AS score "
                "FROM chunks c JOIN books b ON b.id = c.book_id WHERE c.book_id = %s AND c.chapter_index = %s "
                "ORDER BY c.ordinal", (book_id, chapter_index),
            ).fetchall()

    def chunks_by_id(self, chunk_ids: Sequence[str]) -> dict[str, SearchHit]:
        """Chunks with their book title (score 0), by id."""
        with self.conn.cursor(row_factory=class_row(SearchHit)) as cursor:
            rows = cursor.execute(
                "SELECT c.id AS chunk_id, c.book_id, b.title, c.chapter, c.ordinal, c.text, 0.0::float8 AS score "
                "FROM chunks c JOIN books b ON b.id = c.book_id WHERE c.id = ANY(%s)", (list(chunk_ids),),
            ).fetchall()
        return {hit.chunk_id: hit for hit in rows}

    def similar_pairs(self, book_id: str, top_k: int, min_score: float, batch: int) -> Iterator[list[dict]]:
        """The book's (chunk, nearest chunk of another book, score) pairs in batches, from a
        server-side cursor: a 50 MB book's ~280k pairs never sit in memory at once."""
        with self.conn.transaction():
            # A filtered HNSW scan must be allowed to continue past ef_search candidates to fill each LIMIT.
            self.conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            # Below some tens of thousands of rows the planner prefers an exact scan per chunk, which
            # makes the step quadratic (75 chunks/s at 11k chunks); the index is ~5x faster.
            self.conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
            with self.conn.cursor(name="similar_pairs") as cursor:
                cursor.execute(_NEIGHBOURS_IN_OTHER_BOOKS, {"k": top_k, "book_id": book_id, "min_score": min_score})
                while rows := cursor.fetchmany(batch):
                    yield [{"from_id": a, "to_id": b, "score": float(score)} for a, b, score in rows]

    def _hnsw_settings(self, ef_search: int) -> None:
        self.conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef_search),))
        # A filtered HNSW scan stops at ef_search candidates and can return too few rows unless it may go on.
        self.conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")

    # --- index health ------------------------------------------------------------------------

    def hnsw_index_state(self) -> IndexState:
        row = self.conn.execute(
            "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s", (HNSW_INDEX,),
        ).fetchone()
        return IndexState(exists=row is not None, valid=bool(row and row[0]), definition=row[1] if row else "missing")

    @contextmanager
    def bulk_load_held(self) -> Iterator[bool]:
        """Hold the bulk-load lock for the block; yields False (holding nothing) if another process holds it."""
        (taken,) = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (BULK_LOAD_LOCK_KEY,)).fetchone()
        try:
            yield taken
        finally:
            if taken:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (BULK_LOAD_LOCK_KEY,))

    def bulk_load_running(self) -> bool:
        """Whether some session holds the bulk-load lock (read from pg_locks, without taking it)."""
        return self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1)",
            (BULK_LOAD_LOCK_KEY >> 32, BULK_LOAD_LOCK_KEY & 0xFFFFFFFF),
        ).fetchone()[0]

    def memory_setting_refused(self, memory: str) -> str | None:
        """Why Postgres refuses `memory` as maintenance_work_mem (a bulk load's build), else None."""
        try:
            with self.conn.transaction():
                self.conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (memory,))
        except psycopg.errors.DataError as error:  # 22023: not a size, or outside Postgres's range
            return str(error).splitlines()[0]
        return None

    def drop_hnsw_index(self) -> bool:
        """Drop the HNSW index before a bulk load (rows then go in without index upkeep); whether it existed.
        Searches meanwhile read the table exactly: right answers, slower."""
        existed = self.hnsw_index_state().exists
        self.conn.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")  # constant identifier
        return existed

    def build_hnsw_index(self, memory: str) -> IndexBuild:
        """Build the HNSW index over every row if it is missing (after a bulk load, or one cut short), in
        `memory` of maintenance_work_mem. Readers go on meanwhile (scanning the table); writers of `chunks`
        wait for the build."""
        if self.hnsw_index_state().valid:
            return IndexBuild(built=False, rows_in_memory=None)
        # An invalid index (a REINDEX CONCURRENTLY cut short) is dropped first, on its own: a DROP holds
        # off readers until its transaction ends.
        self.conn.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")  # constant identifier
        notices: list[str] = []

        def handler(diagnostic: psycopg.errors.Diagnostic) -> None:
            notices.append(diagnostic.message_primary or "")

        self.conn.add_notice_handler(handler)
        try:
            with self.conn.transaction():
                self.conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (memory,))
                self.conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, true)",
                                  (str(BUILD_WORKERS),))
                # The notice below is how a build that outgrew its memory is known: never filtered out.
                self.conn.execute("SELECT set_config('client_min_messages', 'notice', true)")
                self.conn.execute(_CREATE_HNSW_INDEX)
        finally:
            self.conn.remove_notice_handler(handler)
        held = [int(match[1]) for match in map(GRAPH_SPILLED.search, notices) if match]
        return IndexBuild(built=True, rows_in_memory=held[0] if held else None)

    def vector_stats(self, book_id: str) -> VectorStats:
        with self.conn.cursor(row_factory=class_row(VectorStats)) as cursor:
            return cursor.execute(
                """
                SELECT count(*) AS chunks, count(*) FILTER (WHERE embedding IS NULL) AS null_embeddings,
                       min(vector_dims(embedding)) AS min_dims, max(vector_dims(embedding)) AS max_dims,
                       min(vector_norm(embedding)) AS min_norm, max(vector_norm(embedding)) AS max_norm,
                       coalesce(array_agg(DISTINCT model), '{}') AS models
                FROM chunks WHERE book_id = %s
                """,
                (book_id,),
            ).fetchone()

    def findable(self, book_ids: Sequence[str], per_book: int, ef_search: int) -> dict[str, tuple[int, int]]:
        """Each book's (chunks queried, chunks found): `per_book` of its chunks (md5 of the id picks
        them) searched by their own vector through the HNSW index over the whole table, found when
        the top 10 holds the chunk itself or an identical vector (a repeated passage)."""
        with self.conn.transaction():
            self.conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef_search),))
            # Small tables would be scanned exactly; the check is about what the index finds.
            self.conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
            rows = self.conn.execute(_FINDABLE, {"book_ids": list(book_ids), "per_book": per_book}, prepare=False)
            return {book_id: (queried, found) for book_id, queried, found in rows}

    def vacuum_and_reindex(self) -> list[str]:
        """VACUUM (ANALYZE) the corpus tables and rebuild invalid indexes of `chunks`; return the rebuilt.

        Needs autocommit (no open transaction): VACUUM and REINDEX CONCURRENTLY cannot run in one.
        """
        self.conn.execute("VACUUM (ANALYZE) books, chunks")
        invalid = [name for (name,) in self.conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = 'chunks' AND NOT i.indisvalid"
        )]
        for name in invalid:
            self.conn.execute(f'REINDEX INDEX CONCURRENTLY "{name}"')  # name read from the catalog, not from input
        return invalid
