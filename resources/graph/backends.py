"""The two graph backends' sessions and their schema DDL (indexes and uniqueness constraints differ)."""

from collections.abc import Mapping
from typing import Any

# Node labels and the properties writes MERGE on or filter by.
_KEYED_LABELS = ("Book", "Part", "Chapter", "Chunk")
_FILTERED = (("Part", "book_id"), ("Chapter", "book_id"), ("Chunk", "book_id"))


class FalkorSession:
    backend = "falkordb"

    def __init__(self, graph, connection):
        self._graph = graph
        self._connection = connection

    def run(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        result = self._graph.query(cypher, dict(params or {}))
        names = [column[1] for column in result.header]
        return [dict(zip(names, row, strict=True)) for row in result.result_set]

    def ensure_schema(self) -> None:
        import redis

        existing = {(row["label"], prop) for row in self.run("CALL db.indexes() YIELD label, properties")
                    for prop in row.get("properties", [])}
        for label in _KEYED_LABELS:
            if (label, "id") not in existing:
                self._ignore_exists(f"CREATE INDEX FOR (n:{label}) ON (n.id)")  # labels: constants above
                try:
                    self._connection.execute_command(
                        "GRAPH.CONSTRAINT", "CREATE", self._graph.name, "UNIQUE", "NODE", label, "PROPERTIES", "1", "id"
                    )
                except redis.ResponseError as error:
                    if "already exists" not in str(error):
                        raise
        for label, prop in _FILTERED:
            if (label, prop) not in existing:
                self._ignore_exists(f"CREATE INDEX FOR (n:{label}) ON (n.{prop})")

    def _ignore_exists(self, ddl: str) -> None:
        import redis

        try:
            self._graph.query(ddl)
        except redis.ResponseError as error:
            if "already indexed" not in str(error):
                raise


class Neo4jSession:
    backend = "neo4j"

    def __init__(self, driver, database: str):
        self._driver = driver
        self._database = database

    def run(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        records, _, _ = self._driver.execute_query(cypher, dict(params or {}), database_=self._database)
        return [record.data() for record in records]

    def ensure_schema(self) -> None:
        for label in _KEYED_LABELS:
            self.run(f"CREATE CONSTRAINT {label.lower()}_id IF NOT EXISTS FOR (n:{label}) REQUIRE n.id IS UNIQUE")
        for label, prop in _FILTERED:
            self.run(f"CREATE INDEX {label.lower()}_{prop} IF NOT EXISTS FOR (n:{label}) ON (n.{prop})")
