"""Stage 4: one normalized vector per chunk, encoded in one batch across all books of the run."""

import time
from dataclasses import dataclass

import numpy as np
from dagster import AssetExecutionContext

from corpus_assets.books.chunking import Chunk
from corpus_assets.books.errors import BookError
from corpus_assets.partitions import book_asset
from resources.embedding import EmbeddingModel, resolve_device


@dataclass(frozen=True)
class BookEmbeddings:
    model: str
    chunk_ids: list[str]
    vectors: np.ndarray  # float32, (chunks, dimension), unit length

    def require_match(self, chunks: list[Chunk]) -> None:
        """Refuse to store vectors computed for another version of the book's chunks."""
        if self.chunk_ids != [c.id for c in chunks]:
            raise BookError("its embeddings do not match its chunks; re-materialize chunk_embeddings")


@book_asset(
    code_version="1",
    kinds={"pytorch"},
    group_name="books",
    pool="embedding",  # one encode saturates the CPU cores; more would only contend
)
def chunk_embeddings(
    context: AssetExecutionContext, book_chunks: dict[str, list[Chunk]], embedding_model: EmbeddingModel
) -> dict[str, BookEmbeddings]:
    """Sentence-transformers embeddings of every chunk; the model loads once per run."""
    book_ids = list(book_chunks)
    texts = [chunk.text for book_id in book_ids for chunk in book_chunks[book_id]]
    started = time.perf_counter()
    vectors = embedding_model.encode(texts, log=context.log)
    seconds = time.perf_counter() - started
    context.add_asset_metadata(
        {
            "model": embedding_model.model_name,
            "device": resolve_device(embedding_model.device),
            "dimension": int(vectors.shape[1]),
            "chunks in run": len(texts),
            "books in run": len(book_ids),
            "run encode seconds": round(seconds, 2),
            "chunks per second": round(len(texts) / seconds, 1) if seconds else 0.0,
        }
    )
    result: dict[str, BookEmbeddings] = {}
    offset = 0
    for book_id in book_ids:
        chunks = book_chunks[book_id]
        result[book_id] = BookEmbeddings(
            model=embedding_model.model_name,
            chunk_ids=[c.id for c in chunks],
            vectors=vectors[offset : offset + len(chunks)],
        )
        offset += len(chunks)
        context.add_asset_metadata({"chunks": len(chunks)}, partition_key=book_id)
    return result
