"""Sharding a streamed training split by file across the workers of a job."""

import numpy as np
import pytest

from dlx.data import make_splits
from dlx.data.stream import choose_sharding, worker_files
from dlx.spec.schema import Data
from tests.data.test_stream import concatenated, splits_of, write_folder


@pytest.fixture
def pets(context):
    write_folder(context.base_dir / "pets", per_class=7)  # 21 files: 11 and 10 for 2 workers
    return context


def rows(images: np.ndarray) -> set[bytes]:
    return {image.tobytes() for image in images}


def worker_splits(context, index, workers=2, cache="none"):
    """The splits worker `index` of a job reads (one replica per worker, batch size 8)."""
    data = Data(source={"images": {"directory": "pets", "image_size": [8, 8]}}, cache=cache)
    return make_splits(
        data, context=context, batch_size=8, workers=workers, worker=index, replicas=workers
    )


def test_each_worker_reads_its_own_positions_of_the_training_files(pets):
    files = splits_of(pets).stream.files
    first, second = (worker_files(files, 2, index) for index in (0, 1))
    assert list(first.indices) == list(files.indices[0::2])
    assert list(second.indices) == list(files.indices[1::2])
    assert (first.count, second.count) == (11, 10)
    assert set(first.paths).isdisjoint(second.paths)
    assert sorted(first.paths + second.paths) == sorted(files.paths)


@pytest.mark.parametrize(
    ("files", "workers", "batch_size", "policy", "line"),
    [
        (32, 2, 8, "file", "sharded by file: 16 files per worker (2 workers)"),
        (33, 2, 8, "file", "sharded by file: 16-17 files per worker (2 workers)"),
        (3, 4, 8, "data", "sharded by example: 3 files for 4 workers"),
        (
            32,
            3,
            8,
            "data",
            "sharded by example: the batch size 8 does not split evenly across 3 replicas",
        ),
        (None, 2, 8, "data", "sharded by example: the data is in memory, not read from files"),
    ],
)
def test_the_policy_is_by_file_when_every_worker_gets_files(
    files, workers, batch_size, policy, line
):
    sharding = choose_sharding(files, workers, batch_size, replicas=workers)
    assert (sharding.policy, sharding.describe()) == (policy, line)
    assert (sharding.files_per_worker is None) == (policy == "data")


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_workers_read_disjoint_files_and_the_same_number_of_examples(pets, cache):
    whole = splits_of(pets, cache=cache)  # batch size 8: 3 steps of 21 examples an epoch
    assert whole.steps_per_epoch == 3
    everything = rows(concatenated(whole.epochs(0, 1))[0])
    seen = []
    for index in (0, 1):
        splits = worker_splits(pets, index, cache=cache)
        assert splits.sharding.policy == "file" and splits.sharding.files_per_worker == "10-11"
        x, _ = concatenated(splits.epochs(0, 2))
        # Each epoch is steps * batch / workers = 12 examples: its 11 or 10 files, then the
        # first of them again; every batch is full, so every step gives each worker 4.
        assert len(x) == 2 * 12
        assert [len(b) for b, _ in splits.epochs(0, 2)] == [8, 8, 8]
        first, second = rows(x[:12]), rows(x[12:])
        assert first == second and len(first) == 11 - index
        seen.append(first)
        # A resumed job reads what an uninterrupted one reads from its epoch on.
        resumed, _ = concatenated(splits.epochs(1, 2))
        assert np.array_equal(resumed, x[12:])
        # Preprocessing is adapted on the first epoch of the whole split, alike everywhere.
        assert rows(concatenated(splits.train)[0]) == everything
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == everything


def test_a_worker_caches_only_its_own_files(pets):
    for index in (0, 1):
        splits = worker_splits(pets, index, cache={"disk": "cache/pets"})
        x, _ = concatenated(splits.epochs(0, 1))
        assert len(rows(x)) == 11 - index
    names = {
        path.name.split("-", 2)[-1].split(".")[0] for path in (pets.base_dir / "cache").iterdir()
    }
    # Each worker's cache of its own files, none of the whole split.
    assert names == {"0of2-train", "1of2-train"}


def test_fewer_files_than_workers_are_sharded_by_example(pets):
    splits = worker_splits(pets, 0, workers=32)
    assert splits.sharding.policy == "data" and splits.sharding.describe() == (
        "sharded by example: 21 files for 32 workers"
    )
    x, _ = concatenated(splits.epochs(0, 1))
    assert len(x) == 21  # every worker reads every example and keeps its part of each batch
