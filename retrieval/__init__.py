"""Search over the indexes, shared by `corpus search` and `corpus serve`: dense (vector similarity),
keyword (BM25) and hybrid (both, fused by reciprocal rank), in Postgres/pgvector or Qdrant."""

STORES = ("pgvector", "qdrant")
MODES = ("dense", "keyword", "hybrid")
DEFAULT_MODE = "hybrid"  # the best on bench/results/retrieval.md, in both stores
MAX_K = 1000


class QueryError(ValueError):
    """A query the search cannot answer as asked (empty, k out of range, unknown book, store or mode)."""


def checked_query(query: str, k: int, book: str | None, store: str, mode: str) -> str:
    """The query with its whitespace collapsed, or QueryError for what needs no store to refuse (the
    command line refuses these before loading anything; the book is looked up by the `Searcher`)."""
    query = " ".join((query or "").split())
    if not query:
        raise QueryError("the query is empty")
    if "\x00" in query:
        raise QueryError("the query holds a NUL character")
    if book is not None and "\x00" in book:
        raise QueryError("the book id holds a NUL character")
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}, not {k}")
    if store not in STORES:
        raise QueryError(f"unknown store {store!r}: one of {', '.join(STORES)}")
    if mode not in MODES:
        raise QueryError(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
    return query
