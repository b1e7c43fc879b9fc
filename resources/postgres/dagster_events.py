"""Dagster's event log in Postgres, over pooled connections (dagster.yaml's `event_log_storage`).

dagster-postgres opens a new connection for every statement (a `NullPool`, so that no instance holds
connections it does not use), and storing one event takes two to four statements: ~15 ms per event
here, most of it spent starting Postgres backends. A corpus run stores about four events per book and
stage (materialization planned and done, check evaluation planned and done), so at 9,000 books that
cost alone is hours. Pooled, one run of a stage and its check over 100 books took 1.9 s against
5.0 s (bench/dagster_overhead.py). Each process keeps one idle connection (more while its threads
store events at once); a connection a restarted server dropped is replaced before use (pre-ping).
"""

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

# Connections a process keeps open between events, and the most it opens at once on top of them
# (the daemon's and the webserver's threads; a run worker stores events from one thread).
POOL_SIZE, MAX_OVERFLOW = 1, 8


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    """`PostgresEventLogStorage` whose engine keeps its connections between statements."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        # The class takes no pool setting: its engine is replaced, as Dagster's own webserver does
        # (`optimize_for_webserver`). Autocommit as before: each statement commits as it did unpooled.
        self._engine.dispose()
        self._engine = create_pg_engine(
            postgres_url, token_provider, isolation_level="AUTOCOMMIT", pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW, pool_pre_ping=True,
        )

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: Mapping[str, Any]) -> "PooledPostgresEventLogStorage":
        return cls(
            pg_url_from_config(config_value), config_value.get("should_autocreate_tables", True), inst_data,
            get_token_provider_from_config(config_value),
        )

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()  # the pooled connections close with the instance
