"""How long do `dlx compare` and `dlx runs` take on a store of many runs? Prints JSON, last.

Builds a temporary sqlite MLflow store holding `--runs` runs (default 10,000) in one
experiment, shaped like the runs `dlx train specs/digits_cnn.yaml` records: the same ~33
flattened spec params plus a few more (35 in all; `train.epochs`, the learning rate and the
dense units vary from run to run), the dlx tags, 20 epochs of `loss`, `accuracy`, `val_loss` and
`val_accuracy`, and `test_loss` / `test_accuracy`; a few runs are FAILED or KILLED. The first
20 runs are logged through `MlflowClient.log_batch` (no training, no artifacts), about 50 ms a
run; the others are written with `sqlite3` as the same rows MLflow writes (checked against the
client-written runs, and MLflow's client reads the last one back), 10,000 runs in about 20 s.

Then it times whole commands as subprocesses, the way a user or a CI job pays for them
(interpreter start-up, imports, store opening, queries and printing all included), with
`MLFLOW_TRACKING_URI` pointing at the store:

- `python -m dlx compare -e EXP --format json` (every run; checked: as many records as runs)
- `python -m dlx compare -e EXP --sort val_loss --format table` (every run's best epoch of
  val_loss; the table shows the best 50, and says so)
- `python -m dlx runs -e EXP` (the newest 20, and how many more there are)

and, for reference, `python -c "import mlflow"` (reported as `import_mlflow_s`, not held to
the limit): what reading the store through MLflow's client would cost before any query, and why
dlx reads sqlite stores directly (`dlx.track.read.SqliteStore`).

Each command runs once untimed (a warm-up: byte-code and the OS file cache), then `--repeats`
times, interleaved (A B C A B C ...), since this machine is noisy; medians are reported. The
last line is JSON: the medians in seconds and `limit_s`, the budget each command should stay
under. Usage:

    python bench/compare_speed.py [--runs 10000] [--repeats 5] [--keep]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXPERIMENT = "bench-compare"
EPOCHS_LOGGED = 20
CLIENT_RUNS = 20
LIMIT_S = 1.0

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


@dataclass
class BenchRun:
    """One run as the store holds it."""

    run_id: str
    name: str
    status: str
    start: int
    end: int
    params: dict[str, str]
    tags: dict[str, str]
    metrics: list[tuple[str, float, int, int]]
    """(key, value, timestamp, step), in the order logged."""


def bench_run(index: int, rng: random.Random, clock: int) -> BenchRun:
    """The `index`-th run: its params, tags and 20 epochs of metrics, drawn from `rng`."""
    epochs = rng.choice([5, 10, 15, 20, 30, 40])
    rate = rng.choice([1e-3, 2e-3, 5e-3])
    units = rng.choice([32, 64, 128])
    params = dict(BASE_PARAMS)
    params["train.epochs"] = str(epochs)
    params["train.optimizer.adam.learning_rate"] = f"{rate:g}"
    params["model.layers.6.dense.units"] = str(units)
    name = f"{EXPERIMENT}-{index}"
    tags = {"mlflow.runName": name, **BASE_TAGS}
    tags["dlx.spec_hash"] = f"{rng.getrandbits(256):064x}"
    tags["dlx.data_fingerprint"] = f"{rng.getrandbits(256):064x}"
    start = clock + index * 60_000
    metrics = []
    speed = rng.uniform(0.15, 0.4)
    for step in range(EPOCHS_LOGGED):
        t = start + 1000 + step * 100
        progress = 1.0 - 0.9 * (1.0 - speed) ** (step + 1)
        loss = 2.0 * (1.0 - progress) + rng.uniform(0.0, 0.05)
        val_loss = loss * rng.uniform(1.0, 1.6)
        metrics += [
            ("loss", loss, t, step),
            ("accuracy", min(1.0, progress + rng.uniform(-0.02, 0.02)), t, step),
            ("val_loss", val_loss, t, step),
            ("val_accuracy", min(1.0, progress - rng.uniform(0.0, 0.04)), t, step),
        ]
    t = start + 1000 + EPOCHS_LOGGED * 100
    metrics += [
        ("test_loss", rng.uniform(0.03, 0.3), t, EPOCHS_LOGGED),
        ("test_accuracy", rng.uniform(0.9, 0.99), t, EPOCHS_LOGGED),
    ]
    status = "FAILED" if index % 67 == 66 else "KILLED" if index % 97 == 96 else "FINISHED"
    run_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
    return BenchRun(run_id, name, status, start, t + 500, params, tags, metrics)


def log_with_client(client: Any, experiment_id: str, run: BenchRun) -> str:
    """Log `run` through MLflow's client, as a training would; return the id MLflow gave it."""
    from mlflow.entities import Metric, Param, RunTag

    created = client.create_run(experiment_id, start_time=run.start, run_name=run.name)
    run_id = created.info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(*metric) for metric in run.metrics],
        params=[Param(k, v) for k, v in run.params.items()],
        tags=[RunTag(k, v) for k, v in run.tags.items() if k != "mlflow.runName"],
    )
    client.set_terminated(run_id, status=run.status, end_time=run.end)
    return run_id


def table_rows(run: BenchRun, experiment_id: str, artifacts: str) -> dict[str, list[tuple]]:
    """The rows MLflow's sqlite store holds for `run`, by table, in its tables' column order."""
    latest: dict[str, tuple[int, int, float]] = {}
    for key, value, t, step in run.metrics:  # MLflow's rule: the greatest (step, time, value)
        latest[key] = max(latest.get(key, (step, t, value)), (step, t, value))
    return {
        "runs": [
            (
                run.run_id,
                run.name,
                "UNKNOWN",
                "",
                "",
                "unknown",
                run.status,
                run.start,
                run.end,
                "",
                "active",
                f"{artifacts}/{run.run_id}/artifacts",
                int(experiment_id),
                None,
            )
        ],
        "params": [(k, v, run.run_id) for k, v in run.params.items()],
        "tags": [(k, v, run.run_id) for k, v in run.tags.items()],
        "metrics": [(k, v, t, run.run_id, step, 0) for k, v, t, step in run.metrics],
        "latest_metrics": [(k, v, t, step, 0, run.run_id) for k, (step, t, v) in latest.items()],
    }


def build_store(folder: Path, runs: int, seed: int = 0) -> tuple[str, float]:
    """Write `runs` dlx-shaped runs into a fresh sqlite store; return its URI and the seconds.

    MLflow's client logs the first `CLIENT_RUNS` runs (`log_batch`, as a training does; about
    50 ms a run); the rest are written with `sqlite3` as the same rows, in one transaction.
    Each client-written run's rows are checked to be exactly those `table_rows` writes, and
    MLflow's client is checked to read the last run written with `sqlite3` back whole.
    """
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "Creating initial tables" lines
    started = time.perf_counter()
    path = folder / "mlflow.db"
    uri = f"sqlite:///{path}"
    artifacts = (folder / "mlartifacts").as_uri()
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=artifacts)
    rng = random.Random(seed)
    clock = int(time.time() * 1000) - runs * 60_000
    planned = [bench_run(index, rng, clock) for index in range(runs)]
    for run in planned[:CLIENT_RUNS]:
        run.run_id = log_with_client(client, experiment_id, run)
    connection = sqlite3.connect(path)
    try:
        for run in planned[:CLIENT_RUNS]:
            for table, rows in table_rows(run, experiment_id, artifacts).items():
                held = connection.execute(
                    f"SELECT * FROM {table} WHERE run_uuid = ?", (run.run_id,)
                ).fetchall()
                if sorted(held, key=repr) != sorted(rows, key=repr):
                    sys.exit(f"{table} of {run.run_id}: MLflow wrote {held}, not {rows}")
        with connection:
            for run in planned[CLIENT_RUNS:]:
                for table, rows in table_rows(run, experiment_id, artifacts).items():
                    marks = ",".join("?" * len(rows[0]))
                    connection.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    finally:
        connection.close()
    last = planned[-1]
    read = client.get_run(last.run_id)
    written = {
        row[0]: row[1] for row in table_rows(last, experiment_id, artifacts)["latest_metrics"]
    }
    if (read.data.params, read.data.tags, read.data.metrics) != (last.params, last.tags, written):
        sys.exit(f"MLflow's client reads {last.run_id} otherwise than it was written")
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
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the store (10000)")
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
