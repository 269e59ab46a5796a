"""The Python API that the command line calls: train, validate, inspect, schema.

Every function raises `dlx.errors.DlxError` subclasses for problems a user can fix; none prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlx.spec import LoadedSpec, load_spec


@dataclass
class Validated:
    """A spec that loaded, built and whose training components resolved."""

    loaded: LoadedSpec
    built: Any  # dlx.build.model.BuiltModel


def validate(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Validated:
    """Check a spec completely without reading data: schema, names, arguments, and the model.

    Raises:
        SpecError: every problem found, each at its file, line and column.
    """
    from dlx.build.compile import build_compile_args
    from dlx.build.model import build_model
    from dlx.errors import SpecError
    from dlx.tensorflow_import import import_tensorflow_quietly

    loaded = load_spec(path, overrides)
    import_tensorflow_quietly()
    import keras

    keras.utils.clear_session()  # layer names start afresh: the same spec, the same names
    problems = []
    built = None
    try:
        built = build_model(loaded)
    except SpecError as exc:
        problems.extend(exc.problems)
    output_names = list(built.model.output_names) if built is not None else None
    try:
        build_compile_args(loaded, output_names)
    except SpecError as exc:
        problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return Validated(loaded, built)


def inspect(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Describe the model a spec builds: layers, output shapes and parameter counts.

    Returns:
        `{"name", "kind", "params", "trainable_params", "non_trainable_params", "layers": [{"name",
        "class_name", "output_shape", "params"}, ...]}` (SPEC.md section 8). Layers of nested
        models (an autoencoder's encoder and decoder, a GAN's two networks) are listed by their
        path, `encoder/conv2d`.
    """
    validated = validate(path, overrides)
    built = validated.built
    models = [built.generator, built.discriminator] if built.kind == "gan" else [built.model]
    layers: list[dict[str, Any]] = []
    for model in models:
        prefix = f"{model.name}/" if len(models) > 1 else ""
        layers.extend(_layers(model, prefix))
    trainable = sum(_count(m.trainable_weights) for m in models)
    frozen = sum(_count(m.non_trainable_weights) for m in models)
    return {
        "name": validated.loaded.name,
        "kind": built.kind,
        "params": trainable + frozen,
        "trainable_params": trainable,
        "non_trainable_params": frozen,
        "layers": layers,
    }


def _layers(model: Any, prefix: str) -> list[dict[str, Any]]:
    import keras

    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.layers:
            rows.extend(_layers(layer, f"{prefix}{layer.name}/"))
            continue
        rows.append(
            {
                "name": prefix + layer.name,
                "class_name": type(layer).__name__,
                "output_shape": _shape(layer.output),
                "params": _count(layer.weights),
            }
        )
    return rows


def _shape(output: Any) -> Any:
    if isinstance(output, (list, tuple)):
        return [_shape(o) for o in output]
    return list(output.shape)


def _count(weights: list[Any]) -> int:
    import math

    return sum(math.prod(w.shape) for w in weights)


def schema() -> dict[str, Any]:
    """The JSON Schema of the spec language."""
    from dlx.spec import json_schema

    return json_schema()


def train(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    expect: list[str] | tuple[str, ...] = (),
    *,
    live: bool | None = None,
) -> Any:
    """Train a spec and record the run in MLflow (SPEC.md sections 3-7).

    Args:
        path: the spec's YAML file.
        overrides: `dotted.path=value` overrides.
        expect: `METRIC>=VALUE` gates on the final metrics; unmet ones are listed in the
            result's `failures` (the run is recorded either way).
        live: a live progress bar; default: when stdout is a terminal.

    Returns:
        A `dlx.train.runner.TrainResult`.
    """
    from dlx.train.expectations import parse_expectations
    from dlx.train.runner import train as run_training

    expectations = parse_expectations(list(expect))
    loaded = load_spec(path, overrides)
    return run_training(loaded, expectations, live=live)


@dataclass
class Reproduction:
    """A run trained again from its logged spec, and how its final metrics compare."""

    original_run_id: str
    result: Any  # dlx.train.runner.TrainResult
    rows: list[tuple[str, float | None, float | None]]
    """(metric, original value, reproduced value) for every metric either run has."""
    tolerance: float

    @property
    def mismatches(self) -> list[str]:
        return [
            name
            for name, before, after in self.rows
            if before is None or after is None or abs(after - before) > self.tolerance
        ]


def reproduce(
    reference: str,
    *,
    tolerance: float = 0.0,
    tracking_uri: str | None = None,
    live: bool | None = None,
) -> Reproduction:
    """Train a recorded run's logged spec again and compare every final metric.

    The new run goes to the same store, tagged `dlx.reproduction_of`. Relative paths in the
    spec resolve against the folder the original spec was in when that folder exists here,
    else against the working directory; the logged spec and its seed are all that is needed.

    Args:
        reference: the run's id, or a unique prefix of it.
        tolerance: the largest absolute difference counted as equal (default: exactly equal).
        tracking_uri: the store; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.
        live: a live progress bar; default: when stdout is a terminal.
    """
    from dlx.spec import load_spec_text
    from dlx.track.read import open_store
    from dlx.train.runner import train as run_training

    store = open_store(tracking_uri)
    (original,) = store.find([reference])
    run_id = original.info.run_id
    source = Path(original.data.tags.get("mlflow.source.name") or "spec.yaml")
    folder = source.parent if source.parent.is_dir() else Path.cwd()
    loaded = load_spec_text(store.spec_text(run_id), folder / source.name)
    result = run_training(
        loaded, live=live, tracking_uri=store.uri, tags={"dlx.reproduction_of": run_id}
    )
    names = sorted(set(original.data.metrics) | set(result.metrics))
    rows = [(n, original.data.metrics.get(n), result.metrics.get(n)) for n in names]
    return Reproduction(run_id, result, rows, tolerance)
