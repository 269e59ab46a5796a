"""Data sources: where a spec's `data.source` comes from (docs/spec.md section 3).

Each source is a plain function registered under its spec name. Its first parameter is a
`SourceContext`; the rest are the source's arguments exactly as a user writes them in YAML, so
`{sklearn: digits}` calls `from_sklearn(context, "digits")` and
`{csv: {path: a.csv, label: y}}` calls `from_csv(context, path="a.csv", label="y")`.
`call_source` does that call for a component, checking its name and arguments first.

This package holds what every source shares: the types a source takes and returns, the
registry (`register_source`, `SOURCES`) and the checks of arguments and paths. Each family of
sources is a module of its own, imported at the end of this one so that its sources register:
`arrays` (sklearn, keras, tfds, npz), `csv`, `folders` (images, text), `tfrecord`, and
`generated` (synthetic, python).

TensorFlow and Keras are imported inside the sources that need them: importing this package
must stay cheap, because `dlx --help` imports it.
"""

from __future__ import annotations

import glob
import inspect
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlx.errors import DlxError, ExitStatus, did_you_mean
from dlx.spec.component import normalize_name, split_component
from dlx.spec.document import format_path
from dlx.spec.json_schema import ComponentArguments

if TYPE_CHECKING:
    import tensorflow as tf

Features = np.ndarray | dict[str, np.ndarray]
"""The inputs of a model: one array, or a mapping of input name to array for several inputs;
its targets alike: one array, or a mapping of output name to array for several outputs."""

PROBED_FILES = 32
"""How many of a streamed folder's images are read whole when the source is read."""


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
        finish: a TensorFlow function from a batch of decoded `(x, y)` examples to the one
            the model takes, applied after the cache, the shuffle buffer and the batching, so
            that they hold the compact form `decode` gives (an image's uint8 pixels, widened
            here to float32, a batch at a time); `None`: the decoded examples as they are.
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
        y: the targets, one per example: an array, or a mapping of output name to array for a
            model with several outputs; `None` when the data has none (an autoencoder's), or
            when the source gives `dataset`.
        dataset: a dataset of unbatched `(x, y)` examples, for sources that give no arrays.
        stream: the files of a source that streams them, instead of arrays (docs/spec.md
            section 3, "Streamed sources").
        class_names: the name of each class id in `y`, when the source knows them.
        description: one line for people: what was read and how much of it.
    """

    x: Features | None = None
    y: Features | None = None
    dataset: tf.data.Dataset | None = None
    stream: FileStream | None = None
    class_names: list[str] | None = None
    description: str = ""

    def named_arrays(self) -> list[tuple[str, np.ndarray]]:
        """The arrays with their names: the inputs, then the targets.

        The inputs come in the sorted order of their names, or as `x` when they are one
        array; the targets come last as `y`, or as `y.<output>` in the sorted order of the
        outputs' names, when there are any. A source that gives a dataset has no arrays.

        Example:

        >>> SourceData(x={"b": np.zeros(2), "a": np.ones(2)}).named_arrays()
        [('a', array([1., 1.])), ('b', array([0., 0.]))]
        """
        if self.x is None:
            return []
        inputs = sorted(self.x.items()) if isinstance(self.x, dict) else [("x", self.x)]
        if isinstance(self.y, dict):
            return [*inputs, *((f"y.{name}", array) for name, array in sorted(self.y.items()))]
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


def source_arguments() -> dict[str, ComponentArguments]:
    """Every source's arguments as a spec writes them (its parameters after the context), by
    name: what the JSON Schema of the spec language says of each (`dlx schema`)."""
    return {name: ComponentArguments.of(function, skip=1) for name, function in SOURCES.items()}


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


# The families of sources, imported last so that each registers its sources with
# `register_source` above. This order is the order of `SOURCES`, which messages list ("Expected
# one of: sklearn, keras, tfds, npz, csv, images, text, tfrecord, synthetic, python"): keep it.
from dlx.data.sources import arrays, csv, folders, tfrecord, generated  # noqa: E402, F401, I001
