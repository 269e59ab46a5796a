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
        description: what was read, for people.
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
    description: str


def make_splits(data: Data, *, context: SourceContext, batch_size: int) -> Splits:
    """Read a spec's data and split it into batched train, validation and test datasets.

    The test split is drawn first, then the validation split from the rest, from one
    permutation of the examples made by `numpy.random.default_rng(context.seed)`; each split
    keeps the source's order. Fractions are of all the examples, rounded up. With
    `data.validation`, the validation data is that source's, whole.

    A source that gives a `tf.data.Dataset` instead of arrays is split in its own order: the
    first examples are the test split, the next the validation split, the rest the training
    split (shuffle it in the source if its order matters). Its examples are read once to
    fingerprint and count them, and cached in memory on the first epoch.

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

    if source.dataset is None:
        order = np.random.default_rng(context.seed).permutation(count)
        test_arrays = _take(source, np.sort(order[:num_test]))
        validation_arrays = _take(source, np.sort(order[num_test : num_test + num_validation]))
        train_arrays = _take(source, np.sort(order[num_test + num_validation :]))
        train, split_validation, test = (
            _from_arrays(arrays) for arrays in (train_arrays, validation_arrays, test_arrays)
        )
    else:
        train_arrays = validation_arrays = test_arrays = None
        dataset = _with_cardinality(source.dataset, count)
        test = dataset.take(num_test).cache()
        split_validation = dataset.skip(num_test).take(num_validation).cache()
        train = dataset.skip(num_test + num_validation).cache()

    if validation is not None:
        num_validation = validation_count
        if validation.dataset is None:
            validation_arrays = (validation.x, validation.y)
            split_validation = _from_arrays(validation_arrays)
        else:
            split_validation = _with_cardinality(validation.dataset, validation_count).cache()

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
        description=source.description,
    )


def _read(component: Any, context: SourceContext, keys: tuple[str, ...]) -> SourceData:
    try:
        return call_source(component, context)
    except SourceError as error:
        raise error.at(*keys) from None


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


def _take(source: SourceData, indices: np.ndarray) -> Arrays:
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
    """The source's dataset, telling `take`, `skip`, `shuffle` and Keras how long it is."""
    import tensorflow as tf

    return dataset.apply(tf.data.experimental.assert_cardinality(count))


def _batched(
    dataset: tf.data.Dataset, batch_size: int, *, shuffle_seed: int | None = None
) -> tf.data.Dataset:
    """Shuffle (when seeded), batch and prefetch.

    Array sources are not cached: their examples are already in memory, and a cache would
    hold a second copy. The splits of dataset sources are cached before they get here, each
    whole (a cache that a `take` reads only in part would be thrown away).
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
    if source.dataset is None:
        x = source.x
        inputs = sorted(x.items()) if isinstance(x, dict) else [("x", x)]
        for name, array in [*inputs, ("y", source.y)]:
            _digest_text(digest, name)
            if array is not None:
                _digest_array(digest, array)
        return len(inputs[0][1])
    return _digest_dataset(digest, source.dataset)


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
