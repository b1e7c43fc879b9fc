"""Run one stage over every book of a (possibly batched) run, isolating each book's errors."""

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from dagster import AssetExecutionContext, Backoff, DagsterInstance, Failure, Jitter, MetadataValue, RetryPolicy

from corpus_assets.batches import BOOKS_TAG, books_tag
from corpus_assets.books.errors import FAILURES_KEY, BookError
from corpus_assets.books.safe_text import md_cell
from resources import settings

T = TypeVar("T")
Metadata = Mapping[str, Any]

_SETTINGS = settings.current()
# A store that is down or unreachable: retried without end (by the next tick), never counted against
# the book (`CORPUS_MAX_ATTEMPTS` counts the failures that are neither this nor the file's fault).
_OUTAGES = (ConnectionError, TimeoutError)  # `resources.errors.StoreUnavailable` is a ConnectionError
# Books a Postgres-bound stage works on side by side: the work runs in the server (HNSW inserts
# and searches, one core per connection), so two books at once use both cores of a small machine
# while this process mostly waits. Each needs one pooled connection (`CORPUS_PG_POOL_SIZE`).
POSTGRES_WORKERS = _SETTINGS.postgres_workers

# Stages that talk to a store retry a failed step with exponential backoff (by default about 2, 4,
# 8, 16 s): a server restart or a dropped connection is survived, a store that stays down fails the
# step after ~30 s with its error. Bad input (`BookError`) is never retried.
STORE_RETRY = RetryPolicy(
    max_retries=_SETTINGS.store_retries,
    delay=_SETTINGS.store_retry_delay,
    backoff=Backoff.EXPONENTIAL,
    jitter=Jitter.PLUS_MINUS,
)


_PARTITION_READS = ("get_dynamic_partitions", "has_dynamic_partition")


@contextmanager
def _partition_keys_read_once(instance: DagsterInstance) -> Iterator[None]:
    """The library's partition keys read once while a step records its books' metadata.

    Dagster 1.13's `add_asset_metadata(partition_key=...)` checks each key against the step's range:
    two `has_dynamic_partition` queries and a read of every partition key of the library, once per call.
    Per book, 3.0 ms at 300 books registered and 22.5 at 9,000; kept for the loop, 0.14 and 0.29: a
    stage's cost per book grew with the library (bench/dagster_overhead.py). No public
    API records a partition's metadata without those reads, so the instance's answers are kept for the
    loop: this step's thread alone uses the instance meanwhile, and a step of books adds or deletes no
    partition.
    """
    for name in _PARTITION_READS:
        setattr(instance, name, functools.cache(getattr(instance, name)))
    try:
        yield
    finally:
        for name in _PARTITION_READS:
            delattr(instance, name)  # the class's own method again


def for_each_book(
    context: AssetExecutionContext,
    book_ids: Iterable[str],
    process: Callable[[str], tuple[T, Metadata]],
    workers: int = 1,
) -> dict[str, T]:
    """`process` every book, `workers` books at a time (threads); record each book's metadata on its
    partition; if any fail, raise one `Failure` naming each book and its problem.

    `process` returns (value, metadata). Metadata is recorded here, from the step's own thread:
    Dagster's metadata store is not thread-safe. All books are tried before failing, so one bad file
    reports every bad file of its batch at once. The failure is retried (`STORE_RETRY`) only if some
    book failed for another reason than bad input.
    """
    book_ids = list(book_ids)
    if BOOKS_TAG not in context.run.tags and book_ids:
        # A run launched from the UI (its Materialize dialog, a backfill) carries no `corpus/books` tag:
        # added here, so the run list says which books every run covers. Dagster 1.13 has no public way
        # to tag a run from inside it; `add_run_tags` is the instance's own (merged, so idempotent).
        context.instance.add_run_tags(context.run_id, books_tag(book_ids))
    stage = context.assets_def.key.to_user_string()
    results: dict[str, T] = {}
    problems: dict[str, str] = {}
    retryable: dict[str, bool] = {}
    outage: dict[str, bool] = {}

    def attempt(book_id: str) -> tuple[str, tuple[T, Metadata] | None, str | None, bool, bool]:
        try:
            return book_id, process(book_id), None, False, False
        except BookError as error:
            return book_id, None, str(error), False, False
        except Exception as error:  # noqa: BLE001 - reported per book below, with its type
            return book_id, None, f"{type(error).__name__}: {error}", True, isinstance(error, _OUTAGES)

    if workers > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix=stage) as executor:
            outcomes = list(executor.map(attempt, book_ids))
    else:
        outcomes = list(map(attempt, book_ids))
    with _partition_keys_read_once(context.instance):
        for book_id, outcome, problem, retry, transient in outcomes:
            if problem is None:
                results[book_id], metadata = outcome
                context.add_asset_metadata(dict(metadata), partition_key=book_id)
            else:
                context.log.error(f"book {book_id!r}: {stage} failed: {problem}")
                problems[book_id] = problem
                retryable[book_id] = retry
                outage[book_id] = transient
    if problems:
        listing = "; ".join(f"{book}: {problem}" for book, problem in problems.items())
        rows = "\n".join(f"| {book} | {md_cell(problem, 300)} |" for book, problem in problems.items())
        raise Failure(
            description=f"{len(problems)} of {len(results) + len(problems)} books failed in {stage}: {listing}",
            metadata={
                "failed books": MetadataValue.md(f"| book | problem |\n|---|---|\n{rows}"),
                FAILURES_KEY: MetadataValue.json(
                    {book: {"stage": stage, "problem": problem, "bad_input": not retryable[book],
                            "transient": outage[book]} for book, problem in problems.items()}
                ),
            },
            allow_retries=any(retryable.values()),
        )
    return results
