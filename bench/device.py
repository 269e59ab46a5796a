"""dlx on an accelerator, on Keras's JAX backend: four checks, then one JSON line.

1. `specs/digits_cnn.yaml` trains on the accelerator to `val_accuracy >= 0.97`.
2. `examples/resnet50.yaml` (ResNet-50 written from scratch, 25.6 M parameters) trains on
   synthetic 224x224x3 images at batch 256 in `mixed_bfloat16`: images per second, from the
   run's logged epoch times (epochs 2..N: the first one compiles).
3. The same network as a Keras user writes it on JAX (`keras.applications.ResNet50(weights=None)`,
   `compile`, `fit(x, y)` on the same arrays, batch and precision), timed the same way: the
   ratio dlx / Keras, and each one's model FLOP utilisation against the chip's bf16 peak
   (`--peak-tflops`; an H200's dense bf16 is 989).
4. `kill -9` in the middle of a digits run, then `dlx train --resume`: the final metrics must
   equal an uninterrupted run's exactly.

Each dlx run is a `dlx train` process of its own. `--quick` shrinks every size, for a try on a
CPU. Run it through `bench/device.sh`, which installs what it needs first. Usage:

    python bench/device.py [--quick] [--epochs 3] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESNET50_TRAIN_FLOPS = 3 * 2 * 4.09e9
"""A ResNet-50 training step's FLOPs per 224x224 image: 4.09 G multiply-adds forward, twice
that as FLOPs, three times for the forward and backward passes."""


def dlx(*arguments: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "dlx", *arguments], cwd=cwd, capture_output=True, text=True
    )
    if check and done.returncode:
        raise SystemExit(f"dlx {' '.join(arguments)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def newest_run(folder: Path) -> Any:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(ids, order_by=["attributes.start_time DESC"])[0]


def epoch_seconds(folder: Path) -> list[float]:
    """The seconds of epochs 2..N of the newest run, from its logged `loss` timestamps."""
    client, run = newest_run(folder)
    history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    stamps = [m.timestamp / 1000 for m in history]
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def digits(folder: Path) -> dict[str, Any]:
    dlx(
        "train", str(ROOT / "specs" / "digits_cnn.yaml"), "--set", "runtime.backend=jax", cwd=folder
    )
    _, run = newest_run(folder)
    return {
        "val_accuracy": round(run.data.metrics["val_accuracy"], 4),
        "replicas": int(run.data.tags["dlx.replicas"]),
        "strategy": run.data.tags["dlx.strategy"],
    }


def resnet_dlx(folder: Path, images: int, batch: int, size: int, epochs: int) -> float:
    source = (
        f"data.source={{synthetic: {{samples: {images}, x_shape: [{size}, {size}, 3], "
        "classes: 1000}}"
    )
    dlx(
        "train",
        str(ROOT / "examples" / "resnet50.yaml"),
        "--set",
        "runtime.backend=jax",
        "--set",
        "runtime.mixed_precision=mixed_bfloat16",
        "--set",
        source,
        "--set",
        "data.validation_split=0",
        "--set",
        f"train.batch_size={batch}",
        "--set",
        f"train.epochs={epochs}",
        "--set",
        "tracking.log_model=false",
        cwd=folder,
    )
    return images / statistics.median(epoch_seconds(folder))


RESNET_KERAS = """
import json, os, sys, time
import numpy as np
os.environ["KERAS_BACKEND"] = "jax"
import keras
images, batch, size, epochs = map(int, sys.argv[1:5])
keras.mixed_precision.set_global_policy("mixed_bfloat16")
keras.utils.set_random_seed(42)
rng = np.random.default_rng(42)
x = rng.standard_normal((images, size, size, 3), dtype=np.float32)
y = rng.integers(0, 1000, images).astype("int32")
model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
ends = []
clock = keras.callbacks.LambdaCallback(
    on_train_begin=lambda logs: ends.append(time.perf_counter()),
    on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()),
)
model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[clock])
print(json.dumps([b - a for a, b in zip(ends[1:], ends[2:])]))
"""


def resnet_keras(images: int, batch: int, size: int, epochs: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", RESNET_KERAS, str(images), str(batch), str(size), str(epochs)],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    if done.returncode:
        raise SystemExit(f"the Keras ResNet-50 failed:\n{done.stdout}\n{done.stderr}")
    return images / statistics.median(json.loads(done.stdout.splitlines()[-1]))


def resume_is_exact(folder: Path, epochs: int) -> bool:
    """`kill -9` a digits run after two epochs, resume it: equal to an uninterrupted run?"""
    spec = str(ROOT / "specs" / "digits_cnn.yaml")
    arguments = ("train", spec, "--set", "runtime.backend=jax", "--set", f"train.epochs={epochs}")
    straight, killed = folder / "straight", folder / "killed"
    straight.mkdir()
    killed.mkdir()
    dlx(*arguments, cwd=straight)
    _, reference = newest_run(straight)
    job = subprocess.Popen(
        [sys.executable, "-m", "dlx", *arguments],
        cwd=killed,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and job.poll() is None:
        journals = list((killed / "dlx-checkpoints").glob("*/metrics.jsonl"))
        if journals and len(journals[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    _, run = newest_run(killed)
    dlx("train", "--resume", run.info.run_id, cwd=killed)
    _, run = newest_run(killed)
    return run.info.status == "FINISHED" and run.data.metrics == reference.data.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a CPU")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    images, batch, size = (32, 16, 224) if args.quick else (256 * 12, 256, 224)

    import jax

    device = jax.devices()[0]
    summary: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "device": f"{device.platform}: {getattr(device, 'device_kind', device)}",
        "devices": jax.device_count(),
        "jax": jax.__version__,
    }
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        (folder / "digits").mkdir()
        summary["digits_cnn"] = digits(folder / "digits")
        print(f"digits: {summary['digits_cnn']}", file=sys.stderr, flush=True)
        (folder / "resnet").mkdir()
        ours = resnet_dlx(folder / "resnet", images, batch, size, args.epochs)
        print(f"resnet50 dlx: {ours:.1f} images/s", file=sys.stderr, flush=True)
        theirs = resnet_keras(images, batch, size, args.epochs)
        print(f"resnet50 keras: {theirs:.1f} images/s", file=sys.stderr, flush=True)
        flops = RESNET50_TRAIN_FLOPS * (size / 224) ** 2
        peak = args.peak_tflops * 1e12
        summary["resnet50"] = {
            "batch": batch,
            "image_size": size,
            "precision": "mixed_bfloat16",
            "dlx_images_per_s": round(ours, 1),
            "keras_images_per_s": round(theirs, 1),
            "dlx_to_keras": round(ours / theirs, 3),
            "dlx_mfu": round(ours * flops / peak, 4),
            "keras_mfu": round(theirs * flops / peak, 4),
        }
        (folder / "resume").mkdir()
        summary["resume_after_kill_9_exact"] = resume_is_exact(folder / "resume", 6)
    summary["digits_ok"] = summary["digits_cnn"]["val_accuracy"] >= 0.97
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
