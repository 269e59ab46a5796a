"""What is wrong with a spec's `sweep:` section, found before any trial runs (`dlx validate`,
and `dlx sweep` before its first trial), each problem at its key in the spec.

In order, each check only where the ones before it leave something sound to check:

- each swept path: in the spec, outside `sweep:`, not inside another swept path (`path_problems`);
- the seeds that `repeats` take (`seed_problems`); the pruner's name and arguments
  (`pruner_problems`);
- a grid: of `choice` and `int` values only, and of at most `MAX_GRID_POINTS` points, counted
  without listing them (`grid_problems`);
- what Optuna itself refuses: the pruner and the sampler made by their own constructors, and a
  few trials drawn and pruned in a study in memory (`optuna_problems`);
- the spec at each value (each choice, both ends of each range), as `dlx validate` checks a
  spec, with a model built once for each model the values make (at most `MAX_MODELS`), and the
  sweep's `metric` among those the runs at each value log (`value_problems`).

The schema (`dlx.spec.schema.SweepParam`) has already refused what a param cannot be: bounds and
steps that are not finite, integers past 2**53, a range upside down.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlx.errors import Problem, SpecError, did_you_mean, received
from dlx.spec import Document, LoadedSpec
from dlx.spec.schema import MAX_SEED, Sweep, SweepParam
from dlx.sweep.space import (
    PRUNER_ARGUMENTS,
    grid_size,
    optuna_pruner,
    sampler,
    spec_with,
    split_pruner,
    suggest,
    trial_document,
)

if TYPE_CHECKING:
    from dlx.build.model import BuiltModel

MAX_GRID_POINTS = 100_000
"""The most points a grid may have: Optuna's grid sampler lists every one of them in memory (and
a sweep of more trials than this is not one to run as a grid)."""
MAX_VALUES = 1_000
"""The most values of a sweep that are checked (a spec loaded at each: about a millisecond)."""
MAX_MODELS = 50
"""The most models built to check a sweep's values (tens of milliseconds each, more for large
models); values that change only `train` share their model."""
DRY_RUN_TRIALS = 3
"""Trials (of as many epochs) drawn and pruned in memory before a sweep: samplers and pruners
start to use the trials before them from the second one."""
REFUSED = (ValueError, TypeError, ArithmeticError)
"""What Optuna raises for arguments it refuses (`OverflowError` and `decimal.InvalidOperation`
are `ArithmeticError`s)."""


def sweep_problems(
    path: str | Path,
    overrides: list[str] | tuple[str, ...],
    loaded: LoadedSpec,
    built: BuiltModel | None = None,
) -> list[Problem]:
    """Everything wrong with a spec's `sweep:` section that can be found before a trial runs.

    Each problem is at its key: a swept path's in `sweep.params`, `sweep.prune`, `sweep.method`,
    `sweep.metric` or `sweep.repeats`. A trial's spec is checked as `dlx validate` checks one
    (`dlx.train.validation.check_spec`); `built`, the spec's own model when it was built, is the
    model of every value that changes only `train`.
    """
    sweep = loaded.spec.sweep
    assert sweep is not None
    refused = pruner_problems(loaded) + grid_problems(loaded)
    problems = path_problems(loaded) + seed_problems(loaded) + refused
    if not refused:  # a pruner Optuna has, and a grid it can list: what does Optuna say?
        problems += optuna_problems(loaded)
    located = {problem.key for problem in problems}
    params = {
        dotted: param
        for dotted, param in sweep.params.items()
        if f"sweep.params.{dotted}" not in located
    }
    return problems + value_problems(path, overrides, loaded, params, built)


def path_problems(loaded: LoadedSpec) -> list[Problem]:
    """Each swept path that is not in the spec (`--set` would create it; a sweep would then
    search a value that nothing reads), that is in `sweep:` (a trial's spec has none), or that
    lies inside another swept path (whose values replace what it changes), at its key in
    `sweep.params`."""
    sweep = loaded.spec.sweep
    paths = list(sweep.params) if sweep else []
    problems = []
    for dotted in paths:
        parts = dotted.split(".")
        outer = next((other for other in paths if _inside(parts, other.split("."))), "")
        if parts[0] == "sweep":
            message = "a swept path must be outside sweep: (a trial's spec is the spec without it)"
        elif outer:
            message = f"inside the swept path {outer}, whose values replace what it holds"
        else:
            missing = _missing_step(loaded.document.data, parts)
            if missing is None:
                continue
            message = f"no such path in the spec: {missing}"
        problems.append(loaded.document.problem(("sweep", "params", dotted), message, key=True))
    return problems


def _inside(parts: list[str], outer: list[str]) -> bool:
    """Whether the path `parts` lies inside the path `outer` (and is not it)."""
    return len(outer) < len(parts) and parts[: len(outer)] == outer


def _missing_step(data: Any, parts: list[str]) -> str | None:
    """Where a dotted path leaves the spec's data, in words; `None` when it is all there."""
    here: Any = data
    for depth, part in enumerate(parts):
        at = ".".join(parts[:depth]) or "the spec"
        if isinstance(here, dict):
            if part not in here:
                return f"{at} has no key '{part}'{did_you_mean(part, [str(k) for k in here])}"
            here = here[part]
        elif isinstance(here, list):
            if not (part.isdigit() and int(part) < len(here)):
                return f"{at} is a list of {len(here)} (items 0 to {len(here) - 1}), no {part}"
            here = here[int(part)]
        else:
            return f"{at} holds {received(here)}, not a mapping with '{part}'"
    return None


def seed_problems(loaded: LoadedSpec) -> list[Problem]:
    """`sweep.repeats` that take seeds past the largest (`seed`, `seed + 1`...)."""
    sweep = loaded.spec.sweep
    assert sweep is not None
    last = loaded.spec.seed + sweep.repeats - 1
    if last <= MAX_SEED:
        return []
    message = (
        f"the repeats of a configuration take the seeds {loaded.spec.seed} to {last}, past "
        "the largest, 2**32 - 1"
    )
    return [loaded.document.problem(("sweep", "repeats"), message)]


def pruner_problems(loaded: LoadedSpec) -> list[Problem]:
    """What is wrong with `sweep.prune`: an unknown pruner or argument."""
    sweep = loaded.spec.sweep
    assert sweep is not None
    if sweep.prune is None:
        return []
    name, positional, arguments = split_pruner(sweep.prune)
    where = ("sweep", "prune")
    if name not in PRUNER_ARGUMENTS:
        message = (
            f"unknown pruner. Expected one of {', '.join(PRUNER_ARGUMENTS)}. Received: "
            f"'{name}'{did_you_mean(name, PRUNER_ARGUMENTS)}"
        )
        return [loaded.document.problem(where, message)]
    allowed = PRUNER_ARGUMENTS[name]
    if positional:
        message = f"expected arguments by name ({', '.join(allowed)}). Received: {positional}"
        return [loaded.document.problem((*where, name), message)]
    return [
        loaded.document.problem(
            (*where, name, key),
            f"unknown argument of {name}. Expected one of {', '.join(allowed)}",
            key=True,
        )
        for key in arguments
        if key not in allowed
    ]


def grid_problems(loaded: LoadedSpec) -> list[Problem]:
    """A grid's continuous ranges, and a grid of more than `MAX_GRID_POINTS` points (at the
    param with the most values)."""
    sweep = loaded.spec.sweep
    assert sweep is not None
    if sweep.method != "grid":
        return []
    document = loaded.document
    sizes = {dotted: grid_size(param) for dotted, param in sweep.params.items()}
    problems = [
        document.problem(
            ("sweep", "params", dotted),
            f"a grid takes choice or int values; {sweep.params[dotted].kind} is a continuous "
            "range (use method: random, tpe or cmaes, or list the values with choice)",
            key=True,
        )
        for dotted, size in sizes.items()
        if size is None
    ]
    points = 1
    for size in sizes.values():
        points *= size or 1
    if points > MAX_GRID_POINTS:
        largest = max(sizes, key=lambda dotted: sizes[dotted] or 0)
        message = (
            f"the grid has {points:,} points, more than the {MAX_GRID_POINTS:,} a grid may have "
            f"(Optuna lists them all); this param takes {sizes[largest]:,} values: give it a "
            "step or fewer choices, or use method: random, tpe or cmaes"
        )
        problems.append(document.problem(("sweep", "params", largest), message, key=True))
    return problems


def optuna_problems(loaded: LoadedSpec) -> list[Problem]:
    """What Optuna refuses, before a trial: the pruner's arguments (each alone, then together)
    and the sampler, by their own constructors; then what a few trials in memory meet
    (`_dry_run`)."""
    import optuna

    sweep = loaded.spec.sweep
    assert sweep is not None
    document = loaded.document
    with _quiet_optuna():
        problems: list[Problem] = []
        pruner: Any = optuna.pruners.NopPruner()
        if sweep.prune is not None:
            name, _, arguments = split_pruner(sweep.prune)
            problems = [
                document.problem(
                    ("sweep", "prune", name, key),
                    f"Optuna refuses it (its {PRUNER_ARGUMENTS[name][key]}): {reason}",
                )
                for key, value in arguments.items()
                if (reason := _refusal(optuna_pruner, name, {key: value}))
            ]
            if not problems and (reason := _refusal(optuna_pruner, name, arguments)):
                message = f"Optuna refuses these arguments: {reason}"
                problems.append(document.problem(("sweep", "prune", name), message))
            if not problems:
                pruner = optuna_pruner(name, arguments)
        try:
            made = sampler(sweep, loaded.spec.seed)
        except (*REFUSED, ImportError) as exc:
            problems.append(document.problem(("sweep", "method"), f"Optuna refuses it: {exc}"))
        if problems:
            return problems
        return _dry_run(document, sweep, optuna.create_study(sampler=made, pruner=pruner))


def _dry_run(document: Document, sweep: Sweep, study: Any) -> list[Problem]:
    """What `DRY_RUN_TRIALS` trials of `study` (in memory, with the sweep's sampler and pruner)
    meet: each param's values drawn, and each trial's epochs given to the pruner."""
    for _ in range(DRY_RUN_TRIALS):
        trial = study.ask()
        problems = []
        for dotted, param in sweep.params.items():
            try:
                suggest(trial, dotted, param)
            except REFUSED as exc:
                message = f"Optuna cannot draw its values: {exc}"
                problems.append(document.problem(("sweep", "params", dotted), message, key=True))
            except ImportError as exc:  # a sampler's package (cmaes) not installed
                problems.append(document.problem(("sweep", "method"), str(exc)))
        if problems:
            return problems
        try:
            for epoch in range(DRY_RUN_TRIALS):
                trial.report(0.0, step=epoch)
                trial.should_prune()
        except REFUSED as exc:
            message = f"Optuna cannot prune with it: {exc or type(exc).__name__}"
            return [document.problem(("sweep", "prune"), message)]
        study.tell(trial, 0.0)
    return []


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's log lines and warnings off: what it says of a study in memory (a new study, a
    grid drawn past its points) is not the sweep's; the sweep's own study says it again."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _refusal(make: Callable[..., Any], *arguments: Any) -> str | None:
    """Why Optuna's constructor `make` refuses `arguments`; `None` when it takes them."""
    try:
        make(*arguments)
    except REFUSED as exc:
        return str(exc) or type(exc).__name__
    return None


def value_problems(
    path: str | Path,
    overrides: list[str] | tuple[str, ...],
    loaded: LoadedSpec,
    params: dict[str, SweepParam],
    built: BuiltModel | None = None,
) -> list[Problem]:
    """The spec at each value of `params` (each choice, both ends of each range), and the
    sweep's metric among what its runs log there.

    Each value's spec is loaded (its schema checked); then its model is built, once for each
    model the values make (the spec but its `train` section), and its `train` components
    resolved, as `dlx validate` does; then what its runs log is known
    (`dlx.train.tasks.Task.final_metrics`). More than `MAX_VALUES` values, or `MAX_MODELS`
    models, are not checked: that is the problem then. `built` is the model of the spec
    itself, when it was built.
    """
    from dlx.train.kinds import task_for
    from dlx.train.validation import check_spec

    document = loaded.document
    values = {dotted: _distinct(param.checked_values()) for dotted, param in params.items()}
    counts = {dotted: len(each) for dotted, each in values.items()}
    if sum(counts.values()) > MAX_VALUES:
        return [_too_many(document, counts, sum(counts.values()), MAX_VALUES, "values", "")]
    base = trial_document(path, overrides)
    problems: list[Problem] = []
    trials: dict[tuple[str, int], LoadedSpec] = {}
    for dotted, each in values.items():
        for index, value in enumerate(each):
            try:
                trials[dotted, index] = spec_with(base, {dotted: value})
            except SpecError as exc:
                problems += _invalid_at(document, dotted, value, exc.problems)
    # Each model's output names (`None`: it did not build), by what it is built from.
    outputs: dict[str, list[str] | None] = {}
    if built is not None:
        outputs[_model_key(base.data)] = list(built.model.output_names)
    keys = {at: _model_key(trial.document.data) for at, trial in trials.items()}
    new = {at: key for at, key in keys.items() if key not in outputs}
    if len(set(new.values())) > MAX_MODELS:
        models = {dotted: len({k for (d, _), k in new.items() if d == dotted}) for dotted in values}
        note = " (values that change only train share their model)"
        return [
            *problems,
            _too_many(document, models, len(set(new.values())), MAX_MODELS, "models", note),
        ]
    logged: dict[tuple[str, int], set[str] | None] = {}
    for (dotted, index), trial in trials.items():
        value, key = values[dotted][index], keys[dotted, index]
        if key not in outputs:
            model, found = check_spec(trial, check_data=False)
            names = outputs[key] = None if model is None else list(model.model.output_names)
        else:
            names = outputs[key]
            if names is None:  # its model did not build: said at the value that built it first
                continue
            found = _compile_problems(trial, names)  # its model built: its compile arguments
        if found or names is None:
            problems += _invalid_at(document, dotted, value, found)
            continue
        try:
            logged[dotted, index] = task_for(trial).final_metrics(names)
        except SpecError as exc:
            problems += _invalid_at(document, dotted, value, exc.problems)
    return problems + metric_problems(loaded, logged, values)


def metric_problems(
    loaded: LoadedSpec,
    logged: dict[tuple[str, int], set[str] | None],
    values: dict[str, list[Any]],
) -> list[Problem]:
    """`sweep.metric` against what the runs log at each value checked (`logged`, by swept path
    and index into its `values`; `None` where it cannot be known): at `sweep.metric` when no
    run logs it, else at each swept path whose values make runs that do not."""
    sweep = loaded.spec.sweep
    assert sweep is not None
    metric = sweep.metric
    known = {at: names for at, names in logged.items() if names is not None}
    missing = {at: names for at, names in known.items() if not _logs(names, metric)}
    if not missing:
        return []
    document = loaded.document
    if len(missing) == len(known):
        every = sorted(set().union(*missing.values()))
        message = (
            f"no run of this sweep logs '{metric}'{did_you_mean(metric, every)}. "
            f"Its runs log: {', '.join(every)}"
        )
        return [document.problem(("sweep", "metric"), message)]
    return [
        document.problem(
            ("sweep", "params", dotted),
            f"the runs at {dotted} = {received(values[dotted][index])} do not log the sweep's "
            f"metric '{metric}'. They log: {', '.join(sorted(names))}",
            key=True,
        )
        for (dotted, index), names in missing.items()
    ]


def _logs(names: set[str], metric: str) -> bool:
    """Whether a run that logs `names` logs `metric` (a metric of several values, `f1_score`,
    is logged as `f1_score.0`, `f1_score.1`...)."""
    stem, _, index = metric.rpartition(".")
    return metric in names or (index.isdigit() and stem in names)


def _too_many(
    document: Document, counts: dict[str, int], total: int, limit: int, what: str, note: str
) -> Problem:
    """More values, or models, to check than `limit`: at the param with the most."""
    largest = max(counts, key=lambda dotted: counts[dotted])
    share = f" ({counts[largest]:,} of them this param's)" if total != counts[largest] else ""
    message = (
        f"{total:,} {what} to check{share}, more than the {limit:,} dlx checks a sweep at"
        f"{note}: give fewer choices, or a range ({{int: [low, high]}} or {{uniform: [low, "
        "high]}, checked at both ends)"
    )
    return document.problem(("sweep", "params", largest), message, key=True)


def _compile_problems(trial: LoadedSpec, output_names: list[str]) -> list[Problem]:
    """What is wrong with a spec's `train` components, on a model with these outputs."""
    from dlx.build.compile import build_compile_args

    try:
        build_compile_args(trial, output_names)
    except SpecError as exc:
        return exc.problems
    return []


def _invalid_at(document: Document, dotted: str, value: Any, found: list[Problem]) -> list[Problem]:
    """A trial spec's problems, at the swept path's key."""
    return [
        document.problem(
            ("sweep", "params", dotted),
            f"the spec is invalid at {dotted} = {received(value)}: "
            f"{problem.key + ': ' if problem.key else ''}{problem.message}",
            key=True,
        )
        for problem in found
    ]


def _distinct(values: list[Any]) -> list[Any]:
    """The values, each once (by how it reads: `1` and `true` are two values of a spec)."""
    return list({repr(value): value for value in values}.values())


def _model_key(data: dict[str, Any]) -> str:
    """What a spec's model is built from: its data but `train` (which the model is compiled
    with, not built from)."""
    return repr({key: value for key, value in data.items() if key != "train"})
