"""Training on Keras's TensorFlow backend: `tf.distribute` strategies (`dlx.train.strategy`),
`tf.data` pipelines, TensorFlow's op determinism and Grappler's remapper."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from dlx.spec import LoadedSpec
from dlx.train.strategy import Placement, configure_devices, make_placement

FEED = "tf.data"
"""How data in memory reaches `fit` (`make_splits(feed=...)`)."""

__all__ = ["FEED", "Placement", "configure_devices", "make_placement"]


def unreadable_errors() -> tuple[type[BaseException], ...]:
    """The errors of decoding a file while preprocessing layers adapt on `tf.data`."""
    import tensorflow as tf

    return (tf.errors.InvalidArgumentError, tf.errors.DataLossError)


@contextlib.contextmanager
def process_settings(loaded: LoadedSpec) -> Iterator[None]:
    """Set the process-wide settings a spec asks for, and restore them afterwards.

    Op determinism is process-wide: each run sets its own, and leaves the process as it was
    (`tf.config` exposes only `enable_op_determinism`). The precision policy and Grappler's
    remapper (which `after_build` may turn off) are restored too.
    """
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    determinism = tf_config.is_op_determinism_enabled()
    policy = keras.mixed_precision.global_policy()
    remapping = tf.config.optimizer.get_experimental_options().get("remapping", True)
    if loaded.spec.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    try:
        yield
    finally:
        if determinism:
            tf.config.experimental.enable_op_determinism()
        else:
            tf_config.disable_op_determinism()
        keras.mixed_precision.set_global_policy(policy)
        tf.config.optimizer.set_experimental_options({"remapping": remapping})


def keep_tensorflow_out() -> None:
    """Nothing to keep out: TensorFlow is the backend."""


def alone() -> None:
    """Nothing to leave: outside its strategy's scope, a model is the chief's alone."""


def unsupported(model: Any) -> str | None:
    """Nothing a built model holds is beyond TensorFlow."""
    return None


def after_build(model: Any) -> None:
    """Turn Grappler's remapper off for a model with a leaky ReLU.

    Grappler's remapper cannot fuse a convolution and the leaky ReLU after it in a training
    graph (with oneDNN, and on GPUs): it prints `remapper failed: ... LeakyReluGrad ...` as an
    error on every run and leaves the graph unfused. For such a model the remapper is turned
    off for the run (`process_settings` restores it), which costs nothing it would have done
    and keeps the output clean.
    """
    import tensorflow as tf

    if _has_leaky_relu(model):
        tf.config.optimizer.set_experimental_options({"remapping": False})


def _has_leaky_relu(model: Any) -> bool:
    """Whether a model (or a model inside it) applies a leaky ReLU, as a layer or an activation."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.LeakyReLU):
            return True
        if getattr(layer, "activation", None) is keras.activations.leaky_relu:
            return True
        if hasattr(layer, "layers") and _has_leaky_relu(layer):
            return True
    return False
