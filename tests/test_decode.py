import codecs
import csv

import pytest

from corpus_assets.books.decode import decode_book
from corpus_assets.books.errors import BookError

TEXT = "“Café,” she said — naïve.\nSecond line\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (TEXT.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "utf-8-sig"),
        (TEXT.encode("cp1252"), "windows-1252"),
        (codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "utf-16"),
    ],
)
def test_decodes_real_library_encodings(data, encoding):
    decoded = decode_book(data)
    assert decoded.text == TEXT
    assert decoded.encoding == encoding


def test_latin1_reads_the_same_as_windows_1252():
    assert decode_book("Señor Müller à l'été\n".encode("latin-1")).text == "Señor Müller à l'été\n"


def test_line_endings_are_normalized():
    assert decode_book(b"one\r\ntwo\rthree\n").text == "one\ntwo\nthree\n"


def test_utf8_with_a_truncated_tail_stays_utf8():
    data = ("naïve café " * 50).encode("utf-8") + "é".encode("utf-8")[:1]
    decoded = decode_book(data)
    assert decoded.encoding.startswith("utf-8")
    assert decoded.text.startswith("naïve café")
    assert decoded.text.endswith("\ufffd")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b" \n\r\n\t ", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "binary"),
        (bytes(range(1, 9)) * 200, "binary"),
    ],
)
def test_rejects_empty_and_binary_files(data, problem):
    with pytest.raises(BookError, match=problem):
        decode_book(data)


def test_decodes_every_shared_book_as_the_manifest_says(shared_books):
    manifest = shared_books.parent / "MANIFEST.tsv"
    for row in csv.DictReader(manifest.open(encoding="utf-8"), delimiter="\t"):
        decoded = decode_book((shared_books / row["file"]).read_bytes())
        expected = "utf-8-sig" if row["encoding"] == "UTF-8+BOM" else "utf-8"
        assert decoded.encoding == expected, row["file"]
        assert "\r" not in decoded.text
