"""Book files in a library folder and the stable, safe ids that name their partitions."""

import hashlib
import re
import unicodedata
from pathlib import Path

BOOK_SUFFIX = ".txt"
_UNSAFE = re.compile(r"[^a-z0-9_-]+")
_MAX_SLUG_CHARS = 80


def book_id_for(relative_path: Path) -> str:
    """A partition key for a book file: its name if that is already safe, else a slug + hash.

    Keys are lowercase ASCII letters, digits, `_` and `-`, so they are safe in file names, URLs,
    SQL and Cypher parameters and Dagster partition keys. A name that had to be changed gets 8 hex
    digits of its path's hash, so "Les Misérables.txt" and "les miserables.txt" stay two books.
    """
    stem = relative_path.with_suffix("").as_posix()
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = _UNSAFE.sub("-", ascii_stem.lower()).strip("-_")[:_MAX_SLUG_CHARS] or "book"
    if slug == stem:
        return slug
    return f"{slug}-{hashlib.sha256(relative_path.as_posix().encode()).hexdigest()[:8]}"


def scan_library(folder: Path) -> dict[str, Path]:
    """Every book file under `folder` (recursively), by book id, in a stable order."""
    if not folder.is_dir():
        raise FileNotFoundError(f"library folder {folder} does not exist")
    files = sorted(p for p in folder.rglob(f"*{BOOK_SUFFIX}") if p.is_file())
    return {book_id_for(path.relative_to(folder)): path for path in files}
