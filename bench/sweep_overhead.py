"""What does `dlx sweep` cost per trial, and what does `--jobs 2` gain? Prints JSON, last.

A grid sweep of the digits CNN (examples/sweep/digits_sweep.yaml's model) over `--trials`
learning rates is timed three ways, each as whole commands in subprocesses (interpreter
start-up, imports, validation and recording included), in a fresh folder each:

- `loop`: the same trainings run by `dlx train SPEC --set train.optimizer.adam.learning_rate=V`
  one after the other, as a shell loop would (each its own process);
- `sweep`: `dlx sweep SPEC --jobs 1` (one process trains every trial);
- `sweep_jobs2`: `dlx sweep SPEC --jobs 2` (two processes share the cores).

The last line is JSON: the three wall times in seconds, `overhead` = sweep / loop - 1 (the
target is <= 0.05: a sweep must cost no more than the loop it replaces), the overhead per
trial in seconds, and `speedup_jobs2` = sweep / sweep_jobs2. Usage:

    python bench/sweep_overhead.py [--trials 8] [--epochs 5] [--keep]
    python bench/sweep_overhead.py --tiny        # 2 trials of 1 epoch: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sweep" / "digits_sweep.yaml"
PATH = "train.optimizer.adam.learning_rate"


def spec_text(trials: int, epochs: int) -> str:
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["train"]["epochs"] = epochs
    rates = [round(1e-3 * (1 + i), 6) for i in range(trials)]
    spec["sweep"] = {
        "metric": "val_accuracy",
        "method": "grid",
        "params": {PATH: {"choice": rates}},
    }
    return yaml.safe_dump(spec, sort_keys=False)


def timed(commands: list[list[str]], folder: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    for command in commands:
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="2 trials of 1 epoch")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args()
    trials, epochs = (2, 1) if args.tiny else (args.trials, args.epochs)
    text = spec_text(trials, epochs)
    rates = yaml.safe_load(text)["sweep"]["params"][PATH]["choice"]
    dlx = [sys.executable, "-m", "dlx"]
    base = Path(tempfile.mkdtemp(prefix="dlx-bench-sweep-"))
    seconds = {}
    try:
        runs = {
            "loop": [[*dlx, "train", "spec.yaml", "--set", f"{PATH}={rate}"] for rate in rates],
            "sweep": [[*dlx, "sweep", "spec.yaml", "--jobs", "1"]],
            "sweep_jobs2": [[*dlx, "sweep", "spec.yaml", "--jobs", "2"]],
        }
        for name, commands in runs.items():
            folder = base / name
            folder.mkdir()
            (folder / "spec.yaml").write_text(text)
            seconds[name] = timed(commands, folder)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    overhead = seconds["sweep"] / seconds["loop"] - 1
    print(
        json.dumps(
            {
                "trials": trials,
                "epochs": epochs,
                "cores": os.cpu_count(),
                **{f"{name}_s": round(value, 2) for name, value in seconds.items()},
                "overhead": round(overhead, 4),
                "overhead_per_trial_s": round((seconds["sweep"] - seconds["loop"]) / trials, 2),
                "target_overhead": 0.05,
                "speedup_jobs2": round(seconds["sweep"] / seconds["sweep_jobs2"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
