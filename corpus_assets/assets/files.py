"""Stage 0: the book files as Dagster sees them. A book's data version is its file's sha256, so an
edited file shows its book's raw_books partition unsynced in the UI before anything re-runs (and
each later stage as the run reaches it: Dagster 1.13 marks an asset unsynced when its own inputs
changed).

The library sensor and `corpus ingest` record an observation for each book whose file is new or
changed (`file_observations`); "Observe" on `book_files` in the UI records every registered book's.
"""

import warnings
from contextlib import contextmanager

from dagster import AssetObservation, BetaWarning, DataVersion, DataVersionsByPartition, observable_source_asset

from corpus_assets.library_files import hash_files
from corpus_assets.partitions import books_partitions

# Dagster reads an observation's data version from this tag. Observations the sensor and the CLI
# report (not the observe function's own) can only carry it as a tag: Dagster's public API has no
# data-version argument on AssetObservation.
_DATA_VERSION_TAG = "dagster/data_version"


@contextmanager
def _accepting_beta():
    """Observable source assets and DataVersionsByPartition are beta in Dagster 1.13 and exactly what a
    file's version needs: the warning is accepted here, where they are made, and only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=BetaWarning)
        yield


def observe_book_files(context) -> DataVersionsByPartition:
    registered = set(context.instance.get_dynamic_partitions(books_partitions.name))
    with context.resources.postgres.db() as db:
        scan = hash_files(context.resources.library.listing(), db, only=registered)
    with _accepting_beta():
        return DataVersionsByPartition({book_id: DataVersion(sha) for book_id, sha in scan.current.items()})


with _accepting_beta():
    book_files = observable_source_asset(
        name="book_files",
        partitions_def=books_partitions,
        group_name="books",
        required_resource_keys={"library", "postgres"},
        description="The book files in the library folder; each book's data version is its file's sha256, "
        "observed by the library sensor and `corpus ingest` (the Events tab lists each observation). Its "
        "partitions read 'Missing' and '0% filled': Dagster counts materializations only, and a source is "
        "observed, never materialized (dagster-io/dagster#19614, #15764).",
    )(observe_book_files)


def file_observations(versions: dict[str, str]) -> list[AssetObservation]:
    """An observation of `book_files` per book: its file's sha256 as the data version."""
    return [AssetObservation(book_files.key, partition=book_id, tags={_DATA_VERSION_TAG: sha})
            for book_id, sha in versions.items()]
