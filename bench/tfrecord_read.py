"""Does dlx read TFRecord files as fast as hand-written `tf.data`? Prints one JSON line, last.

Writes `--shards` TFRecord files (32 by default) of `--examples` `tf.train.Example`s in all
(100,000): a 32x32x3 uint8 image as raw bytes and an int64 label, the layout of the
`tfrecord` source's `encoding: raw`. Then reads one epoch of shuffled batches of 128, two ways,
interleaved (A B A B ...), `--repeats` times, and reports the median examples per second:

- **dlx**: the `tfrecord` source through `make_splits` (`cache: none`, the default shuffle
  buffer of 10,000), one epoch of `Splits.epochs` (epoch 1: the order of a later epoch);
- **hand-written**: what the TensorFlow guide writes: `Dataset.list_files(pattern,
  shuffle=True)`, `interleave(TFRecordDataset, cycle_length=8, num_parallel_calls=AUTOTUNE,
  deterministic=True)`, `map(parse_single_example + decode_raw, AUTOTUNE)`, `shuffle(10000)`,
  `batch(128)`, `prefetch(AUTOTUNE)`.

Both read the same files, parse the same features and hand out the same float and integer
tensors; nothing is cached. The target (issue 12): dlx ÷ hand-written >= 0.95. Usage:

    python bench/tfrecord_read.py [--examples 100000] [--shards 32] [--repeats 5] [--dir FOLDER]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

TARGET = 0.95
SHAPE = (32, 32, 3)
BATCH = 128


def write_shards(folder: Path, examples: int, shards: int) -> None:
    """`shards` files of `examples` records in all, unless the folder holds them already."""
    import numpy as np
    import tensorflow as tf

    if len(list(folder.glob("train-*.tfrecord"))) == shards:
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    writers = [
        tf.io.TFRecordWriter(str(folder / f"train-{i:05d}-of-{shards:05d}.tfrecord"))
        for i in range(shards)
    ]
    for n in range(examples):
        image = rng.integers(0, 256, SHAPE, dtype=np.uint8)
        feature = {
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[n % 10])),
        }
        record = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[n % shards].write(record.SerializeToString())
    for writer in writers:
        writer.close()


def dlx_epoch(folder: Path) -> tuple[object, int]:
    """dlx's batches of epoch 1, and the number of examples of an epoch."""
    from dlx.data import SourceContext, make_splits
    from dlx.spec.schema import Data

    data = Data(
        source={
            "tfrecord": {
                "files": "train-*.tfrecord",
                "features": {
                    "image": {"shape": list(SHAPE), "dtype": "uint8"},
                    "label": {"shape": [], "dtype": "int64"},
                },
                "label": "label",
            }
        },
        cache="none",
    )
    splits = make_splits(data, context=SourceContext(folder, seed=7), batch_size=BATCH)
    return splits.epochs(1, 2), splits.num_train


def hand_written_epoch(folder: Path) -> object:
    import tensorflow as tf

    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        values = tf.io.parse_single_example(record, features)
        image = tf.reshape(tf.io.decode_raw(values["image"], tf.uint8), SHAPE)
        return image, values["label"]

    files = tf.data.Dataset.list_files(str(folder / "train-*.tfrecord"), shuffle=True, seed=7)
    return (
        files.interleave(
            tf.data.TFRecordDataset,
            cycle_length=8,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .shuffle(10_000, seed=7)
        .batch(BATCH)
        .prefetch(tf.data.AUTOTUNE)
    )


def examples_per_second(dataset: object) -> float:
    start, count = time.perf_counter(), 0
    for _, y in dataset:
        count += int(y.shape[0])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="keep the shards here (and reuse them)")
    arguments = parser.parse_args()
    folder = arguments.dir or Path(tempfile.mkdtemp(prefix="dlx-bench-tfrecord-"))
    try:
        write_shards(folder, arguments.examples, arguments.shards)
        dlx_dataset, count = dlx_epoch(folder)
        hand_dataset = hand_written_epoch(folder)
        examples_per_second(dlx_dataset)  # warm-up: tracing, the OS file cache
        examples_per_second(hand_dataset)
        rates: dict[str, list[float]] = {"dlx": [], "hand_written": []}
        for repeat in range(arguments.repeats):
            rates["dlx"].append(examples_per_second(dlx_dataset))
            rates["hand_written"].append(examples_per_second(hand_dataset))
            print(
                f"repeat {repeat + 1}: dlx {rates['dlx'][-1]:,.0f} examples/s, "
                f"hand-written {rates['hand_written'][-1]:,.0f} examples/s",
                flush=True,
            )
        medians = {name: statistics.median(values) for name, values in rates.items()}
        ratio = medians["dlx"] / medians["hand_written"]
        print(
            json.dumps(
                {
                    "examples": count,
                    "shards": arguments.shards,
                    "dlx_examples_per_s": round(medians["dlx"]),
                    "hand_written_examples_per_s": round(medians["hand_written"]),
                    "ratio": round(ratio, 3),
                    "target": TARGET,
                    "ok": ratio >= TARGET,
                }
            )
        )
    finally:
        if arguments.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
