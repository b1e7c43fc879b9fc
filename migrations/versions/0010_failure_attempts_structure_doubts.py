"""book_failures.attempts, and books.structure_doubts

attempts: how many times a book's same content failed, not by its file's fault nor a store's outage.
A book that fails again and again on the same content (its run killed for memory, an error no retry
mends) is held back after `CORPUS_MAX_ATTEMPTS` instead of being planned by every sensor tick forever.

structure_doubts: why the parser's chapters of a book may be wrong (one section holding a large share
of a long book, numbers missing from a sequence, a contents list that disagrees), for `corpus status`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("book_failures", sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
    op.add_column("books", sa.Column("structure_doubts", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"))


def downgrade() -> None:
    op.drop_column("books", "structure_doubts")
    op.drop_column("book_failures", "attempts")
