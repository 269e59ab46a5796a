"""Sweeps (`dlx sweep`, docs/spec.md section 10): a spec's `sweep:` section run as an Optuna
study, one MLflow parent run with a child run per trial.

- `options`: what a sweep is asked (`SweepOptions`), what its processes share (`SweepConfig`),
  what it reports (`TrialRow`, `SweepResult`).
- `space`: what a sweep section means: goal, grid values, samplers, pruners, a trial's spec.
- `checks`: what `dlx validate` finds wrong with a sweep section.
- `study`: the Optuna study: storage, heartbeats, which trials count.
- `trials`: asking, training and telling trials (`work`); `pruning`: the pruning callback.
- `summary`: the sweep's trials and best, on the terminal and on the parent run.
- `parent`: the sweep's process: start, resume, join or take over a sweep (`run_sweep`).
- `workers`: the `--jobs` worker processes of one machine.

Nothing here imports Optuna, MLflow or TensorFlow until a sweep runs.
"""

from dlx.sweep.checks import sweep_problems
from dlx.sweep.options import SweepConfig, SweepOptions, SweepResult, TrialRow
from dlx.sweep.parent import run_sweep
from dlx.sweep.trials import work
from dlx.sweep.workers import WORKER_CONFIG, die_with_coordinator, visible_gpus

__all__ = [
    "WORKER_CONFIG",
    "SweepConfig",
    "SweepOptions",
    "SweepResult",
    "TrialRow",
    "die_with_coordinator",
    "run_sweep",
    "sweep_problems",
    "visible_gpus",
    "work",
]
