"""The assets end to end on a real Dagster instance and the real embedded Postgres."""

import codecs
import shutil

import numpy as np
import psycopg
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance

from corpus_assets.assets.chunks import book_chunks
from corpus_assets.assets.embeddings import chunk_embeddings
from corpus_assets.assets.pgvector import pgvector_chunks
from corpus_assets.assets.raw import raw_books
from corpus_assets.assets.text import book_text
from resources.embedding import EmbeddingModel
from resources.library import BookLibrary
from resources.settings import SAMPLE_LIBRARY_DIR as SAMPLE_BOOKS

ASSETS = [raw_books, book_text, book_chunks, chunk_embeddings, pgvector_chunks]
WALLPAPER = "1952_the-yellow-wallpaper"
ALICE = "11_alices-adventures-in-wonderland"
HAMLET = "1524_hamlet"


@pytest.fixture
def pipeline(book_resources, materialize_books):
    """Materialize books on a real (ephemeral) instance with real resources."""
    instance = DagsterInstance.ephemeral()

    def run(*book_ids, **kwargs):
        return materialize_books(ASSETS, instance, book_resources, book_ids, **kwargs)

    run.instance = instance
    run.postgres = book_resources["postgres"]
    return run


def chunk_rows(database_url, book_id):
    with psycopg.connect(database_url) as conn:
        # Norms rounded: a text re-embedded in another batch can differ in the last float bits.
        return conn.execute(
            "SELECT id, ordinal, vector_dims(embedding), round(vector_norm(embedding)::numeric, 5), model FROM chunks "
            "WHERE book_id = %s ORDER BY ordinal",
            (book_id,),
        ).fetchall()


def latest_record(instance, asset, book_id):
    return instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[book_id]), limit=1
    ).records[0]


def latest_metadata(instance, asset, book_id):
    record = latest_record(instance, asset, book_id)
    return {key: value.value for key, value in record.asset_materialization.metadata.items()}


def failure_message(result):
    failure = next(event for event in result.all_events if event.is_step_failure)
    return failure.step_failure_data.error.message


def test_one_book_end_to_end(pipeline, database_url):
    result = pipeline(WALLPAPER)
    assert result.success

    rows = chunk_rows(database_url, WALLPAPER)
    chunks = latest_metadata(pipeline.instance, "book_chunks", WALLPAPER)["chunks"]
    assert len(rows) == chunks > 30
    assert [r[1] for r in rows] == list(range(len(rows)))
    assert {r[2] for r in rows} == {384}
    assert np.allclose([float(r[3]) for r in rows], 1.0, atol=1e-3)
    assert {r[4] for r in rows} == {"sentence-transformers/all-MiniLM-L6-v2"}

    with psycopg.connect(database_url) as conn:
        book = conn.execute("SELECT title, author, language, chunk_count FROM books WHERE id = %s", (WALLPAPER,)).fetchone()
        assert book == ("The Yellow Wallpaper", "Charlotte Perkins Gilman", "English", len(rows))
        valid = conn.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'chunks_embedding_hnsw_idx'"
        ).fetchone()
        assert valid == (True,)

    metadata = latest_metadata(pipeline.instance, "pgvector_chunks", WALLPAPER)
    assert metadata["rows"] == len(rows)
    text_metadata = latest_metadata(pipeline.instance, "book_text", WALLPAPER)
    assert text_metadata["title"] == "The Yellow Wallpaper" and text_metadata["gutenberg markers"] is True


def test_rematerializing_leaves_the_same_rows(pipeline, database_url):
    assert pipeline(WALLPAPER).success
    first = chunk_rows(database_url, WALLPAPER)
    embedded = latest_metadata(pipeline.instance, "chunk_embeddings", WALLPAPER)
    assert embedded["chunks embedded in run"] == len(first) and embedded["chunks per second"] > 0
    assert "model load seconds" in embedded and "unchanged" not in embedded

    assert pipeline(WALLPAPER).success  # unchanged: chunks come back from Postgres, nothing is rewritten
    assert chunk_rows(database_url, WALLPAPER) == first
    assert latest_metadata(pipeline.instance, "book_chunks", WALLPAPER)["reused from postgres"] is True
    assert latest_metadata(pipeline.instance, "book_chunks", WALLPAPER)["chunks"] == len(first)
    # Nothing encoded: the same counts, "unchanged", and no rate over work that did not happen.
    cached = latest_metadata(pipeline.instance, "chunk_embeddings", WALLPAPER)
    assert (cached["chunks"], cached["reused from cache"], cached["chunks embedded in run"]) == (len(first), len(first), 0)
    assert "unchanged" in cached and not {"chunks per second", "run encode seconds", "model load seconds"} & set(cached)
    unchanged = latest_metadata(pipeline.instance, "pgvector_chunks", WALLPAPER)
    assert unchanged["unchanged (not rewritten)"] is True and unchanged["rows replaced"] == 0

    assert pipeline(WALLPAPER, run_config={"ops": {"pgvector_chunks": {"config": {"rewrite": True}}}}).success
    assert chunk_rows(database_url, WALLPAPER) == first
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM chunks").fetchone() == (len(first), len(first))
    assert latest_metadata(pipeline.instance, "pgvector_chunks", WALLPAPER)["rows replaced"] == len(first)


def test_rows_missing_from_postgres_are_rewritten_on_the_next_run(pipeline, database_url):
    assert pipeline(WALLPAPER).success
    first = chunk_rows(database_url, WALLPAPER)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM chunks WHERE book_id = %s AND ordinal >= 10", (WALLPAPER,))

    assert pipeline(WALLPAPER).success

    assert chunk_rows(database_url, WALLPAPER) == first
    assert latest_metadata(pipeline.instance, "book_chunks", WALLPAPER)["reused from postgres"] is False


@pytest.mark.parametrize(
    ("file_name", "content", "problem"),
    [("empty book.txt", b"", "is empty"), ("picture.txt", b"\x89PNG\r\n\x1a\n\x00\x00" * 100, "binary"),
     # A NUL past the binary test's first 64 KiB, and one in UTF-16 (whose zero bytes are no NULs until
     # decoded): Postgres refuses them, so they are bad input, never retried (they were, 4 times per run).
     ("late nul.txt", b"Plain words of a book. " * 4000 + b"\x00" + b"More words. " * 100, "NUL character"),
     ("utf16 nul.txt", codecs.BOM_UTF16_LE + "Words\x00of a book. ".encode("utf-16-le") * 500, "NUL character")],
)
def test_a_bad_file_fails_its_book_and_stores_nothing(pipeline, library, database_url, file_name, content, problem):
    assert pipeline(WALLPAPER).success
    before = chunk_rows(database_url, WALLPAPER)
    (library / file_name).write_bytes(content)
    bad_book = next(b for b in BookLibrary(folder=str(library)).listing().files if b != WALLPAPER)

    result = pipeline(bad_book)

    assert not result.success
    message = failure_message(result)
    assert bad_book in message and problem in message
    assert pipeline.instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY) == []
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM books WHERE id = %s", (bad_book,)).fetchone() == (0,)
    assert chunk_rows(database_url, bad_book) == []
    assert chunk_rows(database_url, WALLPAPER) == before


def test_a_batched_run_ingests_several_books_and_search_finds_them(pipeline, library, database_url, opened):
    shutil.copy(SAMPLE_BOOKS / f"{ALICE}.txt", library)
    result = pipeline(ALICE, WALLPAPER)  # one run, one step per stage, both books
    assert result.success
    for book_id in (ALICE, WALLPAPER):
        assert chunk_rows(database_url, book_id)
        assert latest_metadata(pipeline.instance, "chunk_embeddings", book_id)["books in run"] == 2
        assert latest_record(pipeline.instance, "pgvector_chunks", book_id).run_id == result.run_id

    with opened(pipeline.postgres) as postgres:
        vector = EmbeddingModel().encode(["she fell down the rabbit hole"])[0]
        with postgres.db() as db:
            hits = db.search(vector, 3, None, ef_search=100)
            filtered = db.search(vector, 10, [WALLPAPER], ef_search=100)
    assert hits[0].book_id == ALICE and "rabbit" in hits[0].text.lower()
    assert len(filtered) == 10 and {h.book_id for h in filtered} == {WALLPAPER}


def test_a_bad_book_in_a_batch_is_named_and_stores_nothing(pipeline, library, database_url):
    (library / "broken.txt").write_bytes(b"\x00\x01\x02" * 1000)
    result = pipeline(WALLPAPER, "broken")  # partitions are ordered by file name at registration
    assert not result.success
    message = failure_message(result)
    assert "1 of 2 books failed in book_text" in message and "broken: the file is binary" in message
    assert chunk_rows(database_url, "broken") == []


def test_an_unchanged_rerun_embeds_nothing(pipeline, database_url):
    assert pipeline(WALLPAPER).success
    first = chunk_rows(database_url, WALLPAPER)
    assert latest_metadata(pipeline.instance, "chunk_embeddings", WALLPAPER)["embedded"] == len(first)

    assert pipeline(WALLPAPER).success
    metadata = latest_metadata(pipeline.instance, "chunk_embeddings", WALLPAPER)
    assert (metadata["embedded"], metadata["reused from cache"]) == (0, len(first))
    assert chunk_rows(database_url, WALLPAPER) == first


def test_a_one_chapter_edit_embeds_only_that_chapters_changed_chunks(pipeline, library, database_url):
    shutil.copy(SAMPLE_BOOKS / f"{ALICE}.txt", library)
    assert pipeline(ALICE).success
    with psycopg.connect(database_url) as conn:
        before = {row[0] for row in conn.execute("SELECT content_sha256 FROM chunks WHERE book_id = %s", (ALICE,))}

    path = library / f"{ALICE}.txt"
    text = path.read_text(encoding="utf-8-sig")
    start, end = text.index("CHAPTER VII. A Mad Tea-Party\n"), text.index("CHAPTER VIII.")
    path.write_text(text[:start] + text[start:end].replace("Hatter", "Milliner") + text[end:], encoding="utf-8")
    assert pipeline(ALICE).success

    with psycopg.connect(database_url) as conn:
        after = conn.execute("SELECT content_sha256, chapter FROM chunks WHERE book_id = %s", (ALICE,)).fetchall()
    changed = [chapter for sha, chapter in after if sha not in before]
    assert changed and set(changed) == {"CHAPTER VII. A Mad Tea-Party"}
    metadata = latest_metadata(pipeline.instance, "chunk_embeddings", ALICE)
    assert metadata["embedded"] == len(changed)
    assert metadata["reused from cache"] == len(after) - len(changed)


def test_front_matter_is_kept_out_of_chunks_unless_asked_for(pipeline, library, database_url, monkeypatch):
    shutil.copy(SAMPLE_BOOKS / f"{HAMLET}.txt", library)
    assert pipeline(HAMLET).success
    with psycopg.connect(database_url) as conn:
        chapters, subtitle = conn.execute("SELECT chapters, subtitle FROM books WHERE id = %s", (HAMLET,)).fetchone()
        chunked = {row[0] for row in conn.execute("SELECT DISTINCT chapter FROM chunks WHERE book_id = %s", (HAMLET,))}
        dramatis = conn.execute("SELECT count(*) FROM chunks WHERE book_id = %s AND text LIKE %s",
                                (HAMLET, "%CLAUDIUS, King of Denmark%")).fetchone()[0]
    front = [title for _, title, _, _, kind, _ in chapters if kind == "front"]
    assert front == ["Front matter", "Contents", "Dramatis Personæ"] and subtitle is None
    assert not chunked & set(front) and dramatis == 0
    assert "ACT I · SCENE I. Elsinore. A platform before the Castle." in chunked
    text_metadata = latest_metadata(pipeline.instance, "book_text", HAMLET)
    assert (text_metadata["chapters"], text_metadata["parts"]) == (20, 5)

    monkeypatch.setenv("CORPUS_INDEX_MATTER", "1")  # the setting re-chunks the book with its front matter
    assert pipeline(HAMLET).success
    with psycopg.connect(database_url) as conn:
        chunked = {row[0] for row in conn.execute("SELECT DISTINCT chapter FROM chunks WHERE book_id = %s", (HAMLET,))}
    assert {"Contents", "Dramatis Personæ"} <= chunked
