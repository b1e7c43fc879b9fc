"""Stage 5c: the lexical graph of each book, and SIMILAR cross-references between books.

(:Book)-[:HAS_CHAPTER]->(:Chapter)-[:HAS_CHUNK]->(:Chunk), (:Chunk)-[:PART_OF]->(:Book) and
(:Chunk)-[:NEXT]->(:Chunk) in reading order; (:Chunk)-[:SIMILAR {score}]->(:Chunk) to the most
similar chunks of other books. Writes are `UNWIND $rows` batches that MERGE on indexed, unique ids;
deletes go in bounded batches too.
"""

import time
from collections.abc import Iterator

from dagster import AssetExecutionContext

from corpus_assets import sync
from corpus_assets.assets._per_book import POSTGRES_WORKERS, STORE_RETRY, for_each_book
from corpus_assets.assets.embeddings import BookEmbeddings
from corpus_assets.assets.text import BookText
from corpus_assets.books.chunking import Chunk
from corpus_assets.partitions import book_asset
from resources.graph import GraphResource, GraphSession
from resources.postgres import PostgresResource

BATCH = 1000

_MERGE_BOOK = """
MERGE (b:Book {id: $book.id})
SET b.title = $book.title, b.author = $book.author, b.language = $book.language,
    b.chapter_count = $book.chapter_count, b.chunk_count = $book.chunk_count
"""
_MERGE_CHAPTERS = """
UNWIND $rows AS row
MATCH (b:Book {id: row.book_id})
MERGE (c:Chapter {id: row.id})
SET c.book_id = row.book_id, c.index = row.index, c.title = row.title
MERGE (b)-[:HAS_CHAPTER]->(c)
"""
_MERGE_CHUNKS = """
UNWIND $rows AS row
MATCH (ch:Chapter {id: row.chapter_id})
MATCH (b:Book {id: row.book_id})
MERGE (c:Chunk {id: row.id})
SET c.book_id = row.book_id, c.ordinal = row.ordinal, c.chapter_index = row.chapter_index,
    c.token_count = row.token_count, c.char_start = row.char_start, c.char_end = row.char_end
MERGE (ch)-[:HAS_CHUNK]->(c)
MERGE (c)-[:PART_OF]->(b)
"""
_MERGE_NEXT = """
UNWIND $rows AS row
MATCH (a:Chunk {id: row.from_id})
MATCH (z:Chunk {id: row.to_id})
MERGE (a)-[:NEXT]->(z)
"""
# Each delete removes at most BATCH items per statement and is repeated until nothing is left.
_DELETE_STALE_CHUNKS = """
MATCH (c:Chunk {book_id: $book_id}) WHERE NOT c.id IN $keep
WITH c LIMIT $limit DETACH DELETE c RETURN count(*) AS deleted
"""
_DELETE_STALE_CHAPTERS = """
MATCH (c:Chapter {book_id: $book_id}) WHERE NOT c.id IN $keep
WITH c LIMIT $limit DETACH DELETE c RETURN count(*) AS deleted
"""
_DELETE_NEXT = """
MATCH (:Chunk {book_id: $book_id})-[r:NEXT]->() WITH r LIMIT $limit DELETE r RETURN count(*) AS deleted
"""
_DELETE_SIMILAR = """
MATCH (:Chunk {book_id: $book_id})-[r:SIMILAR]->() WITH r LIMIT $limit DELETE r RETURN count(*) AS deleted
"""
_MERGE_SIMILAR = """
UNWIND $rows AS row
MATCH (a:Chunk {id: row.from_id})
MATCH (z:Chunk {id: row.to_id})
MERGE (a)-[s:SIMILAR]->(z)
SET s.score = row.score
"""


def chapter_id(book_id: str, index: int) -> str:
    return f"{book_id}/{index}"


def batches(rows: list[dict], size: int = BATCH) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def write_rows(graph: GraphSession, cypher: str, rows: list[dict]) -> None:
    for batch in batches(rows):
        graph.run(cypher, {"rows": batch})


def delete_in_batches(graph: GraphSession, cypher: str, **params) -> int:
    total = 0
    while deleted := graph.run(cypher, {**params, "limit": BATCH})[0]["deleted"]:
        total += int(deleted)
    return total


def replace_book_graph(graph: GraphSession, book: BookText, chunks: list[Chunk]) -> dict[str, int]:
    """Write the book's nodes and edges, then remove what no longer belongs to it.

    MERGE on ids makes every statement idempotent; a re-run converges to the same graph.
    """
    book_id = book.book_id
    graph.run(
        _MERGE_BOOK,
        {"book": {"id": book_id, "title": book.title, "author": book.author, "language": book.language,
                  "chapter_count": len(book.sections), "chunk_count": len(chunks)}},
    )
    chapters = [{"id": chapter_id(book_id, s.index), "book_id": book_id, "index": s.index, "title": s.title}
                for s in book.sections]
    write_rows(graph, _MERGE_CHAPTERS, chapters)
    write_rows(
        graph,
        _MERGE_CHUNKS,
        [{"id": c.id, "book_id": book_id, "chapter_id": chapter_id(book_id, c.chapter_index), "ordinal": c.ordinal,
          "chapter_index": c.chapter_index, "token_count": c.token_count, "char_start": c.char_start,
          "char_end": c.char_end} for c in chunks],
    )
    stale_chunks = delete_in_batches(graph, _DELETE_STALE_CHUNKS, book_id=book_id, keep=[c.id for c in chunks])
    stale_chapters = delete_in_batches(graph, _DELETE_STALE_CHAPTERS, book_id=book_id, keep=[c["id"] for c in chapters])
    # The reading order is rewritten whole: an edit can move any chunk.
    delete_in_batches(graph, _DELETE_NEXT, book_id=book_id)
    write_rows(graph, _MERGE_NEXT, [{"from_id": a.id, "to_id": b.id} for a, b in zip(chunks, chunks[1:])])
    return {"chapters": len(chapters), "chunks": len(chunks), "stale chunks deleted": stale_chunks,
            "stale chapters deleted": stale_chapters, "next edges": max(len(chunks) - 1, 0)}


_COUNT_CHUNKS = "MATCH (c:Chunk {book_id: $book_id}) RETURN count(c) AS chunks"


@book_asset(
    code_version="1",
    kinds={"neo4j"},
    group_name="indexes",
    retry_policy=STORE_RETRY,
    deps=["pgvector_chunks"],  # Postgres, the source of truth, is written first
)
def book_graph(
    context: AssetExecutionContext,
    config: sync.StoreWriteConfig,
    graph: GraphResource,
    postgres: PostgresResource,
    book_text: dict[str, BookText],
    book_chunks: dict[str, list[Chunk]],
    chunk_embeddings: dict[str, BookEmbeddings],
) -> None:
    """Book → chapters → chunks, chunks PART_OF their book and linked by NEXT in reading order."""
    with graph.session() as session, postgres.connect() as conn:

        def write(book_id: str) -> None:
            started = time.perf_counter()
            book, chunks = book_text[book_id], book_chunks[book_id]
            version = sync.book_version(book, chunks, chunk_embeddings[book_id].model)
            unchanged = (
                not config.rewrite
                and sync.recorded(conn, book_id, "graph") == version
                and int(session.run(_COUNT_CHUNKS, {"book_id": book_id})[0]["chunks"]) == len(chunks)
            )
            counts = {"chunks": len(chunks)}
            if not unchanged:
                counts = replace_book_graph(session, book, chunks)
                sync.record(conn, book_id, "graph", version)
                # A rewritten graph may have lost the book's SIMILAR edges (a wiped or drifted store).
                sync.forget(conn, book_id, "similar")
            context.add_asset_metadata(
                {**counts, "unchanged (not rewritten)": unchanged, "backend": session.backend,
                 "seconds": round(time.perf_counter() - started, 2)},
                partition_key=book_id,
            )

        for_each_book(context, context.partition_keys, write)


class SimilarChunksConfig(sync.StoreWriteConfig):
    top_k: int = 5
    min_score: float = 0.5


# For every chunk of the book, its nearest chunks of other books through the HNSW index.
_NEIGHBOURS_IN_OTHER_BOOKS = """
SELECT c.id, n.id, 1 - n.distance
FROM chunks c
CROSS JOIN LATERAL (
    SELECT o.id, o.embedding <=> c.embedding AS distance
    FROM chunks o
    WHERE o.book_id <> c.book_id
    ORDER BY o.embedding <=> c.embedding
    LIMIT %(k)s
) n
WHERE c.book_id = %(book_id)s AND 1 - n.distance >= %(min_score)s
"""


def similar_pairs(postgres: PostgresResource, book_id: str, top_k: int, min_score: float) -> Iterator[list[dict]]:
    """The book's (chunk, neighbour, score) pairs in batches, from a server-side cursor.

    A 50 MB book has ~280k pairs: streamed, they never sit in memory at once.
    """
    with postgres.connect() as conn, conn.transaction():
        # Most rows pass the other-books filter, but a filtered HNSW scan must still be allowed to
        # continue past ef_search candidates to fill each LIMIT.
        conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        # Below some tens of thousands of rows the planner prefers an exact scan per chunk, which
        # makes the whole step quadratic (75 chunks/s at 11k chunks); the index is ~5x faster.
        conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
        with conn.cursor(name="similar_pairs") as cursor:
            cursor.execute(_NEIGHBOURS_IN_OTHER_BOOKS, {"k": top_k, "book_id": book_id, "min_score": min_score})
            while rows := cursor.fetchmany(BATCH):
                yield [{"from_id": a, "to_id": b, "score": float(score)} for a, b, score in rows]


def similar_version(conn, book_id: str, top_k: int, min_score: float) -> str:
    """The fingerprint of a book's SIMILAR edges: its version in Postgres and the search settings."""
    return sync.fingerprint(sync.recorded(conn, book_id, "pgvector"), top_k, min_score)


def relink_similar(session: GraphSession, postgres: PostgresResource, book_id: str, top_k: int,
                   min_score: float) -> tuple[int, int]:
    """Replace the SIMILAR edges from the book's chunks; return (edges written, edges replaced).

    Killed midway, the book's edges are partly written and its `similar` record is not: the next run
    replaces them all.
    """
    replaced = delete_in_batches(session, _DELETE_SIMILAR, book_id=book_id)
    written = 0
    for pairs in similar_pairs(postgres, book_id, top_k, min_score):
        write_rows(session, _MERGE_SIMILAR, pairs)
        written += len(pairs)
    return written, replaced


@book_asset(code_version="1", kinds={"neo4j", "postgres"}, group_name="indexes",
    retry_policy=STORE_RETRY, deps=["pgvector_chunks", "book_graph"])
def similar_chunks(
    context: AssetExecutionContext,
    config: SimilarChunksConfig,
    graph: GraphResource,
    postgres: PostgresResource,
) -> None:
    """SIMILAR {score} edges from each chunk to its top-k nearest chunks in other books."""

    def link(book_id: str) -> None:
        started = time.perf_counter()
        with postgres.connect() as conn:
            # Only the book's own version: recomputing every book's edges whenever any book changed
            # would cost a full pass over the corpus per edit. Edges to a removed chunk go with its
            # node; edges from other books to the book's new chunks come when those books are rewritten.
            version = similar_version(conn, book_id, config.top_k, config.min_score)
            if not config.rewrite and sync.recorded(conn, book_id, "similar") == version:
                context.add_asset_metadata({"unchanged (not rewritten)": True}, partition_key=book_id)
                return
        with graph.session() as session:
            edges, replaced = relink_similar(session, postgres, book_id, config.top_k, config.min_score)
        with postgres.connect() as conn:
            sync.record(conn, book_id, "similar", version)
        context.add_asset_metadata(
            {"similar edges": edges, "unchanged (not rewritten)": False, "edges replaced": replaced,
             "top k": config.top_k,
             "min score": config.min_score, "seconds": round(time.perf_counter() - started, 2)},
            partition_key=book_id,
        )

    with postgres.connect() as conn:
        sizes = dict(conn.execute("SELECT id, chunk_count FROM books WHERE id = ANY(%s)", (context.partition_keys,)))
    # The nearest-neighbour searches run in Postgres, books side by side (the graph serializes the
    # writes), longest first so the last book to finish is a short one.
    by_size = sorted(context.partition_keys, key=lambda book_id: -sizes.get(book_id, 0))
    for_each_book(context, by_size, link, workers=POSTGRES_WORKERS)
