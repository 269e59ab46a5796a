"""Which Keras backend a process runs (`runtime.backend`): TensorFlow or JAX.

Keras reads its backend once, when it is first imported (`KERAS_BACKEND`): dlx reads the spec
first and chooses the backend before anything imports Keras. A process whose Keras already
runs another backend cannot switch: what needs the other one runs in a process of its own.
Importing this module imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import os
import sys

from dlx.errors import DlxError

BACKENDS = ("tensorflow", "jax")
"""The Keras backends dlx trains with."""
DEFAULT = "tensorflow"
VARIABLE = "KERAS_BACKEND"


class BackendMismatch(DlxError):
    """This process's Keras already runs another backend than the one asked for."""


def environment_note(backend: str) -> str | None:
    """What to tell a user whose `KERAS_BACKEND` names another backend than the spec: the
    spec decides; `None` when they agree or the variable is not set."""
    given = os.environ.get(VARIABLE)
    if given and given != backend:
        return (
            f"{VARIABLE}={given} in the environment, but the spec's runtime.backend is "
            f"{backend}: training on {backend} (the spec decides; set runtime.backend: {given} "
            "to train on it)"
        )
    return None


def current() -> str | None:
    """The backend this process's Keras runs; `None` before Keras is imported."""
    if "keras" not in sys.modules:
        return None
    import keras

    return str(keras.backend.backend())


def use_backend(backend: str) -> None:
    """Make Keras run on `backend` in this process, and import it (quietly, for TensorFlow).

    Raises:
        BackendMismatch: Keras was already imported here with another backend.
    """
    running = current()
    if running is not None and running != backend:
        raise BackendMismatch(
            f"this process's Keras runs the {running} backend and cannot switch to {backend} "
            f"(Keras reads {VARIABLE} once, when it is first imported): run the spec in a "
            f"process of its own, e.g. `dlx train`, or start Python with {VARIABLE}={backend}"
        )
    os.environ[VARIABLE] = backend
    if backend == "tensorflow":
        from dlx.tensorflow_import import import_tensorflow_quietly

        import_tensorflow_quietly()
    else:
        import keras  # noqa: F401


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported here (an accelerator machine may have JAX alone)."""
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def set_random_seed(seed: int) -> None:
    """Seed Python, NumPy and Keras (and TensorFlow, when it runs): `keras.utils.set_random_seed`
    without importing TensorFlow on another backend (Keras's own imports it when installed)."""
    import random

    import keras
    import numpy as np

    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
