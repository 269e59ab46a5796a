"""A spec's `train` components -> optimizer, loss, metrics, callbacks (docs/spec.md section 5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlx.build.resolver import CALLBACK, LOSS, METRIC, OPTIMIZER, Resolver
from dlx.errors import SpecError
from dlx.spec import LoadedSpec, PathKey, normalize_name
from dlx.spec.schema import GAN_ROLES

# Metric names that `Model.compile` itself interprets by the loss and output shape (keras/src/
# trainers/compile_utils.py): `accuracy` is sparse or categorical as the targets need.
_COMPILE_METRIC_NAMES = {"accuracy", "acc", "crossentropy", "ce"}


@dataclass
class CompileArgs:
    """What `Model.compile` takes, built from the spec, plus the callbacks for `fit`."""

    optimizer: Any
    loss: Any
    metrics: Any
    callbacks: list[Any] = field(default_factory=list)
    loss_weights: dict[str, float] | None = None


def build_compile_args(loaded: LoadedSpec, output_names: list[str] | None = None) -> CompileArgs:
    """Build the optimizer, loss, metrics and callbacks of a spec.

    Every problem is reported at once, each at its line.

    Raises:
        SpecError: an unknown name or bad argument in `train`.
    """
    resolver = Resolver(loaded.document)
    train = loaded.spec.train
    problems = []
    results: dict[str, Any] = {}
    steps = {
        "optimizer": lambda: build_optimizer(resolver, train.optimizer, ("train", "optimizer")),
        "loss": lambda: _per_output(resolver, LOSS, train.loss, ("train", "loss"), output_names),
        "metrics": lambda: _metrics(resolver, train.metrics, output_names),
        "callbacks": lambda: _callbacks(resolver, train.callbacks),
        "loss_weights": lambda: _loss_weights(resolver, train.loss_weights, output_names),
    }
    for key, step in steps.items():
        try:
            results[key] = step()
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return CompileArgs(**results)


def build_callbacks(loaded: LoadedSpec) -> list[Any]:
    """The spec's callbacks (`train.callbacks`).

    Raises:
        SpecError: an unknown callback or bad argument.
    """
    return _callbacks(Resolver(loaded.document), loaded.spec.train.callbacks)


def _callbacks(resolver: Resolver, callbacks: list[Any]) -> list[Any]:
    return [resolver.build(CALLBACK, c, ("train", "callbacks", i)) for i, c in enumerate(callbacks)]


def logged_names(loaded: LoadedSpec, output_names: list[str]) -> set[str]:
    """The names under which Keras logs the loss and metrics of a model with these outputs
    compiled with the spec's `train` section (`keras/src/trainers/compile_utils.py`), each
    epoch's and `evaluate`'s alike; nothing but the metrics is built.

    `loss`; with several outputs, each output's loss, `<output>_loss`; each metric by its name
    (a name as written, else the object's `name`), `<output>_<name>` for an output's own
    metrics when the model has several outputs; a repeated name numbered (`auc_1`). Where
    Keras's naming depends on how several outputs are given their losses and metrics, every
    name it may give is in.

    Raises:
        SpecError: a metric does not resolve.
    """
    names = {"loss"}
    metrics = _metrics(Resolver(loaded.document), loaded.spec.train.metrics, output_names)
    per_output: dict[str | None, list[Any]] = {None: _flat(metrics)}  # one output: unprefixed
    if len(output_names) > 1:
        names |= {f"{output}_loss" for output in output_names}
        per_output = {
            output: _flat(metrics.get(output) if isinstance(metrics, dict) else metrics)
            for output in output_names
        }
    for output, flat in per_output.items():
        counts: dict[str, int] = {}
        for metric in flat:
            name = _metric_name(metric) if output is None else f"{output}_{_metric_name(metric)}"
            counts[name] = counts.get(name, 0) + 1
            names.add(name if counts[name] == 1 else f"{name}_{counts[name] - 1}")
    return names


def _flat(metrics: Any) -> list[Any]:
    """Metrics given as one, a list, or a mapping of outputs to either, as one list."""
    if metrics is None:
        return []
    if isinstance(metrics, dict):
        return [m for value in metrics.values() for m in _flat(value)]
    if isinstance(metrics, (list, tuple)):
        return [m for value in metrics for m in _flat(value)]
    return [metrics]


def _metric_name(metric: Any) -> str:
    """The name Keras logs a metric under: a name as written, else the object's own name."""
    if isinstance(metric, str):
        return metric
    return str(getattr(metric, "name", None) or getattr(metric, "__name__", type(metric).__name__))


def build_optimizer(resolver: Resolver, value: Any, path: PathKey) -> Any:
    """The optimizer; for a GAN, a mapping of role (generator, discriminator) to optimizer."""
    if isinstance(value, dict) and set(value) == set(GAN_ROLES):
        return {role: resolver.build(OPTIMIZER, value[role], (*path, role)) for role in GAN_ROLES}
    return resolver.build(OPTIMIZER, value, path)


def _per_output(
    resolver: Resolver, kind: Any, value: Any, path: PathKey, outputs: list[str] | None
) -> Any:
    if value is None:
        return None
    if isinstance(value, dict) and outputs and set(value) <= set(outputs) and len(outputs) > 1:
        return {name: resolver.build(kind, v, (*path, name)) for name, v in value.items()}
    if isinstance(value, list):
        return [resolver.build(kind, v, (*path, i)) for i, v in enumerate(value)]
    if isinstance(value, dict) and len(value) != 1:
        raise resolver.error(
            path, "expected a loss component, or a mapping from output names to losses"
        )
    return resolver.build(kind, value, path)


def _loss_weights(
    resolver: Resolver, weights: dict[str, float] | None, outputs: list[str] | None
) -> dict[str, float] | None:
    """`train.loss_weights`: a weight for outputs of the model's (default 1 each)."""
    from dlx.errors import did_you_mean

    if weights is None or outputs is None:
        return weights
    for name in weights:
        if name not in outputs:
            raise resolver.error(
                ("train", "loss_weights", name),
                f"the model has no output '{name}'{did_you_mean(name, outputs)}. "
                f"Outputs: {', '.join(outputs)}",
            )
    return {name: float(weights.get(name, 1.0)) for name in outputs}


def _metrics(resolver: Resolver, value: Any, outputs: list[str] | None) -> Any:
    if isinstance(value, dict):
        return {
            name: [_metric(resolver, m, ("train", "metrics", name, i)) for i, m in enumerate(ms)]
            for name, ms in value.items()
        }
    return [_metric(resolver, m, ("train", "metrics", i)) for i, m in enumerate(value)]


def _metric(resolver: Resolver, value: Any, path: PathKey) -> Any:
    """A metric; a bare name stays a string so that `compile` picks the right variant."""
    name, _, _ = resolver.split(value, path, METRIC.label)
    if isinstance(value, str):
        if normalize_name(name) in _COMPILE_METRIC_NAMES:
            return name
        keras_name, obj = resolver.find(METRIC, name, path, key=False)
        if keras_name == name:  # a Keras identifier (`mae`, `auc`): its logs keep that name
            return name
        return obj() if isinstance(obj, type) else obj
    return resolver.build(METRIC, value, path)


__all__ = [
    "CompileArgs",
    "build_callbacks",
    "build_compile_args",
    "build_optimizer",
    "logged_names",
]
