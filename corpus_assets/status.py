"""What is stored, store by store: books and chunks in Postgres, points in Qdrant, nodes in the graph."""

import os
from dataclasses import dataclass

from resources.graph import GraphResource
from resources.postgres import PostgresResource
from resources.qdrant import QdrantResource, points_per_book
from resources.settings import DATABASE_URL_ENV


def stores_from_environment() -> tuple[PostgresResource, QdrantResource, GraphResource]:
    """The stores as the Definitions configure them, for code that runs outside Dagster (the CLI)."""
    env = os.environ.get
    return (
        PostgresResource(database_url=env(DATABASE_URL_ENV)),
        QdrantResource(url=env("QDRANT_URL"), api_key=env("QDRANT_API_KEY")),
        GraphResource(neo4j_uri=env("NEO4J_URI"), neo4j_user=env("NEO4J_USER") or "neo4j", neo4j_password=env("NEO4J_PASSWORD")),
    )


@dataclass(frozen=True)
class BookStats:
    id: str
    title: str
    author: str | None
    chapters: int
    chunks: int
    tokens: int
    qdrant_points: int
    graph_chunks: int


@dataclass(frozen=True)
class CorpusSummary:
    books: list[BookStats]
    hnsw_index_valid: bool

    def disagreeing(self) -> list[BookStats]:
        """Books whose Qdrant points or graph chunks differ in number from their Postgres chunks."""
        return [b for b in self.books if not b.chunks == b.qdrant_points == b.graph_chunks]

    def total(self, field: str) -> int:
        return sum(getattr(book, field) for book in self.books)


def corpus_summary() -> CorpusSummary:
    postgres, qdrant, graph = stores_from_environment()
    with postgres.connect() as conn:
        rows = conn.execute(
            """
            SELECT b.id, b.title, b.author, b.chapter_count, count(c.id), coalesce(sum(c.token_count), 0)
            FROM books b LEFT JOIN chunks c ON c.book_id = b.id
            GROUP BY b.id ORDER BY b.id
            """
        ).fetchall()
        valid = conn.execute(
            """
            SELECT coalesce(bool_and(i.indisvalid), false)
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE c.relname = 'chunks_embedding_hnsw_idx'
            """
        ).fetchone()[0]
    with qdrant.client() as client:
        points = points_per_book(client, qdrant.collection, [row[0] for row in rows])
    with graph.session() as session:
        nodes = {r["book"]: int(r["chunks"]) for r in session.run("MATCH (c:Chunk) RETURN c.book_id AS book, count(c) AS chunks")}
    books = [BookStats(*row, qdrant_points=points[row[0]], graph_chunks=nodes.get(row[0], 0)) for row in rows]
    return CorpusSummary(books=books, hnsw_index_valid=valid)


@dataclass(frozen=True)
class FailingCheck:
    name: str
    asset: str
    when: float
    details: str


def failing_checks(instance) -> list[FailingCheck]:
    """The checks whose latest evaluation failed, with the books they name."""
    from dagster import AssetCheckKey
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    from corpus_assets.checks import book_checks

    keys: list[AssetCheckKey] = [key for check in book_checks for key in check.check_keys]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    failing = []
    for key, record in latest.items():
        if record.status != AssetCheckExecutionRecordStatus.FAILED:
            continue
        evaluation = record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event else None
        metadata = {k: v.value for k, v in evaluation.metadata.items()} if evaluation else {}
        books = metadata.get("failing books") or metadata.get("book") or "?"
        failing.append(FailingCheck(key.name, key.asset_key.to_user_string(), record.create_timestamp, str(books)))
    return failing
