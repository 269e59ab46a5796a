"""How long do `dlx compare` and `dlx runs` take on a store of 200 runs? Prints JSON, last.

Builds a temporary sqlite MLflow store holding `--runs` runs (default 200) in one experiment,
shaped like the runs `dlx train specs/digits_cnn.yaml` records: the same ~33 flattened spec
params plus a few more (35 in all; `train.epochs`, the learning rate and the dense units vary
from run to run), the dlx tags, 20 epochs of `loss`, `accuracy`, `val_loss` and
`val_accuracy`, and `test_loss` / `test_accuracy`; a few runs are FAILED or KILLED. The runs
are written straight through `MlflowClient.log_batch` (no training, no artifacts).

Then it times whole commands as subprocesses, the way a user or a CI job pays for them
(interpreter start-up, imports, store opening, queries and printing all included), with
`MLFLOW_TRACKING_URI` pointing at the store:

- `python -m dlx compare -e EXP --format json`
- `python -m dlx compare -e EXP --sort val_loss --format table` (reads every run's val_loss
  history for the epoch at which it was best)
- `python -m dlx runs -e EXP`

and, for reference, `python -c "import mlflow"` (reported as `import_mlflow_s`, not held to
the limit): what reading the store through MLflow's client would cost before any query, and why
dlx reads sqlite stores directly (`dlx.track.read.SqliteStore`).

Each command runs once untimed (a warm-up: byte-code and the OS file cache), then `--repeats`
times, interleaved (A B C A B C ...), since this machine is noisy; medians are reported. The
last line is JSON: the medians in seconds and `limit_s`, the budget each command should stay
under. Usage:

    python bench/compare_speed.py [--runs 200] [--repeats 5] [--keep]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPERIMENT = "bench-compare"
EPOCHS_LOGGED = 20
LIMIT_S = 2.0

BASE_PARAMS = {
    "version": "1",
    "name": EXPERIMENT,
    "description": "A small CNN on the 8x8 digits bundled with scikit-learn.",
    "seed": "42",
    "data.source.sklearn": "digits",
    "data.validation_split": "0.2",
    "data.test_split": "0.1",
    "data.shuffle": "true",
    "model.layers.0.input.shape.0": "8",
    "model.layers.0.input.shape.1": "8",
    "model.layers.0.input.shape.2": "1",
    "model.layers.1.conv2d.filters": "32",
    "model.layers.1.conv2d.kernel_size": "3",
    "model.layers.1.conv2d.activation": "relu",
    "model.layers.1.conv2d.padding": "same",
    "model.layers.2.conv2d.filters": "32",
    "model.layers.2.conv2d.kernel_size": "3",
    "model.layers.2.conv2d.activation": "relu",
    "model.layers.2.conv2d.padding": "same",
    "model.layers.3.max_pooling2d": "2",
    "model.layers.4.dropout": "0.25",
    "model.layers.5": "flatten",
    "model.layers.6.dense.units": "64",
    "model.layers.6.dense.activation": "relu",
    "model.layers.6.dense.kernel_regularizer.l2": "0.0001",
    "model.layers.7.dense.units": "10",
    "model.layers.7.dense.activation": "softmax",
    "train.epochs": "20",
    "train.batch_size": "64",
    "train.optimizer.adam.learning_rate": "0.002",
    "train.loss": "sparse_categorical_crossentropy",
    "train.metrics.0": "accuracy",
    "runtime.strategy": "auto",
    "runtime.deterministic": "false",
    "tracking.tags.family": "cnn",
}

BASE_TAGS = {
    "mlflow.source.type": "LOCAL",
    "mlflow.source.name": "specs/digits_cnn.yaml",
    "mlflow.user": "bench",
    "dlx.seed": "42",
    "dlx.strategy": "default",
    "dlx.replicas": "1",
    "dlx.version.dlx": "0.1.0",
    "dlx.version.tensorflow": "2.21.0",
    "dlx.version.keras": "3.15.1",
    "dlx.version.mlflow": "3.17.2",
    "dlx.version.python": "3.11.7",
    "family": "cnn",
}


def build_store(folder: Path, runs: int, seed: int = 0) -> tuple[str, float]:
    """Write `runs` dlx-shaped runs into a fresh sqlite store; return its URI and the seconds."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "Creating initial tables" lines
    started = time.perf_counter()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(
        EXPERIMENT, artifact_location=(folder / "mlartifacts").as_uri()
    )
    rng = random.Random(seed)
    clock = int(time.time() * 1000) - runs * 60_000
    for index in range(runs):
        epochs = rng.choice([5, 10, 15, 20, 30, 40])
        rate = rng.choice([1e-3, 2e-3, 5e-3])
        units = rng.choice([32, 64, 128])
        params = dict(BASE_PARAMS)
        params["train.epochs"] = str(epochs)
        params["train.optimizer.adam.learning_rate"] = f"{rate:g}"
        params["model.layers.6.dense.units"] = str(units)
        tags = dict(BASE_TAGS)
        tags["mlflow.runName"] = f"{EXPERIMENT}-{index}"
        tags["dlx.spec_hash"] = f"{rng.getrandbits(256):064x}"
        tags["dlx.data_fingerprint"] = f"{rng.getrandbits(256):064x}"

        start = clock + index * 60_000
        run = client.create_run(experiment_id, start_time=start, run_name=tags["mlflow.runName"])
        run_id = run.info.run_id
        metrics = []
        speed = rng.uniform(0.15, 0.4)
        for step in range(EPOCHS_LOGGED):
            t = start + 1000 + step * 100
            progress = 1.0 - 0.9 * (1.0 - speed) ** (step + 1)
            loss = 2.0 * (1.0 - progress) + rng.uniform(0.0, 0.05)
            val_loss = loss * rng.uniform(1.0, 1.6)
            metrics += [
                Metric("loss", loss, t, step),
                Metric("accuracy", min(1.0, progress + rng.uniform(-0.02, 0.02)), t, step),
                Metric("val_loss", val_loss, t, step),
                Metric("val_accuracy", min(1.0, progress - rng.uniform(0.0, 0.04)), t, step),
            ]
        t = start + 1000 + EPOCHS_LOGGED * 100
        metrics += [
            Metric("test_loss", rng.uniform(0.03, 0.3), t, EPOCHS_LOGGED),
            Metric("test_accuracy", rng.uniform(0.9, 0.99), t, EPOCHS_LOGGED),
        ]
        client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items() if k != "mlflow.runName"],
        )
        status = "FAILED" if index % 67 == 66 else "KILLED" if index % 97 == 96 else "FINISHED"
        client.set_terminated(run_id, status=status, end_time=t + 500)
    return uri, time.perf_counter() - started


def commands(experiment: str) -> dict[str, list[str]]:
    """The timed commands, by label."""
    dlx = [sys.executable, "-m", "dlx"]
    return {
        "compare_json": [*dlx, "compare", "-e", experiment, "--format", "json"],
        "compare_sort_table": [
            *dlx,
            "compare",
            "-e",
            experiment,
            "--sort",
            "val_loss",
            "--format",
            "table",
        ],
        "runs_table": [*dlx, "runs", "-e", experiment],
    }


FLOOR = [sys.executable, "-c", "import mlflow"]  # the start-up every store-reading command pays


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run one command; return its wall time and its stdout; fail loudly on a non-zero exit."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs in the store (200)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each command (5)")
    parser.add_argument("--keep", action="store_true", help="keep the store and print its path")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="dlx-compare-bench-"))
    try:
        uri, seconds = build_store(folder, args.runs)
        print(f"store: {args.runs} runs written in {seconds:.1f}s ({uri})", flush=True)
        env = dict(os.environ, MLFLOW_TRACKING_URI=uri, COLUMNS="200")
        timed = commands(EXPERIMENT)

        for label, argv in timed.items():  # warm-up, and a check that the output is whole
            _, out = run_once(argv, env)
            if label == "compare_json":
                records = json.loads(out)
                if len(records) != args.runs:
                    sys.exit(f"compare --format json listed {len(records)} runs, not {args.runs}")
        times: dict[str, list[float]] = {label: [] for label in timed}
        floor: list[float] = []
        for _ in range(args.repeats):
            for label, argv in timed.items():
                times[label].append(run_once(argv, env)[0])
            floor.append(run_once(FLOOR, env)[0])

        medians = {label: statistics.median(values) for label, values in times.items()}
        width = max(len(label) for label in timed)
        print(f"{'command':<{width}}  median   min      max      ({args.repeats} interleaved)")
        for label, values in times.items():
            print(
                f"{label:<{width}}  {medians[label]:6.3f}s  {min(values):6.3f}s  "
                f"{max(values):6.3f}s  {' '.join(timed[label][2:])}"
            )
        print(
            f"{'(floor)':<{width}}  {statistics.median(floor):6.3f}s  {min(floor):6.3f}s  "
            f"{max(floor):6.3f}s  python -c 'import mlflow'"
        )
        if args.keep:
            print(f"kept: {folder}")
        print(
            json.dumps(
                {
                    "runs": args.runs,
                    "repeats": args.repeats,
                    "median_s": {label: round(value, 3) for label, value in medians.items()},
                    "import_mlflow_s": round(statistics.median(floor), 3),
                    "limit_s": LIMIT_S,
                    "within_limit": all(value <= LIMIT_S for value in medians.values()),
                }
            )
        )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
