"""How long does `dlx train SPEC` take, end to end, as a user runs it? Prints one JSON line, last.

Runs the whole command as a subprocess (`python -m dlx train SPEC`), `--runs` times, in two
kinds of working folder, interleaved:

- `fresh`: a new empty folder each time, so the run creates its SQLite store (`mlflow.db`,
  MLflow's tables and migrations) as a first run in a project does;
- `warm`: one folder whose store an untimed first run created, as every later run finds it.

Wall time is measured from before the process starts to after it has ended, and CPU time
(user + system) from the child's resource usage; the JSON gives the medians, and the load of
the machine (`os.getloadavg`) before and after. With `--against FOLDER` (a folder holding
another checkout's `dlx` package, e.g. `git worktree add /tmp/base main~3`), the same command
runs from that checkout too, interleaved with this one, and the ratios of the medians are given.

Each run's phases are read from the timestamps its store records (the run's creation, each
epoch's metrics, the run's end) and the times the process started and ended; the JSON gives
their medians:

    before_run   start of the process -> the run is created: imports, the spec, the data, the
                 model built and compiled, the store opened
    first_epoch  -> the first epoch's metrics: the run's params and spec, tracing, epoch 1
    other_epochs -> the last epoch's metrics
    after_fit    -> the run's end: test evaluation, figures, the logged model
    exit         -> the process has ended: the summary printed, the interpreter's exit

One more run, in the warm folder under `python -X importtime` (which costs a little itself),
gives the seconds its imports took, by package (`imports_s`).

Usage:

    python bench/startup.py [--runs 3] [--spec specs/digits_cnn.yaml] [--against FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMPORT_GROUPS = {
    "tensorflow_keras": ("tensorflow", "keras", "tf_keras", "tensorboard"),
    "mlflow": ("mlflow", "sqlalchemy", "alembic"),
    "matplotlib": ("matplotlib", "PIL"),
    "sklearn": ("sklearn", "scipy"),
    "dlx": ("dlx",),
}


def run_once(spec: Path, folder: Path, source: Path | None, *flags: str) -> dict:
    """One `dlx train SPEC` in `folder`: its wall and CPU seconds, and its output."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    if flags:  # `-X importtime`: TensorFlow's import not silenced, so that its lines show
        env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    if source is not None:
        env["PYTHONPATH"] = str(source)
    launched = time.time()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *flags, "-m", "dlx", "train", str(spec)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    cpu = _children_cpu()
    ended = time.time()
    if process.returncode != 0:
        raise SystemExit(f"dlx train failed in {folder} ({process.returncode}):\n{stderr[-3000:]}")
    finished = re.search(r"finished in ([0-9.]+)s", stdout)
    return {
        "wall": wall,
        "cpu": cpu,
        "finished": float(finished.group(1)) if finished else float("nan"),
        "phases": phases(folder / "mlflow.db", launched, ended),
        "stderr": stderr,
    }


_cpu_before = 0.0


def _children_cpu() -> float:
    """The CPU seconds of the child that ended last (children's usage is cumulative)."""
    global _cpu_before
    usage = os.times()
    total = usage.children_user + usage.children_system
    spent, _cpu_before = total - _cpu_before, total
    return spent


def phases(database: Path, launched: float, ended: float) -> dict[str, float]:
    """The phases of the newest run in `database`, from its store's timestamps (ms)."""
    with sqlite3.connect(database) as connection:
        run_uuid, start, end = connection.execute(
            "SELECT run_uuid, start_time, end_time FROM runs ORDER BY start_time DESC LIMIT 1"
        ).fetchone()
        first, last = connection.execute(
            "SELECT MIN(timestamp), MAX(timestamp) FROM metrics "
            "WHERE run_uuid = ? AND key NOT LIKE 'test_%'",
            (run_uuid,),
        ).fetchone()
    return {
        "before_run": start / 1000 - launched,
        "first_epoch": (first - start) / 1000,
        "other_epochs": (last - first) / 1000,
        "after_fit": (end - last) / 1000,
        "exit": ended - end / 1000,
    }


def import_seconds(importtime: str) -> dict[str, float]:
    """Seconds of imports by group, from `-X importtime`'s lines of top-level imports."""
    groups = dict.fromkeys([*IMPORT_GROUPS, "other"], 0.0)
    for line in importtime.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if not match or match.group(2) != " ":  # nested: counted in its top-level import
            continue
        top = match.group(3).split(".")[0]
        group = next((g for g, names in IMPORT_GROUPS.items() if top in names), "other")
        groups[group] += int(match.group(1)) / 1e6
    return {"total": sum(groups.values()), **groups}


def measure(spec: Path, runs: int, sources: dict[str, Path | None]) -> dict:
    """The runs of every source in both kinds of folder, interleaved; their medians."""
    results: dict[str, dict[str, list[dict]]] = {
        name: {"fresh": [], "warm": []} for name in sources
    }
    with tempfile.TemporaryDirectory(prefix="dlx-startup-") as scratch:
        warm = {name: Path(scratch) / f"warm-{name}" for name in sources}
        for name, source in sources.items():
            warm[name].mkdir()
            run_once(spec, warm[name], source)  # creates the store: not timed
        for index in range(runs):
            for name, source in sources.items():
                fresh = Path(scratch) / f"fresh-{name}-{index}"
                fresh.mkdir()
                results[name]["fresh"].append(run_once(spec, fresh, source))
                results[name]["warm"].append(run_once(spec, warm[name], source))
        name, source = next(iter(sources.items()))
        profiled = run_once(spec, warm[name], source, "-X", "importtime")
    summary: dict = {}
    for name, kinds in results.items():
        summary[name] = {
            kind: {
                "wall_s": statistics.median(r["wall"] for r in rows),
                "cpu_s": statistics.median(r["cpu"] for r in rows),
                "finished_in_s": statistics.median(r["finished"] for r in rows),
                "walls_s": [round(r["wall"], 2) for r in rows],
                "phases_s": {
                    phase: statistics.median(r["phases"][phase] for r in rows)
                    for phase in rows[0]["phases"]
                },
            }
            for kind, rows in kinds.items()
        }
    summary["imports_s"] = {
        "wall": profiled["wall"],
        **import_seconds(profiled["stderr"]),
    }
    return summary


def rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each kind (3)")
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "digits_cnn.yaml")
    parser.add_argument(
        "--against", type=Path, help="a folder holding another checkout's dlx package"
    )
    args = parser.parse_args()
    sources: dict[str, Path | None] = {"this": None}
    if args.against is not None:
        sources["against"] = args.against.resolve()
    load_before = os.getloadavg()
    summary = measure(args.spec.resolve(), args.runs, sources)
    summary["load_before"] = load_before
    summary["load_after"] = os.getloadavg()
    summary["runs"] = args.runs
    summary["spec"] = str(args.spec)
    summary["cores"] = os.cpu_count()
    if args.against is not None:
        summary["ratio_this_to_against"] = {
            kind: summary["this"][kind]["wall_s"] / summary["against"][kind]["wall_s"]
            for kind in ("fresh", "warm")
        }
    for kind in ("fresh", "warm"):
        medians = summary["this"][kind]
        print(
            f"{kind:5s} store: {medians['wall_s']:.2f} s wall, {medians['cpu_s']:.2f} s CPU "
            f"(median of {args.runs}; dlx said {medians['finished_in_s']:.1f} s)",
            file=sys.stderr,
        )
    print(json.dumps(rounded(summary)))


if __name__ == "__main__":
    main()
