"""From a spec's `data` section to batched `tf.data` pipelines: train, validation and test.

The splits are drawn with the spec's seed, so every run of a spec trains and evaluates on the
same examples; the data's fingerprint says whether two runs read the same data at all. With
`data.window`, the source's rows are a time series instead: the splits are its consecutive
parts, each cut into windows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dlx.data.cache import cached, check_disk_cache, choose_cache
from dlx.data.fingerprint import digest_source
from dlx.data.sources import (
    Features,
    FileStream,
    SourceContext,
    SourceData,
    SourceError,
    call_source,
    check_source,
)
from dlx.data.splits import Arrays, Splits, distributable
from dlx.data.stream import (
    FileSplit,
    TrainStream,
    choose_sharding,
    describe_unreadable,
    split_files,
)

if TYPE_CHECKING:
    import tensorflow as tf

    from dlx.data.batches import Share
    from dlx.spec.schema import Data, Window


# Fractions are rounded up, so that a split asked for is never empty; the tolerance keeps
# float error (0.07 * 100 == 7.000000000000001) from adding an example.
_ROUNDING_TOLERANCE = 1e-9


@dataclass
class _Part:
    """One split before batching: its examples, as arrays for an array source, and their count.

    An array source's `tf.data` dataset is made when first asked for (`examples`): a split fed
    as arrays (`feed="arrays"`) never imports TensorFlow.
    """

    dataset: tf.data.Dataset | None
    arrays: Arrays | None
    count: int
    batched: bool = False
    """Whether `dataset` is batched already (a streamed split, batched as its files are read)."""

    @property
    def examples(self) -> tf.data.Dataset | None:
        if self.dataset is None and self.arrays is not None:
            self.dataset = _from_arrays(self.arrays)
        return self.dataset


def check_sources(data: Data, context: SourceContext) -> list[SourceError]:
    """What can be found wrong with a data section's sources without reading their data.

    Each source (`data.source`, and the explicit `data.validation` and `data.test` sources
    when given) is checked by
    `check_source`: its name, its arguments, and its source's own cheap check (files and
    folders exist, a CSV header names the columns, a dataset name is known).

    Returns:
        One error for each source at fault, its `path` from the spec's root
        (`("data", "source", "sklearn")`); none when all are fine.
    """
    components: list[tuple[Any, tuple[str, ...]]] = [(data.source, ("data", "source"))]
    components += [(component, keys) for _, component, keys in data.explicit_sources()]
    errors = []
    for component, keys in components:
        try:
            check_source(component, context)
        except SourceError as error:
            errors.append(error.at(*keys))
    if not isinstance(data.cache, str):
        try:
            check_disk_cache(context.base_dir / data.cache.disk)
        except SourceError as error:
            errors.append(error.at("data", "cache", "disk"))
    return errors


def make_splits(
    data: Data,
    *,
    context: SourceContext,
    batch_size: int,
    workers: int = 1,
    worker: int = 0,
    replicas: int = 1,
    feed: str = "tf.data",
) -> Splits:
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
        workers: the workers of the job; with several, see `Splits.shard`.
        worker: this process's place among them.
        replicas: the replicas of all workers.
        feed: `tf.data`, or `arrays`: data in memory is fed to Keras as batches of arrays
            (`dlx.data.batches.ArrayBatches`) without TensorFlow (the JAX backend); streamed
            and dataset sources are `tf.data` either way.

    Returns:
        The splits, their arrays, their sizes and the data's fingerprint.

    Raises:
        SourceError: a source cannot be read, the splits leave no training data, or a window
            does not fit the data; `path` holds the spec keys of the fault
            (`("data", "source", "csv", "label")`, `("data", "window", "size")`).
    """
    context = dataclasses.replace(context, on_error=data.on_error)
    source = _read(data.source, context, ("data", "source"))
    explicit: dict[str, SourceData] = {}
    for name, component, keys in data.explicit_sources():
        explicit[name] = _read(component, context, keys)
        if source.class_names and explicit[name].class_names:
            _relabel(explicit[name], source.class_names, keys)
    validation, given_test = explicit.get("validation"), explicit.get("test")
    if data.window is not None:
        for read in (source, validation, given_test):
            _check_series(read)
            _load_rows(read)
    digest = hashlib.sha256()
    content = data.fingerprint == "content"
    count = digest_source(digest, source, content)
    counts = {name: digest_source(digest, read, content) for name, read in explicit.items()}

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
    streams = [read.stream for read in (source, *explicit.values()) if read.stream]
    cache = choose_cache(data.cache, streams, context.base_dir, fingerprint) if streams else None
    if workers > 1 and cache not in (None, "memory", "none"):
        cache = f"{cache}-{worker}of{workers}"  # workers on one machine: a disk cache each
    train_stream, files = None, []
    if source.stream is not None:
        assert cache is not None  # chosen for every streamed source
        files = list(
            split_files(
                source.stream, data.validation_split, data.test_split, context.seed, data.on_error
            )
        )
        train_stream = TrainStream(
            files[0], context.seed if data.shuffle else None, data.shuffle_buffer, cache
        )
        train, split_validation, test = (
            _Part(None, None, files[0].num_examples),
            _streamed_part(files[1], cache, "validation", batch_size),
            _streamed_part(files[2], cache, "test", batch_size),
        )
    elif data.window is None:
        train, split_validation, test = _shuffled_parts(
            source, count, num_validation, num_test, context.seed
        )
    else:
        train, split_validation, test = _series_parts(
            source, data.window, count, num_validation, num_test
        )
    explicit_files: dict[str, FileSplit] = {}
    for name, given in explicit.items():
        part = _explicit_part(given, data, cache, name, counts[name])
        if isinstance(part, FileSplit):
            assert cache is not None  # chosen for every streamed source
            explicit_files[name] = part
            part = _streamed_part(part, cache, name, batch_size)
        if name == "validation":
            split_validation = part
        else:
            test = part

    shuffle_seed = context.seed if data.shuffle else None
    has_validation, has_test = split_validation.count > 0, test.count > 0
    in_memory = all(p.arrays is not None for p in (train, split_validation, test) if p.count)
    if feed == "arrays" and in_memory:
        from dlx.data.batches import Share

        share = None if replicas <= 1 else Share(replicas, workers, worker)
        splits = _array_splits(
            (train, split_validation, test), source, fingerprint, batch_size, shuffle_seed, share
        )
        if workers > 1:
            splits.sharding = choose_sharding(None, workers, batch_size, replicas)
        return splits
    if feed == "arrays" and workers > 1:
        raise SourceError(
            "a job of several workers on the jax backend reads data in memory (arrays, csv, "
            "python, sklearn): a streamed source trains on several workers on the tensorflow "
            "backend (runtime.backend: tensorflow)"
        ).at("data", "source")
    splits = Splits(
        train=train.examples,  # replaced below by its first epoch
        validation=_batched(split_validation, batch_size) if has_validation else None,
        test=_batched(test, batch_size) if has_test else None,
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
        examples=train.examples,
        stream=train_stream,
        cache=cache,
        files=[*files, *explicit_files.values()],
    )
    if train_stream is not None:
        labels, file_counts = [files[0].labels, None, None], [files[0].count, None, None]
        for index, name in ((1, "validation"), (2, "test")):
            if (has_validation, has_test)[index - 1]:
                streamed = explicit_files.get(name) if name in explicit else files[index]
                targets = explicit[name].y if streamed is None else streamed.labels
                labels[index] = None if isinstance(targets, dict) else targets
                file_counts[index] = None if streamed is None else streamed.count
        splits.labels = tuple(labels)
        splits.file_counts = (file_counts[0], file_counts[1], file_counts[2])
    # Before any epoch is read: a worker that reads only its own files caches only those.
    if workers > 1 and splits.shard(workers, worker, replicas).policy == "file":
        return splits
    with _naming_unreadable(streams):
        splits.train = splits.epochs(0, 1)
    return splits


def _array_splits(
    parts: tuple[_Part, _Part, _Part],
    source: SourceData,
    fingerprint: str,
    batch_size: int,
    shuffle_seed: int | None,
    share: Share | None,
) -> Splits:
    """Splits of data in memory as batches of arrays (`feed="arrays"`), each batch split
    across devices and processes as `share` says."""
    from dlx.data.batches import ArrayBatches

    train, validation, test = parts
    batches = [
        None
        if part.count == 0 or part.arrays is None
        else ArrayBatches(part.arrays, batch_size, share=share)
        for part in (validation, test)
    ]
    assert train.arrays is not None
    return Splits(
        train=ArrayBatches(train.arrays, batch_size, seed=shuffle_seed, share=share),
        validation=batches[0],
        test=batches[1],
        train_arrays=train.arrays,
        validation_arrays=validation.arrays if validation.count else None,
        test_arrays=test.arrays if test.count else None,
        class_names=source.class_names,
        num_train=train.count,
        num_validation=validation.count,
        num_test=test.count,
        fingerprint=fingerprint,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        fed_as_arrays=True,
    )


@contextlib.contextmanager
def _naming_unreadable(streams: list[Any]) -> Iterator[None]:
    """Turn the error of a file found unreadable while the data is read (a cache filled before
    training) into a `SourceError` that names the file."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        message = describe_unreadable(error, streams)
        if message is None:
            raise
        raise SourceError(message).at("data") from None


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
    if source.dataset is not None or (source.stream is not None and source.stream.read is None):
        raise SourceError(
            "windowing needs a source that gives arrays (npz, csv, synthetic, or a python "
            "function returning (x, y)); this source gives a tf.data.Dataset or streams files "
            "of one example each"
        ).at("data", "window")
    if isinstance(source.y, dict):
        raise SourceError(
            "a window forecasts one target series; this source gives several "
            f"({', '.join(sorted(source.y))})"
        ).at("data", "window")
    if source.y is None and isinstance(source.x, dict):
        raise SourceError(
            "a window without targets forecasts the source's inputs, which must be one array; "
            f"this source gives several ({', '.join(sorted(source.x))}). Give the targets as y"
        ).at("data", "window")


def _load_rows(source: SourceData | None) -> None:
    """Read a streamed source of rows (CSV) whole into arrays: a series is windowed whole."""
    if source is None or source.stream is None:
        return
    stream = source.stream
    x, y = _stream_split(stream, "fail").batches(stream.num_examples).get_single_element()
    source.x, source.y, source.stream = x.numpy(), y.numpy(), None


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


def _relabel(validation: SourceData, class_names: list[str], keys: tuple[str, ...]) -> None:
    """Give an explicit validation or test source's labels the training source's class ids,
    by class name (`keys`: where the source is written in the spec).

    Two folders or files seldom hold exactly the same classes; a validation folder without one
    of the training classes would otherwise number its classes differently.
    """
    if validation.class_names == class_names or (validation.y is None and not validation.stream):
        return
    assert not isinstance(validation.y, dict)  # a source that names classes has one target
    assert validation.class_names is not None  # called for a source that names its classes
    unknown = sorted(set(validation.class_names) - set(class_names))
    if unknown:
        raise SourceError(
            f"the {keys[1]} data has classes the training data lacks: {', '.join(unknown)}. "
            f"Training classes: {', '.join(class_names)}"
        ).at(*keys)
    ids = np.array([class_names.index(name) for name in validation.class_names], dtype=np.int32)
    if validation.stream is not None:
        stream = validation.stream
        stream.labels = ids[stream.labels]
        if stream.read is not None:  # the file's labels are class ids of its own classes
            stream.read = _relabeled(stream.read, ids)
    else:
        validation.y = ids[validation.y]
    validation.class_names = class_names


def _relabeled(read: Any, ids: np.ndarray) -> Any:
    """A stream's `read`, its class ids mapped through `ids`."""

    def relabeled(path: tf.Tensor) -> tf.data.Dataset:
        import tensorflow as tf

        return read(path).map(lambda x, y: (x, tf.gather(tf.constant(ids), y)))

    return relabeled


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
    return _Part(None, arrays, count)


def _explicit_part(
    source: SourceData, data: Data, cache: str | None, name: str, count: int
) -> _Part | FileSplit:
    """An explicit validation or test source's split: the source's examples, whole; the files
    of a streamed source (read through `_streamed_part`)."""
    if source.stream is not None:
        return _stream_split(source.stream, data.on_error)
    if data.window is None:
        return _part(source, None, 0, count)
    return _windowed(source, data.window, 0, count, name)


def _stream_split(stream: FileStream, on_error: str) -> FileSplit:
    """All the files of a streamed source, in its order (an explicit validation source)."""
    return FileSplit(stream, np.arange(len(stream.files)), on_error=on_error)


def _streamed_part(files: FileSplit, cache: str, name: str, batch_size: int) -> _Part:
    """A validation or test split of streamed files: decoded in order and batched as read,
    cached as chosen (a disk cache holds examples, whatever the batch size).

    With `on_error: skip` the split may hold fewer examples than files: its length is left
    unknown rather than asserted.
    """
    if files.count == 0:
        return _Part(None, None, 0)
    with _naming_unreadable([files.stream]):
        if cache in ("none", "memory"):
            batches = cached(files.batches(batch_size), cache, name)
        else:
            batches = cached(files.examples(), cache, name).batch(batch_size)
    dataset = files.finished(batches)
    if files.on_error != "skip":
        dataset = _with_cardinality(dataset, -(-files.num_examples // batch_size))
    return _Part(dataset, None, files.num_examples, batched=True)


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
    assert x is not None  # a series is arrays (`_check_series`, `_load_rows`)

    def series(array: np.ndarray) -> np.ndarray:
        return array[:, np.newaxis] if array.ndim == 1 else array

    inputs = (
        {name: series(array)[steps] for name, array in x.items()}
        if isinstance(x, dict)
        else series(x)[steps]
    )
    target_series = x if y is None else y
    assert not isinstance(target_series, dict)  # without y, x is one array (`_check_series`)
    arrays = (inputs, target_series[targets])
    return _Part(None, arrays, count)


def _take(source: SourceData, indices: np.ndarray | slice) -> Arrays:
    x = source.x
    assert x is not None  # a source that gives no dataset gives arrays (`_check_examples`)
    return _rows(x, indices), None if source.y is None else _rows(source.y, indices)


def _rows(arrays: Features, indices: np.ndarray | slice) -> Features:
    """Some rows of an array, or of each array of a mapping."""
    if isinstance(arrays, dict):
        return {name: array[indices] for name, array in arrays.items()}
    return arrays[indices]


def _from_arrays(arrays: Arrays) -> tf.data.Dataset:
    import tensorflow as tf

    x, y = arrays
    return tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))


def _with_cardinality(dataset: tf.data.Dataset, count: int) -> tf.data.Dataset:
    """A split of a dataset source, telling `shuffle` and Keras how long it is."""
    import tensorflow as tf

    return dataset.apply(tf.data.experimental.assert_cardinality(count))


def _batched(part: _Part, batch_size: int) -> tf.data.Dataset:
    """A split batched (unless streamed: batched as its files are read) and prefetched, in
    order.

    Nothing is cached here: the examples of array sources are already in memory, a dataset
    source is cached whole when it is read, before it is split, and a streamed split as its
    cache says (`_streamed_part`).
    """
    import tensorflow as tf

    examples = part.examples
    assert examples is not None  # a split asked for has examples
    batches = examples if part.batched else examples.batch(batch_size)
    return distributable(batches).prefetch(tf.data.AUTOTUNE)
