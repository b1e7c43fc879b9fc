"""Every setting corpus reads from the environment, in one place.

Every process (CLI, Dagster webserver, daemon, run workers, tests) resolves the same values from the
same variables, which is what lets them share one embedded Postgres and FalkorDB server. `current()`
reads the environment when called; the few values Dagster needs while definitions are imported
(retry policy, batch size, the model in `chunk_embeddings`' code version) are read then, once.
Secrets (passwords, API keys) are never read here: the Definitions pass them as `EnvVar`s.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from dagster import EnvVar

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_LIBRARY_DIR = PROJECT_ROOT / "data" / "sample_books"

STATE_DIR_ENV = "CORPUS_STATE_DIR"
LIBRARY_DIR_ENV = "CORPUS_LIBRARY_DIR"
DATABASE_URL_ENV = "DATABASE_URL"
DAGSTER_PG_URL_ENV = "CORPUS_DAGSTER_PG_URL"
QDRANT_URL_ENV, QDRANT_API_KEY_ENV = "QDRANT_URL", "QDRANT_API_KEY"
NEO4J_URI_ENV, NEO4J_USER_ENV, NEO4J_PASSWORD_ENV = "NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD"
MODEL_ENV = "CORPUS_EMBEDDING_MODEL"
MAX_BOOK_MB_ENV = "CORPUS_MAX_BOOK_MB"
MAX_REMOVAL_SHARE_ENV, MAX_REMOVAL_BOOKS_ENV = "CORPUS_MAX_REMOVAL_SHARE", "CORPUS_MAX_REMOVAL_BOOKS"
PG_POOL_SIZE_ENV = "CORPUS_PG_POOL_SIZE"
QUERY_ENCODING_ENV = "CORPUS_QUERY_ENCODING"
SEARCH_TIMEOUT_ENV = "CORPUS_SEARCH_TIMEOUT_MS"
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def env(name: str) -> str | None:
    return os.environ.get(name) or None


class SettingError(ValueError):
    """A setting the environment gives that corpus cannot use (the CLI says so in one line)."""


def number(name: str, default: int | float, kind: type = int) -> int | float:
    raw = env(name)
    if raw is None:
        return kind(default)
    try:
        return kind(raw)
    except ValueError:
        raise SettingError(f"{name} must be a {'whole ' if kind is int else ''}number, not {raw!r}") from None


def choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env(name) or default).lower()
    if value not in choices:
        raise SettingError(f"{name} is {value!r}; it takes {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    library_dir: Path
    database_url: str | None  # unset: the embedded Postgres
    dagster_pg_url: str | None  # unset: derived from the corpus database (resources.postgres)
    qdrant_url: str | None  # unset: embedded Qdrant in the state folder
    neo4j_uri: str | None  # unset: embedded FalkorDB in the state folder
    neo4j_user: str
    embedding_model: str
    books_per_run: int  # books per run in backfills, `corpus ingest` and sensor runs
    bulk_load: str  # auto (a big plan into a small library), always or never: `corpus ingest` loads, then indexes
    bulk_min_books: int  # the fewest books `auto` loads in bulk
    index_build_memory: str  # maintenance_work_mem of a bulk load's HNSW build (the graph must fit for speed)
    run_mb: float  # book files per run in `corpus ingest` and sensor runs, in MB (a bigger book runs alone)
    max_removal_share: float  # a plan removing more than this share of the library...
    max_removal_books: int  # ...and more than this many books waits for confirmation
    max_attempts: int  # failures of a book's same content (not its file's fault, not an outage) before it waits
    postgres_workers: int  # books a Postgres-bound stage writes side by side
    store_retries: int
    store_retry_delay: float
    ef_search: int  # pgvector hnsw.ef_search for search and the chunks_are_findable check
    search_timeout_ms: float  # a search's statements are stopped after this long (0: never)
    min_findable: float  # the chunks_are_findable check's threshold
    max_book_mb: float  # largest book file accepted
    index_matter: bool  # chunk and search front and back matter (contents, indexes...) too
    query_encoding: str  # onnx (the model exported to ONNX Runtime, when it agrees) or torch
    pg_pool_size: int
    pg_pool_timeout: float
    falkordb_start_timeout: float


def current() -> Settings:
    """The settings as the environment gives them now."""
    return Settings(
        state_dir=Path(env(STATE_DIR_ENV) or PROJECT_ROOT / ".corpus").resolve(),
        library_dir=Path(env(LIBRARY_DIR_ENV) or SAMPLE_LIBRARY_DIR).resolve(),
        database_url=env(DATABASE_URL_ENV),
        dagster_pg_url=env(DAGSTER_PG_URL_ENV),
        qdrant_url=env(QDRANT_URL_ENV),
        neo4j_uri=env(NEO4J_URI_ENV),
        neo4j_user=env(NEO4J_USER_ENV) or "neo4j",
        embedding_model=env(MODEL_ENV) or DEFAULT_MODEL,
        books_per_run=number("CORPUS_BOOKS_PER_RUN", 20, int),
        bulk_load=choice("CORPUS_BULK_LOAD", "auto", ("auto", "always", "never")),
        bulk_min_books=number("CORPUS_BULK_MIN_BOOKS", 500, int),
        # 1.48 KB a row of 384-d halfvec graph (16MB held 11,314 rows): 2GB builds ~1.45M rows in memory,
        # the mission's 1.39M chunks; past that pgvector inserts the rest on disk (93k rows: 52 s in memory,
        # 304 s spilled). Postgres takes it only as a build's graph grows (a parallel one: once, up front).
        index_build_memory=env("CORPUS_INDEX_BUILD_MEMORY") or "2GB",
        run_mb=number("CORPUS_RUN_MB", 32, float),
        max_removal_share=number(MAX_REMOVAL_SHARE_ENV, 0.05, float),
        max_removal_books=number(MAX_REMOVAL_BOOKS_ENV, 10, int),
        max_attempts=number("CORPUS_MAX_ATTEMPTS", 3, int),
        postgres_workers=number("CORPUS_POSTGRES_WORKERS", 2, int),
        index_matter=(env("CORPUS_INDEX_MATTER") or "0").lower() in ("1", "true", "yes"),
        store_retries=number("CORPUS_STORE_RETRIES", 4, int),
        store_retry_delay=number("CORPUS_STORE_RETRY_DELAY", 2, float),
        ef_search=number("CORPUS_EF_SEARCH", 200, int),
        search_timeout_ms=number(SEARCH_TIMEOUT_ENV, 5000, float),
        min_findable=number("CORPUS_MIN_FINDABLE", 0.9, float),
        max_book_mb=number(MAX_BOOK_MB_ENV, 64, float),
        query_encoding=(env(QUERY_ENCODING_ENV) or "onnx").lower(),
        pg_pool_size=number(PG_POOL_SIZE_ENV, 4, int),
        pg_pool_timeout=number("CORPUS_PG_POOL_TIMEOUT", 10, float),
        falkordb_start_timeout=number("CORPUS_FALKORDB_START_TIMEOUT", 600, float),
    )


def library_dir_blank() -> bool:
    """CORPUS_LIBRARY_DIR is set, to nothing but spaces."""
    return LIBRARY_DIR_ENV in os.environ and not os.environ[LIBRARY_DIR_ENV].strip()


def secret(name: str) -> EnvVar | None:
    """`EnvVar(name)` when the variable is set (resolved at run time, never logged), else None."""
    return EnvVar(name) if env(name) else None
