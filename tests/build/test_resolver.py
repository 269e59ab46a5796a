"""The one resolver: Keras's public names, any case or underscores, aliases, nested objects."""

from pathlib import Path

import keras
import pytest

from dlx.build.resolver import (
    INITIALIZER,
    LAYER,
    LOSS,
    OPTIMIZER,
    REGULARIZER,
    SCHEDULE,
    Resolver,
    catalogue,
)
from dlx.errors import SpecError
from dlx.spec.document import parse_document


def _resolver(text="x: 1\n"):
    return Resolver(parse_document(text, Path("spec.yaml")))


@pytest.mark.parametrize(
    "name", ["max_pooling2d", "MaxPooling2D", "maxpooling2d", "MAX_POOLING_2D"]
)
def test_names_match_without_case_or_underscores(name):
    assert _resolver().find(LAYER, name, ())[1] is keras.layers.MaxPooling2D


def test_every_public_layer_class_is_reachable():
    table = catalogue(LAYER)
    for name in dir(keras.layers):
        obj = getattr(keras.layers, name)
        if isinstance(obj, type) and issubclass(obj, keras.layers.Layer):
            assert table[name.replace("_", "").lower()][1] is obj, name


def test_keras_string_identifiers_and_aliases():
    resolver = _resolver()
    assert resolver.build(LOSS, "mse", ()) is keras.losses.mean_squared_error
    assert isinstance(
        resolver.build(LOSS, "sparse_categorical_crossentropy", ()),
        keras.losses.SparseCategoricalCrossentropy,
    )
    assert isinstance(resolver.build(INITIALIZER, "he_normal", ()), keras.initializers.HeNormal)


def test_scalar_is_the_first_positional_argument_and_nested_objects_resolve():
    resolver = _resolver()
    assert resolver.build(REGULARIZER, {"l2": 1e-4}, ()).l2 == pytest.approx(1e-4)
    dense = resolver.build(
        LAYER,
        {
            "dense": {
                "units": 4,
                "kernel_regularizer": {"l1_l2": {"l1": 1e-5, "l2": 1e-4}},
                "kernel_initializer": "he_normal",
            }
        },
        (),
    )
    assert isinstance(dense.kernel_regularizer, keras.regularizers.L1L2)
    assert isinstance(dense.kernel_initializer, keras.initializers.HeNormal)
    wrapper = resolver.build(LAYER, {"bidirectional": {"layer": {"lstm": {"units": 8}}}}, ())
    assert isinstance(wrapper.forward_layer, keras.layers.LSTM)


def test_learning_rate_schedule_in_an_optimizer():
    optimizer = _resolver().build(
        OPTIMIZER,
        {
            "adam": {
                "learning_rate": {
                    "cosine_decay": {"initial_learning_rate": 1e-3, "decay_steps": 100}
                }
            }
        },
        (),
    )
    schedule = optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    # 1e-3 * (1 + cos(pi * step / 100)) / 2: the spec's arguments, not Keras's defaults.
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(50)) == pytest.approx(5e-4)
    assert float(schedule(100)) == pytest.approx(0.0)
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)  # at iteration 0
    assert catalogue(SCHEDULE)["cosinedecay"][1] is keras.optimizers.schedules.CosineDecay


def test_unknown_name_suggests_the_closest_in_spec_style():
    with pytest.raises(
        SpecError, match=r"unknown layer 'batchnorm' \(did you mean 'batch_normalization'"
    ):
        _resolver().find(LAYER, "batchnorm", ())


def test_registered_plugin_classes_by_package_and_name():
    @keras.saving.register_keras_serializable(package="resolver_test")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    assert _resolver().find(LAYER, "resolver_test>Twice", ())[1] is Twice
    with pytest.raises(SpecError, match="plugins:"):
        _resolver().find(LAYER, "resolver_test>Thrice", ())
