import re
from pathlib import Path

from corpus_assets.books.library import book_id_for, scan_library

SAFE = re.compile(r"^[a-z0-9_-]+$")


def test_safe_names_are_kept():
    assert book_id_for(Path("11_alices-adventures-in-wonderland.txt")) == "11_alices-adventures-in-wonderland"


def test_unsafe_names_become_stable_safe_ids():
    names = ["Les Misérables.txt", "les miserables.txt", "O'Brien \"quoted\".txt", "x'; DROP TABLE books; --.txt",
             "$(rm -rf ~) `id`.txt", "}) MATCH (n) DETACH DELETE n //.txt", "日本語.txt", "sub dir/Book.txt"]
    ids = [book_id_for(Path(name)) for name in names]
    assert all(SAFE.match(book_id) for book_id in ids), ids
    assert len(set(ids)) == len(ids)
    assert ids == [book_id_for(Path(name)) for name in names]  # stable


def test_scan_finds_books_in_subfolders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "One Book.txt").write_text("x")
    (tmp_path / "two.txt").write_text("y")
    (tmp_path / "notes.md").write_text("not a book")
    books = scan_library(tmp_path)
    assert set(books) == {book_id_for(Path("a/One Book.txt")), "two"}
    assert books["two"] == tmp_path / "two.txt"
