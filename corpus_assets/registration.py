"""Registering books: one dynamic partition per book file in the library folder."""

from dataclasses import dataclass

from dagster import DagsterInstance

from corpus_assets.partitions import books_partitions
from resources.library import BookLibrary


@dataclass(frozen=True)
class Registration:
    found: int
    added: list[str]


def register_books(instance: DagsterInstance, library: BookLibrary) -> Registration:
    """Add a partition for every book file that has none yet (existing partitions are kept)."""
    found = library.listing().files
    known = set(instance.get_dynamic_partitions(books_partitions.name))
    added = [book_id for book_id in found if book_id not in known]
    if added:
        instance.add_dynamic_partitions(books_partitions.name, added)
    return Registration(found=len(found), added=added)
