"""Qdrant: every call corpus makes to it, behind one interface (`collection.QdrantCollection`).

`QdrantServerResource` talks to a server (`QDRANT_URL`) through qdrant-client; its client lives from
`setup_for_execution` to `teardown_after_execution`. `QdrantLocalResource` is the embedded default,
qdrant-client's local mode in the state folder: it locks its folder to one process, so it is opened
only for one piece of work, writers are serialized by the `qdrant` concurrency pool, and opening
retries while another process holds the folder. The Definitions choose one; assets, checks, search,
repair and status only see `QdrantCollection`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ApiException, ResponseHandlingException
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from resources import settings
from resources.errors import reaching
from resources.qdrant.client import ClientCollection
from resources.qdrant.collection import QdrantCollection

# Local mode reads every point into memory on open and searches by brute force; past this size a
# Qdrant server is the right tool.
LOCAL_MODE_COMFORTABLE_POINTS = 20_000


class QdrantResource(ConfigurableResource):
    """The chunk collection in some Qdrant backend."""

    collection: str = Field(default="chunks", description="Collection holding one point per chunk.")
    hnsw_ef_construct: int = Field(default=128, description="HNSW build effort.")

    @property
    def comfortable_points(self) -> int | None:
        """Points past which this backend should warn (None: no limit)."""
        return None

    @contextmanager
    def open(self) -> Iterator[QdrantCollection]:
        raise NotImplementedError


class QdrantServerResource(QdrantResource):
    """A Qdrant server, through qdrant-client."""

    url: str = Field(description="Qdrant server URL (env QDRANT_URL).")
    api_key: str | None = Field(default=None, description="API key of the Qdrant server (env QDRANT_API_KEY).")

    _client: QdrantClient | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext | None = None) -> None:
        self._client = QdrantClient(url=self.url, api_key=self.api_key, timeout=60)

    def teardown_after_execution(self, context: InitResourceContext | None = None) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @contextmanager
    def open(self) -> Iterator[QdrantCollection]:
        if self._client is None:
            raise RuntimeError("QdrantServerResource used outside execution: open it with dagster.build_resources")
        with reaching("Qdrant", self.url, ResponseHandlingException, ApiException):
            self._client.get_collections()  # fail here, naming the server, rather than mid-write
        yield ClientCollection(self._client, self.collection, "server", self.hnsw_ef_construct)


def _folder_is_locked(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and "already accessed by another instance" in str(error)


class QdrantLocalResource(QdrantResource):
    """qdrant-client's local mode in a folder (one process at a time)."""

    path: str | None = Field(default=None, description="Local-mode folder; unset: `qdrant/` in the state folder.")

    @property
    def comfortable_points(self) -> int | None:
        return LOCAL_MODE_COMFORTABLE_POINTS

    @contextmanager
    def open(self) -> Iterator[QdrantCollection]:
        """The collection for one piece of work; local mode holds the folder lock until closed."""
        client = self._open_client()
        try:
            yield ClientCollection(client, self.collection, "local", self.hnsw_ef_construct)
        finally:
            client.close()

    @retry(retry=retry_if_exception(_folder_is_locked), wait=wait_exponential(multiplier=0.2, max=5),
           stop=stop_after_delay(120), reraise=True)
    def _open_client(self) -> QdrantClient:
        folder = Path(self.path) if self.path else settings.current().state_dir / "qdrant"
        folder.mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=str(folder))
