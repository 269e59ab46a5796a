"""Streamed sources: split by file or by example, read as training goes (docs/spec.md section 3).

A source that streams gives a list of files and how to read them (a `FileStream`): one example
per file (images, texts), or many (TFRecord, CSV). Its splits are drawn by a seeded hash of each
file's relative path when it has many files, else by example position (`split_files`), and each
epoch's order (the file order, then the shuffle buffer's seed) is drawn from `(seed, epoch)`
alone, so a resumed run reads exactly what an uninterrupted one reads.

A file that cannot be decoded is never silent: with `data.on_error: fail` reading it raises
an error that names it (`describe_unreadable`), with `skip` its example is left out and the
file noted (`FileSplit.skipped`).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlx.data.cache import cached
from dlx.data.sources import FileStream, SourceError
from dlx.errors import relative_path

if TYPE_CHECKING:
    import tensorflow as tf

MIN_FILES_TO_SPLIT_BY_FILE = 10
"""A source of many examples per file is split by file when it has at least this many files
(and every split asked for gets one); else by example position."""

DECODED_TOGETHER = 64
"""How many files of one example are decoded and checked together when a cache or a shuffle
buffer takes the examples one by one (`FileSplit.examples`)."""

INTERLEAVED_FILES = 8
"""How many files of a split training reads at once, one example of each in turn: a fixed
number, so that the order of examples is the same on every machine."""

_HASH_SCALE = 2.0**64
# Fractions are rounded up, so that a split asked for is never empty; the tolerance keeps
# float error (0.07 * 100 == 7.000000000000001) from adding an example.
_ROUNDING_TOLERANCE = 1e-9

_UNREADABLE = "dlx: unreadable file"
"""Marks the error that a file which could not be decoded raises, before the file's path."""

_CHUNK_BYTES = 2**20


@dataclass
class FileSplit:
    """Some of a stream's examples, one split's, in the source's order.

    Attributes:
        stream: the source's files.
        indices: the positions (in `stream.files`) of the files the split reads.
        keep: for a split by example position, whether each example of the stream (counted
            along its files) belongs to the split; `None`: every example of its files does.
        on_error: `fail` (a file that cannot be decoded raises an error naming it) or `skip`
            (its example is left out, and the file noted in `skipped`).
    """

    stream: FileStream
    indices: np.ndarray
    keep: np.ndarray | None = None
    on_error: str = "fail"
    _unreadable: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.on_error == "skip":
            import tensorflow as tf

            # Which of the split's files were found unreadable: filled while tf.data reads.
            self._unreadable = tf.Variable(tf.zeros([self.count], tf.bool), trainable=False)

    @property
    def count(self) -> int:
        """The number of files the split reads."""
        return len(self.indices)

    @property
    def num_examples(self) -> int:
        """The number of examples in the split."""
        if self.stream.counts is None:
            return len(self.indices)
        if self.keep is not None:
            return int(self.keep[self._positions(kept=False)].sum())
        return int(self.stream.counts[self.indices].sum())

    @property
    def paths(self) -> list[str]:
        return [str(self.stream.files[i]) for i in self.indices]

    @property
    def labels(self) -> np.ndarray | None:
        """The split's labels in its order (file after file), when the source knows them
        without decoding; `None` when it does not (TFRecord)."""
        if self.stream.labels is None:
            return None
        if self.stream.counts is None:
            return self.stream.labels[self.indices]
        return self.stream.labels[self._positions()]

    def _positions(self, kept: bool = True) -> np.ndarray:
        """The positions of the split's examples among the stream's, in the split's order
        (with `kept=False`, of every example of its files)."""
        offsets = self.stream.offsets
        positions = np.concatenate(
            [np.arange(offsets[i], offsets[i + 1]) for i in self.indices] or [np.arange(0)]
        )
        return positions if self.keep is None or not kept else positions[self.keep[positions]]

    def skipped(self) -> list[str]:
        """The files left out so far because they could not be decoded (`on_error: skip`)."""
        if self._unreadable is None:
            return []
        paths = self.paths
        return [paths[i] for i in np.flatnonzero(self._unreadable.numpy())]

    def examples(self, order: Any = None) -> tf.data.Dataset:
        """The decoded examples one by one, in the split's order or along `order` (a tensor of
        positions in the split's files): for a cache or a shuffle buffer, which hold examples.

        Files of one example are read as `batches` reads them, in batches of
        `DECODED_TOGETHER`. Files of many: in the split's order the files are read one after
        the other (their examples parsed in parallel by the source); along `order`,
        `INTERLEAVED_FILES` at once, an example of each in turn (deterministic, read in
        parallel). A record that cannot be read raises TensorFlow's error, which
        `describe_unreadable` turns into the file's name (`on_error: fail`), or is dropped
        (`skip`; not counted: a file's records are not).
        """
        if self.stream.read is not None:
            return self._records_dataset(order)
        return self.batches(DECODED_TOGETHER, order).unbatch()

    def batches(self, batch_size: int, order: Any = None) -> tf.data.Dataset:
        """The decoded examples in batches of `batch_size` (the last one partial), in the
        split's order or along `order` (see `examples`).

        Files of one example are decoded in parallel, in order; an example whose decoding
        raised is dropped (`ignore_errors`), and a check of each batch finds the gaps left in
        it: it raises an error that names the first file missing (`on_error: fail`), or notes
        the files missing as skipped (`skip`; the batches are cut again). Nothing runs
        one example at a time but the decoding's own parallel map, `ignore_errors` and the
        batching: the check is a few vector operations a batch, where `tf.py_function` would
        hold the GIL.
        """
        import tensorflow as tf

        if self.stream.read is not None:
            return self._records_dataset(order).batch(batch_size)
        paths = tf.constant(self.paths, tf.string)
        labels = tf.constant(self.labels, tf.int32)
        count = self.count
        positions = tf.range(count, dtype=tf.int64) if order is None else order
        decode, unreadable, skip = self.stream.decode, self._unreadable, self.on_error == "skip"
        assert decode is not None  # a stream without `read` decodes its files, one example each
        decoded = (
            tf.data.Dataset.from_tensor_slices(positions)
            .enumerate()
            .map(
                lambda k, i: (k, decode(tf.gather(paths, i), tf.gather(labels, i))),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            .ignore_errors()
            .batch(batch_size)
        )
        # A last batch past the end, of one example numbered `count`, finds the files missing
        # at the end too.
        end = tf.nest.map_structure(
            lambda spec: tf.zeros([1, *[d or 0 for d in spec.shape[1:]]], spec.dtype),
            decoded.element_spec,
        )
        end = (tf.constant([count], tf.int64), end[1])
        decoded = decoded.concatenate(tf.data.Dataset.from_tensors(end))

        def check(expected: tf.Tensor, batch: Any) -> tuple[tf.Tensor, Any]:
            numbers, _ = batch
            # The numbers a batch without gaps would hold, from the one expected next.
            unbroken = expected + tf.range(tf.size(numbers, tf.int64), dtype=tf.int64)
            if skip:
                span = tf.range(expected, numbers[-1] + 1)
                present = tf.scatter_nd(
                    (numbers - expected)[:, tf.newaxis],
                    tf.ones_like(numbers, tf.bool),
                    tf.shape(span, tf.int64),
                )
                missing = tf.gather(positions, tf.boolean_mask(span, ~present))
                marked = tf.tensor_scatter_nd_update(
                    unreadable.read_value(),
                    missing[:, tf.newaxis],
                    tf.ones_like(missing, tf.bool),
                )
                done = unreadable.assign(marked, read_value=False)
            else:
                gap = tf.not_equal(numbers, unbroken)
                first = tf.gather(unbroken, tf.argmax(tf.cast(gap, tf.int32)))
                path = tf.gather(paths, tf.gather(positions, tf.minimum(first, count - 1)))
                done = tf.debugging.Assert(~tf.reduce_any(gap), [_UNREADABLE, path, "."])
            with tf.control_dependencies([done]):
                return numbers[-1] + 1, tf.nest.map_structure(tf.identity, batch)

        checked = (
            decoded.scan(tf.constant(0, tf.int64), check)
            .filter(lambda numbers, _: numbers[0] < count)
            .map(lambda _, examples: examples)
        )
        # Batches short of the examples left out, cut again: whole ones but the last.
        return checked.rebatch(batch_size) if skip else checked

    def _records_dataset(self, order: Any) -> tf.data.Dataset:
        """The examples of files of many examples (see `examples`)."""
        import tensorflow as tf

        paths = tf.constant(self.paths, tf.string)

        positions = (
            tf.data.Dataset.range(self.count)
            if order is None
            else tf.data.Dataset.from_tensor_slices(order)
        )
        offsets = tf.constant(self.stream.offsets[self.indices], tf.int64)
        keep = None if self.keep is None else tf.constant(self.keep)
        read, skip = self.stream.read, self.on_error == "skip"
        assert read is not None  # called for a stream that reads its files (`examples`)

        def examples(i: tf.Tensor) -> tf.data.Dataset:
            dataset = read(tf.gather(paths, i))
            if keep is not None:
                numbered = dataset.enumerate(tf.gather(offsets, i))
                dataset = numbered.filter(lambda n, _: tf.gather(keep, n)).map(
                    lambda _, example: example
                )
            return dataset.ignore_errors() if skip else dataset

        return positions.interleave(
            examples,
            cycle_length=1 if order is None else min(INTERLEAVED_FILES, max(self.count, 1)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def finished(self, batches: tf.data.Dataset) -> tf.data.Dataset:
        """Batches of decoded examples (`batches`, or examples cached or shuffled, then
        batched) as the model takes them: the stream's `finish` applied, a batch at a time."""
        finish = self.stream.finish
        return batches if finish is None else batches.map(finish)


def describe_unreadable(error: BaseException, streams: list[FileStream]) -> str | None:
    """What an error raised by reading an unreadable file says, in a line: the file, why it
    cannot be decoded (TensorFlow's message, from decoding it again) and what to do; `None`
    for an error of another kind."""
    import tensorflow as tf

    found = re.search(rf"{_UNREADABLE}\]\s*\[(.*)\]\s*\[\.\]", str(error), re.DOTALL)
    if found is None:
        return _describe_unreadable_records(error, streams)
    path = found.group(1)
    reason = "TensorFlow could not decode it"
    for stream in streams:
        # Only files of one example (those a stream decodes) are reported by this marker.
        if stream.decode is not None and any(str(file) == path for file in stream.files):
            try:
                stream.decode(tf.constant(path), tf.constant(0, tf.int32))
            except (tf.errors.OpError, ValueError) as decoding:
                reason = _first_line(decoding)
            else:
                reason = "it reads now (was it being written?)"
            break
    return (
        f"could not read {relative_path(Path(path))}: {reason.rstrip('.')}. Fix or remove the "
        "file, or leave such files out with `data.on_error: skip`"
    )


def _describe_unreadable_records(error: BaseException, streams: list[FileStream]) -> str | None:
    """For an error raised while reading files of many examples (a damaged TFRecord file, a
    record that does not parse): the first file that raises it when the files are read again,
    one by one, in a line; `None` when the error is of another kind or no file raises it."""
    import tensorflow as tf

    if not isinstance(error, tf.errors.DataLossError | tf.errors.InvalidArgumentError):
        return None
    for stream in streams:
        if stream.read is None:
            continue
        for file in stream.files:
            try:
                for _ in stream.read(tf.constant(str(file))):
                    pass
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as reading:
                reason = _first_line(reading)
                return (
                    f"could not read {relative_path(file)}: {reason.rstrip('.')}. Fix or remove "
                    "the file, or leave such records out with `data.on_error: skip`"
                )
    return None


def _first_line(error: BaseException) -> str:
    """A TensorFlow error's own message, in a line."""
    line = getattr(error, "message", str(error)).strip().split("\n")[0]
    # Eager ops wrap the message: `{{function_node ...}} MESSAGE [Op:Name] name:`.
    return re.sub(r"^\{\{.*?\}\}\s*|\s*\[Op:.*$", "", line)


def split_files(
    stream: FileStream,
    validation_split: float,
    test_split: float,
    seed: int,
    on_error: str = "fail",
) -> tuple[FileSplit, FileSplit, FileSplit]:
    """The train, validation and test examples of a stream: by file, or by example position.

    By file: file `f` goes to the test split when `h(seed, f) < test_split`, else to
    validation when `h < test_split + validation_split`, else to training, where `h` is the
    sha256 of the seed and the file's path relative to the source's folder, read as a number
    in [0, 1). The same seed gives the same splits on any machine, and a file added later
    leaves the others where they were; the splits' sizes are the fractions asked for only on
    average. Sources of one example per file (images, texts) are always split so.

    A source of many examples per file (TFRecord, CSV) is split by file when it has at least
    `MIN_FILES_TO_SPLIT_BY_FILE` files and every split asked for gets one; else by example
    position, as in-memory sources are: a permutation of its examples (counted file after
    file) drawn by `numpy.random.default_rng(seed)` gives its first `ceil(test_split * n)`
    examples to test, the next `ceil(validation_split * n)` to validation, and the rest to
    training; each split keeps the source's order. A single CSV file keeps the splits it had
    when CSV files were read into memory. `on_error` is each split's (see `FileSplit`).

    Raises:
        SourceError: a split asked for (or training) gets no example.
    """
    position = np.array(
        [_unit_hash(seed, file.relative_to(stream.root).as_posix()) for file in stream.files]
    )
    test = np.flatnonzero(position < test_split)
    validation = np.flatnonzero(
        (position >= test_split) & (position < test_split + validation_split)
    )
    train = np.flatnonzero(position >= test_split + validation_split)
    every_split_has_files = all(
        len(indices) or not fraction
        for indices, fraction in ((train, 1.0), (validation, validation_split), (test, test_split))
    )
    many_files = len(stream.files) >= MIN_FILES_TO_SPLIT_BY_FILE and every_split_has_files
    if stream.counts is not None and not many_files:
        return _split_examples(stream, validation_split, test_split, seed, on_error)
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
    train_files, validation_files, test_files = (
        FileSplit(stream, part, on_error=on_error) for part in (train, validation, test)
    )
    return train_files, validation_files, test_files


def _split_examples(
    stream: FileStream, validation_split: float, test_split: float, seed: int, on_error: str
) -> tuple[FileSplit, FileSplit, FileSplit]:
    """The splits of a stream by example position (see `split_files`)."""
    count = stream.num_examples
    num_test, num_validation = (
        math.ceil(count * fraction - _ROUNDING_TOLERANCE) if fraction else 0
        for fraction in (test_split, validation_split)
    )
    if count - num_test - num_validation <= 0:
        raise SourceError(
            f"the splits leave no training data: {count} examples, of which "
            f"{num_test} for test (test_split={test_split}) and {num_validation} for "
            f"validation (validation_split={validation_split})"
        ).at("data")
    order = np.random.default_rng(seed).permutation(count)
    every_file = np.arange(len(stream.files))
    splits = []
    for start, stop in (
        (num_test + num_validation, count),
        (num_test, num_test + num_validation),
        (0, num_test),
    ):
        keep = np.zeros(count, dtype=bool)
        keep[order[start:stop]] = True
        splits.append(FileSplit(stream, every_file, keep, on_error))
    return splits[0], splits[1], splits[2]


def _unit_hash(seed: int, relative: str) -> float:
    digest = hashlib.sha256(f"{seed}\0{relative}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _HASH_SCALE


def digest_stream(digest: Any, stream: FileStream, content: bool = False) -> int:
    """Add a stream's files to a sha256 digest, and count its examples.

    Each file's relative path and label (files of one example), in sorted order, then its
    size and modification time (`data.fingerprint: files`: nothing is read), or with `content`
    its bytes, read in chunks (`data.fingerprint: content`: every file is read once, which
    takes as long as a pass over the files on disk).
    """
    labels = stream.labels if stream.counts is None else [""] * len(stream.files)
    assert labels is not None  # a stream of files of one example has their labels
    for relative, file, label in sorted(
        (file.relative_to(stream.root).as_posix(), file, str(label))
        for file, label in zip(stream.files, labels, strict=True)
    ):
        digest.update(f"{relative}\0{label}\0".encode())
        if not content:
            status = file.stat()
            digest.update(f"{status.st_size}\0{status.st_mtime_ns}\0".encode())
            continue
        with file.open("rb") as bytes_:
            while chunk := bytes_.read(_CHUNK_BYTES):
                digest.update(chunk)
        digest.update(b"\0")
    return stream.num_examples


@dataclass(frozen=True)
class Sharding:
    """How the training split of a job is divided among its workers.

    Attributes:
        policy: `file`: each worker reads only its own files (`worker_files`), with
            `tf.data`'s auto-sharding off; `data`: every worker reads every example and keeps
            its part of each global batch (`AutoShardPolicy.DATA`).
        workers: the workers of the job.
        files: the training files, or `None` when the data is in memory.
        reason: why the split is sharded by example (empty when by file).
    """

    policy: str
    workers: int
    files: int | None
    reason: str = ""

    @property
    def files_per_worker(self) -> str | None:
        """`"16"`, or `"16-17"` when the files do not divide evenly; `None` by example."""
        if self.policy != "file" or self.files is None:
            return None
        low, high = self.files // self.workers, -(-self.files // self.workers)
        return str(low) if low == high else f"{low}-{high}"

    def describe(self) -> str:
        """One line for the run's output: `sharded by file: 16 files per worker (2 workers)`."""
        if self.policy == "file":
            return (
                f"sharded by file: {self.files_per_worker} files per worker "
                f"({self.workers} workers)"
            )
        return f"sharded by example: {self.reason}"


def choose_sharding(files: int | None, workers: int, batch_size: int, replicas: int) -> Sharding:
    """How `workers` workers share a training split of `files` files (`None`: in memory).

    By file when there are at least as many files as workers and the global batch splits
    evenly across the `replicas` (so that every worker takes the same number of examples from
    its own files at every step); else by example.
    """
    if files is None:
        reason = "the data is in memory, not read from files"
    elif files < workers:
        reason = f"{files} files for {workers} workers"
    elif batch_size % replicas:
        reason = f"the batch size {batch_size} does not split evenly across {replicas} replicas"
    else:
        return Sharding("file", workers, files)
    return Sharding("data", workers, files, reason)


def worker_files(files: FileSplit, workers: int, index: int) -> FileSplit:
    """The files worker `index` of `workers` reads: positions `index`, `index + workers`, ...
    of the split's files. The assignment is fixed for the whole run (a worker's cache holds
    only its own files); each epoch orders them afresh."""
    return FileSplit(files.stream, files.indices[index::workers], files.keep, files.on_error)


@dataclass
class TrainStream:
    """The training split of a streamed source, ordered afresh each epoch.

    Attributes:
        files: the training files (a worker's own, when sharded by file).
        seed: the seed each epoch's order is drawn from; `None`: the source's order, unshuffled.
        buffer: the shuffle buffer's size, in examples.
        cache: `memory`, `none` or a disk cache's file prefix (see `choose_cache`).
    """

    files: FileSplit
    seed: int | None
    buffer: int
    cache: str
    _examples: Any = field(default=None, repr=False)

    def for_worker(self, workers: int, index: int) -> TrainStream:
        """The stream of worker `index` of `workers`: its own files (`worker_files`)."""
        return TrainStream(
            worker_files(self.files, workers, index), self.seed, self.buffer, self.cache
        )

    def epochs(
        self, first: int, end: int, batch_size: int, per_epoch: int | None = None
    ) -> tf.data.Dataset:
        """The batches of epochs `first` to `end - 1`, one epoch after the other.

        Epoch `e` reads the files in a permutation drawn from `(seed, e)`, then, for files of
        many examples or a disk cache, through a shuffle buffer whose seed is drawn from
        `(seed, e)` too (stateless): files of one example read along a permutation need no
        buffer, which would only delay the epoch's start while it fills. In memory, the
        examples are decoded once and gathered along the same permutation, so the order is the
        same as read from the files when each file holds one example (with many, the
        permutation is of the examples). A disk cache is read in its own (the source's) order: only
        the shuffle buffer orders its epochs.

        With `on_error: skip`, an epoch that left examples out is filled up to its length with
        its own first examples, read again: every epoch has the same number of steps, and a
        resumed run still reads what an uninterrupted one reads.

        Args:
            first: the first epoch.
            end: the epoch after the last.
            batch_size: the batch size.
            per_epoch: `None`: each epoch is its examples, ending with its own partial batch.
                A number: each epoch is exactly this many examples, its own read again from
                its start when it has fewer, cut when it has more; the
                epochs are then batched as one stream, so that every batch is full (a worker
                of a job sharded by file: every worker reads the same number of examples).
        """
        import tensorflow as tf

        # In memory, the permutation is of the examples; read from the files, of the files.
        count = self.files.num_examples if self.cache == "memory" else self.files.count
        seed = None if self.seed is None else self.seed % 2**63
        if self.cache == "memory" and self._examples is None:
            self._examples = self.files.batches(count).get_single_element()
        disk = None
        if self.cache not in ("memory", "none"):
            disk = cached(self.files.examples(), self.cache, "train")
        examples, files, buffer = self._examples, self.files, self.buffer
        skip = files.on_error == "skip"
        readable = count if examples is None else int(tf.nest.flatten(examples)[0].shape[0])
        # Files of one example read along a permutation are shuffled already: a shuffle buffer
        # would only hold `buffer` decoded examples and delay each epoch's start.
        buffered = seed is not None and (disk is not None or files.stream.read is not None)
        # Batched as they are read, unless examples must be counted one by one: to fill an
        # epoch up (`skip`), to cut epochs to a length, or through a shuffle buffer.
        batched = not (skip or buffered or per_epoch is not None)

        def gather(indices: tf.Tensor) -> Any:
            return tf.nest.map_structure(lambda t: tf.gather(t, indices), examples)

        def epoch(number: tf.Tensor) -> tf.data.Dataset:
            key = None if seed is None else tf.stack([tf.constant(seed, tf.int64), number])
            if disk is not None:
                stream = disk
            else:
                order = tf.range(readable, dtype=tf.int64)
                if key is not None:
                    order = tf.random.experimental.stateless_shuffle(order, seed=key)
                if examples is not None:
                    stream = tf.data.Dataset.from_tensor_slices(order)
                    if batched:
                        return stream.batch(batch_size).map(gather)
                    stream = stream.map(gather)
                elif batched:
                    return files.batches(batch_size, order)
                else:
                    stream = files.examples(order)
            if skip:
                stream = stream.repeat().take(files.num_examples)
            if key is not None and buffered:
                shuffle_seed = tf.random.stateless_uniform(
                    [], seed=key + 1, minval=None, maxval=None, dtype=tf.int64
                )
                # `shuffle` pairs the graph's seed with this one and compares the pair with
                # (0, 0) in Python: under a graph seed of 0 (the spec's default seed) that
                # would ask for the truth of a symbolic tensor. A fixed graph seed in this
                # traced function keeps the pair's first element non-zero; the order still
                # depends on (seed, epoch) alone.
                tf.random.set_seed(1)
                stream = stream.shuffle(buffer, seed=shuffle_seed)
            if per_epoch is None:
                return stream.batch(batch_size)
            return stream.repeat().take(per_epoch)

        epochs = tf.data.Dataset.range(first, max(end, first + 1)).flat_map(epoch)
        return files.finished(epochs if per_epoch is None else epochs.batch(batch_size))
