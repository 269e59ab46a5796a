"""The `tfrecord` source: TFRecord files of `tf.train.Example` records, the features read from
them, and the counting and probing of their records when the source is read (docs/spec.md
section 3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlx.data.sources import (
    PROBED_FILES,
    FileStream,
    SourceContext,
    SourceData,
    SourceError,
    _common_root,
    _glob,
    _is_positive_int,
    _shown,
    register_source,
)
from dlx.errors import did_you_mean

if TYPE_CHECKING:
    import tensorflow as tf

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
    labels = list(label.values()) if isinstance(label, dict) else [label]
    for name in labels:
        if name not in names:
            raise SourceError(
                f"label '{name}' is not among the features{did_you_mean(str(name), names)}. "
                f"Features: {', '.join(names)}",
                "label",
            )
    if len(found) == len(set(labels)):
        shown = ", ".join(f"'{name}'" for name in labels)
        raise SourceError(
            f"the features hold only the label {shown}: expected the model's inputs too",
            "features",
        )
    by_name = {feature.name: feature for feature in found}
    return [f for f in found if f.name not in labels] + [by_name[name] for name in labels]


def _check_tfrecord(
    context: SourceContext,
    files: str | list[str],
    features: dict[str, Any],
    label: str | dict[str, str],
) -> tuple[list[Path], list[_Feature]]:
    """Check that the globs match files and that the features are well-formed; the files
    and the features (the labels last, in `label`'s order). No record is read."""
    return _glob(context, files, "files"), _tfrecord_features(features, label)


@register_source("tfrecord", check=_check_tfrecord)
def from_tfrecord(
    context: SourceContext,
    files: str | list[str],
    features: dict[str, Any],
    label: str | dict[str, str],
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

    The `label` feature is the target (or, for a model with several outputs, `label` maps
    each output's name to its feature); the others are the inputs: one input gives `x` that
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
        label: the feature that holds the targets; a mapping of output name to feature for
            a model with several outputs.

    Example: `{tfrecord: {files: data/train-*.tfrecord, features: {image: {shape: [8, 8, 1],
    dtype: uint8}, label: {dtype: int64}}, label: label}}`.
    """
    paths, parsed = _check_tfrecord(context, files, features, label)
    counts = np.array([_count_records(context, file) for file in paths], dtype=np.int64)
    outputs = list(label.items()) if isinstance(label, dict) else [(None, label)]
    inputs = parsed[: len(parsed) - len(outputs)]
    targets = dict(zip([o for o, _ in outputs], parsed[len(inputs) :], strict=True))
    parsing = {feature.name: feature.parsing() for feature in parsed}

    def example(record: tf.Tensor) -> tuple[Any, Any]:
        import tensorflow as tf

        values = tf.io.parse_single_example(record, parsing)
        x = {feature.name: feature.decode(values[feature.name]) for feature in inputs}
        y = {output: f.decode(values[f.name]) for output, f in targets.items()}
        return (x if len(x) > 1 else x[inputs[0].name]), y.get(None, y)

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
