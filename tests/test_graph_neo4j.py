"""The Neo4j backend of the graph, run only where a Neo4j server is reachable (NEO4J_URI).

Neo4j cannot run on the development machines; these tests keep its small backend honest in
environments that have one (e.g. the docker-compose stack).
"""

import os

import pytest

from dagster import build_resources

from corpus_assets.books.structure import Section
from corpus_assets.books.chunking import Chunk
from resources.graph import Neo4jResource

pytestmark = pytest.mark.skipif(not os.environ.get("NEO4J_URI"), reason="NEO4J_URI is not set: no Neo4j server to test")

BOOK = "neo4j-backend-test-book"


def test_the_same_statements_build_the_graph_on_neo4j():
    graph = Neo4jResource(
        uri=os.environ["NEO4J_URI"],
        user=os.environ.get("NEO4J_USER", "neo4j"),
        password=os.environ.get("NEO4J_PASSWORD"),
        graph_name=os.environ.get("NEO4J_DATABASE", "neo4j"),
    )
    text = "one two three four"
    sections = [Section(0, "Only", 0, len(text))]
    chunks = [Chunk(f"{BOOK}-{i}", BOOK, i, 0, "Only", word, 1, 0, 1, "0" * 64) for i, word in enumerate(text.split())]
    with build_resources({"graph": graph}) as built, built.graph.session() as session:
        try:
            session.replace_book(BOOK, "Title", None, None, sections, chunks)
            session.replace_book(BOOK, "Title", None, None, sections, chunks[:3])  # an edit: the last chunk must go
            assert session.chunk_ids(BOOK) == {c.id for c in chunks[:3]}
            edges = session.next_edges(BOOK)
            assert (edges.edges, edges.one_path) == (2, True)
        finally:
            session.delete_book(BOOK)
            assert session.chunk_count(BOOK) == 0
