import shutil

import pytest
from dagster import DagsterInstance

from corpus_assets.definitions import defs
from corpus_assets.partitions import books_partitions
from corpus_assets.batches import partition_ranges
from resources.library import BookLibrary
from resources.settings import SAMPLE_LIBRARY_DIR


def test_register_job_adds_a_partition_per_new_book(tmp_path):
    for book in SAMPLE_LIBRARY_DIR.glob("*.txt"):
        shutil.copy(book, tmp_path)
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("register_books_job")
    run_config = {"resources": {"library": {"config": {"folder": str(tmp_path)}}}}

    assert job.execute_in_process(instance=instance, run_config=run_config).success
    expected = sorted(BookLibrary(folder=str(tmp_path)).listing().files)
    assert instance.get_dynamic_partitions(books_partitions.name) == expected

    (tmp_path / "New Book.txt").write_text("Some text.")
    assert job.execute_in_process(instance=instance, run_config=run_config).success
    keys = instance.get_dynamic_partitions(books_partitions.name)
    assert keys[:3] == expected and len(keys) == 4 and keys[3].startswith("new-book-")


def test_runs_hold_contiguous_books_up_to_the_batch_size():
    keys = ["a", "b", "c", "d", "e", "f"]
    assert partition_ranges(keys, keys, 4) == [["a", "b", "c", "d"], ["e", "f"]]
    assert partition_ranges(keys, ["f", "a", "b", "d"], 10) == [["a", "b"], ["d"], ["f"]]
    with pytest.raises(ValueError, match="not registered: zz"):
        partition_ranges(keys, ["a", "zz"], 2)
