"""Parameter parity: architectures written as dlx specs against the same networks in Keras.

The published architectures in examples/ must match `keras.applications` to the parameter,
and the small specs in specs/ must match the same network written by hand with `keras.layers`:
the same layers (class, parameter count and output shape, in any order), and the same total,
trainable and non-trainable counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import pytest

from dlx import api

ROOT = Path(__file__).resolve().parents[2]


def iris_mlp() -> keras.Model:
    inputs = keras.Input(shape=(4,))
    x = keras.layers.Normalization()(inputs)
    for _ in range(2):
        x = keras.layers.Dense(
            32,
            activation="relu",
            kernel_initializer="he_normal",
            kernel_regularizer=keras.regularizers.L2(1e-4),
        )(x)
        x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def digits_resnet() -> keras.Model:
    def conv_bn(x: Any, filters: int, kernel_size: int = 3, strides: int = 1) -> Any:
        x = keras.layers.Conv2D(filters, kernel_size, strides, padding="same", use_bias=False)(x)
        return keras.layers.BatchNormalization(momentum=0.9)(x)

    def block(x: Any, filters: int, strides: int = 1) -> Any:
        shortcut = x
        if strides != 1:
            shortcut = conv_bn(x, filters, kernel_size=1, strides=strides)
        y = keras.layers.ReLU()(conv_bn(x, filters, strides=strides))
        y = conv_bn(y, filters)
        return keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))

    inputs = keras.Input(shape=(8, 8, 1))
    x = keras.layers.ReLU()(conv_bn(inputs, 32))
    x = block(block(x, 32), 32)
    x = block(block(x, 64, strides=2), 64)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def digits_inception() -> keras.Model:
    def inception(x: Any, f1: int, f3r: int, f3: int, f5r: int, f5: int, proj: int) -> Any:
        def conv(y: Any, filters: int, kernel_size: int) -> Any:
            return keras.layers.Conv2D(filters, kernel_size, padding="same", activation="relu")(y)

        pooled = keras.layers.MaxPooling2D(3, strides=1, padding="same")(x)
        branches = [conv(x, f1, 1), conv(conv(x, f3r, 1), f3, 3), conv(conv(x, f5r, 1), f5, 5)]
        return keras.layers.Concatenate()([*branches, conv(pooled, proj, 1)])

    inputs = keras.Input(shape=(8, 8, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = inception(x, 16, 16, 24, 8, 8, 8)
    x = keras.layers.MaxPooling2D(2)(x)
    x = inception(x, 24, 24, 32, 8, 16, 16)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def sequence_lstm() -> keras.Model:
    inputs = keras.Input(shape=(), dtype="string")
    x = keras.layers.TextVectorization(max_tokens=200, output_sequence_length=20)(inputs)
    x = keras.layers.Embedding(200, 32, mask_zero=True)(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(32), merge_mode="concat")(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def timeseries_gru() -> keras.Model:
    inputs = keras.Input(shape=(24, 1))
    x = keras.layers.Normalization()(inputs)
    x = keras.layers.GRU(32)(x)
    outputs = keras.layers.Dense(1)(x)
    return keras.Model(inputs, outputs)


PARITY_CASES = [
    ("examples/vgg16.yaml", lambda: keras.applications.VGG16(weights=None), 138_357_544),
    ("examples/resnet50.yaml", lambda: keras.applications.ResNet50(weights=None), 25_636_712),
    ("specs/iris_mlp.yaml", iris_mlp, 1_324),
    ("specs/digits_resnet.yaml", digits_resnet, 170_794),
    ("specs/digits_inception.yaml", digits_inception, 22_146),
    ("specs/sequence_lstm.yaml", sequence_lstm, 23_235),
    ("specs/timeseries_gru.yaml", timeseries_gru, 3_396),
]


def count(weights: list[Any]) -> int:
    return sum(math.prod(w.shape) for w in weights)


def layer_signature(model: keras.Model) -> Counter[tuple[str, int, tuple[Any, ...]]]:
    """Each layer's class, parameter count and output shape, regardless of name and order."""
    return Counter(
        (type(layer).__name__, count(layer.weights), tuple(layer.output.shape))
        for layer in model.layers
    )


def summary(model: keras.Model) -> dict[str, Any]:
    return {
        "params": model.count_params(),
        "trainable": count(model.trainable_weights),
        "non_trainable": count(model.non_trainable_weights),
        "layers": layer_signature(model),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "reference", "params"),
    PARITY_CASES,
    ids=[Path(spec).stem for spec, _, _ in PARITY_CASES],
)
def test_spec_matches_keras_reference(
    spec: str, reference: Callable[[], keras.Model], params: int
) -> None:
    keras.utils.clear_session()
    built = summary(api.validate(ROOT / spec).built.model)
    keras.utils.clear_session()
    expected = summary(reference())
    keras.utils.clear_session()

    assert built["params"] == expected["params"] == params
    assert built["trainable"] == expected["trainable"]
    assert built["non_trainable"] == expected["non_trainable"]
    assert built["layers"] == expected["layers"]
