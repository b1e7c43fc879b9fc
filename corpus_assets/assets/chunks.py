"""Stage 3: token-bounded, overlapping chunks that never cross a chapter boundary."""

import time

from dagster import AssetExecutionContext, MetadataValue

from corpus_assets.assets._per_book import for_each_book, md_cell
from corpus_assets.assets.text import BookText
from corpus_assets.books.chunking import OVERLAP, Chunk, chunk_book
from corpus_assets.books.errors import BookError
from corpus_assets.partitions import book_asset
from resources.embedding import EmbeddingModel


@book_asset(
    code_version="1",
    kinds={"python"},
    group_name="books",
)
def book_chunks(
    context: AssetExecutionContext, book_text: dict[str, BookText], embedding_model: EmbeddingModel
) -> dict[str, list[Chunk]]:
    """Chunks sized by the embedding model's own tokenizer, with character offsets into the text."""
    max_tokens = embedding_model.max_chunk_tokens()

    def chunk(book_id: str) -> list[Chunk]:
        book = book_text[book_id]
        started = time.perf_counter()
        chunks = chunk_book(book_id, book.text, book.sections, embedding_model.count_tokens, max_tokens)
        if not chunks:
            raise BookError("the cleaned text has no words to chunk")
        tokens = [c.token_count for c in chunks]
        preview = "\n".join(
            f"| {c.ordinal} | {md_cell(c.chapter, 30)} | {c.token_count} | {md_cell(c.text, 80)} |"
            for c in chunks[:5]
        )
        context.add_asset_metadata(
            {
                "chunks": len(chunks),
                "tokens": sum(tokens),
                "tokens per chunk (mean)": round(sum(tokens) / len(tokens), 1),
                "tokens per chunk (max)": max(tokens),
                "token budget": max_tokens,
                "overlap": OVERLAP,
                "seconds": round(time.perf_counter() - started, 2),
                "first chunks": MetadataValue.md(
                    f"| # | chapter | tokens | text |\n|---|---|---|---|\n{preview}"
                ),
            },
            partition_key=book_id,
        )
        return chunks

    return for_each_book(context, context.partition_keys, chunk)
