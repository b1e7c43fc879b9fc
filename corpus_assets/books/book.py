"""A book as the pipeline carries it, beside `Section` (books.structure) and `Chunk` (books.chunking):
the file's bytes (`RawBook`, stage 1) and its cleaned text split into chapters (`BookText`, stage 2).

Per-book artifacts pickled before these types moved here name them in `corpus_assets.assets.raw` and
`.text`, which import them: those artifacts still load.
"""

from dataclasses import dataclass

from corpus_assets.books.decode import decode_book
from corpus_assets.books.errors import BookError
from corpus_assets.books.gutenberg import split_gutenberg
from corpus_assets.books.structure import Section, split_sections, structure_doubts


@dataclass(frozen=True)
class RawBook:
    """A snapshot of the file's bytes: later stages never see a file that changed under them."""

    book_id: str
    source_file: str
    data: bytes
    sha256: str


@dataclass(frozen=True)
class BookText:
    book_id: str
    title: str
    subtitle: str | None
    author: str | None
    language: str | None
    encoding: str
    has_gutenberg_markers: bool
    text: str
    sections: list[Section]
    source_file: str
    content_sha256: str
    bytes: int
    works: int = 1  # books joined in the file, each between its own Gutenberg markers: all kept
    after_end: int = 0  # characters after the last end marker, not kept (the licence, usually)
    doubts: tuple[str, ...] = ()  # why its sections may be wrong (`structure_doubts`)


def clean_book(raw: RawBook) -> BookText:
    decoded = decode_book(raw.data)
    parts = split_gutenberg(decoded.text)
    if not parts.body.strip():
        raise BookError("no text between the Project Gutenberg start and end markers")
    title = parts.title or raw.source_file.rsplit("/", 1)[-1].removesuffix(".txt")
    sections = split_sections(parts.body, title, parts.author)
    return BookText(
        book_id=raw.book_id,
        title=title,
        subtitle=parts.subtitle,
        author=parts.author,
        language=parts.language,
        encoding=decoded.encoding,
        has_gutenberg_markers=parts.has_markers,
        text=parts.body,
        sections=sections,
        source_file=raw.source_file,
        content_sha256=raw.sha256,
        bytes=len(raw.data),
        works=parts.works,
        after_end=parts.after_end,
        doubts=tuple(structure_doubts(parts.body, sections)),
    )
