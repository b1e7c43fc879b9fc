"""The library folder: where book files come from."""

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from corpus_assets.books.library import scan_library
from resources import settings


class BookLibrary(ConfigurableResource):
    """A folder of `.txt` books (subfolders included); one partition per file."""

    folder: str | None = Field(
        default=None,
        description="Folder of book files; unset: env CORPUS_LIBRARY_DIR, else the sample books.",
    )

    def root(self) -> Path:
        return Path(self.folder).resolve() if self.folder else settings.library_dir()

    def books(self) -> dict[str, Path]:
        """Every book file, by book id."""
        return scan_library(self.root())
