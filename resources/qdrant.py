"""Qdrant: a server when `QDRANT_URL` is set, else local mode in the state folder.

Local mode (`qdrant-client` on disk, in-process) locks its folder to one process at a time, so a
client is opened only for the duration of one piece of work, writers are serialized by the
`qdrant` concurrency pool, and opening retries while another process holds the folder.
"""

import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ApiException, ResponseHandlingException
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from resources import settings
from resources.errors import reaching

# Local mode reads every point into memory on open and searches by brute force; past this size a
# Qdrant server is the right tool.
LOCAL_MODE_COMFORTABLE_POINTS = 20_000
POINT_ID_NAMESPACE = uuid.UUID("5b0c1a53-6f0e-4f3b-9a43-2f6d7c0c9d10")


def point_id(chunk_id: str) -> str:
    """Qdrant point id of a chunk: uuid5 of the chunk id, so re-runs overwrite, never duplicate."""
    return str(uuid.uuid5(POINT_ID_NAMESPACE, chunk_id))


def book_filter(book_id: str) -> models.Filter:
    """Points of one book (served by the `book_id` payload index)."""
    return models.Filter(must=[models.FieldCondition(key="book_id", match=models.MatchValue(value=book_id))])


def books_filter(book_ids: list[str]) -> models.Filter:
    """Points of any of these books."""
    return models.Filter(must=[models.FieldCondition(key="book_id", match=models.MatchAny(any=book_ids))])


def points_per_book(client: QdrantClient, collection: str, book_ids: list[str]) -> dict[str, int]:
    """How many points each book has, in one request (local mode filters in Python: a pass per request)."""
    if not book_ids or not client.collection_exists(collection):
        return dict.fromkeys(book_ids, 0)
    hits = client.facet(collection, "book_id", facet_filter=books_filter(book_ids), limit=len(book_ids), exact=True).hits
    return dict.fromkeys(book_ids, 0) | {hit.value: hit.count for hit in hits}


def chunk_ids_per_book(client: QdrantClient, collection: str, book_ids: list[str]) -> dict[str, set[str]]:
    """The chunk ids of each book's points, scrolled for all the books at once."""
    found: dict[str, set[str]] = {book_id: set() for book_id in book_ids}
    if not book_ids or not client.collection_exists(collection):
        return found
    offset = None
    while True:
        # Large pages: local mode filters every point in Python once per page.
        points, offset = client.scroll(collection, scroll_filter=books_filter(book_ids), limit=10_000, offset=offset,
                                       with_payload=["book_id", "chunk_id"], with_vectors=False)
        for point in points:
            found[point.payload["book_id"]].add(point.payload["chunk_id"])
        if offset is None:
            return found


def _folder_is_locked(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and "already accessed by another instance" in str(error)


class QdrantResource(ConfigurableResource):
    url: str | None = Field(default=None, description="Qdrant server URL (env QDRANT_URL); unset: local mode.")
    api_key: str | None = Field(default=None, description="API key of the Qdrant server (env QDRANT_API_KEY).")
    path: str | None = Field(default=None, description="Local-mode folder; unset: `qdrant/` in the state folder.")
    collection: str = Field(default="chunks", description="Collection holding one point per chunk.")
    hnsw_ef_construct: int = Field(default=128, description="HNSW build effort (server mode).")

    @property
    def is_local(self) -> bool:
        return not self.url

    @contextmanager
    def client(self) -> Iterator[QdrantClient]:
        """A client for one piece of work; in local mode it holds the folder lock until closed."""
        client = self._open()
        try:
            yield client
        finally:
            client.close()

    @retry(
        retry=retry_if_exception(_folder_is_locked),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(120),
        reraise=True,
    )
    def _open(self) -> QdrantClient:
        if self.url:
            client = QdrantClient(url=self.url, api_key=self.api_key, timeout=60)
            with reaching("Qdrant", self.url, ResponseHandlingException, ApiException):
                client.get_collections()  # fail here, naming the server, rather than mid-write
            return client
        folder = Path(self.path) if self.path else settings.state_dir() / "qdrant"
        folder.mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=str(folder))

    def ensure_collection(self, client: QdrantClient, dimension: int) -> None:
        """Create the collection and its `book_id` payload index before the first upload."""
        if client.collection_exists(self.collection):
            size = client.get_collection(self.collection).config.params.vectors.size
            if size != dimension:
                raise ValueError(f"Qdrant collection {self.collection!r} holds {size}-d vectors, not {dimension}-d")
            return
        client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            hnsw_config=models.HnswConfigDiff(m=16, ef_construct=self.hnsw_ef_construct),
        )
        with warnings.catch_warnings():
            # Local mode warns that payload indexes have no effect there; a server needs this one.
            warnings.simplefilter("ignore", UserWarning)
            client.create_payload_index(self.collection, "book_id", models.PayloadSchemaType.KEYWORD)
