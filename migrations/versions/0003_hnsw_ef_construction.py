"""HNSW index rebuilt with ef_construction = 128

At 100k chunks, ef_construction 128 instead of 64 gains ~6 points of recall@10 at the same
ef_search (bench/results), for a ~45% longer build: ef_search 100 then reaches the 0.95 target
where 64 needed 200 and twice the query time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _rebuild(ef_construction: int) -> None:
    op.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw_idx")
    op.execute(
        "CREATE INDEX chunks_embedding_hnsw_idx ON chunks "
        f"USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = {ef_construction})"
    )


def upgrade() -> None:
    _rebuild(128)


def downgrade() -> None:
    _rebuild(64)
