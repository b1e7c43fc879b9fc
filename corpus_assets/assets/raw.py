"""Stage 1: the book file as it is in the library folder."""

import hashlib
from dataclasses import dataclass

from dagster import AssetExecutionContext, MetadataValue

from corpus_assets.assets._per_book import for_each_book
from corpus_assets.books.errors import BookError
from corpus_assets.partitions import book_asset
from resources.library import BookLibrary


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
)
def raw_books(context: AssetExecutionContext, library: BookLibrary) -> dict[str, RawBook]:
    """The raw book file (Project Gutenberg text or any plain text), with its size and sha256."""
    files = library.books()

    def read(book_id: str) -> RawBook:
        path = files.get(book_id)
        if path is None:
            raise BookError(f"no file for this book in the library folder {library.root()}")
        data = path.read_bytes()
        if not data:
            raise BookError(f"the file {path.name} is empty")
        raw = RawBook(book_id, str(path), data, hashlib.sha256(data).hexdigest())
        context.add_asset_metadata(
            {"path": MetadataValue.path(raw.source_file), "bytes": len(data), "sha256": raw.sha256},
            partition_key=book_id,
        )
        return raw

    return for_each_book(context, context.partition_keys, read)
