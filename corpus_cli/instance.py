"""The project's Dagster instance and the code location's resources, for code that runs outside Dagster."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from dagster import DagsterInstance, build_resources
from filelock import FileLock

from resources import settings
from resources.postgres import dagster_storage_url


def dagster_home() -> Path:
    """Point Dagster at the project's dagster.yaml and its Postgres storage; return DAGSTER_HOME.

    DAGSTER_HOME lives in the state folder (Dagster writes logs and caches there) and links back
    to the project's dagster.yaml, which reads the storage URL from the environment.
    """
    home = settings.current().state_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    with _setup_lock(home):
        if not config.is_symlink():
            config.unlink(missing_ok=True)
            config.symlink_to(settings.PROJECT_ROOT / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ[settings.DAGSTER_PG_URL_ENV] = dagster_storage_url()
    return home


def _setup_lock(home: Path) -> FileLock:
    """Held by one `corpus` process at a time while it sets up DAGSTER_HOME or Dagster's tables."""
    return FileLock(home / ".setup.lock")


def instance() -> DagsterInstance:
    home = dagster_home()
    # Dagster creates its storage tables on first use without guarding against other processes
    # doing the same (DuplicateTable "instance_info" when several ingests start on a new database).
    with _setup_lock(home):
        return DagsterInstance.get()


@contextmanager
def code_location_resources(*keys: str) -> Iterator[SimpleNamespace]:
    """The code location's resources (as its Definitions configure them), set up for use here."""
    from corpus_assets.definitions import defs

    with build_resources({key: defs.resources[key] for key in keys}) as built:
        yield SimpleNamespace(**{key: getattr(built, key) for key in keys})
