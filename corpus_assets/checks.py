"""Asset checks that prove each book's indexes are complete, consistent and healthy.

Postgres is the source of truth: Qdrant and the graph must hold exactly its chunk ids. A check
evaluates every book of its run (one book when run for one partition, a batch in a backfill) and
fails if any book fails, naming each failing book with expected vs found.
"""

import os
from collections.abc import Callable

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSpec,
    MetadataValue,
    asset_check,
    multi_asset_check,
)

from corpus_assets.assets._per_book import md_cell
from corpus_assets.assets.graph import book_graph, similar_chunks
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.qdrant import qdrant_points
from corpus_assets.partitions import books_partitions
from corpus_assets.search import EF_SEARCH
from resources.embedding import EmbeddingModel
from resources.graph import GraphResource
from resources.postgres import PostgresResource
from resources.qdrant import QdrantResource, chunk_ids_per_book

MIN_RECALL = float(os.environ.get("CORPUS_MIN_RECALL", "0.95"))
RECALL_SAMPLE = 10
NORM_TOLERANCE = 1e-3
_SAMPLE = 5  # ids listed when sets differ

Verdict = tuple[bool, dict]


def _evaluate(
    context: AssetCheckExecutionContext, evaluate: Callable[[str], Verdict], check_name: str | None = None
) -> AssetCheckResult:
    """One result for the run's books: `evaluate` each; `check_name` when one function runs several checks."""
    verdicts = {book_id: evaluate(book_id) for book_id in context.partition_keys}
    failing = [book_id for book_id, (passed, _) in verdicts.items() if not passed]
    if len(verdicts) == 1:
        ((book_id, (passed, details)),) = verdicts.items()
        return AssetCheckResult(passed=passed, metadata={"book": book_id, **details}, check_name=check_name)
    rows = "\n".join(
        f"| {book_id} | {'ok' if passed else '**FAILED**'} | {md_cell('; '.join(f'{k}: {v}' for k, v in details.items()), 300)} |"
        for book_id, (passed, details) in verdicts.items()
    )
    return AssetCheckResult(
        passed=not failing,
        check_name=check_name,
        metadata={
            "books checked": len(verdicts),
            "failing books": ", ".join(failing) or "none",
            "per book": MetadataValue.md(f"| book | result | details |\n|---|---|---|\n{rows}"),
        },
    )


def _matches_postgres(
    context: AssetCheckExecutionContext, postgres: PostgresResource, store_ids: Callable[[str], set[str]], store: str,
    check_name: str | None = None,
) -> AssetCheckResult:
    """Each book's chunk ids in `store` are exactly its chunk ids in Postgres."""

    def verdict(book_id: str) -> Verdict:
        passed, details = _compare_ids(postgres_chunk_ids(postgres, book_id), store_ids(book_id), store)
        if not passed:
            details["to repair"] = f"corpus repair {book_id} (job repair_stores: rewrites the book from Postgres)"
        return passed, details

    return _evaluate(context, verdict, check_name)


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
    with postgres.connect() as conn:
        return {row[0] for row in conn.execute("SELECT id FROM chunks WHERE book_id = %s", (book_id,))}


def qdrant_chunk_ids(qdrant: QdrantResource, book_id: str) -> set[str]:
    with qdrant.client() as client:
        return chunk_ids_per_book(client, qdrant.collection, [book_id])[book_id]


def graph_chunk_ids(graph: GraphResource, book_id: str) -> set[str]:
    with graph.session() as session:
        return {row["id"] for row in session.run("MATCH (c:Chunk {book_id: $book_id}) RETURN c.id AS id", {"book_id": book_id})}


@asset_check(asset=pgvector_chunks, partitions_def=books_partitions, blocking=True)
def vectors_are_sane(
    context: AssetCheckExecutionContext, postgres: PostgresResource, embedding_model: EmbeddingModel
) -> AssetCheckResult:
    """Every chunk has an embedding of the column's dimension, of unit length, from the configured model."""

    def evaluate(book_id: str) -> Verdict:
        with postgres.connect() as conn:
            dimension = conn.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
            ).fetchone()[0]
            rows, nulls, min_dims, max_dims, min_norm, max_norm, models = conn.execute(
                """
                SELECT count(*), count(*) FILTER (WHERE embedding IS NULL),
                       min(vector_dims(embedding)), max(vector_dims(embedding)),
                       min(vector_norm(embedding)), max(vector_norm(embedding)),
                       coalesce(array_agg(DISTINCT model), '{}')
                FROM chunks WHERE book_id = %s
                """,
                (book_id,),
            ).fetchone()
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

    return _evaluate(context, evaluate)


@asset_check(asset=pgvector_chunks, partitions_def=books_partitions)
def hnsw_index_is_valid(context: AssetCheckExecutionContext, postgres: PostgresResource) -> AssetCheckResult:
    """The pgvector HNSW index exists and Postgres marks it valid (pg_index.indisvalid)."""
    with postgres.connect() as conn:
        row = conn.execute(
            """
            SELECT i.indisvalid, pg_get_indexdef(i.indexrelid)
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE c.relname = 'chunks_embedding_hnsw_idx'
            """
        ).fetchone()
    details = {"index": "chunks_embedding_hnsw_idx", "exists": row is not None,
               "valid": bool(row and row[0]), "definition": row[1] if row else "missing"}
    return _evaluate(context, lambda book_id: (bool(row and row[0]), details))


# A deterministic sample spread over the run's books (md5 of the id orders chunks pseudo-randomly).
_RECALL_QUERIES = "SELECT book_id, embedding FROM chunks WHERE book_id = ANY(%s) ORDER BY md5(id) LIMIT %s"


@asset_check(asset=pgvector_chunks, partitions_def=books_partitions)
def ann_recall(context: AssetCheckExecutionContext, postgres: PostgresResource) -> AssetCheckResult:
    """recall@10 of HNSW search vs exact search over the whole index, with chunks of the run's books as queries.

    The index is shared by every book, so a run measures it once with RECALL_SAMPLE queries spread
    over its books: each exact search scans the whole table, and a sample per book would make a
    nightly check of 9,000 books cost 90,000 full scans.
    """
    books = list(context.partition_keys)
    with postgres.connect() as conn:
        queries = conn.execute(_RECALL_QUERIES, (books, RECALL_SAMPLE)).fetchall()
        recalls = [_recall_at_10(conn, vector) for _, vector in queries]
    recall = sum(recalls) / len(recalls) if recalls else 0.0
    single = {"book": books[0]} if len(books) == 1 else {"books checked": len(books)}
    return AssetCheckResult(
        passed=recall >= MIN_RECALL,
        metadata={**single, "recall@10": round(recall, 4), "threshold": MIN_RECALL, "queries": len(recalls),
                  "worst query recall@10": round(min(recalls), 2) if recalls else 0.0,
                  "books queried": len({book for book, _ in queries}), "hnsw.ef_search": EF_SEARCH},
    )


def _recall_at_10(conn, vector) -> float:
    top10 = "SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT 10"
    with conn.transaction():
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(EF_SEARCH),))
        # prepare=False: a prepared plan would ignore the planner settings made between runs.
        approximate = {r[0] for r in conn.execute(top10, (vector,), prepare=False)}
    with conn.transaction():
        conn.execute("SELECT set_config('enable_indexscan', 'off', true)")  # exact: sequential scan
        exact = {r[0] for r in conn.execute(top10, (vector,), prepare=False)}
    return len(approximate & exact) / max(len(exact), 1)


QDRANT_MATCHES_POSTGRES = "qdrant_matches_postgres"
QDRANT_COLLECTION_IS_GREEN = "qdrant_collection_is_green"


# One function for both Qdrant checks: opening local mode loads the whole collection, so they share
# one client. Ids are compared after Postgres is written, hence the extra dependency.
@multi_asset_check(
    specs=[
        AssetCheckSpec(QDRANT_MATCHES_POSTGRES, asset=qdrant_points, blocking=True, additional_deps=[pgvector_chunks],
                       partitions_def=books_partitions,
                       description="Qdrant holds exactly the book's chunk ids that Postgres holds."),
        AssetCheckSpec(QDRANT_COLLECTION_IS_GREEN, asset=qdrant_points, partitions_def=books_partitions,
                       description="The Qdrant collection exists and reports status green (optimized, no errors)."),
    ],
    can_subset=True,
)
def qdrant_checks(context: AssetCheckExecutionContext, postgres: PostgresResource, qdrant: QdrantResource):
    selected = {key.name for key in context.op_execution_context.selected_asset_check_keys}
    with qdrant.client() as client:
        if QDRANT_MATCHES_POSTGRES in selected:
            in_qdrant = chunk_ids_per_book(client, qdrant.collection, context.partition_keys)
            yield _matches_postgres(context, postgres, in_qdrant.__getitem__, "Qdrant", QDRANT_MATCHES_POSTGRES)
        if QDRANT_COLLECTION_IS_GREEN in selected:
            exists = client.collection_exists(qdrant.collection)
            status = client.get_collection(qdrant.collection).status.value if exists else "missing"
            yield _evaluate(
                context, lambda book_id: (status == "green", {"collection": qdrant.collection, "status": status}),
                QDRANT_COLLECTION_IS_GREEN,
            )


@asset_check(asset=book_graph, partitions_def=books_partitions, blocking=True, additional_deps=[pgvector_chunks])
def graph_matches_postgres(
    context: AssetCheckExecutionContext, postgres: PostgresResource, graph: GraphResource
) -> AssetCheckResult:
    """The graph holds exactly the book's chunk ids that Postgres holds, as Chunk nodes."""
    return _matches_postgres(context, postgres, lambda book_id: graph_chunk_ids(graph, book_id), "graph")


_PART_OF_VIOLATIONS = """
MATCH (c:Chunk {book_id: $book_id})
OPTIONAL MATCH (c)-[:PART_OF]->(b:Book)
WITH c, collect(b.id) AS books
WHERE size(books) <> 1 OR books[0] <> $book_id
RETURN c.id AS id, books LIMIT 5
"""
_ORDINALS = """
MATCH (c:Chunk {book_id: $book_id})
RETURN count(c) AS chunks, count(DISTINCT c.ordinal) AS ordinals, min(c.ordinal) AS first, max(c.ordinal) AS last
"""
_NEXT_EDGES = """
MATCH (a:Chunk {book_id: $book_id})-[:NEXT]->(z:Chunk)
RETURN count(*) AS edges,
       sum(CASE WHEN z.book_id = $book_id AND z.ordinal = a.ordinal + 1 THEN 1 ELSE 0 END) AS in_order
"""


@asset_check(asset=book_graph, partitions_def=books_partitions, blocking=True)
def graph_is_well_formed(context: AssetCheckExecutionContext, graph: GraphResource) -> AssetCheckResult:
    """Every Chunk is PART_OF exactly its Book, and NEXT links the book's chunks into one path."""

    def evaluate(book_id: str) -> Verdict:
        with graph.session() as session:
            orphans = session.run(_PART_OF_VIOLATIONS, {"book_id": book_id})
            ordinals = session.run(_ORDINALS, {"book_id": book_id})[0]
            edges = session.run(_NEXT_EDGES, {"book_id": book_id})[0]
        n = int(ordinals["chunks"])
        # n distinct ordinals 0..n-1 and exactly n-1 NEXT edges, each from ordinal i to i+1,
        # is exactly one path through all the chunks in reading order.
        path_ok = (
            n > 0 and int(ordinals["ordinals"]) == n and ordinals["first"] == 0 and ordinals["last"] == n - 1
            and int(edges["edges"]) == int(edges["in_order"] or 0) == n - 1
        )
        return not orphans and path_ok, {
            "chunks": n, "next edges": int(edges["edges"]), "next edges in reading order": int(edges["in_order"] or 0),
            "expected next edges": max(n - 1, 0), "chunks not PART_OF exactly this book": len(orphans),
            "sample": ", ".join(str(o["id"]) for o in orphans) or "none",
        }

    return _evaluate(context, evaluate)


@asset_check(asset=similar_chunks, partitions_def=books_partitions)
def similar_edges_cross_books(context: AssetCheckExecutionContext, graph: GraphResource) -> AssetCheckResult:
    """SIMILAR edges link a book's chunks only to chunks of other books."""

    def evaluate(book_id: str) -> Verdict:
        with graph.session() as session:
            row = session.run(
                """
                MATCH (a:Chunk {book_id: $book_id})-[s:SIMILAR]->(z:Chunk)
                RETURN count(s) AS edges, sum(CASE WHEN z.book_id = $book_id THEN 1 ELSE 0 END) AS inside
                """,
                {"book_id": book_id},
            )[0]
        inside = int(row["inside"] or 0)
        return inside == 0, {"similar edges": int(row["edges"]), "edges inside the book": inside}

    return _evaluate(context, evaluate)


book_checks = [
    vectors_are_sane, hnsw_index_is_valid, ann_recall, qdrant_checks, graph_matches_postgres, graph_is_well_formed,
    similar_edges_cross_books,
]
