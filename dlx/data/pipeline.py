"""From a spec's `data` section to batched `tf.data` pipelines: train, validation and test.

The splits are drawn with the spec's seed, so every run of a spec trains and evaluates on the
same examples; the data's fingerprint says whether two runs read the same data at all. With
`data.window`, the source's rows are a time series instead: the splits are its consecutive
parts, each cut into windows.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dlx.data.sources import (
    Features,
    SourceContext,
    SourceData,
    SourceError,
    call_source,
    check_source,
)
from dlx.data.stream import FileSplit, TrainStream, cached, choose_cache, digest_stream, split_files

if TYPE_CHECKING:
    import tensorflow as tf

    from dlx.spec.schema import Data, Window

Arrays = tuple[Features, np.ndarray | None]
"""The examples of one split as arrays: `(x, y)`; `y` is `None` for data without targets."""

# Fractions are rounded up, so that a split asked for is never empty; the tolerance keeps
# float error (0.07 * 100 == 7.000000000000001) from adding an example.
_ROUNDING_TOLERANCE = 1e-9


@dataclass
class Splits:
    """The data of a run, split and batched.

    Attributes:
        train: one epoch of batched `(x, y)` training examples, in the first epoch's order;
            training reads `epochs(first, end)`, which orders every epoch afresh.
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
            seed and the split fractions.
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
    """For a streamed source: the class ids of the train, validation and test splits (`None`
    for a split not asked for), known without decoding a file."""
    cache: str | None = None
    """For a streamed source: the cache chosen (`memory`, `none`, or a disk cache's prefix)."""

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.num_train // self.batch_size)

    @functools.cached_property
    def _train_tensors(self) -> Any:
        """The training examples as tensors, which each epoch's batches are gathered from."""
        return self.examples.batch(self.num_train).get_single_element()

    def epochs(self, first: int, end: int) -> tf.data.Dataset:
        """The batches of epochs `first` to `end - 1`, one epoch after the other.

        Epoch `e`'s order is a permutation drawn from `(shuffle_seed, e)` alone (a stateless
        shuffle), not from how many epochs this process has read, so a run resumed at epoch
        `e` reads exactly the batches an uninterrupted run reads there. Each epoch ends with
        its own partial batch: train with `steps_per_epoch`.
        """
        import tensorflow as tf

        if self.stream is not None:
            stream = self.stream.epochs(first, end, self.batch_size)
            return _distributable(stream).prefetch(tf.data.AUTOTUNE)
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
        return _distributable(stream).prefetch(tf.data.AUTOTUNE)


@dataclass
class _Part:
    """One split before batching: its examples, as arrays for an array source, and their count."""

    dataset: tf.data.Dataset | None
    arrays: Arrays | None
    count: int


def check_sources(data: Data, context: SourceContext) -> list[SourceError]:
    """What can be found wrong with a data section's sources without reading their data.

    Each source (`data.source`, and `data.validation.source` when given) is checked by
    `check_source`: its name, its arguments, and its source's own cheap check (files and
    folders exist, a CSV header names the columns, a dataset name is known).

    Returns:
        One error for each source at fault, its `path` from the spec's root
        (`("data", "source", "sklearn")`); none when all are fine.
    """
    components = [(data.source, ("data", "source"))]
    if data.validation is not None:
        components.append((data.validation.source, ("data", "validation", "source")))
    errors = []
    for component, keys in components:
        try:
            check_source(component, context)
        except SourceError as error:
            errors.append(error.at(*keys))
    return errors


def make_splits(data: Data, *, context: SourceContext, batch_size: int) -> Splits:
    """Read a spec's data and split it into batched train, validation and test datasets.

    The test split is drawn first, then the validation split from the rest, from one
    permutation of the examples made by `numpy.random.default_rng(context.seed)`; each split
    keeps the source's order. Fractions are of all the examples, rounded up. With
    `data.validation`, the validation data is that source's, whole.

    A source that gives a `tf.data.Dataset` instead of arrays is split in its own order: the
    first examples are the test split, the next the validation split, the rest the training
    split (shuffle it in the source if its order matters). It is read from the source once,
    to fingerprint and count its examples, and cached in memory: the splits read the cache.

    With `data.window`, the source's rows are one time series, in order, and the splits are
    chronological: the series is split first, by the same fractions of its rows (the training
    part first, then the validation part, the test part last), and each part is then cut into
    windows on its own (see `_windowed`), so that no window reaches across two parts and no row
    is seen by two splits. A `data.validation` source is a series of its own, windowed whole.
    The splits' examples and counts are then windows; the fingerprint is still of the rows
    read.

    Each split is then batched with `batch_size` and prefetched; the training split is
    shuffled each epoch when `data.shuffle` is true, with a full buffer and the seed.

    Args:
        data: the spec's `data` section.
        context: the spec's directory (for relative paths) and seed.
        batch_size: the global batch size.

    Returns:
        The splits, their arrays, their sizes and the data's fingerprint.

    Raises:
        SourceError: a source cannot be read, the splits leave no training data, or a window
            does not fit the data; `path` holds the spec keys of the fault
            (`("data", "source", "csv", "label")`, `("data", "window", "size")`).
    """
    source = _read(data.source, context, ("data", "source"))
    validation = None
    if data.validation is not None:
        validation = _read(data.validation.source, context, ("data", "validation", "source"))
        if source.class_names and validation.class_names:
            _relabel(validation, source.class_names)
    if data.window is not None:
        for read in (source, validation):
            _check_series(read)
    digest = hashlib.sha256()
    count = _digest_source(digest, source)
    validation_count = 0 if validation is None else _digest_source(digest, validation)

    num_test = _fraction_of(count, data.test_split)
    num_validation = _fraction_of(count, data.validation_split)
    num_train = count - num_test - num_validation
    if num_train <= 0 and source.stream is None:
        raise SourceError(
            f"the splits leave no training data: {count} examples, of which "
            f"{num_test} for test (test_split={data.test_split}) and {num_validation} for "
            f"validation (validation_split={data.validation_split})"
        ).at("data")

    fingerprint = digest.hexdigest()
    streams = [read.stream for read in (source, validation) if read and read.stream]
    cache = choose_cache(data.cache, streams, context.base_dir, fingerprint) if streams else None
    train_stream = None
    if source.stream is not None:
        files = split_files(source.stream, data.validation_split, data.test_split, context.seed)
        train_stream = TrainStream(
            files[0], context.seed if data.shuffle else None, data.shuffle_buffer, cache
        )
        train, split_validation, test = (
            _Part(None, None, files[0].count),
            *(
                _streamed_part(part, cache, name, part.count)
                for part, name in ((files[1], "validation"), (files[2], "test"))
            ),
        )
    elif data.window is None:
        train, split_validation, test = _shuffled_parts(
            source, count, num_validation, num_test, context.seed
        )
    else:
        train, split_validation, test = _series_parts(
            source, data.window, count, num_validation, num_test
        )
    if validation is not None:
        split_validation = (
            _streamed_part(_stream_split(validation), cache, "validation", validation_count)
            if validation.stream is not None
            else _part(validation, None, 0, validation_count)
            if data.window is None
            else _windowed(validation, data.window, 0, validation_count, "validation")
        )

    shuffle_seed = context.seed if data.shuffle else None
    has_validation, has_test = split_validation.count > 0, test.count > 0
    splits = Splits(
        train=train.dataset,  # replaced below by its first epoch
        validation=_batched(split_validation.dataset, batch_size) if has_validation else None,
        test=_batched(test.dataset, batch_size) if has_test else None,
        train_arrays=train.arrays,
        validation_arrays=split_validation.arrays if has_validation else None,
        test_arrays=test.arrays if has_test else None,
        class_names=source.class_names,
        num_train=train.count,
        num_validation=split_validation.count,
        num_test=test.count,
        fingerprint=fingerprint,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        examples=train.dataset,
        stream=train_stream,
        cache=cache,
    )
    if train_stream is not None:
        labels = [files[0].labels, None, files[2].labels if has_test else None]
        if has_validation:
            labels[1] = (
                files[1].labels
                if validation is None
                else validation.stream.labels
                if validation.stream is not None
                else validation.y
            )
        splits.labels = tuple(labels)
    splits.train = splits.epochs(0, 1)
    return splits


def _shuffled_parts(
    source: SourceData, count: int, num_validation: int, num_test: int, seed: int
) -> tuple[_Part, _Part, _Part]:
    """The train, validation and test parts, drawn along one seeded permutation.

    A dataset source is split in its own order instead: test first, then validation.
    """
    order = None if source.dataset is not None else np.random.default_rng(seed).permutation(count)
    return (
        _part(source, order, num_test + num_validation, count),
        _part(source, order, num_test, num_test + num_validation),
        _part(source, order, 0, num_test),
    )


def _series_parts(
    source: SourceData, window: Window, count: int, num_validation: int, num_test: int
) -> tuple[_Part, _Part, _Part]:
    """The train, validation and test parts of a series, in time order, each windowed."""
    num_train = count - num_validation - num_test
    span = window.size + window.horizon
    if count < span:
        raise SourceError(
            f"the series has {count} rows, too few for one window: a window and its target "
            f"need size + horizon = {span} rows (size={window.size}, horizon={window.horizon})"
        ).at("data", "window", "size")
    return (
        _windowed(source, window, 0, num_train, "training"),
        _windowed(source, window, num_train, num_train + num_validation, "validation"),
        _windowed(source, window, num_train + num_validation, count, "test"),
    )


def _check_series(source: SourceData | None) -> None:
    """Check that a source can be windowed: arrays, and a target series to forecast."""
    if source is None:
        return
    if source.dataset is not None or source.stream is not None:
        raise SourceError(
            "windowing needs a source that gives arrays (npz, csv, synthetic, or a python "
            "function returning (x, y)); this source gives a tf.data.Dataset or streams files"
        ).at("data", "window")
    if source.y is None and isinstance(source.x, dict):
        raise SourceError(
            "a window without targets forecasts the source's inputs, which must be one array; "
            f"this source gives several ({', '.join(sorted(source.x))}). Give the targets as y"
        ).at("data", "window")


def _read(component: Any, context: SourceContext, keys: tuple[str, ...]) -> SourceData:
    """Read a source; a dataset it gives is cached in memory, to be read from it only once.

    The first read, which fingerprints and counts the examples, fills the cache; the splits,
    cut from the cached dataset, and every epoch after read the cache.
    """
    try:
        data = call_source(component, context)
    except SourceError as error:
        raise error.at(*keys) from None
    if data.dataset is not None:
        data.dataset = data.dataset.cache()
    return data


def _relabel(validation: SourceData, class_names: list[str]) -> None:
    """Give a validation source's labels the training source's class ids, by class name.

    Two folders or files seldom hold exactly the same classes; a validation folder without one
    of the training classes would otherwise number its classes differently.
    """
    if validation.class_names == class_names or (validation.y is None and not validation.stream):
        return
    unknown = sorted(set(validation.class_names) - set(class_names))
    if unknown:
        raise SourceError(
            f"the validation data has classes the training data lacks: {', '.join(unknown)}. "
            f"Training classes: {', '.join(class_names)}"
        ).at("data", "validation", "source")
    ids = np.array([class_names.index(name) for name in validation.class_names], dtype=np.int32)
    if validation.stream is not None:
        validation.stream.labels = ids[validation.stream.labels]
    else:
        validation.y = ids[validation.y]
    validation.class_names = class_names


def _fraction_of(count: int, fraction: float) -> int:
    return math.ceil(count * fraction - _ROUNDING_TOLERANCE) if fraction else 0


def _part(source: SourceData, order: np.ndarray | None, start: int, stop: int) -> _Part:
    """The examples `start` to `stop` of a source: a dataset, and arrays for an array source.

    The examples are counted along `order`, a permutation of them, when it is given, else in
    the source's own order (always, for a dataset source); the part keeps the source's order.
    """
    count = stop - start
    if source.dataset is not None:
        dataset = source.dataset.skip(start).take(count)
        return _Part(_with_cardinality(dataset, count), None, count)
    arrays = _take(source, slice(start, stop) if order is None else np.sort(order[start:stop]))
    return _Part(_from_arrays(arrays), arrays, count)


def _stream_split(source: SourceData) -> FileSplit:
    """All the files of a streamed source, in its order (an explicit validation source)."""
    return FileSplit(source.stream, np.arange(len(source.stream.files)))


def _streamed_part(files: FileSplit, cache: str, name: str, count: int) -> _Part:
    """A validation or test split of streamed files: decoded in order, cached as chosen."""
    if count == 0:
        return _Part(None, None, 0)
    examples = files.finished(cached(files.files_dataset(), cache, name))
    return _Part(_with_cardinality(examples, count), None, count)


def _windowed(source: SourceData, window: Window, start: int, stop: int, split: str) -> _Part:
    """The windows of the rows `start` to `stop` of a series, in time order.

    Window `i` of the part begins at row `b = start + i * stride`: its inputs are the rows
    `b` to `b + size - 1` of `x` (a 1-D `x` is one feature: windows shaped `(size, 1)`), and
    its target is row `b + size + horizon - 1` of `y`, or of `x` itself when the source has no
    targets (a 1-D `x` then gives scalar targets). Windows lie wholly inside the part; the
    rows left over at its end, fewer than a stride, are not used.

    An empty part (a split not asked for) has no windows; any other part must hold at least
    one window, else `SourceError` at `data.window.size`.
    """
    rows = stop - start
    if rows == 0:
        return _Part(None, None, 0)
    span = window.size + window.horizon
    if rows < span:
        raise SourceError(
            f"the {split} part of the series, rows {start} to {stop - 1}, has {rows} rows: "
            f"too few for one window and its target, which need size + horizon = {span} rows "
            f"(size={window.size}, horizon={window.horizon}). Use a smaller window or give the "
            f"{split} part more rows"
        ).at("data", "window", "size")
    count = (rows - span) // window.stride + 1
    starts = start + window.stride * np.arange(count)
    steps = starts[:, np.newaxis] + np.arange(window.size)
    targets = starts + window.size + window.horizon - 1
    x, y = source.x, source.y

    def series(array: np.ndarray) -> np.ndarray:
        return array[:, np.newaxis] if array.ndim == 1 else array

    inputs = (
        {name: series(array)[steps] for name, array in x.items()}
        if isinstance(x, dict)
        else series(x)[steps]
    )
    arrays = (inputs, (x if y is None else y)[targets])
    return _Part(_from_arrays(arrays), arrays, count)


def _take(source: SourceData, indices: np.ndarray | slice) -> Arrays:
    x = source.x
    inputs = (
        {name: array[indices] for name, array in x.items()} if isinstance(x, dict) else x[indices]
    )
    return inputs, None if source.y is None else source.y[indices]


def _from_arrays(arrays: Arrays) -> tf.data.Dataset:
    import tensorflow as tf

    x, y = arrays
    return tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))


def _with_cardinality(dataset: tf.data.Dataset, count: int) -> tf.data.Dataset:
    """A split of a dataset source, telling `shuffle` and Keras how long it is."""
    import tensorflow as tf

    return dataset.apply(tf.data.experimental.assert_cardinality(count))


def _batched(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batch and prefetch, in order.

    Nothing is cached here: the examples of array sources are already in memory, and a
    dataset source is cached whole when it is read, before it is split.
    """
    import tensorflow as tf

    return _distributable(dataset.batch(batch_size)).prefetch(tf.data.AUTOTUNE)


def _distributable(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shard by data, not by file, when several workers read it.

    Every split is drawn from examples already in memory (array sources, and dataset sources
    cached whole when read), so there are no files to give each worker: each worker keeps
    its own part of every global batch (`AutoShardPolicy.DATA`), and the global batch is
    split across all replicas.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _digest_source(digest: Any, source: SourceData) -> int:
    """Add a source's data to a sha256 digest, and count its examples."""
    for name in source.class_names or []:
        _digest_text(digest, name)
    if source.stream is not None:
        return digest_stream(digest, source.stream)
    if source.dataset is not None:
        return _digest_dataset(digest, source.dataset)
    arrays = source.named_arrays()
    for name, array in arrays:
        _digest_text(digest, name)
        _digest_array(digest, array)
    if source.y is None:
        _digest_text(digest, "y")  # a `y` without an array: data without targets
    _, first = arrays[0]
    return len(first)


def _digest_dataset(digest: Any, dataset: tf.data.Dataset) -> int:
    import tensorflow as tf

    if int(dataset.cardinality()) == tf.data.INFINITE_CARDINALITY:
        raise SourceError(
            "the source's dataset is infinite: expected a finite dataset of (x, y) examples"
        )
    count = 0
    for example in dataset.as_numpy_iterator():
        for value in tf.nest.flatten(example):
            _digest_array(digest, np.asarray(value))
        count += 1
    if count == 0:
        raise SourceError("the source's dataset holds no examples")
    return count


def _digest_array(digest: Any, array: np.ndarray) -> None:
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    if array.dtype == object:
        # An object array's bytes are pointers; digest the values (strings, bytes) instead.
        for value in array.ravel():
            _digest_text(digest, value)
    else:
        digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _digest_text(digest: Any, value: str | bytes) -> None:
    data = value if isinstance(value, bytes) else str(value).encode()
    digest.update(len(data).to_bytes(8, "little"))
    digest.update(data)
