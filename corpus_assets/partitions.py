"""One partition per book; keys come from `corpus_assets.books.library.book_id_for`."""

import warnings
from contextlib import contextmanager

from dagster import BackfillPolicy, BetaWarning, DynamicPartitionsDefinition, PreviewWarning, asset, asset_check

from resources import settings

books_partitions = DynamicPartitionsDefinition(name="books")

# Concurrency pools (limits in dagster.yaml): one embedding step saturates the cores; Qdrant's local
# mode allows one writer process per folder.
EMBEDDING_POOL = "embedding"
QDRANT_POOL = "qdrant"

# Books per run in a backfill: imports and the model load once per run instead of once per book,
# and embedding batches span books. A failing book fails its whole batch (Dagster cannot fail one
# partition of a multi-partition run); a re-run of the batch redoes only cheap work.
BOOKS_PER_RUN = settings.current().books_per_run
batched_backfill = BackfillPolicy.multi_run(max_partitions_per_run=BOOKS_PER_RUN)


def book_asset(**kwargs):
    """`@asset` for a per-book stage: one partition per book, batched in backfills."""

    def decorate(fn):
        # Backfill policies are beta in Dagster 1.13 and exactly what batching books needs: accepted
        # here, for these definitions only.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)
            return asset(partitions_def=books_partitions, backfill_policy=batched_backfill, **kwargs)(fn)

    return decorate


def book_check(**kwargs):
    """`@asset_check` with a result per book's partition."""

    def decorate(fn):
        with accepting_partitioned_checks():
            return asset_check(partitions_def=books_partitions, **kwargs)(fn)

    return decorate


@contextmanager
def accepting_partitioned_checks():
    """Partitioned asset checks are a preview in Dagster 1.13 and exactly what per-book checks need:
    the warning is accepted where such checks are defined, and only there."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*partitions_def.*", category=PreviewWarning)
        yield
