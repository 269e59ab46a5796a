"""How much does dlx cost on top of plain Keras? Prints one JSON line, last.

Trains the same model on the same data, with the same batch size and epochs, in one process:

- through dlx's own training path (`dlx.api.train`, tracking on: a real sqlite MLflow store);
- as hand-written Keras: `model.fit` on a hand-made `tf.data` pipeline (cache, shuffle, batch,
  prefetch), no callbacks;
- as the same hand-written Keras fit plus dlx's MLflow metrics callback on a real run
  (tracking on), to isolate what per-epoch tracking costs.

Throughput is examples per second of `Model.fit` alone (start-up, data reading and model
logging are not training). The three are interleaved, `--repeats` times, and medians are
compared, because this machine is noisy. Usage:

    python bench/train_overhead.py [--repeats 5] [--samples 20000] [--epochs 4]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

SPEC = """\
version: 1
name: bench
seed: 7
data:
  source: {{synthetic: {{samples: {samples}, x_shape: [8, 8, 1], classes: 10}}}}
model:
  layers:
    - input: {{shape: [8, 8, 1]}}
    - conv2d: {{filters: 32, kernel_size: 3, activation: relu, padding: same}}
    - max_pooling2d: 2
    - flatten
    - dense: {{units: 64, activation: relu}}
    - dense: {{units: 10, activation: softmax}}
train:
  epochs: {epochs}
  batch_size: {batch_size}
  optimizer: adam
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
tracking:
  log_model: false
"""


def keras_model():
    import keras

    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def keras_fit(x, y, args, callbacks=()) -> float:
    """Hand-written Keras; returns examples per second of `fit`."""
    import keras
    import tensorflow as tf

    keras.utils.clear_session()
    keras.utils.set_random_seed(7)
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .cache()
        .shuffle(len(x), seed=7)
        .batch(args.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    model = keras_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(dataset, epochs=args.epochs, verbose=0, shuffle=False, callbacks=list(callbacks))
    return len(x) * args.epochs / (time.perf_counter() - started)


def keras_fit_tracked(x, y, args) -> float:
    from dlx.track import MlflowMetricsCallback, TrackedRun

    with TrackedRun("bench-keras", run_name="keras+tracking") as run:
        return keras_fit(x, y, args, [MlflowMetricsCallback(run)])


def dlx_fit(spec: Path) -> float:
    from dlx import api

    with contextlib.redirect_stdout(io.StringIO()):
        result = api.train(spec)
    return result.samples_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    from dlx.data import SourceContext, call_source
    from dlx.tensorflow_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):
        spec = Path(folder) / "bench.yaml"
        spec.write_text(
            SPEC.format(samples=args.samples, epochs=args.epochs, batch_size=args.batch_size)
        )
        component = {"synthetic": {"samples": args.samples, "x_shape": [8, 8, 1], "classes": 10}}
        data = call_source(component, SourceContext(base_dir=Path(folder), seed=7))
        x, y = data.x, data.y
        dlx_rates, keras_rates, tracked_rates = [], [], []
        for repeat in range(args.repeats):
            dlx_rates.append(dlx_fit(spec))
            keras_rates.append(keras_fit(x, y, args))
            tracked_rates.append(keras_fit_tracked(x, y, args))
            print(
                f"repeat {repeat + 1}: dlx {dlx_rates[-1]:.0f}/s  keras {keras_rates[-1]:.0f}/s"
                f"  keras+tracking {tracked_rates[-1]:.0f}/s",
                flush=True,
            )
    dlx_rate = statistics.median(dlx_rates)
    keras_rate = statistics.median(keras_rates)
    tracked_rate = statistics.median(tracked_rates)
    print(
        json.dumps(
            {
                "samples": args.samples,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "repeats": args.repeats,
                "dlx_samples_per_s": round(dlx_rate, 1),
                "keras_samples_per_s": round(keras_rate, 1),
                "ratio": round(dlx_rate / keras_rate, 4),
                "tracking_on_samples_per_s": round(tracked_rate, 1),
                "tracking_ratio": round(tracked_rate / keras_rate, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
