"""Data sources: where a spec's `data.source` comes from (docs/spec.md section 3).

Each source is a plain function registered under its spec name. Its first parameter is a
`SourceContext`; the rest are the source's arguments exactly as a user writes them in YAML, so
`{sklearn: digits}` calls `from_sklearn(context, "digits")` and
`{csv: {path: a.csv, label: y}}` calls `from_csv(context, path="a.csv", label="y")`.
`call_source` does that call for a component, checking its name and arguments first.

TensorFlow and Keras are imported inside the sources that need them: importing this module
must stay cheap, because `dlx --help` imports it.
"""

from __future__ import annotations

import array
import csv
import glob
import importlib
import importlib.util
import inspect
import itertools
import os
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlx.errors import DlxError, ExitStatus, did_you_mean, relative_path
from dlx.spec.component import normalize_name, split_component
from dlx.spec.document import format_path

if TYPE_CHECKING:
    import tensorflow as tf

Features = np.ndarray | dict[str, np.ndarray]
"""The inputs of a model: one array, or a mapping of input name to array for several inputs."""

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
"""The files the `images` source reads: those `keras.utils.image_dataset_from_directory` reads."""

PROBED_FILES = 32
"""How many of a streamed folder's images are read whole when the source is read."""

# CSV rows are parsed this many at a time.
_CSV_PARSE_BATCH = 256
# Pixels of scikit-learn's digits are integers from 0 to 16.
_DIGITS_PIXEL_MAX = 16.0
# The `synthetic` source projects its inputs this many features at a time, so that the random
# projection matrix of a large input (224x224x3 features, 1000 classes) never sits in memory whole.
_PROJECTION_CHUNK = 16384


class SourceError(DlxError):
    """A data source that cannot be read as the spec asks (exit status 2).

    Args:
        message: what is wrong, what was expected and what was received.
        argument: the source argument at fault (`"path"`, `"label"`), or `None` when the fault
            is not in one argument.

    Attributes:
        path: the keys that lead to the fault in the spec, as far as they are known:
            `call_source` adds the component's keys (`("csv", "label")`) and `make_splits` the
            keys above it (`("data", "source", "csv", "label")`), so that the caller can point at
            the line of the spec.
    """

    exit_status = ExitStatus.INVALID

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.argument = argument
        self.path: tuple[str, ...] = ()

    def at(self, *keys: str) -> SourceError:
        """Put `keys` in front of the error's path, and return the error."""
        self.path = (*keys, *self.path)
        return self

    def render(self) -> str:
        where = f"{format_path(self.path)}: " if self.path else ""
        return f"error: {where}{self.message}"


@dataclass(frozen=True)
class SourceContext:
    """What every source may need besides its own arguments.

    Attributes:
        base_dir: the directory of the spec file; relative paths in a spec are relative to it.
        seed: the spec's seed, for sources that make random data.
        on_error: `data.on_error`: what a source that streams does with a file it finds it
            cannot decode when it reads a few first (`fail`: raise; `skip`: leave it out).
    """

    base_dir: Path
    seed: int = 0
    on_error: str = "fail"


@dataclass
class FileStream:
    """Examples that stay in their files until training reads them.

    A file holds one example (`decode`: images, texts) or many (`read`: TFRecord, CSV).

    Attributes:
        root: the folder the files' relative paths (which split them) are taken from.
        files: the files, in the source's order.
        labels: the int32 class id of each file's example (one example per file); for many
            examples per file, each example's target, counted file after file, when the source
            knows them without decoding (CSV), else `None` (TFRecord).
        decode: a TensorFlow function from a file's path and label (string and int32 tensors)
            to its `(x, y)` example; `tf.data` calls it in parallel. For one example per file.
        read: a TensorFlow function from a file's path (a string tensor) to a `tf.data.Dataset`
            of its `(x, y)` examples, in the file's order. For many examples per file.
        counts: the number of examples of each file, for many examples per file; `None` for
            one example per file.
        example_bytes: the size of one decoded example in memory, when it is known; `cache:
            auto` judges by it (else by the files' size on disk).
        finish: a TensorFlow function from a decoded `(x, y)` example to the one the model
            takes, applied after the cache and the shuffle buffer, so that they hold the
            compact form `decode` gives (an image's uint8 pixels, widened here to float32);
            `None`: the decoded example as it is.
    """

    root: Path
    files: list[Path]
    labels: np.ndarray | None
    decode: Callable[[Any, Any], Any] | None = None
    read: Callable[[Any], Any] | None = None
    counts: np.ndarray | None = None
    example_bytes: int | None = None
    finish: Callable[[Any, Any], Any] | None = None

    @property
    def num_examples(self) -> int:
        return len(self.files) if self.counts is None else int(self.counts.sum())

    @property
    def offsets(self) -> np.ndarray:
        """Where each file's examples start among the stream's, and the count at the end."""
        counts = np.ones(len(self.files), np.int64) if self.counts is None else self.counts
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


@dataclass
class SourceData:
    """What a source returns: arrays, a stream of files, or a `tf.data.Dataset`.

    Attributes:
        x: the inputs, one example per row: an array, or a mapping of input name to array.
            `None` when the source gives `dataset` instead.
        y: the targets, one per example; `None` when the data has none (an autoencoder's), or
            when the source gives `dataset`.
        dataset: a dataset of unbatched `(x, y)` examples, for sources that give no arrays.
        stream: the files of a source that streams them, instead of arrays (docs/spec.md
            section 3, "Streamed sources").
        class_names: the name of each class id in `y`, when the source knows them.
        description: one line for people: what was read and how much of it.
    """

    x: Features | None = None
    y: np.ndarray | None = None
    dataset: tf.data.Dataset | None = None
    stream: FileStream | None = None
    class_names: list[str] | None = None
    description: str = ""

    def named_arrays(self) -> list[tuple[str, np.ndarray]]:
        """The arrays with their names: the inputs, then the targets.

        The inputs come in the sorted order of their names, or as `x` when they are one
        array; the targets come last as `y`, when there are any. A source that gives a
        dataset has no arrays.

        Example:

        >>> SourceData(x={"b": np.zeros(2), "a": np.ones(2)}).named_arrays()
        [('a', array([1., 1.])), ('b', array([0., 0.]))]
        """
        if self.x is None:
            return []
        inputs = sorted(self.x.items()) if isinstance(self.x, dict) else [("x", self.x)]
        return inputs if self.y is None else [*inputs, ("y", self.y)]


Source = Callable[..., SourceData]
Check = Callable[..., Any]

SOURCES: dict[str, Source] = {}
"""Every data source, by the name a spec gives it."""

SOURCE_CHECKS: dict[str, Check] = {}
"""The cheap check of every source that has one, by the source's name (see `register_source`)."""


def register_source(name: str, check: Check | None = None) -> Callable[[Source], Source]:
    """Register a function as the data source called `name` in specs.

    Args:
        name: the source's name in specs: `{name: arguments}`.
        check: what can be found wrong without reading the data, for `dlx validate`: a
            function called like the source (a `SourceContext`, then the source's arguments)
            that raises `SourceError` for an unknown dataset name, a missing file, a CSV
            column the header lacks... It must stay cheap: it may list a folder or read a
            header, never the data. It may return what it resolved (a file, a loader), for
            the source to reuse; `check_source` ignores that.
    """

    def register(function: Source) -> Source:
        SOURCES[name] = function
        if check is not None:
            SOURCE_CHECKS[name] = check
        return function

    return register


def call_source(component: Any, context: SourceContext) -> SourceData:
    """Read the data a source component names, checking its name and arguments first.

    Args:
        component: a data source in dlx's one notation: `"name"` or `{name: arguments}`.
        context: the spec's directory and seed.

    Returns:
        The source's data.

    Raises:
        SourceError: the name is not a source, an argument is unknown or missing, or the data
            cannot be read; `path` holds the component's keys down to the argument at fault.

    Example:

    >>> data = call_source({"sklearn": "iris"}, SourceContext(base_dir=Path(".")))
    >>> data.x.shape, data.class_names
    ((150, 4), ['setosa', 'versicolor', 'virginica'])
    """

    def read(name: str, args: list[Any], kwargs: dict[str, Any]) -> SourceData:
        data = SOURCES[name](context, *args, **kwargs)
        _check_examples(data)
        return data

    return _with_source(component, read)


def check_source(component: Any, context: SourceContext) -> None:
    """Check a source component without reading its data: its name, its arguments, and what
    its source's check finds (a missing file, an unknown dataset, a column the header lacks).

    Raises:
        SourceError: as `call_source` would for the same fault, with the same `path`.

    Example: `check_source({"sklearn": "digts"}, context)` raises "unknown scikit-learn
    dataset 'digts' (did you mean 'digits'?)..." at `path == ("sklearn",)`.
    """

    def check(name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        if name in SOURCE_CHECKS:
            SOURCE_CHECKS[name](context, *args, **kwargs)

    _with_source(component, check)


def _with_source(component: Any, step: Callable[[str, list[Any], dict[str, Any]], Any]) -> Any:
    """Find a component's source and check its arguments, then `step(name, args, kwargs)`;
    a `SourceError` gets the component's keys down to the argument at fault."""
    try:
        name, args, kwargs = split_component(component)
    except ValueError as error:
        raise SourceError(str(error)) from None
    known = _find_by_name(name, {known: known for known in SOURCES}, "data source")
    try:
        check_arguments(known, SOURCES[known], args, kwargs, skip=1)
        return step(known, args, kwargs)
    except SourceError as error:
        component_keys = (name,) if isinstance(component, dict) else ()
        argument_keys = (error.argument,) if error.argument in kwargs else ()
        raise error.at(*component_keys, *argument_keys) from None


def check_arguments(
    label: str,
    function: Callable[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    skip: int = 0,
    reserved: Collection[str] = (),
) -> None:
    """Check that `function(*args, **kwargs)` fits its signature, with messages for people.

    Args:
        label: how messages name the function: `csv`, `keras dataset 'imdb'`.
        function: the function about to be called.
        args: the positional arguments.
        kwargs: the keyword arguments, as written in the spec.
        skip: how many leading parameters the caller fills itself (the `SourceContext`).
        reserved: parameters the caller sets itself, which the spec may not give.

    Raises:
        SourceError: an unknown argument (with the closest known ones), or a missing one.
    """
    parameters = list(inspect.signature(function).parameters.values())[skip:]
    named = [
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in reserved
    ]
    takes_any_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters)
    for key in kwargs:
        if key not in named and (key in reserved or not takes_any_keyword):
            raise SourceError(
                f"unknown argument '{key}' for {label}{did_you_mean(key, named)}. "
                f"Expected: {', '.join(named) or 'no arguments'}",
                argument=key,
            )
    positional = [
        p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(args) > len(positional):
        raise SourceError(f"{label} takes its arguments as a mapping: {{{', '.join(named)}}}")
    given = {*positional[: len(args)], *kwargs}
    missing = [
        p.name
        for p in parameters
        if p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name not in given
    ]
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        plural = "s" if len(missing) > 1 else ""
        raise SourceError(f"missing argument{plural} {names} for {label}")


def _check_examples(data: SourceData) -> None:
    if data.dataset is not None or data.stream is not None:
        return
    lengths = [(name, len(array)) for name, array in data.named_arrays()]
    if len({length for _, length in lengths}) > 1:
        counts = ", ".join(f"{name}: {length}" for name, length in lengths)
        raise SourceError(f"the arrays hold different numbers of examples ({counts})")
    if not any(length for _, length in lengths):
        raise SourceError("the source holds no examples")


def _resolve(context: SourceContext, path: Any, argument: str, *, directory: bool = False) -> Path:
    """The file (or directory) a spec names, relative to the spec's directory."""
    if not isinstance(path, str):
        raise SourceError(
            f"expected {argument} to be a path (a string). Received: {argument}={path!r}",
            argument,
        )
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = context.base_dir / resolved
    if not (resolved.is_dir() if directory else resolved.is_file()):
        relative_to = (
            "" if Path(path).expanduser().is_absolute() else f" (relative to {context.base_dir})"
        )
        kind = "directory" if directory else "file"
        raise SourceError(f"no such {kind}: {path}{relative_to}", argument)
    return resolved


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_int(value: Any, argument: str) -> int:
    if not _is_positive_int(value):
        raise SourceError(
            f"expected {argument} to be a positive integer. Received: {argument}={value!r}",
            argument,
        )
    return value


def _shape(value: Any, argument: str) -> tuple[int, ...]:
    """A shape written as a positive integer or a list of them, as a tuple."""
    values = value if isinstance(value, list | tuple) else [value]
    if not values or not all(_is_positive_int(v) for v in values):
        raise SourceError(
            f"expected {argument} to be a positive integer or a list of them. "
            f"Received: {argument}={value!r}",
            argument,
        )
    return tuple(values)


def _find_by_name(
    name: Any, choices: dict[str, Any], what: str, argument: str | None = None
) -> Any:
    """Look `name` up among `choices` (in the order messages list them), ignoring case and `_`."""
    by_normal_name = {normalize_name(choice): value for choice, value in choices.items()}
    if isinstance(name, str) and normalize_name(name) in by_normal_name:
        return by_normal_name[normalize_name(name)]
    suggestion = did_you_mean(str(name), choices, normalize_name)
    raise SourceError(
        f"unknown {what} '{name}'{suggestion}. Expected one of: {', '.join(choices)}",
        argument,
    )


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
    context: SourceContext, path: str, x: str | list[str] = "x", y: str | None = "y"
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


def _npz_arrays(x: str | list[str], y: str | None) -> list[tuple[Any, str]]:
    """The arrays an `npz` source names, each with the argument that names it."""
    inputs = [(key, "x") for key in (x if isinstance(x, list) else [x])]
    return inputs + ([] if y is None else [(y, "y")])


@register_source("npz", check=_check_npz)
def from_npz(
    context: SourceContext, path: str, x: str | list[str] = "x", y: str | None = "y"
) -> SourceData:
    """Arrays saved with `numpy.savez`.

    Arrays of numbers must hold finite numbers: a NaN or an infinity is an error that names
    the array and the index of the first one.

    Args:
        context: the spec's directory, for a relative `path`.
        path: the `.npz` file.
        x: the name of the inputs array, or a list of names for a model with several inputs
            (the model's input names must match them).
        y: the name of the targets array; `null` for data without targets.

    Example: `{npz: {path: data/train.npz, x: images, y: labels}}`.
    """
    file = _check_npz(context, path, x, y)
    try:
        with np.load(file, allow_pickle=False) as arrays:
            stored = dict(arrays)
    except (OSError, ValueError) as error:
        raise SourceError(f"could not read {path} as .npz: {error}", "path") from None
    inputs = {key: stored[key] for key in x} if isinstance(x, list) else stored[x]
    data = SourceData(x=inputs, y=None if y is None else stored[y])
    for key, argument in _npz_arrays(x, y):
        _check_finite(stored[key], f"array '{key}' of {path}", argument)
    _, first = data.named_arrays()[0]
    data.description = f"{path}: {len(first)} examples"
    return data


def _check_finite(array: np.ndarray, what: str, argument: str) -> None:
    """Raise `SourceError` at the first NaN or infinity of an array of numbers."""
    if not np.issubdtype(array.dtype, np.inexact) or np.isfinite(array).all():
        return
    index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
    raise SourceError(
        f"{what} holds {array[index]} at index {list(index)}: expected finite numbers "
        "(no NaN or infinity)",
        argument,
    )


def _glob(context: SourceContext, patterns: Any, argument: str) -> list[Path]:
    """The files that a path, a glob or a list of them name, relative to the spec's directory:
    each glob's matches in sorted order, the first of duplicates kept."""
    listed = patterns if isinstance(patterns, list) and patterns else [patterns]
    files: dict[Path, None] = {}
    for pattern in listed:
        if not isinstance(pattern, str):
            raise SourceError(
                f"expected {argument} to be a path or glob, or a list of them. "
                f"Received: {argument}={patterns!r}",
                argument,
            )
        if not glob.has_magic(pattern):
            files[_resolve(context, pattern, argument)] = None
            continue
        resolved = Path(pattern).expanduser()
        absolute = resolved.is_absolute()
        matches = sorted(
            Path(match)
            for match in glob.glob(str(resolved if absolute else context.base_dir / resolved))
            if Path(match).is_file()
        )
        if not matches:
            relative_to = "" if absolute else f" (relative to {context.base_dir})"
            raise SourceError(f"no file matches {pattern}{relative_to}", argument)
        files.update(dict.fromkeys(matches))
    return list(files)


def _shown(context: SourceContext, file: Path) -> str:
    """A file as errors name it: relative to the spec's directory when it lies inside it."""
    try:
        return file.relative_to(context.base_dir).as_posix()
    except ValueError:
        return str(file)


def _common_root(files: list[Path]) -> Path:
    return Path(os.path.commonpath([file.parent for file in files]))


def _check_csv(
    context: SourceContext, path: str | list[str], label: str, features: list[str] | None = None
) -> tuple[list[Path], list[str], tuple[int, list[str], list[int]]]:
    """Check that the files exist and that their header rows (the same in every file) name
    the label and feature columns; the files, the header, and the columns (`_csv_columns`)."""
    files = _glob(context, path, "path")
    header = None
    for file in files:
        ((_, found),) = _csv_rows(file, _shown(context, file), header_only=True)
        if header is None:
            header = found
        elif found != header:
            raise SourceError(
                f"the header of {_shown(context, file)} ({', '.join(found)}) differs from the "
                f"header of {_shown(context, files[0])} ({', '.join(header)})",
                "path",
            )
    return files, header, _csv_columns(_shown(context, files[0]), header, label, features)


def _csv_rows(file: Path, path: str, *, header_only: bool = False) -> list[tuple[int, list[str]]]:
    """The rows of a CSV file that are not blank, each with its number (the header's is 1);
    only the header row with `header_only`."""
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = ((n, row) for n, row in enumerate(csv.reader(handle), start=1) if row)
            found = list(itertools.islice(rows, 1) if header_only else rows)
    except UnicodeDecodeError as error:
        raise SourceError(f"{path} is not UTF-8 text: {error}", "path") from None
    if not found:
        raise SourceError(f"{path} is empty: expected a header row naming the columns", "path")
    return found


def _csv_columns(
    path: str, header: list[str], label: Any, features: Any
) -> tuple[int, list[str], list[int]]:
    """The label's column index, and the feature columns' names and indices."""

    def column_index(name: Any, argument: str) -> int:
        if name not in header:
            raise SourceError(
                f"column '{name}' not in {path}{did_you_mean(str(name), header)}. "
                f"Columns: {', '.join(header)}",
                argument,
            )
        return header.index(name)

    label_index = column_index(label, "label")
    if features is None:
        features = [name for name in header if name != label]
    elif not isinstance(features, list) or label in features:
        raise SourceError(
            f"expected features to be a list of columns other than the label '{label}'. "
            f"Received: features={features!r}",
            "features",
        )
    if not features:
        raise SourceError(f"{path} has no column besides the label '{label}'", "features")
    return label_index, features, [column_index(name, "features") for name in features]


@register_source("csv", check=_check_csv)
def from_csv(
    context: SourceContext, path: str | list[str], label: str, features: list[str] | None = None
) -> SourceData:
    """Tables in CSV files with a header row: numeric features and one label column, streamed.

    Features become float32 rows, in the order `features` gives. Labels made of integers stay
    integers (int64: class ids, or integer targets); other numbers become float32 targets; text
    labels become int32 class ids in the sorted order of their names, recorded as
    `class_names`. Numbers must be finite: a `nan` or `inf` cell is an error naming its file,
    line and column.

    The files are scanned once when the source is read, row by row in constant memory: every
    row is checked, the rows of each file counted and the labels kept (one number per row, for
    label checks and class weights); a second pass reads the label column of text labels.
    Training then reads the rows with `tf.data`, parsed in parallel, never all at once.

    Args:
        context: the spec's directory, for relative paths.
        path: a CSV file (UTF-8, comma-separated, the first row naming the columns), a glob
            (`data/part-*.csv`) or a list of them; every file has the same header row.
        label: the column that holds the targets.
        features: the columns that hold the inputs; default: every other column.

    Example: `{csv: {path: data/iris.csv, label: species}}`.
    """
    files, header, (label_index, features, feature_indices) = _check_csv(
        context, path, label, features
    )
    names = [_shown(context, file) for file in files]
    scan = _CsvScan(header, label_index, feature_indices)
    counts = np.array([scan.scan(file, name) for file, name in zip(files, names, strict=True)])
    y, class_names = scan.labels(files, names)
    return SourceData(
        stream=FileStream(
            root=_common_root(files),
            files=files,
            labels=y,
            read=_csv_reader(len(header), label_index, feature_indices, y.dtype, class_names),
            counts=counts,
            example_bytes=4 * len(features) + y.dtype.itemsize,
        ),
        class_names=class_names,
        description=(
            f"{names[0] if len(files) == 1 else path}: {len(y)} rows"
            f"{'' if len(files) == 1 else f' in {len(files)} files'}, {len(features)} features, "
            f"label '{label}'"
        ),
    )


_FLOAT32_MAX = float(np.finfo(np.float32).max)


class _CsvScan:
    """One pass over CSV files, row by row: checks every row, counts them, keeps the labels."""

    def __init__(self, header: list[str], label_index: int, feature_indices: list[int]) -> None:
        self.header, self.label_index, self.feature_indices = header, label_index, feature_indices
        self.integers: array.array | None = array.array("q")
        self.numbers = array.array("d")
        self.text = False
        self.not_finite: SourceError | None = None

    def rows(self, file: Path, name: str) -> Iterator[tuple[int, list[str]]]:
        """The data rows of a file that are not blank, with their line numbers."""
        try:
            with file.open(newline="", encoding="utf-8-sig") as handle:
                rows = ((n, row) for n, row in enumerate(csv.reader(handle), start=1) if row)
                next(rows, None)  # the header, checked by `_check_csv`
                yield from rows
        except UnicodeDecodeError as error:
            raise SourceError(f"{name} is not UTF-8 text: {error}", "path") from None

    def scan(self, file: Path, name: str) -> int:
        """Check a file's rows and keep their labels; the number of rows."""
        header, count = self.header, 0
        for number, row in self.rows(file, name):
            if len(row) != len(header):
                raise SourceError(
                    f"line {number} of {name} has {len(row)} values; "
                    f"the header names {len(header)} columns",
                    "path",
                )
            for index in self.feature_indices:
                value = self._cell(row, index, number, name, "features")
                try:
                    finite = abs(float(value)) <= _FLOAT32_MAX
                except ValueError:
                    raise SourceError(
                        f"column '{header[index]}' of {name} is not numeric: features must be "
                        f"numbers. Received: {value!r} on line {number}",
                        "features",
                    ) from None
                if not finite:
                    raise self._not_finite(index, value, number, name, "features")
            self._label(self._cell(row, self.label_index, number, name, "label"), number, name)
            count += 1
        if not count:
            raise SourceError(f"{name} has a header row but no data rows", "path")
        return count

    def _cell(self, row: list[str], index: int, number: int, name: str, argument: str) -> str:
        if row[index] == "":
            raise SourceError(
                f"missing value in column '{self.header[index]}' of {name}, line {number}",
                argument,
            )
        return row[index]

    def _not_finite(self, index: int, value: str, number: int, name: str, argument: str) -> Any:
        return SourceError(
            f"column '{self.header[index]}' of {name} holds {value!r} on line {number}: "
            "expected finite numbers (no NaN or infinity)",
            argument,
        )

    def _label(self, value: str, number: int, name: str) -> None:
        if self.text:
            return
        if self.integers is not None:
            try:
                self.integers.append(int(value))
            except ValueError:
                self.integers = None
        try:
            self.numbers.append(float(value))
        except ValueError:
            self.text = True
            return
        if self.not_finite is None and not abs(self.numbers[-1]) <= _FLOAT32_MAX:
            self.not_finite = self._not_finite(self.label_index, value, number, name, "label")

    def labels(self, files: list[Path], names: list[str]) -> tuple[np.ndarray, list[str] | None]:
        """The labels read: int64 integers, float32 numbers, or int32 class ids of text
        labels (read again, the label column alone) with the class names in sorted order."""
        if not self.text:
            if self.integers is not None:
                return np.frombuffer(self.integers, np.int64).copy(), None
            if self.not_finite is not None:
                raise self.not_finite
            return np.frombuffer(self.numbers, np.float64).astype(np.float32), None
        seen: dict[str, int] = {}
        ids = array.array("i")
        for file, name in zip(files, names, strict=True):
            for _, row in self.rows(file, name):
                ids.append(seen.setdefault(row[self.label_index], len(seen)))
        class_names = sorted(seen)
        rank = np.searchsorted(class_names, list(seen)).astype(np.int32)
        return rank[np.frombuffer(ids, np.int32)], class_names


def _csv_reader(
    width: int,
    label_index: int,
    feature_indices: list[int],
    label_dtype: np.dtype,
    class_names: list[str] | None,
) -> Callable[[Any], Any]:
    """How to read a CSV file's `(features, label)` rows with `tf.data`, as `_CsvScan` found
    them: blank lines skipped, the header dropped, rows parsed in parallel in batches."""

    def read(path: tf.Tensor) -> tf.data.Dataset:
        import tensorflow as tf

        def parse(lines: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            cells = tf.io.decode_csv(lines, record_defaults=[[""]] * width)
            x = tf.stack([tf.strings.to_number(cells[i], tf.float32) for i in feature_indices], 1)
            column = cells[label_index]
            if class_names is not None:
                matches = tf.equal(column[:, tf.newaxis], tf.constant(class_names)[tf.newaxis])
                y = tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int32)
            else:
                y = tf.strings.to_number(column, tf.as_dtype(label_dtype))
            return x, y

        lines = tf.data.TextLineDataset(path).map(
            lambda line: tf.strings.regex_replace(line, "\r$", "")
        )
        rows = lines.filter(lambda line: tf.strings.length(line) > 0).skip(1)
        return (
            rows.batch(_CSV_PARSE_BATCH).map(parse, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        )

    return read


def _class_folders(
    context: SourceContext, directory: str, extensions: tuple[str, ...], kind: str
) -> tuple[list[str], list[Path], np.ndarray]:
    """The files of a directory with one sub-folder per class, and their int32 class ids.

    Classes are the sub-folders in sorted order, as in `keras.utils.image_dataset_from_directory`;
    hidden ones (`.ipynb_checkpoints`) are skipped. Files are found at any depth of a class folder.
    """
    root = _resolve(context, directory, "directory", directory=True)
    class_names = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not class_names:
        raise SourceError(
            f"no class sub-folders in {directory}: expected one sub-folder per class", "directory"
        )
    files: list[Path] = []
    labels: list[int] = []
    for class_id, class_name in enumerate(class_names):
        found = sorted(
            p
            for p in (root / class_name).rglob("*")
            if p.suffix.lower() in extensions and p.is_file()
        )
        files += found
        labels += [class_id] * len(found)
    if not files:
        raise SourceError(
            f"no {kind} files ({', '.join(extensions)}) in the class sub-folders of {directory} "
            f"({', '.join(class_names)})",
            "directory",
        )
    return class_names, files, np.array(labels, dtype=np.int32)


def _check_images(
    context: SourceContext,
    directory: str,
    image_size: list[int] | tuple[int, int] = (256, 256),
    color_mode: str = "rgb",
) -> tuple[tuple[int, ...], list[str], list[Path], np.ndarray]:
    """Check the arguments, and that the folder has class sub-folders of image files; the
    image size, and the class names, files and class ids (`_class_folders`)."""
    color_modes = ("rgb", "grayscale", "rgba")
    if color_mode not in color_modes:
        raise SourceError(
            f"expected color_mode to be one of {', '.join(color_modes)}. "
            f"Received: color_mode={color_mode!r}",
            "color_mode",
        )
    size = _shape(image_size, "image_size")
    if len(size) != 2:
        raise SourceError(
            f"expected image_size to be [height, width]. Received: image_size={image_size!r}",
            "image_size",
        )
    return (size, *_class_folders(context, directory, IMAGE_EXTENSIONS, "image"))


@register_source("images", check=_check_images)
def from_images(
    context: SourceContext,
    directory: str,
    image_size: list[int] | tuple[int, int] = (256, 256),
    color_mode: str = "rgb",
) -> SourceData:
    """Image files with one sub-folder per class, streamed: read as training reads them.

    As in `keras.utils.image_dataset_from_directory`: classes are the sub-folders in sorted
    order, and pixels stay float32 in 0..255 (add a `rescaling: 1/255` layer to the model).
    Images are decoded by TensorFlow in parallel and resized with bilinear interpolation as
    Pillow does it (antialiased when shrinking, rounded to whole levels: within one level of
    `keras.utils.load_img(..., interpolation="bilinear")`). Only the list of files is held in
    memory (see `data.cache`); a cache and the shuffle buffer hold the pixels as uint8 (whole
    levels: the same values in a quarter of the memory), widened to float32 as they leave it.

    Args:
        context: the spec's directory, for a relative `directory`.
        directory: the folder of class sub-folders.
        image_size: `[height, width]` every image is resized to.
        color_mode: `rgb` (3 channels), `grayscale` (1) or `rgba` (4).

    Example: `{images: {directory: data/flowers, image_size: [96, 96]}}`.
    """
    size, class_names, files, labels = _check_images(context, directory, image_size, color_mode)
    channels = {"rgb": 3, "grayscale": 1, "rgba": 4}[color_mode]

    def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        # Pillow's bilinear filter, which dlx read images with before they streamed: widened
        # when shrinking (antialias) and rounded to whole levels; within one level of it.
        image = tf.image.resize(image, size, method="bilinear", antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        image.set_shape((*size, channels))
        return image, label

    def finish(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        return tf.cast(image, tf.float32), label

    _probe_images(files[:PROBED_FILES], color_mode, context.on_error)
    root = _resolve(context, directory, "directory", directory=True)
    return SourceData(
        stream=FileStream(
            root=root,
            files=files,
            labels=labels,
            decode=decode,
            example_bytes=size[0] * size[1] * channels,
            finish=finish,
        ),
        class_names=class_names,
        description=f"{directory}: {len(files)} images in {len(class_names)} classes",
    )


def _probe_images(files: list[Path], color_mode: str, on_error: str) -> None:
    """Read a few images whole, so that a folder of broken files fails before training starts,
    naming the file (a file found broken while training fails the run). With `on_error: skip`
    only a folder whose first images are all broken fails."""
    import keras

    broken = []
    for file in files:
        # Pillow reads pixels lazily: a truncated file fails in `img_to_array`, not `load_img`.
        # A broken file is an OSError, or for some formats a SyntaxError or ValueError.
        try:
            keras.utils.img_to_array(keras.utils.load_img(file, color_mode=color_mode))
        except (OSError, ValueError, SyntaxError) as error:
            broken.append(f"could not read image {relative_path(file)}: {error}")
            if on_error == "fail":
                raise SourceError(broken[0], "directory") from None
    if files and len(broken) == len(files):
        raise SourceError(
            f"none of the first {len(files)} images could be read ({broken[0]})", "directory"
        )


def _check_text(context: SourceContext, directory: str) -> tuple[list[str], list[Path], np.ndarray]:
    """Check that the folder has class sub-folders of `.txt` files (`_class_folders`)."""
    return _class_folders(context, directory, (".txt",), "text")


@register_source("text", check=_check_text)
def from_text(context: SourceContext, directory: str) -> SourceData:
    """Text files with one sub-folder per class, one `.txt` file per example, streamed.

    As in `keras.utils.text_dataset_from_directory`: classes are the sub-folders in sorted
    order. The inputs are the files' whole texts (string tensors, read by `tf.io.read_file`
    as training reads them), ready for a `text_vectorization` layer in the model. The first
    files are read when the source is read, to check that they are UTF-8.

    Args:
        context: the spec's directory, for a relative `directory`.
        directory: the folder of class sub-folders.

    Example: `{text: {directory: data/reviews}}` or `{text: data/reviews}`.
    """
    class_names, files, labels = _check_text(context, directory)
    for file in files[:PROBED_FILES]:
        try:
            file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise SourceError(
                f"{relative_path(file)} is not UTF-8 text: {error}", "directory"
            ) from None

    def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        import tensorflow as tf

        return tf.io.read_file(path), label

    return SourceData(
        stream=FileStream(
            root=_resolve(context, directory, "directory", directory=True),
            files=files,
            labels=labels,
            decode=decode,
        ),
        class_names=class_names,
        description=f"{directory}: {len(files)} texts in {len(class_names)} classes",
    )


_RAW_LIST_DTYPES = ("int64", "float32", "string")
_RAW_BYTES_DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "float16", "float64")
_IMAGE_DTYPES = {"png": ("uint8", "uint16"), "jpeg": ("uint8",)}
_TFRECORD_HEADER = 12  # a record's length (8 bytes) and the length's checksum (4)
_TFRECORD_FOOTER = 4  # the data's checksum


@dataclass(frozen=True)
class _Feature:
    """One feature of a `tfrecord` source: its name, shape, dtype and encoding."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    encoding: str

    @property
    def in_list(self) -> bool:
        """Whether the Example holds the values themselves (an Int64List, FloatList or
        BytesList), rather than one bytes value to decode."""
        return self.encoding == "raw" and self.dtype in _RAW_LIST_DTYPES

    def parsing(self) -> Any:
        import tensorflow as tf

        if self.in_list:
            return tf.io.FixedLenFeature(self.shape, tf.as_dtype(self.dtype))
        return tf.io.FixedLenFeature([], tf.string)

    def decode(self, value: tf.Tensor) -> tf.Tensor:
        import tensorflow as tf

        if self.in_list:
            return value
        dtype = tf.as_dtype(self.dtype)
        if self.encoding == "raw":
            tensor = tf.reshape(tf.io.decode_raw(value, dtype), self.shape)
        elif self.encoding == "png":
            tensor = tf.io.decode_png(value, channels=self.shape[-1], dtype=dtype)
        else:
            tensor = tf.io.decode_jpeg(value, channels=self.shape[-1])
        tensor = tf.ensure_shape(tensor, self.shape)
        return tensor


def _tfrecord_features(features: Any, label: Any) -> list[_Feature]:
    """The features of a `tfrecord` source, checked; the label's is last."""
    if not isinstance(features, dict) or not features:
        raise SourceError(
            "expected features to map each feature's name to {shape, dtype, encoding}. "
            f"Received: features={features!r}",
            "features",
        )
    found = []
    for name, spec in features.items():
        where = f"feature '{name}'"
        if not isinstance(spec, dict) or set(spec) - {"shape", "dtype", "encoding"}:
            raise SourceError(
                f"expected {where} to be {{shape, dtype, encoding}}. Received: {spec!r}",
                "features",
            )
        shape = spec.get("shape", [])
        if not isinstance(shape, list) or not all(_is_positive_int(n) for n in shape):
            raise SourceError(
                f"expected the shape of {where} to be a list of positive integers ([] for a "
                f"scalar). Received: shape={shape!r}",
                "features",
            )
        encoding = spec.get("encoding", "raw")
        if encoding not in ("raw", "png", "jpeg"):
            raise SourceError(
                f"unknown encoding of {where}: {encoding!r}. Expected one of: raw, png, jpeg",
                "features",
            )
        dtypes = (
            _RAW_LIST_DTYPES + _RAW_BYTES_DTYPES if encoding == "raw" else _IMAGE_DTYPES[encoding]
        )
        dtype = spec.get("dtype", "uint8" if encoding != "raw" else None)
        if dtype not in dtypes:
            raise SourceError(
                f"unknown dtype of {where} ({encoding} encoding): {dtype!r}. "
                f"Expected one of: {', '.join(dtypes)}",
                "features",
            )
        if encoding != "raw" and len(shape) != 3:
            raise SourceError(
                f"expected the shape of {where}, a {encoding} image, to be [height, width, "
                f"channels]. Received: shape={shape!r}",
                "features",
            )
        found.append(_Feature(str(name), tuple(shape), dtype, encoding))
    names = [feature.name for feature in found]
    if label not in names:
        raise SourceError(
            f"label '{label}' is not among the features{did_you_mean(str(label), names)}. "
            f"Features: {', '.join(names)}",
            "label",
        )
    if len(found) == 1:
        raise SourceError(
            f"the features hold only the label '{label}': expected the model's inputs too",
            "features",
        )
    return sorted(found, key=lambda feature: feature.name == label)


def _check_tfrecord(
    context: SourceContext, files: str | list[str], features: dict[str, Any], label: str
) -> tuple[list[Path], list[_Feature]]:
    """Check that the globs match files and that the features are well-formed; the files
    and the features (the label's last). No record is read."""
    return _glob(context, files, "files"), _tfrecord_features(features, label)


@register_source("tfrecord", check=_check_tfrecord)
def from_tfrecord(
    context: SourceContext, files: str | list[str], features: dict[str, Any], label: str
) -> SourceData:
    """TFRecord files of `tf.train.Example` records, streamed.

    Each feature is read as `shape` and `dtype`, according to its `encoding`:

    - `raw` (the default), dtype `int64`, `float32` or `string`: the Example holds the values
      themselves (an Int64List, FloatList or BytesList of the shape's size, row-major);
    - `raw`, any other dtype (`uint8`, `int8`, `uint16`, `int16`, `int32`, `float16`,
      `float64`): one bytes value holding the tensor's raw bytes (`numpy`'s `tobytes()`,
      little-endian), decoded by `tf.io.decode_raw`;
    - `png` (dtype `uint8` or `uint16`) or `jpeg` (`uint8`): one bytes value holding an encoded
      image shaped `[height, width, channels]`.

    The `label` feature is the target; the others are the inputs: one input gives `x` that
    tensor, several a mapping of feature name to tensor (the model's inputs are named alike).
    Records are parsed in parallel as training reads them.

    When the source is read, the records of every file are counted, for the steps of an epoch
    and the splits: this reads each record's 12-byte header and skips its data (a seek), so it
    costs a few microseconds a record, whatever their size; the data is not parsed. The first
    record of each of the first files is then parsed, so that features that do not match the
    records fail before training, naming the file.

    Args:
        context: the spec's directory, for relative globs.
        files: a glob (`data/train-*.tfrecord`), a path, or a list of them.
        features: each feature's name mapped to `{shape, dtype, encoding}`; `shape` defaults
            to `[]` (a scalar).
        label: the feature that holds the targets.

    Example: `{tfrecord: {files: data/train-*.tfrecord, features: {image: {shape: [8, 8, 1],
    dtype: uint8}, label: {dtype: int64}}, label: label}}`.
    """
    paths, parsed = _check_tfrecord(context, files, features, label)
    counts = np.array([_count_records(context, file) for file in paths], dtype=np.int64)
    *inputs, target = parsed
    parsing = {feature.name: feature.parsing() for feature in parsed}

    def example(record: tf.Tensor) -> tuple[Any, tf.Tensor]:
        import tensorflow as tf

        values = tf.io.parse_single_example(record, parsing)
        x = {feature.name: feature.decode(values[feature.name]) for feature in inputs}
        return (x if len(x) > 1 else x[inputs[0].name]), target.decode(values[target.name])

    def read(path: tf.Tensor) -> tf.data.Dataset:
        import tensorflow as tf

        return tf.data.TFRecordDataset(path).map(example, num_parallel_calls=tf.data.AUTOTUNE)

    _probe_records(context, [file for file, n in zip(paths, counts, strict=True) if n], read)
    sizes = [
        int(np.prod(f.shape)) * (8 if f.dtype == "string" else np.dtype(f.dtype).itemsize)
        for f in parsed
    ]
    return SourceData(
        stream=FileStream(
            root=_common_root(paths),
            files=paths,
            labels=None,
            read=read,
            counts=counts,
            example_bytes=sum(sizes),
        ),
        description=f"{files}: {int(counts.sum())} records in {len(paths)} files",
    )


def _count_records(context: SourceContext, file: Path) -> int:
    """The number of records of a TFRecord file, from their headers alone."""
    size, count, position = file.stat().st_size, 0, 0
    with file.open("rb") as handle:
        while position < size:
            header = handle.read(_TFRECORD_HEADER)
            length = int.from_bytes(header[:8], "little")
            position += _TFRECORD_HEADER + length + _TFRECORD_FOOTER
            if len(header) < _TFRECORD_HEADER or position > size:
                raise SourceError(
                    f"{_shown(context, file)} is not a TFRecord file, or is truncated: record "
                    f"{count + 1} ends past the end of the file",
                    "files",
                )
            handle.seek(position)
            count += 1
    return count


def _probe_records(context: SourceContext, files: list[Path], read: Callable[[Any], Any]) -> None:
    """Parse the first record of each of the first files, naming a file whose records do not
    match the features (a record found wrong while training fails the run)."""
    import tensorflow as tf

    if not files:
        raise SourceError("the TFRecord files hold no record", "files")
    for file in files[:PROBED_FILES]:
        try:
            next(iter(read(tf.constant(str(file))).take(1)))
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
            reason = error.message.splitlines()[0]
            raise SourceError(
                f"the first record of {_shown(context, file)} does not match the features: "
                f"{reason}",
                "features",
            ) from None


def _check_synthetic(
    context: SourceContext,
    samples: int,
    x_shape: int | list[int],
    classes: int | None = None,
    targets: int | None = None,
) -> tuple[int, tuple[int, ...], int]:
    """Check the arguments; the number of samples, the shape of one input, and the number of
    classes or targets."""
    count = _positive_int(samples, "samples")
    shape = _shape(x_shape, "x_shape")
    if (classes is None) == (targets is None):
        raise SourceError(
            "expected exactly one of classes (classification) or targets (regression). "
            f"Received: classes={classes!r}, targets={targets!r}",
            "classes",
        )
    argument = "classes" if targets is None else "targets"
    return count, shape, _positive_int(classes if targets is None else targets, argument)


@register_source("synthetic", check=_check_synthetic)
def synthetic(
    context: SourceContext,
    samples: int,
    x_shape: int | list[int],
    classes: int | None = None,
    targets: int | None = None,
) -> SourceData:
    """Seeded random data that a model can learn, for smoke tests and benchmarks.

    Inputs are standard normal float32. The targets are a fixed random linear projection of
    the inputs: with `classes`, the int32 class whose projection is largest (so even a linear
    model can fit them and the loss falls); with `targets`, the projection itself, float32 and
    shaped `(samples, targets)`. The same seed gives the same data.

    Args:
        context: the spec's seed.
        samples: how many examples.
        x_shape: the shape of one input: `[8, 8, 1]`, or `20` for a vector.
        classes: the number of classes, for classification.
        targets: the number of regression targets, instead of `classes`.

    Example: `{synthetic: {samples: 512, x_shape: [32], classes: 3}}`.
    """
    count, shape, outputs = _check_synthetic(context, samples, x_shape, classes, targets)
    rng = np.random.default_rng(context.seed)
    x = rng.standard_normal((count, *shape), dtype=np.float32)
    flat = x.reshape(count, -1)
    projection = np.zeros((count, outputs), dtype=np.float32)
    for start in range(0, flat.shape[1], _PROJECTION_CHUNK):
        part = flat[:, start : start + _PROJECTION_CHUNK]
        projection += part @ rng.standard_normal((part.shape[1], outputs), dtype=np.float32)
    projection /= np.sqrt(flat.shape[1], dtype=np.float32)
    y = projection.argmax(axis=1).astype(np.int32) if targets is None else projection
    kind = f"{outputs} classes" if targets is None else f"{outputs} targets"
    return SourceData(
        x=x, y=y, description=f"synthetic: {count} examples shaped {list(shape)}, {kind}"
    )


def _check_python(context: SourceContext, function: str, **arguments: Any) -> Callable[..., Any]:
    """Import the function's module (as training does) and check the function's arguments;
    the function."""
    module_name, _, attribute = (
        function.partition(":") if isinstance(function, str) else ("", "", "")
    )
    if not module_name or not attribute:
        raise SourceError(
            f"expected function to be 'module:function'. Received: {function!r}", "function"
        )
    if str(context.base_dir) not in sys.path:
        sys.path.insert(0, str(context.base_dir))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name and not module_name.startswith(f"{error.name}."):
            raise
        raise SourceError(
            f"no module named '{module_name}' in {context.base_dir} or on sys.path", "function"
        ) from None
    make = getattr(module, attribute, None)
    if not callable(make):
        public = [name for name in vars(module) if not name.startswith("_")]
        raise SourceError(
            f"module '{module_name}' has no function '{attribute}'"
            f"{did_you_mean(attribute, public)}",
            "function",
        )
    check_arguments(function, make, [], arguments)
    return make


@register_source("python", check=_check_python)
def from_python(context: SourceContext, function: str, **arguments: Any) -> SourceData:
    """The data a Python function of the user's returns.

    The function's module is imported with the spec's directory first on `sys.path`, as
    Python does for a script's directory. The function returns arrays `(x, y)` (`x` may be a
    mapping of input name to array; `y` may be `None`), or a `tf.data.Dataset` of unbatched
    `(x, y)` examples. Returned arrays of numbers must be finite (no NaN or infinity).

    Args:
        context: the spec's directory, put on `sys.path`.
        function: `module:function`, e.g. `my_data:load`.
        **arguments: keyword arguments for the function.

    Example: `{python: "my_data:load"}`, `{python: {function: "my_data:load", rows: 100}}`.
    """
    make = _check_python(context, function, **arguments)
    result = make(**arguments)
    if isinstance(result, tuple | list) and len(result) == 2:
        x, y = result
        inputs = (
            {key: np.asarray(v) for key, v in x.items()} if isinstance(x, dict) else np.asarray(x)
        )
        data = SourceData(x=inputs, y=None if y is None else np.asarray(y), description=function)
        for name, array in data.named_arrays():
            what = "y" if array is data.y else "x" if name == "x" else f"x['{name}']"
            _check_finite(array, f"the {what} that {function} returns", "function")
        return data

    import tensorflow as tf

    if isinstance(result, tf.data.Dataset):
        return SourceData(dataset=result, description=function)
    raise SourceError(
        f"expected {function} to return arrays (x, y) or a tf.data.Dataset. "
        f"Received: {type(result).__name__}",
        "function",
    )
