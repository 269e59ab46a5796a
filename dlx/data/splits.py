"""A run's data, split and batched: `Splits`, what `make_splits` (`dlx.data.pipeline`) returns
and training reads, epoch by epoch."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from dlx.data.sources import Features
from dlx.data.stream import FileSplit, Sharding, TrainStream, choose_sharding, describe_unreadable

if TYPE_CHECKING:
    import tensorflow as tf

Arrays = tuple[Features, Features | None]
"""The examples of one split as arrays: `(x, y)`; `y` is `None` for data without targets."""


@dataclass
class Splits:
    """The data of a run, split and batched.

    Attributes:
        train: one epoch of batched `(x, y)` training examples, in the first epoch's order
            (of the whole split, even for a worker that reads only its own files); training
            reads `epochs(first, end)`, which orders every epoch afresh.
        validation: batched validation examples, in a fixed order; `None` without validation.
        test: batched test examples, in a fixed order; `None` without a test split.
        train_arrays: the training examples as arrays, for adapting preprocessing layers;
            `None` when the source gave a dataset instead of arrays.
        validation_arrays: the validation examples as arrays, or `None`.
        test_arrays: the test examples as arrays (for a confusion matrix), or `None`.
        class_names: the name of each class id, when the source knows them.
        num_train: the number of training examples (of windows, with `data.window`).
        num_validation: the number of validation examples (0 without validation).
        num_test: the number of test examples (0 without a test split).
        fingerprint: the sha256 (hex) of the data read: every array's dtype, shape and bytes,
            and the class names. The same data always gives the same fingerprint, whatever the
            seed and the split fractions. A streamed source's files are fingerprinted as
            `data.fingerprint` says: by their paths, sizes and times, or by their bytes.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    train_arrays: Arrays | None
    validation_arrays: Arrays | None
    test_arrays: Arrays | None
    class_names: list[str] | None
    num_train: int
    num_validation: int
    num_test: int
    fingerprint: str
    batch_size: int = 32
    shuffle_seed: int | None = None
    """The seed each epoch's order is drawn from; `None`: the source's order, every epoch."""
    examples: tf.data.Dataset | None = field(default=None, repr=False)
    """The training examples, unbatched and in the source's order."""
    stream: TrainStream | None = field(default=None, repr=False)
    """The training files of a streamed source, which `epochs` reads instead of `examples`."""
    labels: tuple[np.ndarray | None, ...] | None = None
    """For a streamed source: the labels of the train, validation and test splits, in their
    order, known without decoding (class folders, a CSV scan); `None` for a split not asked
    for, or when the source does not know them (TFRecord)."""
    file_counts: tuple[int | None, int | None, int | None] | None = None
    """For a streamed source: how many files the train, validation and test splits read (`None`
    for a split of data in memory, or not asked for)."""
    cache: str | None = None
    """For a streamed source: the cache chosen (`memory`, `none`, or a disk cache's prefix)."""
    sharding: Sharding | None = None
    """How the workers of a job share the training split (`shard`); `None`: one worker."""
    files: list[FileSplit] = field(default_factory=list, repr=False)
    fed_as_arrays: bool = False
    """Whether `train`, `validation` and `test` are batches of arrays
    (`dlx.data.batches.ArrayBatches`) rather than `tf.data` datasets."""
    """For a streamed source: the files of every split read, to say which could not be."""

    def skipped(self) -> list[str]:
        """The files left out so far because they could not be decoded (`on_error: skip`)."""
        return sorted({path for part in self.files for path in part.skipped()})

    def unreadable(self, error: BaseException) -> str | None:
        """The file an error of reading the data names, why it cannot be read and what to do,
        in a line; `None` when the error is not about a file that could not be decoded."""
        if not self.files:
            return None
        return describe_unreadable(error, [part.stream for part in self.files])

    @property
    def in_memory(self) -> bool:
        """Whether the splits are batches of arrays fed without `tf.data` (`feed="arrays"`)."""
        return self.fed_as_arrays

    @property
    def steps_per_epoch(self) -> int:
        if self.in_memory:  # batches cut to the devices' multiple may leave out a last one
            return int(self.train.steps)
        return -(-self.num_train // self.batch_size)

    def alone(self) -> Splits:
        """These splits read whole by this process alone: after a job of several processes
        on JAX, the chief evaluates and predicts on its own, on every example."""
        if not self.in_memory:
            return self
        return replace(
            self,
            train=self.train.shared(None),
            validation=None if self.validation is None else self.validation.shared(None),
            test=None if self.test is None else self.test.shared(None),
        )

    def shard(self, workers: int, index: int, replicas: int) -> Sharding:
        """Make this worker (`index` of `workers`, `replicas` in all) read its share only.

        Sharded by file (`choose_sharding`), the worker's `epochs` read only its own files
        (`worker_files`), `tf.data`'s auto-sharding off: each step, `tf.distribute` gives each
        worker `batch_size / workers` examples of its own batches, so each of its epochs is
        exactly `steps_per_epoch * batch_size / workers` examples (its files read again, or
        cut, to that count) and every worker takes the same number of steps. Otherwise every
        worker reads every example and keeps its part of each global batch (by example).

        `train` stays the first epoch of the whole split, read from its files (no cache: a
        worker decodes only what it reads of other workers' files), so that preprocessing is
        adapted on the same examples on every worker.
        """
        import tensorflow as tf

        files = None if self.stream is None else self.stream.files.count
        self.sharding = choose_sharding(files, workers, self.batch_size, replicas)
        if self.sharding.policy == "file":
            stream = self.stream
            assert stream is not None  # only files are shared by file (`choose_sharding`)
            whole = TrainStream(stream.files, stream.seed, stream.buffer, "none")
            self.train = whole.epochs(0, 1, self.batch_size).prefetch(tf.data.AUTOTUNE)
            self.stream = stream.for_worker(workers, index)
        return self.sharding

    @functools.cached_property
    def _train_tensors(self) -> Any:
        """The training examples as tensors, which each epoch's batches are gathered from."""
        assert self.examples is not None  # read only for training examples in memory
        return self.examples.batch(self.num_train).get_single_element()

    def epochs(self, first: int, end: int) -> tf.data.Dataset:
        """The batches of epochs `first` to `end - 1`, one epoch after the other.

        Epoch `e`'s order is a permutation drawn from `(shuffle_seed, e)` alone (a stateless
        shuffle), not from how many epochs this process has read, so a run resumed at epoch
        `e` reads exactly the batches an uninterrupted run reads there. Each epoch ends with
        its own partial batch: train with `steps_per_epoch`.
        """
        if self.in_memory:
            return self.train.epochs(first, end)
        import tensorflow as tf

        if self.sharding is not None and self.sharding.policy == "file":
            assert self.stream is not None  # only files are shared by file (`choose_sharding`)
            share = self.steps_per_epoch * self.batch_size // self.sharding.workers
            stream = self.stream.epochs(first, end, self.batch_size, share)
            return distributable(stream, by_file=True).prefetch(tf.data.AUTOTUNE)
        if self.stream is not None:
            stream = self.stream.epochs(first, end, self.batch_size)
            return distributable(stream).prefetch(tf.data.AUTOTUNE)
        examples = self._train_tensors
        seed = None if self.shuffle_seed is None else self.shuffle_seed % 2**63
        batch_size = self.batch_size
        indices = tf.range(self.num_train, dtype=tf.int64)

        def order(epoch: tf.Tensor) -> tf.data.Dataset:
            ordered = indices
            if seed is not None:
                key = tf.stack([tf.constant(seed, tf.int64), epoch])
                ordered = tf.random.experimental.stateless_shuffle(indices, seed=key)
            return tf.data.Dataset.from_tensor_slices(ordered).batch(batch_size)

        def gather(batch: tf.Tensor) -> Any:
            return tf.nest.map_structure(lambda tensor: tf.gather(tensor, batch), examples)

        stream = tf.data.Dataset.range(first, max(end, first + 1)).flat_map(order).map(gather)
        return distributable(stream).prefetch(tf.data.AUTOTUNE)


def distributable(dataset: tf.data.Dataset, by_file: bool = False) -> tf.data.Dataset:
    """How several workers share a dataset: by example, or each its own files.

    By example (`AutoShardPolicy.DATA`), every worker reads the whole dataset and keeps its
    own part of every global batch: the arrays and cached datasets in memory, validation and
    test splits, and a training split with fewer files than workers. `by_file`: the dataset
    is this worker's own files already (`Splits.shard`), so `tf.distribute` must not shard
    it again (`AutoShardPolicy.OFF`).
    """
    import tensorflow as tf

    policy = tf.data.experimental.AutoShardPolicy
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy.OFF if by_file else policy.DATA
    return dataset.with_options(options)
