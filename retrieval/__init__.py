"""Search over the indexes, shared by `corpus search` and `corpus serve`: dense (vector similarity),
keyword (BM25) and hybrid (both, fused by reciprocal rank), in Postgres/pgvector or Qdrant."""

from enum import StrEnum

from corpus_assets.books.library import is_book_id
from corpus_assets.books.safe_text import printable



class Store(StrEnum):
    """Where a search runs: Postgres with pgvector, or Qdrant."""

    pgvector = "pgvector"
    qdrant = "qdrant"


class Mode(StrEnum):
    """How a search ranks: by meaning (dense vectors), by words (BM25), or both fused."""

    dense = "dense"
    keyword = "keyword"
    hybrid = "hybrid"


STORES = tuple(Store)
MODES = tuple(Mode)
DEFAULT_MODE = Mode.hybrid  # the best on bench/results/retrieval.md, in both stores
MAX_K = 1000
MAX_QUERY_CHARS = 1000  # a question, not a pasted chapter: a longer query is refused (HTTP 422)


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
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is {len(query):,} characters long, over the limit of {MAX_QUERY_CHARS:,}")
    if book is not None and not is_book_id(book):
        raise QueryError(f"unknown book '{printable(book)[:100]}': not a book id (`corpus status` lists the books)")
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}, not {k}")
    if store not in STORES:
        raise QueryError(f"unknown store {store!r}: one of {', '.join(STORES)}")
    if mode not in MODES:
        raise QueryError(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
    return query
