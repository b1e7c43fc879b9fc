"""`corpus serve`: search as a long-lived HTTP JSON API, the model loaded once.

    GET /search?q=...&k=10&book=...&author=...&language=...&store=pgvector|qdrant&mode=dense|keyword|hybrid&expand=false
    GET /health   GET /stats   GET /docs (OpenAPI, whose response models are the answers' own)
    GET /  /books  /books/{id}  /books/{id}/chapters/{index}  /passages/{chunk id}: the pages readers use

Each answer carries its timings (encode / search / expand / total ms); each query is logged with
them, and one slower than the threshold (CORPUS_SLOW_QUERY_MS, default 200) is logged as slow and
kept in /stats. A bad query is a 422 with one line saying why.
"""

import logging
import threading
import time
from collections import deque
from typing import Annotated, Literal

from fastapi import FastAPI, Query
from pydantic import BaseModel, Field
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from resources.errors import SchemaOutOfDate, SearchTimeout, StoreUnavailable
from retrieval import DEFAULT_MODE, MAX_K, Mode, QueryError, Store
from retrieval.engine import Searcher, SearchResult
from retrieval.pages import pages

Relation = Literal["previous", "next", "similar"]

log = logging.getLogger("corpus.serve")
SLOW_LOG_SIZE = 100  # slowest recent queries kept for /stats


class Telemetry:
    """Counts, latencies and the slow-query log of one service (shared by its worker threads)."""

    def __init__(self, slow_ms: float):
        self.slow_ms = slow_ms
        self._lock = threading.Lock()
        self.queries = self.errors = 0
        self.slow: deque[dict] = deque(maxlen=SLOW_LOG_SIZE)
        self._latencies: deque[float] = deque(maxlen=10_000)

    def record(self, params: dict, result: SearchResult) -> None:
        total = result.timings_ms["total"]
        line = {**params, "hits": len(result.hits), "ms": result.timings_ms, "cached_embedding": result.cached_embedding}
        with self._lock:
            self.queries += 1
            self._latencies.append(total)
            if total > self.slow_ms:
                self.slow.append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **line})
        if total > self.slow_ms:
            log.warning("slow query (%.0f ms > %.0f ms): %s", total, self.slow_ms, line)
        else:
            log.info("query: %s", line)

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def summary(self) -> dict:
        with self._lock:
            latencies = list(self._latencies)
            slow = list(self.slow)
        return {"queries": self.queries, "errors": self.errors, **percentiles(latencies),
                "slow_query_ms": self.slow_ms, "slow_queries": len(slow), "slowest_recent": slow[-10:]}


def percentiles(latencies: list[float]) -> dict:
    """p50 and p95 of latencies in ms (None without any)."""
    ordered = sorted(latencies)

    def pick(p: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2) if ordered else None

    return {"p50_ms": pick(0.5), "p95_ms": pick(0.95)}


def as_json(params: dict, result: SearchResult) -> dict:
    """A search's answer as the service returns it (and `corpus search` prints it)."""
    return {
        **params, "timings_ms": result.timings_ms, "cached_embedding": result.cached_embedding,
        "hits": [{"rank": rank, **hit.__dict__, "context": [
            {"relation": n.relation, **n.hit.__dict__} for n in result.context.get(hit.chunk_id, [])
        ]} for rank, hit in enumerate(result.hits, 1)],
    }


class Problem(BaseModel):
    """Why a request was refused, or could not be answered: one line."""

    detail: str


class Timings(BaseModel):
    encode: float | None = Field(None, description="ms to encode the query (absent for keyword search)")
    search: float | None = Field(None, description="ms in the store(s), once the query was encoded")
    expand: float | None = Field(None, description="ms to read the passages' context (with expand)")
    total: float


class Passage(BaseModel):
    chunk_id: str
    book_id: str
    title: str = Field(description="the book's title")
    chapter: str = Field(description="where the passage sits: part · chapter")
    ordinal: int = Field(description="the passage's place in its book, from 0")
    text: str
    score: float = Field(description="cosine similarity (dense), BM25 (keyword) or the fused rank score (hybrid)")


class Neighbour(Passage):
    relation: Relation = Field(description="previous or next in reading order, or similar (another book)")


class Hit(Passage):
    rank: int
    context: list[Neighbour] = Field(description="with expand: the passages before and after, and similar ones")


class SearchParams(BaseModel):
    """What was asked: the query and its settings."""
    q: str
    k: int
    book: str | None = None
    author: str | None = None
    language: str | None = None
    store: Store
    mode: Mode
    expand: bool


class SearchAnswer(SearchParams):
    timings_ms: Timings
    cached_embedding: bool = Field(description="the query's vector came from the service's cache")
    hits: list[Hit]


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    query_encoding: Literal["onnx", "torch"]
    state: str = Field(description="which stores this service answers for (a digest of their addresses, no secret)")


class SlowQuery(SearchParams):
    at: str
    hits: int
    ms: Timings
    cached_embedding: bool


class CacheStats(BaseModel):
    hits: int
    misses: int
    hit_rate: float
    size: int
    capacity: int


class Stats(BaseModel):
    queries: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    slow_query_ms: float
    slow_queries: int
    slowest_recent: list[SlowQuery]
    embedding_cache: CacheStats


def create_app(searcher: Searcher, state: str, slow_ms: float = 200.0) -> FastAPI:
    # redirect_slashes off: a redirect would take its host from the request's Host header.
    app = FastAPI(title="corpus search", redirect_slashes=False,
                  description="Passages of the library's books, by meaning, keywords or both. Readers' pages (HTML): "
                              "`/`, `/books`, `/books/{id}`, `/books/{id}/chapters/{index}`, `/passages/{id}`.")
    telemetry = Telemetry(slow_ms)

    @app.exception_handler(QueryError)
    def refused(request, error: QueryError) -> JSONResponse:
        telemetry.error()
        return JSONResponse(status_code=422, content={"detail": str(error)})

    @app.exception_handler(RequestValidationError)
    def malformed(request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 (e.g. k=abc, no q) in the same one-line shape as a refused query.
        telemetry.error()
        reasons = "; ".join(f"{'.'.join(str(part) for part in e['loc'][1:]) or 'request'}: {e['msg']}"
                            for e in error.errors())
        return JSONResponse(status_code=422, content={"detail": reasons})

    @app.exception_handler(SearchTimeout)
    def too_slow(request, error: SearchTimeout) -> JSONResponse:
        telemetry.error()
        log.warning("search stopped: %s", error)
        return JSONResponse(status_code=504, content={"detail": str(error)})

    @app.exception_handler(StoreUnavailable)
    @app.exception_handler(SchemaOutOfDate)
    def unavailable(request, error: Exception) -> JSONResponse:
        telemetry.error()
        detail = error.description if isinstance(error, SchemaOutOfDate) else str(error)
        log.warning("store unavailable: %s", detail)
        return JSONResponse(status_code=503, content={"detail": detail})

    refusals = {
        422: {"model": Problem, "description": "The query cannot be answered as asked (empty, too long, k out of "
                                                "range, an unknown book, store or mode): one line saying why."},
        503: {"model": Problem, "description": "A store is unavailable (down, or held by a writer): which, and why."},
        504: {"model": Problem, "description": "The search ran past CORPUS_SEARCH_TIMEOUT_MS and was stopped."},
    }

    @app.get("/search", response_model=SearchAnswer, response_model_exclude_none=True, responses=refusals,
             summary="Passages for a query")
    def search(
        q: Annotated[str, Query(description="What to look for, in words (at most 1,000 characters).")],
        # Bounds checked by the search itself (its own one-line 422), stated in the schema.
        k: Annotated[int, Query(description=f"How many passages (1-{MAX_K}).",
                                json_schema_extra={"minimum": 1, "maximum": MAX_K})] = 10,
        book: Annotated[str | None, Query(description="Only this book id.")] = None,
        author: Annotated[str | None, Query(description="Only books by this author (as `/books` lists them).")] = None,
        language: Annotated[str | None, Query(description="Only books in this language.")] = None,
        store: Annotated[Store, Query(description="Where to search.")] = Store.pgvector,
        mode: Annotated[Mode, Query(description="How to rank.")] = DEFAULT_MODE,
        expand: Annotated[bool, Query(description="Add each passage's neighbours and similar passages.")] = False,
    ) -> dict:
        # A plain (sync) endpoint: FastAPI runs it in its thread pool, so encoding never blocks the loop.
        within = searcher.library().ids(author, language)
        result = searcher.search(q, k, book, store.value, mode.value, expand, within=within)
        params = {"q": q, "k": k, "book": book, "author": author, "language": language, "store": store.value,
                  "mode": mode.value, "expand": expand}
        telemetry.record(params, result)
        return as_json(params, result)

    @app.get("/health", response_model=Health, summary="Whether the service answers, and for which stores")
    def health() -> dict:
        # `state` lets `corpus search` tell whether this service answers for its own stores.
        return {"status": "ok", "model": searcher.model.model_name, "query_encoding": searcher.query_encoding,
                "state": state}

    # HEAD for probes that ask without a body; out of the schema, where it would repeat GET's operation id.
    app.head("/health", include_in_schema=False)(health)

    @app.get("/stats", response_model=Stats, summary="Queries answered, latency, the slowest, the cache")
    def stats() -> dict:
        return {**telemetry.summary(), "embedding_cache": searcher.cache_stats()}

    app.include_router(pages(searcher, telemetry.record))

    @app.middleware("http")
    async def page_headers(request, call_next):
        """The pages show text from books: a browser is told to run nothing and embed nothing but their own
        styles, and not to guess a type (the JSON API and /docs are left as they are)."""
        response = await call_next(request)
        if response.headers.get("content-type", "").startswith("text/html") and not request.url.path.startswith("/docs"):
            response.headers["Content-Security-Policy"] = ("default-src 'none'; style-src 'unsafe-inline'; "
                                                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response
    return app
