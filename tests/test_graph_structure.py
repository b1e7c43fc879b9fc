"""Parts in the graph, on the embedded FalkorDB: (:Book)-[:HAS_PART]->(:Part)-[:HAS_CHAPTER]->(:Chapter)."""

from dagster import build_resources

from corpus_assets.books.chunking import Chunk
from corpus_assets.books.structure import BACK, BODY, FRONT, Section

BOOK = "graph-structure-test-book"


def sections_with_parts():
    return [
        Section(0, "CONTENTS", 0, 10, FRONT),
        Section(1, "BOOK ONE · CHAPTER I", 10, 20, BODY, "BOOK ONE"),
        Section(2, "BOOK ONE · CHAPTER II", 20, 30, BODY, "BOOK ONE"),
        Section(3, "BOOK TWO · CHAPTER I", 30, 40, BODY, "BOOK TWO"),
        Section(4, "INDEX", 40, 50, BACK),
    ]


def chunks_of(sections):
    body = [s for s in sections if s.kind == BODY]
    return [Chunk(f"{BOOK}-{i}", BOOK, i, s.index, s.title, f"text {i}", 2, s.start, s.end, f"{i:064d}")
            for i, s in enumerate(body)]


def test_parts_hang_from_the_book_and_chapters_from_their_part_and_a_new_structure_replaces_the_old(graph):
    sections = sections_with_parts()
    with build_resources({"graph": graph}) as built, built.graph.session() as session:
        try:
            counts = session.replace_book(BOOK, "Title", None, None, sections, chunks_of(sections))
            assert (counts["parts"], counts["chapters"]) == (2, 5)
            assert session.structure_counts(BOOK) == {"chapters": 5, "parts": 2, "next_edges": 2, "part_of": 3}
            assert session.structure_violations(BOOK) == {"loose_chapters": 0, "loose_parts": 0}
            rows = session._runner.run(
                "MATCH (:Book {id: $book})-[:HAS_PART]->(p:Part)-[:HAS_CHAPTER]->(c:Chapter) "
                "RETURN p.title AS part, c.title AS chapter, c.kind AS kind ORDER BY c.index", {"book": BOOK})
            assert [(r["part"], r["chapter"]) for r in rows] == [
                ("BOOK ONE", "BOOK ONE · CHAPTER I"), ("BOOK ONE", "BOOK ONE · CHAPTER II"),
                ("BOOK TWO", "BOOK TWO · CHAPTER I")]
            kinds = session._runner.run("MATCH (:Book {id: $book})-[:HAS_CHAPTER]->(c:Chapter) "
                                        "RETURN c.kind AS kind ORDER BY c.index", {"book": BOOK})
            assert [r["kind"] for r in kinds] == [FRONT, BACK]

            # Re-parsed without parts (a new parser version): no Part is left, every chapter hangs from the book.
            flat = [Section(s.index, s.title, s.start, s.end, s.kind) for s in sections]
            session.replace_book(BOOK, "Title", None, None, flat, chunks_of(flat))
            session.replace_book(BOOK, "Title", None, None, flat, chunks_of(flat))  # idempotent
            assert session.structure_counts(BOOK) == {"chapters": 5, "parts": 0, "next_edges": 2, "part_of": 3}
            assert session.structure_violations(BOOK) == {"loose_chapters": 0, "loose_parts": 0}
            assert session._runner.run("MATCH (p:Part {book_id: $book}) RETURN count(p) AS n", {"book": BOOK})[0]["n"] == 0
        finally:
            session.delete_book(BOOK)
    with build_resources({"graph": graph}) as built, built.graph.session() as session:
        assert session._runner.run("MATCH (n) WHERE n.book_id = $book RETURN count(n) AS n", {"book": BOOK})[0]["n"] == 0
