"""One search: a query's passages from a store by a method, timed, with the graph's context.

A `Searcher` lives as long as its process (`corpus serve` keeps one; `corpus search` makes one per
command): it keeps the model loaded, an LRU cache of query embeddings and the keyword statistics.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from resources import settings
from resources.embedding import EmbeddingModel
from resources.graph import GraphResource
from resources.postgres import PostgresResource
from resources.postgres.store import BookFailure, BookRow, BookSummary, CorpusDB, SearchHit, WordStats
from resources.qdrant import QdrantResource
from resources.qdrant.collection import PointHit, query_analysis, query_vector
from resources.qdrant.edge import SharedReads
from resources.query_encoder import QueryEncoder
from retrieval import DEFAULT_MODE, QueryError, checked_query
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.keyword import query_terms, weigh

# Candidates each method hands the fusion (or k, if larger). With the fusion's K = 10, 20, 50 and 100
# ranked alike on the unseen queries' dev split (hybrid hit@10 0.59-0.595 pgvector, 0.62 Qdrant); 20
# costs the least.
FUSION_DEPTH = 20
# Keyword statistics (document frequencies) change slowly; read again after this many seconds.
STATS_TTL_SECONDS = 300


@dataclass(frozen=True)
class Neighbour:
    relation: str  # "previous", "next" (reading order) or "similar" (another book)
    hit: SearchHit  # score: cosine similarity for "similar", 1.0 for reading-order neighbours


@dataclass
class SearchResult:
    hits: list[SearchHit]
    context: dict[str, list[Neighbour]]  # by hit chunk id, when expanded
    timings_ms: dict[str, float] = field(default_factory=dict)  # encode, search, expand, total
    cached_embedding: bool = False


class Searcher:
    def __init__(self, postgres: PostgresResource, qdrant: "QdrantResource | SharedReads", graph: GraphResource,
                 model: EmbeddingModel, cache_size: int = 1024, query_encoding: str | None = None, threads: int = 1):
        """`qdrant`: the resource, or its `shared_reads()` in a long-lived process. `query_encoding`
        ("onnx" or "torch"; default: CORPUS_QUERY_ENCODING) and `threads` per query: how queries are encoded."""
        self.postgres, self.qdrant, self.graph, self.model = postgres, qdrant, graph, model
        self._encoding_wanted = query_encoding or settings.current().query_encoding
        self._threads = threads
        self._embeddings = EmbeddingCache(cache_size)
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keyword-search")
        self._stats: tuple[float, WordStats, list[str | None]] | None = None
        self._library: tuple[float, LibraryView] | None = None

    def cache_stats(self) -> dict:
        return self._embeddings.stats()

    def search(self, query: str, k: int = 10, book: str | None = None, store: str = "pgvector",
               mode: str = DEFAULT_MODE, expand: bool = False, within: Sequence[str] | None = None) -> SearchResult:
        """The `k` best passages for the query; `book`: in that book only; `within`: in these books only
        (a reader's filter by author or language)."""
        started = time.perf_counter()
        query = self.validate(query, k, book, store, mode)
        books = [book] if book is not None else None
        if within is not None:
            books = [b for b in (books or within) if b in set(within)]
            if not books:
                return SearchResult([], {}, {"total": round(_ms_since(started), 2)})
        timings: dict[str, float] = {}
        cached = False
        vector = None
        depth = k if mode != "hybrid" else max(k, FUSION_DEPTH)
        # Postgres' keyword search needs no vector: it runs (on its own connection) while the query is
        # encoded. Qdrant answers both lists in one open of the collection, once the vector is there.
        keyword_search = (self._workers.submit(self._pgvector_keyword, query, depth, books)
                          if store == "pgvector" and mode != "dense" else None)
        if mode != "keyword":
            vector, cached = self._embeddings.get(query, self._embed)
            timings["encode"] = _ms_since(started)
        searching = time.perf_counter()  # what is left to wait for once the vector is there
        if store == "pgvector":
            dense = self._pgvector_dense(vector, depth, books) if mode != "keyword" else []
            keyword = keyword_search.result() if keyword_search else []
        else:
            dense, keyword = self._qdrant(mode, query, vector, depth, books)
        hits = dense[:k] if mode == "dense" else keyword[:k] if mode == "keyword" else _fuse(dense, keyword, k)
        timings["search"] = _ms_since(searching)
        context = {}
        if expand:
            expanding = time.perf_counter()
            context = self.expand(hits)
            timings["expand"] = _ms_since(expanding)
        timings["total"] = _ms_since(started)
        return SearchResult(hits, context, {name: round(ms, 2) for name, ms in timings.items()}, cached)

    def validate(self, query: str, k: int, book: str | None, store: str, mode: str) -> str:
        """The query as searched (`checked_query`), or QueryError; the book must be in the library."""
        query = checked_query(query, k, book, store, mode)
        if book is not None:
            with self._db() as db:
                if not db.titles([book]):
                    raise QueryError(f"unknown book {book!r}: `corpus status` lists the books")
        return query

    def library(self, fresh: bool = False) -> "LibraryView":
        """The library's books, authors, languages and failures, read again every few minutes (or now)."""
        if fresh or self._library is None or time.monotonic() - self._library[0] > STATS_TTL_SECONDS:
            with self._db() as db:
                self._library = (time.monotonic(), LibraryView(db.book_summaries(), list(db.book_failures().values())))
        return self._library[1]

    def book(self, book_id: str) -> tuple[BookRow, int] | None:
        """A book as stored, with its chunk count."""
        with self._db() as db:
            book = db.stored_book(book_id)
            return (book, db.chunk_count(book_id)) if book is not None else None

    def chapter_passages(self, book_id: str, chapter_index: int) -> list[SearchHit]:
        with self._db() as db:
            return db.chapter_passages(book_id, chapter_index)

    def passage(self, chunk_id: str) -> tuple[SearchHit, list[Neighbour]] | None:
        """A chunk with its neighbours in reading order and its most similar chunks of other books."""
        with self._db() as db:
            hit = db.chunks_by_id([chunk_id]).get(chunk_id)
        return None if hit is None else (hit, self.expand([hit], similar=5).get(chunk_id, []))

    @cached_property
    def _query_encoder(self) -> tuple[str, QueryEncoder]:
        return self.model.query_encoder(self._encoding_wanted, self._threads)

    @property
    def query_encoding(self) -> str:
        """How queries are encoded: "onnx" or "torch" (the encoder is made on first use)."""
        return self._query_encoder[0]

    def _embed(self, query: str) -> np.ndarray:
        vector = self._query_encoder[1](query)
        vector.setflags(write=False)  # shared by every later hit of the cache
        return vector

    @contextmanager
    def _db(self) -> Iterator[CorpusDB]:
        """The corpus database for one search's statements, each stopped at the search time limit."""
        with self.postgres.db() as db, db.bounded(settings.current().search_timeout_ms):
            yield db

    def _pgvector_dense(self, vector, limit: int, books: list[str] | None) -> list[SearchHit]:
        with self._db() as db:
            return db.search(vector, limit, books, settings.current().ef_search)

    def _pgvector_keyword(self, query: str, limit: int, books: list[str] | None) -> list[SearchHit]:
        with self._db() as db:
            stats, languages = self._library_stats(db)
            one_book = books is not None and len(books) == 1
            words = sorted(query_terms(db.query_analysis(query, languages)))
            weights, matching = weigh(stats, words, in_one_book=one_book)
            return db.keyword_search(weights, matching, limit, books, stats.avg_tokens)

    def _qdrant(self, mode: str, query: str, vector, limit: int, books: list[str] | None) -> tuple[list, list]:
        """(dense hits, keyword hits) from Qdrant (one open of the collection for both)."""
        words = None
        if mode != "dense":
            with self._db() as db:
                words = query_vector(query_terms(query_analysis(query, self._library_stats(db)[1])))
        with self.qdrant.open() as collection:
            dense = collection.search(vector, limit, books) if mode != "keyword" else []
            keyword = collection.keyword_search(words, limit, books) if words is not None else []
        return self._titled(dense), self._titled(keyword)

    def _titled(self, points: list[PointHit]) -> list[SearchHit]:
        """Qdrant's points as hits, with their book titles from Postgres."""
        with self._db() as db:
            titles = db.titles(list({p.book_id for p in points}))
        return [SearchHit(p.chunk_id, p.book_id, titles.get(p.book_id, p.book_id), p.chapter, p.ordinal, p.text,
                          p.score) for p in points]

    def _library_stats(self, db) -> tuple[WordStats, list[str | None]]:
        """Keyword search's word statistics and the library's languages, read again every few minutes."""
        if self._stats is None or time.monotonic() - self._stats[0] > STATS_TTL_SECONDS:
            self._stats = (time.monotonic(), db.word_stats(), db.languages())
        return self._stats[1], self._stats[2]

    def expand(self, hits: list[SearchHit], similar: int = 2) -> dict[str, list[Neighbour]]:
        """Context for each hit from the graph: the chunks before and after it, and its `similar` most
        similar chunks in other books (each once, whichever way its edge points); texts come from
        Postgres. Keyed by the hit's chunk id."""
        with self.graph.session() as session:
            found = session.neighbours([h.chunk_id for h in hits])
        wanted = {
            hit_id: [("previous", n.previous, 1.0), ("next", n.next, 1.0)]
            + [("similar", other, score) for other, score in n.similar[:similar]]
            for hit_id, n in found.items()
        }
        ids = {chunk_id for links in wanted.values() for _, chunk_id, _ in links if chunk_id}
        with self._db() as db:
            chunks = db.chunks_by_id(list(ids))
        return {
            hit_id: [Neighbour(relation, SearchHit(**{**chunks[chunk_id].__dict__, "score": score}))
                     for relation, chunk_id, score in links if chunk_id in chunks]
            for hit_id, links in wanted.items()
        }


@dataclass(frozen=True)
class LibraryView:
    """What the pages show of the library as a whole, and the book ids a reader's filters select."""

    books: list[BookSummary]
    failures: list[BookFailure]

    @property
    def authors(self) -> list[str]:
        return sorted({b.author for b in self.books if b.author})

    @property
    def languages(self) -> list[str]:
        return sorted({b.language for b in self.books if b.language})

    def ids(self, author: str | None, language: str | None) -> list[str] | None:
        """The books of this author and language (None: no filter)."""
        if author is None and language is None:
            return None
        author, language = (value.casefold() if value else None for value in (author, language))
        return [b.id for b in self.books if (author is None or (b.author or "").casefold() == author)
                and (language is None or (b.language or "").casefold() == language)]


class EmbeddingCache:
    """Query embeddings, least recently used out first, with hit and miss counts (thread-safe)."""

    def __init__(self, capacity: int):
        self.capacity, self.hits, self.misses = capacity, 0, 0
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, query: str, embed) -> tuple[np.ndarray, bool]:
        """The query's vector and whether it came from the cache."""
        with self._lock:
            vector = self._vectors.get(query)
            if vector is not None:
                self._vectors.move_to_end(query)
                self.hits += 1
                return vector, True
            self.misses += 1
        vector = embed(query)  # outside the lock: concurrent queries encode side by side
        with self._lock:
            self._vectors[query] = vector
            while len(self._vectors) > self.capacity:
                self._vectors.popitem(last=False)
        return vector, False

    def stats(self) -> dict:
        with self._lock:
            asked = self.hits + self.misses
            return {"hits": self.hits, "misses": self.misses, "hit_rate": round(self.hits / asked, 4) if asked else 0.0,
                    "size": len(self._vectors), "capacity": self.capacity}


def _fuse(dense: list[SearchHit], keyword: list[SearchHit], k: int) -> list[SearchHit]:
    """The two rankings fused by reciprocal rank; a hit's score is its fused score."""
    by_id = {hit.chunk_id: hit for hit in [*keyword, *dense]}
    fused = reciprocal_rank_fusion([[h.chunk_id for h in dense], [h.chunk_id for h in keyword]])[:k]
    return [SearchHit(**{**by_id[chunk_id].__dict__, "score": round(score, 6)}) for chunk_id, score in fused]


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000
