"""One partition per book; keys come from `corpus_assets.books.library.book_id_for`."""

import os
import warnings

from dagster import BackfillPolicy, BetaWarning, DynamicPartitionsDefinition, PreviewWarning, asset

# Backfill policies (beta) and per-book asset checks (preview) are what per-book partitions need;
# say so once, here, rather than warn on every definition.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*", category=PreviewWarning)

books_partitions = DynamicPartitionsDefinition(name="books")

# Concurrency pools (limits in dagster.yaml): one embedding step saturates the cores; Qdrant's local
# mode allows one writer process per folder.
EMBEDDING_POOL = "embedding"
QDRANT_POOL = "qdrant"

# Books per run in a backfill: imports and the model load once per run instead of once per book,
# and embedding batches span books. A failing book fails its whole batch (Dagster cannot fail one
# partition of a multi-partition run); a re-run of the batch redoes only cheap work.
BOOKS_PER_RUN = int(os.environ.get("CORPUS_BOOKS_PER_RUN", "20"))
batched_backfill = BackfillPolicy.multi_run(max_partitions_per_run=BOOKS_PER_RUN)


def book_asset(**kwargs):
    """`@asset` for a per-book stage: one partition per book, batched in backfills."""
    return asset(partitions_def=books_partitions, backfill_policy=batched_backfill, **kwargs)
