"""Stage 1: the book file as it is in the library folder."""

import hashlib
from dataclasses import dataclass

from dagster import AssetExecutionContext, MetadataValue

from corpus_assets.assets._per_book import for_each_book
from corpus_assets.books.errors import BookError
from corpus_assets.partitions import book_asset
from resources.library import BookLibrary
from resources.settings import MAX_BOOK_MB_ENV


@dataclass(frozen=True)
class RawBook:
    """A snapshot of the file's bytes: later stages never see a file that changed under them."""

    book_id: str
    source_file: str
    data: bytes
    sha256: str


@book_asset(
    code_version="1",
    kinds={"file"},
    group_name="books",
    deps=["book_files"],  # by key: corpus_assets.assets.files imports the library plan, which imports this
)
def raw_books(context: AssetExecutionContext, library: BookLibrary) -> dict[str, RawBook]:
    """The raw book file (Project Gutenberg text or any plain text), with its size and sha256."""
    files = library.books()
    limit = library.max_book_bytes()

    def read(book_id: str) -> tuple[RawBook, dict]:
        path = files.get(book_id)
        if path is None:
            raise BookError(f"no file for this book in the library folder {library.root()}")
        with path.open("rb") as file:
            data = file.read(limit + 1)  # never more than the limit, even if the file grows meanwhile
        if len(data) > limit:
            raise BookError(
                f"the file {path.name} is {path.stat().st_size / 2**20:,.1f} MB, over the {limit / 2**20:,.0f} MB "
                f"limit for one book (raise it with {MAX_BOOK_MB_ENV} where runs have the memory: README, failure modes)"
            )
        if not data:
            raise BookError(f"the file {path.name} is empty")
        raw = RawBook(book_id, str(path), data, hashlib.sha256(data).hexdigest())
        return raw, {"path": MetadataValue.path(raw.source_file), "bytes": len(data), "sha256": raw.sha256}

    return for_each_book(context, context.partition_keys, read)
