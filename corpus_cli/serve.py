"""`corpus serve` and the way `corpus search` finds a running service."""

import hashlib
import os

import httpx

from resources import settings
from resources.errors import SearchTimeout, StoreUnavailable, where
from retrieval import QueryError

DEFAULT_PORT = 8000  # `corpus serve --port` default
SERVE_URL_ENV = "CORPUS_SERVE_URL"
SLOW_QUERY_ENV = "CORPUS_SLOW_QUERY_MS"
CACHE_SIZE_ENV = "CORPUS_QUERY_CACHE_SIZE"
THREADS_ENV = "CORPUS_SERVE_THREADS"  # torch threads per query encode (default 1)


def service_url() -> str:
    return settings.env(SERVE_URL_ENV) or f"http://127.0.0.1:{DEFAULT_PORT}"


def state_identity() -> str:
    """Which stores a process uses: a service answers `corpus search` only for the same ones. Made of
    the stores' addresses without user, password or parameters (`where`), so /health, which shows
    it, reveals nothing derived from a secret."""
    config = settings.current()
    stores = [where(config.database_url) if config.database_url else str(config.state_dir),
              config.qdrant_url and where(config.qdrant_url), config.neo4j_uri and where(config.neo4j_uri),
              config.embedding_model]
    return hashlib.sha256(repr(stores).encode()).hexdigest()[:16]


def ask_service(params: dict) -> dict | None:
    """The running service's answer to a search, or None when none runs for these stores (then
    `corpus search` answers itself). A refused query raises QueryError with the service's reason; a
    service that fails or goes away mid-query, StoreUnavailable."""
    url = service_url()
    try:
        health = httpx.get(f"{url}/health", timeout=0.5).json()
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(health, dict) or health.get("state") != state_identity():
        return None
    try:
        response = httpx.get(f"{url}/search", params={k: v for k, v in params.items() if v is not None}, timeout=60)
    except httpx.HTTPError as error:
        raise StoreUnavailable(f"corpus serve at {url}: {type(error).__name__} {error}") from None
    if response.status_code == 422:
        raise QueryError(_detail(response))
    if response.status_code == 504:
        raise SearchTimeout(_detail(response))
    if response.status_code != 200:
        raise StoreUnavailable(f"corpus serve at {url} answered {response.status_code}: {_detail(response)}")
    return response.json()


def _detail(response: httpx.Response) -> str:
    """The service's one-line reason, or the start of whatever else it sent (e.g. a proxy's page)."""
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return " ".join(response.text.split())[:200]


def serve(host: str, port: int) -> None:
    import logging

    import uvicorn

    from corpus_cli.instance import code_location_resources
    from retrieval.engine import Searcher
    from retrieval.service import create_app

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # One thread per query's encode by default: concurrent queries run side by side, a core each,
    # instead of each short query split across the cores (`make bench-retrieval` measures both).
    threads = int(settings.env(THREADS_ENV) or 1)
    torch.set_num_threads(threads)
    # A pgvector hybrid query holds two connections (its keyword search runs beside the dense one):
    # unless told otherwise, room for six such queries at once.
    os.environ.setdefault(settings.PG_POOL_SIZE_ENV, "12")
    slow_ms = float(settings.env(SLOW_QUERY_ENV) or 200)
    with (code_location_resources("postgres", "qdrant", "graph", "embedding_model") as stores,
          stores.qdrant.shared_reads() as qdrant_reads):
        searcher = Searcher(stores.postgres, qdrant_reads, stores.graph, stores.embedding_model,
                            cache_size=int(settings.env(CACHE_SIZE_ENV) or 1024), threads=threads)
        # The model and its query encoder load (and export, the first time) now, not on the first query.
        logging.getLogger("corpus.serve").info("queries are encoded by %s", searcher.query_encoding)
        uvicorn.run(create_app(searcher, state_identity(), slow_ms), host=host, port=port, log_level="info")
