"""chunks.text_config as text, and English rules for languages without their own

0008 stored each chunk's text search configuration as `regconfig`: pg_upgrade refuses a cluster
with reg* columns in user tables, so a major Postgres upgrade would have needed a dump and restore.
The column now holds the configuration's name, and the generated tsvector picks the configuration
from a fixed list of constants. A language Postgres has no stemmer for used to get `simple`, which
keeps stop words: in a mostly English library "the" then looked rare and drew those books' chunks
to the top of keyword search. Such books now take the English rules, as Qdrant's BM25 does.

Rewrites the table (twice: the column's type, then the generated column) and rebuilds its indexes,
the HNSW one included, under an exclusive lock: ~1-2 min per 100k chunks here; plan it for a large
library.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Postgres' own stemmers that Qdrant's BM25 also has; any other language is read with English rules.
LANGUAGES = ("arabic", "catalan", "danish", "dutch", "english", "finnish", "french", "german", "greek",
             "hungarian", "italian", "norwegian", "portuguese", "romanian", "russian", "spanish", "swedish",
             "turkish")
_CONFIG_OF_NAME = "CASE text_config " + " ".join(
    f"WHEN '{language}' THEN '{language}'::regconfig" for language in LANGUAGES  # constants of this file
) + " ELSE 'english'::regconfig END"


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS chunks_text_search_idx")
    op.drop_column("chunks", "text_search")
    op.execute("ALTER TABLE chunks ALTER COLUMN text_config DROP DEFAULT")
    op.execute("ALTER TABLE chunks ALTER COLUMN text_config TYPE text USING text_config::text")
    op.execute("ALTER TABLE chunks ALTER COLUMN text_config SET DEFAULT 'english'")
    op.execute("DROP FUNCTION corpus_text_config(text)")
    op.execute(
        "CREATE FUNCTION corpus_text_config(language text) RETURNS text LANGUAGE sql IMMUTABLE AS"
        " $$ SELECT CASE WHEN lower(language) = ANY(ARRAY['" + "', '".join(LANGUAGES) + "'])"
        " THEN lower(language) ELSE 'english' END $$"
    )
    op.execute("UPDATE chunks SET text_config = 'english' WHERE text_config <> ALL(ARRAY['"
               + "', '".join(LANGUAGES) + "'])")
    op.execute(f"ALTER TABLE chunks ADD COLUMN text_search tsvector GENERATED ALWAYS AS "
               f"(to_tsvector({_CONFIG_OF_NAME}, text)) STORED")
    op.execute("CREATE INDEX chunks_text_search_idx ON chunks USING gin (text_search)")
    op.execute("ALTER TABLE chunks ALTER COLUMN text_search SET STATISTICS 1000")
    op.execute("ANALYZE chunks")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS chunks_text_search_idx")
    op.drop_column("chunks", "text_search")
    op.execute("DROP FUNCTION corpus_text_config(text)")
    op.execute(
        "CREATE FUNCTION corpus_text_config(language text) RETURNS regconfig LANGUAGE sql STABLE AS"
        " $$ SELECT coalesce((SELECT oid::regconfig FROM pg_ts_config WHERE cfgname = lower(language)),"
        " 'simple'::regconfig) $$"
    )
    op.execute("ALTER TABLE chunks ALTER COLUMN text_config DROP DEFAULT")
    op.execute("ALTER TABLE chunks ALTER COLUMN text_config TYPE regconfig USING text_config::regconfig")
    op.execute("ALTER TABLE chunks ALTER COLUMN text_config SET DEFAULT 'english'")
    op.execute("ALTER TABLE chunks ADD COLUMN text_search tsvector"
               " GENERATED ALWAYS AS (to_tsvector(text_config, text)) STORED")
    op.execute("CREATE INDEX chunks_text_search_idx ON chunks USING gin (text_search)")
