"""What a sweep section means: its goal, the values a grid takes, the Optuna sampler of each
`method`, the pruner of `prune` and the number of trials; and the spec a trial trains."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlx.errors import Problem, SpecError
from dlx.spec import Document, LoadedSpec, apply_overrides, read_document
from dlx.spec.load import validate_document
from dlx.spec.schema import MAX_SEED, Sweep, SweepParam
from dlx.sweep.options import SweepConfig

DEFAULT_TRIALS = 10
"""Trials of a sweep that names none (and is not a grid)."""


# --- what a sweep section means: directions, samplers, pruners -------------------------------


def goal(sweep: Sweep) -> str:
    """`max` or `min`: the section's `goal`, else from the metric's name (loss, error: min)."""
    from dlx.track.compare import higher_is_better

    return sweep.goal or ("max" if higher_is_better(sweep.metric) else "min")


def grid_size(param: SweepParam) -> int | None:
    """How many values a grid takes for `param`, counted without listing them; `None` for a
    continuous range."""
    if param.kind == "choice":
        return len(param.values)
    if param.kind == "int":
        low, high = param.values
        return (high - low) // round(param.step or 1) + 1
    return None


def grid_values(param: SweepParam) -> list[Any] | None:
    """Every value a grid takes for `param`; `None` for a continuous range."""
    if param.kind == "choice":
        return encoded_choices(param)
    if param.kind == "int":
        low, high = param.values
        return list(range(low, high + 1, round(param.step or 1)))
    return None


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _as_values(param: SweepParam) -> bool:
    """Whether Optuna takes a choice's values themselves: scalars, no two of them equal (it
    finds a drawn value by `==`: of `[1, true]` it would draw 1 for both)."""
    choices = param.values
    return all(_scalar(c) for c in choices) and len(set(choices)) == len(choices)


def encoded_choices(param: SweepParam) -> list[Any]:
    """Optuna's categorical values: the choices when it can take them (`_as_values`), else
    their indices."""
    return param.values if _as_values(param) else list(range(len(param.values)))


def decoded(param: SweepParam, value: Any) -> Any:
    """A choice as the spec gives it, from its Optuna value (`encoded_choices`)."""
    if param.kind == "choice" and not _as_values(param):
        return param.values[value]
    return value


def suggest(trial: Any, dotted: str, param: SweepParam) -> Any:
    """The value an Optuna trial draws for a swept path, as the spec gives it."""
    kind, values = param.kind, param.values
    if kind == "choice":
        return decoded(param, trial.suggest_categorical(dotted, encoded_choices(param)))
    if kind == "int":
        return trial.suggest_int(dotted, values[0], values[1], step=round(param.step or 1))
    return trial.suggest_float(
        dotted, values[0], values[1], log=kind == "log_uniform", step=param.step
    )


def _grid(sweep: Sweep, seed: int) -> Any:
    import optuna

    class Grid(optuna.samplers.GridSampler):
        """Optuna's grid, which does not stop the study once every point is drawn: the
        sweep stops at its number of trials, and `study.stop` works only inside
        `study.optimize`, which a sweep does not use (it asks and tells)."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    space: dict[str, list[Any]] = {}
    for path, param in sweep.params.items():
        values = grid_values(param)
        assert values is not None  # a grid's params are choice or int (`sweep_problems` checks)
        space[path] = values
    return Grid(space, seed=_numpy_seed(seed))


def _random(sweep: Sweep, seed: int) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=_numpy_seed(seed))


def _tpe(sweep: Sweep, seed: int) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=_numpy_seed(seed))


def _cmaes(sweep: Sweep, seed: int) -> Any:
    import optuna

    # CMA-ES samples numbers; the choices it leaves to its independent sampler.
    seed = _numpy_seed(seed)
    return optuna.samplers.CmaEsSampler(
        seed=seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed)
    )


def _numpy_seed(seed: int) -> int:
    """A seed that Optuna's samplers can give NumPy (0 to 2**32 - 1): the spec's seed plus a
    worker's offset and the trials so far may pass it, and wrap around."""
    return seed % (MAX_SEED + 1)


SAMPLERS: dict[str, Callable[[Sweep, int], Any]] = {
    "grid": _grid,
    "random": _random,
    "tpe": _tpe,
    "cmaes": _cmaes,
}
"""Each `sweep.method`, and the Optuna sampler it makes for a sweep and a seed."""


def sampler(sweep: Sweep, seed: int) -> Any:
    """The Optuna sampler of `sweep.method`, seeded."""
    return SAMPLERS[sweep.method](sweep, seed)


PRUNER_ARGUMENTS: dict[str, dict[str, str]] = {
    "median": {"warmup_epochs": "n_warmup_steps", "startup_trials": "n_startup_trials"},
    "hyperband": {
        "min_epochs": "min_resource",
        "max_epochs": "max_resource",
        "reduction_factor": "reduction_factor",
    },
    "successive_halving": {
        "min_epochs": "min_resource",
        "reduction_factor": "reduction_factor",
    },
}
"""Each pruner's arguments in the spec, and the Optuna argument each one is."""

_PRUNER_CLASSES = {
    "median": "MedianPruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
}


def split_pruner(prune: Any) -> tuple[str, list[Any], dict[str, Any]]:
    """A pruner's name, positional arguments (none are taken) and keyword arguments."""
    from dlx.spec import split_component

    return split_component(prune, "pruner")


def pruner(sweep: Sweep) -> Any:
    """The Optuna pruner of `sweep.prune`; without one, a pruner that never prunes."""
    import optuna

    if sweep.prune is None:
        return optuna.pruners.NopPruner()
    name, _, arguments = split_pruner(sweep.prune)
    return optuna_pruner(name, arguments)


def optuna_pruner(name: str, arguments: dict[str, Any]) -> Any:
    """The Optuna pruner of a known name (`PRUNER_ARGUMENTS`) and arguments in the spec's words.

    Raises:
        ValueError, TypeError: Optuna's constructor refuses the arguments.
    """
    import optuna

    renamed = {PRUNER_ARGUMENTS[name][key]: value for key, value in arguments.items()}
    if name == "median":
        renamed.setdefault("n_startup_trials", 1)
    return getattr(optuna.pruners, _PRUNER_CLASSES[name])(**renamed)


def total_trials(sweep: Sweep, asked: int | None) -> int:
    """`--trials`, else the section's `trials`, else the grid's size (or 10)."""
    if asked is not None:
        return asked
    if sweep.trials is not None:
        return sweep.trials
    if sweep.method == "grid":
        return math.prod(grid_size(p) or 0 for p in sweep.params.values())
    return DEFAULT_TRIALS


# --- the spec of a trial ---------------------------------------------------------------------


def trial_spec(
    path: str | Path, overrides: list[str] | tuple[str, ...], values: dict[str, Any]
) -> LoadedSpec:
    """The spec a trial trains: the file with `--set` overrides and the trial's values, without
    its `sweep:` section (a trial's logged spec trains as written with `dlx train`).

    Raises:
        SpecError: the spec is invalid with these values.
    """
    return spec_with(trial_document(path, overrides), values)


def trial_document(path: str | Path, overrides: list[str] | tuple[str, ...]) -> Document:
    """What every trial's spec starts from: the file with its `--set` overrides, without its
    `sweep:` section."""
    doc = read_document(path)
    apply_overrides(doc, list(overrides))
    if isinstance(doc.data, dict):
        doc.data.pop("sweep", None)
    return doc


def spec_with(base: Document, values: dict[str, Any]) -> LoadedSpec:
    """`base` (a `trial_document`, left as it is) with a trial's values, validated.

    Raises:
        SpecError: the spec is invalid with these values.
    """
    doc = dataclasses.replace(base, data=copy.deepcopy(base.data))
    for dotted, value in values.items():
        parent: Any = doc.data
        *steps, last = dotted.split(".")
        for part in steps:
            parent = parent[int(part) if isinstance(parent, list) else part]
        parent[int(last) if isinstance(parent, list) else last] = value
    return validate_document(doc)


def sweep_of(config: SweepConfig) -> Sweep:
    """The `sweep:` section of the spec a sweep's processes work, its overrides applied."""
    doc = read_document(config.spec)
    apply_overrides(doc, list(config.overrides))
    sweep = validate_document(doc).spec.sweep
    if sweep is None:
        raise SpecError([Problem(f"{config.spec} has no sweep: section")])
    return sweep
