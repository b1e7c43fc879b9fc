"""The Neo4j backend of the graph, run only where a Neo4j server is reachable (NEO4J_URI).

Neo4j cannot run on the development machines; these tests keep its small backend honest in
environments that have one (e.g. the docker-compose stack).
"""

import os

import pytest

from corpus_assets.assets.graph import replace_book_graph
from corpus_assets.assets.text import BookText
from corpus_assets.books.chapters import Section
from corpus_assets.books.chunking import Chunk
from resources.graph import GraphResource

pytestmark = pytest.mark.skipif(not os.environ.get("NEO4J_URI"), reason="NEO4J_URI is not set: no Neo4j server to test")

BOOK = "neo4j-backend-test-book"


def test_the_same_statements_build_the_graph_on_neo4j():
    graph = GraphResource(
        neo4j_uri=os.environ["NEO4J_URI"],
        neo4j_user=os.environ.get("NEO4J_USER", "neo4j"),
        neo4j_password=os.environ.get("NEO4J_PASSWORD"),
        graph_name=os.environ.get("NEO4J_DATABASE", "neo4j"),
    )
    text = "one two three four"
    book = BookText(BOOK, "Title", None, None, "utf-8", False, text, [Section(0, "Only", 0, len(text))], "x.txt", "0" * 64, len(text))
    chunks = [Chunk(f"{BOOK}-{i}", BOOK, i, 0, "Only", word, 1, 0, 1, "0" * 64) for i, word in enumerate(text.split())]
    with graph.session() as session:
        try:
            replace_book_graph(session, book, chunks)
            replace_book_graph(session, book, chunks[:3])  # an edit: the last chunk must go
            row = session.run(
                "MATCH (c:Chunk {book_id: $b}) OPTIONAL MATCH (c)-[n:NEXT]->() RETURN count(DISTINCT c) AS chunks, count(n) AS next",
                {"b": BOOK},
            )[0]
            assert row == {"chunks": 3, "next": 2}
        finally:
            session.run("MATCH (n) WHERE n.id = $b OR n.book_id = $b DETACH DELETE n", {"b": BOOK})
