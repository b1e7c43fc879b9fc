"""Stage 2: decoded, cleaned text with its metadata and chapter sections."""

from dataclasses import dataclass

from dagster import AssetExecutionContext, MetadataValue

from corpus_assets.assets._per_book import for_each_book
from corpus_assets.books.safe_text import md_cell
from corpus_assets.assets.raw import RawBook
from corpus_assets.books.structure import BODY, STRUCTURE_VERSION, Section, split_sections, structure_doubts
from corpus_assets.books.decode import decode_book
from corpus_assets.books.errors import BookError
from corpus_assets.books.gutenberg import split_gutenberg
from corpus_assets.partitions import book_asset


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


@book_asset(
    code_version=STRUCTURE_VERSION,
    kinds={"python"},
    group_name="books",
)
def book_text(context: AssetExecutionContext, raw_books: dict[str, RawBook]) -> dict[str, BookText]:
    """Decoded text without the Gutenberg header, licence and footer, split into chapters."""

    def clean(book_id: str) -> tuple[BookText, dict]:
        book = clean_book(raw_books[book_id])
        chapters = "\n".join(
            f"| {s.index} | {s.kind} | {md_cell(s.title, 60)} | {s.end - s.start:,} |" for s in book.sections[:80]
        )
        body = [s for s in book.sections if s.kind == BODY]
        opening = body[0].start if body else 0  # the preview shows the body's start, not the contents
        return book, {
            "title": book.title,
            "subtitle": book.subtitle or "none",
            "author": book.author or "unknown",
            "language": book.language or "unknown",
            "encoding": book.encoding,
            "gutenberg markers": book.has_gutenberg_markers,
            "characters": len(book.text),
            "chapters": len(body),
            "parts": len({s.part for s in body if s.part}),
            "front and back matter characters": sum(s.end - s.start for s in book.sections if s.kind != BODY),
            "structure doubts": "; ".join(book.doubts) or "none",
            "books in the file": book.works,
            "characters after the end marker, not kept": book.after_end,
            "section list": MetadataValue.md(f"| # | kind | section | characters |\n|---|---|---|---|\n{chapters}"),
            "preview": MetadataValue.md(md_cell(book.text[opening : opening + 2000], 400)),
        }

    return for_each_book(context, context.partition_keys, clean)
