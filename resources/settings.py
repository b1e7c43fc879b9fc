"""Where the project keeps its state and finds its books, resolved from the environment.

Every process (CLI, Dagster webserver, daemon, run workers, tests) resolves the same paths from the
same variables, which is what lets them share one embedded Postgres server.
"""

import os
from pathlib import Path

from dagster import EnvVar

PROJECT_ROOT = Path(__file__).resolve().parent.parent

STATE_DIR_ENV = "CORPUS_STATE_DIR"
LIBRARY_DIR_ENV = "CORPUS_LIBRARY_DIR"
DATABASE_URL_ENV = "DATABASE_URL"
DAGSTER_PG_URL_ENV = "CORPUS_DAGSTER_PG_URL"

SAMPLE_LIBRARY_DIR = PROJECT_ROOT / "data" / "sample_books"


def state_dir() -> Path:
    """The folder holding the embedded servers' data and per-book artifacts (default `.corpus/`)."""
    return Path(os.environ.get(STATE_DIR_ENV) or PROJECT_ROOT / ".corpus").resolve()


def library_dir() -> Path:
    """The folder of book files to ingest (default: the sample books shipped with the project)."""
    return Path(os.environ.get(LIBRARY_DIR_ENV) or SAMPLE_LIBRARY_DIR).resolve()


def env_or_none(name: str) -> EnvVar | None:
    """`EnvVar(name)` when the variable is set (resolved at run time, never logged), else None.

    Unset means "use the embedded default" for the store URLs, which a bare EnvVar cannot say.
    """
    return EnvVar(name) if os.environ.get(name) else None
