"""From a spec's `data` section to batched `tf.data` pipelines: train, validation and test.

The splits are drawn with the spec's seed, so every run of a spec trains and evaluates on the
same examples; the data's fingerprint says whether two runs read the same data at all.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dlx.data.sources import Features, SourceContext, SourceData, SourceError, call_source

if TYPE_CHECKING:
    import tensorflow as tf

    from dlx.spec.schema import Data

Arrays = tuple[Features, np.ndarray | None]
"""The examples of one split as arrays: `(x, y)`; `y` is `None` for data without targets."""

# Fractions are rounded up, so that a split asked for is never empty; the tolerance keeps
# float error (0.07 * 100 == 7.000000000000001) from adding an example.
_ROUNDING_TOLERANCE = 1e-9


@dataclass
class Splits:
    """The data of a run, split and batched.

    Attributes:
        train: batched `(x, y)` training examples, reshuffled each epoch when the spec asks.
        validation: batched validation examples, in a fixed order; `None` without validation.
        test: batched test examples, in a fixed order; `None` without a test split.
        train_arrays: the training examples as arrays, for adapting preprocessing layers;
            `None` when the source gave a dataset instead of arrays.
        validation_arrays: the validation examples as arrays, or `None`.
        test_arrays: the test examples as arrays (for a confusion matrix), or `None`.
        class_names: the name of each class id, when the source knows them.
        num_train: the number of training examples.
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

    Each split is then batched with `batch_size` and prefetched; the training split is
    shuffled each epoch when `data.shuffle` is true, with a full buffer and the seed.

    Args:
        data: the spec's `data` section.
        context: the spec's directory (for relative paths) and seed.
        batch_size: the global batch size.

    Returns:
        The splits, their arrays, their sizes and the data's fingerprint.

    Raises:
        SourceError: a source cannot be read, or the splits leave no training data; `path`
            holds the spec keys of the fault (`("data", "source", "csv", "label")`).
    """
    source = _read(data.source, context, ("data", "source"))
    validation = None
    if data.validation is not None:
        validation = _read(data.validation.source, context, ("data", "validation", "source"))
        if source.class_names and validation.class_names:
            _relabel(validation, source.class_names)
    digest = hashlib.sha256()
    count = _digest_source(digest, source)
    validation_count = 0 if validation is None else _digest_source(digest, validation)

    num_test = _fraction_of(count, data.test_split)
    num_validation = _fraction_of(count, data.validation_split)
    num_train = count - num_test - num_validation
    if num_train <= 0:
        raise SourceError(
            f"the splits leave no training data: {count} examples, of which "
            f"{num_test} for test (test_split={data.test_split}) and {num_validation} for "
            f"validation (validation_split={data.validation_split})"
        ).at("data")

    order = None
    if source.dataset is None:
        order = np.random.default_rng(context.seed).permutation(count)
    test, test_arrays = _part(source, order, 0, num_test)
    train, train_arrays = _part(source, order, num_test + num_validation, count)
    if validation is None:
        split_validation, validation_arrays = _part(
            source, order, num_test, num_test + num_validation
        )
    else:
        num_validation = validation_count
        split_validation, validation_arrays = _part(validation, None, 0, validation_count)

    return Splits(
        train=_batched(train, batch_size, shuffle_seed=context.seed if data.shuffle else None),
        validation=_batched(split_validation, batch_size) if num_validation else None,
        test=_batched(test, batch_size) if num_test else None,
        train_arrays=train_arrays,
        validation_arrays=validation_arrays if num_validation else None,
        test_arrays=test_arrays if num_test else None,
        class_names=source.class_names,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        fingerprint=digest.hexdigest(),
    )


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
    if validation.class_names == class_names or validation.y is None:
        return
    unknown = sorted(set(validation.class_names) - set(class_names))
    if unknown:
        raise SourceError(
            f"the validation data has classes the training data lacks: {', '.join(unknown)}. "
            f"Training classes: {', '.join(class_names)}"
        ).at("data", "validation", "source")
    ids = np.array([class_names.index(name) for name in validation.class_names], dtype=np.int32)
    validation.y = ids[validation.y]
    validation.class_names = class_names


def _fraction_of(count: int, fraction: float) -> int:
    return math.ceil(count * fraction - _ROUNDING_TOLERANCE) if fraction else 0


def _part(
    source: SourceData, order: np.ndarray | None, start: int, stop: int
) -> tuple[tf.data.Dataset, Arrays | None]:
    """The examples `start` to `stop` of a source: a dataset, and arrays for an array source.

    The examples are counted along `order`, a permutation of them, when it is given, else in
    the source's own order (always, for a dataset source); the part keeps the source's order.
    """
    if source.dataset is not None:
        return _with_cardinality(source.dataset.skip(start).take(stop - start), stop - start), None
    arrays = _take(source, slice(start, stop) if order is None else np.sort(order[start:stop]))
    return _from_arrays(arrays), arrays


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


def _batched(
    dataset: tf.data.Dataset, batch_size: int, *, shuffle_seed: int | None = None
) -> tf.data.Dataset:
    """Shuffle (when seeded), batch and prefetch.

    Nothing is cached here: the examples of array sources are already in memory, and a
    dataset source is cached whole when it is read, before it is split.
    """
    import tensorflow as tf

    if shuffle_seed is not None:
        size = int(dataset.cardinality())
        dataset = dataset.shuffle(size, seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _digest_source(digest: Any, source: SourceData) -> int:
    """Add a source's data to a sha256 digest, and count its examples."""
    for name in source.class_names or []:
        _digest_text(digest, name)
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
