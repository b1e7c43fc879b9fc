"""Per-book intermediate outputs (text, chunks, embeddings) on disk.

Every book asset returns `{book_id: value}` for the books its run covers, one or many (a batched
backfill runs many partitions in one step). Each value is stored under its own book, so any asset of
any book re-runs alone from what its upstream stored. Writes go to a temporary file that is renamed
into place: a killed run never leaves a half-written artifact.
"""

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext
from pydantic import Field

from corpus_assets.books.library import check_book_id
from resources import settings


class BookArtifactIOManager(ConfigurableIOManager):
    base_dir: str | None = Field(
        default=None, description="Folder for artifacts; unset: `artifacts/` in the state folder."
    )

    def _root(self) -> Path:
        return Path(self.base_dir) if self.base_dir else settings.current().state_dir / "artifacts"

    def _path(self, asset_path: list[str], book_id: str) -> Path:
        # A partition key is used as a file name only if it is a book id: never `*`, `..` or a path.
        return self._root().joinpath(*asset_path) / f"{check_book_id(book_id)}.pickle"

    def handle_output(self, context: OutputContext, obj: dict[str, Any]) -> None:
        expected = set(context.asset_partition_keys)
        if set(obj) != expected:
            raise ValueError(
                f"{context.asset_key.to_user_string()} returned books {sorted(obj)}, expected {sorted(expected)}"
            )
        for book_id, value in obj.items():
            path = self._path(context.asset_key.path, book_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
                pickle.dump(value, tmp, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp.name, path)

    def load_input(self, context: InputContext) -> dict[str, Any]:
        asset = context.asset_key.to_user_string()
        values = {}
        for book_id in context.asset_partition_keys:
            path = self._path(context.asset_key.path, book_id)
            if not path.exists():
                raise FileNotFoundError(f"book {book_id!r} has no stored {asset}; materialize {asset} for it first")
            with path.open("rb") as file:
                values[book_id] = pickle.load(file)
        return values

    def delete_book(self, book_id: str) -> int:
        """Delete every stored artifact of the book (its exact file in each asset's folder); return how many went."""
        root = self._root()
        deleted = 0
        for folder in root.iterdir() if root.is_dir() else ():
            path = self._path([folder.name], book_id)
            if path.is_file():
                path.unlink()
                deleted += 1
        return deleted
