"""book_sync: which version of each book every store holds

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "book_sync",
        sa.Column("book_id", sa.Text, sa.ForeignKey("books.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("target", sa.Text, primary_key=True),
        sa.Column("fingerprint", sa.CHAR(64), nullable=False),
        sa.Column("synced_at", sa.TIMESTAMP(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("book_sync")
