"""What the pipeline would store for a book file, without ingesting it (`corpus inspect`)."""

import hashlib
import os
from pathlib import Path

from corpus_assets.assets.raw import read_book_file
from corpus_assets.books.book import BookText, RawBook, clean_book
from corpus_assets.books.safe_text import printable
from resources.library import BookLibrary


def inspect_file(path: Path) -> BookText:
    """Decode, clean and split one file as `book_text` would; raises `BookError` for bad input: also a
    FIFO or device (never read), or a file over the size limit (read no further)."""
    path = Path(os.path.realpath(path))  # the file asked for by name: wherever its link leads
    data = read_book_file(path.parent, path, BookLibrary().max_book_bytes())
    return clean_book(RawBook(path.stem, printable(str(path)), data, hashlib.sha256(data).hexdigest()))


def describe(book: BookText) -> dict:
    """The JSON object `corpus inspect --json` prints for a book."""
    return {
        "file": book.source_file,
        "title": book.title,
        "subtitle": book.subtitle,
        "author": book.author,
        "language": book.language,
        "encoding": book.encoding,
        "characters": len(book.text),
        "structure_doubts": list(book.doubts),
        "sections": [
            {"title": s.title, "kind": s.kind, "part": s.part, "start": s.start, "end": s.end} for s in book.sections
        ],
    }
