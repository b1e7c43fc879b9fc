"""The one Definitions object of the corpus code location."""

import os

from dagster import Definitions, EnvVar, in_process_executor

from corpus_assets.assets.chunks import book_chunks
from corpus_assets.assets.embeddings import chunk_embeddings
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.raw import raw_books
from corpus_assets.assets.text import book_text
from corpus_assets.jobs import ingest_books, register_books_job
from resources.artifacts import BookArtifactIOManager
from resources.embedding import EmbeddingModel
from resources.library import BookLibrary
from resources.postgres import PostgresResource
from resources.settings import DATABASE_URL_ENV

defs = Definitions(
    assets=[raw_books, book_text, book_chunks, chunk_embeddings, pgvector_chunks],
    jobs=[ingest_books, register_books_job],
    resources={
        "io_manager": BookArtifactIOManager(),
        "library": BookLibrary(),
        "embedding_model": EmbeddingModel(),
        "postgres": PostgresResource(
            database_url=EnvVar(DATABASE_URL_ENV) if os.environ.get(DATABASE_URL_ENV) else None
        ),
    },
    # A run's stages form one chain, so steps gain nothing from separate processes and would each
    # pay the imports again; parallelism comes from running several runs.
    executor=in_process_executor,
)
