"""Choosing the `tf.distribute` strategy a run trains under (docs/spec.md section 6)."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Any

from dlx.errors import DlxError, UsageError
from dlx.spec import LoadedSpec
from dlx.train.multi_worker import Cluster, patch_keras_fit

WORKER_TIMEOUT_VARIABLE = "DLX_WORKER_TIMEOUT"
"""Seconds to wait for a cluster to come up (the other workers, a TPU); default 300."""


@dataclass
class Placement:
    """The strategy a run uses, by name, and how many replicas it has."""

    strategy: Any
    name: str
    replicas: int
    cluster: Cluster


def configure_devices(loaded: LoadedSpec) -> None:
    """Make the logical CPU devices a spec names (`devices: [CPU:0, CPU:1]`) exist.

    This is how Keras's own distribution tests run `MirroredStrategy` on one CPU; it must happen
    before TensorFlow initializes its devices, so the runner calls it first.
    """
    import tensorflow as tf

    devices = loaded.spec.runtime.devices or []
    wanted = [
        int(m.group(1)) for d in devices if (m := re.fullmatch(r"/?(?:device:)?CPU:(\d+)", d, re.I))
    ]
    if not wanted or max(wanted) == 0:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    # Already initialized (a second run in one process): keep what exists; checked later.
    with contextlib.suppress(RuntimeError):
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(max(wanted) + 1)]
        )


def make_placement(loaded: LoadedSpec) -> Placement:
    """Build the strategy a spec's `runtime` asks for.

    `auto` picks, in order: a TPU if one is configured, `multi_worker_mirrored` when `TF_CONFIG`
    names several workers, `mirrored` over every GPU when there are several, one GPU, else the
    CPU (TensorFlow's default strategy).

    Raises:
        DlxError: the strategy cannot run here (no TPU, devices that do not exist, a
            multi-worker strategy without a cluster, parameter servers).
    """
    import tensorflow as tf

    runtime = loaded.spec.runtime
    name = runtime.strategy
    cluster = Cluster.from_environment()
    gpus = tf.config.list_physical_devices("GPU")  # logical ones would start the runtime
    if name == "auto":
        if runtime.tpu:
            name = "tpu"
        elif cluster.workers > 1:
            name = "multi_worker_mirrored"
        elif len(gpus) > 1:
            name = "mirrored"
        elif gpus:
            name = "one_device"
        else:
            name = "default"
    check_strategy(loaded, name, cluster.workers)
    devices = _check_devices(runtime.devices)
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "one_device":
        device = devices[0] if devices else ("/gpu:0" if gpus else "/cpu:0")
        strategy = tf.distribute.OneDeviceStrategy(device)
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=devices or None)
    elif name == "tpu":
        strategy = _tpu(runtime.tpu)
    else:  # multi_worker_mirrored; parameter_server was refused above
        strategy = _multi_worker(cluster)
    if name != "multi_worker_mirrored":
        cluster = Cluster()
    return Placement(strategy, name, strategy.num_replicas_in_sync, cluster)


def worker_timeout() -> float:
    """`$DLX_WORKER_TIMEOUT` in seconds, default 300.

    Raises:
        UsageError: it is not a positive number.
    """
    text = os.environ.get(WORKER_TIMEOUT_VARIABLE, "").strip() or "300"
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise UsageError(
            f"{WORKER_TIMEOUT_VARIABLE}: expected a number of seconds. Received: {text!r}"
        )
    return seconds


def check_strategy(loaded: LoadedSpec, name: str, workers: int) -> None:
    """Refuse a strategy dlx cannot train with, or one that does not fit a cluster of `workers`.

    Raises:
        SpecError: at `runtime.strategy`.
    """
    if name == "parameter_server":
        raise loaded.error(
            ("runtime", "strategy"),
            "parameter_server is not supported: Keras 3's fit has no ParameterServerStrategy "
            "support (it needs a ClusterCoordinator loop); use multi_worker_mirrored for "
            "several workers",
        )
    if workers > 1 and name not in ("auto", "multi_worker_mirrored"):
        raise loaded.error(
            ("runtime", "strategy"),
            f"a cluster of {workers} workers (TF_CONFIG) needs multi_worker_mirrored, but the "
            f"strategy is {name}: every worker would train alone and record a run of its own; "
            "use auto or multi_worker_mirrored",
        )


def _multi_worker(cluster: Cluster) -> Any:
    """`MultiWorkerMirroredStrategy` over `TF_CONFIG`'s cluster, with Keras's `fit` fixed.

    Making the strategy waits for every worker to join, for at most `$DLX_WORKER_TIMEOUT`
    seconds (see `waiting_at_most`).
    """
    import tensorflow as tf

    if cluster.workers > 1:
        patch_keras_fit()
    what = f"worker {cluster.index}: the other workers of TF_CONFIG's cluster did not all join"
    with waiting_at_most(what, worker_timeout()):
        return tf.distribute.MultiWorkerMirroredStrategy()


def waiting_at_most(what: str, timeout: float) -> contextlib.AbstractContextManager[None]:
    """End this process, saying why, if the block waits longer than `timeout` seconds."""
    from dlx.proc.watchdog import bounded

    return bounded(
        timeout,
        f"error: {what} within {timeout:g} s; stopped "
        f"(set {WORKER_TIMEOUT_VARIABLE} to wait longer)",
    )


def _check_devices(devices: list[str] | None) -> list[str]:
    import tensorflow as tf

    if not devices:
        return []
    known = {
        d.name.removeprefix("/device:").upper(): d.name for d in tf.config.list_logical_devices()
    }
    missing = [d for d in devices if d.upper().removeprefix("/DEVICE:").lstrip("/") not in known]
    if missing:
        raise DlxError(
            f"runtime.devices: no such device {', '.join(missing)}; "
            f"this machine has {', '.join(sorted(known)) or 'none'}"
        )
    return [known[d.upper().removeprefix("/DEVICE:").lstrip("/")] for d in devices]


def _tpu(address: str | None) -> Any:
    import tensorflow as tf

    timeout = worker_timeout()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address or "")
        with waiting_at_most(f"the TPU '{address}' did not answer", timeout):
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as exc:
        where = f" '{address}'" if address else ""
        raise DlxError(f"runtime.strategy: tpu: no TPU found{where}: {exc}") from None
    return tf.distribute.TPUStrategy(resolver)
