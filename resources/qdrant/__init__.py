"""Qdrant: every call corpus makes to it, behind one interface (`collection.QdrantCollection`).

`QdrantServerResource` talks to a server (`QDRANT_URL`) through qdrant-client; its client lives from
`setup_for_execution` to `teardown_after_execution`. `QdrantEdgeResource` is the embedded default,
Qdrant Edge (the server's engine in-process) in the state folder: one holder per shard folder, so
it is opened only for one piece of work, writers are serialized by the `qdrant` concurrency pool,
and opening retries while another holder has the folder; a long-lived reader (`corpus serve`)
holds it between queries through `shared_reads()` and hands it to any other opener. The
Definitions choose one; assets, checks, search, repair and status only see `QdrantCollection`.
"""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ApiException, ResponseHandlingException

from resources import settings
from resources.errors import reaching
from resources.qdrant.client import ClientCollection
from resources.qdrant.collection import QdrantCollection, SegmentMerge
from resources.qdrant.edge import (
    EdgeCollection,
    SharedReads,
    lacks_keyword_vectors,
    merge_segments,
    segments_with_keyword_index_in_ram,
)


class QdrantResource(ConfigurableResource):
    """The chunk collection in some Qdrant backend."""

    collection: str = Field(default="chunks", description="Collection holding one point per chunk.")
    hnsw_ef_construct: int = Field(default=128, description="HNSW build effort.")

    @contextmanager
    def open(self) -> Iterator[QdrantCollection]:
        raise NotImplementedError

    @contextmanager
    def shared_reads(self) -> Iterator["QdrantResource | SharedReads"]:
        """For a long-lived reader (`corpus serve`): something whose `open()` serves reads cheaply."""
        yield self

    def drop_if_before_keyword_search(self) -> bool:
        """Delete a collection made before keyword search (points without `bm25` vectors, which
        cannot be added in place); True if one was: it must be rebuilt from Postgres."""
        raise NotImplementedError

    def segments_behind_settings(self) -> int:
        """Stored parts of the collection (Qdrant Edge's segments) made under settings this code changed
        in a way that takes a rebuild of them (`apply_settings`)."""
        raise NotImplementedError

    def apply_settings(self) -> int:
        """Rebuild the parts `segments_behind_settings` counts; how many are still behind afterwards."""
        raise NotImplementedError

    def merge_segments(self) -> SegmentMerge:
        """Merge the collection's segments (upkeep: searches walk one HNSW graph per segment)."""
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
        yield ClientCollection(self._client, self.collection, self.hnsw_ef_construct)

    def drop_if_before_keyword_search(self) -> bool:
        with self.open() as collection:
            if collection.lacks_keyword_vectors():
                collection.drop()
                return True
        return False

    def segments_behind_settings(self) -> int:
        return 0  # a server keeps its segments' settings itself

    def apply_settings(self) -> int:
        return 0

    def merge_segments(self) -> SegmentMerge:
        return SegmentMerge("not needed: a Qdrant server merges its segments itself", 0, 0, 0, 0.0)


class QdrantEdgeResource(QdrantResource):
    """Qdrant Edge (Qdrant's engine in-process) in a shard folder, one holder at a time."""

    path: str | None = Field(default=None, description="Shard folders; unset: `qdrant-edge/` in the state folder.")
    hnsw_ef: int = Field(default_factory=lambda: settings.current().ef_search,
                         description="HNSW search effort (env CORPUS_EF_SEARCH, shared with pgvector).")

    def folder(self) -> Path:
        return (Path(self.path) if self.path else settings.current().state_dir / "qdrant-edge") / self.collection

    def setup_for_execution(self, context: InitResourceContext | None = None) -> None:
        legacy = settings.current().state_dir / "qdrant" / "collection" / self.collection
        if context is not None and context.log is not None and legacy.exists() and not self.folder().exists():
            context.log.warning(
                f"Qdrant's embedded store is now Qdrant Edge ({self.folder()}); the local-mode data in {legacy} "
                "is no longer read. The next ingest (or `corpus repair`) rebuilds Qdrant from Postgres; then "
                f"delete {legacy.parent.parent}."
            )

    @contextmanager
    def open(self) -> Iterator[QdrantCollection]:
        """The collection for one piece of work: the shard is held only inside the `with`."""
        with EdgeCollection(self.folder(), self.hnsw_ef_construct, self.hnsw_ef) as collection:
            yield collection

    @contextmanager
    def shared_reads(self) -> Iterator[SharedReads]:
        """The shard held open between reads, handed back whenever a writer (or anyone) wants it."""
        reads = SharedReads(self.folder(), self.hnsw_ef_construct, self.hnsw_ef)
        try:
            yield reads
        finally:
            reads.close()

    def drop_if_before_keyword_search(self) -> bool:
        if not lacks_keyword_vectors(self.folder()):
            return False
        shutil.rmtree(self.folder())
        return True

    def segments_behind_settings(self) -> int:
        """Segments made before the keyword index was memory-mapped: they hold it in RAM in every process
        that opens the shard (~35 MB per full segment)."""
        return segments_with_keyword_index_in_ram(self.folder())

    def apply_settings(self) -> int:
        """Rebuilt by Edge's optimizer (loading applied the settings to the shard). `corpus migrate` does
        it before any run rather than inside one; the shard is held meanwhile (Qdrant searches wait)."""
        if self.segments_behind_settings():
            with self.open() as collection:
                collection.optimize_on_close()
        return self.segments_behind_settings()

    def merge_segments(self) -> SegmentMerge:
        """A copy of the shard merged, then swapped in: readers keep searching meanwhile (`edge.merge_segments`)."""
        return merge_segments(self.folder(), self.hnsw_ef_construct)
