"""Stage 2: decoded, cleaned text with its metadata and chapter sections."""

from dagster import AssetExecutionContext, MetadataValue

from corpus_assets.assets._per_book import for_each_book
from corpus_assets.books.book import BookText, RawBook, clean_book
from corpus_assets.books.safe_text import md_cell
from corpus_assets.books.structure import BODY, STRUCTURE_VERSION
from corpus_assets.partitions import book_asset


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
