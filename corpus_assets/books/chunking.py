"""Token-aware chunking with the embedding model's own tokenizer.

semchunk splits each chapter at the most meaningful boundary that keeps a chunk within the token
budget (paragraphs, then sentences, then words) and overlaps neighbours; chapters are chunked one
at a time, so no chunk crosses a chapter boundary. Offsets index the cleaned book text.
"""

import hashlib
import importlib.metadata
import time
from collections.abc import Callable
from dataclasses import dataclass

import semchunk

from corpus_assets.books.structure import Section

OVERLAP = 0.12  # share of a chunk repeated from its neighbour
# A chunk's characters, whatever its tokens: a "word" of millions of letters is one unknown token to the
# model, and would be one chunk as long as the file, which every store then holds and every search
# answer carries (and Qdrant's stemmer takes quadratic time in a word's length: 8 MB ≈ 20 min). 254
# tokens of any language's prose stay well under it (English averages ~5 characters a token).
MAX_CHUNK_CHARS = 4000
# Bump when the same text, sections and tokenizer would give different chunks: stored chunks made
# by an older version are then no longer reused.
CHUNKER_VERSION = f"1:semchunk-{importlib.metadata.version('semchunk')}"


@dataclass(frozen=True)
class Chunk:
    id: str
    book_id: str
    ordinal: int
    chapter_index: int
    chapter: str
    text: str
    token_count: int
    char_start: int
    char_end: int
    content_sha256: str


def chunk_book(
    book_id: str,
    text: str,
    sections: list[Section],
    counter_for: Callable[[str], Callable[[str], int]],
    max_tokens: int,
    max_token_chars: int | None = None,
) -> list[Chunk]:
    """Chunks of at most `max_tokens` tokens for every section, as `counter_for(section text)` counts
    the tokens of the section's pieces (`resources.embedding.span_counters`: the section tokenized once).

    `max_token_chars`, the length of the tokenizer's longest token, only makes counting faster.
    """
    chunks: list[Chunk] = []
    for section in sections:
        section_text = text[section.start : section.end]
        count_tokens = counter_for(section_text)
        # semchunk memoizes counts per counter: bounded, and gone with the section.
        chunker = semchunk.chunkerify(count_tokens, max_tokens, max_token_chars=max_token_chars, cache_maxsize=8192)
        pieces, offsets = chunker(section_text, overlap=OVERLAP, offsets=True)
        for piece, (start, _) in zip(pieces, offsets, strict=True):
            for part, at in _within_chars(piece, start):
                if part.strip():
                    chunks.append(_chunk(book_id, len(chunks), section, part, count_tokens(part), section.start + at))
    return chunks


def _within_chars(piece: str, start: int) -> list[tuple[str, int]]:
    """The piece, or its consecutive windows of at most MAX_CHUNK_CHARS (cut at a space where there is
    one), with their offsets: only text of giant "words" is ever cut so."""
    parts = []
    while len(piece) > MAX_CHUNK_CHARS:
        cut = piece.rfind(" ", MAX_CHUNK_CHARS // 2, MAX_CHUNK_CHARS) + 1 or MAX_CHUNK_CHARS
        parts.append((piece[:cut], start))
        piece, start = piece[cut:], start + cut
    return [*parts, (piece, start)]


def chunk_book_timed(*args, **kwargs) -> tuple[list[Chunk], float]:
    """`chunk_book` and the seconds it took (it runs in worker processes)."""
    started = time.perf_counter()
    return chunk_book(*args, **kwargs), time.perf_counter() - started


def _chunk(book_id: str, ordinal: int, section: Section, text: str, tokens: int, start: int) -> Chunk:
    content_sha256 = hashlib.sha256(text.encode()).hexdigest()
    # Same book, place and text → same id, on every machine and every re-run.
    chunk_id = hashlib.sha256(f"{book_id}\x1f{ordinal}\x1f{content_sha256}".encode()).hexdigest()[:32]
    return Chunk(
        id=chunk_id,
        book_id=book_id,
        ordinal=ordinal,
        chapter_index=section.index,
        chapter=section.title,
        text=text,
        token_count=tokens,
        char_start=start,
        char_end=start + len(text),
        content_sha256=content_sha256,
    )
