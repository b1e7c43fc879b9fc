"""Awkward and broken book files through the real pipeline: each is ingested correctly or fails with a
message naming the book and the problem, and the other books stay as they were.

(Empty and binary files: tests/test_pipeline.py; decoding details: tests/test_decode.py.)
"""

import hashlib
import re

import numpy as np

import psycopg
import pytest
from dagster import AssetSelection, DagsterInstance, build_sensor_context

from corpus_assets.assets.chunks import book_chunks
from corpus_assets.assets.embeddings import chunk_embeddings
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.raw import raw_books
from corpus_assets.assets.text import book_text
from corpus_assets.batches import RANGE_START_TAG
from corpus_assets.books.chunking import Chunk
from corpus_assets.books.errors import BookError
from corpus_assets.books.library import book_id_for
from corpus_assets.books.structure import Section
from corpus_assets.registration import register_books
from corpus_cli.runs import failure_reason
from resources.library import BookLibrary
from resources.postgres import PostgresResource
from resources.postgres.store import BookRow
from sensors.library_sensor import library_sensor

ASSETS = [raw_books, book_text, book_chunks, chunk_embeddings, pgvector_chunks]
WALLPAPER = "1952_the-yellow-wallpaper"

PROSE = ("The travellers reached the harbour at dusk and found the inn already full of sailors, merchants and "
         "a tired family waiting for the morning boat. ")
FRENCH = ("Phileas Fogg demeurait en 1872 dans la maison où Sheridan mourut en 1814. C'était un des membres les "
          "plus singuliers et les plus remarqués du Reform-Club de Londres, bien qu'il semblât prendre à tâche de "
          "ne rien faire qui pût attirer l'attention. ")
GUTENBERG_FRENCH = (
    "The Project Gutenberg eBook of Le Tour du monde en quatre-vingts jours\n\n"
    "Title: Le Tour du monde en quatre-vingts jours\n\nAuthor: Jules Verne\n\nLanguage: French\n\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK LE TOUR DU MONDE ***\n\n"
    + "\n\n".join([FRENCH * 4] * 6)
    + "\n\n*** END OF THE PROJECT GUTENBERG EBOOK LE TOUR DU MONDE ***\n"
)

# file name → (bytes, what Postgres must hold afterwards)
AWKWARD = {
    # Latin-1: é is 0xE9, not valid UTF-8; read as Windows-1252, which agrees on every Latin-1 letter.
    "latin1-cafe.txt": ("Le café de la rue Saint-Honoré. ".encode("latin-1") * 40 + PROSE.encode() * 20,
                        {"encoding": "windows-1252", "text": "Le café de la rue Saint-Honoré"}),
    # Windows-1252 curly quotes 0x93/0x94 and a dash 0x97.
    "cp1252-quotes.txt": (b"\x93Curly quotes\x94 \x97 as Windows writes them. " * 40 + PROSE.encode() * 20,
                          {"encoding": "windows-1252", "text": "“Curly quotes” — as Windows writes them"}),
    # Valid UTF-8 but for a stray byte and a multi-byte character cut off at the end (a truncated download).
    "truncated-utf8.txt": ("Grüße aus München. ".encode() * 40 + b"\xff" + PROSE.encode() * 20 + "é".encode()[:1],
                           {"encoding": "utf-8 (with invalid bytes replaced)", "text": "Grüße aus München"}),
    # Plain text: no Gutenberg markers, no chapter headings; title from the file name, one section.
    "plain-no-markers.txt": ((PROSE * 30).encode(), {"encoding": "utf-8", "title": "plain-no-markers",
                                                     "chapter_count": 1}),
    # A non-English Gutenberg book.
    "verne-tour-du-monde.txt": (GUTENBERG_FRENCH.encode(), {"language": "French", "author": "Jules Verne",
                                                            "text": "la maison où Sheridan mourut"}),
    # Shell, SQL and Cypher metacharacters, quotes, spaces and unicode in the file name.
    "O'Brien \"Tales\"; DROP TABLE books;-- $(rm -rf ~) Ünïcødé.txt": ((PROSE * 25).encode(), {"encoding": "utf-8"}),
}


@pytest.fixture
def pipeline(book_resources, materialize_books):
    instance = DagsterInstance.ephemeral()

    def run(*book_ids):
        return materialize_books(ASSETS, instance, book_resources, list(book_ids))

    run.instance = instance
    return run


def stored_book(database_url, book_id):
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        book = conn.execute("SELECT * FROM books WHERE id = %s", (book_id,)).fetchone()
        texts = [r["text"] for r in conn.execute("SELECT text FROM chunks WHERE book_id = %s ORDER BY ordinal", (book_id,))]
    return book, texts


def test_awkward_but_valid_books_are_ingested_correctly_beside_a_normal_one(pipeline, library, database_url):
    for name, (data, _) in AWKWARD.items():
        (library / name).write_bytes(data)
    # The same content under a second name is a second book (each file is one); its chunks are not embedded again.
    (library / "copy-of-wallpaper.txt").write_bytes((library / f"{WALLPAPER}.txt").read_bytes())
    ids = BookLibrary(folder=str(library)).listing().files

    result = pipeline(*ids)  # one batched run, partitions in registration order

    assert result.success, failure_reason(next(e for e in result.all_events if e.is_step_failure))
    for name, (_, expected) in AWKWARD.items():
        book_id = book_id_for(library.joinpath(name).relative_to(library))
        assert re.fullmatch(r"[a-z0-9_-]+", book_id), book_id
        book, texts = stored_book(database_url, book_id)
        assert book is not None and texts, name
        for field, value in expected.items():
            if field == "text":
                assert value in " ".join(" ".join(texts).split()), (name, texts[0][:120])
            else:
                assert book[field] == value, (name, field, book[field])
    wallpaper, wallpaper_texts = stored_book(database_url, WALLPAPER)
    copy, copy_texts = stored_book(database_url, "copy-of-wallpaper")
    assert copy_texts == wallpaper_texts and copy["content_sha256"] == wallpaper["content_sha256"]
    with psycopg.connect(database_url) as conn:  # the name with SQL in it did nothing to the tables
        assert conn.execute("SELECT count(*) FROM books").fetchone()[0] == len(ids)
        distinct_texts = conn.execute("SELECT count(DISTINCT content_sha256) FROM chunks").fetchone()[0]
    metadata = result.asset_materializations_for_node("chunk_embeddings")[0].metadata
    # Each distinct text is embedded once per run: the copy's chunks cost nothing.
    assert metadata["chunks embedded in run"].value == distinct_texts < metadata["chunks in run"].value


def test_a_file_that_disappears_before_its_run_fails_by_name_and_leaves_the_others(pipeline, library, database_url):
    assert pipeline(WALLPAPER).success
    before = stored_book(database_url, WALLPAPER)
    gone = library / "gone soon.txt"
    gone.write_text(PROSE * 20, encoding="utf-8")
    book_id = book_id_for(gone.relative_to(library))
    register_books(pipeline.instance, BookLibrary(folder=str(library)))
    gone.unlink()  # deleted between registration (or a sensor tick) and its run

    result = pipeline(book_id)

    assert not result.success
    reason = failure_reason(next(e for e in result.all_events if e.is_step_failure))
    assert book_id in reason and "no file for this book" in reason
    assert stored_book(database_url, book_id) == (None, [])
    assert stored_book(database_url, WALLPAPER) == before


def test_a_file_changed_during_its_run_is_stored_as_first_read_and_the_sensor_runs_it_again(
    book_resources, materialize_books, library, database_url
):
    instance = DagsterInstance.ephemeral()
    path = library / f"{WALLPAPER}.txt"
    first_read = path.read_bytes()
    # The run reads the file (raw_books), then the file changes before the later stages run.
    assert materialize_books(ASSETS, instance, book_resources, [WALLPAPER], selection=AssetSelection.assets(raw_books)).success
    path.write_text(first_read.decode("utf-8").replace("John", "Jonathan"), encoding="utf-8")
    rest = AssetSelection.assets(*ASSETS) - AssetSelection.assets(raw_books)
    assert materialize_books(ASSETS, instance, book_resources, [WALLPAPER], selection=rest).success

    book, texts = stored_book(database_url, WALLPAPER)
    assert book["content_sha256"] == hashlib.sha256(first_read).hexdigest()  # one consistent version
    assert any("John " in t for t in texts) and not any("Jonathan" in t for t in texts)
    with build_sensor_context(instance=instance, resources=book_resources) as context:
        tick = library_sensor(context)
    assert [r.tags[RANGE_START_TAG] for r in tick.run_requests] == [WALLPAPER]


def test_text_postgres_refuses_is_the_files_fault_not_a_retry(database_url, opened):
    """A character Postgres cannot store, or a text too long for its full-text index, fails the same way
    on every try: BookError (held back until the file changes), never a retried step (it was: 3 runs)."""
    words = " ".join(f"w{i:07d}" for i in range(130_000))  # a tsvector over Postgres' 1 MB limit
    for text, said in [("a NUL \x00 here", "Postgres refused the book's text"), (words, "too long for tsvector")]:
        chunk = Chunk("c1", "refused", 0, 0, "One", text, 10, 0, len(text), hashlib.sha256(text.encode()).hexdigest())
        book = BookRow("refused", "Refused", None, "English", "refused.txt", "0" * 64, len(text), "utf-8",
                       [Section(0, "One", 0, len(text))])
        with opened(PostgresResource(database_url=database_url)) as postgres, postgres.db() as db:
            with pytest.raises(BookError, match=said) as refused:
                db.replace_book_chunks(book, [chunk], np.ones((1, db.embedding_dimension()), dtype=np.float32) / 20,
                                       "m", {})
            assert "\n" not in str(refused.value) and not db.chunk_count("refused")
