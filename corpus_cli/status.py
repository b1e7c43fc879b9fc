"""What `corpus status` shows beside the stores' counts (`corpus_assets.assets.report.corpus_summary`): the
failing checks, and the library folder as the plan sees it."""

from dataclasses import dataclass

from dagster import AssetCheckKey, DagsterInstance

from corpus_assets.books.library import LibraryListing
from corpus_assets.checks import book_checks
from corpus_assets.library_plan import Removal, books_in_flight, removal_of
from corpus_assets.partitions import books_partitions
from resources.library import BookLibrary


@dataclass(frozen=True)
class FailingCheck:
    name: str
    asset: str
    books: list[str]


def failing_checks(instance: DagsterInstance, books: set[str]) -> list[FailingCheck]:
    """Each check whose latest evaluation failed on some of `books` (a removed book's history is not
    counted), with those books."""
    keys: list[AssetCheckKey] = [key for check in book_checks for key in check.check_keys]
    failing: dict[AssetCheckKey, list[str]] = {}
    for info in instance.event_log_storage.get_asset_check_partition_info(keys):
        if info.latest_execution_status.value == "FAILED" and info.partition_key in books:
            failing.setdefault(info.check_key, []).append(info.partition_key)
    return [FailingCheck(key.name, key.asset_key.to_user_string(), sorted(failed)) for key, failed in failing.items()]


def library_state(library: BookLibrary, instance: DagsterInstance, stored: list[str]) -> tuple[LibraryListing, Removal]:
    """The library as listed now (no file is read), and what the plan would do with the books whose
    files are gone: the same decision the sensor and `corpus ingest` take."""
    listing = library.listing()
    partitions = instance.get_dynamic_partitions(books_partitions.name)
    known = set(partitions) | set(stored)
    gone = sorted(known - set(listing.files) - books_in_flight(instance, partitions))
    return listing, removal_of(listing, gone, len(known))
