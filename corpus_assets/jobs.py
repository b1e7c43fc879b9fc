"""Jobs: register the library's books, and ingest books through every stage."""

from dagster import AssetSelection, OpExecutionContext, define_asset_job, job, op

from corpus_assets.assets.raw import raw_books
from corpus_assets.partitions import books_partitions
from corpus_assets.registration import register_books
from resources.library import BookLibrary

ingest_books = define_asset_job(
    "ingest_books",
    selection=AssetSelection.assets(raw_books).downstream(),
    partitions_def=books_partitions,
    description="Raw file → text → chunks → embeddings → pgvector for the selected books.",
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
