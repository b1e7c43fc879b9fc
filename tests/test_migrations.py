import os
import subprocess
import sys

import psycopg

from resources.postgres import migrate
from resources.settings import PROJECT_ROOT


def tables(url):
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def indexes(url):
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'").fetchall())


def alembic(url, *args):
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "alembic", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, check=True)


def test_upgrade_head_creates_the_schema(database_url):
    migrate(database_url)
    assert {"books", "chunks", "book_sync", "corpus_alembic_version"} <= tables(database_url)
    defs = indexes(database_url)
    hnsw = defs["chunks_embedding_hnsw_idx"]
    assert "USING hnsw (embedding vector_cosine_ops)" in hnsw
    assert "m='16'" in hnsw and "ef_construction='128'" in hnsw
    assert "(book_id, ordinal)" in defs["chunks_book_id_ordinal_key"]
    assert "content_sha256" in defs["chunks_content_sha256_idx"]
    with psycopg.connect(database_url) as conn:
        column_type = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        ).fetchone()[0]
    assert column_type == "vector(384)"


def test_alembic_command_line_upgrades_and_downgrades(database_url):
    alembic(database_url, "upgrade", "head")
    assert {"books", "chunks", "book_sync"} <= tables(database_url)
    assert "0004 (head)" in alembic(database_url, "current").stdout
    alembic(database_url, "downgrade", "0002")
    assert "ef_construction='64'" in indexes(database_url)["chunks_embedding_hnsw_idx"]
    alembic(database_url, "downgrade", "0001")
    assert "book_sync" not in tables(database_url)
    alembic(database_url, "downgrade", "base")
    assert not {"books", "chunks"} & tables(database_url)
    alembic(database_url, "upgrade", "head")  # and back up again from base
    assert {"books", "chunks"} <= tables(database_url)
