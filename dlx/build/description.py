"""What a built model is made of, layer by layer (`dlx inspect`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LayerDescription:
    """One layer: its path (`encoder/conv2d` inside a nested model), class, output shape and
    parameter count."""

    name: str
    class_name: str
    output_shape: Any
    """A list of dimensions (`None` for the batch), or a list of such lists for several."""
    params: int


@dataclass
class ModelDescription:
    """A spec's model: its name and kind, its parameter counts and its layers."""

    name: str
    kind: str
    params: int
    trainable_params: int
    non_trainable_params: int
    layers: list[LayerDescription] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """`{"name", "kind", "params", "trainable_params", "non_trainable_params", "layers":
        [{"name", "class_name", "output_shape", "params"}, ...]}`."""
        return asdict(self)


def describe(name: str, kind: str, networks: list[Any]) -> ModelDescription:
    """Describe the networks of a model; layers of nested models (an autoencoder's encoder
    and decoder) are listed by their path, and several networks (a GAN's two) by theirs."""
    layers: list[LayerDescription] = []
    for network in networks:
        prefix = f"{network.name}/" if len(networks) > 1 else ""
        layers.extend(_layers(network, prefix))
    trainable = sum(_count(n.trainable_weights) for n in networks)
    frozen = sum(_count(n.non_trainable_weights) for n in networks)
    return ModelDescription(name, kind, trainable + frozen, trainable, frozen, layers)


def _layers(model: Any, prefix: str) -> list[LayerDescription]:
    import keras

    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.layers:
            rows.extend(_layers(layer, f"{prefix}{layer.name}/"))
            continue
        rows.append(
            LayerDescription(
                prefix + layer.name,
                type(layer).__name__,
                _shape(layer.output),
                _count(layer.weights),
            )
        )
    return rows


def _shape(output: Any) -> Any:
    if isinstance(output, (list, tuple)):
        return [_shape(o) for o in output]
    return list(output.shape)


def _count(weights: list[Any]) -> int:
    return sum(math.prod(w.shape) for w in weights)
