"""The library sensor: new, changed and removed book files become ingest and removal runs.

What a book's file holds is compared with what Postgres stores for it (`books.content_sha256`, the
source of truth), so only books whose content differs are run. Each file's size, mtime and sha256
are cached in Postgres (`library_files`), so an unchanged file is only stat()-ed, never read again.
The cursor, which Dagster stores with every tick, holds only what is in flight: the content requested
for books whose stored content differs from it (a book whose run failed is not requested again until
its file changes) and the books being removed.
"""

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from corpus_assets.batches import books_of_run, ensure_pools, partition_ranges, range_tags, reap_dead_runs
from corpus_assets.jobs import ingest_books
from corpus_assets.partitions import BOOKS_PER_RUN, books_partitions
from corpus_assets.removal import remove_books
from resources.library import BookLibrary
from resources.postgres import PostgresResource
from resources.postgres.store import FileHash

# Reading files is the slow part of a tick; past this budget the rest is hashed on the next tick,
# keeping every tick well inside Dagster's 60 s sensor limit on any library size.
HASH_BUDGET_SECONDS = 20.0


@dataclass
class LibraryCursor:
    requested: dict[str, str] = field(default_factory=dict)  # book id → sha256 last sent to a run, not yet stored
    removing: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, raw: str | None) -> "LibraryCursor":
        state = json.loads(raw) if raw else {}
        # Cursors written before the file cache moved to Postgres also hold "files": dropped.
        return cls(requested=state.get("requested", {}), removing=state.get("removing", []))

    def dump(self) -> str:
        return json.dumps({"requested": self.requested, "removing": self.removing}, separators=(",", ":"))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@sensor(
    jobs=[ingest_books, remove_books],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Ingests new and changed book files and removes deleted ones, several books per run.",
)
def library_sensor(context: SensorEvaluationContext, library: BookLibrary, postgres: PostgresResource) -> SensorResult:
    started = time.monotonic()
    cursor = LibraryCursor.load(context.cursor)
    files = library.books()
    with postgres.db() as db:
        stored = db.book_hashes()
        cached = db.library_files()
    partitions = context.instance.get_dynamic_partitions(books_partitions.name)
    ensure_pools(context.instance)  # before the runs it requests start side by side
    for run in reap_dead_runs(context.instance):
        books = books_of_run(run, partitions)
        context.log.warning(f"run {run.run_id} had died (its process is gone): marked failed; requesting {books} again")
        for book_id in books:
            cursor.requested.pop(book_id, None)

    current: dict[str, str] = {}  # book id → sha256 of its file
    hashed: list[FileHash] = []
    deferred = 0
    for book_id, path in files.items():
        stat = path.stat()
        known = cached.get(book_id)
        if known and known.size == stat.st_size and known.mtime_ns == stat.st_mtime_ns:
            current[book_id] = known.sha256
        elif time.monotonic() - started < HASH_BUDGET_SECONDS:
            hashed.append(FileHash(book_id, stat.st_size, stat.st_mtime_ns, file_sha256(path)))
            current[book_id] = hashed[-1].sha256
        else:
            deferred += 1
    # A cache of the files' own bytes: right whatever becomes of this tick's run requests.
    with postgres.db() as db:
        db.record_library_files(hashed, [book_id for book_id in cached if book_id not in files])

    to_ingest = [
        book_id for book_id, sha in current.items()
        if stored.get(book_id) != sha and cursor.requested.get(book_id) != sha
    ]
    registered = set(partitions)
    new_partitions = sorted(book_id for book_id in current if book_id not in registered)
    # A new partition is appended at the end of the order, so the new books form ranges of their own.
    runs = partition_ranges([*partitions, *new_partitions], to_ingest, BOOKS_PER_RUN)
    run_requests = [
        RunRequest(
            job_name=ingest_books.name,
            run_key=f"ingest:{books[0]}..{books[-1]}:{_digest(current[b] for b in books)}",
            tags=range_tags(books),
        )
        for books in runs
    ]
    known_anywhere = registered | set(stored)
    removed = sorted(known_anywhere - set(files) - set(cursor.removing))
    if removed:
        run_requests.append(
            RunRequest(
                job_name=remove_books.name,
                run_key=f"remove:{_digest(removed)}",
                run_config={"ops": {"remove_books_from_stores": {"config": {"book_ids": removed}}}},
            )
        )

    # Requested content stays in the cursor until Postgres stores it (or the file changes or goes).
    cursor.requested = {b: sha for b, sha in cursor.requested.items() if b in files and stored.get(b) != sha} | {
        b: current[b] for b in to_ingest}
    cursor.removing = sorted((set(cursor.removing) | set(removed)) & known_anywhere)
    context.log.info(
        f"{len(files)} files ({deferred} left to hash next tick): {len(new_partitions)} new, "
        f"{len(to_ingest)} to ingest in {len(runs)} runs, {len(removed)} removed; "
        f"{time.monotonic() - started:.1f} s"
    )
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[AddDynamicPartitionsRequest(books_partitions.name, new_partitions)]
        if new_partitions else [],
        cursor=cursor.dump(),
    )


def _digest(values) -> str:
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:16]
