"""Removing books: every trace of a book leaves every store, then its partition goes and each of its
assets records the removal in Dagster."""

from dagster import AssetObservation, Config, Failure, MetadataValue, OpExecutionContext, ResourceParam, job, op
from pydantic import Field

from corpus_assets.books.library import is_book_id
from corpus_assets.partitions import books_partitions
from resources.artifacts import BookArtifactIOManager
from resources.graph import GraphResource
from resources.postgres import PostgresResource
from resources.qdrant import QdrantResource


def remove_book(
    book_id: str, postgres: PostgresResource, qdrant: QdrantResource, graph: GraphResource, artifacts: BookArtifactIOManager
) -> dict[str, int]:
    """Delete the book from the graph, Qdrant, its artifacts, then Postgres (the source of truth goes
    last, so an interrupted removal is found and finished by the next one)."""
    with graph.session() as session:
        nodes = session.delete_book(book_id)
    with qdrant.open() as collection:
        points = collection.delete_book(book_id)
    files = artifacts.delete_book(book_id)
    with postgres.db() as db:
        rows = db.delete_book(book_id)
    return {"postgres chunks": rows, "qdrant points": points, "graph nodes": nodes, "artifact files": files}


class RemoveBooksConfig(Config):
    book_ids: list[str] = Field(description="Books to remove from every store.")


@op
def remove_books_from_stores(
    context: OpExecutionContext,
    config: RemoveBooksConfig,
    postgres: PostgresResource,
    qdrant: QdrantResource,
    graph: GraphResource,
    io_manager: ResourceParam[BookArtifactIOManager],  # the IO manager owns the artifact files
) -> None:
    not_ids = [book_id for book_id in config.book_ids if not is_book_id(book_id)]
    if not_ids:  # run config from anywhere (the UI's launchpad): ids are exact names, never patterns
        raise Failure(f"not book ids: {', '.join(map(repr, not_ids))}: nothing removed", allow_retries=False)
    for book_id in config.book_ids:
        removed = remove_book(book_id, postgres, qdrant, graph, io_manager)
        context.log.info(f"book {book_id!r} removed: " + ", ".join(f"{n} {what}" for what, n in removed.items()))
    for book_id in config.book_ids:
        if context.instance.has_dynamic_partition(books_partitions.name, book_id):
            context.instance.delete_dynamic_partition(books_partitions.name, book_id)
    # Each asset's events say the book was removed: an observation on its partition, recorded after
    # the partition is gone so the book's asset pages end with it. (Wiping the partitions' history,
    # `wipe_asset_partitions`, is not supported by Dagster's OSS SQL event log storage: it raises
    # NotImplementedError there, so it is only done where the storage supports it.)
    removed = {"removed": MetadataValue.text("this book was removed from every store and its partition deleted")}
    asset_keys = context.instance.get_asset_keys()
    for asset_key in asset_keys:
        for book_id in config.book_ids:
            context.instance.report_runless_asset_event(AssetObservation(asset_key, partition=book_id, metadata=removed))
        try:
            context.instance.wipe_asset_partitions(asset_key, config.book_ids)
        except NotImplementedError:
            pass


@job(description="Remove books (run config: book_ids) from Postgres, Qdrant, the graph and the artifacts.")
def remove_books():
    remove_books_from_stores()
