"""The `csv` source: tables in CSV files, scanned row by row when the source is read, then
streamed by `tf.data` as training reads them (docs/spec.md section 3)."""

from __future__ import annotations

import array
import csv
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlx.data.sources import (
    FileStream,
    SourceContext,
    SourceData,
    SourceError,
    _common_root,
    _glob,
    _shown,
    register_source,
)
from dlx.errors import did_you_mean

if TYPE_CHECKING:
    import tensorflow as tf

# CSV rows are parsed this many at a time.
_CSV_PARSE_BATCH = 256


def _check_csv(
    context: SourceContext,
    path: str | list[str],
    label: str | dict[str, str],
    features: list[str] | None = None,
) -> tuple[list[Path], list[str], tuple[list[int], list[str], list[int]]]:
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
    assert header is not None  # `_glob` names at least one file, or raises
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
) -> tuple[list[int], list[str], list[int]]:
    """The label columns' indices (one, or one per output of a `label` mapping), and the
    feature columns' names and indices."""

    def column_index(name: Any, argument: str) -> int:
        if name not in header:
            raise SourceError(
                f"column '{name}' not in {path}{did_you_mean(str(name), header)}. "
                f"Columns: {', '.join(header)}",
                argument,
            )
        return header.index(name)

    labels = list(label.values()) if isinstance(label, dict) else [label]
    label_indices = [column_index(name, "label") for name in labels]
    shown = ", ".join(f"'{name}'" for name in labels)
    if features is None:
        features = [name for name in header if name not in labels]
    elif not isinstance(features, list) or any(name in features for name in labels):
        raise SourceError(
            f"expected features to be a list of columns other than the label {shown}. "
            f"Received: features={features!r}",
            "features",
        )
    if not features:
        raise SourceError(f"{path} has no column besides the label {shown}", "features")
    return label_indices, features, [column_index(name, "features") for name in features]


@register_source("csv", check=_check_csv)
def from_csv(
    context: SourceContext,
    path: str | list[str],
    label: str | dict[str, str],
    features: list[str] | None = None,
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
        label: the column that holds the targets; a mapping of output name to column for a
            model with several outputs (each column's targets read as above; text labels
            become class ids in the sorted order of that column's names).
        features: the columns that hold the inputs; default: every other column.

    Example: `{csv: {path: data/iris.csv, label: species}}`,
    `{csv: {path: data/houses.csv, label: {price: price, kind: kind}}}`.
    """
    files, header, (label_indices, features, feature_indices) = _check_csv(
        context, path, label, features
    )
    names = [_shown(context, file) for file in files]
    scan = _CsvScan(header, label_indices, feature_indices)
    counts = np.array([scan.scan(file, name) for file, name in zip(files, names, strict=True)])
    columns = scan.labels(files, names)
    outputs = list(label) if isinstance(label, dict) else [None]
    read = _csv_reader(
        len(header),
        [
            (output, index, y.dtype, classes)
            for output, index, (y, classes) in zip(outputs, label_indices, columns, strict=True)
        ],
        feature_indices,
    )
    y, class_names = columns[0]
    several = isinstance(label, dict)
    shown = ", ".join(
        f"'{name}'" for name in (label.values() if isinstance(label, dict) else [label])
    )
    return SourceData(
        stream=FileStream(
            root=_common_root(files),
            files=files,
            labels=None if several else y,  # a class per example, for one target only
            read=read,
            counts=counts,
            example_bytes=4 * len(features) + sum(y.dtype.itemsize for y, _ in columns),
        ),
        class_names=None if several else class_names,
        description=(
            f"{names[0] if len(files) == 1 else path}: {len(y)} rows"
            f"{'' if len(files) == 1 else f' in {len(files)} files'}, {len(features)} features, "
            f"label{'s' if several else ''} {shown}"
        ),
    )


_FLOAT32_MAX = float(np.finfo(np.float32).max)


class _LabelColumn:
    """What the scan keeps of one label column: its values as integers while they all are,
    as numbers while they all are, or the fact that they are text."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.integers: array.array | None = array.array("q")
        self.numbers = array.array("d")
        self.text = False
        self.not_finite: SourceError | None = None


class _CsvScan:
    """One pass over CSV files, row by row: checks every row, counts them, keeps the labels."""

    def __init__(
        self, header: list[str], label_indices: list[int], feature_indices: list[int]
    ) -> None:
        self.header, self.feature_indices = header, feature_indices
        self.columns = [_LabelColumn(index) for index in label_indices]

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
            for column in self.columns:
                cell = self._cell(row, column.index, number, name, "label")
                self._label(column, cell, number, name)
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

    def _label(self, column: _LabelColumn, value: str, number: int, name: str) -> None:
        if column.text:
            return
        if column.integers is not None:
            try:
                column.integers.append(int(value))
            except ValueError:
                column.integers = None
        try:
            column.numbers.append(float(value))
        except ValueError:
            column.text = True
            return
        if column.not_finite is None and not abs(column.numbers[-1]) <= _FLOAT32_MAX:
            column.not_finite = self._not_finite(column.index, value, number, name, "label")

    def labels(
        self, files: list[Path], names: list[str]
    ) -> list[tuple[np.ndarray, list[str] | None]]:
        """The labels read, a column each: int64 integers, float32 numbers, or int32 class ids
        of text labels (read again, the label column alone) with the class names in sorted
        order."""
        return [self._column_labels(column, files, names) for column in self.columns]

    def _column_labels(
        self, column: _LabelColumn, files: list[Path], names: list[str]
    ) -> tuple[np.ndarray, list[str] | None]:
        if not column.text:
            if column.integers is not None:
                return np.frombuffer(column.integers, np.int64).copy(), None
            if column.not_finite is not None:
                raise column.not_finite
            return np.frombuffer(column.numbers, np.float64).astype(np.float32), None
        seen: dict[str, int] = {}
        ids = array.array("i")
        for file, name in zip(files, names, strict=True):
            for _, row in self.rows(file, name):
                ids.append(seen.setdefault(row[column.index], len(seen)))
        class_names = sorted(seen)
        rank = np.searchsorted(class_names, list(seen)).astype(np.int32)
        return rank[np.frombuffer(ids, np.int32)], class_names


_Label = tuple[str | None, int, np.dtype, list[str] | None]
"""How a label column is read: its output's name (`None`: the one target), its index, its
dtype, and its class names for text labels."""


def _csv_reader(
    width: int, labels: list[_Label], feature_indices: list[int]
) -> Callable[[Any], Any]:
    """How to read a CSV file's `(features, label)` rows with `tf.data`, as `_CsvScan` found
    them: blank lines skipped, the header dropped, rows parsed in parallel in batches; the
    label a mapping by output name for several outputs."""

    def read(path: tf.Tensor) -> tf.data.Dataset:
        import tensorflow as tf

        def target(column: tf.Tensor, dtype: np.dtype, class_names: list[str] | None) -> Any:
            if class_names is not None:
                matches = tf.equal(column[:, tf.newaxis], tf.constant(class_names)[tf.newaxis])
                return tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int32)
            return tf.strings.to_number(column, tf.as_dtype(dtype))

        def parse(lines: tf.Tensor) -> tuple[tf.Tensor, Any]:
            cells = tf.io.decode_csv(lines, record_defaults=[[""]] * width)
            x = tf.stack([tf.strings.to_number(cells[i], tf.float32) for i in feature_indices], 1)
            y = {output: target(cells[i], dtype, names) for output, i, dtype, names in labels}
            return x, y.get(None, y)

        lines = tf.data.TextLineDataset(path).map(
            lambda line: tf.strings.regex_replace(line, "\r$", "")
        )
        rows = lines.filter(lambda line: tf.strings.length(line) > 0).skip(1)
        return (
            rows.batch(_CSV_PARSE_BATCH).map(parse, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        )

    return read
