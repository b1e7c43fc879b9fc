"""One partition per book; keys come from `corpus_assets.books.library.book_id_for`."""

import warnings
from contextlib import contextmanager

from dagster import (
    AssetCheckSpec,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    DynamicPartitionsDefinition,
    PreviewWarning,
    asset,
    multi_asset_check,
)

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


def book_check(asset: AssetsDefinition, **spec_kwargs):
    """A per-book check: one partitioned check spec whose function yields one evaluation per book of
    its run (`corpus_assets.checks.evaluate_books`), each recorded on that book's partition.

    Dagster 1.13 records an `AssetCheckResult` on a partition only when the step has a single
    partition key, and runs cover ranges of books; evaluations logged with their `partition`
    resolve each book's planned execution instead. The outputs are optional (`can_subset`), so the
    step yields no `AssetCheckResult` at all.
    """

    def decorate(fn):
        with accepting_partitioned_checks():
            spec = AssetCheckSpec(fn.__name__, asset=asset, partitions_def=books_partitions,
                                  description=fn.__doc__, **spec_kwargs)
        # The op keeps @asset_check's name (asset_check), which step keys and run history show.
        return multi_asset_check(specs=[spec], can_subset=True, name=f"{asset.key.to_python_identifier()}_{fn.__name__}",
                                 description=fn.__doc__)(fn)

    return decorate


@contextmanager
def accepting_partitioned_checks():
    """Partitioned asset checks are a preview in Dagster 1.13 and exactly what per-book checks need:
    the warning is accepted where such checks are defined, and only there."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*partitions_def.*", category=PreviewWarning)
        yield
