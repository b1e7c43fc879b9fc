"""Asset checks that prove each book's indexes are complete, consistent and healthy.

Postgres is the source of truth: Qdrant and the graph must hold exactly its chunk ids. A check
evaluates every book of its run (one book, or a batch) and records each book's own result on that
book's partition of the check, with what was expected and found; the UI and `corpus status` read
them per book.
"""

from collections.abc import Callable, Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckSpec,
    AssetRecordsFilter,
    multi_asset_check,
)
# Not exported by Dagster 1.13: AssetCheckResult builds it only for a step with one partition key.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from corpus_assets.assets.graph import book_graph, similar_chunks
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.qdrant import qdrant_points
from corpus_assets.partitions import accepting_partitioned_checks, book_check, books_partitions
from resources import settings
from resources.embedding import EmbeddingModel
from resources.graph import GraphResource
from resources.postgres import PostgresResource
from resources.postgres.store import HNSW_INDEX
from resources.qdrant import QdrantResource

FINDABLE_SAMPLE = 10  # chunks per book searched by the chunks_are_findable check
NORM_TOLERANCE = 1e-3
_SAMPLE = 5  # ids listed when sets differ

Verdict = tuple[bool, dict]


def evaluate_books(
    context: AssetCheckExecutionContext, evaluate: Callable[[str], Verdict], check_name: str | None = None
) -> Iterator[AssetCheckEvaluation]:
    """Each book of the run `evaluate`d and its result recorded on its partition of the check;
    `check_name` when one function runs several checks."""
    (key,) = [key for key in context.op_execution_context.selected_asset_check_keys
              if check_name is None or key.name == check_name]
    (spec,) = [spec for spec in context.op_execution_context.assets_def.check_specs if spec.key == key]
    targets = _latest_materializations(context, key, context.partition_keys)
    for book_id in context.partition_keys:
        passed, details = evaluate(book_id)
        yield AssetCheckEvaluation(
            asset_key=key.asset_key, check_name=key.name, passed=passed, metadata={"book": book_id, **details},
            partition=book_id, blocking=spec.blocking, target_materialization_data=targets.get(book_id),
        )


def _latest_materializations(
    context: AssetCheckExecutionContext, key: AssetCheckKey, book_ids: list[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Each book's latest materialization of the checked asset, which its result is about (the UI
    shows a result about an older one as outdated): newest first, until every book is seen."""
    targets: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    records_filter = AssetRecordsFilter(asset_key=key.asset_key, asset_partitions=book_ids)
    cursor = None
    while True:
        page = context.instance.fetch_materializations(records_filter, limit=max(len(book_ids), 100), cursor=cursor)
        for record in page.records:
            targets.setdefault(record.partition_key, AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp))
        if len(targets) == len(book_ids) or not page.has_more:
            return targets
        cursor = page.cursor


def _matches_postgres(
    context: AssetCheckExecutionContext, postgres: PostgresResource, store_ids: Callable[[str], set[str]], store: str,
    check_name: str | None = None,
) -> Iterator[AssetCheckEvaluation]:
    """Each book's chunk ids in `store` are exactly its chunk ids in Postgres."""

    def verdict(book_id: str) -> Verdict:
        passed, details = _compare_ids(postgres_chunk_ids(postgres, book_id), store_ids(book_id), store)
        if not passed:
            details["to repair"] = f"corpus repair {book_id} (job repair_stores: rewrites the book from Postgres)"
        return passed, details

    return evaluate_books(context, verdict, check_name)


def _compare_ids(expected: set[str], found: set[str], store: str) -> Verdict:
    missing, extra = sorted(expected - found), sorted(found - expected)
    return not missing and not extra, {
        "chunks in Postgres": len(expected),
        f"chunks in {store}": len(found),
        f"missing from {store}": len(missing),
        f"extra in {store}": len(extra),
        "sample missing": ", ".join(missing[:_SAMPLE]) or "none",
        "sample extra": ", ".join(extra[:_SAMPLE]) or "none",
    }


def postgres_chunk_ids(postgres: PostgresResource, book_id: str) -> set[str]:
    with postgres.db() as db:
        return db.chunk_ids(book_id)


def qdrant_chunk_ids(qdrant: QdrantResource, book_id: str) -> set[str]:
    with qdrant.open() as collection:
        return collection.chunk_ids_per_book([book_id])[book_id]


def graph_chunk_ids(graph: GraphResource, book_id: str) -> set[str]:
    with graph.session() as session:
        return session.chunk_ids(book_id)


@book_check(asset=pgvector_chunks, blocking=True)
def vectors_are_sane(
    context: AssetCheckExecutionContext, postgres: PostgresResource, embedding_model: EmbeddingModel
) -> Iterator[AssetCheckEvaluation]:
    """Every chunk has an embedding of the column's dimension, of unit length, from the configured model."""

    def evaluate(book_id: str) -> Verdict:
        with postgres.db() as db:
            dimension, stats = db.embedding_dimension(), db.vector_stats(book_id)
        rows, nulls, min_dims, max_dims = stats.chunks, stats.null_embeddings, stats.min_dims, stats.max_dims
        min_norm, max_norm, models = stats.min_norm, stats.max_norm, stats.models
        passed = (
            rows > 0 and nulls == 0 and min_dims == max_dims == dimension
            and abs(min_norm - 1) <= NORM_TOLERANCE and abs(max_norm - 1) <= NORM_TOLERANCE
            and models == [embedding_model.model_name]
        )
        return passed, {
            "chunks": rows, "null embeddings": nulls, "expected dimension": dimension,
            "dimensions found": f"{min_dims}..{max_dims}", "norms found": f"{min_norm or 0:.4f}..{max_norm or 0:.4f}",
            "expected model": embedding_model.model_name, "models found": ", ".join(models) or "none",
        }

    yield from evaluate_books(context, evaluate)


@book_check(asset=pgvector_chunks)
def hnsw_index_is_valid(
    context: AssetCheckExecutionContext, postgres: PostgresResource
) -> Iterator[AssetCheckEvaluation]:
    """The pgvector HNSW index exists and Postgres marks it valid (pg_index.indisvalid)."""
    with postgres.db() as db:
        index = db.hnsw_index_state()
    details = {"index": HNSW_INDEX, "exists": index.exists, "valid": index.valid, "definition": index.definition}
    yield from evaluate_books(context, lambda book_id: (index.valid, details))


@book_check(asset=pgvector_chunks)
def chunks_are_findable(
    context: AssetCheckExecutionContext, postgres: PostgresResource
) -> Iterator[AssetCheckEvaluation]:
    """Ten of the book's passages, each searched by its own vector through the HNSW index over the whole
    library, come back among the ten nearest: the book's rows are in the index and can be reached.
    (Recall against an exact search is measured by the scale benchmark, not here: an exact search reads
    the whole table, so every run would cost more as the library grows.)"""
    config = settings.current()
    with postgres.db() as db:
        found = db.findable(context.partition_keys, FINDABLE_SAMPLE, config.ef_search)

    def evaluate(book_id: str) -> Verdict:
        queried, hits = found.get(book_id, (0, 0))
        share = hits / queried if queried else 0.0
        return queried > 0 and share >= config.min_findable, {
            "chunks searched": queried, "found in the top 10": hits, "share found": round(share, 4),
            "threshold": config.min_findable, "hnsw.ef_search": config.ef_search,
        }

    yield from evaluate_books(context, evaluate)


QDRANT_MATCHES_POSTGRES = "qdrant_matches_postgres"
QDRANT_COLLECTION_IS_GREEN = "qdrant_collection_is_green"


# One function for both Qdrant checks: opening the embedded backend costs a load, so they share one
# open. Ids are compared after Postgres is written, hence the extra dependency.
with accepting_partitioned_checks():
    QDRANT_SPECS = [
        AssetCheckSpec(QDRANT_MATCHES_POSTGRES, asset=qdrant_points, blocking=True, additional_deps=[pgvector_chunks],
                       partitions_def=books_partitions,
                       description="Qdrant holds exactly the book's chunk ids that Postgres holds."),
        AssetCheckSpec(QDRANT_COLLECTION_IS_GREEN, asset=qdrant_points, partitions_def=books_partitions,
                       description="The Qdrant collection exists and reports status green (optimized, no errors)."),
    ]


@multi_asset_check(specs=QDRANT_SPECS, can_subset=True)
def qdrant_checks(context: AssetCheckExecutionContext, postgres: PostgresResource, qdrant: QdrantResource):
    selected = {key.name for key in context.op_execution_context.selected_asset_check_keys}
    with qdrant.open() as collection:
        if QDRANT_MATCHES_POSTGRES in selected:
            in_qdrant = collection.chunk_ids_per_book(context.partition_keys)
            yield from _matches_postgres(context, postgres, in_qdrant.__getitem__, "Qdrant", QDRANT_MATCHES_POSTGRES)
        if QDRANT_COLLECTION_IS_GREEN in selected:
            status = collection.status()
            yield from evaluate_books(
                context, lambda book_id: (status == "green", {"collection": qdrant.collection, "status": status}),
                QDRANT_COLLECTION_IS_GREEN,
            )


@book_check(asset=book_graph, blocking=True, additional_deps=[pgvector_chunks])
def graph_matches_postgres(
    context: AssetCheckExecutionContext, postgres: PostgresResource, graph: GraphResource
) -> Iterator[AssetCheckEvaluation]:
    """The graph holds exactly the book's chunk ids that Postgres holds, as Chunk nodes."""
    yield from _matches_postgres(context, postgres, lambda book_id: graph_chunk_ids(graph, book_id), "graph")


@book_check(asset=book_graph, blocking=True)
def graph_is_well_formed(context: AssetCheckExecutionContext, graph: GraphResource) -> Iterator[AssetCheckEvaluation]:
    """Every Chunk is PART_OF exactly its Book, NEXT links the book's chunks into one path, and every
    Chapter hangs from its Book or one of the book's Parts."""

    def evaluate(book_id: str) -> Verdict:
        with graph.session() as session:
            orphans, order = session.part_of_violations(book_id), session.next_edges(book_id)
            loose = session.structure_violations(book_id)
        return not orphans and order.one_path and not any(loose.values()), {
            "chapters without one parent": loose["loose_chapters"], "parts not held by the book": loose["loose_parts"],
            "chunks": order.chunks, "next edges": order.edges, "next edges in reading order": order.in_order,
            "expected next edges": max(order.chunks - 1, 0), "chunks not PART_OF exactly this book": len(orphans),
            "sample": ", ".join(orphans) or "none",
        }

    yield from evaluate_books(context, evaluate)


@book_check(asset=similar_chunks)
def similar_edges_cross_books(
    context: AssetCheckExecutionContext, graph: GraphResource
) -> Iterator[AssetCheckEvaluation]:
    """SIMILAR edges link a book's chunks only to chunks of other books."""

    def evaluate(book_id: str) -> Verdict:
        with graph.session() as session:
            edges, inside = session.similar_edges(book_id)
        return inside == 0, {"similar edges": edges, "edges inside the book": inside}

    yield from evaluate_books(context, evaluate)


book_checks = [
    vectors_are_sane, hnsw_index_is_valid, chunks_are_findable, qdrant_checks, graph_matches_postgres, graph_is_well_formed,
    similar_edges_cross_books,
]
