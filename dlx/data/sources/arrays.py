"""The sources of named datasets and of arrays saved in a file: scikit-learn's and Keras's
datasets, TensorFlow Datasets, and `.npz` archives (docs/spec.md section 3)."""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dlx.data.sources import (
    SourceContext,
    SourceData,
    SourceError,
    _check_finite,
    _find_by_name,
    _resolve,
    check_arguments,
    register_source,
)
from dlx.errors import did_you_mean

# Pixels of scikit-learn's digits are integers from 0 to 16.
_DIGITS_PIXEL_MAX = 16.0


def _as_labels(labels: np.ndarray) -> np.ndarray:
    """Labels as dlx gives them: integers as int32 class ids, anything else as float32."""
    if np.issubdtype(labels.dtype, np.integer):
        return labels.astype(np.int32)
    return labels.astype(np.float32)


def _check_sklearn(context: SourceContext, name: str, **options: Any) -> Callable[..., Any]:
    """The `load_*` or `fetch_*` function of `sklearn.datasets` that `name` names, its
    `options` checked against its signature."""
    import sklearn.datasets

    loaders = {}
    for attribute in sorted(dir(sklearn.datasets)):
        prefix, _, dataset = attribute.partition("_")
        if prefix not in ("load", "fetch"):
            continue
        function = getattr(sklearn.datasets, attribute)
        parameters = inspect.signature(function).parameters
        # A loader's own `name` (fetch_openml's) would clash with the source's.
        if "return_X_y" in parameters and "name" not in parameters:
            loaders[dataset] = function
    prefix, _, dataset = name.partition("_") if isinstance(name, str) else ("", "", name)
    unprefixed = dataset if prefix.lower() in ("load", "fetch") else name
    loader = _find_by_name(unprefixed, loaders, "scikit-learn dataset", "name")
    label = f"scikit-learn dataset '{name}'"
    check_arguments(label, loader, [], options, reserved=("return_X_y", "as_frame"))
    return loader


@register_source("sklearn", check=_check_sklearn)
def from_sklearn(context: SourceContext, name: str, **options: Any) -> SourceData:
    """A dataset of scikit-learn's: `digits`, `iris`, `wine`, `breast_cancer`, `diabetes`...

    Any `load_*` or `fetch_*` function of `sklearn.datasets` that can return `(X, y)` works,
    named with or without its prefix. The `load_*` ones are bundled with scikit-learn; the
    `fetch_*` ones are downloaded once into scikit-learn's data folder. `digits` are images
    shaped `(8, 8, 1)`, scaled to [0, 1]; other features are float32 rows. Class ids are
    int32, regression targets float32.

    Args:
        context: unused; every source takes it.
        name: the dataset: `digits`, `load_digits`, `california_housing`...
        **options: the loader's own arguments, e.g. `n_class` for `digits`.

    Example: `{sklearn: digits}`, `{sklearn: {name: digits, n_class: 5}}`.
    """
    import sklearn.datasets

    loader = _check_sklearn(context, name, **options)
    label = f"scikit-learn dataset '{name}'"
    try:
        bunch = loader(**options)
    except OSError as error:
        raise SourceError(
            f"could not load {label}: {error}. scikit-learn downloads it once into its data "
            "folder ($SCIKIT_LEARN_DATA); is there a network?",
            "name",
        ) from None
    if loader is sklearn.datasets.load_digits:
        x = (bunch.images[..., np.newaxis] / _DIGITS_PIXEL_MAX).astype(np.float32)
    elif hasattr(bunch.data, "toarray"):
        raise SourceError(f"{label} is a sparse matrix; dlx reads dense arrays only", "name")
    elif isinstance(bunch.data, list):
        x = np.array(bunch.data, dtype=object)
    else:
        x = np.asarray(bunch.data, dtype=np.float32)
    y = _as_labels(np.asarray(bunch.target))
    names = bunch.get("target_names")
    classify = np.issubdtype(y.dtype, np.integer) and names is not None
    return SourceData(
        x=x,
        y=y,
        class_names=[str(n) for n in names] if classify else None,
        description=f"scikit-learn {loader.__name__}: {len(y)} examples",
    )


def _check_keras(context: SourceContext, name: str, **options: Any) -> Callable[..., Any]:
    """The `load_data` function of the `keras.datasets` module that `name` names, its
    `options` checked against its signature."""
    import keras

    loaders = {
        attribute: module.load_data
        for attribute, module in sorted(vars(keras.datasets).items())
        if hasattr(module, "load_data")
    }
    loader = _find_by_name(name, loaders, "keras dataset", "name")
    check_arguments(f"keras dataset '{name}'", loader, [], options)
    return loader


@register_source("keras", check=_check_keras)
def from_keras(context: SourceContext, name: str, **options: Any) -> SourceData:
    """A dataset of `keras.datasets`: `mnist`, `fashion_mnist`, `cifar10`, `imdb`...

    The training and test parts are concatenated (dlx makes its own splits). Images get a
    channel axis and are scaled to [0, 1] as float32. Word-index sequences (`imdb`, `reuters`)
    are padded at the front with zeros to the longest one, as `keras.utils.pad_sequences` does.
    The files are downloaded once into Keras's cache (`$KERAS_HOME/datasets`).

    Args:
        context: unused; every source takes it.
        name: the dataset, a module of `keras.datasets`.
        **options: the dataset's `load_data` arguments, e.g. `num_words` for `imdb`.

    Example: `{keras: mnist}`, `{keras: {name: imdb, num_words: 10000, maxlen: 200}}`.
    """
    import keras

    loader = _check_keras(context, name, **options)
    label = f"keras dataset '{name}'"
    try:
        (x_train, y_train), (x_test, y_test) = loader(**options)
    except Exception as error:
        if type(error) is not Exception:  # Keras reports a failed download with a bare one.
            raise SourceError(f"could not load {label}: {error}", "name") from None
        raise SourceError(
            f"could not download {label} (no network?): {error}. Once downloaded, Keras "
            "keeps it in $KERAS_HOME/datasets (default: ~/.keras/datasets)",
            "name",
        ) from None
    x = np.concatenate([x_train, x_test])
    y = np.concatenate([y_train, y_test])
    if x.dtype == np.uint8:
        x = (x if x.ndim == 4 else x[..., np.newaxis]).astype(np.float32) / 255.0
    elif x.dtype == object:
        x = keras.utils.pad_sequences(x)
    else:
        x = x.astype(np.float32)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    return SourceData(x=x, y=_as_labels(y), description=f"keras.datasets.{name}: {len(y)} examples")


def _check_tfds(
    context: SourceContext, name: str, split: str = "train", data_dir: str | None = None
) -> Path | None:
    """Check that TensorFlow Datasets is installed; the `data_dir` resolved, when given."""
    for argument, value in (("name", name), ("split", split)):
        if not isinstance(value, str):
            raise SourceError(
                f"expected {argument} to be a string. Received: {argument}={value!r}", argument
            )
    if importlib.util.find_spec("tensorflow_datasets") is None:
        raise SourceError(
            "the tfds source needs tensorflow-datasets: install dlx[tfds] (pip install 'dlx[tfds]')"
        )
    return None if data_dir is None else _resolve(context, data_dir, "data_dir", directory=True)


@register_source("tfds", check=_check_tfds)
def from_tfds(
    context: SourceContext, name: str, split: str = "train", data_dir: str | None = None
) -> SourceData:
    """A split of a TensorFlow Datasets dataset, as `(input, label)` examples.

    Needs the `tfds` extra (`pip install 'dlx[tfds]'`). Values are as the dataset stores them
    (images stay uint8 in 0..255; add a `rescaling` layer to the model).

    Args:
        context: the spec's directory, for a relative `data_dir`.
        name: the dataset's name in the TFDS catalog, e.g. `mnist`.
        split: the split to read, in TFDS's notation: `train`, `test`, `train[:80%]`.
        data_dir: where TFDS keeps its data; default: TFDS's own default.

    Example: `{tfds: {name: mnist, split: train}}`.
    """
    directory = _check_tfds(context, name, split, data_dir)
    import tensorflow_datasets

    try:
        dataset, info = tensorflow_datasets.load(
            name, split=split, data_dir=directory, as_supervised=True, with_info=True
        )
    except Exception as error:  # TFDS raises many kinds: unknown name, bad split, no network.
        raise SourceError(
            f"could not load tfds dataset '{name}' split '{split}': {error}", "name"
        ) from None
    label_key = info.supervised_keys[1]
    label_feature = info.features[label_key] if isinstance(label_key, str) else None
    return SourceData(
        dataset=dataset,
        class_names=getattr(label_feature, "names", None),
        description=f"tfds {name}, split {split}",
    )


def _check_npz(
    context: SourceContext,
    path: str,
    x: str | list[str] = "x",
    y: str | dict[str, str] | None = "y",
) -> Path:
    """Check that the file is an `.npz` archive that holds the arrays named; the file.

    Only the archive's directory is read, not its arrays.
    """
    file = _resolve(context, path, "path")
    try:
        archive = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise SourceError(f"could not read {path} as .npz: {error}", "path") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a `.npy` file: one array
        raise SourceError(
            f"could not read {path} as .npz: it holds one array, not arrays saved with numpy.savez",
            "path",
        )
    with archive:
        names = list(archive.files)
    for key, argument in _npz_arrays(x, y):
        if key not in names:
            raise SourceError(
                f"array '{key}' not in {path}{did_you_mean(str(key), names)}. "
                f"Arrays: {', '.join(names)}",
                argument,
            )
    return file


def _npz_arrays(x: str | list[str], y: str | dict[str, str] | None) -> list[tuple[Any, str]]:
    """The arrays an `npz` source names, each with the argument that names it."""
    inputs = [(key, "x") for key in (x if isinstance(x, list) else [x])]
    targets = [] if y is None else list(y.values()) if isinstance(y, dict) else [y]
    return inputs + [(key, "y") for key in targets]


@register_source("npz", check=_check_npz)
def from_npz(
    context: SourceContext,
    path: str,
    x: str | list[str] = "x",
    y: str | dict[str, str] | None = "y",
) -> SourceData:
    """Arrays saved with `numpy.savez`.

    Arrays of numbers must hold finite numbers: a NaN or an infinity is an error that names
    the array and the index of the first one.

    Args:
        context: the spec's directory, for a relative `path`.
        path: the `.npz` file.
        x: the name of the inputs array, or a list of names for a model with several inputs
            (the model's input names must match them).
        y: the name of the targets array; a mapping of output name to array name for a model
            with several outputs; `null` for data without targets.

    Example: `{npz: {path: data/train.npz, x: images, y: labels}}`,
    `{npz: {path: data/two.npz, x: images, y: {digit: labels, ink: ink}}}`.
    """
    file = _check_npz(context, path, x, y)
    try:
        with np.load(file, allow_pickle=False) as arrays:
            stored = dict(arrays)
    except (OSError, ValueError) as error:
        raise SourceError(f"could not read {path} as .npz: {error}", "path") from None
    inputs = {key: stored[key] for key in x} if isinstance(x, list) else stored[x]
    targets = (
        None
        if y is None
        else {name: stored[key] for name, key in y.items()}
        if isinstance(y, dict)
        else stored[y]
    )
    data = SourceData(x=inputs, y=targets)
    for key, argument in _npz_arrays(x, y):
        _check_finite(stored[key], f"array '{key}' of {path}", argument)
    _, first = data.named_arrays()[0]
    data.description = f"{path}: {len(first)} examples"
    return data
