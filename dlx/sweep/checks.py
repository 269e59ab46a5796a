"""What is wrong with a spec's `sweep:` section, found before any trial runs (`dlx validate`,
and `dlx sweep` before its first trial), each problem at its key in the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlx.errors import Problem, SpecError
from dlx.spec import LoadedSpec
from dlx.sweep.space import PRUNER_ARGUMENTS, grid_values, split_pruner, trial_spec


def pruner_problems(loaded: LoadedSpec) -> list[Problem]:
    """What is wrong with `sweep.prune`: an unknown pruner or argument."""
    sweep = loaded.spec.sweep
    if sweep is None or sweep.prune is None:
        return []
    from dlx.errors import did_you_mean

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


def path_problems(loaded: LoadedSpec) -> list[Problem]:
    """Each swept path that is not in the spec (`--set` would create it; a sweep would then
    search a value that nothing reads), at its key in `sweep.params`."""
    sweep = loaded.spec.sweep
    problems = []
    for dotted in sweep.params if sweep else {}:
        missing = _missing_step(loaded.document.data, dotted.split("."))
        if missing is not None:
            where = ("sweep", "params", dotted)
            message = f"no such path in the spec: {missing}"
            problems.append(loaded.document.problem(where, message, key=True))
    return problems


def _missing_step(data: Any, parts: list[str]) -> str | None:
    """Where a dotted path leaves the spec's data, in words; `None` when it is all there."""
    from dlx.errors import did_you_mean

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
            return f"{at} holds {here!r}, not a mapping with '{part}'"
    return None


def sweep_problems(
    path: str | Path,
    overrides: list[str] | tuple[str, ...],
    loaded: LoadedSpec,
) -> list[Problem]:
    """What is wrong with a spec's `sweep:` section: a path that is not in the spec, an
    unknown pruner, a continuous range in a grid, and any value (each choice, both ends of
    each range) at which the spec does not validate or its model does not build. Each problem
    is at the swept path's key in `sweep.params` (or at `sweep.prune`, `sweep.method`); a
    trial's spec is checked as `dlx validate` checks one (`dlx.train.validation.check_spec`)."""
    from dlx.train.validation import check_spec

    sweep = loaded.spec.sweep
    assert sweep is not None
    document = loaded.document
    problems = path_problems(loaded) + pruner_problems(loaded)
    if sweep.method == "grid":
        problems += [
            document.problem(
                ("sweep", "params", dotted),
                f"a grid takes choice or int values; {param.kind} is a continuous range "
                "(use method: random, tpe or cmaes, or list the values with choice)",
                key=True,
            )
            for dotted, param in sweep.params.items()
            if grid_values(param) is None
        ]
    missing = {problem.key for problem in problems}
    for dotted, param in sweep.params.items():
        if f"sweep.params.{dotted}" in missing:
            continue
        for value in param.checked_values():
            where = ("sweep", "params", dotted)
            try:
                trial = trial_spec(path, overrides, {dotted: value})
                found = check_spec(trial, check_data=False)[1]
            except SpecError as exc:
                found = exc.problems
            problems += [
                document.problem(
                    where,
                    f"the spec is invalid at {dotted} = {value!r}: "
                    f"{problem.key + ': ' if problem.key else ''}{problem.message}",
                    key=True,
                )
                for problem in found
            ]
    return problems
