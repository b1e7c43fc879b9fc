"""The one Definitions object of the corpus code location.

The stores are chosen here, once: a server where its URL is set in the environment, else the
embedded default in the state folder (as Dagster's examples choose local vs production resources).
The `corpus` CLI builds its resources from these same definitions.
"""

import logging
import warnings

from dagster import BetaWarning, Definitions, EnvVar, in_process_executor

from corpus_assets.assets.chunks import book_chunks
from corpus_assets.assets.embeddings import chunk_embeddings
from corpus_assets.assets.files import book_files
from corpus_assets.assets.graph import book_graph, similar_chunks
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.qdrant import qdrant_points
from corpus_assets.assets.raw import raw_books
from corpus_assets.assets.report import library_report
from corpus_assets.assets.text import book_text
from corpus_assets.checks import book_checks
from corpus_assets.jobs import (
    build_vector_index,
    defer_vector_index,
    ingest_books,
    link_books,
    load_books,
    migrate_corpus_db,
    register_books_job,
)
from corpus_assets.removal import remove_books
from corpus_assets.repair import repair_stores
from resources import settings
from resources.artifacts import BookArtifactIOManager
from resources.embedding import EmbeddingModel
from resources.graph import FalkorDBResource, GraphResource, Neo4jResource
from resources.library import BookLibrary
from resources.postgres import EmbeddedPostgresResource, PostgresResource
from resources.qdrant import QdrantEdgeResource, QdrantResource, QdrantServerResource
from schedules.upkeep import (
    check_all_books,
    library_upkeep,
    maintain_postgres,
    merge_qdrant,
    nightly_checks,
    nightly_library_report,
    report_library,
    weekly_postgres_maintenance,
    weekly_qdrant_merge,
)
from sensors.library_sensor import library_sensor

# In every process that loads the code location (the CLI, code servers, run workers, the daemon):
# Dagster 1.13 itself re-creates sensors with `owners` when it resolves their jobs, and warns that
# the parameter is beta; the project sets no owners.
warnings.filterwarnings("ignore", message="Parameter `owners` of initializer `SensorDefinition", category=BetaWarning)
# Per-book checks record evaluations on partitions, not check results, so Dagster's executor warns
# that each blocking check "emitted no result" and downstream steps "proceed without gating": not
# so, a failed blocking evaluation fails its step and nothing downstream runs (tests/test_indexes.py).
logging.getLogger("dagster._core.execution.plan.active").setLevel(logging.ERROR)


def store_resources(config: settings.Settings) -> dict[str, PostgresResource | QdrantResource | GraphResource]:
    """Postgres, Qdrant and the graph: servers where their URLs are set, else the embedded defaults."""
    return {
        "postgres": PostgresResource(database_url=EnvVar(settings.DATABASE_URL_ENV)) if config.database_url
        else EmbeddedPostgresResource(),
        "qdrant": QdrantServerResource(url=EnvVar(settings.QDRANT_URL_ENV),
                                       api_key=settings.secret(settings.QDRANT_API_KEY_ENV)) if config.qdrant_url
        else QdrantEdgeResource(),
        "graph": Neo4jResource(uri=EnvVar(settings.NEO4J_URI_ENV), user=config.neo4j_user,
                               password=settings.secret(settings.NEO4J_PASSWORD_ENV)) if config.neo4j_uri
        else FalkorDBResource(),
    }


defs = Definitions(
    assets=[book_files, raw_books, book_text, book_chunks, chunk_embeddings, pgvector_chunks, qdrant_points, book_graph,
            similar_chunks, library_report],
    asset_checks=book_checks,
    jobs=[ingest_books, load_books, defer_vector_index, build_vector_index, link_books, register_books_job, remove_books,
          repair_stores, check_all_books, report_library, maintain_postgres, merge_qdrant, migrate_corpus_db],
    sensors=[library_sensor, library_upkeep],
    schedules=[nightly_checks, nightly_library_report, weekly_postgres_maintenance, weekly_qdrant_merge],
    resources={
        "io_manager": BookArtifactIOManager(),
        "library": BookLibrary(),
        "embedding_model": EmbeddingModel(),
        **store_resources(settings.current()),
    },
    # A run's stages form one chain, so steps gain nothing from separate processes and would each
    # pay the imports again; parallelism comes from running several runs.
    executor=in_process_executor,
)
