"""The book graph: Neo4j (`NEO4J_URI`) through the official driver, or the embedded FalkorDB server.

Both run the same openCypher, all of it in `book_graph.BookGraph`; only index and constraint DDL
differ (`backends`). The Definitions choose one resource; `session()` yields a `BookGraph` with the
schema in place. The Neo4j driver (its connection pool) lives from `setup_for_execution` to
`teardown_after_execution`; FalkorDB is started on first use and shared, like the embedded Postgres.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from resources import settings
from resources.errors import reaching
from resources.graph import falkordb_server
from resources.graph.backends import FalkorSession, Neo4jSession
from resources.graph.book_graph import BookGraph

# Idle pooled Neo4j connections older than this are checked before use: a restarted server costs
# no failed statement.
_NEO4J_LIVENESS_CHECK_SECONDS = 30.0


def backend_kind() -> str:
    """The Dagster kind of the graph backend the Definitions choose: what the UI tags graph assets with."""
    return "neo4j" if settings.current().neo4j_uri else "falkordb"


class GraphResource(ConfigurableResource):
    """The book graph in some backend."""

    graph_name: str = Field(default="corpus", description="FalkorDB graph / Neo4j database name.")

    @property
    def backend(self) -> str:
        raise NotImplementedError

    @contextmanager
    def session(self) -> Iterator[BookGraph]:
        raise NotImplementedError


class Neo4jResource(GraphResource):
    uri: str = Field(description="bolt:// or neo4j:// URI (env NEO4J_URI).")
    user: str = Field(default="neo4j", description="Neo4j user (env NEO4J_USER).")
    password: str | None = Field(default=None, description="Neo4j password (env NEO4J_PASSWORD).")
    retry_seconds: float = Field(
        default=5.0, description="How long the driver retries a transaction; the step's RetryPolicy waits out outages."
    )

    _driver = PrivateAttr(default=None)

    @property
    def backend(self) -> str:
        return "neo4j"

    def setup_for_execution(self, context: InitResourceContext | None = None) -> None:
        import neo4j

        self._driver = neo4j.GraphDatabase.driver(
            self.uri, auth=(self.user, self.password), max_transaction_retry_time=self.retry_seconds,
            liveness_check_timeout=_NEO4J_LIVENESS_CHECK_SECONDS,
        )

    def teardown_after_execution(self, context: InitResourceContext | None = None) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    @contextmanager
    def session(self) -> Iterator[BookGraph]:
        import neo4j

        if self._driver is None:
            raise RuntimeError("Neo4jResource used outside execution: open it with dagster.build_resources")
        session = Neo4jSession(self._driver, self.graph_name)
        with reaching("Neo4j", self.uri, neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.AuthError):
            session.ensure_schema()
        yield BookGraph(session)


class FalkorDBResource(GraphResource):
    """The embedded FalkorDB server in the state folder (a unix socket only), started on first use."""

    folder: str | None = Field(default=None, description="Server data folder; unset: `falkordb/` in the state folder.")

    @property
    def backend(self) -> str:
        return "falkordb"

    def server_folder(self) -> Path:
        return Path(self.folder) if self.folder else settings.current().state_dir / "falkordb"

    @contextmanager
    def session(self) -> Iterator[BookGraph]:
        import falkordb
        import redis

        socket = falkordb_server.ensure_server(self.server_folder(), settings.current().falkordb_start_timeout)
        db = falkordb.FalkorDB(unix_socket_path=str(socket))
        try:
            session = FalkorSession(db.select_graph(self.graph_name), db.connection)
            with reaching("FalkorDB", f"unix://{socket}", redis.ConnectionError):
                session.ensure_schema()
            yield BookGraph(session)
        finally:
            db.connection.close()
