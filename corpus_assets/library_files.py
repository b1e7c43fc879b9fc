"""Each library file's content hash, cached in Postgres (`library_files`) while its size and mtime hold.

Used by the library plan (sensor, `corpus ingest`) and by "Observe" on `book_files` in the UI.
"""

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from corpus_assets.books.library import LibraryListing, inside
from resources.postgres.store import CorpusDB, FileHash


@dataclass(frozen=True)
class LibraryScan:
    present: set[str]  # every book file in the library (hashed or not)
    current: dict[str, str]  # book id → sha256 of its file (the files hashed so far)
    deferred: int  # files left to hash (over the time budget)
    unreadable: dict[str, str] = field(default_factory=dict)  # book id → why its file could not be read


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_files(listing: LibraryListing, db: CorpusDB, budget_seconds: float | None = None,
               only: set[str] | None = None) -> LibraryScan:
    """Each listed file's sha256 (of the books in `only`, if given): from the cache while its size and
    mtime are unchanged, else read (until `budget_seconds` is spent: the rest waits for the next scan).
    A file that cannot be read is reported in `unreadable` with its reason, and the others go on."""
    started = time.monotonic()
    cached = db.library_files()
    current: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    hashed: list[FileHash] = []
    deferred = 0
    files = {book_id: path for book_id, path in listing.files.items() if only is None or book_id in only}
    for book_id, path in files.items():
        try:
            stat = path.stat()
            known = cached.get(book_id)
            if known and known.size == stat.st_size and known.mtime_ns == stat.st_mtime_ns:
                current[book_id] = known.sha256
            elif budget_seconds is None or time.monotonic() - started < budget_seconds:
                hashed.append(FileHash(book_id, stat.st_size, stat.st_mtime_ns, file_sha256(inside(listing.root, path))))
                current[book_id] = hashed[-1].sha256
            else:
                deferred += 1
        except FileNotFoundError:  # deleted since the library was listed
            continue
        except (OSError, ValueError) as error:  # unreadable, or now a link leading out of the library
            unreadable[book_id] = (f"cannot be read: {error.strerror or error}" if isinstance(error, OSError)
                                   else str(error))
    gone = [book_id for book_id in cached if book_id not in listing.files] if listing.complete else []
    db.record_library_files(hashed, gone)
    return LibraryScan(set(files), current, deferred, unreadable)
