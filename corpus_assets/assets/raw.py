"""Stage 1: the book file as it is in the library folder."""

import hashlib
import os
import stat
from pathlib import Path

from dagster import AssetExecutionContext, MetadataValue

from corpus_assets.assets._per_book import for_each_book
from corpus_assets.assets.files import book_files
from corpus_assets.books.book import RawBook
from corpus_assets.books.errors import BookError
from corpus_assets.books.library import inside
from corpus_assets.books.safe_text import printable
from corpus_assets.partitions import book_asset
from resources.library import BookLibrary
from resources.settings import MAX_BOOK_MB_ENV


@book_asset(
    code_version="1",
    kinds={"file"},
    group_name="books",
    deps=[book_files],
)
def raw_books(context: AssetExecutionContext, library: BookLibrary) -> dict[str, RawBook]:
    """The raw book file (Project Gutenberg text or any plain text), with its size and sha256."""
    listing = library.listing()
    limit = library.max_book_bytes()

    def read(book_id: str) -> tuple[RawBook, dict]:
        path = listing.files.get(book_id)
        if path is None:
            raise BookError(f"no file for this book in the library folder {printable(str(listing.root))}"
                            + (f" ({listing.unavailable})" if listing.unavailable else ""))
        data = read_book_file(listing.root, path, limit)
        # The path as text any store accepts: a name's bytes that are not UTF-8 are shown as escapes.
        raw = RawBook(book_id, printable(str(path)), data, hashlib.sha256(data).hexdigest())
        return raw, {"path": MetadataValue.path(raw.source_file), "bytes": len(data), "sha256": raw.sha256}

    return for_each_book(context, context.partition_keys, read)


def read_book_file(root: Path, path: Path, limit: int) -> bytes:
    """The file's bytes, at most `limit` (else BookError), read only if it is still a regular file inside
    the library `root` (a file replaced by a link or a FIFO since the library was listed is not read)."""
    name = printable(path.name)
    try:
        real = inside(root, path)
        descriptor = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except ValueError as error:
        raise BookError(str(error)) from None
    except OSError as error:
        raise BookError(f"the file {name} cannot be read: {error.strerror or error}") from None
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BookError(f"{name} is not a regular file: not read")
        try:
            data = file.read(limit + 1)  # never more than the limit, even if the file grows meanwhile
        except OSError as error:
            raise BookError(f"the file {name} cannot be read: {error.strerror or error}") from None
    if len(data) > limit:
        raise BookError(
            f"the file {name} is {info.st_size / 2**20:,.1f} MB, over the {limit / 2**20:,.0f} MB "
            f"limit for one book (raise it with {MAX_BOOK_MB_ENV} where runs have the memory: README, failure modes)"
        )
    if not data:
        raise BookError(f"the file {name} is empty")
    return data
