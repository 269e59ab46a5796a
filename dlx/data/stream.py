"""Streamed sources: split by file, read as training goes (docs/spec.md section 3).

A source that streams gives a list of files and a function that decodes one (a
`FileStream`). Its splits are drawn by a seeded hash of each file's relative path, and each
epoch's order (the file order, then the shuffle buffer's seed) is drawn from `(seed, epoch)`
alone, so a resumed run reads exactly what an uninterrupted one reads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlx.data.sources import FileStream, SourceError

if TYPE_CHECKING:
    import tensorflow as tf

AUTO_CACHE_BYTES = 256 * 2**20
"""`cache: auto` keeps a streamed source in memory when its decoded examples (or, when their
size is unknown, its files on disk) take less than this."""

_HASH_SCALE = 2.0**64


@dataclass
class FileSplit:
    """Some of a stream's files: one split's, in the source's order."""

    stream: FileStream
    indices: np.ndarray

    @property
    def count(self) -> int:
        return len(self.indices)

    @property
    def paths(self) -> list[str]:
        return [str(self.stream.files[i]) for i in self.indices]

    @property
    def labels(self) -> np.ndarray:
        return self.stream.labels[self.indices]

    def files_dataset(self, order: Any = None) -> tf.data.Dataset:
        """The decoded examples, in the split's order or along `order` (a tensor of positions)."""
        import tensorflow as tf

        paths = tf.constant(self.paths, tf.string)
        labels = tf.constant(self.labels, tf.int32)
        positions = (
            tf.data.Dataset.range(self.count)
            if order is None
            else tf.data.Dataset.from_tensor_slices(order)
        )
        return positions.map(
            lambda i: self.stream.decode(tf.gather(paths, i), tf.gather(labels, i)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def finished(self, examples: tf.data.Dataset) -> tf.data.Dataset:
        """Decoded examples (`files_dataset`, cached or shuffled) as the model takes them: the
        stream's `finish` applied."""
        import tensorflow as tf

        finish = self.stream.finish
        if finish is None:
            return examples
        return examples.map(finish, num_parallel_calls=tf.data.AUTOTUNE)


def split_files(
    stream: FileStream, validation_split: float, test_split: float, seed: int
) -> tuple[FileSplit, FileSplit, FileSplit]:
    """The train, validation and test files of a stream, by a seeded hash of each file's path.

    File `f` goes to the test split when `h(seed, f) < test_split`, else to validation when
    `h < test_split + validation_split`, else to training, where `h` is the sha256 of the seed
    and the file's path relative to the source's folder, read as a number in [0, 1). The same
    seed gives the same splits on any machine, and a file added later leaves the others where
    they were; the splits' sizes are the fractions asked for only on average.

    Raises:
        SourceError: a split asked for (or training) gets no file.
    """
    position = np.array(
        [_unit_hash(seed, file.relative_to(stream.root).as_posix()) for file in stream.files]
    )
    test = np.flatnonzero(position < test_split)
    validation = np.flatnonzero(
        (position >= test_split) & (position < test_split + validation_split)
    )
    train = np.flatnonzero(position >= test_split + validation_split)
    for name, indices, fraction in (
        ("training", train, 1.0),
        ("validation", validation, validation_split),
        ("test", test, test_split),
    ):
        if fraction and not len(indices):
            raise SourceError(
                f"the {name} split of the {len(stream.files)} files is empty: files are split "
                f"by a hash of their paths (validation_split={validation_split}, "
                f"test_split={test_split}); give more files or larger fractions"
            ).at("data")
    return (FileSplit(stream, train), FileSplit(stream, validation), FileSplit(stream, test))


def _unit_hash(seed: int, relative: str) -> float:
    digest = hashlib.sha256(f"{seed}\0{relative}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _HASH_SCALE


def digest_stream(digest: Any, stream: FileStream) -> int:
    """Add a stream's files to a sha256 digest (relative path, size, modification time and
    label of each, in sorted order; the contents are not read), and count its examples."""
    for relative, file, label in sorted(
        (file.relative_to(stream.root).as_posix(), file, int(label))
        for file, label in zip(stream.files, stream.labels, strict=True)
    ):
        status = file.stat()
        digest.update(f"{relative}\0{status.st_size}\0{status.st_mtime_ns}\0{label}\0".encode())
    return len(stream.files)


def choose_cache(cache: Any, streams: list[FileStream], base_dir: Path, fingerprint: str) -> str:
    """The cache a streamed run uses: `memory`, `none` or the disk cache's file prefix (the
    path given, relative to the spec's directory, and the data's fingerprint: files that
    change get a cache of their own).

    `auto` is `memory` when the decoded examples of every stream take less than
    `AUTO_CACHE_BYTES` (their files on disk, when an example's size is unknown), else `none`.
    """
    if not isinstance(cache, str):
        prefix = base_dir / cache.disk
        prefix.parent.mkdir(parents=True, exist_ok=True)
        return f"{prefix}-{fingerprint[:16]}"
    if cache != "auto":
        return cache
    total = sum(
        len(stream.files) * stream.example_bytes
        if stream.example_bytes is not None
        else sum(file.stat().st_size for file in stream.files)
        for stream in streams
    )
    return "memory" if total < AUTO_CACHE_BYTES else "none"


def cached(dataset: tf.data.Dataset, cache: str, name: str) -> tf.data.Dataset:
    """A split's decoded examples, cached as chosen (`choose_cache`); a disk cache is filled
    now, whole, so that a run stopped midway never leaves a partial one."""
    if cache == "none":
        return dataset
    if cache == "memory":
        return dataset.cache()
    filled = dataset.cache(f"{cache}-{name}")
    for _ in filled:
        pass
    return filled


@dataclass
class TrainStream:
    """The training split of a streamed source, ordered afresh each epoch.

    Attributes:
        files: the training files.
        seed: the seed each epoch's order is drawn from; `None`: the source's order, unshuffled.
        buffer: the shuffle buffer's size, in examples.
        cache: `memory`, `none` or a disk cache's file prefix (see `choose_cache`).
    """

    files: FileSplit
    seed: int | None
    buffer: int
    cache: str
    _examples: Any = field(default=None, repr=False)

    def epochs(self, first: int, end: int, batch_size: int) -> tf.data.Dataset:
        """The batches of epochs `first` to `end - 1`, one epoch after the other.

        Epoch `e` reads the files in a permutation drawn from `(seed, e)`, then through a
        shuffle buffer whose seed is drawn from `(seed, e)` too (stateless). In memory, the
        examples are decoded once and gathered along the same permutation, so the order is the
        same as read from the files. A disk cache is read in its own (the source's) order: only
        the shuffle buffer orders its epochs.
        """
        import tensorflow as tf

        count = self.files.count
        seed = None if self.seed is None else self.seed % 2**63
        if self.cache == "memory" and self._examples is None:
            self._examples = self.files.files_dataset().batch(count).get_single_element()
        disk = None
        if self.cache not in ("memory", "none"):
            disk = cached(self.files.files_dataset(), self.cache, "train")
        examples, files, buffer = self._examples, self.files, self.buffer

        def epoch(number: tf.Tensor) -> tf.data.Dataset:
            key = None if seed is None else tf.stack([tf.constant(seed, tf.int64), number])
            if disk is not None:
                stream = disk
            else:
                order = tf.range(count, dtype=tf.int64)
                if key is not None:
                    order = tf.random.experimental.stateless_shuffle(order, seed=key)
                if examples is None:
                    stream = files.files_dataset(order)
                else:
                    stream = tf.data.Dataset.from_tensor_slices(order).map(
                        lambda i: tf.nest.map_structure(lambda t: tf.gather(t, i), examples)
                    )
            if key is None:
                return files.finished(stream).batch(batch_size)
            shuffle_seed = tf.random.stateless_uniform(
                [], seed=key + 1, minval=None, maxval=None, dtype=tf.int64
            )
            # `shuffle` pairs the graph's seed with this one and compares the pair with (0, 0)
            # in Python: under a graph seed of 0 (the spec's default seed) that would ask for
            # the truth of a symbolic tensor. A fixed graph seed in this traced function keeps
            # the pair's first element non-zero; the order still depends on (seed, epoch) alone.
            tf.random.set_seed(1)
            return files.finished(stream.shuffle(buffer, seed=shuffle_seed)).batch(batch_size)

        return tf.data.Dataset.range(first, max(end, first + 1)).flat_map(epoch)
