"""Book files in a library folder and the stable, safe ids that name their partitions.

A library folder is untrusted: a shared folder holds whatever people put in it. Listing it follows
these rules (README, "A library folder is untrusted"):
- a book is a regular file named `*.txt`, in the folder or a subfolder; names starting with `.`
  (hidden files and folders: `.git`, macOS's `._book.txt`) are not books;
- nothing outside the folder is read: a symbolic link is followed only to a regular file inside the
  folder (it is then read under the link's own name); a link that leaves the folder, is broken or
  names a folder is not followed, and is reported;
- a FIFO, socket or device named `*.txt` is reported, never opened (reading a FIFO blocks forever);
- one entry that cannot be read or named is reported with its reason and the others go on; a
  subfolder that cannot be listed makes the listing incomplete, and an incomplete listing never
  counts a file as deleted;
- any file-name bytes give a stable id, and two files never share one.
"""

import hashlib
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from corpus_assets.books.safe_text import printable

BOOK_SUFFIX = ".txt"
_UNSAFE = re.compile(r"[^a-z0-9_-]+")
_MAX_SLUG_CHARS = 80
_HASH_DIGITS, _LONG_HASH_DIGITS = 8, 16
# What `book_id_for` makes, and all that any entry point (CLI, run config, HTTP) accepts as a book id:
# ids are used as exact file names and partition keys, never as patterns.
BOOK_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}")


def is_book_id(value: object) -> bool:
    return isinstance(value, str) and BOOK_ID.fullmatch(value) is not None


def check_book_id(value: str) -> str:
    """`value` if it is a book id, else ValueError saying what one looks like."""
    if not is_book_id(value):
        raise ValueError(f"'{printable(str(value))}' is not a book id (lowercase letters, digits, '_' and '-', "
                         f"as `corpus status` lists them)")
    return value


def book_id_for(relative_path: Path, digits: int = _HASH_DIGITS) -> str:
    """A partition key for a book file: its name if that is already safe, else a slug + hash.

    Keys are lowercase ASCII letters, digits, `_` and `-`, so they are safe in file names, URLs,
    SQL and Cypher parameters and Dagster partition keys. A name that had to be changed gets `digits`
    hex digits of its path's hash (of the name's own bytes, whatever their encoding), so
    "Les Misérables.txt" and "les miserables.txt" stay two books.
    """
    stem = relative_path.with_suffix("").as_posix()
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = _UNSAFE.sub("-", ascii_stem.lower()).strip("-_")[:_MAX_SLUG_CHARS] or "book"
    if slug == stem:
        return slug
    return f"{slug}-{hashlib.sha256(os.fsencode(relative_path.as_posix())).hexdigest()[:digits]}"


@dataclass(frozen=True)
class EntryProblem:
    """A library entry that is not read, and why (its name is printable: escapes for odd bytes)."""

    name: str
    problem: str


@dataclass(frozen=True)
class LibraryListing:
    root: Path
    files: dict[str, Path] = field(default_factory=dict)  # book id → file, in path order
    sizes: dict[str, int] = field(default_factory=dict)  # book id → bytes, as listed
    problems: list[EntryProblem] = field(default_factory=list)  # entries skipped, each with its reason
    notes: list[str] = field(default_factory=list)  # entries read, with something to know (an id made longer)
    unavailable: str | None = None  # the folder itself could not be listed: why
    unlisted_folders: list[str] = field(default_factory=list)  # subfolders that could not be listed

    @property
    def complete(self) -> bool:
        """Every folder was listed: a book missing here has no file (else its absence proves nothing)."""
        return self.unavailable is None and not self.unlisted_folders

    def name_of(self, book_id: str) -> str:
        """The book's file, relative to the library, printable."""
        return printable(self.files[book_id].relative_to(self.root).as_posix())


def list_library(folder: Path) -> LibraryListing:
    """Every book file under `folder` by book id, and every entry that was skipped, with its reason."""
    root = Path(os.path.abspath(folder))
    try:
        mode = os.stat(root).st_mode
    except FileNotFoundError:
        return LibraryListing(root, unavailable=f"the library folder {printable(str(root))} does not exist")
    except OSError as error:
        return LibraryListing(root, unavailable=f"the library folder {printable(str(root))} cannot be read: "
                                                f"{error.strerror or error}")
    if not stat.S_ISDIR(mode):
        return LibraryListing(root, unavailable=f"the library path {printable(str(root))} is not a folder")
    real_root = os.path.realpath(root)
    found: list[tuple[Path, int]] = []
    problems: list[EntryProblem] = []
    unlisted: list[str] = []
    folders = [root]
    while folders:
        current = folders.pop()
        try:
            with os.scandir(current) as entries:
                listed = sorted(entries, key=lambda e: os.fsencode(e.name))
        except OSError as error:
            if current == root:
                return LibraryListing(root, unavailable=f"the library folder {printable(str(root))} cannot be read: "
                                                        f"{error.strerror or error}")
            name = printable(current.relative_to(root).as_posix())
            unlisted.append(name)
            problems.append(EntryProblem(name + "/", f"folder cannot be listed ({error.strerror or error}): its "
                                                     "books are neither read nor removed"))
            continue
        for entry in listed:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            name = printable(path.relative_to(root).as_posix())
            try:
                outcome = _classify(entry, real_root)
            except OSError as error:
                if entry.name.endswith(BOOK_SUFFIX):
                    problems.append(EntryProblem(name, f"cannot be read: {error.strerror or error}"))
                continue
            if outcome == "folder":
                folders.append(path)
            elif isinstance(outcome, int):
                if entry.name.endswith(BOOK_SUFFIX):
                    found.append((path, outcome))
            elif entry.name.endswith(BOOK_SUFFIX) or os.path.isdir(entry.path):  # a book, or a folder of books, not read
                problems.append(EntryProblem(name, outcome))
    files, sizes, notes = _name_books(root, sorted(found, key=lambda f: os.fsencode(f[0])))
    return LibraryListing(root, files, sizes, problems, notes, unlisted_folders=unlisted)


def _classify(entry: os.DirEntry, real_root: str) -> str | int:
    """"folder", a regular file's size, or the reason the entry is not read."""
    if entry.is_symlink():
        target = os.path.realpath(entry.path)
        if os.path.commonpath([real_root, target]) != real_root:
            return "a link to a place outside the library folder: not followed"
        try:
            info = os.stat(target)
        except FileNotFoundError:
            return "a broken link: not followed"
        if stat.S_ISDIR(info.st_mode):
            return "a link to a folder: not followed (link its files, or move the folder into the library)"
        return info.st_size if stat.S_ISREG(info.st_mode) else "a link to something that is not a regular file"
    info = entry.stat(follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        return "folder"
    if stat.S_ISREG(info.st_mode):
        return info.st_size
    return "not a regular file (a FIFO, socket or device): never opened"


def _name_books(root: Path, found: list[tuple[Path, int]]) -> tuple[dict[str, Path], dict[str, int], list[str]]:
    """Book ids for the files. A file whose own name is its id keeps it; when another file's derived id
    is the same (`x-a-293c5cc2.txt` and `x/a.txt`), that one gets a longer hash instead, and it is noted."""
    by_id: dict[str, list[Path]] = {}
    size_of = dict(found)
    for path, _ in found:
        by_id.setdefault(book_id_for(path.relative_to(root)), []).append(path)
    files: dict[str, Path] = {}
    notes: list[str] = []
    for book_id, paths in by_id.items():
        if len(paths) == 1:
            files[book_id] = paths[0]
            continue
        for path in paths:
            relative = path.relative_to(root)
            own = relative.with_suffix("").as_posix() == book_id
            longer = book_id if own else book_id_for(relative, _LONG_HASH_DIGITS)
            files[longer] = path
            if not own:
                others = ", ".join(printable(p.relative_to(root).as_posix()) for p in paths if p != path)
                notes.append(f"{printable(relative.as_posix())} is book {longer}: its usual id {book_id} "
                             f"belongs to {others}")
    ordered = sorted(files.items(), key=lambda item: os.fsencode(item[1]))
    return dict(ordered), {book_id: size_of[path] for book_id, path in ordered}, notes


def inside(root: Path, path: Path) -> Path:
    """The real file `path` names, if it lies inside the library `root`; else ValueError. Checked again
    when a book is read: a file may have been replaced by a link since the library was listed."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise ValueError(f"{printable(str(path))} now leads outside the library folder: not read")
    return Path(real)
