"""The book graph: Neo4j when `NEO4J_URI` is set, else the embedded FalkorDB server.

Both run the same openCypher statements; only index and constraint DDL differ, and those live in
the two backend classes below.
"""

import atexit
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from dagster import ConfigurableResource
from pydantic import Field

from resources import embedded_falkordb, settings
from resources.errors import reaching

# Node labels and the properties writes MERGE on or filter by.
_KEYED_LABELS = ("Book", "Chapter", "Chunk")
_FILTERED = (("Chapter", "book_id"), ("Chunk", "book_id"))

# One Neo4j driver (and so one connection pool) per process and server; idle pooled connections
# older than this are checked before use, so a restarted server costs no failed statement.
_NEO4J_LIVENESS_CHECK_SECONDS = 30.0
_neo4j_drivers: dict[tuple, Any] = {}
_driver_guard = threading.Lock()


@atexit.register
def _close_neo4j_drivers() -> None:
    with _driver_guard:
        for key in [key for key in _neo4j_drivers if key[0] == os.getpid()]:
            _neo4j_drivers.pop(key).close()


class GraphSession(Protocol):
    backend: str

    def run(self, cypher: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def ensure_schema(self) -> None: ...


class _FalkorSession:
    backend = "falkordb"

    def __init__(self, graph, connection):
        self._graph = graph
        self._connection = connection

    def run(self, cypher, params=None):
        result = self._graph.query(cypher, dict(params or {}))
        names = [column[1] for column in result.header]
        return [dict(zip(names, row, strict=True)) for row in result.result_set]

    def ensure_schema(self):
        import redis

        existing = {(row["label"], prop) for row in self.run("CALL db.indexes() YIELD label, properties")
                    for prop in row.get("properties", [])}
        for label in _KEYED_LABELS:
            if (label, "id") not in existing:
                self._ignore_exists(f"CREATE INDEX FOR (n:{label}) ON (n.id)")
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

    def _ignore_exists(self, ddl):
        import redis

        try:
            self._graph.query(ddl)
        except redis.ResponseError as error:
            if "already indexed" not in str(error):
                raise


class _Neo4jSession:
    backend = "neo4j"

    def __init__(self, driver, database):
        self._driver = driver
        self._database = database

    def run(self, cypher, params=None):
        records, _, _ = self._driver.execute_query(cypher, dict(params or {}), database_=self._database)
        return [record.data() for record in records]

    def ensure_schema(self):
        for label in _KEYED_LABELS:
            self.run(f"CREATE CONSTRAINT {label.lower()}_id IF NOT EXISTS FOR (n:{label}) REQUIRE n.id IS UNIQUE")
        for label, prop in _FILTERED:
            self.run(f"CREATE INDEX {label.lower()}_{prop} IF NOT EXISTS FOR (n:{label}) ON (n.{prop})")


class GraphResource(ConfigurableResource):
    neo4j_uri: str | None = Field(default=None, description="bolt:// or neo4j:// URI (env NEO4J_URI); unset: embedded FalkorDB.")
    neo4j_user: str = Field(default="neo4j", description="Neo4j user (env NEO4J_USER).")
    neo4j_password: str | None = Field(default=None, description="Neo4j password (env NEO4J_PASSWORD).")
    graph_name: str = Field(default="corpus", description="FalkorDB graph / Neo4j database name.")
    neo4j_retry_seconds: float = Field(
        default=5.0, description="How long the Neo4j driver retries a transaction; the step's RetryPolicy waits out outages."
    )

    @contextmanager
    def session(self) -> Iterator[GraphSession]:
        """A session on the graph with its indexes and uniqueness constraints in place."""
        if self.neo4j_uri:
            import neo4j

            session = _Neo4jSession(self._neo4j_driver(), self.graph_name)
            with reaching("Neo4j", self.neo4j_uri, neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.AuthError):
                session.ensure_schema()
            yield session
            return
        import falkordb
        import redis

        socket = embedded_falkordb.ensure_server(settings.state_dir() / "falkordb")
        db = falkordb.FalkorDB(unix_socket_path=str(socket))
        try:
            session = _FalkorSession(db.select_graph(self.graph_name), db.connection)
            with reaching("FalkorDB", f"unix://{socket}", redis.ConnectionError):
                session.ensure_schema()
            yield session
        finally:
            db.connection.close()

    def _neo4j_driver(self):
        """This process's driver for the configured server and user (keyed by process: never shared across a fork)."""
        import neo4j

        key = (os.getpid(), self.neo4j_uri, self.neo4j_user, self.neo4j_password, self.neo4j_retry_seconds)
        with _driver_guard:
            if key not in _neo4j_drivers:
                _neo4j_drivers[key] = neo4j.GraphDatabase.driver(
                    self.neo4j_uri, auth=(self.neo4j_user, self.neo4j_password),
                    max_transaction_retry_time=self.neo4j_retry_seconds,
                    liveness_check_timeout=_NEO4J_LIVENESS_CHECK_SECONDS,
                )
            return _neo4j_drivers[key]
