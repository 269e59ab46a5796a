"""The same specs trained on Keras's TensorFlow and JAX backends, side by side, on this machine.

Workloads: the digits CNN of `specs/digits_cnn.yaml` (1,437 8x8 images after its splits, batch
32), and the MLP and the LSTM text classifier of `bench/vs_keras.py` (the same layers and random
arrays, from an npz file). Each run is a `dlx train` process of its own (Keras reads its backend
once per process), with `--set runtime.backend=...`, interleaved (tensorflow, jax, tensorflow,
...) `--repeats` times. An epoch's time comes from the run's logged `loss` timestamps (the end
of one epoch to the end of the next), so the first epoch (tracing and compiling) is left out: the
figure is the median over epochs 2..N of all repeats, as examples per second. The last line is
JSON: each workload's rates, the ratio (jax / tensorflow) and their geometric mean. Usage:

    python bench/backends.py [--repeats 2] [--epochs 4] [--workloads digits_cnn,mlp,lstm]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from vs_keras import SPEC, WORKLOADS  # noqa: E402

BACKENDS = ("tensorflow", "jax")
DIGITS_TRAIN_EXAMPLES = 1437  # 1,797 digits less the spec's 10 % validation and 10 % test


def epoch_seconds(folder: Path, spec: Path, backend: str, epochs: int) -> list[float]:
    """Train `spec` on `backend` in a process of its own; the seconds of epochs 2..N."""
    from mlflow import MlflowClient

    store = folder / f"{backend}.db"
    command = [
        sys.executable,
        "-m",
        "dlx",
        "train",
        str(spec),
        "--set",
        f"runtime.backend={backend}",
        "--set",
        f"train.epochs={epochs}",
        "--set",
        "tracking.log_model=false",
        "--set",
        f"tracking.uri=sqlite:///{store}",
    ]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    client = MlflowClient(f"sqlite:///{store}")
    ids = [e.experiment_id for e in client.search_experiments()]
    run = client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=1)[0]
    history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    return list(np.diff([m.timestamp / 1000 for m in history]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workloads", default="digits_cnn,mlp,lstm")
    args = parser.parse_args()

    names = args.workloads.split(",")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        specs, samples = {}, {}
        for name in names:
            if name == "digits_cnn":
                specs[name] = HERE.parent / "specs" / "digits_cnn.yaml"
                samples[name] = DIGITS_TRAIN_EXAMPLES
                continue
            workload = WORKLOADS[name]
            x, y = workload.arrays()
            np.savez(folder / f"{name}.npz", x=x, y=y)
            specs[name] = folder / f"{name}.yaml"
            specs[name].write_text(
                SPEC.format(
                    name=name,
                    layers=workload.layers,
                    epochs=args.epochs,
                    batch_size=workload.batch_size,
                    store=folder / "unused.db",
                )
            )
            samples[name] = workload.samples
        seconds = {name: {backend: [] for backend in BACKENDS} for name in names}
        for repeat in range(args.repeats):
            for name in names:
                for backend in BACKENDS:
                    measured = epoch_seconds(folder, specs[name], backend, args.epochs)
                    seconds[name][backend] += measured
                    print(
                        f"repeat {repeat + 1} {name} on {backend}: "
                        f"{statistics.median(measured):.3f}s/epoch",
                        flush=True,
                    )
    for name in names:
        rates = {b: samples[name] / statistics.median(seconds[name][b]) for b in BACKENDS}
        results[name] = {
            **{f"{b}_samples_per_s": round(rates[b], 1) for b in BACKENDS},
            "ratio_jax_to_tensorflow": round(rates["jax"] / rates["tensorflow"], 3),
        }
    ratios = [results[name]["ratio_jax_to_tensorflow"] for name in names]
    summary = {
        "repeats": args.repeats,
        "epochs": args.epochs,
        "workloads": results,
        "geometric_mean": round(math.exp(statistics.fmean(math.log(r) for r in ratios)), 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
