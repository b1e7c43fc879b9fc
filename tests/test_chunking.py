import pytest

from corpus_assets.books.structure import Section, split_sections
from corpus_assets.books.chunking import MAX_CHUNK_CHARS, chunk_book
from corpus_assets.books.decode import decode_book
from corpus_assets.books.gutenberg import split_gutenberg
from resources.embedding import EmbeddingModel, model_location, token_counter
from resources.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def model():
    return EmbeddingModel()


@pytest.fixture(scope="module", params=["11_alices-adventures-in-wonderland.txt", "1524_hamlet.txt", "2680_meditations.txt"])
def book(request, shared_books, model):
    parts = split_gutenberg(decode_book((shared_books / request.param).read_bytes()).text)
    sections = split_sections(parts.body, parts.title)
    chunks = chunk_book(request.param, parts.body, sections, model.count_tokens, model.max_chunk_tokens())
    return parts.body, sections, chunks


def test_every_chunk_fits_the_model_window(book, model):
    _, _, chunks = book
    assert model.max_chunk_tokens() == 254  # all-MiniLM-L6-v2 reads 256 tokens, [CLS] and [SEP] included
    tokenizer = load_tokenizer(model_location(model.model_name))
    for chunk in chunks:
        assert chunk.token_count <= model.max_chunk_tokens()
        # Counted again the way the model will see it, special tokens included.
        assert len(tokenizer.encode(chunk.text).ids) <= 256


def test_offsets_map_back_to_the_text(book):
    text, _, chunks = book
    for chunk in chunks:
        assert text[chunk.char_start : chunk.char_end] == chunk.text


def test_no_chunk_crosses_a_chapter_boundary(book):
    _, sections, chunks = book
    for chunk in chunks:
        section = sections[chunk.chapter_index]
        assert section.start <= chunk.char_start and chunk.char_end <= section.end
        assert chunk.chapter == section.title


def test_neighbours_overlap_by_about_a_tenth(book):
    _, _, chunks = book
    pairs = [(a, b) for a, b in zip(chunks, chunks[1:]) if a.chapter_index == b.chapter_index]
    overlapping = [(a, b) for a, b in pairs if b.char_start < a.char_end]
    assert len(overlapping) >= 0.9 * len(pairs)
    ratios = sorted((a.char_end - b.char_start) / len(a.text) for a, b in overlapping)
    median = ratios[len(ratios) // 2]
    assert 0.05 <= median <= 0.3, median


def test_ordinals_and_ids(book, model):
    text, sections, chunks = book
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert len({c.id for c in chunks}) == len(chunks)
    again = chunk_book(chunks[0].book_id, text, sections, model.count_tokens, model.max_chunk_tokens())
    assert [c.id for c in again] == [c.id for c in chunks]
    other_book = chunk_book("another-book", text, sections, model.count_tokens, model.max_chunk_tokens())
    assert not {c.id for c in other_book} & {c.id for c in chunks}


def test_a_giant_word_never_makes_a_giant_chunk():
    # A "word" of 300,000 letters is a few unknown tokens to the model: without a bound in characters it
    # was one chunk as long as the file, carried by every search answer (and quadratic for Qdrant's stemmer).
    text = "Some words first. " * 5 + "z" * 300_000 + " and an end."
    count = token_counter(EmbeddingModel().model_name)
    chunks = chunk_book("b", text, [Section(0, "T", 0, len(text))], count, 254)
    assert max(len(c.text) for c in chunks) <= MAX_CHUNK_CHARS and len(chunks) >= 300_000 // MAX_CHUNK_CHARS
    assert all(text[c.char_start : c.char_end] == c.text for c in chunks)
