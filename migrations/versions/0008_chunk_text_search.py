"""chunks.text_config and chunks.text_search: keyword search (Postgres full-text search)

Each chunk's text as a tsvector under its book's language (a Postgres text search configuration:
stemming and stop words; `simple` for languages Postgres has none for), kept by Postgres itself
(a stored generated column), with a GIN index. Its statistics target is raised so ANALYZE keeps the
frequencies of the 10,000 most common words: keyword search reads them as document frequencies.

Adding a stored generated column rewrites the table (~1 min per 100k chunks here).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The one rule from a book's language (its Gutenberg header: "English", "French"...) to a
    # configuration, used by the write path, by keyword search and below.
    op.execute(
        "CREATE FUNCTION corpus_text_config(language text) RETURNS regconfig LANGUAGE sql STABLE AS"
        " $$ SELECT coalesce((SELECT oid::regconfig FROM pg_ts_config WHERE cfgname = lower(language)),"
        " 'simple'::regconfig) $$"
    )
    op.execute("ALTER TABLE chunks ADD COLUMN text_config regconfig NOT NULL DEFAULT 'english'")
    # Books already stored take their language's configuration (the write path sets it from now on).
    op.execute(
        "UPDATE chunks c SET text_config = corpus_text_config(b.language) FROM books b"
        " WHERE b.id = c.book_id AND corpus_text_config(b.language) <> 'english'::regconfig"
    )
    op.execute(
        "ALTER TABLE chunks ADD COLUMN text_search tsvector"
        " GENERATED ALWAYS AS (to_tsvector(text_config, text)) STORED"
    )
    op.execute("CREATE INDEX chunks_text_search_idx ON chunks USING gin (text_search)")
    op.execute("ALTER TABLE chunks ALTER COLUMN text_search SET STATISTICS 1000")
    op.execute("ANALYZE chunks")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS chunks_text_search_idx")
    op.drop_column("chunks", "text_search")
    op.drop_column("chunks", "text_config")
    op.execute("DROP FUNCTION corpus_text_config(text)")
