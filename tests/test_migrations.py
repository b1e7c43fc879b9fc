import os
import subprocess
import sys

import psycopg

import pytest
from dagster import DagsterInstance

from corpus_assets.jobs import migrate_corpus_db
from resources.errors import SchemaOutOfDate
from resources.graph import falkordb_server
from resources.postgres import PostgresResource, head_revision, migrate
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
    assert {"books", "chunks", "book_sync", "library_files", "corpus_alembic_version"} <= tables(database_url)
    defs = indexes(database_url)
    hnsw = defs["chunks_embedding_hnsw_idx"]
    assert "USING hnsw (((embedding)::halfvec(384)) halfvec_cosine_ops)" in hnsw
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
    assert f"{head_revision()} (head)" in alembic(database_url, "current").stdout
    alembic(database_url, "downgrade", "0010")
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes(database_url)["chunks_embedding_hnsw_idx"]
    alembic(database_url, "downgrade", "0004")
    assert "library_files" not in tables(database_url)
    alembic(database_url, "downgrade", "0002")
    assert "ef_construction='64'" in indexes(database_url)["chunks_embedding_hnsw_idx"]
    alembic(database_url, "downgrade", "0001")
    assert "book_sync" not in tables(database_url)
    alembic(database_url, "downgrade", "base")
    assert not {"books", "chunks"} & tables(database_url)
    alembic(database_url, "upgrade", "head")  # and back up again from base
    assert {"books", "chunks"} <= tables(database_url)


def test_an_unmigrated_database_is_refused_until_the_migrate_job_runs(empty_database_url, opened):
    postgres = PostgresResource(database_url=empty_database_url)
    with opened(postgres) as ready, pytest.raises(SchemaOutOfDate, match="revision none.*run `corpus migrate`"):
        with ready.db():
            pass
    assert "books" not in tables(empty_database_url)  # connecting changed nothing

    result = migrate_corpus_db.execute_in_process(resources={"postgres": postgres},
                                                  instance=DagsterInstance.ephemeral())
    assert result.success
    assert {"books", "chunks", "book_sync"} <= tables(empty_database_url)
    with opened(postgres) as ready, ready.db() as db:
        assert db.book_ids() == []
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT version_num FROM corpus_alembic_version").fetchone()[0] == head_revision()


def test_the_cli_names_the_migration_step_in_one_line(empty_database_url, tmp_path):
    corpus = os.path.join(os.path.dirname(sys.executable), "corpus")
    env = {**os.environ, "DATABASE_URL": empty_database_url, "CORPUS_STATE_DIR": str(tmp_path / "state"),
           "COLUMNS": "300"}
    try:
        _refused_then_migrated(corpus, env)
    finally:
        falkordb_server.stop_server(tmp_path / "state" / "falkordb")  # `corpus status` started it


def _refused_then_migrated(corpus: str, env: dict) -> None:
    refused = subprocess.run([corpus, "status"], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    output = refused.stdout + refused.stderr
    assert "Traceback" not in output
    assert "run `corpus migrate`" in output and len(output.strip().splitlines()) == 1, output

    migrated = subprocess.run([corpus, "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0 and f"revision {head_revision()}" in migrated.stdout
    status = subprocess.run([corpus, "status"], env=env, capture_output=True, text=True, timeout=300)
    assert status.returncode == 0, status.stdout + status.stderr
