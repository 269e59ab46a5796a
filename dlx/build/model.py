"""A spec's `model` section -> Keras models (docs/spec.md section 4).

`build_model` builds a supervised model (a stack or graph of layers, optionally on a pretrained
backbone). Other kinds build their networks in their own task module (`dlx.train`), from the
same pieces: `model_builder` (the spec's resolver and graph builder) and `functional`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlx.build.graph import GraphBuilder
from dlx.build.resolver import APPLICATION, Resolver, keras_message
from dlx.errors import UsageError, did_you_mean
from dlx.spec import LoadedSpec, PathKey

RunModelLoader = Callable[[str | None, str], Any]
"""Loads the Keras model a run logged, for a backbone given by run id (`backbone: {run: <id>}`):
called with the spec's `tracking.uri` (`None` for the default store) and the run's id, it
returns the model or raises `UsageError`. dlx's own is `dlx.track.logged_models.load_run_model`;
`build` reads no store itself."""


@dataclass
class BuiltModel:
    """What a spec's model section builds.

    `model` is what is trained and saved for supervised and autoencoder kinds; a GAN trains
    `generator` against `discriminator` and saves the generator. `encoder`/`decoder` are the
    halves of an autoencoder; `backbone` is the pretrained part of a transfer-learning model.
    """

    model: Any
    encoder: Any = None
    decoder: Any = None
    generator: Any = None
    discriminator: Any = None
    backbone: Any = None
    shown: list[Any] | None = None
    """The networks `dlx inspect` lists, when they are not `model` alone (a GAN's two)."""

    @property
    def networks(self) -> list[Any]:
        """The networks whose layers describe the model (`dlx inspect`)."""
        return self.shown or [self.model]


def import_plugins(loaded: LoadedSpec) -> None:
    """Import the modules under `plugins:`, with the spec's folder importable."""
    base = str(loaded.base_dir)
    if base not in sys.path:
        sys.path.insert(0, base)
    for i, module in enumerate(loaded.spec.plugins):
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise loaded.error(("plugins", i), f"cannot import plugin '{module}': {exc}") from None


def model_builder(loaded: LoadedSpec) -> GraphBuilder:
    """The graph builder of a spec's model section, its plugins imported."""
    import_plugins(loaded)
    return GraphBuilder(Resolver(loaded.document), loaded.spec.model.blocks)


def build_model(loaded: LoadedSpec, load_run_model: RunModelLoader | None = None) -> BuiltModel:
    """Build the supervised Keras model a spec describes, without reading any data.

    Args:
        loaded: the spec.
        load_run_model: loads a backbone given by run id; a spec with one is an error without.

    Raises:
        SpecError: an unknown name, a bad argument, a dangling reference, a cycle or a shape
            mismatch, at its line in the spec.
    """
    import keras

    model = loaded.spec.model
    layers = model.layers
    assert layers is not None  # a supervised model needs `layers` (the spec's `Model` checks it)
    builder = model_builder(loaded)
    name = keras_name(loaded.name)
    if model.backbone is not None:
        backbone = _backbone(loaded, builder.resolver, load_run_model)
        _reserve_names(builder, backbone)
        out, named = builder.connect(layers, ("model", "layers"), scope_input=backbone.output)
        outputs = _outputs(loaded, out, named)
        return BuiltModel(keras.Model(backbone.inputs, outputs, name=name), backbone=backbone)
    out, named = builder.connect(layers, ("model", "layers"))
    outputs = _outputs(loaded, out, named)
    if not builder.inputs:
        raise loaded.error(("model", "layers"), "the model has no input entry")
    inputs = builder.inputs[0] if len(builder.inputs) == 1 else builder.inputs
    return BuiltModel(_model(loaded, inputs, outputs, name))


def functional(builder: GraphBuilder, entries: list[Any], path: PathKey, name: str) -> Any:
    """A Keras model of `entries`, which start with their own input entry."""
    import keras

    first = len(builder.inputs)
    out, _ = builder.connect(entries, path)
    inputs = builder.inputs[first:]
    if not inputs:
        raise builder.resolver.error(
            path, "expected an input entry first, e.g. input: {shape: [64]}"
        )
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, out, name=name)


def _outputs(loaded: LoadedSpec, last: Any, named: dict[str, Any]) -> Any:
    wanted = loaded.spec.model.outputs
    if wanted is None:
        return last
    names = [wanted] if isinstance(wanted, str) else wanted
    outputs = []
    for i, output in enumerate(names):
        if output not in named:
            path = ("model", "outputs") + ((i,) if isinstance(wanted, list) else ())
            raise loaded.error(path, f"no entry named '{output}'" + did_you_mean(output, named))
        outputs.append(named[output])
    return outputs[0] if isinstance(wanted, str) else outputs


def _model(loaded: LoadedSpec, inputs: Any, outputs: Any, name: str) -> Any:
    import keras

    try:
        return keras.Model(inputs, outputs, name=name)
    except Exception as exc:
        raise loaded.error(("model",), f"cannot make a model: {keras_message(exc)}") from None


def keras_name(name: str) -> str:
    """Keras model names must be valid op names: `digits-cnn` -> `digits_cnn`."""
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return cleaned if cleaned[:1].isalpha() else f"model_{cleaned}"


def _reserve_names(builder: GraphBuilder, backbone: Any) -> None:
    """Keep the head's layer names apart from the backbone's, which join it in one model.

    A name the spec gives that the backbone has is an error; a name Keras makes continues the
    backbone's count as Keras does for a second layer of a kind: after the backbone's `dense`
    and `dense_1`, the head's dense layer is `dense_2`.
    """
    import keras

    for layer in backbone.layers:
        builder.keras_names.add(layer.name)
        base, _, number = layer.name.rpartition("_")
        if not (base and number.isdigit() and len(number) < 5):
            base, number = layer.name, "0"
        while keras.backend.get_uid(base) <= int(number):
            pass


def _run_model(
    loaded: LoadedSpec, run_id: str, path: PathKey, load_run_model: RunModelLoader | None
) -> Any:
    """The Keras model a dlx run logged, from the store the spec tracks to."""
    if load_run_model is None:
        raise loaded.error(path, "no backbone: loading a run's model needs a store to read")
    try:
        return load_run_model(loaded.spec.tracking.uri, run_id)
    except UsageError as exc:
        raise loaded.error(path, f"no backbone: {exc}") from None


def _backbone(loaded: LoadedSpec, resolver: Resolver, load_run_model: RunModelLoader | None) -> Any:
    """The pretrained network of a transfer-learning model, cut and frozen as the spec says."""
    import keras

    spec = loaded.spec.model.backbone
    assert spec is not None
    path = ("model", "backbone")
    if spec.application is not None:
        found, constructor = resolver.find(
            APPLICATION, spec.application, (*path, "application"), key=False
        )
        weights = spec.weights
        if weights not in (None, "imagenet"):
            weights = str((loaded.base_dir / weights).resolve())
        kwargs: dict[str, Any] = {"include_top": False, "weights": weights}
        if spec.input_shape:
            kwargs["input_shape"] = tuple(spec.input_shape)
        try:
            backbone = constructor(**kwargs)
        except Exception as exc:
            message = keras_message(exc)
            if weights == "imagenet" and (
                "URL fetch failure" in message or "http" in message.lower()
            ):
                message = (
                    f"cannot download the imagenet weights of {found} (no network?): {message}. "
                    "Download them once with network access, or set weights: null or a file"
                )
            raise loaded.error((*path, "application"), f"{found}: {message}") from None
    elif spec.model is not None:
        file = (loaded.base_dir / spec.model).resolve()
        if not file.exists():
            raise loaded.error((*path, "model"), f"no such model file: {file}")
        backbone = keras.saving.load_model(file, compile=False)
    else:
        assert spec.run is not None  # a backbone has exactly one origin (the spec checks it)
        backbone = _run_model(loaded, spec.run, (*path, "run"), load_run_model)
    if spec.until is not None:
        try:
            cut = backbone.get_layer(spec.until)
        except ValueError:
            names = [layer.name for layer in backbone.layers]
            raise loaded.error(
                (*path, "until"),
                f"no layer '{spec.until}' in the backbone" + did_you_mean(spec.until, names),
            ) from None
        backbone = keras.Model(
            backbone.inputs, cut.output, name=f"{backbone.name}_until_{spec.until}"
        )
    backbone.trainable = spec.trainable
    return backbone


__all__ = [
    "BuiltModel",
    "RunModelLoader",
    "build_model",
    "functional",
    "import_plugins",
    "keras_name",
    "model_builder",
]
