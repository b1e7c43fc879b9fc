"""books.subtitle and books.structure_version

Titles used to carry the subtitle glued on ("Frankenstein or The Modern Prometheus"); the parser
now splits them (corpus_assets/books/gutenberg.py), and re-ingested books fill the column.
structure_version is the version of the book parser that made the stored row: a book stored by an
older one is not up to date, so the library plan ingests it again (its unchanged chunk texts are not
re-embedded).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("books", sa.Column("subtitle", sa.Text))
    op.add_column("books", sa.Column("structure_version", sa.Text))


def downgrade() -> None:
    op.drop_column("books", "structure_version")
    op.drop_column("books", "subtitle")
