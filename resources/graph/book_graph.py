"""Every Cypher statement corpus runs, named for what it does: the same openCypher on FalkorDB and Neo4j.

(:Book)-[:HAS_CHAPTER]->(:Chapter)-[:HAS_CHUNK]->(:Chunk), or (:Book)-[:HAS_PART]->(:Part)-[:HAS_CHAPTER]->
(:Chapter) for the chapters of a book's parts (a Chapter's `kind` is front, body or back matter:
only body chapters have chunks unless CORPUS_INDEX_MATTER is set); (:Chunk)-[:PART_OF]->(:Book) and
(:Chunk)-[:NEXT]->(:Chunk) in reading order; (:Chunk)-[:SIMILAR {score}]->(:Chunk) to the most
similar chunks of other books. Writes are `UNWIND $rows` batches that MERGE on indexed, unique ids;
deletes go in bounded batches too. Values are always parameters.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from corpus_assets.books.structure import BODY, Section
from corpus_assets.books.chunking import Chunk

BATCH = 1000

_MERGE_BOOK = """
MERGE (b:Book {id: $book.id})
SET b.title = $book.title, b.author = $book.author, b.language = $book.language,
    b.chapter_count = $book.chapter_count, b.chunk_count = $book.chunk_count
"""
_MERGE_PARTS = """
UNWIND $rows AS row
MATCH (b:Book {id: row.book_id})
MERGE (p:Part {id: row.id})
SET p.book_id = row.book_id, p.index = row.index, p.title = row.title
MERGE (b)-[:HAS_PART]->(p)
"""
# A chapter hangs from its part where it has one, else from its book (labels: constants, never input).
_MERGE_CHAPTERS_UNDER = """
UNWIND $rows AS row
MATCH (parent:{parent} {{id: row.parent_id}})
MERGE (c:Chapter {{id: row.id}})
SET c.book_id = row.book_id, c.index = row.index, c.title = row.title, c.kind = row.kind, c.part = row.part
MERGE (parent)-[:HAS_CHAPTER]->(c)
"""
_MERGE_CHAPTERS = {parent: _MERGE_CHAPTERS_UNDER.format(parent=parent) for parent in ("Book", "Part")}
_MERGE_CHUNKS = """
UNWIND $rows AS row
MATCH (ch:Chapter {id: row.chapter_id})
MATCH (b:Book {id: row.book_id})
MERGE (c:Chunk {id: row.id})
SET c.book_id = row.book_id, c.ordinal = row.ordinal, c.chapter_index = row.chapter_index,
    c.token_count = row.token_count, c.char_start = row.char_start, c.char_end = row.char_end
MERGE (ch)-[:HAS_CHUNK]->(c)
MERGE (c)-[:PART_OF]->(b)
"""
_MERGE_NEXT = """
UNWIND $rows AS row
MATCH (a:Chunk {id: row.from_id})
MATCH (z:Chunk {id: row.to_id})
MERGE (a)-[:NEXT]->(z)
"""
_MERGE_SIMILAR = """
UNWIND $rows AS row
MATCH (a:Chunk {id: row.from_id})
MATCH (z:Chunk {id: row.to_id})
MERGE (a)-[s:SIMILAR]->(z)
SET s.score = row.score
"""
# Each delete removes at most $limit items per statement and is repeated until nothing is left.
_DELETE_STALE_CHUNKS = """
MATCH (c:Chunk {book_id: $book_id}) WHERE NOT c.id IN $keep
WITH c LIMIT $limit DETACH DELETE c RETURN count(*) AS deleted
"""
_DELETE_STALE_CHAPTERS = """
MATCH (c:Chapter {book_id: $book_id}) WHERE NOT c.id IN $keep
WITH c LIMIT $limit DETACH DELETE c RETURN count(*) AS deleted
"""
_DELETE_STALE_PARTS = """
MATCH (p:Part {book_id: $book_id}) WHERE NOT p.id IN $keep
WITH p LIMIT $limit DETACH DELETE p RETURN count(*) AS deleted
"""
# Chapters are re-hung whole: a new structure can move a chapter under a part or out of one.
_DELETE_HAS_CHAPTER = """
MATCH ()-[r:HAS_CHAPTER]->(:Chapter {book_id: $book_id}) WITH r LIMIT $limit DELETE r RETURN count(*) AS deleted
"""
_DELETE_NEXT = """
MATCH (:Chunk {book_id: $book_id})-[r:NEXT]->() WITH r LIMIT $limit DELETE r RETURN count(*) AS deleted
"""
_DELETE_SIMILAR = """
MATCH (:Chunk {book_id: $book_id})-[r:SIMILAR]->() WITH r LIMIT $limit DELETE r RETURN count(*) AS deleted
"""
_DELETE_BOOK_NODES = """
MATCH (n) WHERE (n:Chunk OR n:Chapter OR n:Part) AND n.book_id = $book_id
WITH n LIMIT $limit DETACH DELETE n RETURN count(*) AS deleted
"""
_DELETE_BOOK_NODE = "MATCH (b:Book {id: $book_id}) WITH b LIMIT $limit DETACH DELETE b RETURN count(*) AS deleted"
_PART_OF_VIOLATIONS = """
MATCH (c:Chunk {book_id: $book_id})
OPTIONAL MATCH (c)-[:PART_OF]->(b:Book)
WITH c, collect(b.id) AS books
WHERE size(books) <> 1 OR books[0] <> $book_id
RETURN c.id AS id, books LIMIT 5
"""
# Chapters that do not hang from exactly one parent (their book or one of its parts), and parts not
# held by their book.
_STRUCTURE_VIOLATIONS = """
MATCH (c:Chapter {book_id: $book_id})
OPTIONAL MATCH (x)-[:HAS_CHAPTER]->(c)
WITH c, count(x) AS parents
WITH sum(CASE WHEN parents = 1 THEN 0 ELSE 1 END) AS loose_chapters
OPTIONAL MATCH (p:Part {book_id: $book_id})
OPTIONAL MATCH (b:Book {id: $book_id})-[:HAS_PART]->(p)
RETURN loose_chapters, count(p) - count(b) AS loose_parts
"""
_ORDINALS = """
MATCH (c:Chunk {book_id: $book_id})
RETURN count(c) AS chunks, count(DISTINCT c.ordinal) AS ordinals, min(c.ordinal) AS first, max(c.ordinal) AS last
"""
_NEXT_EDGES = """
MATCH (a:Chunk {book_id: $book_id})-[:NEXT]->(z:Chunk)
RETURN count(*) AS edges,
       sum(CASE WHEN z.book_id = $book_id AND z.ordinal = a.ordinal + 1 THEN 1 ELSE 0 END) AS in_order
"""
_SIMILAR_EDGES = """
MATCH (a:Chunk {book_id: $book_id})-[s:SIMILAR]->(z:Chunk)
RETURN count(s) AS edges, sum(CASE WHEN z.book_id = $book_id THEN 1 ELSE 0 END) AS inside
"""
# A hit's reading-order neighbours and its SIMILAR chunks (either direction).
_NEIGHBOURS = """
UNWIND $ids AS id
MATCH (c:Chunk {id: id})
OPTIONAL MATCH (p:Chunk)-[:NEXT]->(c)
OPTIONAL MATCH (c)-[:NEXT]->(n:Chunk)
OPTIONAL MATCH (c)-[s:SIMILAR]-(o:Chunk)
RETURN id, p.id AS previous, n.id AS next,
       collect(CASE WHEN o IS NULL THEN NULL ELSE [o.id, s.score] END) AS similar
"""
_BOOK_STRUCTURE = """
MATCH (b:Book {id: $book_id})
OPTIONAL MATCH (b)-[:HAS_CHAPTER]->(ch:Chapter)
WITH b, count(ch) AS direct_chapters
OPTIONAL MATCH (b)-[:HAS_PART]->(pt:Part)
WITH b, direct_chapters, count(pt) AS parts
OPTIONAL MATCH (b)-[:HAS_PART]->(:Part)-[:HAS_CHAPTER]->(pc:Chapter)
WITH b, direct_chapters, parts, count(pc) AS part_chapters
OPTIONAL MATCH (c:Chunk {book_id: $book_id})-[n:NEXT]->()
WITH b, direct_chapters, parts, part_chapters, count(n) AS next_edges
OPTIONAL MATCH (:Chunk)-[p:PART_OF]->(b)
RETURN direct_chapters + part_chapters AS chapters, parts, next_edges, count(p) AS part_of
"""


class CypherRunner(Protocol):
    """A backend's session: runs one parameterized statement, returns its rows as dicts."""

    backend: str

    def run(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class NextEdges:
    chunks: int
    distinct_ordinals: int
    first: int | None
    last: int | None
    edges: int
    in_order: int

    @property
    def one_path(self) -> bool:
        """n distinct ordinals 0..n-1 and exactly n-1 NEXT edges, each from i to i+1: one path in reading order."""
        n = self.chunks
        return (n > 0 and self.distinct_ordinals == n and self.first == 0 and self.last == n - 1
                and self.edges == self.in_order == n - 1)


@dataclass(frozen=True)
class Neighbours:
    previous: str | None
    next: str | None
    similar: list[tuple[str, float]]  # (chunk id, score), each other chunk once, best first


def chapter_id(book_id: str, index: int) -> str:
    return f"{book_id}/{index}"


def part_ids(book_id: str, sections: Sequence[Section]) -> dict[str, dict]:
    """The book's parts in reading order, by title: {title: row}."""
    parts: dict[str, dict] = {}
    for section in sections:
        if section.part and section.part not in parts:
            parts[section.part] = {"id": f"{book_id}/part/{len(parts)}", "book_id": book_id, "index": len(parts),
                                   "title": section.part}
    return parts


def _batches(rows: Sequence[dict], size: int = BATCH) -> Iterator[Sequence[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class BookGraph:
    """The book graph through one backend session."""

    def __init__(self, runner: CypherRunner):
        self._runner = runner
        self.backend = runner.backend

    def _write(self, cypher: str, rows: Sequence[dict]) -> None:
        for batch in _batches(rows):
            self._runner.run(cypher, {"rows": list(batch)})

    def _delete(self, cypher: str, **params) -> int:
        total = 0
        while deleted := self._runner.run(cypher, {**params, "limit": BATCH})[0]["deleted"]:
            total += int(deleted)
        return total

    # --- writes ------------------------------------------------------------------------------

    def replace_book(self, book_id: str, title: str, author: str | None, language: str | None,
                     sections: Sequence[Section], chunks: Sequence[Chunk]) -> dict[str, int]:
        """Write the book's nodes and edges, then remove what no longer belongs to it.

        MERGE on ids makes every statement idempotent; a re-run converges to the same graph.
        """
        self._runner.run(_MERGE_BOOK, {"book": {"id": book_id, "title": title, "author": author, "language": language,
                                                "chapter_count": sum(s.kind == BODY for s in sections),
                                                "chunk_count": len(chunks)}})
        parts = part_ids(book_id, sections)
        self._write(_MERGE_PARTS, list(parts.values()))
        chapters = [{"id": chapter_id(book_id, s.index), "book_id": book_id, "index": s.index, "title": s.title,
                     "kind": s.kind, "part": s.part, "parent_id": parts[s.part]["id"] if s.part else book_id}
                    for s in sections]
        self._delete(_DELETE_HAS_CHAPTER, book_id=book_id)
        for parent, rows in (("Book", [c for c in chapters if not c["part"]]), ("Part", [c for c in chapters if c["part"]])):
            self._write(_MERGE_CHAPTERS[parent], rows)
        self._write(_MERGE_CHUNKS, [
            {"id": c.id, "book_id": book_id, "chapter_id": chapter_id(book_id, c.chapter_index), "ordinal": c.ordinal,
             "chapter_index": c.chapter_index, "token_count": c.token_count, "char_start": c.char_start,
             "char_end": c.char_end} for c in chunks])
        stale_chunks = self._delete(_DELETE_STALE_CHUNKS, book_id=book_id, keep=[c.id for c in chunks])
        stale_chapters = self._delete(_DELETE_STALE_CHAPTERS, book_id=book_id, keep=[c["id"] for c in chapters])
        self._delete(_DELETE_STALE_PARTS, book_id=book_id, keep=[p["id"] for p in parts.values()])
        # The reading order is rewritten whole: an edit can move any chunk.
        self._delete(_DELETE_NEXT, book_id=book_id)
        self._write(_MERGE_NEXT, [{"from_id": a.id, "to_id": b.id} for a, b in zip(chunks, chunks[1:])])
        return {"parts": len(parts), "chapters": len(chapters), "chunks": len(chunks), "stale chunks deleted": stale_chunks,
                "stale chapters deleted": stale_chapters, "next edges": max(len(chunks) - 1, 0)}

    def replace_similar(self, book_id: str, pair_batches: Iterable[Sequence[dict]]) -> tuple[int, int]:
        """Replace the SIMILAR edges from the book's chunks with `pair_batches` of {from_id, to_id, score};
        return (edges written, edges replaced). Killed midway, the book's edges are partly written."""
        replaced = self._delete(_DELETE_SIMILAR, book_id=book_id)
        written = 0
        for pairs in pair_batches:
            self._write(_MERGE_SIMILAR, pairs)
            written += len(pairs)
        return written, replaced

    def delete_book(self, book_id: str) -> int:
        """Delete the book's Book, Chapter and Chunk nodes with their edges; return nodes deleted."""
        return self._delete(_DELETE_BOOK_NODES, book_id=book_id) + self._delete(_DELETE_BOOK_NODE, book_id=book_id)

    # --- reads -------------------------------------------------------------------------------

    def chunk_count(self, book_id: str) -> int:
        return int(self._runner.run("MATCH (c:Chunk {book_id: $book_id}) RETURN count(c) AS n", {"book_id": book_id})[0]["n"])

    def chunk_counts(self) -> dict[str, int]:
        """Chunk nodes per book, for every book that has any."""
        return {r["book"]: int(r["chunks"]) for r in self._runner.run(
            "MATCH (c:Chunk) RETURN c.book_id AS book, count(c) AS chunks")}

    def chunk_ids(self, book_id: str) -> set[str]:
        return {r["id"] for r in self._runner.run("MATCH (c:Chunk {book_id: $book_id}) RETURN c.id AS id",
                                                  {"book_id": book_id})}

    def book_ids(self) -> set[str]:
        """Every book with a Book node or Chunk nodes."""
        rows = self._runner.run("MATCH (b:Book) RETURN b.id AS id UNION MATCH (c:Chunk) RETURN DISTINCT c.book_id AS id")
        return {row["id"] for row in rows if row["id"] is not None}

    def part_of_violations(self, book_id: str) -> list[str]:
        """Up to 5 of the book's chunks that are not PART_OF exactly this book."""
        return [str(row["id"]) for row in self._runner.run(_PART_OF_VIOLATIONS, {"book_id": book_id})]

    def structure_violations(self, book_id: str) -> dict[str, int]:
        """Chapters without exactly one parent (book or part), parts not held by their book."""
        rows = self._runner.run(_STRUCTURE_VIOLATIONS, {"book_id": book_id})
        return {k: int(v or 0) for k, v in rows[0].items()} if rows else {"loose_chapters": 0, "loose_parts": 0}

    def next_edges(self, book_id: str) -> NextEdges:
        ordinals = self._runner.run(_ORDINALS, {"book_id": book_id})[0]
        edges = self._runner.run(_NEXT_EDGES, {"book_id": book_id})[0]
        return NextEdges(int(ordinals["chunks"]), int(ordinals["ordinals"]), ordinals["first"], ordinals["last"],
                         int(edges["edges"]), int(edges["in_order"] or 0))

    def similar_edges(self, book_id: str) -> tuple[int, int]:
        """(SIMILAR edges from the book's chunks, how many of them end inside the book)."""
        row = self._runner.run(_SIMILAR_EDGES, {"book_id": book_id})[0]
        return int(row["edges"]), int(row["inside"] or 0)

    def structure_counts(self, book_id: str) -> dict[str, int]:
        """The book's chapters (under the book or its parts), parts, NEXT edges and PART_OF edges."""
        rows = self._runner.run(_BOOK_STRUCTURE, {"book_id": book_id})
        return {k: int(v) for k, v in rows[0].items()} if rows else {"chapters": 0, "parts": 0, "next_edges": 0,
                                                                       "part_of": 0}

    def neighbours(self, chunk_ids: Sequence[str]) -> dict[str, Neighbours]:
        """Each chunk's reading-order neighbours and SIMILAR chunks (either direction, each once)."""
        found = {}
        for row in self._runner.run(_NEIGHBOURS, {"ids": list(chunk_ids)}):
            best: dict[str, float] = {}
            for pair in row["similar"]:
                if pair is not None:  # an edge in each direction between the same two chunks counts once
                    best[pair[0]] = max(best.get(pair[0], 0.0), float(pair[1]))
            found[row["id"]] = Neighbours(row["previous"], row["next"],
                                          sorted(best.items(), key=lambda item: -item[1]))
        return found
