"""Jobs: register the library's books, ingest books through every stage (one job, or a bulk load's four
steps), migrate the corpus schema."""

import time

from dagster import AssetSelection, MetadataValue, OpExecutionContext, define_asset_job, job, op

from corpus_assets.assets.graph import similar_chunks
from corpus_assets.assets.raw import raw_books
from corpus_assets.assets.report import library_report
from corpus_assets.checks import chunks_are_findable, hnsw_index_is_valid
from corpus_assets.registration import register_books
from resources import settings
from resources.library import BookLibrary
from resources.postgres import PostgresResource, head_revision, migrate

# The library report is of the whole library, not of the run's books: it follows by its own condition.
_INGEST = AssetSelection.assets(raw_books).downstream() - AssetSelection.assets(library_report)
# What reads the library's pgvector HNSW index: a bulk load runs it once the index is built again.
_NEEDS_INDEX = AssetSelection.assets(similar_chunks) | AssetSelection.checks(hnsw_index_is_valid, chunks_are_findable)

ingest_books = define_asset_job(
    "ingest_books",
    selection=_INGEST,
    description="Raw file → text → chunks → embeddings → pgvector, Qdrant and the graph, with the checks, "
    "for the selected books.",
)
load_books = define_asset_job(
    "load_books",
    selection=_INGEST - _NEEDS_INDEX,
    description="A bulk load's first step (`corpus ingest` of many books into a small library): every stage of "
    "ingest_books but the SIMILAR edges, with the checks that need no HNSW index, while the index is dropped.",
)
link_books = define_asset_job(
    "link_books",
    selection=_NEEDS_INDEX,
    description="A bulk load's last step, after build_vector_index: the books' SIMILAR edges and the checks that "
    "search the HNSW index.",
)


@op(description="Drop the chunks' HNSW index before a bulk load: rows then go in without index upkeep "
                "(searches read the table exactly until build_vector_index).")
def drop_hnsw_index(context: OpExecutionContext, postgres: PostgresResource) -> None:
    with postgres.db() as db:
        existed = db.drop_hnsw_index()
    context.add_output_metadata({"index existed": existed})


@job(description="A bulk load's first step: the chunks' HNSW index dropped until build_vector_index.")
def defer_vector_index():
    drop_hnsw_index()


@op(description="Build the chunks' HNSW index if it is missing or invalid (after a bulk load, or one cut short).")
def build_hnsw_index(context: OpExecutionContext, postgres: PostgresResource) -> None:
    started, memory = time.perf_counter(), settings.current().index_build_memory
    with postgres.db() as db:
        build = db.build_hnsw_index(memory)
        state, rows = db.hnsw_index_state(), db.total_chunks()
    if build.rows_in_memory is not None:
        context.log.warning(f"the index's graph outgrew CORPUS_INDEX_BUILD_MEMORY={memory} after "
                            f"{build.rows_in_memory:,} of {rows:,} rows: the rest went in at insert cost "
                            "(several times slower); raise it for the next build")
    context.add_output_metadata({
        "built": build.built, "rows": rows, "maintenance_work_mem": memory,
        "rows held in memory": rows if build.rows_in_memory is None else build.rows_in_memory,
        "seconds": round(time.perf_counter() - started, 1), "valid": state.valid,
        "definition": MetadataValue.text(state.definition),
    })


@job(description="Build the chunks' HNSW index where it is missing: a bulk load's middle step, or a repair "
                 "after one was cut short (every `corpus ingest` also runs it then).")
def build_vector_index():
    build_hnsw_index()


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
