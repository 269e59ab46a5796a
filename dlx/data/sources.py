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

import csv
import importlib
import importlib.util
import inspect
import itertools
import sys
from collections.abc import Callable, Collection
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
    """

    base_dir: Path
    seed: int = 0


@dataclass
class FileStream:
    """Examples that stay in their files until training reads them: one example per file.

    Attributes:
        root: the folder the files' relative paths (which split them) are taken from.
        files: the files, in the source's order.
        labels: the int32 class id of each file's example.
        decode: a TensorFlow function from a file's path and label (string and int32 tensors)
            to its `(x, y)` example; `tf.data` calls it in parallel.
        example_bytes: the size of one decoded example in memory, when it is known; `cache:
            auto` judges by it (else by the files' size on disk).
        finish: a TensorFlow function from a decoded `(x, y)` example to the one the model
            takes, applied after the cache and the shuffle buffer, so that they hold the
            compact form `decode` gives (an image's uint8 pixels, widened here to float32);
            `None`: the decoded example as it is.
    """

    root: Path
    files: list[Path]
    labels: np.ndarray
    decode: Callable[[Any, Any], Any]
    example_bytes: int | None = None
    finish: Callable[[Any, Any], Any] | None = None


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


def _check_csv(
    context: SourceContext, path: str, label: str, features: list[str] | None = None
) -> Path:
    """Check that the file's header row names the label and feature columns; the file."""
    file = _resolve(context, path, "path")
    ((_, header),) = _csv_rows(file, path, header_only=True)
    _csv_columns(path, header, label, features)
    return file


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
    context: SourceContext, path: str, label: str, features: list[str] | None = None
) -> SourceData:
    """A table in a CSV file with a header row: numeric features and one label column.

    Features become float32 rows, in the order `features` gives. Labels made of integers stay
    integers (class ids, or integer targets); other numbers become float32 targets; text labels
    become int32 class ids in the sorted order of their names, recorded as `class_names`.
    Numbers must be finite: a `nan` or `inf` cell is an error naming its line and column.

    Args:
        context: the spec's directory, for a relative `path`.
        path: the CSV file (UTF-8, comma-separated, the first row naming the columns).
        label: the column that holds the targets.
        features: the columns that hold the inputs; default: every other column.

    Example: `{csv: {path: data/iris.csv, label: species}}`.
    """
    file = _resolve(context, path, "path")
    rows = _csv_rows(file, path)
    (_, header), body = rows[0], rows[1:]
    if not body:
        raise SourceError(f"{path} has a header row but no data rows", "path")
    for number, row in body:
        if len(row) != len(header):
            raise SourceError(
                f"line {number} of {path} has {len(row)} values; "
                f"the header names {len(header)} columns",
                "path",
            )
    label_index, features, feature_indices = _csv_columns(path, header, label, features)
    table = np.array([row for _, row in body], dtype=str)
    line_numbers = [number for number, _ in body]

    for index, argument in [*((i, "features") for i in feature_indices), (label_index, "label")]:
        empty = np.flatnonzero(table[:, index] == "")
        if empty.size:
            raise SourceError(
                f"missing value in column '{header[index]}' of {path}, "
                f"line {line_numbers[empty[0]]}",
                argument,
            )

    def check_finite(index: int, numbers: np.ndarray, argument: str) -> None:
        bad = np.flatnonzero(~np.isfinite(numbers))
        if bad.size:
            raise SourceError(
                f"column '{header[index]}' of {path} holds {str(table[bad[0], index])!r} on line "
                f"{line_numbers[bad[0]]}: expected finite numbers (no NaN or infinity)",
                argument,
            )

    columns = []
    for index in feature_indices:
        values = table[:, index]
        try:
            with np.errstate(over="ignore"):  # too large for float32: reported as not finite
                columns.append(values.astype(np.float32))
        except ValueError:
            line, value = next(
                (line, value)
                for line, value in zip(line_numbers, values, strict=True)
                if not _is_number(value)
            )
            raise SourceError(
                f"column '{header[index]}' of {path} is not numeric: features must be numbers. "
                f"Received: {str(value)!r} on line {line}",
                "features",
            ) from None
        check_finite(index, columns[-1], "features")
    x = np.stack(columns, axis=1)
    y, class_names = _csv_labels(table[:, label_index])
    if class_names is None:
        check_finite(label_index, y, "label")
    return SourceData(
        x=x,
        y=y,
        class_names=class_names,
        description=f"{path}: {len(y)} rows, {len(features)} features, label '{label}'",
    )


def _is_number(text: str) -> bool:
    try:
        np.array(text).astype(np.float32)
    except ValueError:
        return False
    return True


def _csv_labels(column: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    for dtype in (np.int64, np.float32):
        try:
            return column.astype(dtype), None
        except ValueError:
            continue
    class_names = sorted(set(column.tolist()))
    return np.searchsorted(class_names, column).astype(np.int32), class_names


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

    _probe_images(files[:PROBED_FILES], color_mode)
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


def _probe_images(files: list[Path], color_mode: str) -> None:
    """Read a few images whole, so that a folder of broken files fails before training starts,
    naming the file (a file found broken while training fails the run)."""
    import keras

    for file in files:
        # Pillow reads pixels lazily: a truncated file fails in `img_to_array`, not `load_img`.
        # A broken file is an OSError, or for some formats a SyntaxError or ValueError.
        try:
            keras.utils.img_to_array(keras.utils.load_img(file, color_mode=color_mode))
        except (OSError, ValueError, SyntaxError) as error:
            raise SourceError(
                f"could not read image {relative_path(file)}: {error}", "directory"
            ) from None


def _check_text(context: SourceContext, directory: str) -> tuple[list[str], list[Path], np.ndarray]:
    """Check that the folder has class sub-folders of `.txt` files (`_class_folders`)."""
    return _class_folders(context, directory, (".txt",), "text")


@register_source("text", check=_check_text)
def from_text(context: SourceContext, directory: str) -> SourceData:
    """Text files with one sub-folder per class, one `.txt` file per example.

    As in `keras.utils.text_dataset_from_directory`: classes are the sub-folders in sorted
    order. The inputs are the files' whole texts (UTF-8), an array of strings, ready for a
    `text_vectorization` layer in the model.

    Args:
        context: the spec's directory, for a relative `directory`.
        directory: the folder of class sub-folders.

    Example: `{text: {directory: data/reviews}}` or `{text: data/reviews}`.
    """
    class_names, files, labels = _check_text(context, directory)
    texts = []
    for file in files:
        try:
            texts.append(file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            raise SourceError(f"{file} is not UTF-8 text: {error}", "directory") from None
    return SourceData(
        x=np.array(texts, dtype=object),
        y=labels,
        class_names=class_names,
        description=f"{directory}: {len(files)} texts in {len(class_names)} classes",
    )


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
