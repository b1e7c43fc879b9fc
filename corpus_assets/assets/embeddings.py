"""Stage 4: one normalized vector per chunk, encoded in one batch across all books of the run.

A chunk whose text was already embedded by the same model (stored in Postgres, in this book or any
other) is not embedded again: re-running an unchanged book encodes nothing, and a book edited in
one chapter encodes only the chunks whose text changed.
"""

import time
from dataclasses import dataclass

import numpy as np
from dagster import AssetExecutionContext, Config
from pydantic import Field

from corpus_assets.assets._per_book import STORE_RETRY
from corpus_assets.books.chunking import Chunk
from corpus_assets.books.errors import BookError
from corpus_assets.partitions import EMBEDDING_POOL, book_asset
from resources.embedding import EmbeddingModel, configured_model_name, resolve_device
from resources.postgres import PostgresResource


@dataclass(frozen=True)
class BookEmbeddings:
    model: str
    chunk_ids: list[str]
    vectors: np.ndarray  # float32, (chunks, dimension), unit length

    def require_match(self, chunks: list[Chunk]) -> None:
        """Refuse to store vectors computed for another version of the book's chunks."""
        if self.chunk_ids != [c.id for c in chunks]:
            raise BookError("its embeddings do not match its chunks; re-materialize chunk_embeddings")


class EmbeddingConfig(Config):
    ignore_cache: bool = Field(
        default=False, description="Embed every chunk again instead of reusing stored vectors (e.g. after a repair)."
    )


@book_asset(
    # The model is part of the code version: changing it marks every book's embeddings and what
    # is built from them stale in the UI.
    code_version=f"2:{configured_model_name()}",
    kinds={"pytorch"},
    group_name="books",
    retry_policy=STORE_RETRY,
    pool=EMBEDDING_POOL,  # one encode saturates the CPU cores; more would only contend
)
def chunk_embeddings(
    context: AssetExecutionContext,
    config: EmbeddingConfig,
    book_chunks: dict[str, list[Chunk]],
    embedding_model: EmbeddingModel,
    postgres: PostgresResource,
) -> dict[str, BookEmbeddings]:
    """Sentence-transformers embeddings of every chunk; new texts are encoded in one batch per run."""
    model = embedding_model.model_name
    all_chunks = [chunk for chunks in book_chunks.values() for chunk in chunks]
    cache = {}
    if not config.ignore_cache:
        with postgres.db() as db:
            cache = db.cached_vectors(model, {c.content_sha256 for c in all_chunks})
    # Each new text once, even when it repeats within or across books.
    new_texts = {c.content_sha256: c.text for c in all_chunks if c.content_sha256 not in cache}
    run = {"model": model, "books in run": len(book_chunks), "chunks in run": len(all_chunks),
           "chunks embedded in run": len(new_texts)}
    if new_texts:
        started = time.perf_counter()
        embedding_model.load()  # reported apart: ~8 s per process the first time, nothing after
        loaded = time.perf_counter()
        encoded = embedding_model.encode(list(new_texts.values()), log=context.log)
        encode_seconds = time.perf_counter() - loaded
        cache.update(zip(new_texts, encoded, strict=True))
        run |= {
            "device": resolve_device(embedding_model.device),
            "batch size": embedding_model.effective_batch_size(),
            "model load seconds": round(loaded - started, 2),
            "run encode seconds": round(encode_seconds, 2),
            "chunks per second": round(len(new_texts) / encode_seconds, 1),
        }
    else:
        run["unchanged"] = "every chunk's vector was cached: nothing encoded, no model loaded"
    context.add_asset_metadata(run)
    result = {}
    for book_id, chunks in book_chunks.items():
        vectors = np.stack([cache[c.content_sha256] for c in chunks])
        result[book_id] = BookEmbeddings(model=model, chunk_ids=[c.id for c in chunks], vectors=vectors)
        embedded = sum(1 for c in chunks if c.content_sha256 in new_texts)
        context.add_asset_metadata(
            {"chunks": len(chunks), "embedded": embedded, "reused from cache": len(chunks) - embedded},
            partition_key=book_id,
        )
    return result
