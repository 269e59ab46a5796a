"""Batches of arrays (`dlx.data.batches`): what `fit` reads on the JAX backend."""

import numpy as np

from dlx.data.batches import ArrayBatches, Share


def arrays(count: int):
    x = np.arange(count, dtype=np.float32).reshape(count, 1)
    return x, np.arange(count)


def test_each_epoch_is_its_own_permutation_drawn_from_the_seed_alone():
    batches = ArrayBatches(arrays(10), 4, seed=7, first=0, end=2)
    again = ArrayBatches(arrays(10), 4, seed=7, first=1, end=2)  # a run resumed at epoch 1

    assert len(batches) == 6 and [len(batches[i][1]) for i in range(3)] == [4, 4, 2]
    first, second = (np.concatenate([batches[e * 3 + i][1] for i in range(3)]) for e in (0, 1))
    assert sorted(first) == sorted(second) == list(range(10))
    assert list(first) != list(second)
    assert all(np.array_equal(again[i][1], batches[3 + i][1]) for i in range(3))


def test_shared_batches_are_cut_to_the_devices_and_each_process_reads_its_part():
    whole = ArrayBatches(arrays(11), 4, seed=3)
    parts = [whole.shared(Share(devices=2, processes=2, index=i)) for i in (0, 1)]

    # 11 examples in batches of 4: 4, 4, 3 -> the last one cut to 2 (a multiple of 2 devices).
    assert len(parts[0]) == len(parts[1]) == 3
    for step in range(3):
        together = np.concatenate([part[step][1] for part in parts])
        assert np.array_equal(together, whole[step][1][: len(together)])
    assert [len(parts[0][step][1]) for step in range(3)] == [2, 2, 1]


def test_a_last_batch_smaller_than_the_devices_is_left_out():
    batches = ArrayBatches(arrays(9), 4, share=Share(devices=2))
    assert len(batches) == 2  # 4, 4, and 1 example that two devices cannot share
    assert len(ArrayBatches(arrays(9), 4)) == 3


def test_a_single_device_reads_every_example_of_shared_batches_read_alone():
    shared = ArrayBatches(arrays(9), 4, share=Share(devices=2, processes=2, index=1))
    alone = shared.shared(None)
    assert sum(len(alone[i][1]) for i in range(len(alone))) == 9
