"""Jobs: register the library's books, ingest books through every stage, migrate the corpus schema."""

from dagster import AssetSelection, OpExecutionContext, define_asset_job, job, op

from corpus_assets.assets.raw import raw_books
from corpus_assets.assets.report import library_report
from corpus_assets.registration import register_books
from resources.library import BookLibrary
from resources.postgres import PostgresResource, head_revision, migrate

ingest_books = define_asset_job(
    "ingest_books",
    # The library report is of the whole library, not of the run's books: it follows by its own condition.
    selection=AssetSelection.assets(raw_books).downstream() - AssetSelection.assets(library_report),
    description="Raw file → text → chunks → embeddings → pgvector, Qdrant and the graph, with the checks, "
    "for the selected books.",
)


@op
def add_book_partitions(context: OpExecutionContext, library: BookLibrary) -> None:
    registration = register_books(context.instance, library)
    context.log.info(
        f"{registration.found} book files in {library.root()}; {len(registration.added)} new: "
        + ", ".join(registration.added[:50])
    )


@job(description="Scan the library folder and add a partition for every new book file.")
def register_books_job():
    add_book_partitions()


@op(description="Bring the corpus database's schema to the revision the code needs (Alembic upgrade head).")
def upgrade_corpus_schema(context: OpExecutionContext, postgres: PostgresResource) -> None:
    migrate(postgres.url())
    context.log.info(f"corpus schema at revision {head_revision()}")


@job(description="Migrate the corpus database (run before the first ingest and after upgrading corpus).")
def migrate_corpus_db():
    upgrade_corpus_schema()
