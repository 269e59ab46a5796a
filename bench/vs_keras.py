"""Is dlx faster than the Keras script a user would write? Prints one JSON line, last.

Three workloads, each trained on the same arrays with the same model, batch size and epochs:

- `cnn`: 8x8x1 -> conv 32 -> max pool -> dense 64 -> 10; 20,000 examples, batch 32;
- `mlp`: 784 -> 1024 -> 1024 -> 10; 60,000 examples, batch 128;
- `lstm`: a text classifier: 80 token ids (of 10,000) -> embedding 32 -> LSTM 32 -> 2;
  6,400 examples, batch 64.

Each is trained two ways, interleaved (dlx, Keras, dlx, Keras, ...) `--repeats` times:

- with dlx's defaults: `dlx.api.train` on a spec whose data is an `npz` file of the arrays
  (no validation, no test split, tracking on in a real sqlite store, no live bar);
- as the script a Keras user writes: `Sequential`, `compile`, `fit(x, y, batch_size, epochs)` on
  the NumPy arrays (`verbose=0`: no progress bar, which would only slow it down).

An epoch's time is the time from the end of the one before it to its own end, so the work
between epochs (dlx's checkpoint and metrics journal) counts; the first epoch (tracing) is left
out: the figure is the median of epochs 2..N over all repeats, as examples per second. The MLP's
training FLOP/s (6 FLOPs per weight and example) are divided by the float32 matmul peak measured
in the same process (square 2048 matmuls, best of several). The last line is JSON: each
workload's figures and ratio (dlx / Keras), their geometric mean, and the MLP's fraction of the
peak. Usage:

    python bench/vs_keras.py [--repeats 2] [--epochs 4] [--workloads cnn,mlp,lstm]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPEC = """\
version: 1
name: vs-keras-{name}
seed: 7
data:
  source: {{npz: {{path: {name}.npz}}}}
model:
  layers:
{layers}
train:
  epochs: {epochs}
  batch_size: {batch_size}
  optimizer: adam
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
tracking:
  uri: sqlite:///{store}
  log_model: false
"""


@dataclass
class Workload:
    """A model, as dlx spec entries and as Keras layers, and its data."""

    name: str
    samples: int
    batch_size: int
    layers: str
    """The spec's `model.layers`, one entry a line."""

    def arrays(self, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        if self.name == "cnn":
            return rng.random((self.samples, 8, 8, 1), "float32"), rng.integers(0, 10, self.samples)
        if self.name == "mlp":
            return rng.random((self.samples, 784), "float32"), rng.integers(0, 10, self.samples)
        return rng.integers(0, 10000, (self.samples, 80)).astype("int32"), rng.integers(
            0, 2, self.samples
        )

    def keras_model(self) -> Any:
        import keras
        from keras import layers

        if self.name == "cnn":
            stack = [
                keras.Input((8, 8, 1)),
                layers.Conv2D(32, 3, activation="relu", padding="same"),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dense(64, activation="relu"),
                layers.Dense(10, activation="softmax"),
            ]
        elif self.name == "mlp":
            stack = [
                keras.Input((784,)),
                layers.Dense(1024, activation="relu"),
                layers.Dense(1024, activation="relu"),
                layers.Dense(10, activation="softmax"),
            ]
        else:
            stack = [
                keras.Input((80,), dtype="int32"),
                layers.Embedding(10000, 32),
                layers.LSTM(32),
                layers.Dense(2, activation="softmax"),
            ]
        return keras.Sequential(stack)


WORKLOADS = {
    "cnn": Workload(
        "cnn",
        20000,
        32,
        """\
    - input: {shape: [8, 8, 1]}
    - conv2d: {filters: 32, kernel_size: 3, activation: relu, padding: same}
    - max_pooling2d: 2
    - flatten
    - dense: {units: 64, activation: relu}
    - dense: {units: 10, activation: softmax}""",
    ),
    "mlp": Workload(
        "mlp",
        60000,
        128,
        """\
    - input: {shape: [784]}
    - dense: {units: 1024, activation: relu}
    - dense: {units: 1024, activation: relu}
    - dense: {units: 10, activation: softmax}""",
    ),
    "lstm": Workload(
        "lstm",
        6400,
        64,
        """\
    - input: {shape: [80], dtype: int32}
    - embedding: {input_dim: 10000, output_dim: 32}
    - lstm: 32
    - dense: {units: 2, activation: softmax}""",
    ),
}
MLP_WEIGHTS = 784 * 1024 + 1024 * 1024 + 1024 * 10
"""The MLP's multiply-adds per example forward; a training step costs 6 FLOPs per weight."""


def keras_epochs(workload: Workload, x: np.ndarray, y: np.ndarray, epochs: int) -> list[float]:
    """The naive Keras script; the seconds of epochs 2..N."""
    import keras

    keras.utils.clear_session()
    keras.utils.set_random_seed(7)
    model = workload.keras_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ends: list[float] = []
    clock = keras.callbacks.LambdaCallback(  # epoch hooks only: nothing per batch
        on_train_begin=lambda logs: ends.append(time.perf_counter()),
        on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()),
    )
    model.fit(x, y, batch_size=workload.batch_size, epochs=epochs, verbose=0, callbacks=[clock])
    return list(np.diff(ends)[1:])


def dlx_epochs(spec: Path) -> tuple[list[float], str]:
    """dlx's defaults; the seconds of epochs 2..N (from the run's metric timestamps), and the
    steps per execution it chose."""
    from mlflow import MlflowClient

    from dlx import api

    with contextlib.redirect_stdout(io.StringIO()):
        result = api.train(spec)
    history = MlflowClient(result.tracking_uri).get_metric_history(result.run_id, "loss")
    stamps = [m.timestamp / 1000 for m in sorted(history, key=lambda m: m.step)]
    return list(np.diff(stamps)), result.steps_per_execution


def matmul_peak_flops(size: int = 2048, tries: int = 5) -> float:
    """The float32 matmul FLOP/s of this machine: the best of several timed square matmuls."""
    import tensorflow as tf

    a = tf.random.uniform((size, size))
    b = tf.random.uniform((size, size))
    product = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    product(a, b).numpy()
    best = math.inf
    for _ in range(tries):
        started = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workloads", default="cnn,mlp,lstm")
    args = parser.parse_args()

    from dlx.tensorflow_import import import_tensorflow_quietly
    from dlx.track.store import quiet_mlflow

    import_tensorflow_quietly()
    quiet_mlflow()
    names = args.workloads.split(",")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        specs, data = {}, {}
        for name in names:
            workload = WORKLOADS[name]
            x, y = data[name] = workload.arrays()
            np.savez(Path(folder) / f"{name}.npz", x=x, y=y)
            specs[name] = Path(folder) / f"{name}.yaml"
            specs[name].write_text(
                SPEC.format(
                    name=name,
                    layers=workload.layers,
                    epochs=args.epochs,
                    batch_size=workload.batch_size,
                    store=Path(folder) / "mlflow.db",
                )
            )
        seconds: dict[str, dict[str, list[float]]] = {n: {"dlx": [], "keras": []} for n in names}
        for repeat in range(args.repeats):
            for name in names:
                dlx, chosen = dlx_epochs(specs[name])
                keras = keras_epochs(WORKLOADS[name], *data[name], args.epochs)
                seconds[name]["dlx"] += dlx
                seconds[name]["keras"] += keras
                results.setdefault(name, {})["steps_per_execution"] = chosen
                print(
                    f"repeat {repeat + 1} {name}: dlx {statistics.median(dlx):.3f}s/epoch "
                    f"(steps per execution {chosen}), keras {statistics.median(keras):.3f}s/epoch",
                    flush=True,
                )
        peak = matmul_peak_flops()
    for name in names:
        samples = WORKLOADS[name].samples
        dlx_rate = samples / statistics.median(seconds[name]["dlx"])
        keras_rate = samples / statistics.median(seconds[name]["keras"])
        results[name].update(
            dlx_samples_per_s=round(dlx_rate, 1),
            keras_samples_per_s=round(keras_rate, 1),
            ratio=round(dlx_rate / keras_rate, 3),
        )
    ratios = [results[name]["ratio"] for name in names]
    summary: dict[str, Any] = {
        "repeats": args.repeats,
        "epochs": args.epochs,
        "workloads": results,
        "geometric_mean": round(math.exp(statistics.fmean(math.log(r) for r in ratios)), 3),
        "matmul_peak_gflops": round(peak / 1e9, 1),
    }
    if "mlp" in results:
        flops = 6 * MLP_WEIGHTS * results["mlp"]["dlx_samples_per_s"]
        summary["mlp_gflops"] = round(flops / 1e9, 1)
        summary["mlp_fraction_of_peak"] = round(flops / peak, 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
