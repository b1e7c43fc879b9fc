"""book_failures: the last failure of each book, for the content it failed on

Dagster records a failed batch run, not which of its books failed (dagster#17836); this table keeps
each book's own failure so a bad file is not tried again until it changes, and `corpus status` and
the ingest summary can name it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "book_failures",
        sa.Column("book_id", sa.Text, primary_key=True),
        sa.Column("sha256", sa.Text),  # the file's content when it failed (NULL: no file)
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("problem", sa.Text, nullable=False),
        sa.Column("bad_input", sa.Boolean, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("book_failures")
