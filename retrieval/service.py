"""`corpus serve`: search as a long-lived HTTP JSON API, the model loaded once.

    GET /search?q=...&k=10&book=...&store=pgvector|qdrant&mode=dense|keyword|hybrid&expand=false
    GET /health   GET /stats   GET /docs (OpenAPI)

Each answer carries its timings (encode / search / expand / total ms); each query is logged with
them, and one slower than the threshold (CORPUS_SLOW_QUERY_MS, default 200) is logged as slow and
kept in /stats. A bad query is a 422 with one line saying why.
"""

import logging
import threading
import time
from collections import deque
from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from resources.errors import SchemaOutOfDate, SearchTimeout, StoreUnavailable
from retrieval import DEFAULT_MODE, MAX_K, QueryError
from retrieval.engine import Searcher, SearchResult

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
                self.slow.append({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **line})
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


def create_app(searcher: Searcher, state: str, slow_ms: float = 200.0) -> FastAPI:
    app = FastAPI(title="corpus search", description="Passages of the library's books, by meaning, keywords or both.")
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

    @app.get("/search")
    def search(
        q: Annotated[str, Query(description="What to look for, in words.")],
        k: Annotated[int, Query(description=f"How many passages (1-{MAX_K}).")] = 10,
        book: Annotated[str | None, Query(description="Only this book id.")] = None,
        store: Annotated[str, Query(description="pgvector or qdrant.")] = "pgvector",
        mode: Annotated[str, Query(description="dense, keyword or hybrid.")] = DEFAULT_MODE,
        expand: Annotated[bool, Query(description="Add each passage's neighbours and similar passages.")] = False,
    ) -> dict:
        # A plain (sync) endpoint: FastAPI runs it in its thread pool, so encoding never blocks the loop.
        result = searcher.search(q, k, book, store, mode, expand)
        params = {"q": q, "k": k, "book": book, "store": store, "mode": mode, "expand": expand}
        telemetry.record(params, result)
        return as_json(params, result)

    @app.get("/health")
    def health() -> dict:
        # `state` lets `corpus search` tell whether this service answers for its own stores.
        return {"status": "ok", "model": searcher.model.model_name, "query_encoding": searcher.query_encoding,
                "state": state}

    @app.get("/stats")
    def stats() -> dict:
        return {**telemetry.summary(), "embedding_cache": searcher.cache_stats()}

    return app
