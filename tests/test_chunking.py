import pytest

from corpus_assets.books.structure import Section, split_sections
from corpus_assets.books.chunking import MAX_CHUNK_CHARS, chunk_book
from corpus_assets.books.decode import decode_book
from corpus_assets.books.gutenberg import split_gutenberg
from resources.embedding import EmbeddingModel, model_location, span_counters, token_counter
from resources.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def model():
    return EmbeddingModel()


@pytest.fixture(scope="module", params=["11_alices-adventures-in-wonderland.txt", "1524_hamlet.txt", "2680_meditations.txt"])
def book(request, shared_books, model):
    parts = split_gutenberg(decode_book((shared_books / request.param).read_bytes()).text)
    sections = split_sections(parts.body, parts.title)
    chunks = chunk_book(request.param, parts.body, sections, span_counters(model.model_name), model.max_chunk_tokens())
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
    again = chunk_book(chunks[0].book_id, text, sections, span_counters(model.model_name), model.max_chunk_tokens())
    assert [c.id for c in again] == [c.id for c in chunks]
    other_book = chunk_book("another-book", text, sections, span_counters(model.model_name), model.max_chunk_tokens())
    assert not {c.id for c in other_book} & {c.id for c in chunks}


def test_a_giant_word_never_makes_a_giant_chunk():
    # A "word" of 300,000 letters is a few unknown tokens to the model: without a bound in characters it
    # was one chunk as long as the file, carried by every search answer (and quadratic for Qdrant's stemmer).
    text = "Some words first. " * 5 + "z" * 300_000 + " and an end."
    chunks = chunk_book("b", text, [Section(0, "T", 0, len(text))], span_counters(EmbeddingModel().model_name), 254)
    assert max(len(c.text) for c in chunks) <= MAX_CHUNK_CHARS and len(chunks) >= 300_000 // MAX_CHUNK_CHARS
    assert all(text[c.char_start : c.char_end] == c.text for c in chunks)


def chunks_both_ways(model, book_id, text, sections):
    """The book's chunks counted from one tokenization of each section, and with every piece tokenized."""
    count = token_counter(model.model_name)
    args = (model.max_chunk_tokens(), model.max_token_chars())
    return (chunk_book(book_id, text, sections, span_counters(model.model_name), *args),
            chunk_book(book_id, text, sections, lambda section_text: count, *args))


def test_counting_from_one_tokenization_gives_the_same_chunks(book, model):
    text, sections, chunks = book
    assert chunks_both_ways(model, chunks[0].book_id, text, sections)[1] == chunks


def test_the_same_chunks_on_text_that_tokenizes_oddly(model):
    # Accents (stripped by the normalizer), CJK (a word per character), control characters (dropped),
    # a word longer than WordPiece takes (one unknown token), punctuation runs, a repeated passage,
    # and a paragraph the chunker must cut inside.
    paragraph = ("Æsop’s «fables» — naïve, façade; 東京は日本の首都です。 Straße\x07 ünd ÇA… "
                 + "x" * 150 + " !!!?? ... «»" + " word" * 30)
    text = "\n\n".join([paragraph] * 12 + ["one long line " * 400])
    sections = [Section(0, "A", 0, len(text) // 2), Section(1, "B", len(text) // 2, len(text))]
    spans, pieces = chunks_both_ways(model, "odd", text, sections)
    assert spans == pieces and len(spans) > 10


@pytest.mark.slow
def test_the_same_chunks_on_every_shared_book(shared_books, model):
    """All 70 books of ../shared/corpus (ten languages; ~4 min): the chunks equal, whichever way counted."""
    import hashlib

    from corpus_assets.books.book import RawBook, clean_book

    for path in sorted(shared_books.parent.glob("*/*.txt")):
        data = path.read_bytes()
        book = clean_book(RawBook(path.stem, path.name, data, hashlib.sha256(data).hexdigest()))
        sections = [s for s in book.sections if s.kind == "body"]
        spans, pieces = chunks_both_ways(model, path.stem, book.text, sections)
        assert spans == pieces, path
