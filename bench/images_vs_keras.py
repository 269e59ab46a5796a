"""Epoch time of `dlx train` on an image folder against hand-written Keras. Prints JSON, last.

On a folder of 64x64 PNG images in 10 class folders (`image_folder.py`; 4,000 by default,
`--n 40000` for the issue's folder), trains the same CNN on both sides with batch 64 and 10%
of the images for validation, read every epoch on both sides. `--model` picks the CNN
(`data_memory.MODELS`, after a `rescaling: 1/255`):

- `light`: a strided convolution, pooling, a second convolution, global average pooling,
  dense 10. A step costs less than decoding its batch on 2 cores: the epoch waits on the input
  pipeline, whose cost this measures (as any model does on a GPU);
- `heavy`: conv/pool twice, flatten, dense 64, dense 10. Both sides wait on the model.

The two sides:

- dlx (`dlx.api.train`, in this process, tracking on: a real sqlite MLflow store). An epoch's
  time is the time between two epochs' metrics in the store (each is stamped when its epoch
  ends: training, validation, checkpoint, metrics journal);
- hand-written Keras: `keras.utils.image_dataset_from_directory(folder,
  image_size=(64, 64), batch_size=64, validation_split=0.1, subset="both", seed=7)`, each
  split `.prefetch(AUTOTUNE)`, the same model, `fit(..., validation_data=...)`; an epoch's
  time is between two `on_epoch_end` calls.

Both read every image of the folder once per epoch (training or validation), so throughput
is the folder's images per second of epoch. Epoch 1 (tracing, the first reads) is left out:
the median over epochs 2..N of each run, then the median over `--repeats` interleaved runs
(dlx, Keras, dlx, Keras, ...; this machine is shared and noisy). dlx's spec says
`cache: none` by default, what `cache: auto` picks for the 40,000 images; on a smaller
folder `auto` would keep the decoded images in memory, which Keras's pipeline does not.
Usage:

    python bench/images_vs_keras.py [--n 4000] [--model light|heavy] [--epochs 3]
        [--repeats 3] [--batch-size 64] [--dir FOLDER]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from itertools import pairwise
from pathlib import Path

from data_memory import MODELS, write_spec
from image_folder import SIZE, write_image_folder

TARGETS = {"light": 1.0, "heavy": 0.9}
"""dlx's images per second over Keras's, at least: input-bound, dlx's pipeline must be as fast;
compute-bound, the two wait on the same model."""


def dlx_epochs(spec: Path, store: Path) -> list[float]:
    """Train the spec through dlx; each epoch's seconds, from its metrics' timestamps."""
    from dlx import api

    with contextlib.redirect_stdout(io.StringIO()):
        result = api.train(spec, tracking_uri=f"sqlite:///{store}")
    with contextlib.closing(sqlite3.connect(store)) as connection:
        stamps = [
            row[0]
            for row in connection.execute(
                "SELECT timestamp FROM metrics WHERE run_uuid = ? AND key = 'loss' ORDER BY step",
                (result.run_id,),
            )
        ]
    return [(later - earlier) / 1000 for earlier, later in pairwise(stamps)]


def keras_model(name: str):
    """The Keras twin of `data_memory.MODELS[name]`."""
    import keras

    layers = keras.layers
    body = {
        "heavy": [
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ],
        "light": [
            layers.Conv2D(16, 3, strides=2, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(10, activation="softmax"),
        ],
    }[name]
    return keras.Sequential([keras.Input((SIZE, SIZE, 3)), layers.Rescaling(1 / 255), *body])


def keras_epochs(folder: Path, epochs: int, batch_size: int, model_name: str) -> list[float]:
    """Hand-written Keras on the folder; the seconds of epochs 2..N."""
    import keras
    import tensorflow as tf

    keras.utils.clear_session()
    keras.utils.set_random_seed(7)
    with contextlib.redirect_stdout(io.StringIO()):  # "Found 4000 files belonging to..."
        train, validation = keras.utils.image_dataset_from_directory(
            folder,
            image_size=(SIZE, SIZE),
            batch_size=batch_size,
            validation_split=0.1,
            subset="both",
            seed=7,
        )
    model = keras_model(model_name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ends: list[float] = []
    clock = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: ends.append(time.time()))
    model.fit(
        train.prefetch(tf.data.AUTOTUNE),
        validation_data=validation.prefetch(tf.data.AUTOTUNE),
        epochs=epochs,
        verbose=0,
        shuffle=False,  # the file paths are shuffled by the dataset
        callbacks=[clock],
    )
    return [later - earlier for earlier, later in pairwise(ends)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="images in the folder (4000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each run (3)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, interleaved (3)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", choices=sorted(MODELS), default="light", help="(light)")
    parser.add_argument("--cache", default="none", help="data.cache of dlx's spec (none)")
    parser.add_argument("--dir", type=Path, help="keep the image folder here (and reuse it)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: epoch 1 is left out")

    from dlx.tensorflow_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="dlx-images-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    dlx_rates, keras_rates = [], []
    try:
        images = write_image_folder(folder / f"images-{args.n}", args.n)
        with tempfile.TemporaryDirectory() as run_folder, contextlib.chdir(run_folder):
            spec = write_spec(
                Path(run_folder) / "bench.yaml",
                images,
                args.epochs,
                args.batch_size,
                args.cache,
                args.model,
            )
            for repeat in range(args.repeats):
                dlx_seconds = statistics.median(dlx_epochs(spec, Path(run_folder) / "mlflow.db"))
                keras_seconds = statistics.median(
                    keras_epochs(images, args.epochs, args.batch_size, args.model)
                )
                dlx_rates.append(args.n / dlx_seconds)
                keras_rates.append(args.n / keras_seconds)
                print(
                    f"repeat {repeat + 1}: dlx {dlx_seconds:.1f}s/epoch ({dlx_rates[-1]:.0f}/s)"
                    f"  keras {keras_seconds:.1f}s/epoch ({keras_rates[-1]:.0f}/s)",
                    flush=True,
                )
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    dlx_rate, keras_rate = statistics.median(dlx_rates), statistics.median(keras_rates)
    print(
        json.dumps(
            {
                "images": args.n,
                "epochs": args.epochs,
                "repeats": args.repeats,
                "model": args.model,
                "batch_size": args.batch_size,
                "cache": args.cache,
                "dlx_images_per_s": round(dlx_rate, 1),
                "keras_images_per_s": round(keras_rate, 1),
                "ratio": round(dlx_rate / keras_rate, 4),
                "target": TARGETS[args.model],
                "meets_target": dlx_rate / keras_rate >= TARGETS[args.model],
            }
        )
    )


if __name__ == "__main__":
    main()
