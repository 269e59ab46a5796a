"""Training on Keras's JAX backend: what differs from TensorFlow, in one place.

- Placement: `keras.distribution.DataParallel` over every local accelerator when there are
  several (`strategy: auto` or `mirrored`), else one device; `default` and `one_device` train
  on one device. The "strategy" of a placement only opens a scope (nothing, on JAX) and counts
  replicas, as `tf.distribute`'s does.
- Data in memory is fed as batches of arrays (`dlx.data.batches`), never through `tf.data`.
- Determinism on a GPU: XLA's deterministic-ops flag, set before JAX starts its backend.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dlx.errors import DlxError
from dlx.spec import LoadedSpec
from dlx.train.multi_worker import Cluster
from dlx.train.strategy import Placement, waiting_at_most, worker_timeout

FEED = "arrays"
"""How data in memory reaches `fit` (`make_splits(feed=...)`)."""
DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


@dataclass
class DeviceGroup:
    """What a placement's strategy is on JAX: its devices, and a scope that changes nothing
    (`keras.distribution` places the variables)."""

    devices: list[Any]

    @property
    def num_replicas_in_sync(self) -> int:
        return len(self.devices)

    def scope(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def configure_devices(loaded: LoadedSpec) -> None:
    """Before JAX starts: XLA's deterministic ops on a GPU with `deterministic: true`; CPU
    devices named in `runtime.devices` beyond the first are a TensorFlow notion, refused."""
    runtime = loaded.spec.runtime
    if runtime.deterministic:
        flags = os.environ.get("XLA_FLAGS", "")
        if DETERMINISTIC_FLAG not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_FLAG}".strip()


@contextlib.contextmanager
def process_settings(loaded: LoadedSpec) -> Iterator[None]:
    """Keras's precision policy and distribution, restored as they were after the run."""
    import keras

    policy = keras.mixed_precision.global_policy()
    distribution = keras.distribution.distribution()
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
        keras.distribution.set_distribution(distribution)


def make_placement(loaded: LoadedSpec) -> Placement:
    """The devices a spec trains on, and `DataParallel` over them when there are several.

    Raises:
        DlxError: a strategy JAX has no counterpart of (`tpu` with an address, multi-worker
            mirrored without a cluster), or devices this machine does not have.
    """
    import jax
    import keras

    runtime = loaded.spec.runtime
    name: str = runtime.strategy
    cluster = Cluster.from_environment()
    if cluster.workers > 1:
        _join(cluster, loaded.spec.seed)
    accelerators = [d for d in jax.devices() if d.platform != "cpu"]
    local = accelerators or jax.devices()
    if runtime.devices:
        local = _named_devices(runtime.devices, jax.devices())
    if name == "auto":
        name = "data_parallel" if len(local) > 1 or cluster.workers > 1 else "default"
    elif name in ("mirrored", "multi_worker_mirrored", "tpu"):
        name = "data_parallel"
    elif name == "parameter_server":
        raise DlxError("runtime.strategy: parameter_server has no counterpart on JAX")
    if name in ("default", "one_device"):
        devices = local[:1]
    else:
        devices = jax.devices() if cluster.workers > 1 else local
    if len(devices) > 1:
        # Each process feeds its own part of every batch (`dlx.data.batches.Share`).
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
        )
    if cluster.workers <= 1:
        cluster = Cluster()
    return Placement(DeviceGroup(devices), name, len(devices), cluster)


def _named_devices(names: list[str], devices: list[Any]) -> list[Any]:
    """The devices `runtime.devices` names (`CPU:0`, `GPU:1`, `TPU:0`), in JAX's list."""
    known = {f"{d.platform.upper()}:{d.id}": d for d in devices}
    wanted = [name.upper().removeprefix("/DEVICE:").lstrip("/") for name in names]
    missing = [name for name in wanted if name.replace("CUDA", "GPU") not in known]
    if missing:
        raise DlxError(
            f"runtime.devices: no such device {', '.join(missing)}; JAX sees "
            f"{', '.join(sorted(known)) or 'none'} (several CPU devices: "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N)"
        )
    return [known[name.replace("CUDA", "GPU")] for name in wanted]


def unreadable_errors() -> tuple[type[BaseException], ...]:
    """The errors of decoding a file while preprocessing adapts: `tf.data`'s, when a streamed
    source is read through TensorFlow."""
    import sys

    if "tensorflow" not in sys.modules:
        return ()
    from dlx.train.on_tensorflow import unreadable_errors as tensorflow_errors

    return tensorflow_errors()


def keep_tensorflow_out() -> None:
    """Tell Keras that TensorFlow is not there, unless something imported it already.

    Keras probes for TensorFlow in places that do not need it (saving a model checks for
    `tf.TensorShape`): with TensorFlow installed, each probe imports it, 4 s and a second
    framework in memory for nothing. Training from data in memory on JAX never needs it.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    from keras.src.utils import module_utils

    module_utils.tensorflow._available = False


def unsupported(model: Any) -> str | None:
    """What in a built model Keras cannot train on JAX: text inputs (JAX arrays hold numbers;
    `text_vectorization` inside a model needs TensorFlow's strings)."""
    if any(str(tensor.dtype) == "string" for tensor in getattr(model, "inputs", None) or []):
        return (
            "the model reads text (an input with dtype: string): JAX arrays hold numbers only, "
            "so a model that turns text into numbers itself trains on the tensorflow backend "
            "(set runtime.backend: tensorflow)"
        )
    return None


def after_build(model: Any) -> None:
    """Nothing to adjust on JAX once the model is built."""


def _join(cluster: Cluster, seed: int) -> None:
    """Join the job's other processes (`keras.distribution.initialize`, at the chief's
    address), before JAX starts; a worker that waits longer than `$DLX_WORKER_TIMEOUT`
    seconds for the others ends, saying so.

    The spec's seed is set first: every process has it, so Keras need not agree on one
    across processes (which it does through `keras.utils.set_random_seed`, importing
    TensorFlow when it is installed).
    """
    import keras

    from dlx.backend import set_random_seed

    set_random_seed(seed)

    what = f"worker {cluster.index}: the other workers of the job did not all join"
    with waiting_at_most(what, worker_timeout()):
        keras.distribution.initialize(
            job_addresses=cluster.coordinator,
            num_processes=cluster.workers,
            process_id=cluster.index,
        )


def alone() -> None:
    """What the chief of a job does after training it does alone, on one device: no
    distribution (its collectives would wait for the other processes)."""
    import keras

    keras.distribution.set_distribution(None)
