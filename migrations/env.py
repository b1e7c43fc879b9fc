"""Alembic environment: migrations run online against the corpus database.

The URL comes from the caller (`resources.postgres.migrate`) or, from the `alembic` command line,
from `DATABASE_URL`, falling back to the embedded server in the state folder.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from resources import settings
from resources.postgres import VERSION_TABLE, embedded_url

config = context.config
if config.config_file_name is not None and "database_url" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = config.attributes.get("database_url") or settings.current().database_url or embedded_url()
# SQLAlchemy needs the psycopg 3 driver named in a plain `postgresql://` URL.
scheme, rest = url.split("://", 1)
engine = create_engine(url if "+" in scheme else f"postgresql+psycopg://{rest}", poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
