"""Write scikit-learn's digits as sharded TFRecord files of `tf.train.Example`, offline.

Each example holds `image`, the 8×8 digit as a one-channel PNG (levels 0..16 scaled to
0..240), and `label`, its class as an int64. The training examples go to `--shards` files
`data/train-NNNNN-of-MMMMM.tfrecord`, round robin, and a fifth of the digits to
`data/validation-00000-of-00001.tfrecord`: the layout `digits.yaml` reads.

    python examples/tfrecord/write_digits.py [--output examples/tfrecord/data] [--shards 32]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def write(output: Path, shards: int) -> None:
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * 15).astype(np.uint8)[..., np.newaxis]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    held_out = len(order) // 5
    output.mkdir(parents=True, exist_ok=True)

    def example(i: int) -> bytes:
        feature = {
            "image": tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[tf.io.encode_png(images[i]).numpy()])
            ),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[labels[i]])),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    with tf.io.TFRecordWriter(str(output / "validation-00000-of-00001.tfrecord")) as writer:
        for i in order[:held_out]:
            writer.write(example(i))
    train = order[held_out:]
    for shard in range(shards):
        name = f"train-{shard:05d}-of-{shards:05d}.tfrecord"
        with tf.io.TFRecordWriter(str(output / name)) as writer:
            for i in train[shard::shards]:
                writer.write(example(i))
    print(f"{len(train)} training examples in {shards} files, {held_out} for validation: {output}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--shards", type=int, default=32)
    arguments = parser.parse_args()
    write(arguments.output, arguments.shards)
