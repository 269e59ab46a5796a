"""Checking a spec completely without reading its data (`dlx validate`): its model built by
its kind's task, its training components resolved, its data sources checked."""

from __future__ import annotations

from dlx.build.model import BuiltModel
from dlx.errors import Problem, SpecError
from dlx.spec import LoadedSpec


def check_spec(loaded: LoadedSpec, check_data: bool) -> tuple[BuiltModel | None, list[Problem]]:
    """Build a loaded spec's model and resolve its training components.

    Args:
        loaded: the spec.
        check_data: whether to check its data sources too (names, files and folders, CSV
            headers, Python functions), without reading their data.

    Returns:
        The model built (`None` when it could not be), and every problem found.
    """
    from dlx.backend import current, use_backend
    from dlx.build.compile import build_compile_args
    from dlx.data import check_sources

    # A model builds alike on either backend: a process whose Keras runs already checks with
    # it; otherwise Keras starts on the spec's own (no TensorFlow for a JAX spec).
    use_backend(current() or loaded.spec.runtime.backend)
    import keras

    from dlx.train.kinds import task_for
    from dlx.train.preparation import backend_module, source_context

    # Layer names start afresh: the same spec, the same names. (Python's own collector frees
    # old models; a full collection here would cost half a second per call.)
    keras.utils.clear_session(free_memory=False)
    problems: list[Problem] = []
    built = None
    task = task_for(loaded)
    if (unsupported := task.unsupported_on(loaded.spec.runtime.backend)) is not None:
        problems.append(loaded.document.problem(*unsupported))
    try:
        built = task.build_models()
    except SpecError as exc:
        problems.extend(exc.problems)
    backend = backend_module(loaded.spec.runtime.backend)
    if built is not None and (unsupported := backend.unsupported(built.model)) is not None:
        problems.append(loaded.document.problem(("runtime", "backend"), unsupported))
    output_names = list(built.model.output_names) if built is not None else None
    try:
        build_compile_args(loaded, output_names)
    except SpecError as exc:
        problems.extend(exc.problems)
    if check_data and loaded.spec.data is not None:
        for error in check_sources(loaded.spec.data, source_context(loaded)):
            problems.append(loaded.document.problem(error.path, error.message))
        if output_names is not None:
            problems += _targets_named(loaded, output_names)
    return built, problems


TARGET_ARGUMENTS = ("y", "label")
"""The arguments by which a source names its targets: `y` (arrays), `label` (CSV columns)."""


def _targets_named(loaded: LoadedSpec, output_names: list[str]) -> list[Problem]:
    """Each source's targets against the model's outputs, from the spec alone: a mapping of
    output name to targets names the model's outputs, and a model with several outputs has
    one."""
    from dlx.errors import did_you_mean
    from dlx.spec.component import ComponentError, split_component

    data = loaded.spec.data
    assert data is not None
    sources = [(data.source, ("data", "source")), *((c, k) for _, c, k in data.explicit_sources())]
    problems = []
    for component, keys in sources:
        try:
            name, _, arguments = split_component(component)
        except ComponentError:  # said by the source's own check
            continue
        for argument in TARGET_ARGUMENTS:
            targets = arguments.get(argument)
            at = (*keys, name, argument)
            outputs = ", ".join(output_names)
            if isinstance(targets, dict):
                for output in targets:
                    if output not in output_names:
                        message = (
                            f"the model has no output '{output}'"
                            f"{did_you_mean(str(output), output_names)}. Outputs: {outputs}"
                        )
                        problems.append(loaded.document.problem((*at, str(output)), message))
                missing = [o for o in output_names if o not in targets]
                if missing and len(targets) > 0:
                    message = f"no targets for the output(s) {', '.join(missing)}"
                    problems.append(loaded.document.problem(at, message))
            elif isinstance(targets, str) and len(output_names) > 1:
                message = (
                    f"the model has {len(output_names)} outputs ({outputs}): give the targets "
                    f"of each, as a mapping of output name to {argument}"
                )
                problems.append(loaded.document.problem(at, message))
    return problems
