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
