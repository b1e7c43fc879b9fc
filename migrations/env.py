"""Alembic environment: migrations run online against the corpus database.

The URL comes from the caller (`resources.postgres.migrate`) or, from the `alembic` command line,
from `DATABASE_URL`, falling back to the embedded server in the state folder.
"""

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from resources.postgres import corpus_database_url, to_sqlalchemy_url

# Dagster's storage keeps its own `alembic_version`; ours must not collide when they share a database.
VERSION_TABLE = "corpus_alembic_version"

config = context.config
if config.config_file_name is not None and "database_url" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = config.attributes.get("database_url") or corpus_database_url(os.environ.get("DATABASE_URL"))
engine = create_engine(to_sqlalchemy_url(url), poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
