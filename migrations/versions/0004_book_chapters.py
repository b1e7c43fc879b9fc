"""books.chapters: each book's sections, so Qdrant and the graph can be rebuilt from Postgres alone

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # [[index, title, start, end], ...]; NULL for books written before this revision until re-ingested.
    op.add_column("books", sa.Column("chapters", JSONB))


def downgrade() -> None:
    op.drop_column("books", "chapters")
