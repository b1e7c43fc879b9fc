"""library_files: the library sensor's per-file cache (size, mtime, sha256), out of its cursor

Dagster stores a sensor's cursor with every tick and keeps ticks for days; holding every file's
hash there cost ~190 bytes per file per tick (1.9 MB per tick at 10k files).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "library_files",
        sa.Column("book_id", sa.Text, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("library_files")
