"""The library folder: where book files come from."""

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from corpus_assets.books.library import LibraryListing, list_library
from resources import settings
from resources.settings import LIBRARY_DIR_ENV, MAX_BOOK_MB_ENV


class BookLibrary(ConfigurableResource):
    """A folder of `.txt` books (subfolders included); one partition per file."""

    folder: str | None = Field(
        default=None,
        description="Folder of book files; unset: env CORPUS_LIBRARY_DIR, else the sample books.",
    )

    max_book_mb: float | None = Field(
        default=None,
        # A run holds a book's text, chunks and vectors in memory: a 50 MB book peaks at 1.7 GiB in its
        # own stages (bench/results/large_book.md).
        description=f"Largest book file accepted, in MB (a run's memory grows with it); unset: env "
        f"{MAX_BOOK_MB_ENV}, else 64.",
    )

    def max_book_bytes(self) -> int:
        mb = self.max_book_mb or settings.current().max_book_mb
        return int(mb * 2**20)

    def root(self) -> Path:
        return Path(self.folder).resolve() if self.folder else settings.current().library_dir

    def listing(self) -> LibraryListing:
        """Every book file by book id, and the entries skipped with their reasons
        (`corpus_assets.books.library`)."""
        if self.folder is None and settings.library_dir_blank():
            # Set but empty (a template's placeholder, a failed substitution): no folder is meant, and
            # none is read; not the sample books, whose absence from the stores would look like removals.
            return LibraryListing(Path(f"<{LIBRARY_DIR_ENV} is empty>"), unavailable=f"{LIBRARY_DIR_ENV} is set but empty: set it to the "
                                                           "library folder, or unset it for the sample books")
        return list_library(self.root())
