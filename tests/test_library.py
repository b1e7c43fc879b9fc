"""Listing a library folder: what is a book, what is skipped and why, and the ids books get."""

import os
import re
from pathlib import Path

import pytest

from corpus_assets.books.library import book_id_for, check_book_id, inside, is_book_id, list_library
from corpus_assets.books.safe_text import md_cell, printable
from resources.artifacts import BookArtifactIOManager
from resources.errors import redacted, where
from resources.library import BookLibrary

SAFE = re.compile(r"^[a-z0-9_-]+$")


def test_safe_names_are_kept():
    assert book_id_for(Path("11_alices-adventures-in-wonderland.txt")) == "11_alices-adventures-in-wonderland"


def test_unsafe_names_become_stable_safe_ids():
    names = ["Les Misérables.txt", "les miserables.txt", "O'Brien \"quoted\".txt", "x'; DROP TABLE books; --.txt",
             "$(rm -rf ~) `id`.txt", "}) MATCH (n) DETACH DELETE n //.txt", "日本語.txt", "sub dir/Book.txt",
             os.fsdecode(b"odd\xff name.txt"), os.fsdecode(b"odd\xfe name.txt")]
    ids = [book_id_for(Path(name)) for name in names]
    assert all(SAFE.match(book_id) and is_book_id(book_id) for book_id in ids), ids
    assert len(set(ids)) == len(ids)
    assert ids == [book_id_for(Path(name)) for name in names]  # stable


def test_book_ids_are_names_never_patterns_or_paths():
    for bad in ["*", "..", "../x", "a/b", "", "A", "-x", "x\x00", "x" * 200, "[/bold]", "a b"]:
        assert not is_book_id(bad)
        with pytest.raises(ValueError, match="is not a book id"):
            check_book_id(bad)
    assert check_book_id("1952_the-yellow-wallpaper") == "1952_the-yellow-wallpaper"


def test_scan_finds_books_in_subfolders_and_skips_hidden_entries(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "One Book.txt").write_text("x")
    (tmp_path / "two.txt").write_text("yy")
    (tmp_path / "notes.md").write_text("not a book")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "hidden.txt").write_text("not a book")
    (tmp_path / "._two.txt").write_bytes(b"\x00\x05\x16\x07")  # macOS's AppleDouble file beside a copied book
    listing = list_library(tmp_path)
    assert set(listing.files) == {book_id_for(Path("a/One Book.txt")), "two"}
    assert listing.files["two"] == tmp_path / "two.txt" and listing.sizes["two"] == 2
    assert listing.problems == [] and listing.complete


def test_nothing_outside_the_library_is_read_and_every_skipped_entry_says_why(tmp_path):
    library, outside = tmp_path / "library", tmp_path / "outside"
    library.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("root:x:0:0")
    (library / "book.txt").write_text("a book")
    (library / "passwd.txt").symlink_to("/etc/passwd")
    (library / "secret.txt").symlink_to(outside / "secret.txt")
    (library / "sneaky.txt").symlink_to("../outside/secret.txt")
    (library / "alias.txt").symlink_to("book.txt")  # inside the library: read, under its own name
    (library / "broken.txt").symlink_to("nowhere.txt")
    (library / "linked-folder").symlink_to(outside)
    (library / "folder.txt").symlink_to(library)  # a link to a folder, named like a book
    os.mkfifo(library / "fifo.txt")  # reading it would block forever
    listing = list_library(library)
    assert set(listing.files) == {"book", "alias"}
    why = {p.name: p.problem for p in listing.problems}
    assert set(why) == {"passwd.txt", "secret.txt", "sneaky.txt", "broken.txt", "linked-folder", "folder.txt", "fifo.txt"}
    assert "outside the library" in why["passwd.txt"] and "outside the library" in why["sneaky.txt"]
    assert "broken link" in why["broken.txt"] and "FIFO" in why["fifo.txt"]
    assert "outside the library" in why["linked-folder"] and "a link to a folder" in why["folder.txt"]
    assert listing.complete  # skipped entries are known: the listing is whole
    with pytest.raises(ValueError, match="outside the library"):  # a file that became a link since the listing
        inside(library, library / "passwd.txt")


def test_a_name_that_is_not_utf8_gets_a_stable_id_and_prints_escaped(tmp_path):
    odd = os.fsencode(tmp_path) + b"/odd\xff name.txt"
    with open(odd, "wb") as file:
        file.write(b"some text")
    (tmp_path / "good.txt").write_text("text")
    listing = list_library(tmp_path)
    (odd_id,) = set(listing.files) - {"good"}
    assert odd_id.startswith("odd-name-") and set(list_library(tmp_path).files) == {odd_id, "good"}  # stable
    assert listing.name_of(odd_id) == "odd\\xff name.txt"
    assert odd_id == book_id_for(Path(os.fsdecode(b"odd\xff name.txt")))


def test_two_files_that_map_to_one_id_are_both_books_and_the_renamed_one_is_noted(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.txt").write_text("first")
    derived = book_id_for(Path("x/a.txt"))
    (tmp_path / f"{derived}.txt").write_text("second")  # its own name is the first one's id
    listing = list_library(tmp_path)
    assert len(listing.files) == 2 and listing.files[derived] == tmp_path / f"{derived}.txt"
    (other,) = set(listing.files) - {derived}
    assert listing.files[other] == tmp_path / "x" / "a.txt" and other.startswith("x-a-") and len(other) == len(derived) + 8
    assert listing.notes == [f"x/a.txt is book {other}: its usual id {derived} belongs to {derived}.txt"]


def test_a_folder_that_cannot_be_read_is_reported_and_the_listing_is_incomplete(tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "inside.txt").write_text("x")
    (tmp_path / "open.txt").write_text("y")
    scandir = os.scandir

    def refusing(path):
        # As root every folder is readable: the refusal a shared folder gives another user is injected.
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    listing = list_library(tmp_path)
    assert set(listing.files) == {"open"}
    assert not listing.complete and listing.unlisted_folders == ["locked"]
    assert [(p.name, "Permission denied" in p.problem) for p in listing.problems] == [("locked/", True)]


def test_a_missing_or_unusable_library_folder_is_unavailable_not_empty(tmp_path):
    assert "does not exist" in list_library(tmp_path / "nope").unavailable
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in list_library(tmp_path / "file").unavailable
    assert not list_library(tmp_path / "nope").complete
    assert list_library(tmp_path).unavailable is None


def test_text_from_a_library_is_shown_as_written():
    assert printable("Title\x1b[2J\x07 ok") == "Title\\x1b[2J\\x07 ok"
    assert printable(os.fsdecode(b"a\xffb")) == "a\\xffb"
    assert printable("a\u202eb") == "a\\u202eb"  # a right-to-left override would make a name read backwards
    assert md_cell("<script>alert(1)</script> | *bold* [link](x)") == (
        "&lt;script\\>alert\\(1\\)&lt;/script\\> \\| \\*bold\\* \\[link\\]\\(x\\)")


def test_artifact_removal_takes_a_book_id_never_a_pattern(tmp_path):
    artifacts = BookArtifactIOManager(base_dir=str(tmp_path))
    for asset in ("book_text", "book_chunks"):
        (tmp_path / asset).mkdir()
        for book in ("a", "b"):
            (tmp_path / asset / f"{book}.pickle").write_bytes(b"x")
    (tmp_path.parent / "outside.pickle").write_bytes(b"x")
    for pattern in ("*", "../outside", "..", "a/../b", "[ab]"):
        with pytest.raises(ValueError, match="not a book id"):
            artifacts.delete_book(pattern)
    assert len(list(tmp_path.rglob("*.pickle"))) == 4 and (tmp_path.parent / "outside.pickle").exists()
    assert artifacts.delete_book("a") == 2
    assert sorted(p.name for p in tmp_path.rglob("*.pickle")) == ["b.pickle", "b.pickle"]


def test_addresses_never_show_a_password_however_they_are_written():
    for url in ["postgresql://alice:s3cr%40t@db:5432/corp", "postgresql://alice:pa/ss#SECRET@127.0.0.1:1/corp",
                "host=db.example user=alice password=SECRET dbname=corp", "postgresql://u@/db?host=/tmp&password=SECRET",
                "host=db password='SE CRET' dbname=x"]:
        assert "SECRET" not in where(url) and "s3cr" not in where(url) and "SE CRET" not in where(url), url
        assert "SECRET" not in redacted(url) and "s3cr" not in redacted(url) and "***" in redacted(url), url
    assert where("host=db.example port=5433 user=alice password=x dbname=corp") == "postgresql://db.example:5433/corp"
    assert where("postgresql://alice:pa/ss#SECRET@127.0.0.1:1/corp") == "postgresql://127.0.0.1:1/corp"


def test_names_show_on_one_line():
    assert printable("new\nline\t.txt") == "new\\x0aline\\x09.txt"
    assert printable("Traceback:\n  line 1", keep_lines=True) == "Traceback:\n  line 1"


def test_a_blank_library_setting_reads_no_folder_not_the_sample_books(monkeypatch):
    monkeypatch.setenv("CORPUS_LIBRARY_DIR", " ")
    listing = BookLibrary().listing()
    assert listing.files == {} and "CORPUS_LIBRARY_DIR is set but empty" in listing.unavailable
