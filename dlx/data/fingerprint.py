"""The fingerprint of a run's data: what every source gives, added to one sha256 digest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dlx.data.sources import SourceData, SourceError
from dlx.data.stream import digest_stream

if TYPE_CHECKING:
    import tensorflow as tf


def digest_source(digest: Any, source: SourceData, content: bool) -> int:
    """Add a source's data to a sha256 digest, and count its examples; a streamed source's
    files by their bytes with `content`, else by their sizes and times (`digest_stream`)."""
    for name in source.class_names or []:
        _digest_text(digest, name)
    if source.stream is not None:
        return digest_stream(digest, source.stream, content)
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
