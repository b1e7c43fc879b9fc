"""The one Definitions object of the corpus code location."""

from dagster import Definitions, in_process_executor

from corpus_assets.assets.chunks import book_chunks
from corpus_assets.assets.embeddings import chunk_embeddings
from corpus_assets.assets.graph import book_graph, similar_chunks
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.qdrant import qdrant_points
from corpus_assets.assets.raw import raw_books
from corpus_assets.assets.text import book_text
from corpus_assets.checks import book_checks
from corpus_assets.jobs import ingest_books, register_books_job
from corpus_assets.removal import remove_books
from corpus_assets.repair import repair_stores
from resources.artifacts import BookArtifactIOManager
from resources.embedding import EmbeddingModel
from resources.graph import GraphResource
from resources.library import BookLibrary
from resources.postgres import PostgresResource
from resources.qdrant import QdrantResource
from resources.settings import DATABASE_URL_ENV, env_or_none
from schedules.upkeep import check_all_books, maintain_postgres, nightly_checks, weekly_postgres_maintenance
from sensors.library_sensor import library_sensor

defs = Definitions(
    assets=[raw_books, book_text, book_chunks, chunk_embeddings, pgvector_chunks, qdrant_points, book_graph,
            similar_chunks],
    asset_checks=book_checks,
    jobs=[ingest_books, register_books_job, remove_books, repair_stores, check_all_books, maintain_postgres],
    sensors=[library_sensor],
    schedules=[nightly_checks, weekly_postgres_maintenance],
    resources={
        "io_manager": BookArtifactIOManager(),
        "library": BookLibrary(),
        "embedding_model": EmbeddingModel(),
        "postgres": PostgresResource(database_url=env_or_none(DATABASE_URL_ENV)),
        "qdrant": QdrantResource(url=env_or_none("QDRANT_URL"), api_key=env_or_none("QDRANT_API_KEY")),
        "graph": GraphResource(
            neo4j_uri=env_or_none("NEO4J_URI"),
            neo4j_user=env_or_none("NEO4J_USER") or "neo4j",
            neo4j_password=env_or_none("NEO4J_PASSWORD"),
        ),
    },
    # A run's stages form one chain, so steps gain nothing from separate processes and would each
    # pay the imports again; parallelism comes from running several runs.
    executor=in_process_executor,
)
